"""Saved insights (a named query) and dashboards (an ordered list of insights)."""

from __future__ import annotations

from django.db import models


class Insight(models.Model):
    """A named insight query: ``query`` is the body ``run_query`` takes (its ``kind`` included)."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, db_index=True)
    query = models.JSONField(help_text="the query body, as POST /api/v1/analytics/query takes it")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Dashboard(models.Model):
    """Insights shown together over one date range (the last ``days`` days unless the viewer picks another)."""

    name = models.CharField(max_length=200)
    days = models.PositiveSmallIntegerField(default=30, help_text="default date range: the last N days")
    insights = models.ManyToManyField(Insight, through="DashboardItem", related_name="dashboards")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name

    def items(self) -> models.QuerySet[DashboardItem]:
        return self.dashboarditem_set.select_related("insight").order_by("position", "pk")


class DashboardItem(models.Model):
    """One insight's place on a dashboard."""

    dashboard = models.ForeignKey(Dashboard, on_delete=models.CASCADE)
    insight = models.ForeignKey(Insight, on_delete=models.CASCADE)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["dashboard", "insight"], name="dashboard_insight_once")]

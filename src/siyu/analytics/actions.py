"""State changes for saved insights and dashboards; each records who made it in the audit log."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from siyu.accounts.actor import Actor
from siyu.analytics.models import Dashboard, DashboardItem, Insight
from siyu.analytics.queries import parse_query
from siyu.privacy.actions import audit

MAX_DASHBOARD_DAYS = 3 * 366


class AnalyticsError(ValueError):
    """A refused change; nothing was saved."""


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise AnalyticsError("name must be 1-200 characters")
    return name


def _clean_query(query: dict[str, Any]) -> dict[str, Any]:
    """The body as given, once it parses. Raises QueryError (a ValueError) naming each bad field."""
    parsed = parse_query(query)
    return {"kind": parsed.kind, **parsed.model_dump(mode="json", exclude_unset=True)}


def create_insight(actor: Actor, name: str, query: dict[str, Any]) -> Insight:
    """Save a named insight. Raises AnalyticsError for a bad name, QueryError for a bad query."""
    name, body = _clean_name(name), _clean_query(query)
    with transaction.atomic():
        insight = Insight.objects.create(name=name, kind=body["kind"], query=body, created_by=actor.label)
        audit(actor, "change", "insight", insight.pk, op="create", name=name, kind=insight.kind)
    return insight


def update_insight(actor: Actor, insight: Insight, name: str, query: dict[str, Any]) -> Insight:
    """Rename an insight and replace its query (its kind may change)."""
    name, body = _clean_name(name), _clean_query(query)
    with transaction.atomic():
        insight.name, insight.kind, insight.query = name, body["kind"], body
        insight.save(update_fields=["name", "kind", "query", "updated_at"])
        audit(actor, "change", "insight", insight.pk, op="update", name=name, kind=insight.kind)
    return insight


def delete_insight(actor: Actor, insight: Insight) -> None:
    """Delete an insight; it leaves every dashboard it was on."""
    with transaction.atomic():
        audit(actor, "change", "insight", insight.pk, op="delete", name=insight.name)
        insight.delete()


def _clean_days(days: int) -> int:
    if not 1 <= int(days) <= MAX_DASHBOARD_DAYS:
        raise AnalyticsError(f"days must be between 1 and {MAX_DASHBOARD_DAYS}")
    return int(days)


def create_dashboard(actor: Actor, name: str, days: int = 30) -> Dashboard:
    """Create an empty dashboard over the last ``days`` days. Raises AnalyticsError for bad input."""
    name, days = _clean_name(name), _clean_days(days)
    with transaction.atomic():
        dashboard = Dashboard.objects.create(name=name, days=days, created_by=actor.label)
        audit(actor, "change", "dashboard", dashboard.pk, op="create", name=name)
    return dashboard


def update_dashboard(actor: Actor, dashboard: Dashboard, name: str, days: int) -> Dashboard:
    name, days = _clean_name(name), _clean_days(days)
    with transaction.atomic():
        dashboard.name, dashboard.days = name, days
        dashboard.save(update_fields=["name", "days", "updated_at"])
        audit(actor, "change", "dashboard", dashboard.pk, op="update", name=name, days=days)
    return dashboard


def delete_dashboard(actor: Actor, dashboard: Dashboard) -> None:
    """Delete a dashboard; its insights stay saved."""
    with transaction.atomic():
        audit(actor, "change", "dashboard", dashboard.pk, op="delete", name=dashboard.name)
        dashboard.delete()


def add_to_dashboard(actor: Actor, dashboard: Dashboard, insight: Insight) -> DashboardItem:
    """Put ``insight`` last on ``dashboard``. Raises AnalyticsError when it is already there."""
    with transaction.atomic():
        Dashboard.objects.select_for_update().filter(pk=dashboard.pk).first()
        if DashboardItem.objects.filter(dashboard=dashboard, insight=insight).exists():
            raise AnalyticsError(f"{insight.name!r} is already on {dashboard.name!r}")
        last = DashboardItem.objects.filter(dashboard=dashboard).aggregate(m=Max("position"))["m"]
        item = DashboardItem.objects.create(dashboard=dashboard, insight=insight,
                                            position=0 if last is None else last + 1)
        audit(actor, "change", "dashboard", dashboard.pk, op="add_insight", insight=insight.pk)
    return item


def remove_from_dashboard(actor: Actor, dashboard: Dashboard, insight: Insight) -> None:
    """Take ``insight`` off ``dashboard`` (the insight stays saved)."""
    with transaction.atomic():
        deleted, _rows = DashboardItem.objects.filter(dashboard=dashboard, insight=insight).delete()
        if deleted:
            audit(actor, "change", "dashboard", dashboard.pk, op="remove_insight", insight=insight.pk)


def move_on_dashboard(actor: Actor, dashboard: Dashboard, insight: Insight, step: int) -> None:
    """Move ``insight`` ``step`` places (-1: up, +1: down) among the dashboard's insights."""
    with transaction.atomic():
        Dashboard.objects.select_for_update().filter(pk=dashboard.pk).first()
        items = list(DashboardItem.objects.filter(dashboard=dashboard).order_by("position", "pk"))
        index = next((i for i, item in enumerate(items) if item.insight_id == insight.pk), None)
        if index is None:
            raise AnalyticsError(f"{insight.name!r} is not on {dashboard.name!r}")
        target = min(max(index + step, 0), len(items) - 1)
        items.insert(target, items.pop(index))
        for position, item in enumerate(items):
            if item.position != position:
                item.position = position
                item.save(update_fields=["position"])
        audit(actor, "change", "dashboard", dashboard.pk, op="move_insight", insight=insight.pk, position=target)

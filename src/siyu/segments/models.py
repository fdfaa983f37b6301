"""Tags, segments and value-tier settings: what people define. Membership lives in the event store.

A segment is a rule (``segments.rules``) compiled into a query over the
analytics engine; each refresh stores its members in the event store
(``segment_members``, ``segment_changes``) and a ``SegmentRefresh`` row here,
which is the segment's size over time.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _


class Tag(models.Model):
    """A label on customers: set by hand (one by one, a CSV, a segment) or kept by a rule."""

    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True)
    rule = models.JSONField(null=True, blank=True,
                            help_text="a segment rule: the tag is kept on exactly the customers matching it")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_rule(self) -> bool:
        return self.rule is not None


class PersonTag(models.Model):
    class Origin(models.TextChoices):
        MANUAL = "manual", _("By hand")
        IMPORT = "import", _("CSV import")
        SEGMENT = "segment", _("From a segment")
        RULE = "rule", _("By rule")

    person = models.ForeignKey("customers.Person", on_delete=models.CASCADE, related_name="tags")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="people")
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.MANUAL)
    added_by = models.CharField(max_length=150)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["person", "tag"], name="one_tag_per_person")]
        indexes = [models.Index(fields=["tag", "person"])]


class Segment(models.Model):
    """A named rule. Built-in segments (RFM classes, lifecycle stages, value tiers) have a ``key``."""

    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    rule = models.JSONField(help_text="the rule, as POST /api/v1/segments/count takes it")
    key = models.CharField(max_length=64, blank=True, db_index=True,
                           help_text="set on built-in segments: rfm:<class>, lifecycle:<stage>, tier:<tier>")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    size = models.IntegerField(null=True, blank=True, help_text="members at the last refresh")

    class Meta:
        ordering = ["key", "name", "pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def builtin(self) -> bool:
        return bool(self.key)


class SegmentRefresh(models.Model):
    """One refresh: the segment's size then, and how many entered and left since the one before."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="refreshes")
    at = models.DateTimeField(db_index=True)
    size = models.IntegerField()
    entered = models.IntegerField()
    left = models.IntegerField()
    duration_ms = models.IntegerField()
    engine = models.CharField(max_length=16)

    class Meta:
        ordering = ["-at", "-pk"]


class TierSettings(models.Model):
    """The thresholds of the built-in value tiers and lifecycle stages (one row)."""

    high_value_spend = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("1000"),
                                           help_text="high-value: spent at least this in the lookback")
    high_value_orders = models.PositiveIntegerField(default=2, help_text="high-value: at least this many orders "
                                                    "in the lookback")
    lookback_days = models.PositiveIntegerField(default=365)
    active_days = models.PositiveIntegerField(default=30, help_text="potential: active in the last N days")
    silent_after = models.PositiveIntegerField(default=30, help_text="lifecycle: silent after N days without "
                                               "activity")
    churned_after = models.PositiveIntegerField(default=90, help_text="lifecycle: churned after N days "
                                                "without activity")
    updated_by = models.CharField(max_length=150, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    @classmethod
    def current(cls) -> TierSettings:
        return cls.objects.order_by("pk").first() or cls()

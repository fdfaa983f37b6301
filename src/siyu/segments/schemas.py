"""Request and response shapes of the segments and tags API (also printed by the CLI)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from ninja import Schema
from pydantic import Field

from siyu.customers.schemas import PersonSummary
from siyu.segments.models import Segment, SegmentRefresh, Tag

RULE_HELP = "a segment rule: {\"and\"|\"or\": [...]}, {\"not\": node} or a condition (docs/segments.md)"


class FieldError(Schema):
    field: str
    reason: str


class ErrorOut(Schema):
    error: str
    errors: list[FieldError] = []


class RuleIn(Schema):
    rule: dict[str, Any] = Field(description=RULE_HELP)


class CountOut(Schema):
    count: int


class SegmentIn(Schema):
    name: str
    rule: dict[str, Any] = Field(description=RULE_HELP)
    description: str = ""
    refresh: bool = Field(True, description="compute the members now")


class SegmentOut(Schema):
    id: int
    name: str
    key: str = Field(description="set on built-in segments: rfm:<class>, lifecycle:<stage>, tier:<tier>")
    description: str
    rule: dict[str, Any]
    size: int | None = Field(description="members at the last refresh")
    refreshed_at: datetime | None
    created_by: str


class RefreshOut(Schema):
    segment: int
    at: datetime
    size: int
    entered: int
    left: int
    duration_ms: int
    engine: str


class RefreshAllOut(Schema):
    segments: int
    rule_tags: int
    seconds: float


class MembersOut(Schema):
    count: int
    items: list[PersonSummary]


class ChangesOut(Schema):
    since: datetime
    entered: list[int]
    left: list[int]


class TiersIn(Schema):
    high_value_spend: Decimal | None = None
    high_value_orders: int | None = None
    lookback_days: int | None = None
    active_days: int | None = None
    silent_after: int | None = None
    churned_after: int | None = None


class TiersOut(TiersIn):
    updated_by: str
    updated_at: datetime | None


class TagIn(Schema):
    name: str
    description: str = ""
    rule: dict[str, Any] | None = Field(None, description="optional: " + RULE_HELP + "; the tag is then kept "
                                        "on exactly the matching customers")


class TagOut(Schema):
    name: str
    description: str
    rule: dict[str, Any] | None
    people: int
    refreshed_at: datetime | None


class PeopleIn(Schema):
    customers: list[int] = Field(min_length=1, max_length=100_000, description="customer numbers")


class ChangedOut(Schema):
    changed: int


class ImportOut(Schema):
    rows: int
    tagged: int
    dry_run: bool
    errors: list[dict[str, Any]] = Field(description="row, field, reason of each row that named nobody")


def segment_out(segment: Segment) -> dict[str, Any]:
    return {"id": segment.pk, "name": segment.name, "key": segment.key, "description": segment.description,
            "rule": segment.rule, "size": segment.size, "refreshed_at": segment.refreshed_at,
            "created_by": segment.created_by}


def refresh_out(r: SegmentRefresh) -> dict[str, Any]:
    return {"segment": r.segment_id, "at": r.at, "size": r.size, "entered": r.entered, "left": r.left,
            "duration_ms": r.duration_ms, "engine": r.engine}


def tag_out(tag: Tag) -> dict[str, Any]:
    return {"name": tag.name, "description": tag.description, "rule": tag.rule, "people": tag.people.count(),
            "refreshed_at": tag.refreshed_at}

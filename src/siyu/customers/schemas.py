from __future__ import annotations

from typing import Any

from ninja import Schema

from siyu.accounts.actor import Actor
from siyu.customers.models import Person
from siyu.customers.queries import display_name
from siyu.valuation.schemas import PredictionOut


class IdentityOut(Schema):
    kind: str
    value: str | None
    first_seen_at: str


class ProfileOut(Schema):
    id: int
    created_at: str
    identities: list[IdentityOut]
    personal: dict[str, Any]
    masked: bool
    traits: dict[str, Any]
    computed: dict[str, Any]
    merged_from: list[int]
    predictions: PredictionOut | None


class PersonSummary(Schema):
    id: int
    display: str
    acquisition_channel: str | None
    order_count: int
    total_spend: str
    last_seen: str | None


class PersonPage(Schema):
    count: int
    items: list[PersonSummary]


class MergeOut(Schema):
    at: str
    merged: int
    into: int
    reason: str
    evidence: dict[str, Any]
    actor: str
    explanation: str


class TimelineItem(Schema):
    uuid: str
    type: str
    event: str | None
    timestamp: str
    source_id: int | None
    channel: str | None
    store: str | None
    order_id: str | None
    revenue: str | None
    properties: dict[str, Any]


class ConflictOut(Schema):
    id: int
    person_a: int
    person_b: int
    conflicting_kinds: list[str]
    evidence: dict[str, Any]
    status: str
    at: str


class ResolveConflictIn(Schema):
    action: str  # "merge" | "dismiss"


def person_summary(p: Person, actor: Actor) -> PersonSummary:
    """A customer as lists show it (masked by ``actor``'s role)."""
    return PersonSummary(
        id=p.pk, display=display_name(p, actor), acquisition_channel=p.acquisition_channel or None,
        order_count=p.order_count, total_spend=str(p.total_spend),
        last_seen=p.last_seen.isoformat() if p.last_seen else None,
    )

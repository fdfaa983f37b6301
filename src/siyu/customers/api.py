"""Customer lookup, listing, timeline and merge history."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router
from ninja.errors import HttpError

from siyu.accounts.actor import Actor
from siyu.api import Offset, require
from siyu.customers import queries
from siyu.customers.actions import resolve_conflict
from siyu.customers.models import IdentityKind, MergeConflict, Person
from siyu.customers.schemas import (
    ConflictOut,
    MergeOut,
    PersonPage,
    ProfileOut,
    ResolveConflictIn,
    TimelineItem,
    person_summary,
)
from siyu.ingest.writer import settle

router = Router(tags=["customers"])


def _actor(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


@router.get("", response=PersonPage, summary="List or search customers")
def list_customers(request: HttpRequest, q: str = "", channel: str = "", limit: int = Query(50, ge=1, le=500),
                   offset: Offset = 0):
    """Search by any exact id value (phone, email, user id, ...), ``kind:value``, or a customer number."""
    require(request, "customers.view_person")
    settle()
    actor = _actor(request)
    qs = queries.search(q, channel)
    page = list(qs[offset : offset + limit])
    return {"count": qs.count(), "items": [person_summary(p, actor) for p in page]}


@router.get("/lookup", response=ProfileOut, summary="Find the customer holding an identity")
def lookup(request: HttpRequest, kind: IdentityKind, value: str):
    require(request, "customers.view_person")
    settle()
    try:
        person = queries.find_person(queries.Lookup(kind, value))
    except ValueError as exc:
        raise HttpError(422, str(exc)) from None
    except queries.NotFound as exc:
        raise HttpError(404, str(exc)) from None
    return queries.profile(person, _actor(request))


@router.get("/conflicts", response=list[ConflictOut], summary="Merges refused for review")
def conflicts(request: HttpRequest):
    require(request, "customers.view_personmerge")
    return [_conflict(c) for c in queries.open_conflicts()[:500]]


@router.post("/conflicts/{conflict_id}", response=ConflictOut, summary="Merge or dismiss a refused merge")
def resolve(request: HttpRequest, conflict_id: int, body: ResolveConflictIn):
    require(request, "customers.change_mergeconflict")
    conflict = get_object_or_404(MergeConflict, pk=conflict_id)
    try:
        with transaction.atomic():
            conflict = resolve_conflict(_actor(request), conflict, body.action)
    except ValueError as exc:
        raise HttpError(422, str(exc)) from None
    return _conflict(conflict)


def _conflict(c: MergeConflict) -> dict:
    return {"id": c.pk, "person_a": c.person_a_id, "person_b": c.person_b_id,
            "conflicting_kinds": c.conflicting_kinds, "evidence": c.evidence, "status": c.status,
            "at": c.at.isoformat()}


@router.get("/{person_id}", response=ProfileOut, summary="One customer's profile")
def get_customer(request: HttpRequest, person_id: int):
    require(request, "customers.view_person")
    settle()
    person = queries.surviving(get_object_or_404(Person, pk=person_id))
    return queries.profile(person, _actor(request))


@router.get("/{person_id}/merges", response=list[MergeOut], summary="Why this profile is one person")
def merges(request: HttpRequest, person_id: int):
    require(request, "customers.view_person")
    settle()
    person = queries.surviving(get_object_or_404(Person, pk=person_id))
    return queries.merge_history(person)


@router.get("/{person_id}/timeline", response=list[TimelineItem], summary="The customer's events, newest first")
def timeline(request: HttpRequest, person_id: int, limit: int = Query(100, ge=1, le=1000)):
    require(request, "customers.view_person")
    settle()
    person = queries.surviving(get_object_or_404(Person, pk=person_id))
    return queries.timeline(person, limit)

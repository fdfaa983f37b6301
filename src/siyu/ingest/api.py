"""Sources and their write keys, and the dead-letter table."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema, Status
from ninja.errors import HttpError

from siyu.accounts.actor import Actor
from siyu.api import require
from siyu.ingest import actions
from siyu.ingest.models import DeadLetter, Source
from siyu.ingest.writer import get_writer

router = Router(tags=["sources"])


class SourceIn(Schema):
    name: str
    kind: Source.Kind = Source.Kind.SEGMENT


class SourceOut(Schema):
    id: int
    name: str
    kind: str
    write_key: str
    enabled: bool
    created_at: str
    created_by: str
    endpoints: dict[str, str]


class DeadLetterOut(Schema):
    id: int
    source_id: int | None
    received_at: str
    endpoint: str
    message_index: int | None
    message_id: str
    field: str
    reason: str


@router.get("", response=list[SourceOut], summary="List sources")
def list_sources(request: HttpRequest):
    require(request, "ingest.view_source")
    return [actions.source_dict(s) for s in Source.objects.all()]


@router.post("", response={201: SourceOut}, summary="Create a source with a new write key")
def create(request: HttpRequest, body: SourceIn):
    require(request, "ingest.add_source")
    try:
        source = actions.create_source(Actor.for_user(request.user), body.name, body.kind)
    except actions.SourceError as exc:
        raise HttpError(422, str(exc)) from None
    return Status(201, actions.source_dict(source))


@router.post("/{source_id}/rotate-key", response=SourceOut, summary="Replace a source's write key")
def rotate(request: HttpRequest, source_id: int):
    require(request, "ingest.change_source")
    source = get_object_or_404(Source, pk=source_id)
    return actions.source_dict(actions.rotate_write_key(Actor.for_user(request.user), source))


class IngestionOut(Schema):
    processing: bool
    processed_in: str = Field(description="process: a process of its own; thread: a thread of the server")
    backlog: int
    accepted_position: int
    processed_position: int
    seconds_since_processed: float


@router.get("/ingestion", response=IngestionOut, summary="The intake log: messages accepted, not yet processed")
def ingestion(request: HttpRequest, wait: float = Query(0, ge=0, le=60)):
    """``wait``: first wait up to this many seconds until everything accepted so far is processed."""
    require(request, "ingest.view_source")
    writer = get_writer()
    if wait:
        writer.flush(wait)
    return writer.status()


@router.get("/dead-letters", response=list[DeadLetterOut], summary="Rejected messages and why")
def dead_letters(request: HttpRequest, limit: int = Query(100, ge=1, le=1000)):
    require(request, "ingest.view_deadletter")
    return [
        {"id": d.pk, "source_id": d.source_id, "received_at": d.received_at.isoformat(), "endpoint": d.endpoint,
         "message_index": d.message_index, "message_id": d.message_id, "field": d.field, "reason": d.reason}
        for d in DeadLetter.objects.all()[:limit]
    ]

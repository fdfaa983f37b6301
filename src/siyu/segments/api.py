"""Segments, tags and value-tier settings over the API. Rules are the JSON form of docs/segments.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import File, Form, Query, Router, Status
from ninja.files import UploadedFile
from pydantic import Field

from siyu.accounts.actor import Actor
from siyu.api import Offset, RowId, require
from siyu.segments import actions, queries, schemas
from siyu.segments.models import Segment, Tag, TierSettings
from siyu.segments.rules import RuleError
from siyu.segments.schemas import (
    ChangedOut,
    ChangesOut,
    CountOut,
    ErrorOut,
    ImportOut,
    MembersOut,
    RefreshAllOut,
    RefreshOut,
    RuleIn,
    SegmentIn,
    SegmentOut,
    TagIn,
    TagOut,
    TiersIn,
    TiersOut,
    refresh_out,
    segment_out,
    tag_out,
)

router = Router(tags=["segments"])
tags_router = Router(tags=["tags"])


# The tag endpoints' body: each customer number bounded as stored ids are (``siyu.api.RowId``),
# so a number past them is a 422 naming ``body.customers.N``.
class PeopleIn(schemas.PeopleIn):
    customers: list[RowId] = Field(min_length=1, max_length=100_000, description="customer numbers")


def _actor(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


def _invalid(exc: ValueError) -> Status:
    if isinstance(exc, RuleError):
        return Status(422, {"error": "invalid rule", "errors": exc.errors})
    return Status(422, {"error": str(exc), "errors": []})


# -- ad-hoc rules ------------------------------------------------------------------------------------
@router.post("/count", response={200: CountOut, 422: ErrorOut}, summary="Count the customers a rule matches now")
def count(request: HttpRequest, body: RuleIn):
    require(request, "segments.view_segment")
    try:
        return Status(200, {"count": queries.count(body.rule)})
    except RuleError as exc:
        return _invalid(exc)


@router.post("/persona", response={200: queries.Persona, 422: ErrorOut},
             summary="The make-up and key figures of the customers a rule matches")
def persona_of_rule(request: HttpRequest, body: RuleIn):
    require(request, "segments.view_segment")
    try:
        return Status(200, queries.persona(body.rule))
    except RuleError as exc:
        return _invalid(exc)


# -- saved segments -----------------------------------------------------------------------------------
@router.get("", response=list[SegmentOut], summary="List segments (built-in and custom)")
def list_segments(request: HttpRequest):
    require(request, "segments.view_segment")
    actions.ensure_builtin_segments()
    return [segment_out(s) for s in Segment.objects.all()]


@router.post("", response={201: SegmentOut, 422: ErrorOut}, summary="Create a segment")
def create_segment(request: HttpRequest, body: SegmentIn):
    require(request, "segments.add_segment")
    try:
        segment = actions.create_segment(_actor(request), body.name, body.rule, body.description)
    except ValueError as exc:
        return _invalid(exc)
    if body.refresh:
        actions.refresh_segment(_actor(request), segment)
    return Status(201, segment_out(segment))


@router.post("/refresh", response=RefreshAllOut, summary="Refresh every segment and rule tag now")
def refresh_everything(request: HttpRequest):
    require(request, "segments.change_segment")
    return actions.refresh_all(_actor(request))


@router.get("/tiers", response=TiersOut, summary="The value-tier and lifecycle thresholds")
def get_tiers(request: HttpRequest):
    require(request, "segments.view_segment")
    return _tiers(TierSettings.current())


@router.put("/tiers", response={200: TiersOut, 422: ErrorOut}, summary="Change value-tier or lifecycle thresholds")
def put_tiers(request: HttpRequest, body: TiersIn):
    require(request, "segments.change_tiersettings")
    try:
        tiers = actions.update_tier_settings(_actor(request), body.model_dump(exclude_none=True))
    except ValueError as exc:
        return _invalid(exc)
    return Status(200, _tiers(tiers))


def _tiers(t: TierSettings) -> dict[str, Any]:
    return {name: getattr(t, name) for name in actions.TIER_FIELDS} | {"updated_by": t.updated_by,
                                                                       "updated_at": t.updated_at}


@router.get("/{segment_id}", response=SegmentOut, summary="One segment")
def get_segment(request: HttpRequest, segment_id: int):
    require(request, "segments.view_segment")
    return segment_out(get_object_or_404(Segment, pk=segment_id))


@router.put("/{segment_id}", response={200: SegmentOut, 422: ErrorOut}, summary="Change a segment's name or rule")
def update_segment(request: HttpRequest, segment_id: int, body: SegmentIn):
    require(request, "segments.change_segment")
    segment = get_object_or_404(Segment, pk=segment_id)
    try:
        actions.update_segment(_actor(request), segment, body.name, body.rule, body.description)
    except ValueError as exc:
        return _invalid(exc)
    if body.refresh:
        actions.refresh_segment(_actor(request), segment)
    return Status(200, segment_out(segment))


@router.delete("/{segment_id}", response={204: None, 422: ErrorOut}, summary="Delete a custom segment")
def delete_segment(request: HttpRequest, segment_id: int):
    require(request, "segments.delete_segment")
    try:
        actions.delete_segment(_actor(request), get_object_or_404(Segment, pk=segment_id))
    except ValueError as exc:
        return _invalid(exc)
    return Status(204, None)


@router.post("/{segment_id}/refresh", response=RefreshOut, summary="Recompute a segment's members now")
def refresh_segment(request: HttpRequest, segment_id: int):
    require(request, "segments.change_segment")
    segment = get_object_or_404(Segment, pk=segment_id)
    return refresh_out(actions.refresh_segment(_actor(request), segment))


@router.get("/{segment_id}/members", response=MembersOut,
            summary="Members at the last refresh (personal data masked unless your role may see it)")
def members(request: HttpRequest, segment_id: int, limit: int = Query(50, ge=1, le=500),
            offset: Offset = 0):
    require(request, "segments.view_segment")
    require(request, "customers.view_person")
    segment = get_object_or_404(Segment, pk=segment_id)
    return queries.stored_members(segment.pk, _actor(request), offset=offset, limit=limit)


@router.get("/{segment_id}/changes", response=ChangesOut,
            summary="Who entered and who left the segment since a time (default: 24 hours ago)")
def changes(request: HttpRequest, segment_id: int, since: datetime | None = None):
    require(request, "segments.view_segment")
    segment = get_object_or_404(Segment, pk=segment_id)
    since = since or datetime.now(UTC) - timedelta(days=1)
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return queries.changes(segment.pk, since)


@router.get("/{segment_id}/sizes", response=list[RefreshOut], summary="The segment's size at each refresh")
def sizes(request: HttpRequest, segment_id: int, limit: int = Query(100, ge=1, le=1000)):
    require(request, "segments.view_segment")
    segment = get_object_or_404(Segment, pk=segment_id)
    return [refresh_out(r) for r in segment.refreshes.all()[:limit]]


@router.get("/{segment_id}/persona", response=queries.Persona, summary="The segment's make-up and key figures")
def persona(request: HttpRequest, segment_id: int):
    require(request, "segments.view_segment")
    return queries.persona(get_object_or_404(Segment, pk=segment_id).rule)


@router.get("/{segment_id}/export", summary="The members as CSV (masked unless your role may export personal "
            "data; audited)")
def export(request: HttpRequest, segment_id: int):
    require(request, "segments.view_segment")
    require(request, "customers.view_person")
    segment = get_object_or_404(Segment, pk=segment_id)
    response = StreamingHttpResponse(actions.export_members(_actor(request), segment),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="segment-{segment.pk}.csv"'
    return response


# -- tags ---------------------------------------------------------------------------------------------
@tags_router.get("", response=list[TagOut], summary="List tags")
def list_tags(request: HttpRequest):
    require(request, "segments.view_tag")
    return [tag_out(t) for t in Tag.objects.all()]


@tags_router.post("", response={201: TagOut, 422: ErrorOut}, summary="Create a tag (by hand, or kept by a rule)")
def create_tag(request: HttpRequest, body: TagIn):
    require(request, "segments.add_tag")
    try:
        tag = actions.create_tag(_actor(request), body.name, body.description, body.rule)
        if tag.is_rule:
            actions.refresh_rule_tag(_actor(request), tag)
    except ValueError as exc:
        return _invalid(exc)
    return Status(201, tag_out(tag))


@tags_router.delete("/{name}", response={204: None}, summary="Delete a tag (it leaves every customer)")
def delete_tag(request: HttpRequest, name: str):
    require(request, "segments.delete_tag")
    actions.delete_tag(_actor(request), get_object_or_404(Tag, name=name))
    return Status(204, None)


@tags_router.post("/{name}/add", response={200: ChangedOut, 422: ErrorOut},
                  summary="Tag customers (the tag is created when new)")
def add(request: HttpRequest, name: str, body: PeopleIn):
    require(request, "segments.change_tag")
    try:
        return Status(200, {"changed": actions.add_tag(_actor(request), name, body.customers)})
    except ValueError as exc:
        return _invalid(exc)


@tags_router.post("/{name}/remove", response={200: ChangedOut, 422: ErrorOut}, summary="Untag customers")
def remove(request: HttpRequest, name: str, body: PeopleIn):
    require(request, "segments.change_tag")
    try:
        return Status(200, {"changed": actions.remove_tag(_actor(request), name, body.customers)})
    except ValueError as exc:
        return _invalid(exc)


@tags_router.post("/{name}/import", response={200: ImportOut, 422: ErrorOut},
                  summary="Tag the customers a CSV names (customer_id or an id column such as phone)")
def import_csv(request: HttpRequest, name: str, file: File[UploadedFile], dry_run: Form[bool] = False):
    require(request, "segments.change_tag")
    try:
        result = actions.import_tag_csv(_actor(request), name, file.read(), dry_run=dry_run)
    except ValueError as exc:
        return _invalid(exc)
    return Status(200, {"rows": result.rows, "tagged": result.tagged, "dry_run": result.dry_run,
                        "errors": result.errors})


@tags_router.post("/{name}/from-segment/{segment_id}", response={200: ChangedOut, 422: ErrorOut},
                  summary="Tag every member of a segment")
def from_segment(request: HttpRequest, name: str, segment_id: int):
    require(request, "segments.change_tag")
    try:
        changed = actions.tag_segment(_actor(request), name, get_object_or_404(Segment, pk=segment_id))
    except ValueError as exc:
        return _invalid(exc)
    return Status(200, {"changed": changed})


@tags_router.post("/{name}/refresh", response={200: ChangedOut, 422: ErrorOut},
                  summary="Re-apply a rule tag's rule now")
def refresh_tag(request: HttpRequest, name: str):
    require(request, "segments.change_tag")
    try:
        done = actions.refresh_rule_tag(_actor(request), get_object_or_404(Tag, name=name))
    except ValueError as exc:
        return _invalid(exc)
    return Status(200, {"changed": done["added"] + done["removed"]})

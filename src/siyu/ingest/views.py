"""HTTP ingestion endpoints: Segment's tracking API and the Sensors Data protocol.

These are plain Django views rather than API routes because the protocols fix
their own auth (write keys), encodings (gzip, base64 forms) and status codes.
"""

from __future__ import annotations

import base64
import binascii
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt

from siyu.analytics.engine import utcnow
from siyu.ingest import bodies, intake, parsers, sensors
from siyu.ingest.bodies import BodyError, Rejection
from siyu.ingest.intake import Record
from siyu.ingest.messages import MessageError
from siyu.ingest.models import DeadLetter, Source
from siyu.ingest.writer import Overloaded, get_writer

WAIT_SECONDS = 60
SEGMENT_TYPES = "identify|track|page|screen|group|alias|batch"  # the endpoints under /v1/
_KEY_TTL = 10.0
_keys: dict[str, tuple[float, int | None]] = {}


def _error(status: int, reason: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"success": False, "error": reason, **extra}, status=status)


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The raw request body, refused with 413 past ``limit`` bytes (``bodies.inflate`` checks
    the decompressed size)."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > limit:
        raise BodyError(413, f"body of {length} bytes is over the {limit}-byte limit")
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise BodyError(413, f"body is over the {limit}-byte limit")
    return raw


def source_for_key(write_key: str | None) -> int | None:
    """The enabled source with this write key (cached briefly: it is on every request)."""
    if not write_key or "\x00" in write_key:
        return None
    now = time.monotonic()
    hit = _keys.get(write_key)
    if hit and hit[0] > now:
        return hit[1]
    row = Source.objects.filter(write_key=write_key, enabled=True).values_list("pk", flat=True).first()
    _keys[write_key] = (now + _KEY_TTL, row)
    return row


def forget_write_key(write_key: str) -> None:
    """Drop a key from the cache (after rotation, so the old key is refused at once)."""
    _keys.pop(write_key, None)


def _basic_key(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def dead_letter(source_id: int | None, endpoint: str, rejection: Rejection) -> dict:
    raw = rejection.raw
    DeadLetter.record(source_id, endpoint, rejection.index, raw, rejection.field, rejection.reason)
    message_id = raw.get("messageId", "") if isinstance(raw, dict) else ""
    return {"index": rejection.index, "messageId": message_id or None, "field": rejection.field,
            "reason": rejection.reason}


def _commit(records: list[Record]) -> JsonResponse | None:
    """Hand accepted messages to the writer and wait until they are durable in the intake log;
    a response to send instead when they could not be taken."""
    if not records:
        return None
    try:
        get_writer().accept(records).result(timeout=WAIT_SECONDS)
    except Overloaded:
        response = _error(429, "overloaded: retry later")
        response["Retry-After"] = "1"
        return response
    except FutureTimeout:
        # Still queued or being written: the client must not assume either outcome.
        # Retrying is safe, because messages are deduplicated on their ids.
        response = _error(503, f"not committed within {WAIT_SECONDS}s; retry (duplicates are dropped)")
        response["Retry-After"] = "5"
        return response
    return None


@csrf_exempt
def segment_endpoint(request: HttpRequest, msg_type: str) -> JsonResponse:
    if request.method != "POST":
        return _error(405, "use POST")
    received_at = utcnow()
    limit = settings.SIYU_MAX_BATCH_BYTES if msg_type == "batch" else settings.SIYU_MAX_MESSAGE_BYTES
    try:
        raw = read_body(request, limit)
    except BodyError as exc:
        return _error(exc.status, exc.reason)
    gzipped = request.META.get("HTTP_CONTENT_ENCODING", "").lower() == "gzip"
    parsed = parsers.run(bodies.packed_segment_body, raw, gzipped, msg_type, received_at, limit,
                         settings.SIYU_MAX_MESSAGE_BYTES)
    if parsed.body_error is not None:
        return _error(*parsed.body_error)
    source_id = source_for_key(_basic_key(request) or parsed.write_key)
    if source_id is None:
        return _error(401, "unknown or missing write key (HTTP Basic user name, or writeKey in the body)")
    if parsed.shape_error is not None:
        reason, field = parsed.shape_error
        return _error(400, reason, field=field)
    rejected = [dead_letter(source_id, f"/v1/{msg_type}", r) for r in parsed.rejected]
    busy = _commit([Record(source_id, parsed.count, parsed.packed)] if parsed.count else [])
    if busy is not None:
        return busy
    if msg_type != "batch" and rejected:
        return _single_error(rejected[0])
    return JsonResponse({"success": True, "accepted": parsed.count, "rejected": rejected})


def _single_error(rejection: dict) -> JsonResponse:
    field = rejection["field"]
    reason = f"{field}: {rejection['reason']}" if field else rejection["reason"]
    return _error(400, reason, field=field)


def _sensors_form(request: HttpRequest) -> QueryDict:
    if request.method != "POST":
        return request.GET
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.POST
    # The WeChat mini-program SDK posts the form-encoded string with wx.request's
    # default Content-Type (application/json), so Django leaves request.POST empty.
    return QueryDict(request.body)


def _sensors_payload(request: HttpRequest) -> tuple[Any, str]:
    params = _sensors_form(request)
    gzipped = params.get("gzip") == "1"
    if params.get("data_list"):
        payload = sensors.decode_payload(params["data_list"], gzipped, settings.SIYU_MAX_BATCH_BYTES)
        if not isinstance(payload, list):
            raise MessageError("data_list", "must be a JSON array of records (send one record as data)")
        return payload, "data_list"
    if params.get("data"):
        return sensors.decode_payload(params["data"], gzipped, settings.SIYU_MAX_BATCH_BYTES), "data"
    raise MessageError("data", "form field data or data_list is required")


@csrf_exempt
def sensors_endpoint(request: HttpRequest) -> JsonResponse:
    if request.method not in ("GET", "POST"):
        return _error(405, "use POST (or GET for image beacons)")
    received_at = utcnow()
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.SIYU_MAX_BATCH_BYTES:
        return _error(413, f"body of {length} bytes is over the {settings.SIYU_MAX_BATCH_BYTES}-byte limit")
    project = request.GET.get("project") or request.GET.get("token") or ""
    source_id = source_for_key(request.GET.get("token")) or _sensors_source(project)
    if source_id is None and not project:
        return _error(401, "the project parameter (or token) is missing: post to /sa?project=<source name>")
    if source_id is None:
        return _error(401, f"no Sensors source named {project!r} (create one with `siyu source create NAME --kind sensors`)")
    try:
        payload, field = _sensors_payload(request)
    except sensors.PayloadTooLarge as err:
        return _error(413, err.reason, field=err.field)
    except MessageError as err:
        return _error(400, err.reason, field=err.field)
    records = payload if isinstance(payload, list) else [payload]
    accepted, rejected = [], []
    for index, raw in enumerate(records):
        try:
            accepted.append((source_id, sensors.parse(raw, received_at)))
        except MessageError as err:
            rejected.append(dead_letter(source_id, "/sa", Rejection(index, raw, err.field, err.reason)))
    busy = _commit(intake.records(accepted))
    if busy is not None:
        return busy
    if field == "data" and rejected:
        return _single_error(rejected[0])
    return JsonResponse({"success": True, "accepted": len(accepted), "rejected": rejected})


def _sensors_source(project: str) -> int | None:
    if not project or "\x00" in project:
        return None
    return Source.objects.filter(name=project, kind=Source.Kind.SENSORS, enabled=True).values_list(
        "pk", flat=True).first()

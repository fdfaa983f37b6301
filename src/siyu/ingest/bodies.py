"""Request bodies of the tracking endpoints -> validated messages, without the database.

Everything here is pure: bytes in, messages and rejections out. The endpoints run
it in a parse worker process (``parsers``) when the server has them, so the
process that owns the stores spends its time writing; errors come back as data,
never as exceptions, because they cross a process boundary.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from siyu.ingest import intake, segment
from siyu.ingest.messages import MAX_JSON_DEPTH, Message, MessageError, check_depth, reject_nul


@dataclass
class Rejection:
    """A message refused with its reason; ``raw`` goes to the dead-letter table."""

    index: int | None
    raw: Any
    field: str
    reason: str


@dataclass
class ParsedBody:
    """What one request body holds.

    ``body_error`` (status, reason) refuses the whole body before its write key is
    checked; ``shape_error`` (reason, field) after it, as the endpoint answers them.
    """

    write_key: str | None = None
    messages: list[Message] = field(default_factory=list)
    count: int = 0  # the messages, once ``pack`` has put them into ``packed``
    packed: bytes = b""
    rejected: list[Rejection] = field(default_factory=list)
    body_error: tuple[int, str] | None = None
    shape_error: tuple[str, str] | None = None


    def pack(self) -> ParsedBody:
        """Move ``messages`` into ``packed`` (``intake.pack``): the server writes them to the intake
        log as they are, and never decodes them in a request thread."""
        self.count, self.packed, self.messages = len(self.messages), intake.pack(self.messages), []
        return self


class BodyError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status, self.reason = status, reason


def inflate(raw: bytes, gzipped: bool, limit: int) -> bytes:
    """``raw`` (already read within ``limit`` bytes), gunzipped when ``gzipped``; BodyError 413
    when it inflates past ``limit``."""
    if not gzipped:
        return raw
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise BodyError(400, "Content-Encoding is gzip but the body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, f"decompressed body is over the {limit}-byte limit")
    return out


def json_object(raw: bytes, *, batch: bool = False) -> dict:
    """The body's JSON object. Its depth is checked here, except for a batch's messages: walking
    every container of a 100-message body cost ~8 % of parsing it, so ``segment_body`` checks
    each message from its encoded size instead (``_check_message_depth``)."""
    try:
        data = orjson.loads(raw)
        if isinstance(data, dict):
            check_depth({k: v for k, v in data.items() if k != "batch"} if batch else data)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise BodyError(400, _not_json(exc)) from None
    if not isinstance(data, dict):
        raise BodyError(400, "body must be a JSON object")
    return data


def _not_json(exc: Exception) -> str:
    return f"body is not valid JSON: {exc}"


BATCH_MESSAGE_DEPTH = MAX_JSON_DEPTH - 2  # the body and its batch list hold each message


def _check_message_depth(item: Any, encoded: bytes | None) -> None:
    """``check_depth`` for a message of a batch, walking it only when its JSON has more containers
    than the levels it may use (rare), or could not be encoded (orjson stops at 255 levels)."""
    if encoded is None or encoded.count(b"{") + encoded.count(b"[") > BATCH_MESSAGE_DEPTH:
        check_depth(item, BATCH_MESSAGE_DEPTH)


def segment_body(raw: bytes, gzipped: bool, msg_type: str, received_at: datetime, body_limit: int,
                 message_limit: int) -> ParsedBody:
    """A Segment tracking API body (``msg_type``: batch, or one message's type)."""
    batch = msg_type == "batch"
    try:
        data = json_object(inflate(raw, gzipped, body_limit), batch=batch)
    except BodyError as exc:
        return ParsedBody(body_error=(exc.status, exc.reason))
    key = data.get("writeKey")
    out = ParsedBody(write_key=key if isinstance(key, str) else None)
    raws = data.get("batch") if batch else [data]
    if not isinstance(raws, list):
        out.shape_error = ("batch must be a list of messages", "batch")
        return out
    context = data.get("context") if batch and isinstance(data.get("context"), dict) else None
    sent_at = segment.batch_sent_at(data.get("sentAt")) if batch else None
    for index, item in enumerate(raws):
        try:
            try:
                encoded = orjson.dumps(item, default=str)
            except orjson.JSONEncodeError:  # deeper than orjson writes
                encoded = None
            if batch:
                try:
                    _check_message_depth(item, encoded)
                except ValueError as exc:
                    return ParsedBody(body_error=(400, _not_json(exc)))
            if encoded is None:
                raise MessageError("", "cannot be stored as JSON")
            if batch and len(encoded) > message_limit:
                raise MessageError("", f"message is over the {message_limit}-byte limit")
            reject_nul(item, encoded)
            out.messages.append(segment.parse(item, received_at, msg_type=None if batch else msg_type,
                                              batch_sent_at=sent_at, batch_context=context))
        except MessageError as err:
            out.rejected.append(Rejection(index if batch else None, item, err.field, err.reason))
    return out


def packed_segment_body(raw: bytes, gzipped: bool, msg_type: str, received_at: datetime, body_limit: int,
                        message_limit: int) -> ParsedBody:
    """``segment_body`` with its messages packed (``ParsedBody.pack``): what the endpoint runs."""
    return segment_body(raw, gzipped, msg_type, received_at, body_limit, message_limit).pack()

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
from siyu.ingest.messages import Message, MessageError, check_depth, reject_nul


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
        log as they are, and never unpickles them in a request thread."""
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


def json_object(raw: bytes) -> dict:
    try:
        data = orjson.loads(raw)
        check_depth(data)
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise BodyError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BodyError(400, "body must be a JSON object")
    return data


def segment_body(raw: bytes, gzipped: bool, msg_type: str, received_at: datetime, body_limit: int,
                 message_limit: int) -> ParsedBody:
    """A Segment tracking API body (``msg_type``: batch, or one message's type)."""
    try:
        data = json_object(inflate(raw, gzipped, body_limit))
    except BodyError as exc:
        return ParsedBody(body_error=(exc.status, exc.reason))
    key = data.get("writeKey")
    out = ParsedBody(write_key=key if isinstance(key, str) else None)
    batch = msg_type == "batch"
    raws = data.get("batch") if batch else [data]
    if not isinstance(raws, list):
        out.shape_error = ("batch must be a list of messages", "batch")
        return out
    context = data.get("context") if batch and isinstance(data.get("context"), dict) else None
    sent_at = data.get("sentAt") if batch else None
    for index, item in enumerate(raws):
        try:
            encoded = orjson.dumps(item, default=str)
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

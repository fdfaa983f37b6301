"""The one shape every inbound protocol is turned into before the pipeline sees it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
import orjson

from siyu.customers.identity import Claim
from siyu.db import json_text

MAX_EVENT_NAME = 200
MAX_FUTURE_SKEW = timedelta(days=1)
MIN_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
MAX_JSON_DEPTH = 64
NUL_REASON = "contains a NUL character (\\u0000), which cannot be stored"

# Property and context keys that may hold personal data: never written to the event store.
PII_KEYS = frozenset({
    "name", "first_name", "firstName", "last_name", "lastName", "username", "nickname", "real_name",
    "phone", "mobile", "tel", "email", "address", "id_card", "idCard", "password", "ip",
    "$name", "$phone", "$email", "$ip", "traits", "externalIds", "identities", "unionid",
    "openid", "wecom_id", "wechat_unionid", "wechat_openid", "userAgent", "$user_agent",
})


class MessageError(ValueError):
    """A message that cannot be accepted; ``field`` names the offending part."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


class OrderInfo(msgspec.Struct, array_like=True, gc=False):
    """The order an ``Order Completed`` or ``Order Refunded`` carries (encoded by position, as
    ``Message`` is: a new field goes last, with a default)."""

    order_id: str
    kind: str  # "completed" | "refunded"
    amount: Decimal | None
    currency: str = "CNY"
    coupon: str = ""
    items: list = []


class Message(msgspec.Struct, array_like=True, gc=False):
    """One inbound message, validated.

    Messages cross processes by the million (parse workers to the intake log to the processing
    process; the demo's generators), so they are ``msgspec`` structs that ``ingest.intake.pack``
    encodes as MessagePack arrays: ~5x cheaper to write and ~2x to read than pickled
    dataclasses. ``event_json`` holds the (scrubbed) properties and context as the event store
    keeps them, JSON text made once at parse time. Fields are encoded by position: a new one
    goes last, with a default, so rows written before it still decode.
    """

    type: str
    message_id: str
    claims: list[Claim]
    distinct: Claim
    timestamp: datetime
    received_at: datetime
    event: str | None = None
    event_json: tuple[str, str] = ("{}", "{}")  # (properties, context)
    traits: dict[str, Any] = {}
    pii: dict[str, str] = {}
    profile_op: str | None = None  # set | set_once | increment | append | unset | delete
    touch: dict[str, str] = {}
    order: OrderInfo | None = None
    store_event: bool = True


def as_record(message: Message) -> dict[str, Any]:
    """``message`` as plain data (what a dead letter keeps of a message that failed after it
    was accepted): its fields by name, the claims and the order as dicts too."""
    return {name: _plain(getattr(message, name)) for name in message.__struct_fields__}


def _plain(value: Any) -> Any:
    if isinstance(value, msgspec.Struct):
        return {name: _plain(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def event_json(properties: dict[str, Any], context: dict[str, Any]) -> tuple[str, str]:
    """``Message.event_json`` from the already scrubbed properties and context."""
    return json_text(properties), json_text(context)


def loads(data: str | bytes) -> Any:
    """Parse a JSON document strictly; raises ValueError for anything we could not store.

    NaN and Infinity are refused (PostgreSQL's jsonb cannot hold them), and so is
    nesting deeper than ``MAX_JSON_DEPTH`` (no analytics payload needs it, and
    recursive code downstream would hit recursion limits).
    """
    value = orjson.loads(data)  # orjson.JSONDecodeError is a ValueError
    check_depth(value)
    return value


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise ValueError when ``value`` nests deeper than ``limit`` levels (a part of a body: the
    levels left to it of ``MAX_JSON_DEPTH``, which the error names).

    orjson and json accept far deeper documents than orjson.dumps or recursive
    code can handle later, so bodies are checked once, right after parsing.
    """
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


def reject_nul(raw: Any, encoded: bytes | None = None) -> None:
    """Raise MessageError naming the first string or key of ``raw`` that holds U+0000.

    PostgreSQL can store NUL neither in text nor in jsonb. ``encoded`` (``raw`` as
    JSON, when the caller has it) makes the usual case one byte search.
    """
    if encoded is None:
        try:
            encoded = orjson.dumps(raw, default=str)
        except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: look properly
            encoded = b"\\u0000"
    if b"\\u0000" in encoded and (path := _nul_path(raw)) is not None:
        raise MessageError(path.replace("\x00", "\\u0000"), NUL_REASON)


def _nul_path(value: Any) -> str | None:
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            return path
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if "\x00" in str(key):
                    return child_path
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{i}" if path else str(i)) for i, child in enumerate(item))
    return None


def scrub(data: Any, depth: int = 0) -> Any:
    """``data`` without personal-data keys, at any depth (nesting cut at 8): a copy, or ``data``
    itself when nothing in it needs removing or cutting (most properties: flat, no personal data)."""
    if depth > 8:
        return None
    if isinstance(data, dict):
        for v in data.values():
            if isinstance(v, _CONTAINERS):
                break
        else:  # flat
            if PII_KEYS.isdisjoint(data):
                return data
            return {k: v for k, v in data.items() if k not in PII_KEYS}
        return {k: (scrub(v, depth + 1) if isinstance(v, _CONTAINERS) else v)
                for k, v in data.items() if k not in PII_KEYS}
    if isinstance(data, list):
        return [scrub(v, depth + 1) if isinstance(v, _CONTAINERS) else v for v in data]
    return data


_CONTAINERS = (dict, list)


def parse_time(value: Any, field_name: str) -> datetime:
    """ISO-8601 string or epoch milliseconds to an aware UTC datetime."""
    if isinstance(value, bool):
        raise MessageError(field_name, "must be an ISO-8601 time or epoch milliseconds")
    if isinstance(value, (int, float)):
        try:
            parsed = datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise MessageError(field_name, "epoch milliseconds out of range") from None
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise MessageError(field_name, f"not an ISO-8601 time: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
    else:
        raise MessageError(field_name, "must be an ISO-8601 time or epoch milliseconds")
    return parsed.astimezone(UTC)


def check_time(ts: datetime, received_at: datetime, field_name: str) -> datetime:
    if ts > received_at + MAX_FUTURE_SKEW:
        raise MessageError(field_name, "is more than a day in the future")
    if ts < MIN_TIMESTAMP:
        raise MessageError(field_name, "is before the year 2000")
    return ts


def parse_money(value: Any, field_name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise MessageError(field_name, "must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MessageError(field_name, f"not a number: {str(value)[:40]!r}") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
        raise MessageError(field_name, "must be a non-negative amount below 10^12")
    return amount.quantize(Decimal("0.01"))


def touch_from(properties: dict[str, Any], campaign: dict[str, Any] | None = None) -> dict[str, str]:
    """Attribution facts (channel, UTM, store, QR scene, referrer) a message carries."""
    get = properties.get
    if campaign:
        facts = (("utm_source", campaign.get("source") or get("utm_source")),
                 ("utm_medium", campaign.get("medium") or get("utm_medium")),
                 ("utm_campaign", campaign.get("name") or get("utm_campaign")))
    else:
        facts = (("utm_source", get("utm_source")), ("utm_medium", get("utm_medium")),
                 ("utm_campaign", get("utm_campaign")))
    facts += (("store", get("store") or get("store_id")), ("qr_scene", get("qr_scene") or get("scene")),
              ("referrer", get("referrer_code") or get("invite_code")))
    touch = {k: str(v)[:100] for k, v in facts if v is not None and v != "" and not isinstance(v, _CONTAINERS)}
    channel = get("channel")
    channel = (channel if isinstance(channel, str) else None) or touch.get("utm_source") or (
        "store_qr" if "qr_scene" in touch or "store" in touch else None)
    if channel:
        touch["channel"] = channel[:64]
    return touch

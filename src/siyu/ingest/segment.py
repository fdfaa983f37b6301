"""Segment HTTP Tracking API messages -> ``Message``.

Spec followed: identify, track, page, screen, group, alias; ``batch`` wraps any
of them with a per-message ``type``. Clock skew is corrected as
``timestamp = receivedAt - (sentAt - originalTimestamp)`` when both are sent.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from siyu.customers.identity import Claim, make_claim
from siyu.customers.profile import split_traits
from siyu.ingest.messages import (
    MAX_EVENT_NAME,
    Message,
    MessageError,
    OrderInfo,
    check_time,
    event_json,
    parse_money,
    parse_time,
    scrub,
    touch_from,
)
from siyu.orders.currency import currency_code
from siyu.privacy.crypto import InvalidValue

TYPES = ("identify", "track", "page", "screen", "group", "alias")
# Trait names (in identify traits or context.traits) that are ids of a kind we resolve.
TRAIT_IDS = {
    "phone": "phone", "mobile": "phone", "email": "email",
    "unionid": "unionid", "wechat_unionid": "unionid", "openid": "openid", "wechat_openid": "openid",
    "wecom_id": "wecom_id", "wecom_external_userid": "wecom_id", "external_userid": "wecom_id",
    "member_no": "member_no", "memberNo": "member_no", "member_id": "member_no",
}
ORDER_EVENTS = {"Order Completed": "completed", "Order Refunded": "refunded"}


def _object(raw: dict, key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(key, "must be an object")
    return value


def _json_type(value: Any) -> str:
    """How JSON names the type of ``value`` (for messages about a wrong one)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "an array"}.get(type(value), "a string")


def _claim(kind: str, value: Any, field: str) -> Claim:
    try:
        return make_claim(kind, value)
    except InvalidValue as exc:
        raise MessageError(field, str(exc)) from None


def _timestamp(raw: dict, received_at: datetime, batch_sent_at: Any) -> datetime:
    original = raw.get("originalTimestamp", raw.get("timestamp"))
    field = "originalTimestamp" if "originalTimestamp" in raw else "timestamp"
    if original is None:
        return received_at
    ts = parse_time(original, field)
    sent_raw = raw.get("sentAt", batch_sent_at)
    if sent_raw is not None:
        sent = sent_raw if isinstance(sent_raw, datetime) else parse_time(sent_raw, "sentAt")
        ts = received_at - (sent - ts)
    return check_time(ts, received_at, field)


def batch_sent_at(value: Any) -> Any:
    """A batch's ``sentAt``, parsed once for all its messages; left as sent when it is not a time,
    so that each message is refused naming it."""
    if value is None:
        return None
    try:
        return parse_time(value, "sentAt")
    except MessageError:
        return value


def _ids(raw: dict, msg_type: str, traits: dict[str, Any]) -> tuple[list[Claim], Claim]:
    claims: list[Claim] = []
    user_id, anonymous_id = raw.get("userId"), raw.get("anonymousId")
    if user_id not in (None, ""):
        claims.append(_claim("user_id", user_id, "userId"))
    if msg_type == "alias":
        previous = raw.get("previousId")
        if not claims:
            raise MessageError("userId", "alias needs both userId and previousId")
        if previous in (None, ""):
            raise MessageError("previousId", "alias needs both userId and previousId")
        kind = "user_id" if raw.get("previousIdKind") == "user_id" else "anonymous_id"
        claims.append(_claim(kind, previous, "previousId"))
    if anonymous_id not in (None, ""):
        claims.append(_claim("anonymous_id", anonymous_id, "anonymousId"))
    if not claims:
        raise MessageError("userId", "either userId or anonymousId is required")
    if traits and not TRAIT_IDS.keys().isdisjoint(traits):  # most messages carry no traits
        for key, kind in TRAIT_IDS.items():
            if traits.get(key) not in (None, ""):
                claims.append(_claim(kind, traits[key], f"traits.{key}"))
    return claims, claims[0]


def _event_name(event: Any) -> str:
    if event is not None and not isinstance(event, str):
        raise MessageError("event", f"must be a string, not {_json_type(event)}")
    if event is None or not event.strip():
        raise MessageError("event", "track needs an event name")
    if len(event) > MAX_EVENT_NAME:
        raise MessageError("event", f"longer than {MAX_EVENT_NAME} characters")
    return event


def _order(event: str, props: dict[str, Any]) -> OrderInfo | None:
    kind = ORDER_EVENTS.get(event)
    if kind is None:
        return None
    order_id = props.get("order_id", props.get("orderId"))
    if order_id in (None, "") or isinstance(order_id, (dict, list, bool)):
        raise MessageError("properties.order_id", f"{event} needs an order_id")
    amount_raw = props.get("total", props.get("revenue"))
    if kind == "completed" and amount_raw is None:
        raise MessageError("properties.total", "Order Completed needs total (or revenue)")
    amount = parse_money(amount_raw, "properties.total") if amount_raw is not None else None
    currency = "CNY"
    if props.get("currency") not in (None, ""):
        currency = currency_code(props["currency"]) if isinstance(props["currency"], str) else None
        if currency is None:
            raise MessageError("properties.currency", "is not a currency code (ISO 4217, such as CNY)")
    products = props.get("products") if isinstance(props.get("products"), list) else []
    return OrderInfo(order_id=str(order_id)[:100], kind=kind, amount=amount, currency=currency,
                     coupon=str(props.get("coupon") or "")[:64], items=scrub(products)[:200])


def parse(raw: Any, received_at: datetime, *, msg_type: str | None = None,
          batch_sent_at: Any = None, batch_context: dict | None = None) -> Message:
    """Validate one Segment message; raises ``MessageError`` naming the bad field."""
    if not isinstance(raw, dict):
        raise MessageError("", "a message must be a JSON object")
    msg_type = msg_type or raw.get("type")
    if msg_type not in TYPES:
        raise MessageError("type", f"must be one of {', '.join(TYPES)}")
    context = {**batch_context, **_object(raw, "context")} if batch_context else _object(raw, "context")
    if not isinstance(context.get("campaign", {}), dict):
        raise MessageError("context.campaign", "must be an object")
    properties = _object(raw, "properties")
    traits_raw = _object(raw, "traits") if msg_type in ("identify", "group") else {}
    context_traits = context.get("traits") if isinstance(context.get("traits"), dict) else {}
    person_traits = {**context_traits, **traits_raw} if msg_type == "identify" else context_traits
    claims, distinct = _ids(raw, msg_type, person_traits)

    message_id = raw.get("messageId")
    if message_id is not None and (not isinstance(message_id, str) or not message_id or len(message_id) > 200):
        raise MessageError("messageId", "must be a non-empty string of at most 200 characters")
    event = None
    if msg_type == "track":
        event = _event_name(raw.get("event"))
    elif msg_type in ("page", "screen"):
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            raise MessageError("name", "must be a string")
        event = "$" + msg_type
        properties = {**properties, "name": name} if name else properties
    elif msg_type == "group":
        group_id = raw.get("groupId")
        if group_id in (None, "") or isinstance(group_id, (dict, list)):
            raise MessageError("groupId", "group needs a groupId")
        event = "$group"
        properties = {"group_id": str(group_id), "group_traits": scrub(traits_raw)}
    else:
        event = "$" + msg_type

    plain, pii = split_traits(person_traits) if msg_type == "identify" else ({}, {})
    return Message(
        type=msg_type,
        message_id=message_id or str(uuid.uuid4()),
        claims=claims,
        distinct=distinct,
        timestamp=_timestamp(raw, received_at, batch_sent_at),
        received_at=received_at,
        event=event,
        event_json=event_json(scrub(properties), scrub(context)),
        traits=plain,
        pii=pii,
        profile_op="set" if msg_type == "identify" else None,
        touch=touch_from(properties, context.get("campaign")),
        order=_order(event, properties) if msg_type == "track" else None,
    )

"""How accepted messages are written in the intake log (``intake.pack``) and read back, including
rows that the first servers wrote (pickled dataclasses), so an upgrade loses nothing accepted."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from siyu.customers.identity import Claim
from siyu.ingest import intake, segment
from siyu.ingest.messages import Message, OrderInfo, as_record
from siyu.privacy import crypto

AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

# Two messages as a server before msgspec wrote them to its intake log (``pickle.dumps`` of the
# dataclasses): an identify with a phone, and an order. Their claims' keys were hashed with that
# server's lookup key, not this test's.
LEGACY_ROW = base64.b64decode(
    "gAWVtQQAAAAAAABdlCiMFHNpeXUuaW5nZXN0Lm1lc3NhZ2VzlIwHTWVzc2FnZZSTlCmBlH2UKIwEdHlwZZSMCGlkZW50aWZ5lIwKbWVzc2FnZV9pZJSMA20tMZSMBmNsYWltc5RdlCiMF3NpeXUuY3VzdG9tZXJzLmlkZW50aXR5lIwFQ2xhaW2Uk5QpgZR9lCiMBGtpbmSUjAd1c2VyX2lklIwFdmFsdWWUjAN1LTGUjANrZXmUaBKMQGZiMmU5ZjgwMDI5ZmRiMjA2ZDQ0Nzc4NWM1NDE4MTA5ZDZjN2FkNTA0YmY4ZmQ2MDI4NDRkNjJjMmE0ODFiNTOUhpR1YmgOKYGUfZQoaBGMBXBob25llGgTjA4rODYxMzgwMDEzODAwMJRoFWgajEBiMDk5NzRjYjJlZDZjNDc3OTcyOGU2YmFiMDFkOGRlY2Y1ODE2ZjRjMDM2ZjUyOTVjNDBlYmEwNzI0YTBhOTQ3lIaUdWJljAhkaXN0aW5jdJRoD4wJdGltZXN0YW1wlIwIZGF0ZXRpbWWUjAhkYXRldGltZZSTlEMKB+oMAQc7AAAAAJRoIIwIdGltZXpvbmWUk5RoIIwJdGltZWRlbHRhlJOUSwBLAEsAh5RSlIWUUpSGlFKUjAtyZWNlaXZlZF9hdJRoIkMKB+oMAQgAAAAAAJRoK4aUUpSMBWV2ZW50lIwJJGlkZW50aWZ5lIwKZXZlbnRfanNvbpSMAnt9lIwCe32UhpSMBnRyYWl0c5R9lCiMBGNpdHmUjAbkuIrmtbeUjAN2aXCUiHWMA3BpaZR9lGgajA4rODYxMzgwMDEzODAwMJRzjApwcm9maWxlX29wlIwDc2V0lIwFdG91Y2iUfZSMBW9yZGVylE6MC3N0b3JlX2V2ZW50lIh1YmgDKYGUfZQoaAaMBXRyYWNrlGgIjANtLTKUaApdlChoD2gOKYGUfZQoaBGMDGFub255bW91c19pZJRoE4wDYS0xlGgVaE2MQGQ3YTgyZWVlMGUyZmVlNzQ3ZjA1ZDBjNGIwZDU2MGVjNzg5NWU1ZGIzMGQwNTUzOWE2ZTJhYTcyNWRmYWNjN2SUhpR1YmVoHmgPaB9oIkMKB+oMAQc7HgAAAJRoK4aUUpRoLmgxaDKMD09yZGVyIENvbXBsZXRlZJRoNIxHeyJvcmRlcl9pZCI6Im8tMSIsInRvdGFsIjo5OS41LCJwcm9kdWN0cyI6W3sic2t1IjoidC0xIiwicHJpY2UiOjk5LjV9XX2UjCB7ImNhbXBhaWduIjp7InNvdXJjZSI6IndlY2hhdCJ9fZSGlGg4fZRoPX2UaEBOaEJ9lCiMCnV0bV9zb3VyY2WUjAZ3ZWNoYXSUjAdjaGFubmVslGhcdWhEaAGMCU9yZGVySW5mb5STlCmBlH2UKIwIb3JkZXJfaWSUjANvLTGUaBGMCWNvbXBsZXRlZJSMBmFtb3VudJSMB2RlY2ltYWyUjAdEZWNpbWFslJOUjAU5OS41MJSFlFKUjAhjdXJyZW5jeZSMA0NOWZSMBmNvdXBvbpSMAJSMBWl0ZW1zlF2UfZQojANza3WUjAN0LTGUjAVwcmljZZRHQFjgAAAAAAB1YXViaEWIdWJlLg=="
)


def _messages() -> list[Message]:
    return [
        segment.parse({"type": "identify", "userId": "u-1", "messageId": "m-1",
                       "traits": {"phone": "13800138000", "city": "上海", "vip": True, "score": 1.5}}, AT),
        segment.parse({"type": "track", "anonymousId": "a-1", "messageId": "m-2", "event": "Order Completed",
                       "timestamp": "2026-12-01T07:59:30Z", "context": {"campaign": {"source": "wechat"}},
                       "properties": {"order_id": "o-1", "total": 99.5, "products": [{"sku": "t-1"}]}}, AT),
    ]


def test_messages_come_back_from_the_log_as_they_went_in_without_hashing_their_ids_again(monkeypatch):
    messages = _messages()
    data = intake.pack(messages)
    assert data[:1] != b"\x80" and data[:1] != b"P"  # MessagePack, not a pickle

    def no_hashing(*args):
        raise AssertionError("a claim's key was computed again")

    monkeypatch.setattr(crypto, "lookup_hash", no_hashing)
    back = intake.unpack(data)
    assert back == messages
    assert back[1].order == OrderInfo("o-1", "completed", Decimal("99.50"), items=[{"sku": "t-1"}])
    assert back[0].timestamp.tzinfo is not None and back[1].timestamp == datetime(2026, 12, 1, 7, 59, 30, tzinfo=UTC)
    assert back[0].traits == {"city": "上海", "vip": True, "score": 1.5}


def test_a_value_messagepack_cannot_hold_is_pickled_instead():
    message = _messages()[0]
    huge = Message(**{**as_record(message), "claims": message.claims, "distinct": message.distinct,
                      "traits": {"big": 2**70}})
    data = intake.pack([huge])
    assert data[:1] == b"P"
    assert intake.unpack(data) == [huge]


def test_a_row_written_by_an_earlier_version_is_read_into_todays_messages(monkeypatch):
    monkeypatch.setattr(crypto, "lookup_hash", lambda *a: pytest.fail("a claim's key was computed again"))
    identify, order = intake.unpack(LEGACY_ROW)
    assert isinstance(identify, Message) and isinstance(identify.claims[0], Claim)
    assert (identify.type, identify.message_id, identify.profile_op) == ("identify", "m-1", "set")
    assert [c.kind for c in identify.claims] == ["user_id", "phone"]
    assert identify.claims[1].value == "+8613800138000" and identify.pii == {"phone": "+8613800138000"}
    assert identify.claims[0].key == ("user_id", "fb2e9f80029fdb206d447785c5418109d6c7ad504bf8fd602844d62c2a481b53")
    assert identify.distinct == identify.claims[0]
    assert identify.traits == {"city": "上海", "vip": True}
    assert identify.timestamp == datetime(2026, 12, 1, 7, 59, tzinfo=UTC)
    assert order.order == OrderInfo("o-1", "completed", Decimal("99.50"), items=[{"sku": "t-1", "price": 99.5}])
    assert order.touch == {"utm_source": "wechat", "channel": "wechat"}
    assert order.event_json[1] == '{"campaign":{"source":"wechat"}}'
    assert intake.unpack(intake.pack([identify, order])) == [identify, order]  # and written anew as today's


def test_a_dead_letter_keeps_a_message_as_plain_data():
    record = as_record(_messages()[1])
    assert record["message_id"] == "m-2"
    assert record["claims"] == [{"kind": "anonymous_id", "value": "a-1", "key": record["claims"][0]["key"]}]
    assert record["order"]["amount"] == Decimal("99.50") and record["order"]["items"] == [{"sku": "t-1"}]

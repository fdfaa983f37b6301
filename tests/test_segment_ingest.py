"""Segment HTTP Tracking API: given a message, when posted, then stored, resolved and answered."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from siyu.analytics import sync
from siyu.analytics.engine import get_store
from siyu.customers.models import Identity, Person
from siyu.customers.queries import Lookup, find_person, with_recent_activity
from siyu.ingest.models import DeadLetter
from siyu.orders.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


def events(where: str = "TRUE") -> list[tuple]:
    return get_store().cursor().execute(
        f"SELECT type, event, person_id, properties FROM events WHERE {where} ORDER BY timestamp"
    ).fetchall()


def test_track_is_stored_and_creates_one_person(post_segment):
    r = post_segment("/v1/track", {"userId": "u1", "event": "Product Viewed", "messageId": "m1",
                                   "properties": {"sku": "A1"}})
    assert r.status_code == 200, r.content
    assert r.json()["accepted"] == 1
    rows = events()
    assert [(t, e) for t, e, _p, _props in rows] == [("track", "Product Viewed")]
    assert json.loads(rows[0][3]) == {"sku": "A1"}
    assert Person.objects.count() == 1


def test_duplicate_message_id_is_stored_once(post_segment):
    body = {"userId": "u1", "event": "Signed Up", "messageId": "dup-1"}
    assert post_segment("/v1/track", body).status_code == 200
    assert post_segment("/v1/track", body).status_code == 200
    assert len(events()) == 1


def test_identify_then_anonymous_history_joins_the_person(post_segment):
    post_segment("/v1/page", {"anonymousId": "dev-1", "name": "Home", "messageId": "p1"})
    post_segment("/v1/identify", {"anonymousId": "dev-1", "userId": "u9", "messageId": "i1",
                                  "traits": {"phone": "13800138000", "email": "A@Example.com", "gender": "f"}})
    person = find_person(Lookup("phone", "+8613800138000"))
    assert find_person(Lookup("anonymous_id", "dev-1")).pk == person.pk
    assert find_person(Lookup("email", "a@example.com")).pk == person.pk
    assert person.traits == {"gender": "female"}
    assert {row[2] for row in events()} == {person.pk}


def test_personal_data_never_reaches_the_event_store_in_clear(post_segment):
    post_segment("/v1/identify", {"userId": "u2", "traits": {"phone": "13900139000", "name": "张三",
                                                             "email": "z@example.com"},
                                  "context": {"ip": "1.2.3.4", "traits": {"email": "z@example.com"}}})
    post_segment("/v1/track", {"userId": "u2", "event": "Clicked", "properties": {"phone": "13900139000"}})
    blob = json.dumps(get_store().cursor().execute("SELECT * FROM events").fetchall(), default=str)
    for secret in ("13900139000", "张三", "z@example.com", "1.2.3.4"):
        assert secret not in blob
    identity = Identity.objects.get(kind="phone")
    assert "13900139000" not in identity.value_enc and "13900139000" not in identity.value_hash


def test_batch_with_one_bad_message_keeps_the_good_ones_and_dead_letters_the_bad(post_segment):
    body = {"batch": [
        {"type": "track", "userId": "u1", "event": "A", "messageId": "b1"},
        {"type": "track", "userId": "u1", "messageId": "b2"},
        {"type": "track", "anonymousId": "x", "event": "C", "messageId": "b3"},
    ]}
    r = post_segment("/v1/batch", body)
    assert r.status_code == 200
    data = r.json()
    assert data["accepted"] == 2
    assert data["rejected"] == [{"index": 1, "messageId": "b2", "field": "event",
                                 "reason": "track needs an event name"}]
    dl = DeadLetter.objects.get()
    assert (dl.message_index, dl.field) == (1, "event")
    assert len(events()) == 2


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1,2]", 400, "JSON object"),
        ({"event": "A"}, 400, "userId or anonymousId"),
        ({"userId": {"a": 1}, "event": "A"}, 400, "string or number"),
        ({"userId": "u", "event": "A", "timestamp": "yesterday"}, 400, "ISO-8601"),
        ({"userId": "u", "event": "A", "properties": [1]}, 400, "properties"),
        ({"userId": 123, "event": 456}, 400, "event: must be a string, not a number"),
        ({"userId": "u", "event": ["A"]}, 400, "event: must be a string, not an array"),
        ({"userId": "u", "event": " "}, 400, "event: track needs an event name"),
    ],
)
def test_bad_single_messages_are_refused_with_the_reason(post_segment, body, status, needle):
    r = post_segment("/v1/track", body)
    assert r.status_code == status
    assert needle in r.json()["error"]
    assert events() == []


@pytest.mark.parametrize(("body", "field"), [
    ({"previousId": "x"}, "userId"), ({"userId": "u"}, "previousId"), ({"anonymousId": "a", "previousId": "x"}, "userId"),
])
def test_an_alias_names_the_id_it_lacks(post_segment, body, field):
    r = post_segment("/v1/alias", body)
    assert (r.status_code, r.json()["field"]) == (400, field)
    assert r.json()["error"] == f"{field}: alias needs both userId and previousId"


def test_unknown_write_key_is_401(client, source):
    r = client.post("/v1/track", data=json.dumps({"userId": "u", "event": "A", "writeKey": "nope"}),
                    content_type="application/json")
    assert r.status_code == 401


def test_write_key_in_body_is_accepted(client, source):
    r = client.post("/v1/track", data=json.dumps({"userId": "u", "event": "A", "writeKey": source.write_key}),
                    content_type="application/json")
    assert r.status_code == 200


def test_oversized_message_is_413_and_oversized_batch_member_is_rejected(post_segment):
    big = {"userId": "u", "event": "A", "properties": {"x": "y" * 40_000}}
    assert post_segment("/v1/track", big).status_code == 413
    r = post_segment("/v1/batch", {"batch": [{"type": "track", **big}, {"type": "track", "userId": "u", "event": "B"}]})
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    assert "limit" in r.json()["rejected"][0]["reason"]
    big_batch = {"batch": [{"type": "track", "userId": "u", "event": "A", "properties": {"x": "y" * 30_000}}] * 20}
    assert post_segment("/v1/batch", big_batch).status_code == 413


def test_gzip_body(post_segment):
    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u", "event": "Z"}]}).encode())
    r = post_segment("/v1/batch", body, HTTP_CONTENT_ENCODING="gzip")
    assert r.status_code == 200, r.content
    assert r.json()["accepted"] == 1
    bad = post_segment("/v1/batch", b"not gzip", HTTP_CONTENT_ENCODING="gzip")
    assert bad.status_code == 400


def test_clock_skew_is_corrected_from_sent_at(post_segment):
    # The device clock runs 1 hour fast: it says it sent at 11:00 an event it logged at 10:59.
    r = post_segment("/v1/batch", {"sentAt": "2030-01-01T11:00:00Z", "batch": [
        {"type": "track", "userId": "u", "event": "A", "originalTimestamp": "2030-01-01T10:59:00Z"}]})
    assert r.status_code == 200
    ts = get_store().cursor().execute("SELECT timestamp, received_at FROM events").fetchone()
    assert ts[1] - ts[0] == timedelta(minutes=1)


def test_order_completed_records_an_order_and_computed_attributes(post_segment):
    for i, total in enumerate(["100.50", "99.50"]):
        post_segment("/v1/track", {"userId": "buyer", "event": "Order Completed", "messageId": f"o{i}",
                                   "timestamp": datetime(2026, 1, 1 + i, tzinfo=UTC).isoformat(),
                                   "properties": {"order_id": f"ORD-{i}", "total": total, "currency": "cny"}})
    person = find_person(Lookup("user_id", "buyer"))
    assert person.order_count == 2
    assert str(person.total_spend) == "200.00"
    assert str(person.average_order_value) == "100.00"
    assert person.first_order_at == datetime(2026, 1, 1, tzinfo=UTC)
    post_segment("/v1/track", {"userId": "buyer", "event": "Order Refunded", "properties": {"order_id": "ORD-1"}})
    person.refresh_from_db()
    assert (person.order_count, str(person.total_spend)) == (1, "100.50")
    assert Order.objects.get(external_id="ORD-1").status == "refunded"


def test_retried_order_event_with_a_new_message_id_is_not_double_counted(post_segment):
    body = {"userId": "b", "event": "Order Completed", "properties": {"order_id": "X1", "total": 10}}
    post_segment("/v1/track", {**body, "messageId": "a"})
    post_segment("/v1/track", {**body, "messageId": "b"})
    # Sent again with another total, and twice in one batch: still the one order of 10.
    again = {**body, "properties": {"order_id": "X1", "total": 999}}
    post_segment("/v1/batch", {"batch": [{**again, "type": "track", "messageId": "c"},
                                         {**body, "type": "track", "messageId": "d",
                                          "properties": {"order_id": "X2", "total": 5}},
                                         {**body, "type": "track", "messageId": "e",
                                          "properties": {"order_id": "X2", "total": 7}}]})
    assert sorted(Order.objects.values_list("external_id", "amount")) == [("X1", 10), ("X2", 5)]
    assert find_person(Lookup("user_id", "b")).order_count == 2
    # Analytics count events: each order is there once, with its first total.
    events = get_store().cursor().execute(
        "SELECT order_id, revenue, message_id FROM events WHERE event = 'Order Completed' ORDER BY order_id").fetchall()
    assert events == [("X1", 10, "a"), ("X2", 5, "d")]


def test_an_order_names_its_currency_by_code_or_usual_alias_and_nothing_else(post_segment):
    def order(n: int, currency):
        return post_segment("/v1/track", {"userId": "c", "event": "Order Completed", "messageId": f"cur{n}",
                                          "properties": {"order_id": f"C{n}", "total": 1, "currency": currency}})

    for n, currency in enumerate(["usd", " rmb ", "¥", "HKD", "cnh"]):
        assert order(n, currency).status_code == 200
    assert list(Order.objects.order_by("external_id").values_list("currency", flat=True)) == [
        "USD", "CNY", "CNY", "HKD", "CNH"]
    for n, currency in enumerate(["XYZ", "renminbi", 156, ["CNY"]], start=10):
        bad = order(n, currency)
        assert bad.status_code == 400, currency
        assert bad.json()["field"] == "properties.currency"
        assert "ISO 4217" in bad.json()["error"]
    assert Order.objects.count() == 5


def test_first_touch_channel_and_utm_are_kept(post_segment):
    post_segment("/v1/page", {"anonymousId": "d", "timestamp": "2026-01-01T00:00:00Z",
                              "context": {"campaign": {"source": "xiaohongshu", "medium": "kol", "name": "spring"}}})
    post_segment("/v1/track", {"anonymousId": "d", "event": "Scan", "timestamp": "2026-01-02T00:00:00Z",
                               "properties": {"store": "SH-01", "qr_scene": "table-5"}})
    person = find_person(Lookup("anonymous_id", "d"))
    # The second message's touch waits in the event store for the fold; a profile read adds it.
    assert "store" not in person.last_touch
    for read in (with_recent_activity(person), _folded(person)):
        assert read.acquisition_channel == "xiaohongshu"
        assert read.first_touch["utm_campaign"] == "spring"
        assert read.last_touch["store"] == "SH-01"
        assert read.last_seen == datetime(2026, 1, 2, tzinfo=UTC)


def _folded(person: Person) -> Person:
    sync.fold_activity(get_store())
    return Person.objects.get(pk=person.pk)


def test_alias_merges_and_the_merge_is_explained(post_segment):
    post_segment("/v1/track", {"anonymousId": "old-device", "event": "A", "messageId": "x1"})
    post_segment("/v1/track", {"userId": "member-7", "event": "B", "messageId": "x2"})
    assert Person.objects.filter(merged_into__isnull=True).count() == 2
    post_segment("/v1/alias", {"previousId": "old-device", "userId": "member-7", "messageId": "al"})
    survivor = find_person(Lookup("user_id", "member-7"))
    assert find_person(Lookup("anonymous_id", "old-device")).pk == survivor.pk
    from siyu.customers.queries import merge_history, timeline

    history = merge_history(survivor)
    assert len(history) == 1 and history[0]["reason"] == "alias"
    assert "al" in history[0]["explanation"]
    assert [e["event"] for e in timeline(survivor)] == ["$alias", "B", "A"]


def test_touch_without_activity_still_sets_first_and_last_touch(db):
    from siyu.customers.profile import ProfileUpdate, apply_updates

    person = Person.objects.create()
    at = datetime(2026, 2, 1, tzinfo=UTC)
    apply_updates([ProfileUpdate(person_id=person.pk, at=at, touch={"channel": "pos", "store": "S1"},
                                 touches_seen=False)])
    person.refresh_from_db()
    assert (person.acquisition_channel, person.first_touch_at, person.last_seen) == ("pos", at, None)
    assert person.last_touch["store"] == "S1"

"""The pipeline processes a batch column-wise and folds profile facts per person; the result must
be exactly what processing the same messages one at a time gives."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from siyu.analytics import sync
from siyu.analytics.engine import get_store
from siyu.customers.models import Identity, Person
from siyu.customers.profile import read_pii
from siyu.customers.queries import with_recent_activity
from siyu.ingest import pipeline, segment, sensors
from siyu.orders.models import Order

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 6, 1, tzinfo=UTC)


def _messages(run: str) -> list:
    """A shuffled mix for a few customers: identifies, touches (some at equal times), profile
    operations, orders and refunds, out of time order."""
    rng = random.Random(5)
    raws = []
    for n in range(60):
        user = f"u{n % 6}"
        at = T0 + timedelta(minutes=rng.choice([0, 5, 5, 30, 90]) + n % 4)
        stamp = at.isoformat()
        kind = n % 10
        if kind == 0:
            raws.append(("segment", {"type": "identify", "userId": user, "anonymousId": f"a{n % 6}",
                                     "timestamp": stamp, "traits": {"phone": f"1380013800{n % 6}",
                                                                    "level": f"L{n}", "name": f"名{n}"}}))
        elif kind in (1, 2, 3):
            raws.append(("segment", {"type": "track", "userId": user, "event": "Viewed", "timestamp": stamp,
                                     "properties": {"channel": rng.choice(["douyin", "store_qr", "h5"]),
                                                    "store": f"S{n % 3}"}}))
        elif kind == 4:
            raws.append(("segment", {"type": "page", "anonymousId": f"a{n % 6}", "timestamp": stamp,
                                     "context": {"campaign": {"source": "xhs", "name": f"c{n}"}}}))
        elif kind == 5:
            raws.append(("segment", {"type": "track", "userId": user, "event": "Order Completed",
                                     "timestamp": stamp, "properties": {"order_id": f"o{n}", "total": 10 + n,
                                                                        "store": "S1"}}))
        elif kind == 6:
            raws.append(("segment", {"type": "track", "userId": user, "event": "Order Refunded",
                                     "timestamp": stamp, "properties": {"order_id": f"o{n - 1}", "total": 3}}))
        elif kind == 7:
            raws.append(("sensors", {"type": "profile_increment", "distinct_id": user, "login_id": user,
                                     "time": int(at.timestamp() * 1000), "properties": {"points": n}}))
        elif kind == 8:
            raws.append(("sensors", {"type": "profile_append", "distinct_id": user, "login_id": user,
                                     "time": int(at.timestamp() * 1000) + 1, "properties": {"tags": [f"t{n % 4}"]}}))
        else:
            raws.append(("segment", {"type": "track", "anonymousId": f"a{n % 6}", "event": "Opened",
                                     "timestamp": stamp}))
    for n in range(30):  # customers who are only ever seen: touches at equal times, the last of equals wins
        at = (T0 + timedelta(minutes=n % 4)).isoformat()
        raws.append(("segment", {"type": "track", "userId": f"v{n % 3}", "event": "Viewed", "timestamp": at,
                                 "properties": {"channel": f"ch{n}", "store": f"S{n % 5}"}}))
    order = list(range(len(raws)))
    rng.shuffle(order)
    raws = [raws[i] for i in order]
    # A refund before its order is unknown when messages go one at a time (a batch records orders
    # first): not what this test is about, so refunds come last.
    raws.sort(key=lambda r: r[1].get("event") == "Order Refunded")
    out = []
    for i, (protocol, raw) in enumerate(raws):
        if protocol == "segment":
            out.append((1, segment.parse({**raw, "messageId": f"{run}-{i}"}, RECEIVED)))
        else:
            out.append((1, sensors.parse({**raw, "_track_id": f"{run}-{i}"}, RECEIVED)))
    return out


def _profiles(*, fold: bool = True) -> dict[str, dict]:
    """Every customer's profile, keyed by the hash of their user id: once the activity is folded
    into the database (``fold``), or as read with the activity not yet folded."""
    if fold:
        sync.fold_activity(get_store())
    out = {}
    for value_hash, person_id in Identity.objects.filter(kind="user_id").values_list("value_hash", "person_id"):
        p = Person.objects.get(pk=person_id)
        if not fold:
            with_recent_activity(p)
        out[value_hash] = {
            "traits": p.traits, "pii": read_pii(p), "first_seen": p.first_seen, "last_seen": p.last_seen,
            "channel": p.acquisition_channel, "first_touch": p.first_touch, "last_touch": p.last_touch,
            "first_touch_at": p.first_touch_at, "last_touch_at": p.last_touch_at, "orders": p.order_count,
            "spend": p.total_spend, "first_order_at": p.first_order_at, "last_order_at": p.last_order_at,
        }
    return out


def _wipe() -> None:
    from siyu.customers.identity import CACHE

    Order.objects.all().delete()
    Identity.objects.all().delete()
    Person.objects.all().delete()
    CACHE.clear()


def test_a_batch_gives_the_same_profiles_as_one_message_at_a_time(source):
    for _s, m in _messages("one"):
        pipeline.process([(source.pk, m)])
    one_by_one = _profiles()
    assert len(one_by_one) == 9
    _wipe()
    outcome = pipeline.process([(source.pk, m) for _s, m in _messages("all")])
    assert outcome.accepted == 90
    batched = _profiles()
    _same(batched, one_by_one)


def test_profiles_read_before_the_activity_is_folded_are_the_same_as_after(source):
    """Messages of known customers leave their seen times and touches in the event store until
    the fold; a profile read meanwhile adds them, and shows what the fold then writes."""
    pipeline.process([(source.pk, m) for _s, m in _messages("first")[:12]])  # creates the customers
    sync.fold_activity(get_store())
    pipeline.process([(source.pk, m) for _s, m in _messages("second")])
    assert get_store().activity_size() > 0
    before = _profiles(fold=False)
    stale = {p.pk: p.last_seen for p in Person.objects.all()}
    after = _profiles()
    assert get_store().activity_size() == 0
    assert any(stale[p.pk] != p.last_seen for p in Person.objects.all())  # the fold wrote something
    _same(before, after)


def _same(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert got.keys() == expected.keys()
    for customer, profile in expected.items():
        for name, value in profile.items():  # one field at a time, so a failure names it
            assert (name, got[customer][name]) == (name, value)


def test_dedupe_window_stays_compact_and_forgets_the_oldest_first():
    window = pipeline.DedupeWindow(limit=1_000)
    window.GENERATION = 100
    window._loaded = True  # nothing to load: no event store involved

    def msgs(lo, hi):
        return [(1, segment.parse({"type": "track", "userId": "u", "event": "E", "messageId": f"m{i}"}, RECEIVED))
                for i in range(lo, hi)]

    first = msgs(0, 500)
    window.add(first)
    assert window.fresh(first) == []
    unseen = window.fresh(msgs(600, 650) + msgs(350, 600)[::-1])  # in any order
    assert [m.message_id for _s, m in unseen] == [f"m{i}" for i in range(600, 650)] + [
        f"m{i}" for i in range(599, 499, -1)]  # only the unseen ones, in the order given
    assert all(isinstance(g, np.ndarray) and g.dtype == np.int64 for g in window._old)
    for lo in range(500, 1_600, 100):
        window.add(msgs(lo, lo + 100))
    assert len(window) <= 1_000
    assert len(window.fresh(msgs(0, 100))) == 100  # the oldest were forgotten
    assert window.fresh(msgs(1_500, 1_600)) == []  # the newest are remembered
    # the same id from another source is another message
    assert len(window.fresh([(2, m) for _s, m in msgs(1_500, 1_510)])) == 10


def test_a_batch_that_fails_midway_leaves_neither_store_changed(monkeypatch):
    """The DuckDB insert runs beside the operational transaction: a failure after it started
    rolls both back, and the store's lock is free for the next batch."""
    from siyu.analytics.engine import get_store

    def msg(i: int, event: str = "Viewed"):
        return (None, segment.parse({"type": "track", "userId": f"f{i}", "event": event, "messageId": f"f-{i}",
                                     "timestamp": T0.isoformat()}, RECEIVED))

    def broken(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "_record_orders", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.process([msg(i) for i in range(5)])
    events = get_store().cursor().execute("SELECT count(*) FROM events").fetchone()[0]
    assert (Person.objects.count(), Identity.objects.count(), events) == (0, 0, 0)

    monkeypatch.undo()
    outcome = pipeline.process([msg(i) for i in range(5)])  # retried: nothing was remembered as seen
    assert outcome.accepted == 5
    assert get_store().cursor().execute("SELECT count(*) FROM events").fetchone()[0] == 5
    assert Person.objects.count() == 5


def test_json_beyond_64_bit_integers_is_still_written():
    from siyu.db import json_param, json_text

    big = {"points": 2**70, "名": "值"}
    assert json_text(big) == '{"points": 1180591620717411303424, "名": "值"}'
    adapted = json_param()(big)  # text on SQLite, a jsonb wrapper with our dumps on PostgreSQL
    text = adapted if isinstance(adapted, str) else adapted.dumps(adapted.obj)
    assert json.loads(text) == big


def test_a_batch_records_its_merges_with_its_events():
    """Merges made by a batch (and any recorded elsewhere since the last sync) reach the event
    store in the events' own transaction, and the sync position moves past them."""
    from django.db import transaction

    from siyu.analytics import sync
    from siyu.analytics.engine import get_store
    from siyu.customers.identity import merge_persons

    store = get_store()
    elsewhere = [Person.objects.create() for _ in range(2)]
    with transaction.atomic():  # recorded by another process, say, and not synced yet
        merge_persons(elsewhere[0].pk, elsewhere[1].pk, reason="test", evidence={}, actor_label="t")
    anonymous = segment.parse({"type": "track", "anonymousId": "a-1", "event": "Viewed", "messageId": "m-1",
                               "timestamp": T0.isoformat()}, RECEIVED)
    known = segment.parse({"type": "track", "userId": "u-1", "event": "Viewed", "messageId": "m-2",
                           "timestamp": T0.isoformat()}, RECEIVED)
    both = segment.parse({"type": "identify", "userId": "u-1", "anonymousId": "a-1", "messageId": "m-3",
                          "timestamp": (T0 + timedelta(minutes=1)).isoformat()}, RECEIVED)
    pipeline.process([(None, anonymous), (None, known)])
    outcome = pipeline.process([(None, both)])

    survivor = outcome.person_ids[0]
    merged = ({p for p in Person.objects.values_list("pk", flat=True)} - {survivor, *(p.pk for p in elsewhere)})
    rows = store.cursor().execute("SELECT old_person_id, person_id FROM person_overrides ORDER BY 1").fetchall()
    assert rows == sorted([(elsewhere[0].pk, elsewhere[1].pk), (merged.pop(), survivor)])
    assert sync.sync_overrides(store) == 0  # nothing left to copy
    assert store.cursor().execute("SELECT DISTINCT person_id FROM analytics_events").fetchall() == [(survivor,)]


def test_a_batch_whose_overrides_fail_is_recovered_by_its_retry(monkeypatch):
    """The overrides share the events' transaction: if writing them fails, neither the events nor
    the position are kept (the operational facts are), and the same batch sent again repairs both."""
    from siyu.analytics import engine
    from siyu.analytics.engine import get_store

    store = get_store()
    first = [(None, segment.parse({"type": "track", "anonymousId": "a-2", "event": "Viewed", "messageId": "r-1",
                                   "timestamp": T0.isoformat()}, RECEIVED)),
             (None, segment.parse({"type": "track", "userId": "u-2", "event": "Viewed", "messageId": "r-2",
                                   "timestamp": T0.isoformat()}, RECEIVED))]
    pipeline.process(first)
    merging = [(None, segment.parse({"type": "identify", "userId": "u-2", "anonymousId": "a-2", "messageId": "r-3",
                                     "timestamp": T0.isoformat()}, RECEIVED))]

    def broken(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(engine, "_write_overrides", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        pipeline.process(merging)
    count = "SELECT count(*) FROM events"
    assert store.cursor().execute(count).fetchone() == (2,)
    assert store.get_position("person_merges") == 0
    monkeypatch.undo()
    assert pipeline.process(merging).accepted == 1  # the writer retries a failed group request by request
    assert store.cursor().execute(count).fetchone() == (3,)
    assert store.cursor().execute("SELECT count(*) FROM person_overrides").fetchone() == (1,)
    assert store.get_position("person_merges") > 0


def test_a_rich_update_writes_back_only_the_columns_it_changed():
    """Profiles with traits are read, changed and written back; a column no update changed is
    not rewritten (nor decoded): its stored text stays byte for byte."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from siyu.customers.profile import ProfileUpdate, apply_updates

    person = Person.objects.create(first_seen=T0, last_seen=T0, traits={"level": "L1"})
    odd = '{ "channel" :  "wechat" ,"at":"2026-03-01T08:00:00+00:00" }'  # spaced as no encoder writes it
    with connection.cursor() as cur:
        cur.execute("UPDATE customers_person SET first_touch = %s, first_touch_at = %s WHERE id = %s",
                    [odd, T0, person.pk])
    with CaptureQueriesContext(connection) as queries:
        apply_updates([ProfileUpdate(person_id=person.pk, at=T0 + timedelta(hours=1), traits={"level": "L2"},
                                     touch={"channel": "douyin"})])
    updates = [q["sql"] for q in queries.captured_queries if "UPDATE customers_person SET" in q["sql"]]
    assert updates and not any("first_touch" in sql or "first_seen" in sql for sql in updates)
    if connection.vendor == "sqlite":  # PostgreSQL's jsonb keeps no spacing to compare
        with connection.cursor() as cur:
            cur.execute("SELECT first_touch FROM customers_person WHERE id = %s", [person.pk])
            assert cur.fetchone()[0] == odd
    person.refresh_from_db()
    assert person.traits == {"level": "L2"} and person.last_seen == T0 + timedelta(hours=1)
    assert person.first_seen == T0 and person.acquisition_channel == ""
    assert person.last_touch["channel"] == "douyin" and person.first_touch == json.loads(odd)

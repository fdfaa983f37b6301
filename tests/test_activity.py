"""Customers' seen times and touches: written by ingestion for the customers it creates, left in
the event store for the others until ``sync.fold_activity`` folds them in, and added to a
profile read meanwhile."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime

import pytest
from django.db import transaction

from siyu.accounts.actor import Actor
from siyu.analytics import sync
from siyu.analytics.engine import get_store
from siyu.customers.identity import merge_persons
from siyu.customers.models import Person
from siyu.customers.queries import Lookup, find_person, profile
from siyu.ingest import pipeline, processor, segment, writer

pytestmark = pytest.mark.django_db(transaction=True)
RECEIVED = datetime(2026, 6, 1, tzinfo=UTC)


def _ingest(source, *messages: dict) -> None:
    pipeline.process([(source.pk, segment.parse({"messageId": f"m{time.perf_counter_ns()}-{i}", **m}, RECEIVED))
                      for i, m in enumerate(messages)])


def _seen(user: str, at: str, **properties) -> dict:
    return {"type": "track", "userId": user, "event": "Viewed", "timestamp": at, "properties": properties}


def _person(user: str) -> Person:
    return find_person(Lookup("user_id", user))


def test_a_known_customers_activity_waits_in_the_event_store_and_a_profile_read_adds_it(source):
    _ingest(source, _seen("u1", "2026-03-01T08:00:00Z", channel="douyin"))
    created = _person("u1")  # written at once: the batch created this customer
    assert (created.first_seen, created.last_seen) == (datetime(2026, 3, 1, 8, tzinfo=UTC),) * 2
    assert created.acquisition_channel == "douyin"

    _ingest(source, _seen("u1", "2026-03-05T09:00:00Z", store="SH-01"), _seen("u1", "2026-02-20T07:00:00Z"))
    stored = _person("u1")
    assert stored.last_seen == datetime(2026, 3, 1, 8, tzinfo=UTC)  # not yet folded
    assert get_store().activity_size() == 2

    read = profile(_person("u1"), Actor.system("test"))["computed"]
    assert (read["first_seen"], read["last_seen"]) == ("2026-02-20T07:00:00+00:00", "2026-03-05T09:00:00+00:00")
    assert read["last_touch"] == {"store": "SH-01", "channel": "store_qr", "at": "2026-03-05T09:00:00+00:00"}
    assert read["acquisition_channel"] == "douyin"  # the earlier message had no touch

    assert sync.fold_activity(get_store()) == 1
    folded = _person("u1")
    assert (folded.first_seen, folded.last_seen) == (datetime(2026, 2, 20, 7, tzinfo=UTC),
                                                     datetime(2026, 3, 5, 9, tzinfo=UTC))
    assert folded.last_touch["store"] == "SH-01" and folded.first_touch["channel"] == "douyin"
    assert get_store().activity_size() == 0
    assert profile(folded, Actor.system("test"))["computed"] == read


def test_a_fold_interrupted_before_the_store_is_cleared_folds_the_same_again(source, monkeypatch):
    _ingest(source, _seen("u1", "2026-03-01T08:00:00Z"))
    _ingest(source, _seen("u1", "2026-03-05T09:00:00Z", channel="h5"))
    store = get_store()

    def crash(upto: int) -> None:
        raise RuntimeError("stopped before clearing")

    monkeypatch.setattr(store, "clear_activity", crash)
    with pytest.raises(RuntimeError):
        sync.fold_activity(store)
    once = Person.objects.values().get(pk=_person("u1").pk)
    assert once["last_seen"] == datetime(2026, 3, 5, 9, tzinfo=UTC)
    monkeypatch.undo()
    assert sync.fold_activity(store) == 1
    assert Person.objects.values().get(pk=once["id"]) == once
    assert store.activity_size() == 0


def test_a_fold_writes_what_a_profile_read_showed_for_many_customers_and_times(source):
    """The fold's parameters are made by the event store (``activity_to_fold``): times with and
    without a fraction of a second, touches or none, ties, several customers. What it writes is
    what a profile read showed before, and the stored times compare equal to the same datetimes
    (the text SQLite keeps is Django's)."""
    rng = random.Random(7)
    users = [f"r{i}" for i in range(12)]
    _ingest(source, *(_seen(u, "2026-01-01T00:00:00Z") for u in users))
    times = ["2026-03-01T08:00:00Z", "2026-03-01T08:00:00.5Z", "2026-03-01T08:00:00.000001Z",
             "2026-02-28T23:59:59.999999Z", "2026-03-02T10:30:00Z"]
    touches = [{}, {"channel": "douyin"}, {"utm_source": "wechat", "utm_campaign": "秋季"}, {"store": "SH-01"}]
    for _ in range(3):
        _ingest(source, *(_seen(rng.choice(users), rng.choice(times), **rng.choice(touches)) for _ in range(20)))
    actor = Actor.system("test")
    before = {u: profile(_person(u), actor)["computed"] for u in users}
    sync.fold_activity(get_store())
    assert get_store().activity_size() == 0
    for u in users:
        assert profile(_person(u), actor)["computed"] == before[u], u
        stored = _person(u)
        assert Person.objects.filter(pk=stored.pk, last_seen=stored.last_seen, first_seen=stored.first_seen).exists()
        if stored.last_touch_at is not None:
            assert Person.objects.filter(pk=stored.pk, last_touch_at=stored.last_touch_at).exists()


def test_activity_of_a_customer_merged_since_is_folded_into_the_survivor(source):
    _ingest(source, _seen("a", "2026-03-01T08:00:00Z"), _seen("b", "2026-03-01T08:00:00Z"),
            _seen("c", "2026-03-01T08:00:00Z"))
    _ingest(source, _seen("a", "2026-04-01T08:00:00Z", utm_source="wechat"), _seen("c", "2026-04-02T08:00:00Z"))
    a, b, c = _person("a"), _person("b"), _person("c")
    # a into b in the database only (another process; not yet in the event store's overrides),
    # then b into c: the chain is followed to c.
    with transaction.atomic():
        merge_persons(a.pk, b.pk, reason="test", evidence={}, actor_label="t")
        merge_persons(b.pk, c.pk, reason="test", evidence={}, actor_label="t")
    assert get_store().overrides_of([a.pk]) == {}

    sync.fold_activity(get_store())
    c.refresh_from_db()
    assert c.last_seen == datetime(2026, 4, 2, 8, tzinfo=UTC)
    assert c.last_touch == {"utm_source": "wechat", "channel": "wechat", "at": "2026-04-01T08:00:00+00:00"}
    assert Person.objects.get(pk=a.pk).last_seen == datetime(2026, 3, 1, 8, tzinfo=UTC)  # left as merged


def test_activity_of_an_erased_customer_is_dropped(source):
    _ingest(source, _seen("u1", "2026-03-01T08:00:00Z"))
    _ingest(source, _seen("u1", "2026-03-05T09:00:00Z"))
    Person.objects.filter(pk=_person("u1").pk).update(erased_at=datetime(2026, 6, 1, tzinfo=UTC))
    sync.fold_activity(get_store())
    assert Person.objects.get(erased_at__isnull=False).last_seen == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert get_store().activity_size() == 0


def test_a_referral_code_in_the_properties_is_part_of_the_folded_touch(source):
    _ingest(source, _seen("u1", "2026-03-01T08:00:00Z"))
    _ingest(source, _seen("u1", "2026-03-02T08:00:00Z", invite_code="FRIEND-7", note="no referrer_code here"),
            _seen("u1", "2026-03-03T08:00:00Z", referrer_code=""))
    sync.fold_activity(get_store())
    assert _person("u1").last_touch == {"referrer": "FRIEND-7", "at": "2026-03-02T08:00:00+00:00"}


def test_ingestion_folds_once_the_oldest_activity_has_waited_fold_seconds(source, monkeypatch):
    _ingest(source, _seen("u1", "2026-03-01T08:00:00Z"))
    _ingest(source, _seen("u1", "2026-03-05T09:00:00Z"))
    assert pipeline.ACTIVITY.pending and get_store().activity_size() == 1
    monkeypatch.setattr(pipeline, "FOLD_SECONDS", 0.0)
    _ingest(source, _seen("u1", "2026-03-06T09:00:00Z"))
    assert not pipeline.ACTIVITY.pending and get_store().activity_size() == 0
    assert _person("u1").last_seen == datetime(2026, 3, 6, 9, tzinfo=UTC)


def test_the_writer_folds_when_idle_and_before_it_stops(source, settings, monkeypatch):
    settings.SIYU_INGEST_SYNC = False
    _ingest(source, _seen("u1", "2026-03-01T08:00:00Z"), _seen("u2", "2026-03-01T08:00:00Z"))
    messages = [(source.pk, segment.parse({"messageId": f"w{i}", **_seen(f"u{i}", "2026-03-09T10:00:00Z")},
                                          RECEIVED)) for i in (1, 2)]

    idle = writer.IngestWriter(10)
    monkeypatch.setattr(processor, "IDLE_FOLD_SECONDS", 0.1)
    idle.submit(messages[:1]).result(timeout=30)
    deadline = time.monotonic() + 10
    while _person("u1").last_seen != datetime(2026, 3, 9, 10, tzinfo=UTC) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _person("u1").last_seen == datetime(2026, 3, 9, 10, tzinfo=UTC)
    assert idle.stop(timeout=30)

    stopping = writer.IngestWriter(10)
    monkeypatch.setattr(processor, "IDLE_FOLD_SECONDS", 60.0)
    stopping.submit(messages[1:]).result(timeout=30)
    assert stopping.flush(timeout=30)
    assert _person("u2").last_seen == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert stopping.stop(timeout=30)
    assert _person("u2").last_seen == datetime(2026, 3, 9, 10, tzinfo=UTC)
    assert get_store().activity_size() == 0



def test_a_bulk_load_of_history_writes_seen_times_with_each_batch(source):
    """``siyu demo`` feeds history with ``fold_later=False``: nothing waits in the store."""
    def bulk(at: str) -> None:
        pipeline.process([(source.pk, segment.parse(
            {"messageId": f"b{at}", **_seen("u1", at, store="S1")}, RECEIVED))], fold_later=False)

    bulk("2026-03-01T08:00:00Z")
    bulk("2026-03-05T09:00:00Z")
    assert _person("u1").last_seen == datetime(2026, 3, 5, 9, tzinfo=UTC)
    assert get_store().activity_size() == 0 and not pipeline.ACTIVITY.pending

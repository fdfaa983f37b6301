"""The event store's syncs from the operational database: rerunnable, never duplicating."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from siyu.analytics import sync
from siyu.analytics.engine import get_store
from siyu.customers.identity import merge_persons
from siyu.customers.models import Person, PersonMerge
from siyu.orders.actions import OrderFact, record_orders

pytestmark = pytest.mark.django_db


def _order_events() -> list[tuple]:
    return get_store().cursor().execute(
        "SELECT order_id, revenue, person_id FROM events WHERE event = 'Order Completed' ORDER BY order_id"
    ).fetchall()


def test_imported_orders_reach_the_event_store_once_however_often_sync_runs():
    person = Person.objects.create()
    record_orders([
        OrderFact(external_id=f"POS-{i}", person_id=person.pk, placed_at=datetime(2026, 3, i + 1, tzinfo=UTC),
                  amount=Decimal("12.50"), origin="import:1")
        for i in range(3)
    ])
    record_orders([OrderFact(external_id="WEB-1", person_id=person.pk, placed_at=datetime(2026, 3, 9, tzinfo=UTC),
                             amount=Decimal("9"), origin="event:1")])
    assert sync.sync_imported_orders(get_store(), batch=2) == 3
    assert sync.sync_imported_orders(get_store()) == 0
    assert _order_events() == [(f"POS-{i}", Decimal("12.50"), person.pk) for i in range(3)]


def test_merge_overrides_keep_every_chain_one_hop_long():
    a, b, c = (Person.objects.create() for _ in range(3))
    merge_persons(a.pk, b.pk, reason="test", evidence={}, actor_label="t")
    sync.sync_overrides(get_store())
    merge_persons(b.pk, c.pk, reason="test", evidence={}, actor_label="t")
    assert sync.sync_overrides(get_store()) == 1
    assert sync.sync_overrides(get_store()) == 0
    rows = get_store().cursor().execute(
        "SELECT old_person_id, person_id FROM person_overrides ORDER BY old_person_id").fetchall()
    assert rows == [(a.pk, c.pk), (b.pk, c.pk)]


def test_overrides_recorded_together_are_one_hop_in_any_order():
    store, at = get_store(), datetime(2026, 5, 1, tzinfo=UTC)
    store.apply_overrides([(9, 1, at)])  # an earlier merge: 9 -> 1
    # In one call: 1 -> 2 after 2 -> 3 (the chain arrives backwards), and 4 -> 5 -> 6.
    store.apply_overrides([(2, 3, at), (1, 2, at), (4, 5, at), (5, 6, at)])
    rows = store.cursor().execute("SELECT old_person_id, person_id FROM person_overrides ORDER BY 1").fetchall()
    assert rows == [(1, 3), (2, 3), (4, 6), (5, 6), (9, 3)]
    store.apply_overrides([])
    assert store.cursor().execute("SELECT count(*) FROM person_overrides").fetchone() == (5,)


def _merge_row(merged: Person, into: Person, pk: int) -> None:
    """A merge recorded with the id ``pk`` (the event store is left to the syncs)."""
    PersonMerge.objects.create(pk=pk, merged=merged, into=into, reason="test", actor_label="t")


def _late_merge(merged: Person, into: Person, pk: int) -> None:
    """A merge row with an id below the sync position, as one committed late on PostgreSQL is."""
    _merge_row(merged, into, pk)
    Person.objects.filter(pk=merged.pk).update(merged_into=into)


def test_a_merge_committed_after_a_later_one_was_synced_still_reaches_the_event_store():
    store = get_store()
    a, b, c, d, e, x = (Person.objects.create() for _ in range(6))
    _merge_row(a, b, pk=50)
    assert sync.sync_overrides(store) == 1  # the position is now 50
    _late_merge(c, d, pk=40)
    assert sync.sync_overrides(store) == 0  # behind the position: not seen by the ordinary sync
    # Synced before the late merge is found: its target merged on (d -> e), and x merged into c.
    _merge_row(d, e, pk=60)
    _merge_row(x, c, pk=70)
    assert sync.sync_overrides(store) == 2
    assert sync.sync_all(store)["late_merges"] == 1
    assert sync.sync_all(store)["late_merges"] == 0  # nothing is applied twice
    rows = store.cursor().execute("SELECT old_person_id, person_id FROM person_overrides ORDER BY 1").fetchall()
    # Every chain one hop long: c's and x's events belong to e.
    assert rows == sorted([(a.pk, b.pk), (c.pk, e.pk), (d.pk, e.pk), (x.pk, e.pk)])


def test_two_concurrent_merges_that_make_a_cycle_are_not_reported_for_ever():
    store = get_store()
    c, d = Person.objects.create(), Person.objects.create()
    _merge_row(d, c, pk=50)
    assert sync.sync_overrides(store) == 1
    _late_merge(c, d, pk=40)  # committed late, the other way round
    assert sync.sync_late_merges(store) == 0
    rows = store.cursor().execute("SELECT old_person_id, person_id FROM person_overrides").fetchall()
    assert rows == [(d.pk, c.pk)]


def test_merging_a_person_into_itself_is_refused():
    p = Person.objects.create()
    with pytest.raises(ValueError, match="itself"):
        merge_persons(p.pk, p.pk, reason="test", evidence={}, actor_label="t")


@pytest.mark.parametrize("chunk", [1, 50_000])  # one person a chunk: each column typed per chunk
def test_the_persons_copy_carries_every_attribute_as_the_operational_database_holds_it(chunk):
    from siyu.valuation.models import CustomerPrediction

    t = datetime(2026, 3, 4, 5, 6, 7, 891_000, tzinfo=UTC)
    referrer = Person.objects.create()
    rich = Person.objects.create(
        first_seen=t, last_seen=datetime(2026, 3, 9, tzinfo=UTC), acquisition_channel="store_qr",
        first_touch={"store": "SH01", "utm_source": "wechat", "qr_scene": "table-3", "at": t.isoformat()},
        traits={"gender": "女", "birthday": "1990-03-04", "city": "上海", "points": 5}, referrer=referrer)
    CustomerPrediction.objects.create(person=rich, model_id=1, p_alive=0.5, expected_purchases=1.25,
                                      predicted_spend=Decimal("10.57"), clv=Decimal("9.99"), computed_at=t)
    merge_persons(Person.objects.create().pk, rich.pk, reason="test", evidence={}, actor_label="test")
    Person.objects.filter(pk=rich.pk).update(  # as if from orders (the merge recounted them: none)
        first_order_at=datetime(2026, 3, 5, tzinfo=UTC), last_order_at=t, order_count=2, total_spend=Decimal("0.29"))
    Person.objects.create(erased_at=t)
    assert sync.sync_persons(get_store(), chunk=chunk) == 2  # the merged and the erased are left out
    assert sync.sync_persons(get_store(), chunk=chunk) == 0  # nothing changed since

    cur = get_store().cursor()
    cur.execute("SET TimeZone = 'UTC'")
    rows = cur.execute("SELECT * FROM persons ORDER BY person_id").fetch_arrow_table().to_pylist()
    plain = {**rows[0], "first_seen": None}
    assert plain == {
        "person_id": referrer.pk, "first_seen": None, "acquisition_channel": None, "first_store": None,
        "first_utm_source": None, "first_qr_scene": None, "gender": None, "birth_year": None, "city": None,
        "referrer_id": None, "order_count": 0, "total_spend": Decimal("0.00"), "last_seen": None,
        "first_order_at": None, "last_order_at": None, "traits": None, "p_alive": None,
        "expected_purchases": None, "predicted_spend": None, "clv": None}
    assert rows[0]["first_seen"] == Person.objects.get(pk=referrer.pk).created_at  # never seen: since created
    copied = {**rows[1], "traits": json.loads(rows[1]["traits"])}
    assert copied == {
        "person_id": rich.pk, "first_seen": t, "acquisition_channel": "store_qr", "first_store": "SH01",
        "first_utm_source": "wechat", "first_qr_scene": "table-3", "gender": "female", "birth_year": 1990,
        "city": "上海", "referrer_id": referrer.pk, "order_count": 2, "total_spend": Decimal("0.29"),
        "last_seen": datetime(2026, 3, 9, tzinfo=UTC), "first_order_at": datetime(2026, 3, 5, tzinfo=UTC),
        "last_order_at": t, "traits": {"gender": "女", "birthday": "1990-03-04", "city": "上海", "points": 5},
        "p_alive": 0.5, "expected_purchases": 1.25, "predicted_spend": Decimal("10.57"), "clv": Decimal("9.99")}


def test_the_idle_writer_brings_in_merges_and_leaves_the_full_copies_to_the_scheduler(monkeypatch):
    """A full copy of the persons takes ~10 s at a million: requests must not wait for it behind
    the writer. The writer, when idle, brings in merges made elsewhere; the scheduler copies the
    persons on its own thread once ingestion has been idle as long."""
    from siyu.ingest import writer as writer_module
    from siyu.ingest.processor import IntakeProcessor
    from siyu.ingest.writer import IDLE_SYNC_SECONDS
    from siyu.scheduler import Scheduler

    def copied() -> int:
        return get_store().cursor().execute("SELECT count(*) FROM persons").fetchone()[0]

    a, b = Person.objects.create(), Person.objects.create()
    merge_persons(a.pk, b.pk, reason="test", evidence={}, actor_label="t")
    IntakeProcessor._sync()
    assert get_store().overrides_of([a.pk]) == {a.pk: b.pk}  # merges: brought in by the writer
    assert copied() == 0  # the copy: not on the writer's thread

    busy = writer_module.IngestWriter(10)  # its thread is never started: only its clock is read
    monkeypatch.setattr(writer_module, "_writer", busy)
    assert Scheduler.sync_copies() is False and copied() == 0  # a group was just committed
    busy._last_commit -= IDLE_SYNC_SECONDS
    assert Scheduler.sync_copies() is True
    assert copied() == 1  # the survivor


def test_the_store_checkpoints_on_a_thread_of_its_own_while_commits_go_on(tmp_path, monkeypatch, caplog):
    """Past ``CHECKPOINT_BYTES`` of WAL a commit has the checkpoint thread copy it into the
    database file; appends and deletes committed meanwhile are kept, and closing waits for it."""
    from siyu.analytics import engine

    monkeypatch.setattr(engine, "CHECKPOINT_BYTES", 1)
    store = engine.EventStore(tmp_path / "events.duckdb")
    rows = [engine.EventRow(uuid=f"u{i}", message_id=f"m{i}", source_id=1, type="track", event="Viewed", person_id=i,
                            distinct_hash="d", timestamp=datetime(2026, 3, 1, tzinfo=UTC),
                            received_at=datetime(2026, 3, 1, tzinfo=UTC)) for i in range(2000)]
    store.append(rows[:1000])
    wal = os.path.getsize(store._wal)
    first = store._checkpoint
    assert first is not None  # asked for by the commit, run elsewhere
    store.append(rows[1000:])  # while it may still run
    with store._writing(changes_analytics=False) as cur:
        cur.execute("DELETE FROM events WHERE person_id < 10")
    first.result(timeout=60)
    if store._checkpoint is not None:
        store._checkpoint.result(timeout=60)
    assert not os.path.exists(store._wal) or os.path.getsize(store._wal) < wal  # copied into the file
    assert store.cursor().execute("SELECT count(*), min(person_id) FROM events").fetchone() == (1990, 10)
    assert "checkpointing the event store failed" not in caplog.text  # none failed
    store.close()
    again = engine.EventStore(tmp_path / "events.duckdb")
    assert again.cursor().execute("SELECT count(*) FROM events").fetchone()[0] == 1990
    again.close()


def test_a_large_append_runs_duckdb_on_one_thread_until_appends_stop(tmp_path, monkeypatch):
    """Under busy ingestion (appends of ``SERIAL_ROWS`` or more) DuckDB's parallel insert only
    adds work on cores already full: the store runs on one thread while such appends keep coming,
    small ones change nothing, and its own thread count comes back ``SERIAL_SECONDS`` after the
    last. The switch is made on a thread of its own, never after the store is closed."""
    import time

    from siyu.analytics import engine

    monkeypatch.setattr(engine, "SERIAL_ROWS", 50)
    monkeypatch.setattr(engine, "SERIAL_SECONDS", 2.5)
    monkeypatch.setattr(engine, "SERIAL_MAX_CORES", 4096)
    store = engine.EventStore(tmp_path / "events.duckdb")
    store.cursor().execute("SET threads = 3")
    store._threads = 3  # as if the store had opened with three
    applied = []
    set_threads = store._set_threads
    monkeypatch.setattr(store, "_set_threads", lambda n: (applied.append((n, store._closing)), set_threads(n)))

    def threads() -> int:
        return store.cursor().execute("SELECT current_setting('threads')").fetchone()[0]

    def becomes(n: int) -> bool:
        deadline = time.monotonic() + 10
        while threads() != n and time.monotonic() < deadline:
            time.sleep(0.01)
        return threads() == n

    def append(n: int) -> None:
        at = datetime(2026, 3, 1, tzinfo=UTC)
        pending = store.begin_append({"message_id": [f"m{i}" for i in range(n)], "person_id": list(range(n)),
                                      "type": ["track"] * n, "timestamp": [at] * n, "received_at": [at] * n})
        pending.wait()
        pending.commit()

    append(10)
    assert store._restorer is None and threads() == 3  # a small append: nothing changes
    append(100)
    assert becomes(1)
    first = store._restorer
    renewed = time.monotonic()
    append(100)  # within the spell: it lasts SERIAL_SECONDS from this append on
    first.join(timeout=10)
    assert time.monotonic() - renewed >= 2.49
    assert store._restorer is first and threads() == 3  # one spell, one thread, then the count came back
    assert store.cursor().execute("SELECT count(*) FROM events").fetchone()[0] == 210
    append(100)
    assert becomes(1)
    store.close()  # with the spell's thread still waiting
    store._restorer.join(timeout=10)
    assert not store._restorer.is_alive()
    assert applied == [(1, False), (3, False), (1, False)]  # nothing was set once the store closed

"""The demo brand: built through the real pipeline, plausible, deterministic, and private.

One small demo (300 customers) is built once for the module; the tests read what
the product recorded from both stores. Timings live in benchmarks/bench_demo.py.
"""

from __future__ import annotations

import hashlib
import json
import signal
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from siyu.demo.build import DemoError, build_demo
from siyu.demo.stream import DemoStream

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
N = 300
SEED = 11


@dataclass
class Built:
    result: dict
    again: dict
    plan_orders: int
    persons: dict[int, dict]  # surviving persons: order_count, total_spend, channel
    kinds: dict[int, set[str]]  # person -> identity kinds
    merged_kinds: list[set[str]]  # id kinds of the message that caused each merge
    orders: dict[int, tuple[int, Decimal]]  # person -> (orders not fully refunded, net spend)
    order_events: int
    events_text: str
    secrets: list[str]  # phones, names and emails the generator sent


def _snapshot(stream: DemoStream, result: dict, again: dict) -> Built:
    from siyu.analytics.engine import get_store
    from siyu.customers.models import Identity, Person, PersonMerge
    from siyu.orders.models import Order

    kinds: dict[int, set[str]] = defaultdict(set)
    for pid, kind in Identity.objects.values_list("person_id", "kind"):
        kinds[pid].add(kind)
    merged_kinds = [set(m.evidence.get("ids", [])) for m in PersonMerge.objects.all()]
    persons = {p.pk: {"order_count": p.order_count, "total_spend": p.total_spend,
                      "channel": p.acquisition_channel}
               for p in Person.objects.filter(merged_into__isnull=True)}
    orders: dict[int, tuple[int, Decimal]] = defaultdict(lambda: (0, Decimal("0")))
    for o in Order.objects.exclude(status="refunded"):
        n, spend = orders[o.person_id]
        orders[o.person_id] = (n + 1, spend + o.amount - o.refunded_amount)
    cur = get_store().cursor()
    rows = cur.execute("SELECT properties, context, distinct_hash FROM events").fetchall()
    order_events = cur.execute("SELECT count(*) FROM events WHERE event = 'Order Completed'").fetchone()[0]
    members = [i for i in range(N) if stream.customers.member_t[i] >= 0][:40]
    secrets = [stream.renderer.ids(i).phone for i in members] + [stream.renderer._traits(i)["name"] for i in members
                                                                 if len(stream.renderer._traits(i)["name"]) == 3]
    secrets += [stream.renderer._email(i) for i in members if stream.customers.email[i]]
    return Built(result=result, again=again, plan_orders=stream.plan.orders, persons=persons, kinds=kinds,
                 merged_kinds=merged_kinds, orders=dict(orders), order_events=order_events,
                 events_text=json.dumps(rows, ensure_ascii=False, default=str), secrets=secrets)


@pytest.fixture(scope="module")
def built(django_db_setup, django_db_blocker, tmp_path_factory):
    """Build the demo once (small batches, so merges happen across commits), read it, wipe it."""
    from django.core.management import call_command
    from django.test import override_settings

    from siyu.analytics import engine
    from siyu.customers.identity import CACHE
    from siyu.ingest.pipeline import DEDUPE

    store = tmp_path_factory.mktemp("demo") / "events.duckdb"
    with django_db_blocker.unblock(), override_settings(SIYU_EVENT_STORE=str(store)):
        engine.close_store()
        CACHE.clear()
        DEDUPE.reset()
        try:
            result = build_demo(N, SEED, progress=False, end=END, workers=0, chunk_sessions=120)
            again = build_demo(N, SEED, progress=False, end=END, workers=0)
            yield _snapshot(DemoStream(N, SEED, END), result, again)
        finally:
            engine.close_store()
            CACHE.clear()
            DEDUPE.reset()
            call_command("flush", verbosity=0, interactive=False)


def _digest(stream: DemoStream, chunks: list[int] | None = None) -> str:
    h = hashlib.sha256()
    for chunk in range(stream.plan.chunks) if chunks is None else chunks:
        for session in stream.raw(chunk):
            for raw in session:
                h.update(json.dumps([raw.source, raw.msg_type, raw.body], sort_keys=True,
                                    ensure_ascii=False).encode())
    return h.hexdigest()


def test_the_same_seed_generates_the_same_messages():
    assert _digest(DemoStream(120, 5, END)) == _digest(DemoStream(120, 5, END))
    assert _digest(DemoStream(120, 5, END)) != _digest(DemoStream(120, 6, END))


def test_chunks_render_the_same_in_any_order():
    """Several worker processes may render the chunks; the messages must not depend on how."""
    stream = DemoStream(200, 5, END, chunk_sessions=300)
    chunks = list(range(stream.plan.chunks))
    assert len(chunks) >= 3
    one_by_one = [_digest(stream, [c]) for c in chunks]
    shuffled = DemoStream(200, 5, END, chunk_sessions=300)
    assert [_digest(shuffled, [c]) for c in reversed(chunks)] == one_by_one[::-1]


def test_every_message_is_accepted_and_every_order_recorded(built):
    assert built.result["status"] == "built"
    assert built.result["rejected"] == 0
    assert built.result["orders"] == built.plan_orders > N
    assert built.order_events == built.plan_orders
    assert built.result["events"] == built.result["messages"] > 30 * N


def test_a_login_and_a_write_key_are_printed(built):
    assert built.result["username"] == "admin"
    assert len(built.result["password"]) >= 12
    assert built.result["h5_shop_write_key"].startswith("wk_")


def test_some_customers_buy_again_and_some_only_once(built):
    counts = [p["order_count"] for p in built.persons.values()]
    repeat, once = sum(c >= 2 for c in counts), sum(c == 1 for c in counts)
    assert repeat > 0.15 * N
    assert once > 0.1 * N
    assert max(counts) >= 6


def test_customers_arrive_through_several_channels(built):
    channels = {p["channel"] for p in built.persons.values()}
    assert {"store_qr", "wechat_oa", "douyin", "xiaohongshu", "meituan"} <= channels


def test_anonymous_visitors_are_linked_to_the_customers_they_become(built):
    identified = [k for k in built.kinds.values() if "phone" in k]
    assert sum("anonymous_id" in k for k in identified) > 0.5 * len(identified)
    # Some links join two profiles that already existed: a merge, recorded with its evidence.
    assert built.result["merges"] > 0
    assert any("anonymous_id" in kinds and kinds & {"user_id", "phone"} for kinds in built.merged_kinds)


def test_order_attributes_agree_with_the_orders(built):
    for pid, person in built.persons.items():
        n, spend = built.orders.get(pid, (0, Decimal("0")))
        assert (person["order_count"], person["total_spend"]) == (n, spend), pid


def test_no_personal_data_reaches_the_event_store_in_clear(built):
    assert len(built.secrets) > 40
    leaked = [s for s in built.secrets if s in built.events_text]
    assert not leaked


def test_a_second_run_finds_the_demo_and_changes_nothing(built):
    assert built.again["status"].startswith("exists")
    assert built.again["customers"] == built.result["customers"]
    assert built.again["events"] == built.result["events"]
    assert "password" in built.again and built.again["password"] != built.result["password"]


@pytest.mark.django_db
def test_a_folder_with_other_customers_is_left_alone():
    from siyu.customers.models import Person
    from siyu.ingest.models import Source

    Person.objects.create()
    with pytest.raises(DemoError, match="1 customers"):
        build_demo(10, 1, progress=False, end=END, workers=0)
    assert Person.objects.count() == 1
    assert not Source.objects.exists()


@pytest.mark.django_db(transaction=True)  # the sync level cannot change inside a transaction
def test_the_bulk_load_settings_hold_only_while_the_history_loads():
    from django.db import connection

    from siyu.demo.build import BULK_CACHE_KIB, _bulk_load

    if connection.vendor != "sqlite":
        with _bulk_load():  # nothing to change on PostgreSQL
            pass
        return

    def pragmas():
        with connection.cursor() as cur:
            return [cur.execute(f"PRAGMA {name}").fetchone()[0] for name in ("cache_size", "synchronous")]

    before = pragmas()
    assert before[1] == 2  # FULL, from the settings
    with _bulk_load():
        assert pragmas() == [-BULK_CACHE_KIB, 1]  # NORMAL
    assert pragmas() == before
    with pytest.raises(RuntimeError), _bulk_load():
        raise RuntimeError("the build failed")
    assert pragmas() == before


@pytest.mark.django_db
def test_a_build_that_never_finished_is_reported_not_taken_for_a_demo():
    from siyu.accounts.actor import Actor
    from siyu.ingest.actions import create_source

    create_source(Actor.system("demo"), "mini-program", "sensors")
    with pytest.raises(DemoError, match="--fresh"):
        build_demo(10, 1, progress=False, end=END, workers=0)


def test_worker_processes_deliver_the_same_batches_in_order():
    from siyu.demo.stream import ParallelStream

    def ids(batches) -> list[list[str]]:
        return [[m.message_id for _s, m in batch] for batch, _progress in batches]

    expected = ids(DemoStream(150, 3, END, chunk_sessions=200).batches())
    assert len(expected) >= 3
    assert ids(ParallelStream(DemoStream(150, 3, END, chunk_sessions=200), workers=2).batches()) == expected


def _dies_in_the_middle_of_a_chunk(worker, _workers, pipes):
    import os
    import struct

    sending = pipes[worker][1]
    os.write(sending.fileno(), struct.pack("!i", 1_000_000) + b"only the start of a chunk")
    os._exit(3)


@contextmanager
def _fails_instead_of_hanging(seconds: int, what: str):
    """Raise AssertionError(``what``) if the block has not ended after ``seconds``."""
    def hung(_signum, _frame):
        raise AssertionError(what)

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_generator_that_dies_while_sending_a_chunk_stops_the_build_with_an_error(monkeypatch):
    from siyu.demo import stream as stream_module

    monkeypatch.setattr(stream_module, "_produce", _dies_in_the_middle_of_a_chunk)
    stream = stream_module.ParallelStream(DemoStream(150, 3, END, chunk_sessions=10), workers=1)
    with _fails_instead_of_hanging(60, "the build waited for the rest of a chunk that will never come"), \
            pytest.raises(RuntimeError, match="exited with code 3 before sending chunk 0"):
        next(stream.batches())


def test_a_generator_process_that_dies_stops_the_build_with_an_error():
    import os

    from siyu.demo.stream import ParallelStream

    # Two workers: the second, still alive, must not hold the first one's pipe open.
    stream = ParallelStream(DemoStream(150, 3, END, chunk_sessions=10), workers=2)
    batches = stream.batches()
    next(batches)
    os.kill(stream._procs[0].pid, signal.SIGKILL)  # out of memory, say
    with _fails_instead_of_hanging(60, "the build waited for the dead generator instead of stopping"), \
            pytest.raises(RuntimeError, match="exited with code -9"):
        for _batch in batches:
            pass

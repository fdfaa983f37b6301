"""The intake log: accepted messages are durable before the answer, processed once, in order,
after a crash too; a message that cannot be processed goes to the dead letters, not lost."""

from __future__ import annotations

import os
import time

import pytest

from siyu.accounts.actions import create_user
from siyu.analytics.engine import get_store, utcnow
from siyu.ingest import intake, pipeline, processor, segment
from siyu.ingest.intake import IntakeLog
from siyu.ingest.models import DeadLetter, IntakePosition
from siyu.privacy import crypto

pytestmark = pytest.mark.django_db(transaction=True)


def _tracks(source, *message_ids: str) -> list:
    return [(source.pk, segment.parse({"type": "track", "userId": "u1", "event": "Tap", "messageId": m}, utcnow()))
            for m in message_ids]


def _stored() -> list[str]:
    return sorted(m for (m,) in get_store().cursor().execute("SELECT message_id FROM events").fetchall())


def _left_by_a_crash(path: str, *groups: list) -> IntakeLog:
    """A log holding ``groups`` (one row each), as a server that died before processing them left it."""
    IntakeLog.create(path)
    log = IntakeLog(path)
    for items in groups:
        log.append(intake.records(items))
    return log


@pytest.fixture
def counted(monkeypatch):
    """The message ids each ``pipeline.process`` call was given."""
    calls: list[list[str]] = []
    real_process = pipeline.process

    def counting(items, *args, **kwargs):
        calls.append([m.message_id for _s, m in items])
        return real_process(items, *args, **kwargs)

    monkeypatch.setattr(pipeline, "process", counting)
    return calls


def test_messages_accepted_before_a_crash_are_processed_once_at_the_next_start(
        source, settings, make_writer, counted):
    log = _left_by_a_crash(settings.SIYU_INGEST_INTAKE, _tracks(source, "a", "b"), _tracks(source, "c"))
    first = make_writer()
    first.start()
    assert first.flush(timeout=30)
    assert _stored() == ["a", "b", "c"]
    assert counted == [["a", "b", "c"]]  # one group
    assert IntakePosition.of(log.log_id) == 2
    assert first.stop(timeout=30)
    assert log.waiting(0) == (0, 0, 0)  # processed rows are dropped from the log

    again = make_writer()
    again.start()
    assert again.flush(timeout=30)
    assert again.stop(timeout=30)
    assert counted == [["a", "b", "c"]]


def test_rows_processed_just_before_a_crash_are_not_processed_again(source, settings, make_writer, counted):
    """The position is saved with the operational facts; the rows may still be in the log."""
    log = _left_by_a_crash(settings.SIYU_INGEST_INTAKE, _tracks(source, "done-1"), _tracks(source, "todo-2"))
    IntakePosition.save_position(log.log_id, 1)  # the first row's facts were committed, then the server died
    fresh = make_writer()
    fresh.start()
    assert fresh.flush(timeout=30)
    assert counted == [["todo-2"]]
    assert fresh.stop(timeout=30)
    assert log.waiting(0) == (0, 0, 0)


def test_a_new_log_file_starts_from_its_own_beginning(source, settings, make_writer, counted):
    first = make_writer()
    first.submit(_tracks(source, "old-1", "old-2"))
    first.submit(_tracks(source, "old-3")).result(timeout=10)
    assert first.flush(timeout=30)
    assert first.stop(timeout=30)
    for suffix in ("", "-wal", "-shm"):  # the file removed: another log, whose rows start at 1 again
        if os.path.exists(settings.SIYU_INGEST_INTAKE + suffix):
            os.remove(settings.SIYU_INGEST_INTAKE + suffix)
    second = make_writer()
    second.submit(_tracks(source, "new-1")).result(timeout=10)
    assert second.flush(timeout=30)
    assert "new-1" in _stored()


def test_a_request_that_fails_in_processing_goes_to_the_dead_letters_and_the_rest_is_processed(
        source, settings, make_writer, monkeypatch):
    real_process = pipeline.process

    def failing(items, *args, **kwargs):
        if any(m.message_id == "poison" for _s, m in items):
            raise ValueError("cannot store this one")
        return real_process(items, *args, **kwargs)

    monkeypatch.setattr(pipeline, "process", failing)
    log = _left_by_a_crash(settings.SIYU_INGEST_INTAKE, _tracks(source, "good-1"),
                           _tracks(source, "poison", "its-neighbour"), _tracks(source, "good-2"))
    fresh = make_writer()
    fresh.start()
    assert fresh.flush(timeout=30)
    assert _stored() == ["good-1", "good-2"]
    letters = DeadLetter.objects.order_by("message_index")
    assert [(d.message_id, d.message_index, d.endpoint, d.source_id) for d in letters] == [
        ("poison", 0, processor.PROCESSING_ENDPOINT, source.pk), ("its-neighbour", 1, processor.PROCESSING_ENDPOINT, source.pk)]
    assert "ValueError: cannot store this one" in letters[0].reason
    assert '"message_id": "poison"' in crypto.decrypt(letters[0].payload_enc)
    assert IntakePosition.of(log.log_id) == 3
    assert fresh.backlog() == 0


def test_an_order_another_process_records_while_a_group_is_processed_counts_once(
        source, settings, make_writer, monkeypatch, counted):
    """Ingestion checks for repeated orders before its transaction. An import (another process)
    recording the same order in between fails the group's insert on the unique order id; the
    rows are then processed one by one, and the repeated order is dropped as known: one order,
    one event, nothing lost from the rest of the group."""
    from decimal import Decimal

    from siyu.customers.models import Person
    from siyu.orders.actions import OrderFact, known_orders, record_orders
    from siyu.orders.models import Order

    raced = []

    def racing(ids):
        known = known_orders(ids)
        if not raced:  # between the check and the insert, someone else records the order
            raced.append(record_orders([OrderFact("O-1", Person.objects.create().pk, utcnow(), Decimal("66.00"),
                                                  origin="import:1")]))
        return known

    monkeypatch.setattr(pipeline, "known_orders", racing)
    order = segment.parse({"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "ord-1",
                           "properties": {"order_id": "O-1", "total": 88}}, utcnow())
    log = _left_by_a_crash(settings.SIYU_INGEST_INTAKE, _tracks(source, "a"), [(source.pk, order), *_tracks(source, "b")])
    fresh = make_writer()
    fresh.start()
    assert fresh.flush(timeout=30)
    assert raced == [(["O-1"], [])]
    assert counted == [["a", "ord-1", "b"], ["a"], ["ord-1", "b"]]  # the group failed, then row by row
    assert _stored() == ["a", "b"]
    assert [(o.external_id, o.amount, o.origin) for o in Order.objects.all()] == [("O-1", Decimal("66.00"), "import:1")]
    assert not DeadLetter.objects.exists()
    assert IntakePosition.of(log.log_id) == 2


def test_when_even_the_dead_letters_cannot_be_written_the_writer_tries_again_later(
        source, settings, make_writer, monkeypatch):
    monkeypatch.setattr(processor, "RETRY_SECONDS", 0.05)
    real_process, real_dead_letters = pipeline.process, processor.dead_letters
    attempts = []

    def failing(items, *args, **kwargs):
        if len(attempts) < 3:  # the group, the row alone, then the row alone again after the pause
            attempts.append(len(items))
            raise ConnectionError("database is down")
        return real_process(items, *args, **kwargs)

    def dead_letters_down(*args):
        raise ConnectionError("database is down")

    monkeypatch.setattr(pipeline, "process", failing)
    monkeypatch.setattr(processor, "dead_letters", dead_letters_down)
    _left_by_a_crash(settings.SIYU_INGEST_INTAKE, _tracks(source, "late-1"))
    fresh = make_writer()
    fresh.start()
    assert fresh.flush(timeout=30)
    monkeypatch.setattr(processor, "dead_letters", real_dead_letters)
    assert len(attempts) == 3
    assert _stored() == ["late-1"]
    assert not DeadLetter.objects.exists()


def test_the_ingestion_status_shows_the_backlog_until_the_writer_has_processed_it(
        post_segment, api_client, source, threaded_writer, held_pipeline):
    entered, release = held_pipeline
    body = {"batch": [{"type": "track", "userId": "u1", "event": "Tap", "messageId": f"s{i}"} for i in range(3)]}
    r = post_segment("/v1/batch", body)
    assert r.status_code == 200 and r.json()["accepted"] == 3
    assert entered.wait(timeout=10)
    api = api_client(create_user("dev", "developer", password="pw-12345678")[0])
    status = api.get("/api/v1/sources/ingestion").json()
    assert (status["processing"], status["backlog"]) == (True, 3)
    assert status["accepted_position"] > status["processed_position"]
    release.set()
    assert threaded_writer.flush(timeout=30)
    status = api.get("/api/v1/sources/ingestion").json()
    assert status["backlog"] == 0
    assert status["accepted_position"] == status["processed_position"]
    assert _stored() == ["s0", "s1", "s2"]


def test_a_customer_read_right_after_the_answer_sees_the_messages(
        post_segment, api_client, source, threaded_writer, monkeypatch):
    real_process = pipeline.process

    def slow(items, *args, **kwargs):  # processing takes a while: the answer comes long before
        time.sleep(0.5)
        return real_process(items, *args, **kwargs)

    monkeypatch.setattr(pipeline, "process", slow)
    api = api_client(create_user("dev", "developer", password="pw-12345678")[0])
    assert post_segment("/v1/identify", {"userId": "u9", "traits": {"plan": "gold"}}).status_code == 200
    r = api.get("/api/v1/customers/lookup", {"kind": "user_id", "value": "u9"})
    assert r.status_code == 200
    assert r.json()["traits"] == {"plan": "gold"}


@pytest.mark.parametrize("order", ["commit, intake counts, recovery reads", "recovery reads, commit, intake counts",
                                   "commit, recovery reads, intake counts", "intake counts after recovery's read"])
def test_the_backlog_counts_each_commit_once_however_the_intake_and_the_recovery_interleave(order):
    """The intake thread commits, then counts under the writer's lock; the processor's recovery
    reads the log (counting what it finds) and reports. Any interleaving gives the same backlog."""
    from siyu.ingest.writer import IngestWriter

    w = IngestWriter(10)  # its threads are never started: only its counts are used
    w._committed(4, 10)  # a commit that the recovery's read sees in every order below
    if order == "commit, intake counts, recovery reads":
        w._committed(5, 3)
        w.recovered(0, 5, 13)
    elif order == "recovery reads, commit, intake counts":
        w.recovered(0, 4, 10)  # read before the commit
        w._committed(5, 3)
    elif order == "commit, recovery reads, intake counts":
        w.recovered(0, 5, 13)  # the read saw the commit; its count comes after
        w._committed(5, 3)
    else:
        w._committed(5, 3)  # counted before the report of a read made before the commit
        w.recovered(0, 4, 10)
    assert w.backlog() == 13
    w.advanced(4, 10)
    w.advanced(5, 3)
    assert w.backlog() == 0


def test_the_processor_runs_its_after_work_hook_once_a_group_is_processed(source, settings, monkeypatch, counted):
    """The processing process collects its garbage there (``collector.between_batches``), so the
    hook must follow every group, once its rows are processed."""

    class Host:
        def recovered(self, *args) -> None: ...

        def advanced(self, *args) -> None: ...

        def wait_for_work(self, processed: int, timeout: float) -> str:
            return processor.STOP

    log = _left_by_a_crash(settings.SIYU_INGEST_INTAKE, _tracks(source, "a", "b"), _tracks(source, "c"))
    monkeypatch.setattr(processor, "MAX_GROUP", 1)  # one row a group
    seen: list[list[str]] = []
    processor.IntakeProcessor(log.path, Host(), after_work=lambda: seen.append(_stored())).run()
    assert counted == [["a", "b"], ["c"]]
    assert seen == [["a", "b"], ["a", "b", "c"]]


def test_a_row_that_cannot_be_read_back_goes_to_the_dead_letters_whole(source, settings):
    """Kept as its bytes with the reason, and the position moves past it: the log is not blocked."""
    IntakeLog.create(settings.SIYU_INGEST_INTAKE)
    log = IntakeLog(settings.SIYU_INGEST_INTAKE)
    row = intake.Row(id=7, source_id=source.pk, n=2, messages=b"\x92\xc1garbage")
    processor.dead_letters(row, log.log_id, RuntimeError("boom"))
    (letter,) = DeadLetter.objects.all()
    assert letter.endpoint == processor.PROCESSING_ENDPOINT and "could not be read back" in letter.reason
    assert IntakePosition.of(log.log_id) == 7

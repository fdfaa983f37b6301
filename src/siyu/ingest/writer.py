"""Ingestion in two steps: accept durably, then process in large groups.

Request threads parse and validate (in parse workers), then ``accept`` their messages and
wait only until the *intake thread* has committed them to the intake log
(``ingest.intake``): everything queued goes into one commit, so many requests share it.
The log is then processed in order, up to ``processor.MAX_GROUP`` messages at a time, with
``pipeline.process``, which saves how far it got in the same operational transaction: by a
process of its own under ``siyu serve``, which the *writer thread* starts and serves with the
event store (``processor.StoreAgent``), or by the writer thread itself. Large
groups are what make processing cheap (one identity lookup query, one commit and one
DuckDB insert for thousands of messages); the intake is what lets the groups grow beyond
what the clients waiting at one moment hold.

Backpressure: while more than ``backlog_limit`` messages wait to be processed, a request
waits up to ``BACKLOG_WAIT_SECONDS`` for the writer to catch up, then gets ``Overloaded``
(429); so does one that finds ``queue_limit`` requests waiting for the intake commit.

If a group fails, its rows are processed one at a time; a row that still fails alone goes
to the dead letters with the error (its position saved in the same transaction), so one bad
request can neither block the log nor fail its neighbours. If even that fails (the database
is down), processing waits ``processor.RETRY_SECONDS`` and tries again from the same row.

When idle, processing folds the activity it recorded into the profiles
(``pipeline.ActivityFolds``) and brings in what other processes recorded. ``stop`` commits
what is queued to the log, processes the whole log, folds, and ends both threads (and the
processing process), so the server leaves its intake log emptied.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from siyu.ingest import intake, pipeline, remote
from siyu.ingest.intake import IntakeLog, Record
from siyu.ingest.messages import Message
from siyu.ingest.processor import IDLE, IDLE_SYNC_SECONDS, STOP, WORK, IntakeProcessor, StoreAgent

log = logging.getLogger("siyu.ingest")
BACKLOG_WAIT_SECONDS = 10.0
RESTART_SECONDS = 1.0  # before a processing process that died is started again
FORGET_IDLE_SECONDS = 1.0  # no request this long, the intake thread drops the rows already processed
__all__ = ["IDLE_SYNC_SECONDS", "IngestWriter", "Overloaded", "Receipt", "get_writer", "settle"]

Item = tuple[list[Record], Future]


class Overloaded(RuntimeError):
    """The queue or the backlog is full (or the writer has stopped); the caller should answer 429
    with Retry-After."""


@dataclass(frozen=True)
class Receipt:
    """Messages durably accepted (in the intake log): ``accepted`` of them."""

    accepted: int


_STOP: Future = Future()  # queued by ``stop``: commit what came before it, then end


class IngestWriter:
    def __init__(self, queue_limit: int, backlog_limit: int | None = None, path: str | None = None,
                 separate: bool = False) -> None:
        """``separate``: process the log in a process of its own (``processor``), not in a thread."""
        self._separate = separate
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=queue_limit)
        self._backlog_limit = settings.SIYU_INGEST_BACKLOG_LIMIT if backlog_limit is None else backlog_limit
        self._path = path or settings.SIYU_INGEST_INTAKE
        self._intake_thread: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopped = False
        self._intake_done = False
        self._created = False  # the log file, made before the threads open it
        # Guarded by ``_state``: the last row committed to the log, the last row processed, and
        # the messages in between. Both threads notify it; ``accept`` and ``flush`` wait on it.
        self._state = threading.Condition()
        self._appended = 0
        # The intake thread's commits not yet processed, as (last row, messages), and the last row
        # the processor's recovery counted itself: the two threads' counts never overlap (below).
        self._commits: deque[tuple[int, int]] = deque()
        self._counted_upto = 0
        self._processed = 0
        self._backlog = 0
        self._last_commit = time.monotonic()

    # -- request threads -------------------------------------------------------
    def submit(self, items: list[tuple[int | None, Message]]) -> Future:
        """``accept`` for messages not yet packed (one record per source)."""
        return self.accept(intake.records(items))

    def accept(self, records: list[Record]) -> Future:
        """Queue ``records`` for the log; the future's result is a ``Receipt`` once they are durable
        (with ``SIYU_INGEST_SYNC``, the ``pipeline.Outcome`` of processing them at once)."""
        if settings.SIYU_INGEST_SYNC:
            return self._process_now(records)
        with self._start_lock:
            self._ensure_threads()
        with self._state:
            if not self._state.wait_for(lambda: self._backlog < self._backlog_limit or self._stopped,
                                        timeout=BACKLOG_WAIT_SECONDS):
                raise Overloaded("ingestion backlog is full")
        fut: Future = Future()
        with self._start_lock:  # queued before ``stop``'s marker, or refused: never after it
            self._ensure_threads()
            try:
                self._queue.put_nowait((records, fut))
            except queue.Full:
                raise Overloaded("ingestion queue is full") from None
        return fut

    @staticmethod
    def _process_now(records: list[Record]) -> Future:
        fut: Future = Future()
        try:
            items = [(r.source_id, m) for r in records for m in intake.unpack(r.messages)]
            fut.set_result(pipeline.process(items))
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            fut.set_exception(exc)
        return fut

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until everything accepted so far is processed; False if ``timeout`` passed first."""
        if settings.SIYU_INGEST_SYNC:
            return True
        with self._state:
            target = self._appended
            return self._state.wait_for(lambda: self._processed >= target, timeout=timeout)

    def backlog(self) -> int:
        """Messages accepted and not yet processed."""
        with self._state:
            return self._backlog

    def status(self) -> dict:
        """What ``GET /api/v1/sources/ingestion`` reports (in this process)."""
        with self._state:
            backlog, appended, processed = self._backlog, self._appended, self._processed
        return {"processing": self._thread is not None and self._thread.is_alive(),
                "processed_in": "process" if self._separate else "thread", "backlog": backlog,
                "accepted_position": appended, "processed_position": processed,
                "seconds_since_processed": round(self.idle_seconds(), 3)}

    # -- life cycle ------------------------------------------------------------
    def start(self) -> None:
        """Start both threads now (they also start on the first ``accept``); the writer first
        processes whatever an earlier run accepted and did not process."""
        with self._start_lock:
            self._ensure_threads()

    def stop(self, timeout: float = 30.0) -> bool:
        """Commit every request queued so far to the log, process the whole log, then end both
        threads; later requests are refused. The writer's WAL block then copies the SQLite log
        back and empties it (unless a reader still holds it). True when both threads have ended
        within ``timeout`` seconds; if the queue stays full that long, they are left running."""
        deadline = time.monotonic() + timeout
        with self._start_lock:
            self._stopped = True
            intake_thread, writer_thread = self._intake_thread, self._thread
        with self._state:
            self._state.notify_all()  # requests waiting for the backlog are refused
        if intake_thread is not None and intake_thread.is_alive():
            try:
                self._queue.put(([], _STOP), timeout=timeout)
            except queue.Full:
                return False
            intake_thread.join(max(0.0, deadline - time.monotonic()))
            if intake_thread.is_alive():
                return False
        with self._state:
            self._intake_done = True
            self._state.notify_all()
        if writer_thread is not None:
            writer_thread.join(max(0.0, deadline - time.monotonic()))
            return not writer_thread.is_alive()
        return True

    def idle_seconds(self) -> float:
        """Seconds since the last group was processed (or since this writer was made)."""
        return time.monotonic() - self._last_commit

    def _ensure_threads(self) -> None:
        """Start whichever thread is not running; the caller holds ``_start_lock``."""
        if self._stopped:
            raise Overloaded("the server is stopping")
        if not self._created:
            last = IntakeLog.create(self._path)
            with self._state:  # what ``flush`` waits for includes what an earlier run left
                self._appended = max(self._appended, last)
            self._created = True
        if self._intake_thread is None or not self._intake_thread.is_alive():
            self._intake_thread = threading.Thread(target=self._run_intake, name="siyu-ingest-intake", daemon=True)
            self._intake_thread.start()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="siyu-ingest-writer", daemon=True)
            self._thread.start()

    # -- the intake thread -------------------------------------------------------
    def _run_intake(self) -> None:
        try:
            log_ = IntakeLog(self._path)
        except Exception as exc:  # noqa: BLE001 - e.g. the file was removed: made again by the next request
            log.exception("could not open the intake log %s", self._path)
            self._created = False
            while (item := self._next_nowait()) is not None:
                if item[1] is not _STOP:
                    item[1].set_exception(exc)
            return
        forgotten = 0
        try:
            while True:
                try:
                    first: Item | None = self._queue.get(timeout=FORGET_IDLE_SECONDS)
                except queue.Empty:
                    forgotten = self._forget(log_, forgotten)
                    continue
                group, stop = [], False
                while first is not None:
                    if first[1] is _STOP:
                        stop = True
                        break
                    group.append(first)
                    first = self._next_nowait()
                if group:
                    forgotten = self._append(log_, group, forgotten)
                if stop:
                    return
        finally:
            log_.close()

    def _next_nowait(self) -> Item | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _append(self, log_: IntakeLog, group: list[Item], forgotten: int) -> int:
        records = [r for recs, _fut in group for r in recs]
        with self._state:
            processed = self._processed
        try:
            last = log_.append(records, forget_upto=processed if processed > forgotten else 0)
        except Exception as exc:  # noqa: BLE001 - each waiting request gets the error (a 500)
            log.exception("could not write %d requests to the intake log", len(group))
            for _recs, fut in group:
                fut.set_exception(exc)
            return forgotten
        self._committed(last, sum(r.n for r in records))
        for recs, fut in group:
            fut.set_result(Receipt(sum(r.n for r in recs)))
        return max(processed, forgotten)

    def _committed(self, last: int, messages: int) -> None:
        """The intake thread committed ``messages`` in rows up to ``last``."""
        with self._state:
            self._appended = last
            self._commits.append((last, messages))
            if last > self._counted_upto:  # else the processor's recovery read this commit and counted it
                self._backlog += messages
            self._state.notify_all()

    def _forget(self, log_: IntakeLog, forgotten: int) -> int:
        """When no request came for a while, drop the rows already processed."""
        with self._state:
            processed = self._processed
        if processed > forgotten:
            try:
                log_.forget(processed)
            except Exception:  # noqa: BLE001 - tried again next time
                log.exception("could not drop processed rows from the intake log")
                return forgotten
        return max(processed, forgotten)

    # -- the writer thread -------------------------------------------------------
    def _run(self) -> None:
        if not self._separate:
            IntakeProcessor(self._path, self).run()
            return
        while True:
            child, conn = remote.start_child(self._path)
            exited = StoreAgent(conn, self).serve()
            child.join(timeout=None if exited else 5.0)
            if exited or self._stopped:
                return
            log.error("the ingestion processing process ended (exit code %s); starting it again", child.exitcode)
            time.sleep(RESTART_SECONDS)

    # -- what the processor reports (``processor.Host``) ---------------------------
    def recovered(self, position: int, last_id: int, backlog: int) -> None:
        with self._state:
            self._processed = position
            self._appended = max(self._appended, last_id)
            # ``backlog`` counts the log up to ``last_id`` as the processor read it; a commit of the
            # intake thread is either wholly in that read or wholly after it.
            self._counted_upto = last_id
            self._backlog = backlog + sum(n for last, n in self._commits if last > last_id)
            self._forget_commits(position)
            self._state.notify_all()

    def advanced(self, row_id: int, messages: int) -> None:
        with self._state:
            self._processed = row_id
            self._backlog -= messages
            self._forget_commits(row_id)
            self._state.notify_all()
        self._last_commit = time.monotonic()

    def _forget_commits(self, processed: int) -> None:
        while self._commits and self._commits[0][0] <= processed:
            self._commits.popleft()

    def wait_for_work(self, processed: int, timeout: float) -> str:
        with self._state:
            if self._appended > processed:
                return WORK
            if self._intake_done:
                return STOP
            return WORK if self._state.wait(timeout) else IDLE


_writer: IngestWriter | None = None
_writer_lock = threading.Lock()
READ_WAIT_SECONDS = 5.0


def settle(timeout: float = READ_WAIT_SECONDS) -> bool:
    """Let a read of customers see what this server has answered ``200`` for: wait until the writer
    has processed everything accepted so far (at once when nothing waits, which is the usual
    case; under full load at most ``timeout`` seconds). False if it timed out."""
    writer = _writer
    return writer is None or writer.flush(timeout)


def get_writer() -> IngestWriter:
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = IngestWriter(settings.SIYU_INGEST_QUEUE_LIMIT, separate=separate_processing())
        return _writer


def separate_processing() -> bool:
    """Whether this server processes the intake log in a process of its own: ``SIYU_INGEST_PROCESS``
    (default on), where the other process can open the same databases (not an in-memory one)."""
    from siyu.analytics.engine import get_store

    return (settings.SIYU_INGEST_PROCESS and not settings.SIYU_INGEST_SYNC and get_store().path != ":memory:"
            and not (connection.vendor == "sqlite" and connection.is_in_memory_db()))

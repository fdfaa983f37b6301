"""Processing the intake log: in the server's writer thread, or in a process of its own.

``IntakeProcessor`` reads the log in order and runs ``pipeline.process`` on groups of up to
``MAX_GROUP`` messages (see ``writer`` for the whole design). It tells a ``Host`` how far it
got and asks it when there is more to do; the host is the ``IngestWriter`` that accepts the
requests.

Where it runs:

- **In a thread** of the server (tests, an in-memory database): the host is the writer itself.
- **In a process of its own** (``siyu serve``, ``SIYU_INGEST_PROCESS``): one interpreter cannot
  answer HTTP and process 20 000 messages a second; the processing alone needs about a core.
  The child opens the operational database and the intake log itself, so messages never
  cross a pipe. Only the event store stays with the server, which owns DuckDB (one read-write
  process per file): the child's ``get_store()`` is a ``RemoteStore`` that asks the server's
  writer thread (``StoreAgent``) over a pipe. A group's events go over as one Arrow table and
  are inserted by the server while the child writes profiles and orders, as in one process.

Commit order is the same as in one process: the events are inserted first (not committed),
then the operational transaction commits with the intake position, then the events commit.
If the child dies between those two commits the agent still has the open insert: it commits
it if the operational database holds the group's position (the facts were committed), and
rolls it back otherwise (the group will be processed again).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pyarrow as pa
from django.db import connection, transaction

from siyu.ingest import pipeline
from siyu.ingest.intake import IntakeLog, Row
from siyu.ingest.models import DeadLetter, IntakePosition
from siyu.wal import WAL

log = logging.getLogger("siyu.ingest")
MAX_GROUP = 20_000
IDLE_SYNC_SECONDS = 5.0
IDLE_FOLD_SECONDS = 1.0  # idle this long, the processor folds the activity it recorded into the profiles
RETRY_SECONDS = 1.0
PROCESSING_ENDPOINT = "ingest writer"  # DeadLetter.endpoint of a message that failed after it was accepted

WORK, IDLE, STOP = "work", "idle", "stop"


class Host(Protocol):
    """What the processor reports to, and waits on."""

    def recovered(self, position: int, last_id: int, backlog: int) -> None:
        """Where the log was left: processed up to ``position``, ``backlog`` messages after it."""

    def advanced(self, row_id: int, messages: int) -> None:
        """Rows up to ``row_id`` (``messages`` more) are processed."""

    def wait_for_work(self, processed: int, timeout: float) -> str:
        """WORK when rows after ``processed`` were appended (at once, or within ``timeout``), STOP
        when the intake has ended and nothing is left, IDLE when ``timeout`` passed."""


class IntakeProcessor:
    def __init__(self, path: str, host: Host, after_work: Callable[[], None] | None = None) -> None:
        """``after_work`` runs after each group is processed, and after each fold, sync or retry
        when idle (the processing process collects its garbage there:
        ``collector.between_batches``)."""
        self._path, self._host = path, host
        self._after_work = after_work or (lambda: None)
        self.processed = 0

    def run(self) -> None:
        try:
            with WAL.running():
                self._loop()
        finally:
            connection.close()

    def _loop(self) -> None:
        reader = IntakeLog(self._path)
        try:
            while not self._recover(reader):
                self._after_work()
                time.sleep(RETRY_SECONDS)
            while True:
                rows = reader.read(self.processed, MAX_GROUP)
                if rows:
                    ok = self._process(rows, reader.log_id)
                    del rows  # freed before the collection
                    self._after_work()
                    if not ok:
                        time.sleep(RETRY_SECONDS)
                    continue
                folding = pipeline.ACTIVITY.pending
                state = self._host.wait_for_work(self.processed, IDLE_FOLD_SECONDS if folding else IDLE_SYNC_SECONDS)
                if state == STOP:
                    break
                if state == IDLE:
                    self._fold() if folding else self._sync()
                    self._after_work()
            self._fold()
            reader.forget(self.processed)
        finally:
            reader.close()

    def _recover(self, reader: IntakeLog) -> bool:
        """Where this log was left: the position saved with the operational facts, and what the
        log holds after it (accepted by an earlier run that stopped before processing it)."""
        try:
            keep_connection()
            position = IntakePosition.of(reader.log_id)
        except Exception:
            log.exception("could not read the intake position; will retry")
            connection.close()
            return False
        rows, messages, last_id = reader.waiting(position)
        self.processed = position
        self._host.recovered(position, last_id, messages)
        if rows:
            log.info("processing %d messages accepted before the last stop", messages)
        return True

    def _process(self, rows: list[Row], log_id: str) -> bool:
        """Process ``rows`` as one group (else one by one); False if the database failed."""
        keep_connection()
        try:
            pipeline.process([item for row in rows for item in row.items()], intake=(log_id, rows[-1].id))
        except Exception:
            log.exception("processing %d intake rows failed; retrying them one by one", len(rows))
            connection.close()
            return all(self._process_one(row, log_id) for row in rows)  # stops at the first that cannot
        self._advance(rows)
        return True

    def _process_one(self, row: Row, log_id: str) -> bool:
        try:
            keep_connection()
            pipeline.process(row.items(), intake=(log_id, row.id))
        except Exception as exc:  # noqa: BLE001
            connection.close()
            log.exception("intake row %d failed alone; its %d messages go to the dead letters", row.id, row.n)
            try:
                dead_letters(row, log_id, exc)
            except Exception:
                log.exception("could not record intake row %d as dead letters; will retry", row.id)
                connection.close()
                return False
        self._advance([row])
        return True

    def _advance(self, rows: list[Row]) -> None:
        self.processed = rows[-1].id
        self._host.advanced(self.processed, sum(r.n for r in rows))

    @staticmethod
    def _fold() -> None:
        """Fold the activity recorded so far into the profiles (``pipeline.ActivityFolds``)."""
        if pipeline.ACTIVITY.pending:
            keep_connection()
            pipeline.ACTIVITY.fold(pipeline.get_store())

    @staticmethod
    def _sync() -> None:
        """When idle, bring in what other processes recorded (CLI imports, merges). The copies of
        the persons and tags are the scheduler's (``Scheduler.sync_copies``): a full copy takes
        ~10 s at a million persons, and requests would wait for it here."""
        from siyu.analytics import sync

        try:
            keep_connection()
            done = sync.sync_events(pipeline.get_store())
        except Exception:
            log.exception("event-store sync failed; will retry")
            return
        if any(done.values()):
            log.info("event store synced: %s", done)


def dead_letters(row: Row, log_id: str, error: Exception) -> None:
    """Every message of ``row`` as a dead letter with ``error``, and the position past it, in one
    transaction."""
    from siyu.ingest.messages import as_record

    reason = f"accepted, then failed in processing: {type(error).__name__}: {error}"
    try:
        records = [as_record(m) for _source, m in row.items()]
    except Exception as exc:  # noqa: BLE001 - a row that cannot even be decoded is kept as it is
        reason = f"accepted, then could not be read back: {type(exc).__name__}: {exc}"
        records = [{"intake_row": row.id, "messages": row.n, "data_base64": base64.b64encode(row.messages).decode()}]
    with transaction.atomic():
        for index, record in enumerate(records):
            DeadLetter.record(row.source_id, PROCESSING_ENDPOINT, index, record, "", reason)
        IntakePosition.save_position(log_id, row.id)


def keep_connection() -> None:
    """The processor keeps its database connection (and with it SQLite's page cache, which
    holds the hot persons and identities) instead of reconnecting per group as requests do;
    one that broke (a restarted PostgreSQL) is replaced."""
    if connection.connection is not None and (connection.errors_occurred or not connection.is_usable()):
        connection.close()
    connection.close_at = None


class StoreAgent:
    """The server's side of the pipe, run by the writer thread: it owns the event store for the
    child and relays its progress to ``host`` (the ``IngestWriter``)."""

    def __init__(self, conn, host: Host) -> None:
        from siyu.analytics.engine import get_store

        self._conn, self._host, self._events = conn, host, get_store()
        self._locks = 0  # the store lock, held for the child this many times
        self._pending = None
        self._intake: tuple[str, int] | None = None
        self._chunks: Iterator | None = None

    def serve(self) -> bool:
        """Answer the child until it exits (True) or its pipe breaks (False: it died)."""
        try:
            while True:
                try:
                    request = self._conn.recv()
                except (EOFError, OSError):
                    return False
                if request[0] == "exit":
                    return True
                try:
                    answer = ("ok", getattr(self, "_on_" + request[0])(*request[1:]))
                except Exception as exc:  # noqa: BLE001 - raised again in the child
                    answer = ("error", exc)
                try:
                    self._conn.send(answer)
                except (EOFError, OSError):
                    return False
                except Exception as exc:  # noqa: BLE001 - an answer that does not pickle
                    self._conn.send(("error", RuntimeError(f"the server's answer could not be sent: {exc}")))
        finally:
            self._end_pending()
            while self._locks:
                self._locks -= 1
                self._events.write_lock().release()
            self._conn.close()
            connection.close()  # this thread's, if deciding on a last group read the database

    # -- requests --------------------------------------------------------------
    def _on_recovered(self, position: int, last_id: int, backlog: int) -> None:
        self._host.recovered(position, last_id, backlog)

    def _on_advanced(self, row_id: int, messages: int) -> None:
        self._host.advanced(row_id, messages)

    def _on_wait(self, processed: int, timeout: float) -> str:
        return self._host.wait_for_work(processed, timeout)

    def _on_lock(self) -> None:
        self._events.write_lock().acquire()
        self._locks += 1

    def _on_unlock(self) -> None:
        self._locks -= 1
        self._events.write_lock().release()

    def _on_begin(self, data: bytes, activity: bool, intake: tuple[str, int] | None) -> None:
        table = pa.ipc.open_stream(data).read_all()
        self._pending, self._intake = self._events.begin_append_table(table, activity=activity), intake

    def _on_wait_insert(self) -> None:
        self._pending.wait()

    def _on_commit(self, overrides: list, position: tuple[str, int] | None) -> None:
        pending, self._pending = self._pending, None
        pending.commit(overrides, position)

    def _on_rollback(self) -> None:
        pending, self._pending = self._pending, None
        pending.rollback()

    def _on_store(self, name: str, args: tuple, kwargs: dict) -> Any:
        return getattr(self._events, name)(*args, **kwargs)

    def _on_iterate(self, name: str, args: tuple, kwargs: dict) -> None:
        """Start one of the store's chunked reads; ``next`` hands over a chunk at a time."""
        self._chunks = getattr(self._events, name)(*args, **kwargs)

    def _on_next(self) -> list | None:
        return next(self._chunks, None)

    def _end_pending(self) -> None:
        """The child died with an insert open: commit it if its operational facts committed."""
        pending, self._pending = self._pending, None
        if pending is None or not pending.open:
            return
        from siyu.analytics import sync

        try:
            done = self._intake is not None and IntakePosition.of(self._intake[0]) >= self._intake[1]
            if done:
                pending.commit(*sync.unsynced_merges(self._events))
                return
        except Exception:
            log.exception("could not finish the events of the processor's last group")
        pending.rollback()

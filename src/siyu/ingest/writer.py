"""Group commit: one writer thread turns many requests' messages into one commit.

Request threads parse and validate, then ``submit`` and wait. The writer takes
everything queued (up to ``MAX_GROUP`` messages), runs ``pipeline.process`` once,
and wakes every waiting request. A request is answered only after its messages
are committed in both stores. If a group fails, each request in it is retried
alone so one bad request cannot fail its neighbours. When idle it folds the
activity it recorded into the profiles (``pipeline.ActivityFolds``) and brings in
what other processes recorded. ``stop`` commits what is queued, folds, and ends
the thread, so the server leaves its SQLite log emptied.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

from django.conf import settings
from django.db import connection

from siyu.ingest import pipeline
from siyu.ingest.messages import Message
from siyu.wal import WAL

log = logging.getLogger("siyu.ingest")
MAX_GROUP = 5_000
IDLE_SYNC_SECONDS = 5.0
IDLE_FOLD_SECONDS = 1.0  # idle this long, the writer folds the activity it recorded into the profiles

Item = tuple[list[tuple[int | None, Message]], Future]


class Overloaded(RuntimeError):
    """The queue is full (or the writer has stopped); the caller should answer 429 with Retry-After."""


_STOP: Future = Future()  # queued by ``stop``: commit what came before it, then end


class IngestWriter:
    def __init__(self, queue_limit: int) -> None:
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=queue_limit)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopped = False
        self._last_commit = time.monotonic()

    def submit(self, items: list[tuple[int | None, Message]]) -> Future:
        if settings.SIYU_INGEST_SYNC:
            fut: Future = Future()
            try:
                fut.set_result(pipeline.process(items))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting request
                fut.set_exception(exc)
            return fut
        fut = Future()
        with self._start_lock:  # queued before ``stop``'s marker, or refused: never after it
            self._ensure_thread()
            try:
                self._queue.put_nowait((items, fut))
            except queue.Full:
                raise Overloaded("ingestion queue is full") from None
        return fut

    def start(self) -> None:
        """Start the writer thread now (it also starts on the first submit)."""
        with self._start_lock:
            self._ensure_thread()

    def stop(self, timeout: float = 30.0) -> bool:
        """Commit every request queued so far, then end the writer thread; later submissions are
        refused. Its WAL block then copies the SQLite log back and empties it (unless a reader
        still holds it). True when the thread has ended within ``timeout`` seconds; if the queue
        stays full that long (a writer stuck on its database), it is left running."""
        deadline = time.monotonic() + timeout
        with self._start_lock:
            self._stopped = True
            thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        try:
            self._queue.put(([], _STOP), timeout=timeout)
        except queue.Full:
            return False
        thread.join(max(0.0, deadline - time.monotonic()))
        return not thread.is_alive()

    def _ensure_thread(self) -> None:
        """Start the writer thread if it is not running; the caller holds ``_start_lock``."""
        if self._stopped:
            raise Overloaded("the server is stopping")
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="siyu-ingest-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            with WAL.running():
                self._loop()
        finally:
            connection.close()

    def _loop(self) -> None:
        while True:
            folding = pipeline.ACTIVITY.pending
            try:
                first = self._queue.get(timeout=IDLE_FOLD_SECONDS if folding else IDLE_SYNC_SECONDS)
            except queue.Empty:
                self._fold() if folding else self._sync()
                continue
            group, size, stop = [], 0, False
            item: Item | None = first
            while item is not None:
                if item[1] is _STOP:
                    stop = True
                    break
                group.append(item)
                size += len(item[0])
                item = self._next_nowait() if size < MAX_GROUP else None
            if group:
                self._commit(group)
                self._last_commit = time.monotonic()
            if stop:
                self._fold()
                return

    def _next_nowait(self) -> Item | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

    def _commit(self, group: list[Item]) -> None:
        _keep_connection()
        try:
            outcome = pipeline.process([m for items, _f in group for m in items])
        except Exception:
            log.exception("group commit failed; retrying its %d requests one by one", len(group))
            connection.close()
            for items, fut in group:
                self._commit_one(items, fut)
            return
        for _items, fut in group:
            fut.set_result(outcome)

    def idle_seconds(self) -> float:
        """Seconds since the last group committed (or since this writer was made)."""
        return time.monotonic() - self._last_commit

    @staticmethod
    def _fold() -> None:
        """Fold the activity recorded so far into the profiles (``pipeline.ActivityFolds``)."""
        if pipeline.ACTIVITY.pending:
            _keep_connection()
            pipeline.ACTIVITY.fold(pipeline.get_store())

    @staticmethod
    def _sync() -> None:
        """When idle, bring in what other processes recorded (CLI imports, merges). The copies of
        the persons and tags are the scheduler's (``Scheduler.sync_copies``): a full copy takes
        ~10 s at a million persons, and requests would wait for it here."""
        from siyu.analytics import sync
        from siyu.analytics.engine import get_store

        try:
            _keep_connection()
            done = sync.sync_events(get_store())
        except Exception:
            log.exception("event-store sync failed; will retry")
            return
        if any(done.values()):
            log.info("event store synced: %s", done)

    @staticmethod
    def _commit_one(items, fut: Future) -> None:
        try:
            fut.set_result(pipeline.process(items))
        except Exception as exc:  # noqa: BLE001
            fut.set_exception(exc)


def _keep_connection() -> None:
    """The writer thread keeps its database connection (and with it SQLite's page cache, which
    holds the hot persons and identities) instead of reconnecting per group as requests do;
    one that broke (a restarted PostgreSQL) is replaced."""
    if connection.connection is not None and (connection.errors_occurred or not connection.is_usable()):
        connection.close()
    connection.close_at = None


_writer: IngestWriter | None = None
_writer_lock = threading.Lock()


def get_writer() -> IngestWriter:
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = IngestWriter(settings.SIYU_INGEST_QUEUE_LIMIT)
        return _writer

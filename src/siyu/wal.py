"""SQLite's write-ahead log copied back into the database on a thread of its own.

SQLite checkpoints inside the commit that crosses ``wal_autocheckpoint``: for
ingestion, that is the one thread every batch waits on. At a million customers a
batch dirties about one page per message (persons and identity-index pages lie
far apart), so copying them back cost as much CPU as committing them. While a
``Checkpointer`` runs, the writing connection's automatic checkpoints are off and
a thread with its own connection runs PASSIVE checkpoints (they never block a
writer or a reader) after commits, without the GIL, on another core.

A WAL restarts from its beginning only when a write transaction starts after
every frame was copied back; with commits back to back that may never happen by
itself, so past ``restart_at`` frames the next write waits for the copy (and the
file is cut back to ``journal_size_limit`` by the commit after). While a long
read holds an old snapshot, frames after it cannot be copied: then each write
past ``restart_at`` runs a checkpoint itself, as SQLite's automatic one would.

Other connections (request threads, the scheduler, commands) keep their automatic
checkpoints; they write rarely, and find most of the log already copied.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

log = logging.getLogger("siyu.db")


class Checkpointer:
    def __init__(self, restart_at: int = 32_768, pause: float = 0.5, idle: float = 10.0) -> None:
        self.restart_at = restart_at  # frames (4 KiB pages): 128 MB of log
        self.pause = pause  # seconds between checkpoints, at least
        self.idle = idle  # seconds after which it checkpoints without being told
        self.log_frames = 0  # the log's length at the last checkpoint that could run
        self.last: tuple[int, int, int] | None = None  # (busy, log frames, frames copied) of that checkpoint
        self._lock = threading.Lock()  # one checkpoint at a time on the one connection
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None  # the connection whose automatic checkpoints are off
        self._writer_setting = 0  # its wal_autocheckpoint before
        self._owner: int | None = None  # the thread that writes

    @property
    def active(self) -> bool:
        """Whether this thread writes with checkpoints in the background."""
        return self._thread is not None and self._owner == threading.get_ident()

    @contextmanager
    def running(self, restart_at: int | None = None) -> Iterator[None]:
        """Checkpoint in the background while this thread writes (SQLite only; elsewhere nothing).

        ``restart_at`` overrides the log length past which a write waits for the copy (a bulk
        load can let it grow larger). When done, the log is copied back and emptied. If the
        checkpointer cannot start, the block runs with SQLite's automatic checkpoints.
        """
        if connection.vendor != "sqlite" or connection.is_in_memory_db() or self._thread is not None:
            yield
            return
        default = self.restart_at
        try:
            self._start(restart_at or default)
        except Exception:  # noqa: BLE001 - ingestion goes on with SQLite's own checkpoints
            log.exception("could not start the WAL checkpointer; SQLite will checkpoint on commit")
            self._stop_thread()
            self._release(default)
            yield
            return
        try:
            yield
        finally:
            self._stop_thread()
            try:
                self._checkpoint("TRUNCATE")  # does not wait: a reader that still needs the log keeps it
            finally:
                self._release(default)

    def before_write(self) -> None:
        """Call before a write transaction (does nothing but on the thread that runs the checkpointer)."""
        if not self.active:
            return
        connection.ensure_connection()
        raw = connection.connection
        if raw is not self._writer:  # the first write, or a new connection (the old one broke)
            self._writer_setting = raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
            raw.execute("PRAGMA wal_autocheckpoint=0")
            self._writer = raw
        if self.log_frames >= self.restart_at:
            self._checkpoint()  # waits for one under way; the next write then starts the log over

    def committed(self) -> None:
        """Call after a commit: the log has grown."""
        if self.active:
            self._wake.set()

    # -- internals ---------------------------------------------------------------
    def _start(self, restart_at: int) -> None:
        self.restart_at = restart_at
        self._conn = sqlite3.connect(connection.settings_dict["NAME"], check_same_thread=False,
                                     isolation_level=None, timeout=0)
        self._stop.clear()
        self._owner = threading.get_ident()
        self._thread = threading.Thread(target=self._run, name="siyu-wal-checkpointer", daemon=True)
        self._thread.start()
        self.before_write()

    def _stop_thread(self) -> None:
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join()

    def _release(self, restart_at: int) -> None:
        """Give the writing connection its automatic checkpoints back and forget everything."""
        writer, self._writer = self._writer, None
        try:
            if writer is not None and writer is connection.connection:
                writer.execute(f"PRAGMA wal_autocheckpoint={self._writer_setting}")
        finally:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
            self._thread = self._owner = None
            self.restart_at, self.log_frames, self.last = restart_at, 0, None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._checkpoint()
            self._stop.wait(self.pause)

    def _checkpoint(self, mode: str = "PASSIVE") -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                busy, frames, copied = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
            except Exception:  # noqa: BLE001 - logged; the next one tries again
                log.exception("WAL checkpoint failed; will retry")
                return
            if frames >= 0:  # -1: another connection was checkpointing; nothing is known
                self.log_frames, self.last = frames, (busy, frames, copied)


WAL = Checkpointer()


def empty_log() -> None:
    """Copy SQLite's log back and empty it now, if no reader still needs it (the server, once
    ingestion has stopped: its processing may have run in another process, whose own copy at
    the end could not empty a log that this process's connections still had open)."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    try:
        with connection.cursor() as cur:
            cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except Exception:  # noqa: BLE001 - the next start copies it back
        log.exception("could not empty the SQLite log")
    finally:
        connection.close()

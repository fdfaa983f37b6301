"""The WAL checkpointer, against a real SQLite file (the suite's own database lives in memory)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from siyu import wal


class _Connection:
    """Django's connection as the checkpointer uses it: one real SQLite connection per thread,
    to a file in WAL mode."""

    vendor = "sqlite"

    def __init__(self, path) -> None:
        self.settings_dict = {"NAME": str(path)}
        self._local = threading.local()

    @property
    def connection(self) -> sqlite3.Connection | None:
        return getattr(self._local, "raw", None)

    def is_in_memory_db(self) -> bool:
        return False

    def ensure_connection(self) -> None:
        if self.connection is None:
            raw = sqlite3.connect(self.settings_dict["NAME"], isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA wal_autocheckpoint=1000")
            self._local.raw = raw

    def replace(self) -> None:
        """What Django does when a connection broke: close it; the next use opens another."""
        self.connection.close()
        self._local.raw = None


@pytest.fixture
def db(tmp_path, monkeypatch):
    conn = _Connection(tmp_path / "wal.sqlite3")
    conn.ensure_connection()
    conn.connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    monkeypatch.setattr(wal, "connection", conn)
    return conn


def _write(conn, rows: int = 2_000) -> None:
    conn.ensure_connection()
    conn.connection.execute("BEGIN IMMEDIATE")
    conn.connection.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 500,)] * rows)
    conn.connection.execute("COMMIT")


def _autocheckpoint(conn) -> int:
    conn.ensure_connection()
    return conn.connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0]


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_commits_are_copied_back_by_the_checkpointer_not_by_the_writer(db):
    checkpointer = wal.Checkpointer(pause=0.0)
    with checkpointer.running():
        assert _autocheckpoint(db) == 0
        for _ in range(3):
            checkpointer.before_write()
            _write(db)
            checkpointer.committed()
        # the thread copied every frame of the three commits back (the writer copies nothing)
        assert _wait_for(lambda: (last := checkpointer.last) is not None and last[1] > 200 and last[1] == last[2])
    assert _autocheckpoint(db) == 1000  # what the connection had before
    assert os.path.getsize(db.settings_dict["NAME"] + "-wal") == 0  # emptied when done
    assert sqlite3.connect(db.settings_dict["NAME"]).execute("SELECT count(*) FROM t").fetchone()[0] == 6_000


def test_a_long_log_is_copied_back_before_the_next_write_so_it_starts_over(db):
    checkpointer = wal.Checkpointer(restart_at=100, pause=3600, idle=3600)  # copies only when told here
    with checkpointer.running():
        checkpointer.before_write()
        _write(db)
        raw = db.connection
        raw.execute("BEGIN IMMEDIATE")  # the next batch began before the copy of the last one ended
        raw.executemany("INSERT INTO t (v) VALUES (?)", [("y" * 500,)] * 2_000)
        checkpointer._checkpoint()  # what the thread does meanwhile: copies the first commit only
        raw.execute("COMMIT")
        first, copied = checkpointer.log_frames, checkpointer.last[2]
        assert first == copied > 100  # known: the log is past restart_at
        checkpointer.before_write()  # so the writer copies the rest back itself, before writing
        assert checkpointer.last[1] == checkpointer.last[2] > first
        _write(db, rows=10)  # and this write starts the log over
        checkpointer._checkpoint()
        assert checkpointer.log_frames < first / 10


def test_another_thread_writes_with_its_own_automatic_checkpoints(db):
    checkpointer = wal.Checkpointer()
    seen = []

    def other_thread():
        checkpointer.before_write()
        seen.append((checkpointer.active, _autocheckpoint(db)))

    with checkpointer.running():
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert seen == [(False, 1000)]
        assert checkpointer.active and _autocheckpoint(db) == 0


def test_a_replaced_connection_has_its_automatic_checkpoints_turned_off_again(db):
    checkpointer = wal.Checkpointer()
    with checkpointer.running():
        db.replace()
        checkpointer.before_write()
        assert _autocheckpoint(db) == 0
    assert _autocheckpoint(db) == 1000


def test_an_error_inside_restores_everything_and_is_raised(db):
    checkpointer = wal.Checkpointer(restart_at=123)
    with pytest.raises(RuntimeError, match="boom"), checkpointer.running(restart_at=7):
        assert checkpointer.restart_at == 7
        raise RuntimeError("boom")
    assert not checkpointer.active and checkpointer.restart_at == 123 and _autocheckpoint(db) == 1000
    with checkpointer.running():  # and it starts again
        assert checkpointer.active


def test_a_checkpointer_that_cannot_start_leaves_sqlite_checkpointing_on_commit(db, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(wal.sqlite3, "connect", refuse)
    checkpointer = wal.Checkpointer()
    with checkpointer.running():
        assert not checkpointer.active and _autocheckpoint(db) == 1000
        _write(db)


def test_a_checkpoint_that_found_another_under_way_keeps_what_was_known(db, monkeypatch):
    checkpointer = wal.Checkpointer(pause=3600, idle=3600)
    with checkpointer.running():
        _write(db)
        checkpointer._checkpoint()
        known = checkpointer.log_frames, checkpointer.last
        assert known[0] > 0

        class Busy:  # SQLite's answer when another connection holds the checkpoint lock
            def execute(self, _sql):
                return self

            def fetchone(self):
                return 1, -1, -1

            def close(self):
                pass

        monkeypatch.setattr(checkpointer, "_conn", Busy())
        checkpointer._checkpoint()
        assert (checkpointer.log_frames, checkpointer.last) == known


@pytest.mark.parametrize("vendor_or_memory", ["postgresql", "memory"])
def test_nothing_runs_without_a_sqlite_file(db, monkeypatch, vendor_or_memory):
    if vendor_or_memory == "memory":
        monkeypatch.setattr(db, "is_in_memory_db", lambda: True)
    else:
        monkeypatch.setattr(db, "vendor", vendor_or_memory, raising=False)
    checkpointer = wal.Checkpointer()
    with checkpointer.running():
        checkpointer.before_write()
        assert not checkpointer.active
        assert _autocheckpoint(db) == 1000

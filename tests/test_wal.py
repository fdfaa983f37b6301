"""The WAL checkpointer, against a real SQLite file (the suite's own database lives in memory)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest

from siyu import wal


class _Connection:
    """Django's connection as the checkpointer uses it, over a real SQLite file in WAL mode."""

    vendor = "sqlite"

    def __init__(self, path) -> None:
        self.settings_dict = {"NAME": str(path)}
        self.connection = None

    def is_in_memory_db(self) -> bool:
        return False

    def ensure_connection(self) -> None:
        if self.connection is None:
            self.connection = sqlite3.connect(self.settings_dict["NAME"], isolation_level=None,
                                              check_same_thread=False)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA wal_autocheckpoint=1000")


@pytest.fixture
def db_file(tmp_path, monkeypatch):
    conn = _Connection(tmp_path / "wal.sqlite3")
    conn.ensure_connection()
    conn.connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    monkeypatch.setattr(wal, "connection", conn)
    return conn


def _write(conn, rows: int = 2_000) -> None:
    conn.connection.execute("BEGIN IMMEDIATE")
    conn.connection.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 500,)] * rows)
    conn.connection.execute("COMMIT")


def _autocheckpoint(conn) -> int:
    return conn.connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0]


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_commits_are_copied_back_by_the_checkpointer_not_by_the_writer(db_file, settings):
    checkpointer = wal.Checkpointer(pause=0.0)
    with checkpointer.running():
        assert _autocheckpoint(db_file) == 0
        for _ in range(3):
            checkpointer.before_write()
            _write(db_file)
            checkpointer.committed()
        assert _wait_for(lambda: checkpointer.log_frames > 0)
    assert _autocheckpoint(db_file) == settings.SQLITE_WAL_AUTOCHECKPOINT
    assert os.path.getsize(db_file.settings_dict["NAME"] + "-wal") == 0  # copied back and emptied when done
    other = sqlite3.connect(db_file.settings_dict["NAME"])
    assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 6_000


def test_a_long_log_is_copied_back_before_the_next_write_so_it_starts_over(db_file):
    checkpointer = wal.Checkpointer(restart_at=100, pause=3600, idle=3600)  # never on its own after the first
    with checkpointer.running():
        for _ in range(4):
            checkpointer.before_write()
            _write(db_file)
        first = checkpointer.log_frames
        checkpointer.committed()
        assert _wait_for(lambda: checkpointer.log_frames > first)
        grown = checkpointer.log_frames
        checkpointer.before_write()  # past restart_at: copies back everything first
        _write(db_file, rows=10)
        checkpointer._checkpoint()
        assert checkpointer.log_frames < grown / 10  # the log started over


def test_other_threads_write_with_their_own_automatic_checkpoints(db_file):
    checkpointer = wal.Checkpointer()
    seen = []
    with checkpointer.running():
        writer = db_file.connection
        thread = threading.Thread(target=lambda: seen.append(checkpointer.active))
        thread.start()
        thread.join()
        assert checkpointer.active and seen == [False]
        assert db_file.connection is writer


def test_an_in_memory_database_has_no_checkpointer(db_file, monkeypatch):
    monkeypatch.setattr(db_file, "is_in_memory_db", lambda: True)
    checkpointer = wal.Checkpointer()
    with checkpointer.running():
        assert not checkpointer.active
        assert _autocheckpoint(db_file) == 1000

"""The intake log: accepted messages, durable before the answer, until the writer has processed them.

An ingestion request is answered once its messages are in this log: one row per request
(its source and its messages, pickled by the parse worker), committed with
``synchronous=FULL`` in a SQLite file of its own beside the event store. Many requests
share one commit (``IngestWriter``'s intake thread). The writer then processes the log in
large groups: resolving 20 000 messages at once costs about 40 % less a message than the
~1 200 that 24 waiting clients could offer it when each request waited for its own
processing (benchmarks/README.md, "bench_ingest.py").

How far the log has been processed is written in the operational database, in the same
transaction as what the messages changed there (``IntakePosition``), so after a crash the
rows after that position are processed once more and no row is processed twice. The log
names itself with a random id kept inside it: a position recorded for another log (the
file was removed, the data folder copied) is never applied to this one.
"""

from __future__ import annotations

import pickle
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from siyu.ingest.messages import Message

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS intake (id INTEGER PRIMARY KEY AUTOINCREMENT, source_id INTEGER,"
    " n INTEGER NOT NULL, messages BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS intake_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@dataclass(frozen=True)
class Record:
    """One accepted request: ``n`` messages of one source, pickled (``pack``)."""

    source_id: int | None
    n: int
    messages: bytes


@dataclass(frozen=True)
class Row:
    id: int
    source_id: int | None
    n: int
    messages: bytes

    def items(self) -> list[tuple[int | None, Message]]:
        return [(self.source_id, m) for m in unpack(self.messages)]


def pack(messages: list[Message]) -> bytes:
    return pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> list[Message]:
    return pickle.loads(data)  # noqa: S301 - written by this server's own parse workers, never by a client


def records(items: Iterable[tuple[int | None, Message]]) -> list[Record]:
    """``items`` as one record per source, in their order within each source."""
    by_source: dict[int | None, list[Message]] = {}
    for source_id, m in items:
        by_source.setdefault(source_id, []).append(m)
    return [Record(s, len(ms), pack(ms)) for s, ms in by_source.items()]


class IntakeLog:
    """One connection to the log file (``create`` it first); each thread that uses it opens its own."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self._con.execute("PRAGMA synchronous=FULL")
        self.log_id: str = self._con.execute("SELECT value FROM intake_meta WHERE name = 'log_id'").fetchone()[0]

    @staticmethod
    def create(path: str | Path) -> int:
        """Make the log file if it is not there yet (before any thread opens it); returns the id
        of its last row (0 when empty)."""
        con = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            for stmt in _SCHEMA:
                con.execute(stmt)
            con.execute("INSERT OR IGNORE INTO intake_meta VALUES ('log_id', ?)", [uuid.uuid4().hex])
            return con.execute("SELECT coalesce(max(id), 0) FROM intake").fetchone()[0]
        finally:
            con.close()

    def close(self) -> None:
        self._con.close()

    def append(self, records: list[Record], *, forget_upto: int = 0) -> int:
        """Write ``records`` in one durable transaction (and drop the rows up to ``forget_upto``,
        already processed); returns the id of the last one written."""
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            if forget_upto:
                con.execute("DELETE FROM intake WHERE id <= ?", [forget_upto])
            con.executemany("INSERT INTO intake (source_id, n, messages) VALUES (?, ?, ?)",
                            [(r.source_id, r.n, r.messages) for r in records])
            last = con.execute("SELECT max(id) FROM intake").fetchone()[0]
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return last

    def forget(self, upto: int) -> None:
        """Drop the rows up to ``upto`` (processed), and give the file's log back when emptied."""
        self._con.execute("DELETE FROM intake WHERE id <= ?", [upto])
        if self._con.execute("SELECT NOT EXISTS (SELECT 1 FROM intake)").fetchone()[0]:
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def read(self, after: int, limit: int) -> list[Row]:
        """The rows after ``after``, in order, until they hold ``limit`` messages (at least one row)."""
        rows, size = [], 0
        for row in self._con.execute("SELECT id, source_id, n, messages FROM intake WHERE id > ? ORDER BY id",
                                     [after]):
            rows.append(Row(*row))
            size += row[2]
            if size >= limit:
                break
        return rows

    def waiting(self, after: int) -> tuple[int, int, int]:
        """(rows, messages, last row) after ``after``: accepted, not yet processed. Read at one
        moment, so the counts cover the log exactly up to that last row, however the intake thread
        commits meanwhile."""
        return self._con.execute(
            "SELECT count(*), coalesce(sum(n), 0), (SELECT coalesce(max(id), 0) FROM intake) FROM intake"
            " WHERE id > ?", [after]).fetchone()


"""The intake log: accepted messages, durable before the answer, until the writer has processed them.

An ingestion request is answered once its messages are in this log: one row per request
(its source and its messages, encoded by the parse worker: ``pack``), committed with
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

import io
import pickle
import sqlite3
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from siyu.customers.identity import Claim
from siyu.ingest.messages import Message, OrderInfo

PAGE_SIZE = 32_768
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS intake (id INTEGER PRIMARY KEY AUTOINCREMENT, source_id INTEGER,"
    " n INTEGER NOT NULL, messages BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS intake_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


@dataclass(frozen=True)
class Record:
    """One accepted request: ``n`` messages of one source, encoded (``pack``)."""

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


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[Message])
_PICKLED = b"P"  # the mark of a row ``pack`` had to pickle (MessagePack arrays never start with it)


def pack(messages: list[Message]) -> bytes:
    """``messages`` as the bytes of an intake row: MessagePack (``Message`` is a struct that
    encodes by position), or, for the rare value MessagePack cannot hold (an integer beyond 64
    bits, a lone surrogate: what a caller other than the JSON endpoints could pass), the mark and
    a pickle."""
    try:
        return _ENCODER.encode(messages)
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError):  # ValueError: a lone surrogate
        return _PICKLED + pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> list[Message]:
    """The messages of an intake row, whichever way ``pack`` wrote it, and rows of a log written
    before messages were structs (pickled dataclasses: a server stopped with a backlog, then
    upgraded), so an upgrade loses nothing accepted."""
    if data[:1] == _PICKLED:
        return pickle.loads(data[1:])  # noqa: S301 - written by this server's own parse workers
    if data[:1] == b"\x80":  # a pickle's first byte (protocol 2 and later)
        return _LegacyUnpickler(io.BytesIO(data)).load()
    return _DECODER.decode(data)


class _LegacyUnpickler(pickle.Unpickler):
    """Reads the pickled dataclasses of the first intake logs into today's structs: each old
    class is stood in for by a plain one whose instance the pickle fills, then converted."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _LEGACY:
            return _LEGACY[(module, name)]
        return super().find_class(module, name)

    def load(self) -> list[Message]:
        return [m.convert() for m in super().load()]


class _Old:
    """An object of an old dataclass as its pickle rebuilds it: the fields in ``__dict__``."""

    def convert(self) -> Any:
        raise NotImplementedError


class _OldClaim(_Old):
    def convert(self) -> Claim:
        d = self.__dict__
        return Claim(d["kind"], d["value"], d["key"])  # the key as computed then: not hashed again


class _OldOrder(_Old):
    def convert(self) -> OrderInfo:
        return OrderInfo(**self.__dict__)


class _OldMessage(_Old):
    def convert(self) -> Message:
        d = dict(self.__dict__)
        d["claims"] = [c.convert() for c in d["claims"]]
        d["distinct"] = d["distinct"].convert()
        d["order"] = d["order"].convert() if d.get("order") is not None else None
        return Message(**d)


_LEGACY = {("siyu.ingest.messages", "Message"): _OldMessage, ("siyu.ingest.messages", "OrderInfo"): _OldOrder,
           ("siyu.customers.identity", "Claim"): _OldClaim}


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
            # A row is a request's messages, ~60 KB for a batch of 100: on 32 KB pages it takes two
            # or three, not a chain of fifteen. Committing eight such rows cost ~140 µs of CPU a
            # row against ~220 on 4 KB pages; a lone row of one message ~86 against ~59 (and ~118
            # on 64 KB pages, hence not larger). Takes effect in a new file only.
            con.execute(f"PRAGMA page_size={PAGE_SIZE}")
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


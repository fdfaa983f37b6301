"""The event store. This module is the only code that touches a DuckDB connection.

One process owns the store read-write (DuckDB allows one writer process per
file); its threads share the connection through cursors. Facts recorded in the
operational database by other processes (merges, imported orders) reach the
store through rerunnable syncs that remember how far they got (``sync_state``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from django.conf import settings

EVENT_COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("uuid", "VARCHAR", pa.string()),
    ("message_id", "VARCHAR", pa.string()),
    ("source_id", "INTEGER", pa.int32()),
    ("type", "VARCHAR", pa.string()),
    ("event", "VARCHAR", pa.string()),
    ("person_id", "BIGINT", pa.int64()),
    ("distinct_hash", "VARCHAR", pa.string()),
    ("timestamp", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("received_at", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("channel", "VARCHAR", pa.string()),
    ("utm_source", "VARCHAR", pa.string()),
    ("utm_medium", "VARCHAR", pa.string()),
    ("utm_campaign", "VARCHAR", pa.string()),
    ("store", "VARCHAR", pa.string()),
    ("qr_scene", "VARCHAR", pa.string()),
    ("order_id", "VARCHAR", pa.string()),
    ("revenue", "DECIMAL(18,2)", pa.decimal128(18, 2)),
    ("properties", "JSON", pa.string()),
    ("context", "JSON", pa.string()),
)
_COLUMN_NAMES = ", ".join(name for name, _sql, _arrow in EVENT_COLUMNS)
CHECKPOINT_BYTES = 128 * 2**20  # WAL past which a commit has the store checkpointed (``_checkpoint_soon``)
# An append of this many rows means ingestion is behind: on a machine of a few cores DuckDB then runs
# on one thread until no such append came for SERIAL_SECONDS (``EventStore._serial_while_busy``).
SERIAL_ROWS = 2_000
SERIAL_SECONDS = 2.0
SERIAL_MAX_CORES = 4  # on more cores, ingestion leaves some free and queries keep DuckDB's threads
log = logging.getLogger("siyu.analytics")
# The attribution facts of a message (``messages.touch_from``): event columns, but for the referral
# code, which stays in the properties.
TOUCH_COLUMNS = ("channel", "utm_source", "utm_medium", "utm_campaign", "store", "qr_scene", "referrer")
_GENERATED = {"uuid": "CAST(uuid() AS VARCHAR)"}  # columns that ``append`` fills when not given

# Non-personal attributes of each surviving person, copied from the operational
# database by ``sync.sync_persons`` so queries can filter and break down by them.
PERSON_COLUMNS: tuple[tuple[str, str, pa.DataType], ...] = (
    ("person_id", "BIGINT", pa.int64()),
    ("first_seen", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("acquisition_channel", "VARCHAR", pa.string()),
    ("first_store", "VARCHAR", pa.string()),
    ("first_utm_source", "VARCHAR", pa.string()),
    ("first_qr_scene", "VARCHAR", pa.string()),
    ("gender", "VARCHAR", pa.string()),
    ("birth_year", "INTEGER", pa.int32()),
    ("city", "VARCHAR", pa.string()),
    ("referrer_id", "BIGINT", pa.int64()),
    ("order_count", "INTEGER", pa.int32()),
    ("total_spend", "DECIMAL(18,2)", pa.decimal128(18, 2)),
    # added with segments: more computed attributes, non-personal traits, CLV predictions
    ("last_seen", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("first_order_at", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("last_order_at", "TIMESTAMPTZ", pa.timestamp("us", tz="UTC")),
    ("traits", "JSON", pa.string()),
    ("p_alive", "DOUBLE", pa.float64()),
    ("expected_purchases", "DOUBLE", pa.float64()),
    ("predicted_spend", "DECIMAL(18,2)", pa.decimal128(18, 2)),
    ("clv", "DECIMAL(18,2)", pa.decimal128(18, 2)),
)
_PERSON_NAMES = ", ".join(name for name, _sql, _arrow in PERSON_COLUMNS)

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS events ("
    + ", ".join(f"{name} {sql}" for name, sql, _a in EVENT_COLUMNS)
    + ")",
    "CREATE TABLE IF NOT EXISTS person_overrides (old_person_id BIGINT PRIMARY KEY,"
    " person_id BIGINT NOT NULL, merged_at TIMESTAMPTZ)",
    "CREATE TABLE IF NOT EXISTS sync_state (name VARCHAR PRIMARY KEY, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS persons ("
    + ", ".join(f"{name} {sql}" for name, sql, _a in PERSON_COLUMNS[:12])
    + ")",
    "CREATE TABLE IF NOT EXISTS store_meta (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    # The brand-clock time of each event, filled by ``append`` (see ``analytics_views``).
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS local_ts TIMESTAMP",
    *(f"ALTER TABLE persons ADD COLUMN IF NOT EXISTS {name} {sql}" for name, sql, _a in PERSON_COLUMNS[12:]),
    # Tags (a copy of the operational DB's, ``sync.sync_tags``) and segment membership
    # (written by ``segments.refresh``: derived from queries over this store).
    "CREATE TABLE IF NOT EXISTS person_tags (person_id BIGINT NOT NULL, tag VARCHAR NOT NULL)",
    "CREATE TABLE IF NOT EXISTS segment_members (segment_id BIGINT NOT NULL, person_id BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS segment_changes (segment_id BIGINT NOT NULL, person_id BIGINT NOT NULL,"
    " change VARCHAR NOT NULL, changed_at TIMESTAMPTZ NOT NULL)",
    # When and from where ingested events saw their persons, until ``sync.fold_activity`` folds it
    # into the profiles' first/last seen and touches (see ``EventStore.begin_append``).
    "CREATE TABLE IF NOT EXISTS recent_activity (person_id BIGINT NOT NULL, timestamp TIMESTAMPTZ NOT NULL,"
    f" {', '.join(f'{name} VARCHAR' for name in TOUCH_COLUMNS)})",
]


def analytics_views(tz: str) -> list[str]:
    """The two relations every analytics query reads (``analytics.engines``).

    ``analytics_events`` applies person overrides (a merged person's events count
    for the survivor) and carries ``local_ts``: the event time on the brand's wall
    clock, which decides what "a day" is in every metric. ``local_ts`` is stored,
    not computed per query: converting ten million timestamps with time-zone
    rules on every query cost ten times the query itself.
    """
    tz = _quote(tz)
    return [
        "CREATE OR REPLACE VIEW analytics_events AS SELECT e.uuid, e.type, e.event,"
        " coalesce(o.person_id, e.person_id) AS person_id, e.timestamp,"
        " e.local_ts, e.source_id, e.channel, e.utm_source, e.utm_medium,"
        " e.utm_campaign, e.store, e.qr_scene, e.order_id, e.revenue, e.properties"
        " FROM events e LEFT JOIN person_overrides o ON o.old_person_id = e.person_id",
        "CREATE OR REPLACE VIEW analytics_persons AS SELECT *,"
        f" CAST(timezone('{tz}', first_seen) AS DATE) AS first_seen_date,"
        f" CAST(timezone('{tz}', last_seen) AS DATE) AS last_seen_date,"
        f" CAST(timezone('{tz}', first_order_at) AS DATE) AS first_order_date,"
        f" CAST(timezone('{tz}', last_order_at) AS DATE) AS last_order_date FROM persons",
        "CREATE OR REPLACE VIEW analytics_person_tags AS SELECT * FROM person_tags",
    ]

# What an engine other than DuckDB copies (local mode) or reads as Parquet (a cluster): the
# analytics views without the columns that engine computes itself (``local_ts``, the dates).
ANALYTICS_SOURCES = {
    "events": "SELECT * EXCLUDE (local_ts) FROM analytics_events",
    "persons": "SELECT * EXCLUDE (first_seen_date, last_seen_date, first_order_date, last_order_date)"
               " FROM analytics_persons",
    "person_tags": "SELECT * FROM analytics_person_tags",
}

# Columns ``analytics_persons`` adds to ``persons``: the local days of its timestamps.
PERSON_DATE_COLUMNS = {"first_seen_date": "first_seen", "last_seen_date": "last_seen",
                       "first_order_date": "first_order_at", "last_order_date": "last_order_at"}


def _quote(tz: str) -> str:
    return tz.replace("'", "")


_SET_POSITION = (
    "INSERT INTO sync_state VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position"
)


_OPENINGS = itertools.count(1)


class EventStoreBusy(RuntimeError):
    """Another process holds the event store (DuckDB allows one writer per file)."""


@dataclass(frozen=True)
class EventRow:
    uuid: str
    message_id: str
    source_id: int | None
    type: str
    event: str | None
    person_id: int
    distinct_hash: str
    timestamp: datetime
    received_at: datetime
    channel: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    store: str | None = None
    qr_scene: str | None = None
    order_id: str | None = None
    revenue: Decimal | None = None
    properties: str = "{}"
    context: str = "{}"


_ACTIVITY_INSERT = (
    f"INSERT INTO recent_activity SELECT person_id, timestamp, {', '.join(TOUCH_COLUMNS[:-1])},"
    # The referral code (``messages.touch_from``), looked for only in properties that mention one.
    " CASE WHEN contains(properties, 'referrer_code') OR contains(properties, 'invite_code') THEN left(coalesce("
    "nullif(json_extract_string(properties, '$.referrer_code'), ''),"
    " nullif(json_extract_string(properties, '$.invite_code'), '')), 100) END FROM _incoming WHERE _activity"
)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _at(microseconds: int | None) -> datetime | None:
    return _EPOCH + timedelta(microseconds=microseconds) if microseconds is not None else None


def _touch(text: str | None) -> dict[str, str] | None:
    return {k: v for k, v in orjson.loads(text).items() if v is not None} if text is not None else None


def _activity_query(person_ids: Collection[int] | None) -> tuple[str, list]:
    """``recent_activity`` aggregated per surviving person: (pid, lo, hi, f_at, f_touch, l_at,
    l_touch), times as epoch microseconds, touches as JSON text with nulls (see ``activity``)."""
    where, params = "", []
    if person_ids is not None:
        where, params = f" WHERE a.person_id IN ({', '.join('?' * len(person_ids))})", list(person_ids)
    touched = " OR ".join(f"a.{name} IS NOT NULL" for name in TOUCH_COLUMNS)
    fields = ", ".join(f"{name} := a.{name}" for name in TOUCH_COLUMNS)
    # Times as microseconds and touches as JSON: DuckDB's conversion of zoned timestamps and
    # structs to Python objects took 3/4 of a fold. ``k`` orders equal times by arrival.
    return (
        "WITH t AS (SELECT coalesce(o.person_id, a.person_id) AS pid, epoch_us(a.timestamp) AS ts,"
        " epoch_us(a.timestamp)::HUGEINT * 4294967296 + a.rowid AS k,"
        f" CASE WHEN {touched} THEN to_json(struct_pack({fields})) END AS touch"
        f" FROM recent_activity a LEFT JOIN person_overrides o ON o.old_person_id = a.person_id{where})"
        " SELECT pid, min(ts) AS lo, max(ts) AS hi, min(ts) FILTER (WHERE touch IS NOT NULL) AS f_at,"
        " arg_min(touch, k) FILTER (WHERE touch IS NOT NULL) AS f_touch,"
        " max(ts) FILTER (WHERE touch IS NOT NULL) AS l_at,"
        " arg_max(touch, k) FILTER (WHERE touch IS NOT NULL) AS l_touch"
        " FROM t GROUP BY pid ORDER BY pid", params)


def _naive_text(us: str) -> str:
    """SQL: epoch microseconds ``us`` as ``str()`` of the naive UTC datetime (no fraction when
    it is whole seconds), the text Django's SQLite backend stores."""
    ts = f"make_timestamp({us})"
    return (f"CASE WHEN {us} % 1000000 = 0 THEN strftime({ts}, '%Y-%m-%d %H:%M:%S')"
            f" ELSE strftime({ts}, '%Y-%m-%d %H:%M:%S.%f') END")


def _touch_text(touch: str, naive: str) -> str:
    """SQL: a touch (JSON text with nulls) without its nulls, with ``at``: its time, ``_naive_text``'s
    text as ``datetime.isoformat()`` of the aware value writes it. NULL when ``touch`` is."""
    return (f"CASE WHEN {touch} IS NOT NULL THEN json_merge_patch('{{}}', {touch},"
            f" json_object('at', replace({naive}, ' ', 'T') || '+00:00'))::VARCHAR END")


def _event_table(rows: Sequence[EventRow] | Mapping[str, Sequence[Any]]) -> pa.Table | None:
    """Rows or columns as an Arrow table of the event columns given; None when empty."""
    if isinstance(rows, Mapping):
        given = [(name, arrow) for name, _sql, arrow in EVENT_COLUMNS if name in rows]
        if not given or not len(rows[given[0][0]]):
            return None
        return pa.table({name: pa.array(rows[name], type=arrow) for name, arrow in given})
    if not rows:
        return None
    return pa.table({name: pa.array([getattr(r, name) for r in rows], type=arrow) for name, _sql, arrow in EVENT_COLUMNS})


def event_table(rows: Mapping[str, Sequence[Any]], activity: Sequence[bool] | None = None) -> pa.Table | None:
    """``begin_append``'s columns as an Arrow table, with an ``_activity`` column when given."""
    table = _event_table(rows)
    if table is not None and activity is not None:
        table = table.append_column("_activity", pa.array(activity, type=pa.bool_()))
    return table


def _save_position(cur: duckdb.DuckDBPyConnection, position: tuple[str, int] | None) -> None:
    """Remember how far a sync got (name, last row), inside the caller's transaction."""
    if position is not None:
        cur.execute(_SET_POSITION, list(position))


def _write_overrides(cur: duckdb.DuckDBPyConnection, pairs: Iterable[tuple[int, int, datetime]]) -> None:
    """``EventStore.apply_overrides`` inside the caller's transaction.

    Set-based: chains within ``pairs`` (a -> b, then b -> c) are followed here first, and so is
    a target already merged on (a merge recorded late: see ``sync.sync_late_merges``); then two
    statements re-point earlier overrides and record the new ones, however many."""
    final: dict[int, tuple[int, datetime]] = {}
    for old, new, at in pairs:
        final[old] = (new, at)
    for old in final:
        new, at = final[old]
        seen = {old}
        while new in final and new not in seen:  # merged again later in this list
            seen.add(new)
            new = final[new][0]
        final[old] = (new, at)
    moved = _overrides_of(cur, {new for new, _at in final.values()})
    rows = [(old, moved.get(new, new), at) for old, (new, at) in final.items()]
    rows = [row for row in rows if row[0] != row[1]]  # two concurrent merges made a cycle: nothing to point
    if not rows:
        return
    old_ids, new_ids, times = zip(*rows, strict=True)
    merges = pa.table({"old_person_id": pa.array(old_ids, type=pa.int64()),
                       "person_id": pa.array(new_ids, type=pa.int64()),
                       "merged_at": pa.array(times, type=pa.timestamp("us", tz="UTC"))})
    cur.register("_merges", merges)
    try:
        cur.execute("UPDATE person_overrides SET person_id = m.person_id FROM _merges AS m"
                    " WHERE person_overrides.person_id = m.old_person_id")
        cur.execute("INSERT INTO person_overrides SELECT old_person_id, person_id, merged_at FROM _merges"
                    " ON CONFLICT (old_person_id) DO UPDATE SET person_id = excluded.person_id,"
                    " merged_at = excluded.merged_at")
    finally:
        cur.unregister("_merges")


def _overrides_of(cur: duckdb.DuckDBPyConnection, person_ids: Iterable[int]) -> dict[int, int]:
    """The surviving person of each of ``person_ids`` that was merged into another."""
    ids = list(person_ids)
    if not ids:
        return {}
    cur.register("_asked", pa.table({"asked_id": pa.array(ids, type=pa.int64())}))
    try:
        return dict(cur.execute(
            "SELECT old_person_id, person_id FROM person_overrides JOIN _asked ON old_person_id = asked_id").fetchall())
    finally:
        cur.unregister("_asked")


class PendingAppend:
    """An append running on a helper thread inside an open transaction (``EventStore.begin_append``)."""

    _threads = ThreadPoolExecutor(1, thread_name_prefix="siyu-event-append")

    def __init__(self, store: EventStore, table: pa.Table | None, activity: bool = False) -> None:
        self._done = table is None
        if table is None:
            return
        store._serial_while_busy(table.num_rows)
        self._writing = store._writing(table)
        self._cursor = cur = self._writing.__enter__()
        statements = [store._insert_sql(table), *([_ACTIVITY_INSERT] if activity else [])]
        self._insert = self._threads.submit(lambda: [cur.execute(sql) for sql in statements])

    def wait(self) -> None:
        """Wait for the insert; raises its error (the caller then rolls back both stores)."""
        if not self._done:
            self._insert.result()

    @property
    def open(self) -> bool:
        """Whether a transaction is open (False for an empty append, and once it ended)."""
        return not self._done

    def commit(self, overrides: Sequence[tuple[int, int, datetime]] = (),
               position: tuple[str, int] | None = None) -> None:
        """Commit the events and, in the same transaction, ``overrides`` (as ``apply_overrides``
        takes them) and ``position`` (sync name, value): one commit instead of three."""
        if self._done:
            return
        self._done = True
        try:
            self._insert.result()
            if overrides:
                _write_overrides(self._cursor, overrides)
            _save_position(self._cursor, position)
        except BaseException as exc:
            self._writing.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._writing.__exit__(None, None, None)

    def rollback(self) -> None:
        if self._done:
            return
        self._done = True
        wait([self._insert])  # the insert's own error, if any, is the caller's to see: not raised here
        error = RuntimeError("rolled back: the operational database did not commit")
        self._writing.__exit__(RuntimeError, error, None)  # ROLLBACK; returns without raising ``error``


class EventStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        # Reentrant: ingestion takes it before its operational transaction (``write_lock``) and
        # the append inside takes it again, so every writer locks the store before the database.
        self._lock = threading.RLock()
        try:
            config = {}
            if self.path != ":memory:":
                ext_dir = Path(self.path).parent / "duckdb_extensions"
                ext_dir.mkdir(parents=True, exist_ok=True)
                config["extension_directory"] = str(ext_dir)
            # Checkpoints run on a thread of their own once CHECKPOINT_BYTES of WAL gathered
            # (``_checkpoint_soon``); DuckDB's own, inside the commit that crosses its threshold,
            # is only a safety net for when those keep failing.
            config["checkpoint_threshold"] = "1GB"
            self._con = duckdb.connect(self.path, config=config)
        except duckdb.IOException as exc:
            raise EventStoreBusy(
                f"the event store {self.path} is in use by another siyu process "
                "(stop `siyu serve` or send the data through its API)"
            ) from exc
        self._wal = self.path + ".wal"
        self._checkpoint: Future | None = None
        self._checkpoint_lock = threading.Lock()
        self._closing = False
        self._threads_lock = threading.Lock()  # guards the two below (held briefly: the writer takes it)
        self._set_lock = threading.Lock()  # held while a SET threads runs, and by ``close``
        self._serial_until: float | None = None  # DuckDB runs on one thread until then (None: on all)
        self._restorer: threading.Thread | None = None
        self.tz = _quote(settings.TIME_ZONE)
        for stmt in SCHEMA:
            self._con.execute(stmt)
        self._fill_local_time()
        for stmt in analytics_views(self.tz):
            self._con.execute(stmt)
        cur = self._con.cursor()
        self._threads = cur.execute("SELECT current_setting('threads')").fetchone()[0]
        cur.close()
        # Cached query answers are valid for one (opening, generation): every write bumps it.
        self.opening = next(_OPENINGS)
        self.generation = 0

    def _fill_local_time(self) -> None:
        """Compute ``local_ts`` where missing, or everywhere when the brand's time zone changed."""
        cur = self._con.cursor()
        row = cur.execute("SELECT value FROM store_meta WHERE name = 'time_zone'").fetchone()
        where = "" if row is not None and row[0] != self.tz else " WHERE local_ts IS NULL"
        cur.execute("BEGIN")
        cur.execute(f"UPDATE events SET local_ts = timezone('{self.tz}', timestamp){where}")
        cur.execute("INSERT INTO store_meta VALUES ('time_zone', ?) ON CONFLICT (name)"
                    " DO UPDATE SET value = excluded.value", [self.tz])
        cur.execute("COMMIT")

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self._con.cursor()

    def close(self) -> None:
        with self._checkpoint_lock:
            self._closing = True  # no checkpoint is asked for after this
            running = self._checkpoint
        if running is not None:
            wait([running])
        with self._set_lock:  # no SET threads after this
            self._con.close()

    # -- checkpoints -----------------------------------------------------------
    _checkpointer = ThreadPoolExecutor(1, thread_name_prefix="siyu-duckdb-checkpoint")

    def _checkpoint_soon(self) -> None:
        """After a commit: copy the WAL into the database file on the checkpoint thread once
        ``CHECKPOINT_BYTES`` of it gathered. DuckDB's own checkpoint runs inside the commit that
        crosses its threshold, and at a few MB a commit ingestion then waited 2-4 s every ~300 000
        events while the server compressed them (the processing process idle meanwhile); DuckDB
        lets commits and reads go on during a checkpoint, so here nothing waits for it."""
        if self.path == ":memory:":
            return
        try:
            if os.path.getsize(self._wal) < CHECKPOINT_BYTES:
                return
        except OSError:  # no WAL
            return
        with self._checkpoint_lock:
            if self._closing or (self._checkpoint is not None and not self._checkpoint.done()):
                return
            with contextlib.suppress(RuntimeError):  # the interpreter is shutting down: DuckDB checkpoints when closed
                self._checkpoint = self._checkpointer.submit(self._run_checkpoint)

    def _run_checkpoint(self) -> None:
        try:
            cur = self._con.cursor()
            try:
                cur.execute("CHECKPOINT")
            finally:
                cur.close()
        except duckdb.Error:  # the next commit asks again; past 1 GB DuckDB checkpoints itself
            log.warning("checkpointing the event store failed; will retry", exc_info=True)

    # -- threads -------------------------------------------------------------
    def _serial_while_busy(self, rows: int) -> None:
        """Before an append of ``rows``: on a machine of up to ``SERIAL_MAX_CORES`` cores, one that
        large means ingestion is behind and keeps the cores busy, and there DuckDB's parallel
        insert only adds work (its threads hand the rows between them: a group of 20 000 events
        cost ~13.5 µs of CPU an event on two threads, ~7.7 on one, in less wall time). So DuckDB
        runs on one thread until no such append came for ``SERIAL_SECONDS``; queries meanwhile
        run on one thread too, on a machine with no core free for them. A thread of its own makes
        both changes: lowering the count waits for DuckDB's workers to finish their tasks (a
        query's scan), and the caller holds the store's lock and a database transaction."""
        if rows < SERIAL_ROWS or (os.cpu_count() or 1) > SERIAL_MAX_CORES:
            return
        with self._threads_lock:
            if self._closing:
                return
            serial = self._serial_until is not None
            self._serial_until = time.monotonic() + SERIAL_SECONDS
            if serial:
                return
            try:
                thread = threading.Thread(target=self._run_serial, name="siyu-duckdb-threads", daemon=True)
                thread.start()
            except RuntimeError:  # no new thread (the interpreter is shutting down): stay as we are
                self._serial_until = None
                return
            self._restorer = thread

    def _run_serial(self) -> None:
        """One thread for DuckDB until ``_serial_until`` passed with no later append, then its own
        count again."""
        self._apply_threads()
        while True:
            with self._threads_lock:
                left = self._serial_until - time.monotonic()
                if left <= 0 or self._closing:
                    self._serial_until = None
                    break
            time.sleep(left)
        self._apply_threads()

    def _apply_threads(self) -> None:
        """Give DuckDB the thread count wanted now: one while ``_serial_until`` is set, else its own.
        Read when applied, so whichever thread applies last leaves the right count (a new serial
        spell may start while the last one's thread restores). Never after ``close``."""
        with self._set_lock:
            if self._closing:
                return
            with self._threads_lock:
                threads = 1 if self._serial_until is not None else self._threads
            self._set_threads(threads)

    def _set_threads(self, threads: int) -> None:
        """SET threads (a setting of the whole database). A failure only costs the saving: it is
        logged."""
        try:
            cur = self._con.cursor()
            try:
                cur.execute(f"SET threads = {int(threads)}")
            finally:
                cur.close()
        except duckdb.Error:
            log.warning("could not set the event store's threads to %s", threads, exc_info=True)

    # -- writes (the ingest writer thread) -----------------------------------
    def append(self, rows: Sequence[EventRow] | Mapping[str, Sequence[Any]], *,
               position: tuple[str, int] | None = None) -> None:
        """Append events in one transaction; durable when this returns.

        ``rows`` is a sequence of ``EventRow`` or, on the ingestion hot path, the
        columns themselves (name -> values, every list the same length): a column
        left out is NULL, except ``uuid``, which DuckDB then generates.
        ``position`` (sync name, last row copied) is saved in the same transaction,
        so a sync that crashes midway neither loses nor repeats events.
        """
        table = _event_table(rows)
        if table is None:
            return
        with self._writing(table) as cur:
            cur.execute(self._insert_sql(table))
            _save_position(cur, position)

    def write_lock(self) -> threading.RLock:
        """The store's write lock, for a caller that will write to it inside a database transaction:
        taken first, it keeps one lock order (store, then database) and so rules out a deadlock
        with a writer holding the store while it waits for the database."""
        return self._lock

    def begin_append(self, rows: Mapping[str, Sequence[Any]], *, activity: Sequence[bool] | None = None,
                     intake: tuple[str, int] | None = None) -> PendingAppend:
        """Start appending ``rows`` (columns, as ``append`` takes them) on a helper thread and
        return at once; the events are written when ``commit`` returns, never if ``rollback``
        is called. Ingestion overlaps the insert with its operational-database transaction
        this way. Other writes wait until the pending append ends.

        ``activity``: for each row, whether its time and touch are customers' activity still to
        be folded into their profile; those also go to ``recent_activity`` (see ``activity``).
        ``intake`` (the intake position the rows belong to) matters only to a store in another
        process (``ingest.processor.RemoteStore``).
        """
        return self.begin_append_table(event_table(rows, activity), activity=activity is not None)

    def begin_append_table(self, table: pa.Table | None, *, activity: bool = False) -> PendingAppend:
        """``begin_append`` for a table ``event_table`` made (maybe in another process)."""
        return PendingAppend(self, table, activity)

    # -- activity not yet folded into the profiles ----------------------------
    def activity(self, person_ids: Collection[int] | None = None, *, chunk: int = 10_000) -> Iterator[list[tuple]]:
        """``recent_activity`` per surviving person (merges followed), ``chunk`` persons at a time:
        rows of (person id, first seen, last seen, first touch at, first touch, last touch at,
        last touch), the times aware UTC, the touches dicts of their non-empty facts (None when no
        event had any). Between equal times the first touch is the earliest recorded, the last
        the latest. ``person_ids``: only the events recorded under these ids."""
        if person_ids is not None and not person_ids:
            return
        cur = self.cursor()
        cur.execute(*_activity_query(person_ids))
        while rows := cur.fetchmany(chunk):
            yield [(pid, _at(lo), _at(hi), _at(f_at), _touch(f_touch), _at(l_at), _touch(l_touch))
                   for pid, lo, hi, f_at, f_touch, l_at, l_touch in rows]

    def activity_to_fold(self, *, chunk: int = 10_000) -> Iterator[list[tuple]]:
        """``activity`` of everyone, made here into what the fold writes (``profile.apply_activity``),
        as DuckDB makes it faster than Python: rows of (person id, first seen, last seen, first touch
        at, first touch, its channel, last touch at, last touch), the times naive UTC text as
        ``str(datetime)`` writes it (SQLite's form), the touches JSON text of their non-empty facts
        and ``at`` (the time, ISO 8601), the channel at most 64 characters ('' when none); the
        touch fields are None when no event had a touch."""
        sql, params = _activity_query(None)
        cur = self.cursor()
        cur.execute(
            f"WITH g AS ({sql}), f AS (SELECT pid, {_naive_text('lo')} AS lo, {_naive_text('hi')} AS hi,"
            f" {_naive_text('f_at')} AS f_at, f_touch, {_naive_text('l_at')} AS l_at, l_touch FROM g)"
            f" SELECT pid, lo, hi, f_at, {_touch_text('f_touch', 'f_at')},"
            " CASE WHEN f_touch IS NOT NULL THEN left(coalesce(json_extract_string(f_touch, '$.channel'), ''), 64) END,"
            f" l_at, {_touch_text('l_touch', 'l_at')} FROM f ORDER BY pid", params)
        while rows := cur.fetchmany(chunk):
            yield rows

    def activity_size(self) -> int:
        return self.cursor().execute("SELECT count(*) FROM recent_activity").fetchone()[0]

    def clear_activity(self, upto: int) -> None:
        """Forget the activity folded: the first ``upto`` rows (those ``activity`` read, when the
        caller has held ``write_lock`` since; later rows stay)."""
        with self._writing(changes_analytics=False) as cur:
            if cur.execute("SELECT count(*) FROM recent_activity").fetchone()[0] == upto:
                cur.execute("DELETE FROM recent_activity")
            else:
                cur.execute("DELETE FROM recent_activity WHERE rowid IN"
                            " (SELECT rowid FROM recent_activity ORDER BY rowid LIMIT ?)", [upto])

    def _insert_sql(self, table: pa.Table) -> str:
        select = ", ".join(name if name in table.column_names else _GENERATED.get(name, "NULL")
                           for name, _sql, _arrow in EVENT_COLUMNS)
        return (f"INSERT INTO events ({_COLUMN_NAMES}, local_ts)"
                f" SELECT {select}, timezone('{self.tz}', timestamp) FROM _incoming")

    def apply_overrides(self, pairs: Iterable[tuple[int, int, datetime]], *,
                        position: tuple[str, int] | None = None) -> None:
        """Record merged -> surviving person, keeping every chain one hop long (and ``position``,
        as ``append`` does, in the same transaction)."""
        pairs = list(pairs)
        if not pairs and position is None:
            return
        with self._writing() as cur:
            _write_overrides(cur, pairs)
            _save_position(cur, position)

    def overrides_of(self, person_ids: Iterable[int]) -> dict[int, int]:
        """The surviving person of each of ``person_ids`` that was merged into another."""
        cur = self.cursor()
        try:
            return _overrides_of(cur, person_ids)
        finally:
            cur.close()

    def replace_persons(self, table: pa.Table, signature: tuple[str, int] | None = None) -> None:
        """Swap in a new copy of the persons table (``sync.sync_persons``), remembering
        the ``signature`` of what it copied in the same transaction."""
        self._replace("persons", table, f"INSERT INTO persons ({_PERSON_NAMES}) SELECT {_PERSON_NAMES} FROM _incoming",
                      signature)

    def replace_tags(self, table: pa.Table, signature: tuple[str, int] | None = None) -> None:
        """Swap in a new copy of the persons' tags (``sync.sync_tags``): columns person_id, tag."""
        self._replace("person_tags", table, "INSERT INTO person_tags SELECT person_id, tag FROM _incoming",
                      signature)

    def _replace(self, name: str, table: pa.Table, insert: str, signature: tuple[str, int] | None) -> None:
        with self._writing(table) as cur:
            cur.execute(f"DELETE FROM {name}")
            cur.execute(insert)
            _save_position(cur, signature)

    @contextmanager
    def _writing(self, incoming: pa.Table | None = None, *, changes_analytics: bool = True
                 ) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction (``incoming`` readable as ``_incoming``), rolled back on any error.

        Writes that change what analytics read bump ``generation``, which retires cached answers.
        """
        with self._lock:
            cur = self._con.cursor()
            if incoming is not None:
                cur.register("_incoming", incoming)
            try:
                cur.execute("BEGIN")
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                if incoming is not None:
                    cur.unregister("_incoming")
            if changes_analytics:
                self.generation += 1
        self._checkpoint_soon()

    # -- segment membership --------------------------------------------------
    def replace_segment_members(self, segment_id: int, person_ids: pa.Array, at: datetime) -> dict[str, int]:
        """Make ``person_ids`` the members of a segment, recording who entered and who left.

        One transaction: the member list and its changes never disagree. Returns
        the new size and how many entered and left. Membership does not change
        what analytics queries read, so the store's generation stays.
        """
        incoming = pa.table({"person_id": pa.array(person_ids, type=pa.int64())})
        with self._writing(incoming, changes_analytics=False) as cur:
            cur.execute("CREATE OR REPLACE TEMP TABLE _new AS SELECT DISTINCT person_id FROM _incoming")
            cur.execute("CREATE OR REPLACE TEMP TABLE _old AS SELECT person_id FROM segment_members"
                        " WHERE segment_id = ?", [segment_id])
            entered = cur.execute(
                "INSERT INTO segment_changes SELECT ?, person_id, 'entered', ? FROM"
                " (SELECT person_id FROM _new EXCEPT SELECT person_id FROM _old)", [segment_id, at]
            ).fetchone()[0]
            left = cur.execute(
                "INSERT INTO segment_changes SELECT ?, person_id, 'left', ? FROM"
                " (SELECT person_id FROM _old EXCEPT SELECT person_id FROM _new)", [segment_id, at]
            ).fetchone()[0]
            if entered or left:
                cur.execute("DELETE FROM segment_members WHERE segment_id = ?", [segment_id])
                cur.execute("INSERT INTO segment_members SELECT ?, person_id FROM _new", [segment_id])
            size = cur.execute("SELECT count(*) FROM _new").fetchone()[0]
            cur.execute("DROP TABLE _new")
            cur.execute("DROP TABLE _old")
        return {"size": size, "entered": entered, "left": left}

    def drop_segment(self, segment_id: int) -> None:
        """Forget a deleted segment's members and changes."""
        with self._writing(changes_analytics=False) as cur:
            cur.execute("DELETE FROM segment_members WHERE segment_id = ?", [segment_id])
            cur.execute("DELETE FROM segment_changes WHERE segment_id = ?", [segment_id])

    def segment_members(self, segment_id: int, *, offset: int = 0, limit: int | None = 100) -> list[int]:
        """Member person ids in ascending order (``limit=None``: all of them)."""
        sql = "SELECT person_id FROM segment_members WHERE segment_id = ? ORDER BY person_id"
        params: list[Any] = [segment_id]
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return [r[0] for r in self.cursor().execute(sql, params).fetchall()]

    def segment_size(self, segment_id: int) -> int:
        return self.cursor().execute("SELECT count(*) FROM segment_members WHERE segment_id = ?",
                                     [segment_id]).fetchone()[0]

    def segment_changes(self, segment_id: int, since: datetime, *, limit: int = 1000) -> list[tuple]:
        """(person_id, change, at) since ``since``, newest first."""
        return self.cursor().execute(
            "SELECT person_id, change, changed_at FROM segment_changes WHERE segment_id = ? AND changed_at >= ?"
            " ORDER BY changed_at DESC, person_id LIMIT ?", [segment_id, since, limit]).fetchall()

    def export_parquet(self, directory: str | Path) -> dict[str, int]:
        """Write what analytics read to ``events.parquet``, ``persons.parquet`` and
        ``person_tags.parquet`` (for Spark)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        counts = {}
        cur = self.cursor()
        for name, sql in ANALYTICS_SOURCES.items():
            target = str(out / f"{name}.parquet").replace("'", "''")
            cur.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)")
            counts[name] = cur.execute(f"SELECT count(*) FROM '{target}'").fetchone()[0]
        return counts

    def get_position(self, name: str) -> int:
        row = self.cursor().execute("SELECT position FROM sync_state WHERE name = ?", [name]).fetchone()
        return row[0] if row else 0

    # -- reads ---------------------------------------------------------------
    def message_id_chunks(self, since: datetime, limit: int, size: int) -> Iterator[list[tuple[int | None, str]]]:
        """(source id, message id) of the newest ``limit`` events received since ``since``, newest
        first, ``size`` at a time."""
        cur = self.cursor().execute(
            "SELECT source_id, message_id FROM events WHERE received_at >= ? ORDER BY received_at DESC LIMIT ?",
            [since, limit],
        )
        while rows := cur.fetchmany(size):
            yield rows

    def timeline(self, person_ids: Sequence[int], limit: int = 100) -> list[dict]:
        """The newest events of these persons (a person and everyone merged into it)."""
        return self.timeline_page(person_ids, limit)

    def timeline_page(
        self, person_ids: Sequence[int], limit: int = 50, after: tuple[datetime, str] | None = None
    ) -> list[dict]:
        """Events of these persons, newest first, continuing past ``after`` = (timestamp, uuid).

        Ordering by (timestamp, uuid) gives pages that neither skip nor repeat
        events sharing a timestamp, which a bare ``timestamp < last`` would.
        """
        if not person_ids:
            return []
        marks = ", ".join("?" for _ in person_ids)
        cols = ["uuid", "type", "event", "timestamp", "source_id", "channel", "store", "order_id", "revenue",
                "properties"]
        sql = f"SELECT {', '.join(cols)} FROM events WHERE person_id IN ({marks})"
        params: list[Any] = list(person_ids)
        if after is not None:
            sql += " AND (timestamp < ? OR (timestamp = ? AND uuid < ?))"
            params += [after[0], after[0], after[1]]
        sql += " ORDER BY timestamp DESC, uuid DESC LIMIT ?"
        params.append(limit)
        out = []
        for row in self.cursor().execute(sql, params).fetchall():
            item = dict(zip(cols, row, strict=True))
            item["properties"] = json.loads(item["properties"]) if item["properties"] else {}
            out.append(item)
        return out

    def counts(self) -> dict[str, Any]:
        row = self.cursor().execute(
            "SELECT count(*), count(DISTINCT person_id), max(received_at) FROM events"
        ).fetchone()
        return {"events": row[0], "persons_with_events": row[1], "last_received_at": row[2]}

    def daily_counts(self, days: int = 30) -> list[tuple[Any, int]]:
        tz = settings.TIME_ZONE
        return self.cursor().execute(
            f"SELECT CAST(timezone('{tz}', timestamp) AS DATE) AS d, count(*) FROM events"
            " WHERE timestamp >= now() - to_days(CAST(? AS INTEGER)) GROUP BY d ORDER BY d",
            [days],
        ).fetchall()


_store: EventStore | None = None
_store_lock = threading.Lock()


def open_store() -> EventStore | None:
    """The process's event store if it is open, else None (without opening it)."""
    return _store


def get_store() -> EventStore:
    """The process's event store, opened on first use."""
    global _store
    with _store_lock:
        if _store is None:
            _store = EventStore(settings.SIYU_EVENT_STORE)
        return _store


def use_store(store) -> None:
    """Make ``store`` this process's event store (``ingest.processor``'s child: a proxy to the
    server's)."""
    global _store
    with _store_lock:
        _store = store


def close_store() -> None:
    global _store
    with _store_lock:
        if _store is not None:
            _store.close()
            _store = None


def utcnow() -> datetime:
    return datetime.now(UTC)

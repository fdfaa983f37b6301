"""Rerunnable syncs from the operational database into the event store.

Each sync remembers the last row it copied in ``sync_state``; a crash midway is
fixed by running it again: overrides are upserts, and order events are written
in the same transaction as the position that says they were written.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from datetime import datetime
from decimal import Decimal

import orjson
import pyarrow as pa
from django.db import connection, transaction
from django.db.models import Count, Max
from django.db.models.functions import Coalesce

from siyu.analytics.engine import PERSON_COLUMNS, EventRow, EventStore, utcnow
from siyu.customers.models import Person, PersonMerge
from siyu.customers.profile import normalise_gender
from siyu.db import json_text
from siyu.orders.models import Order

# One caller at a time for each side (the ingestion writer when idle, the scheduler, commands),
# separately: the writer, which waits for the first, must never wait for a full copy.
_events_lock = threading.RLock()  # merges and imported orders into the events' side
_copies_lock = threading.RLock()  # the copies of the persons and their tags
_YEAR = re.compile(r"(19|20)\d\d")


def sync_overrides(store: EventStore) -> int:
    """Copy merges recorded since the last run into ``person_overrides``."""
    # Under the store's lock: a batch committing newer merges (and a newer position) meanwhile
    # would otherwise be followed by this older position.
    with store.write_lock():
        merges, position = unsynced_merges(store)
        if merges:
            store.apply_overrides(merges, position=position)
    return len(merges)


LATE_MERGE_LOOKBACK = 10_000


def sync_late_merges(store: EventStore) -> int:
    """Record the merges behind the sync position that the event store lacks.

    The position moves past the highest merge id copied. On PostgreSQL an id is taken when
    the row is inserted, not when it commits, so a merge committed after one with a higher
    id (an import beside the server, say) would be passed over for good. The merges with the
    ``LATE_MERGE_LOOKBACK`` ids up to the position are checked against the overrides (a cheap
    read, and on SQLite, whose writers take turns, it never finds any); one whose target was
    merged on since is pointed at the survivor.
    """
    with store.write_lock():
        position = store.get_position("person_merges")
        rows = list(PersonMerge.objects.filter(pk__gt=position - LATE_MERGE_LOOKBACK, pk__lte=position)
                    .order_by("pk").values_list("merged_id", "into_id", "at"))
        if not rows:
            return 0
        known = store.overrides_of({merged for merged, _into, _at in rows} | {into for _merged, into, _at in rows})
        # Not missing: one already recorded, and one of two concurrent merges that made a cycle.
        missing = [(merged, into, at) for merged, into, at in rows
                   if merged not in known and known.get(into, into) != merged]
        if missing:
            store.apply_overrides(missing)
    return len(missing)


def unsynced_merges(store: EventStore, limit: int = 100_000
                    ) -> tuple[list[tuple[int, int, datetime]], tuple[str, int] | None]:
    """Merges recorded since the last sync (at most ``limit``), as ``apply_overrides`` takes them,
    and the sync position to save with them (None when there are none)."""
    position = store.get_position("person_merges")
    rows = list(PersonMerge.objects.filter(pk__gt=position).order_by("pk")
                .values_list("pk", "merged_id", "into_id", "at")[:limit])
    return [(merged, into, at) for _pk, merged, into, at in rows], ("person_merges", rows[-1][0]) if rows else None


def sync_imported_orders(store: EventStore, batch: int = 10_000) -> int:
    """Write an ``Order Completed`` event for each imported order not yet in the store."""
    total = 0
    while True:
        position = store.get_position("imported_orders")
        orders = list(Order.objects.filter(pk__gt=position, origin__startswith="import:").order_by("pk")[:batch])
        if not orders:
            return total
        now = utcnow()
        store.append([
            EventRow(
                uuid=f"order-{o.pk}", message_id=f"import-order:{o.pk}", source_id=None, type="track",
                event="Order Completed", person_id=o.person_id, distinct_hash="", timestamp=o.placed_at,
                received_at=now, channel=o.channel or None, store=o.store or None, order_id=o.external_id,
                revenue=o.amount,
                properties=json.dumps({"order_id": o.external_id, "total": str(o.amount),
                                       "currency": o.currency, "coupon": o.coupon}, ensure_ascii=False),
            )
            for o in orders
        ], position=("imported_orders", orders[-1].pk))
        total += len(orders)


def _signature(*parts) -> int:
    return int.from_bytes(hashlib.sha1(repr(parts).encode()).digest()[:7], "big")


def persons_signature() -> int:
    """Changes whenever a person is created, merged, erased, seen again or predicted anew."""
    from siyu.valuation.models import ClvModel

    agg = Person.objects.aggregate(n=Count("id"), top=Max("id"), seen=Max("last_seen"),
                                   merged=Count("merged_into"), erased=Count("erased_at"))
    model = ClvModel.objects.aggregate(top=Max("id"))["top"]
    return _signature(agg["n"], agg["top"], agg["merged"], agg["erased"],
                      agg["seen"].isoformat() if agg["seen"] else None, model)


def sync_persons(store: EventStore, *, force: bool = False, chunk: int = 50_000) -> int:
    """Replace the event store's copy of the persons' non-personal attributes.

    A full copy, skipped when nothing changed since the last one. Returns how many
    persons were copied (0 when skipped). Read with plain SQL and converted a column
    at a time (times and money by Arrow): at 1 000 000 persons the ORM's per-value
    converters took 21 s of the copy's 24.
    """
    signature = persons_signature()
    if not force and store.get_position("persons_signature") == signature:
        return 0
    with connection.chunked_cursor() as cur:  # on PostgreSQL a server-side cursor: rows arrive by the chunk
        cur.execute(_persons_sql())
        batches = [_persons_batch(rows) for rows in iter(lambda: cur.fetchmany(chunk), [])]
    table = pa.Table.from_batches(batches, schema=_PERSONS_SCHEMA)
    store.replace_persons(table, signature=("persons_signature", signature))
    return table.num_rows


def _persons_batch(rows: list[tuple]) -> pa.RecordBatch:
    """A chunk of the query's rows as Arrow columns. Each chunk becomes Arrow at once: a million
    Python values held in lists until the end made the garbage collector's full passes (which
    walk every list) half of the copy's time."""
    values = dict(zip(_PERSON_SQL_COLUMNS, zip(*rows, strict=True), strict=True))
    touches = [_json(v) for v in values.pop("first_touch")]
    traits = [_traits(_json(v)) for v in values.pop("traits")]
    values["acquisition_channel"] = [c or None for c in values["acquisition_channel"]]
    for name, key in (("first_store", "store"), ("first_utm_source", "utm_source"), ("first_qr_scene", "qr_scene")):
        values[name] = [t.get(key) for t in touches]
    values.update(zip(("gender", "birth_year", "city", "traits"), zip(*traits, strict=True), strict=True))
    return pa.record_batch([_arrow(list(values[f.name]), f.type) for f in _PERSONS_SCHEMA], schema=_PERSONS_SCHEMA)


_PERSONS_SCHEMA = pa.schema([(name, arrow) for name, _sql, arrow in PERSON_COLUMNS])
# What the query reads, in its order; the rest of PERSON_COLUMNS is derived from first_touch and traits.
_PERSON_SQL_COLUMNS = ("person_id", "first_seen", "acquisition_channel", "first_touch", "traits", "referrer_id",
                       "order_count", "total_spend", "last_seen", "first_order_at", "last_order_at", "p_alive",
                       "expected_purchases", "predicted_spend", "clv")


def _persons_sql() -> str:
    from siyu.valuation.models import CustomerPrediction

    person, prediction = Person._meta.db_table, CustomerPrediction._meta.db_table
    # On SQLite, times are read as the stored text (a column that is an expression has no declared
    # type, so Django's converter skips it) and parsed by Arrow in one go.
    time = "({} || '')" if connection.vendor == "sqlite" else "{}"
    return (
        "SELECT p.id, COALESCE(p.first_seen, p.created_at), p.acquisition_channel, p.first_touch, p.traits,"
        f" p.referrer_id, p.order_count, p.total_spend, {time.format('p.last_seen')},"
        f" {time.format('p.first_order_at')}, {time.format('p.last_order_at')},"
        " c.p_alive, c.expected_purchases, c.predicted_spend, c.clv"
        f" FROM {person} p LEFT JOIN {prediction} c ON c.person_id = p.id"
        " WHERE p.merged_into_id IS NULL AND p.erased_at IS NULL ORDER BY p.id"
    )


def _traits(traits: dict) -> tuple[str | None, int | None, str | None, str | None]:
    """gender, birth year, city and the traits as JSON text (most persons have none)."""
    if not traits:
        return None, None, None, None
    return normalise_gender(traits.get("gender")), _birth_year(traits), _text(traits.get("city")), json_text(traits)


def _json(value) -> dict:
    """A JSON column as read with plain SQL (text; a driver that parses JSON gives the dict)."""
    if isinstance(value, (str, bytes)):
        value = orjson.loads(value)
    return value if isinstance(value, dict) else {}


def _arrow(values: list, arrow: pa.DataType) -> pa.Array:
    """One column as Arrow, from the values the database driver returned."""
    if pa.types.is_timestamp(arrow) and any(isinstance(v, str) for v in values):
        # SQLite: naive UTC text, as Django writes it; Arrow parses it (with or without a fraction).
        return pa.array(values, pa.string()).cast(pa.timestamp("us")).cast(arrow)
    if pa.types.is_decimal(arrow) and not any(isinstance(v, Decimal) for v in values):
        # SQLite: numbers; money is whole cents, and the cast rounds to the nearest one (and
        # refuses what does not fit).
        return pa.array(values, pa.float64()).cast(arrow)
    return pa.array(values, arrow)


def _birth_year(traits: dict) -> int | None:
    for key in ("birthday", "birth_date", "birthdate", "birth_year"):
        match = _YEAR.search(str(traits.get(key) or ""))
        if match:
            return int(match.group(0))
    return None


def _text(value) -> str | None:
    return str(value)[:64] if value not in (None, "") else None


def tags_signature() -> int:
    """Changes whenever a tag is added to or removed from someone (or a tagged person merges)."""
    from siyu.segments.models import PersonTag

    agg = PersonTag.objects.aggregate(n=Count("id"), top=Coalesce(Max("id"), 0))
    merged = Person.objects.filter(merged_into__isnull=False, tags__isnull=False).count()
    return _signature(agg["n"], agg["top"], merged)


def sync_tags(store: EventStore, *, force: bool = False) -> int:
    """Replace the event store's copy of who carries which tag (skipped when nothing changed)."""
    with _copies_lock:
        return _sync_tags(store, force)


def _sync_tags(store: EventStore, force: bool) -> int:
    from siyu.segments.models import PersonTag

    signature = tags_signature()
    if not force and store.get_position("tags_signature") == signature:
        return 0
    pairs = list(PersonTag.objects.filter(person__merged_into__isnull=True, person__erased_at__isnull=True)
                 .values_list("person_id", "tag__name"))
    table = pa.table({"person_id": pa.array([p for p, _t in pairs], type=pa.int64()),
                      "tag": pa.array([t for _p, t in pairs], type=pa.string())})
    store.replace_tags(table, signature=("tags_signature", signature))
    return table.num_rows


def sync_events(store: EventStore) -> dict[str, int]:
    """What other processes recorded that the events' side must reflect: merges and imported
    orders. Cheap when nothing is new; the ingestion writer runs it when idle."""
    with _events_lock:
        return {"overrides": sync_overrides(store), "late_merges": sync_late_merges(store),
                "imported_orders": sync_imported_orders(store)}


def sync_copies(store: EventStore) -> dict[str, int]:
    """The copies of the persons and their tags: a full copy when anything changed (~10 s at a
    million persons), so the scheduler runs it on its own thread, not the ingestion writer."""
    with _copies_lock:
        return {"persons": sync_persons(store), "tags": sync_tags(store)}


def sync_all(store: EventStore) -> dict[str, int]:
    """Every sync (the scheduled refresh, commands, the server's start)."""
    return {"activity": fold_activity(store), **sync_events(store), **sync_copies(store)}


def fold_activity(store: EventStore, chunk: int = 10_000) -> int:
    """Fold the activity that ingestion recorded in the event store (``recent_activity``) into
    the profiles' first/last seen and first/last touch; returns how many persons it updated.

    Ingestion writes these only for the persons it creates (and those whose traits it writes):
    moving a customer's last-seen time for every message dirtied a page of the persons table
    per message, the largest single cost of ingestion. The events hold the same facts, so they
    are folded in here, a person at a time however many messages it sent, by the ingestion
    writer every ``pipeline.FOLD_SECONDS`` and when idle, at shutdown, and by every full sync.
    Until then ``customers.queries.with_recent_activity`` adds the unfolded part when a profile
    is read in the process that owns the store. Rerunnable: the updates keep the earliest and
    latest values, so a crash between the database's commit and the store's clearing only
    folds the same activity again.
    """
    from siyu.customers.profile import apply_activity

    persons = 0
    with store.write_lock():
        size = store.activity_size()
        if not size:
            return 0
        for rows in store.activity_to_fold(chunk=chunk):
            with transaction.atomic():
                apply_activity(rows)
            persons += len(rows)
        store.clear_activity(size)
    return persons

"""Analytics fixtures: small hand-made event sets, run on every engine.

``load(events, persons)`` writes the rows into a fresh embedded event store and
returns an engine over them: DuckDB, and Apache Spark in local mode (the
``spark`` mark; CI installs pyspark with the ``spark`` extra). Every runner
test therefore runs on both engines and must get exactly the same answer.

Times in ``ev``/``person`` are on the brand's clock (Asia/Shanghai in tests),
written as "YYYY-MM-DD HH:MM".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from siyu.analytics.engine import PERSON_COLUMNS, EventRow, get_store

BRAND_TZ = ZoneInfo("Asia/Shanghai")
_seq = iter(range(1, 10**9))


def utc(local: str) -> datetime:
    """A brand-clock time ("2026-01-05 10:00") as an aware UTC datetime."""
    return datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=BRAND_TZ).astimezone(UTC)


def ev(person: int, event: str, at: str, *, type: str = "track", revenue: str | None = None,
       order_id: str | None = None, properties: str = "{}", **columns) -> EventRow:
    """One event row; ``columns`` sets channel, store, utm_source, source_id, ..."""
    n = next(_seq)
    if event == "Order Completed" and order_id is None:
        order_id = f"o{n}"
    return EventRow(uuid=f"u{n:09d}", message_id=f"m{n}", type=type, event=event, person_id=person,
                    distinct_hash="", timestamp=utc(at), received_at=utc(at),
                    revenue=Decimal(revenue) if revenue is not None else None, order_id=order_id,
                    properties=properties, **{"source_id": None, **columns})


def order(person: int, at: str, revenue: str, **columns) -> EventRow:
    return ev(person, "Order Completed", at, revenue=revenue, **columns)


def person(person_id: int, first_seen: str = "2026-01-01 09:00", **attrs) -> dict:
    """A ``persons`` row: acquisition_channel, first_store, gender, city, birth_year, order_count, ..."""
    row = {name: None for name, _sql, _arrow in PERSON_COLUMNS}
    row.update(person_id=person_id, first_seen=utc(first_seen), order_count=0, total_spend=Decimal("0"))
    for key, value in attrs.items():
        if key not in row:
            raise KeyError(f"persons has no column {key}")
        if key in ("total_spend", "predicted_spend", "clv"):
            value = Decimal(value)
        elif key in ("last_seen", "first_order_at", "last_order_at"):
            value = utc(value)
        elif key == "traits":
            value = json.dumps(value)
        row[key] = value
    return row


def _persons_table(rows: Iterable[dict]) -> pa.Table:
    rows = list(rows)
    return pa.table({name: pa.array([r[name] for r in rows], type=arrow) for name, _sql, arrow in PERSON_COLUMNS})


@pytest.fixture(params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def engine_name(request) -> str:
    if request.param == "spark":
        pytest.importorskip("pyspark", reason="install the spark extra: uv sync --extra spark")
    return request.param


@pytest.fixture
def load(engine_name):
    """``load(events, persons=(), overrides=(), tags=())`` -> an engine over exactly those rows
    (``tags``: (person_id, tag) pairs)."""
    from siyu.analytics import queries
    from siyu.analytics.engines import DuckDBEngine, SparkEngine, spark_session

    queries.clear_cache()

    def _load(events: Iterable[EventRow], persons: Iterable[dict] = (),
              overrides: Iterable[tuple[int, int]] = (), tags: Iterable[tuple[int, str]] = ()):
        store = get_store()
        store.append(list(events))
        store.replace_persons(_persons_table(persons))
        tags = list(tags)
        store.replace_tags(pa.table({"person_id": pa.array([p for p, _t in tags], type=pa.int64()),
                                     "tag": pa.array([t for _p, t in tags], type=pa.string())}))
        if overrides:
            store.apply_overrides((old, new, datetime.now(UTC)) for old, new in overrides)
        if engine_name == "duckdb":
            return DuckDBEngine(store)
        spark = SparkEngine(spark_session("local[1]"))
        spark.load_from_store(store)
        return spark

    return _load

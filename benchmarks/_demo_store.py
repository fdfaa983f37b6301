"""The demo-brand event store the analytics and segment benchmarks measure, and their timing helpers.

``bench_analytics.py`` and ``bench_segments.py`` share it: the data folder (an
existing demo with ``--data-dir``, or one built now), the persons copy synced,
and optionally a copy holding the demo ``--replicate`` times over (disjoint
customers) to reach the figures' size from a smaller build.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_data_arguments(parser: argparse.ArgumentParser, *, customers: int, repeats: int) -> None:
    """The flags every demo-store benchmark takes: where the data is, how big, how many repeats."""
    parser.add_argument("--data-dir", help="a folder holding a built demo (default: build one in a new folder)")
    parser.add_argument("--customers", type=int, default=customers, help="customers of the demo to build")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--replicate", type=int, default=1,
                        help="measure a copy holding the demo this many times over (disjoint customers)")
    parser.add_argument("--repeats", type=int, default=repeats, help="warm runs per measurement (median reported)")


def setup(data_dir: str) -> None:
    """Django on ``data_dir`` (as ``siyu`` would run there), migrated."""
    os.environ["SIYU_DATA_DIR"] = data_dir
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    from siyu.cli import ensure_migrated

    ensure_migrated()


def prepare(args: argparse.Namespace, *, enrich: Callable[[], None] | None = None, suffix: str = ""):
    """The event store to measure: the given demo folder, or a demo built now; then ``enrich`` (facts
    the operational DB should hold before the sync), the sync, and the ``--replicate`` copy."""
    from siyu.analytics.engine import get_store
    from siyu.analytics.sync import sync_all

    if args.data_dir is None:
        from siyu.demo.build import build_demo

        t0 = time.monotonic()
        result = build_demo(customers=args.customers, seed=args.seed, progress=True)
        print(f"built the demo ({result.get('messages', '?'):,} messages) in {time.monotonic() - t0:.0f}s",
              file=sys.stderr)
    if enrich is not None:
        enrich()
    store = get_store()
    print(f"sync: {sync_all(store)}", file=sys.stderr)
    if args.replicate > 1 or suffix:
        store = replicate(store, args.replicate, args.data_dir or os.environ["SIYU_DATA_DIR"], suffix)
    return store


def replicate(store, copies: int, data_dir: str, suffix: str = ""):
    """A store holding ``copies`` copies of ``store``'s events, persons, tags and merges, person ids
    shifted so each copy is a separate set of customers (uuids suffixed). The source is only read;
    the copy is kept beside the data folder and reused by later runs."""
    from siyu.analytics.engine import EventStore

    folder = Path(f"{data_dir.rstrip('/')}-x{copies}{suffix}")
    path = folder / "events.duckdb"
    if path.exists():
        print(f"reusing the {copies}x copy in {folder}", file=sys.stderr)
        return EventStore(path)
    folder.mkdir(parents=True)
    EventStore(path).close()  # the schema and views
    t0 = time.monotonic()
    cur = store.cursor()
    shift = cur.execute("SELECT coalesce(max(person_id), 0) + 1 FROM"
                        " (SELECT person_id FROM events UNION ALL SELECT person_id FROM persons)").fetchone()[0]
    cur.execute(f"ATTACH '{path}' AS rep")
    for k in range(copies):
        off = k * shift
        cur.execute(f"INSERT INTO rep.events SELECT * REPLACE (uuid || '~{k}' AS uuid, person_id + {off}"
                    f" AS person_id) FROM events")
        cur.execute(f"INSERT INTO rep.persons SELECT * REPLACE (person_id + {off} AS person_id,"
                    f" referrer_id + {off} AS referrer_id) FROM persons")
        cur.execute(f"INSERT INTO rep.person_overrides SELECT old_person_id + {off}, person_id + {off},"
                    f" merged_at FROM person_overrides")
        cur.execute(f"INSERT INTO rep.person_tags SELECT person_id + {off}, tag FROM person_tags")
    cur.execute("DETACH rep")
    print(f"replicated the store {copies}x into {path} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return EventStore(path)


def describe(cur) -> dict[str, Any]:
    """Customers, events, orders and the last brand-clock moment of the store's analytics views."""
    customers = cur.execute("SELECT count(*) FROM analytics_persons").fetchone()[0]
    events, last = cur.execute("SELECT count(*), max(local_ts) FROM analytics_events").fetchone()
    orders = cur.execute("SELECT count(*) FROM events WHERE event = 'Order Completed'").fetchone()[0]
    return {"customers": customers, "events": events, "orders": orders, "last_day": last.date(), "last_ts": last}


def machine(cur) -> str:
    """DuckDB's threads, the CPUs and the load: what the figures were measured on."""
    threads = cur.execute("SELECT current_setting('threads')").fetchone()[0]
    return f"DuckDB {threads} threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"


# -- timing -------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(first run's seconds, median seconds of ``repeats`` further runs, the last answer)."""
    cold, out = timed(fn)
    warm = []
    for _ in range(repeats):
        seconds, out = timed(fn)
        warm.append(seconds)
    return cold, statistics.median(warm), out

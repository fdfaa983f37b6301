"""Analytics query runners on the demo brand: warm time, against a plain scan and against pandas.

For each of trends, 13-week retention matrix, 4-step 7-day funnel, repurchase
by month cohort and RFM (the bodies are in ``_analytics_pandas.bodies``, over the
13 weeks ending on the demo's last day) it runs the query through
``run_query(body, DuckDBEngine(store), use_cache=False)`` once cold, then
``--repeats`` times, and reports the median. Beside it:

- the floor: a plain DuckDB scan of the columns the query reads, over the rows
  it reads (``analytics_events`` restricted to the query's event names and
  local-time range, every column aggregated with min and max so each is read);
  ratio = runner / floor;
- pandas: the same computation written in plain pandas over DataFrames loaded
  once from the store (loading not timed), turned into the same typed answer by
  the runner's own ``calculate``; the two answers must be equal (counts exactly,
  money and rates to 1e-6 relative) or the benchmark fails. Speed-up = pandas /
  runner.

The figure to meet: each query under 1 s warm with 1 000 000 customers
(~10 000 000 events), embedded DuckDB, these 2 cores.

    .venv/bin/python benchmarks/bench_analytics.py --data-dir /tmp/bench-analytics-100k
    .venv/bin/python benchmarks/bench_analytics.py --customers 1000000          # builds the demo first
    .venv/bin/python benchmarks/bench_analytics.py --data-dir DIR --replicate 10 --profile
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _demo_store as ds  # noqa: E402

FIGURE_CUSTOMERS, FIGURE_SECONDS = 1_000_000, 1.0

# What each runner reads from analytics_events: its columns, the events it keeps (None: every
# event), and which local-time range: "range" the query's days, "both" those and the previous
# period (trends), "funnel" the days plus the conversion window, "history" everything before the
# end of date_to.
STEPS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
FLOOR_SCAN: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None, str]] = {
    "trends": (("event", "person_id", "local_ts", "revenue"), None, "both"),
    "retention": (("event", "person_id", "local_ts", "uuid", "revenue"), ("Order Completed",), "history"),
    "funnel": (("event", "person_id", "local_ts", "timestamp", "uuid"), STEPS, "funnel"),
    "repurchase": (("event", "person_id", "local_ts", "uuid"), ("Order Completed",), "history"),
    "rfm": (("event", "person_id", "local_ts", "revenue"), ("Order Completed",), "history"),
}


# -- data ---------------------------------------------------------------------------------------
def _prepare(args: argparse.Namespace):
    """The event store to measure (``_demo_store.prepare``), in local-time order when asked."""
    store = ds.prepare(args, suffix="-sorted" if args.sort_by_local_time else "")
    if args.sort_by_local_time:
        sort_by_local_time(store)  # on the copy: it rewrites the table
    return store


def sort_by_local_time(store) -> None:
    """What-if: rewrite ``events`` in brand-clock order, so that row groups' min/max let a date range
    skip the rest of the table. Only for a copy (``--replicate``); done once per copy."""
    from django.conf import settings

    from siyu.analytics.engine import analytics_views

    cur = store.cursor()
    done = cur.execute("SELECT count(*) FROM sync_state WHERE name = 'bench_sorted_by_local_ts'").fetchone()[0]
    if not done:
        t0 = time.monotonic()
        cur.execute("CREATE TABLE events_sorted AS SELECT * FROM events ORDER BY local_ts")
        cur.execute("DROP VIEW analytics_events")
        cur.execute("DROP TABLE events")
        cur.execute("ALTER TABLE events_sorted RENAME TO events")
        cur.execute("INSERT INTO sync_state VALUES ('bench_sorted_by_local_ts', 1)")
        print(f"sorted the copy's events by local time in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    for stmt in analytics_views(settings.TIME_ZONE):
        cur.execute(stmt)
    store.generation += 1


# -- timing -------------------------------------------------------------------------------------
def floor_sql(kind: str, query) -> str:
    """A plain scan of the columns ``kind`` reads over the rows it reads, each column aggregated."""
    columns, events, span = FLOOR_SCAN[kind]
    lo, hi = query.bounds()
    if span == "both":
        lo -= hi - lo
    elif span == "funnel":
        hi += timedelta(seconds=query.window_seconds() + 86_400)
    where = [f"local_ts < TIMESTAMP '{hi}'"]
    if span != "history":
        where.insert(0, f"local_ts >= TIMESTAMP '{lo}'")
    if events:
        where.insert(0, "event IN (" + ", ".join(f"'{e}'" for e in events) + ")")
    reads = ", ".join(f"min({c}), max({c})" for c in columns)
    return f"SELECT count(*), {reads} FROM analytics_events WHERE {' AND '.join(where)}"


def measure(kind: str, body: dict, engine, frame, repeats: int, pandas: bool) -> dict[str, Any]:
    """Runner, floor and pandas timings of one query; raises AssertionError when the answers differ."""
    import _analytics_pandas as pdq

    from siyu.analytics.queries import REGISTRY, parse_query, run_query

    query = parse_query(body)
    cold, warm, answer = ds.median(lambda: run_query(body, engine, use_cache=False), repeats)
    sql = floor_sql(kind, query)
    cur = engine.store.cursor()
    _fcold, floor, _ = ds.median(lambda: cur.execute(sql).fetchall(), repeats)
    out = {"kind": kind, "cold_s": cold, "warm_s": warm, "floor_s": floor, "floor_sql": sql, "repeats": repeats}
    if pandas:
        runner = REGISTRY[kind](query, engine)
        _pcold, pwarm, theirs = ds.median(lambda: runner.calculate(pdq.FRAMES[kind](frame, query)),
                                        max(1, min(repeats, 3)))
        diffs = pdq.compare(answer.model_dump(), theirs.model_dump())
        if diffs:
            raise AssertionError(f"{kind}: runner and pandas disagree ({len(diffs)} differences):\n  "
                                 + "\n  ".join(diffs[:20]))
        out["pandas_s"] = pwarm
    return out


def profile(kind: str, body: dict, engine, repeats: int, explain_dir: Path | None) -> None:
    """Where one runner's time goes: building, each expression's execution, calculating."""
    from siyu.analytics.queries import REGISTRY, parse_query

    query = parse_query(body)
    runner = REGISTRY[kind](query, engine)
    build_s, exprs = ds.timed(runner.build)
    parts = [f"build {build_s * 1000:.0f} ms"]
    frames = {}
    for name, expr in exprs.items():
        _c, seconds, frames[name] = ds.median(lambda e=expr: engine.execute(e), max(1, repeats // 2))
        parts.append(f"{name} {seconds * 1000:.0f} ms")
        if explain_dir is not None:
            sql = engine.compile(expr)
            plan = engine.store.cursor().execute(f"EXPLAIN ANALYZE {sql}").fetchall()
            (explain_dir / f"{kind}.{name}.txt").write_text(sql + "\n\n" + "\n".join(r[-1] for r in plan))
    calc_s, _ = ds.timed(lambda: runner.calculate(frames))
    parts.append(f"calculate {calc_s * 1000:.0f} ms")
    print(f"  {kind}: " + ", ".join(parts))


# -- report -------------------------------------------------------------------------------------
def _line(m: dict[str, Any]) -> str:
    text = (f"{m['kind']}: {m['warm_s']:.3f} s warm (median of {m['repeats']}; cold {m['cold_s']:.3f} s)"
            f" | floor {m['floor_s']:.3f} s ({m['warm_s'] / m['floor_s']:.1f}x)")
    if "pandas_s" in m:
        speedup = m["pandas_s"] / m["warm_s"]
        versus = f"{speedup:.1f}x faster" if speedup >= 1 else f"runner {1 / speedup:.1f}x slower"
        text += f" | pandas {m['pandas_s']:.2f} s ({versus})"
    return text + f" | < {FIGURE_SECONDS:g} s: {'met' if m['warm_s'] < FIGURE_SECONDS else 'NOT met'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ds.add_data_arguments(parser, customers=FIGURE_CUSTOMERS, repeats=7)
    parser.add_argument("--sort-by-local-time", action="store_true",
                        help="what-if, on a copy of the store (--replicate N, default 1): events in local-time order")
    parser.add_argument("--kinds", default="trends,retention,funnel,repurchase,rfm")
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline and its check")
    parser.add_argument("--profile", action="store_true", help="time each runner's expressions separately")
    parser.add_argument("--explain", type=Path, help="write each expression's SQL and EXPLAIN ANALYZE here")
    parser.add_argument("--json", action="store_true", help="also print the measurements as one JSON line")
    args = parser.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="siyu-bench-analytics-")
    ds.setup(data_dir)
    print(f"data folder: {data_dir}", file=sys.stderr)
    store = _prepare(args)
    run(args, store)


def run(args: argparse.Namespace, store) -> None:
    import _analytics_pandas as pdq

    from siyu.analytics.engines import DuckDBEngine

    engine = DuckDBEngine(store)
    cur = store.cursor()
    facts = ds.describe(cur)
    print(f"\nanalytics on {facts['customers']:,} customers, {facts['events']:,} events ({facts['orders']:,} orders),"
          f" last day {facts['last_day']}; {ds.machine(cur)}")
    frame = None
    if not args.no_pandas:
        seconds, frame = ds.timed(lambda: pdq.load_events(cur))
        print(f"pandas: loaded {len(frame):,} events in {seconds:.1f}s"
              f" ({frame.memory_usage(deep=True).sum() / 2**20:,.0f} MiB; not timed below)")
    bodies = pdq.bodies(facts["last_day"])
    kinds = [k for k in args.kinds.split(",") if k]
    results = []
    for kind in kinds:
        m = measure(kind, bodies[kind], engine, frame, args.repeats, not args.no_pandas)
        results.append(m)
        print(_line(m), flush=True)
    _summary(facts, results)
    if args.profile or args.explain:
        if args.explain:
            args.explain.mkdir(parents=True, exist_ok=True)
        print("where the time goes (median per expression):")
        for kind in kinds:
            profile(kind, bodies[kind], engine, args.repeats, args.explain)
    if args.json:
        print(json.dumps({**facts, "results": results}, default=str))


def _summary(facts: dict[str, Any], results: list[dict[str, Any]]) -> None:
    slowest = max(results, key=lambda m: m["warm_s"])
    missed = [m["kind"] for m in results if m["warm_s"] >= FIGURE_SECONDS]
    print(f"summary: slowest {slowest['kind']} {slowest['warm_s']:.3f} s; over {FIGURE_SECONDS:g} s:"
          f" {', '.join(missed) or 'none'}")
    if "pandas_s" in results[0]:
        print("  pandas answers equal the runners' for every query")
    if facts["customers"] >= FIGURE_CUSTOMERS:
        print(f"figure (1M customers, each query < {FIGURE_SECONDS:g} s warm): {'NOT met' if missed else 'met'}")
    else:
        print(f"figure: needs {FIGURE_CUSTOMERS:,} customers; measured at {facts['customers']:,}")


if __name__ == "__main__":
    main()

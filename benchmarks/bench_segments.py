"""Segments on the demo brand: a 5-condition count warm, and a full refresh of 50 segments.

The figures (these 2 cores, embedded DuckDB): over 1 000 000 customers and
~10 000 000 events, a 5-condition segment counts in under 1 s warm, and a full
refresh of 50 segments takes under 30 s.

Data: the demo brand (``--data-dir`` reuses a built one; otherwise one is built
with ``--customers``), with 10 % of its customers tagged ``vip`` and 5 %
``staff`` in the operational DB (``segments.actions.add_tag``) and CLV
predictions from ``valuation.fitting.fit_and_predict``; then the persons and
tags are synced into the event store, and ``--replicate N`` measures a copy
holding it N times over (disjoint customers).

1. **Count**: ``segments.queries.count(RULE)`` (parse, compile, one query) once
   to warm up, then ``--repeats`` times; the median is the figure. Beside it:
   the floor — a plain DuckDB scan of the columns the rule reads (persons'
   attributes, the events of its event conditions over its longest window,
   its tags), every column aggregated so each is read; pandas — the same rule
   vectorised over DataFrames loaded once (not timed); and row by row — each
   customer tested condition by condition in Python, as contact-by-contact
   segment builders do. Both baselines must give the same members, or the
   benchmark fails.
2. **Refresh**: the 16 built-in segments (RFM classes, lifecycle stages, value
   tiers) and 34 generated ones of 1–5 conditions, stored membership emptied,
   then each refreshed through ``segments.actions.refresh_segment`` (members
   stored with who entered and left): the total is the figure. Beside it:
   counting the same 50 rules (``queries.count``, warm), and a second refresh,
   the steady state where nobody enters or leaves.

    .venv/bin/python benchmarks/bench_segments.py --data-dir /tmp/bench-segments/100k --replicate 10
    .venv/bin/python benchmarks/bench_segments.py --customers 1000000       # builds the demo first
    .venv/bin/python benchmarks/bench_segments.py --quick                   # 2 000 customers, a smoke run
    .venv/bin/python benchmarks/bench_segments.py --data-dir DIR --explain /tmp/explain
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _demo_store as ds  # noqa: E402
import _segments_baseline as base  # noqa: E402

FIGURE_CUSTOMERS, COUNT_SECONDS, REFRESH_SECONDS, SEGMENTS = 1_000_000, 1.0, 30.0, 50
QUICK_CUSTOMERS = 2_000
TAGS = (("vip", 0.10), ("staff", 0.05))
CUSTOM_PREFIX = "bench: "
CHANNELS = ("store_qr", "wechat_oa", "mini_program", "douyin", "xiaohongshu", "meituan", "eleme", "referral")

# "Customers from our own channels who bought at least twice for more than 150 in the last 90 days,
# have not browsed a product in 30 days, are not staff, and the model says are slipping away."
RULE: dict[str, Any] = {"and": [
    {"type": "attribute", "field": "acquisition_channel", "op": "in",
     "value": ["store_qr", "wechat_oa", "mini_program", "referral"]},
    {"type": "event", "event": "Order Completed", "within_days": 90, "count": {"op": "gte", "value": 2},
     "aggregate": {"fn": "sum", "field": "revenue", "op": "gt", "value": 150}},
    {"type": "event", "event": "Product Viewed", "within_days": 30, "count": {"op": "eq", "value": 0}},
    {"type": "tag", "tag": "staff", "op": "has_not"},
    {"type": "attribute", "field": "p_alive", "op": "lt", "value": 0.8},
]}


# -- data ---------------------------------------------------------------------------------------
def enrich(seed: int) -> None:
    """Tags and CLV predictions in the operational DB, once per data folder (before the sync)."""
    from siyu.accounts.actor import Actor
    from siyu.customers.models import Person
    from siyu.segments.actions import add_tag
    from siyu.segments.models import Tag

    actor = Actor.system("bench-segments")
    ids = sorted(Person.objects.filter(merged_into__isnull=True, erased_at__isnull=True).values_list("pk", flat=True))
    rng = random.Random(seed)
    for name, share in TAGS:
        if not Tag.objects.filter(name=name).exists():
            chosen = rng.sample(ids, max(1, round(len(ids) * share)))
            print(f"tagged {add_tag(actor, name, chosen):,} customers {name!r}", file=sys.stderr)
    _predict(actor)


def _predict(actor) -> None:
    try:
        from siyu.valuation.fitting import ClvError, fit_and_predict
        from siyu.valuation.models import ClvModel
    except ImportError:
        print("note: siyu.valuation is not available: stand-in predictions go into the persons copy", file=sys.stderr)
        return
    if ClvModel.objects.exists():
        return
    try:
        seconds, _model = ds.timed(lambda: fit_and_predict(actor))
    except ClvError as exc:
        print(f"note: no CLV fit ({exc}): stand-in predictions go into the persons copy", file=sys.stderr)
        return
    print(f"CLV predictions: fit_and_predict in {seconds:.1f}s", file=sys.stderr)


def stand_in_predictions(store) -> None:
    """Plausible predictions where no CLV fit wrote any (valuation not installed): p_alive falls with
    the days since the last order, faster for one-order customers."""
    store.cursor().execute(
        "UPDATE persons SET p_alive = exp(-date_diff('day', last_order_at, (SELECT max(last_order_at) FROM persons))"
        " / (30.0 * order_count)), expected_purchases = 0, predicted_spend = 0, clv = total_spend"
        " WHERE p_alive IS NULL AND order_count > 0")


def open_measured(args: argparse.Namespace):
    """The store to measure, made the process's store (``refresh_segment`` writes to that one)."""
    from django.conf import settings

    from siyu.analytics import engine as store_module

    store = ds.prepare(args, enrich=lambda: enrich(args.seed))
    cur = store.cursor()
    if not cur.execute("SELECT count(p_alive) FROM persons").fetchone()[0]:
        stand_in_predictions(store)
    if Path(store.path).resolve() != Path(settings.SIYU_EVENT_STORE).resolve():
        path = store.path
        store.close()
        store_module.close_store()
        settings.SIYU_EVENT_STORE = path  # the replicated copy; nothing re-syncs it from the operational DB
    return store_module.get_store()


# -- figure 1: one count ---------------------------------------------------------------------------
def floor_sqls(rule: dict[str, Any], now: datetime) -> list[str]:
    """Plain scans of what ``rule`` reads: the persons' attributes, the events of its event conditions
    (over the longest window), its tags; every column aggregated with min and max."""
    from siyu.segments.rules import (
        AttributeCondition,
        EventCondition,
        TagCondition,
        parse_rule,
        walk,
    )

    nodes = list(walk(parse_rule(rule).root))

    def reads(cols: list[str]) -> str:
        return ", ".join(f"min({c}), max({c})" for c in cols)

    attrs = ["person_id", *dict.fromkeys(n.field for n in nodes if isinstance(n, AttributeCondition))]
    out = [f"SELECT count(*), {reads(attrs)} FROM analytics_persons"]
    events = [n for n in nodes if isinstance(n, EventCondition)]
    if events:
        names = ", ".join(f"'{n.event}'" for n in events if n.event)
        days = [n.within_days for n in events]
        where = [f"event IN ({names})"] if names and all(n.event for n in events) else []
        if all(days):
            where.append(f"local_ts >= TIMESTAMP '{now - timedelta(days=max(days))}'")
        cols = ["person_id", "event", "local_ts"] + (["revenue"] if any(n.aggregate for n in events) else [])
        out.append(f"SELECT count(*), {reads(cols)} FROM analytics_events"
                   + (f" WHERE {' AND '.join(where)}" if where else ""))
    tags = ", ".join(f"'{n.tag}'" for n in nodes if isinstance(n, TagCondition))
    if tags:
        out.append(f"SELECT count(*), {reads(['person_id'])} FROM analytics_person_tags WHERE tag IN ({tags})")
    return out


def measure_count(engine, cur, frames, rows, now: datetime, repeats: int) -> dict[str, Any]:
    """Figure 1: the rule's count warm, the floor, and both baselines; raises AssertionError when
    a baseline's members differ."""
    from siyu.segments import queries
    from siyu.segments.rules import parse_rule

    cold, warm, count = ds.median(lambda: queries.count(RULE, engine=engine, now=now), repeats)
    sqls = floor_sqls(RULE, now)
    _fc, floor, _ = ds.median(lambda: [cur.execute(sql).fetchall() for sql in sqls], repeats)
    ours = queries.member_ids(parse_rule(RULE), engine=engine, now=now)
    pandas_s, theirs = ds.timed(lambda: base.pandas_members(frames, RULE, now))
    row_s, by_row = ds.timed(lambda: base.row_members(rows, RULE, now)) if rows is not None else (None, None)
    _check("count", count, ours, {"pandas": list(theirs)} | ({"row by row": by_row} if rows is not None else {}))
    return {"count": count, "cold_s": cold, "warm_s": warm, "floor_s": floor, "floor_sql": sqls,
            "pandas_s": pandas_s, "row_s": row_s, "repeats": repeats}


def _check(what: str, count: int, ours: list[int], baselines: dict[str, list[int]]) -> None:
    if count != len(ours):
        raise AssertionError(f"{what}: count {count} but {len(ours)} members")
    for name, theirs in baselines.items():
        if [int(x) for x in theirs] != ours:
            extra, missing = sorted(set(theirs) - set(ours))[:5], sorted(set(ours) - set(theirs))[:5]
            raise AssertionError(f"{what}: siyu {len(ours):,} members, {name} {len(theirs):,}"
                                 f" (only {name}: {extra}; only siyu: {missing})")


def explain(engine, cur, now: datetime, folder: Path) -> None:
    """The rule's compiled SQL and DuckDB's EXPLAIN ANALYZE of it."""
    import ibis

    from siyu.segments.queries import compiler
    from siyu.segments.rules import parse_rule

    folder.mkdir(parents=True, exist_ok=True)
    sql = str(ibis.to_sql(compiler(engine, now).count(parse_rule(RULE)), dialect="duckdb"))
    plan = cur.execute(f"EXPLAIN ANALYZE {sql}").fetchall()
    (folder / "count.txt").write_text(sql + "\n\n" + "\n".join(r[-1] for r in plan))
    print(f"compiled SQL and EXPLAIN ANALYZE written to {folder / 'count.txt'}")


# -- figure 2: refreshing 50 segments --------------------------------------------------------------
def custom_rules(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` rules of 1–5 conditions drawn from what brands segment on (seeded)."""
    from siyu.segments.rules import CHOICES, LIFECYCLE_STAGES

    rng = random.Random(seed)
    pool = [
        lambda: {"type": "attribute", "field": "acquisition_channel", "op": "in",
                 "value": sorted(rng.sample(CHANNELS, rng.randint(2, 4)))},
        lambda: {"type": "attribute", "field": "gender", "op": "eq", "value": rng.choice(["female", "male"])},
        lambda: {"type": "attribute", "field": "order_count", "op": "gte", "value": rng.randint(1, 4)},
        lambda: {"type": "attribute", "field": "total_spend", "op": "gt", "value": rng.choice([100, 300, 800])},
        lambda: {"type": "attribute", "field": "days_since_last_order", "op": "lte", "value": rng.choice([14, 30, 60])},
        lambda: {"type": "attribute", "field": "p_alive", "op": rng.choice(["lt", "gte"]),
                 "value": rng.choice([0.3, 0.5, 0.7])},
        lambda: {"type": "attribute", "field": "clv", "op": "gt", "value": rng.choice([50, 200, 500])},
        lambda: {"type": "event", "event": "Order Completed", "within_days": rng.choice([30, 90, 180]),
                 "count": {"op": "gte", "value": rng.randint(1, 3)}},
        lambda: {"type": "event", "event": "Order Completed", "within_days": rng.choice([60, 180]),
                 "aggregate": {"fn": "sum", "field": "revenue", "op": "gt", "value": rng.choice([100, 300])}},
        lambda: {"type": "event", "event": "Product Viewed", "within_days": rng.choice([14, 30]),
                 "count": {"op": "eq", "value": 0}},
        lambda: {"type": "event", "event": rng.choice(["Coupon Applied", "Article Read", "Checked In"]),
                 "within_days": rng.choice([30, 90])},
        lambda: {"type": "tag", "tag": rng.choice(["vip", "staff"]), "op": rng.choice(["has", "has_not"])},
        lambda: {"type": "attribute", "field": "lifecycle_stage", "op": "in",
                 "value": rng.sample(LIFECYCLE_STAGES, 2)},
        lambda: {"type": "attribute", "field": "rfm_class", "op": "in",
                 "value": rng.sample(CHOICES["rfm_class"], 2)},
    ]
    rules = []
    for i in range(n):
        parts = [make() for make in rng.sample(pool, 1 + i % 5)]
        if len(parts) >= 3 and rng.random() < 0.3:
            parts[-2:] = [{"or": parts[-2:]}]
        if len(parts) >= 2 and rng.random() < 0.2:
            parts[0] = {"not": parts[0]}
        rules.append(parts[0] if len(parts) == 1 else {"and": parts})
    return rules


def prepare_segments(seed: int) -> list:
    """The built-in segments and ``SEGMENTS`` minus as many generated ones, stored membership emptied."""
    from siyu.accounts.actor import Actor
    from siyu.analytics.engine import get_store
    from siyu.segments.actions import create_segment, delete_segment, ensure_builtin_segments
    from siyu.segments.models import Segment

    actor = Actor.system("bench-segments")
    ensure_builtin_segments()
    for old in Segment.objects.filter(name__startswith=CUSTOM_PREFIX):
        delete_segment(actor, old)
    builtin = list(Segment.objects.exclude(key=""))
    custom = [create_segment(actor, f"{CUSTOM_PREFIX}custom {i + 1:02d}", rule)
              for i, rule in enumerate(custom_rules(SEGMENTS - len(builtin), seed))]
    segments = builtin + custom
    for s in segments:
        get_store().drop_segment(s.pk)
    return segments


def refresh_pass(segments: list, engine, now: datetime) -> dict[str, Any]:
    """Refresh every segment once; the total and each one's seconds, size and changes."""
    from siyu.accounts.actor import Actor
    from siyu.segments.actions import refresh_segment

    actor = Actor.system("bench-segments")
    each = []
    for s in segments:
        seconds, r = ds.timed(lambda s=s: refresh_segment(actor, s, engine=engine, now=now))
        each.append({"segment": s.key or s.name, "s": seconds, "size": r.size, "entered": r.entered, "left": r.left})
    return {"total_s": sum(m["s"] for m in each), "segments": each}


def measure_refresh(engine, now: datetime, seed: int) -> dict[str, Any]:
    from siyu.segments import queries

    segments = prepare_segments(seed)
    first = refresh_pass(segments, engine, now)
    second = refresh_pass(segments, engine, now)
    counts = [ds.timed(lambda s=s: queries.count(s.rule, engine=engine, now=now)) for s in segments]
    for m, (_seconds, n) in zip(second["segments"], counts, strict=True):
        if m["size"] != n:
            raise AssertionError(f"{m['segment']}: refreshed {m['size']:,} members, counted {n:,}")
    return {"first": first, "second": second, "counts_s": sum(s for s, _n in counts)}


# -- report -------------------------------------------------------------------------------------
def _verdict(seconds: float, limit: float) -> str:
    return f"< {limit:g} s: {'PASS' if seconds < limit else 'FAIL'}"


def _speedup(baseline: float, ours: float) -> str:
    ratio = baseline / ours
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"siyu {1 / ratio:.1f}x slower"


def report_count(m: dict[str, Any]) -> None:
    text = (f"count (5 conditions): {m['warm_s']:.3f} s warm (median of {m['repeats']}; cold {m['cold_s']:.3f} s),"
            f" {m['count']:,} customers | floor {m['floor_s']:.3f} s ({m['warm_s'] / m['floor_s']:.1f}x)"
            f" | pandas {m['pandas_s']:.2f} s ({_speedup(m['pandas_s'], m['warm_s'])})")
    if m["row_s"] is not None:
        text += f" | row by row {m['row_s']:.1f} s ({_speedup(m['row_s'], m['warm_s'])})"
    print(text + f" | {_verdict(m['warm_s'], COUNT_SECONDS)}", flush=True)


def report_refresh(m: dict[str, Any]) -> None:
    first, second, counts = m["first"], m["second"], m["counts_s"]
    sizes = [s["size"] for s in first["segments"]]
    print(f"refresh {len(sizes)} segments: {first['total_s']:.1f} s ({sum(sizes):,} memberships,"
          f" {sum(s['entered'] for s in first['segments']):,} entered) | counting the same {len(sizes)} rules"
          f" {counts:.1f} s ({first['total_s'] / counts:.2f}x) | {_verdict(first['total_s'], REFRESH_SECONDS)}")
    changed = sum(s["entered"] + s["left"] for s in second["segments"])
    print(f"refresh again (steady state, {changed:,} changes): {second['total_s']:.1f} s"
          f" ({second['total_s'] / counts:.2f}x counting) | {_verdict(second['total_s'], REFRESH_SECONDS)}")
    slowest = sorted(first["segments"], key=lambda s: -s["s"])[:5]
    print("  slowest: " + ", ".join(f"{s['segment']} {s['s']:.2f} s ({s['size']:,})" for s in slowest))


def report_figure(facts: dict[str, Any], count: dict[str, Any], refresh: dict[str, Any]) -> None:
    ok = count["warm_s"] < COUNT_SECONDS and refresh["first"]["total_s"] < REFRESH_SECONDS
    if facts["customers"] >= FIGURE_CUSTOMERS:
        print(f"figure (1M customers: count < {COUNT_SECONDS:g} s warm, refresh of {SEGMENTS} < {REFRESH_SECONDS:g} s):"
              f" {'met' if ok else 'NOT met'}")
    else:
        print(f"figure: needs {FIGURE_CUSTOMERS:,} customers; measured at {facts['customers']:,}")


# -- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ds.add_data_arguments(parser, customers=FIGURE_CUSTOMERS, repeats=7)
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: a {QUICK_CUSTOMERS:,}-customer demo (unless --customers), 2 repeats")
    parser.add_argument("--no-row-by-row", action="store_true", help="skip the row-by-row Python baseline")
    parser.add_argument("--explain", type=Path, help="write the count's SQL and EXPLAIN ANALYZE into this folder")
    parser.add_argument("--json", action="store_true", help="also print the measurements as one JSON line")
    args = parser.parse_args(argv)
    if args.quick:
        if args.customers == FIGURE_CUSTOMERS:
            args.customers = QUICK_CUSTOMERS
        args.repeats = min(args.repeats, 2)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="siyu-bench-segments-")
    ds.setup(data_dir)
    print(f"data folder: {data_dir}", file=sys.stderr)
    run(args, open_measured(args))


def run(args: argparse.Namespace, store) -> None:
    from siyu.analytics.engines import DuckDBEngine
    from siyu.segments.rules import ATTRIBUTES, NUMBER, AttributeCondition, parse_rule, walk

    engine, cur = DuckDBEngine(store), store.cursor()
    facts = ds.describe(cur)
    now = facts["last_ts"]
    print(f"\nsegments on {facts['customers']:,} customers, {facts['events']:,} events ({facts['orders']:,} orders),"
          f" now = {now:%Y-%m-%d %H:%M} (the last event); {ds.machine(cur)}")
    fields = {n.field: ATTRIBUTES[n.field] == NUMBER for n in walk(parse_rule(RULE).root)
              if isinstance(n, AttributeCondition)}
    seconds, frames = ds.timed(lambda: base.load(cur, fields))
    rows = None if args.no_row_by_row else base.rows(frames)
    print(f"baselines: loaded {len(frames.persons):,} persons, {len(frames.events):,} events in {seconds:.1f}s"
          " (not timed below)")
    count = measure_count(engine, cur, frames, rows, now, args.repeats)
    del frames, rows
    report_count(count)
    refresh = measure_refresh(engine, now, args.seed)
    report_refresh(refresh)
    print("  baselines give the same members as siyu; every refreshed size equals its count")
    report_figure(facts, count, refresh)
    if args.explain:
        explain(engine, cur, now, args.explain)
    if args.json:
        print(json.dumps({**facts, "count": count, "refresh": refresh}, default=str))


if __name__ == "__main__":
    main()

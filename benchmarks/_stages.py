"""Where ``pipeline.process`` spends its time: each step wrapped at run time, its wall seconds
and the CPU seconds of the thread that ran it added up (bench_demo.py and bench_ingest.py
``--stages``). The gap between the two is time spent waiting: for the interpreter, for a
lock, for the disk or for DuckDB's own threads."""

from __future__ import annotations

import time

TOTAL = "process (total)"


class Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}  # label -> [wall, thread CPU]
        self.messages = 0  # offered to pipeline.process

    def wrap(self, owner, attr: str, label: str) -> None:
        func = getattr(owner, attr, None)
        if func is None:
            return
        cell = self.seconds.setdefault(label, [0.0, 0.0])

        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                cell[0] += time.perf_counter() - wall
                cell[1] += time.thread_time() - cpu

        setattr(owner, attr, timed)

    def install(self) -> None:
        from django.db import connections

        from siyu.analytics.engine import EventStore, PendingAppend
        from siyu.customers import profile
        from siyu.ingest import pipeline

        process = pipeline.process

        def counted(items, *args, **kwargs):
            self.messages += len(items)
            return process(items, *args, **kwargs)

        pipeline.process = counted
        self.wrap(pipeline, "process", TOTAL)
        self.wrap(pipeline.DEDUPE, "fresh", "dedupe check")
        self.wrap(pipeline.DEDUPE, "add", "dedupe remember")
        self.wrap(pipeline.Resolver, "resolve", "identity resolution")
        self.wrap(pipeline.Resolver, "_prefetch", "  identity: prefetch")
        self.wrap(pipeline.Resolver, "_flush", "  identity: write new ids")
        self.wrap(pipeline, "_apply_profiles", "profile updates")
        self.wrap(profile, "_apply_rich", "  profiles: rich (read, write)")
        self.wrap(profile, "_apply_folded", "  profiles: seen and touches")
        self.wrap(pipeline, "_record_orders", "orders and refunds")
        self.wrap(pipeline, "_event_columns", "event columns (python)")
        self.wrap(EventStore, "begin_append", "duckdb: start insert")
        self.wrap(PendingAppend, "wait", "duckdb: wait for insert")
        self.wrap(PendingAppend, "commit", "duckdb commit (with merges)")
        self.wrap(pipeline.sync, "unsynced_merges", "merges to copy")
        self.wrap(pipeline.sync, "sync_overrides", "merge overrides sync")
        self.wrap(pipeline.sync, "fold_activity", "activity fold (every 30 s)")
        self.wrap(profile, "apply_activity", "  fold: write the profiles")
        # Every thread's connection (the server's writer has its own): the class's method, not the
        # proxy's (``django.db.connection`` stands for the calling thread's connection).
        self.wrap(type(connections["default"]), "commit", "database commit")

    def snapshot(self) -> dict:
        return {"messages": self.messages, "seconds": {k: list(v) for k, v in self.seconds.items()}}

    def table(self, since: dict | None = None) -> list[tuple[str, float, float, float]]:
        return table(self.snapshot(), since)


def table(after: dict, before: dict | None = None) -> list[tuple[str, float, float, float]]:
    """(label, wall seconds, CPU seconds, share of the total) between two ``Stages.snapshot``s,
    in the order the steps were wrapped (a step's parts indented under it)."""
    earlier = (before or {}).get("seconds", {})
    rows = []
    for label, (wall, cpu) in after["seconds"].items():
        w0, c0 = earlier.get(label, (0.0, 0.0))
        rows.append((label, wall - w0, cpu - c0))
    whole = next((w for label, w, _c in rows if label == TOTAL), 0.0) or 1.0
    return [(label, w, c, w / whole) for label, w, c in rows]


def print_table(rows: list[tuple[str, float, float, float]], messages: int, indent: str = "    ") -> None:
    """``Stages.table`` rows with µs a message of wall and CPU time."""
    per = 1e6 / max(messages, 1)
    print(f"{indent}{'step':<32} {'wall s':>8} {'share':>6} {'µs/msg':>7} {'CPU µs/msg':>10}")
    for label, wall, cpu, share in rows:
        print(f"{indent}{label:<32} {wall:8.1f} {share:6.1%} {wall * per:7.1f} {cpu * per:10.1f}")

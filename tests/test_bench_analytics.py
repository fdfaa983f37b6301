"""The analytics benchmark's check: its pandas baseline gives the runners' answers on a tiny demo.

benchmarks/bench_analytics.py fails loudly when the two disagree at scale; this
runs the same comparison on 300 customers so a runner change that breaks the
baseline shows up in the suite. No timings here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _analytics_pandas as pdq  # noqa: E402

from siyu.analytics.queries import REGISTRY, parse_query, run_query  # noqa: E402

END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
N = 300
SEED = 5
# The module's demo lives in the test database: marking the tests makes pytest-django create it
# even when this file runs alone.
pytestmark = pytest.mark.django_db


@dataclass
class Demo:
    engine: Any
    frame: pd.DataFrame
    bodies: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def demo(django_db_setup, django_db_blocker, tmp_path_factory):
    """A 300-customer demo in its own event store, persons synced, and its events as the baseline's frame."""
    from django.core.management import call_command
    from django.test import override_settings

    from siyu.analytics import engine as store_module
    from siyu.analytics.engines import DuckDBEngine
    from siyu.analytics.sync import sync_all
    from siyu.customers.identity import CACHE
    from siyu.demo.build import build_demo
    from siyu.ingest.pipeline import DEDUPE

    path = tmp_path_factory.mktemp("bench-analytics") / "events.duckdb"
    with django_db_blocker.unblock(), override_settings(SIYU_EVENT_STORE=str(path)):
        store_module.close_store()
        CACHE.clear()
        DEDUPE.reset()
        try:
            build_demo(N, SEED, progress=False, end=END, workers=0)
            sync_all(store_module.get_store())
            store_module.close_store()
            store = store_module.EventStore(path)  # our own, untouched by the per-test store fixture
            cur = store.cursor()
            last_day = cur.execute("SELECT max(local_ts) FROM analytics_events").fetchone()[0].date()
            yield Demo(DuckDBEngine(store), pdq.load_events(cur), pdq.bodies(last_day))
            store.close()
        finally:
            store_module.close_store()
            CACHE.clear()
            DEDUPE.reset()
            call_command("flush", verbosity=0, interactive=False)


# Something each answer must show on the demo, so that agreeing is not agreeing on nothing.
SUBSTANCE = {
    "trends": lambda r: r.series[0].total > 0 and r.series[1].total > 0 and r.series[2].total > 0,
    "retention": lambda r: any(c.size for c in r.series[0].cohorts)
    and any(cell.customers for c in r.series[0].cohorts for cell in c.cells[1:]),
    "funnel": lambda r: r.series[0].steps[-1].count > 0,
    "repurchase": lambda r: r.overall.repeat_buyers > 0,
    "rfm": lambda r: r.total_customers > 0 and len({c.rfm_class for c in r.customers}) > 1,
}


@pytest.mark.parametrize("kind", sorted(pdq.FRAMES))
def test_the_pandas_baseline_gives_the_runners_answer(demo, kind):
    # Given the benchmark's query of this kind on the tiny demo
    body = demo.bodies[kind]
    query = parse_query(body)

    # When the runner answers it on DuckDB and the baseline computes it in pandas
    answer = run_query(body, demo.engine, use_cache=False)
    theirs = REGISTRY[kind](query, demo.engine).calculate(pdq.FRAMES[kind](demo.frame, query))

    # Then the answers are the same, and not empty
    assert pdq.compare(answer.model_dump(), theirs.model_dump()) == []
    assert SUBSTANCE[kind](answer)


def test_compare_counts_exactly_and_money_to_a_millionth():
    # Given an answer
    runner = {"cohorts": [{"size": 10, "revenue": 1234.56, "rate": 0.25}], "cached": False}

    # Then a rounding-level difference in money passes, and any difference in a count or
    # a real one in money is reported with its place (whether either was cached is not compared)
    assert pdq.compare(runner, {"cohorts": [{"size": 10, "revenue": 1234.5600001, "rate": 0.25}],
                                "cached": True}) == []
    assert pdq.compare(runner, {"cohorts": [{"size": 11, "revenue": 1234.56, "rate": 0.25}],
                                "cached": False}) == [".cohorts[0].size: runner 10 != pandas 11"]
    assert pdq.compare(runner, {"cohorts": [{"size": 10, "revenue": 1234.57, "rate": 0.25}],
                                "cached": False}) == [".cohorts[0].revenue: runner 1234.56 != pandas 1234.57"]

"""The segment benchmark runs end to end on a tiny demo, and its baselines follow the rule's definitions.

benchmarks/bench_segments.py fails loudly when siyu's members and the baselines'
differ, or a refreshed segment's size differs from its count; the smoke run
here makes that check on a 400-customer demo so a change that breaks it shows up
in the suite. No timings are asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _segments_baseline as base  # noqa: E402

# Settings that would point the subprocess at the test run's stores instead of its own folder.
FOREIGN = ("DATABASE_URL", "SIYU_EVENT_STORE", "SIYU_PII_KEYS", "SIYU_SECRET_KEY", "DJANGO_SETTINGS_MODULE")
NOW = datetime(2026, 3, 31, 12, 0)
US = 1_000_000


def test_the_quick_run_measures_both_figures_and_checks_them(tmp_path):
    # Given a fresh data folder (the benchmark builds its demo in a new folder under TMPDIR)
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN} | {"TMPDIR": str(tmp_path)}

    # When the benchmark runs in its quick mode on a tiny demo
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_segments.py"), "--quick", "--customers", "400", "--repeats", "1",
         "--json"],
        env=env, capture_output=True, text=True, timeout=600)

    # Then it succeeds (the baselines agreed with siyu) and reports both figures on real members
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("count (5 conditions):") for line in lines)
    assert any(line.startswith("refresh 50 segments:") for line in lines)
    result = json.loads(lines[-1])
    assert result["count"]["count"] > 0
    first, second = result["refresh"]["first"]["segments"], result["refresh"]["second"]["segments"]
    assert len(first) == 50
    assert sum(s["entered"] for s in first) == sum(s["size"] for s in first) > 0
    assert sum(s["entered"] + s["left"] for s in second) == 0


def _frames() -> base.Frames:
    """Three customers: 1 ordered twice (300 + 400) ten days ago and browsed yesterday; 2 ordered once
    long ago; 3 never did anything and is tagged staff."""
    persons = pd.DataFrame({"person_id": [1, 2, 3], "acquisition_channel": ["douyin", "wechat_oa", None],
                            "p_alive": [0.9, 0.2, float("nan")]})
    day = 86_400 * US
    now = int((NOW - datetime(1970, 1, 1)).total_seconds()) * US
    events = pd.DataFrame({"event": pd.Categorical(["Order Completed", "Order Completed", "Product Viewed",
                                                    "Order Completed"]),
                           "person_id": [1, 1, 1, 2], "lus": [now - 10 * day, now - 10 * day, now - day,
                                                             now - 200 * day],
                           "revenue": [300.0, 400.0, float("nan"), 100.0]})
    tags = pd.DataFrame({"person_id": [3], "tag": ["staff"]})
    return base.Frames(persons, events, tags)


@pytest.mark.parametrize(("rule", "expected"), [
    # did not browse in 30 days: customers without any event count
    ({"type": "event", "event": "Product Viewed", "within_days": 30, "count": {"op": "eq", "value": 0}}, [2, 3]),
    # ordered twice in 90 days for more than 500
    ({"type": "event", "event": "Order Completed", "within_days": 90, "count": {"op": "gte", "value": 2},
      "aggregate": {"fn": "sum", "field": "revenue", "op": "gt", "value": 500}}, [1]),
    # spent at most 50 in 90 days: a sum over no events is 0
    ({"type": "event", "event": "Order Completed", "within_days": 90,
      "aggregate": {"fn": "sum", "field": "revenue", "op": "lte", "value": 50}}, [2, 3]),
    # a missing attribute fails the comparison, and NOT of it passes
    ({"type": "attribute", "field": "p_alive", "op": "lt", "value": 0.5}, [2]),
    ({"not": {"type": "attribute", "field": "p_alive", "op": "lt", "value": 0.5}}, [1, 3]),
    ({"and": [{"type": "attribute", "field": "acquisition_channel", "op": "in", "value": ["douyin", "x"]},
              {"type": "tag", "tag": "staff", "op": "has_not"}]}, [1]),
    ({"or": [{"type": "tag", "tag": "staff"}, {"type": "event", "event": "Order Completed"}]}, [1, 2, 3]),
])
def test_both_baselines_follow_the_rule_definitions(rule, expected):
    # Given the three customers
    frames = _frames()

    # When the rule is evaluated vectorised and row by row
    vectorised = [int(x) for x in base.pandas_members(frames, rule, NOW)]
    by_row = base.row_members(base.rows(frames), rule, NOW)

    # Then both give the members worked out by hand
    assert vectorised == expected
    assert by_row == expected

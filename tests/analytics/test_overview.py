"""Overview: the dashboard's headline figures against the previous period.

Every expected number was computed by hand from ``SHOP`` (or the events in the
test); the comments give the arithmetic.
"""

from __future__ import annotations

from datetime import date

import pytest
from conftest import ev, order

from siyu.analytics.queries import parse_query, run_query
from siyu.analytics.queries.base import QueryError
from siyu.analytics.queries.overview import METRICS, OverviewRunner

pytestmark = pytest.mark.django_db

# Range Mon 2026-03-09 .. Thu 03-12; previous period 03-05 .. 03-08.
SHOP = [
    ev(1, "Page Viewed", "2026-02-10 10:00"),  # person 1 is not new
    ev(1, "Page Viewed", "2026-03-08 10:00"),
    ev(1, "Page Viewed", "2026-03-09 10:00"), order(1, "2026-03-09 11:00", "100.00"),
    order(1, "2026-03-11 11:00", "50.00"),
    ev(2, "Page Viewed", "2026-03-09 10:00"), ev(2, "Page Viewed", "2026-03-10 09:00"),
    order(2, "2026-03-10 10:00", "80.00"),
    ev(3, "Page Viewed", "2026-03-09 23:50"), ev(3, "Page Viewed", "2026-03-12 10:00"),
    order(4, "2026-03-11 10:00", "30.00"), ev(4, "Page Viewed", "2026-03-12 10:00"),
    ev(5, "Page Viewed", "2026-03-12 10:00"),
    ev(6, "Page Viewed", "2026-03-06 10:00"), order(6, "2026-03-06 11:00", "40.00"),
    order(6, "2026-03-07 11:00", "60.00"),
    ev(7, "Page Viewed", "2026-02-20 10:00"),
    ev(8, "Page Viewed", "2026-03-13 00:10"),  # after date_to
]
RANGE = {"date_from": "2026-03-09", "date_to": "2026-03-12"}


def overview(engine, **fields):
    return run_query({"kind": "overview", **RANGE, **fields}, engine, use_cache=False)


def test_totals_against_the_previous_period(load):
    result = overview(load(SHOP))
    got = {m.key: (m.total, m.previous, m.change_pct) for m in result.metrics}
    assert got == {
        # first-ever days: 2, 3 on 03-09; 4 on 03-11; 5 on 03-12 | previous: 6 on 03-06
        "new_customers": (4, 1, 300.0),
        # daily actives 3, 1, 2, 3 -> 9 / 4 | previous 0, 1 (6), 1 (6), 1 (1) -> 3 / 4
        "dau": (2.25, 0.75, 200.0),
        # 03-06 .. 03-12: 1, 2, 3, 4, 5, 6 | 03-02 .. 03-08: 6, 1
        "wau": (6, 2, 200.0),
        # 02-11 .. 03-12: 1 .. 7 | 02-07 .. 03-08: 1, 6, 7; (7 - 3) / 3
        "mau": (7, 3, 133.33),
        # mean of 3/5, 1/5, 2/6, 3/7 = 0.3905 | mean of 0/2, 1/3, 1/3, 1/3 = 0.25
        "stickiness": (0.3905, 0.25, 56.2),
        "orders": (4, 2, 100.0),
        "gmv": (260.0, 100.0, 160.0),
        "aov": (65.0, 50.0, 30.0),
        # 1, 2, 4 | 6
        "paying_customers": (3, 1, 200.0),
        # 3 payers / 5 actives (1 .. 5) | 1 / 2 (1, 6)
        "paid_conversion": (0.6, 0.5, 20.0),
        # 1 (two orders) of 3 payers | 6: 1 of 1
        "repurchase_rate": (0.3333, 1.0, -66.67),
        # 03-09: 2 new, 2 back on 03-10; 03-11: 4 back on 03-12; 03-12 has no next day -> 2 / 3 | 6: 1 / 1
        "d1_retention": (0.6667, 1.0, -33.33),
    }
    assert [m.key for m in result.metrics] == [m.key for m in METRICS]
    assert (result.previous_from, result.previous_to) == (date(2026, 3, 5), date(2026, 3, 8))


def test_daily_series(load):
    result = overview(load(SHOP))
    series = {m.key: [p.value for p in m.series] for m in result.metrics}
    assert [p.date for p in result.metrics[0].series] == [date(2026, 3, d) for d in (9, 10, 11, 12)]
    assert all(p.breakdown is None for m in result.metrics for p in m.series)
    assert series == {
        "new_customers": [2, 0, 1, 1],
        "dau": [3, 1, 2, 3],
        "wau": [4, 4, 5, 6],  # 03-09: 1, 2, 3 and 6 (active 03-06/07); 03-11 adds 4; 03-12 adds 5
        "mau": [5, 5, 6, 7],  # 03-09: 1, 2, 3, 6, 7; 03-11 adds 4; 03-12 adds 5
        "stickiness": [0.6, 0.2, 0.3333, 0.4286],
        "orders": [1, 1, 2, 0],
        "gmv": [100.0, 80.0, 80.0, 0.0],
        "aov": [100.0, 80.0, 40.0, None],
        "paying_customers": [1, 1, 2, 0],
        "paid_conversion": [0.3333, 1.0, 1.0, 0.0],
        # running: second orders / first orders since date_from: 0/1, 0/2, 1/3, 1/3
        "repurchase_rate": [0.0, 0.0, 0.3333, 0.3333],
        "d1_retention": [0.5, None, 1.0, None],
    }


def test_breakdown_keeps_whole_totals_exact(load):
    engine = load([
        ev(1, "Page Viewed", "2026-03-09 10:00", channel="mp"), order(1, "2026-03-09 11:00", "50.00", channel="pos"),
        ev(2, "Page Viewed", "2026-03-09 10:00", channel="mp"), order(2, "2026-03-10 11:00", "30.00", channel="mp"),
        ev(3, "Page Viewed", "2026-03-10 10:00", channel="app"),
    ])
    result = overview(engine, date_to="2026-03-10", metrics=["dau", "paying_customers", "gmv"],
                      breakdown={"on": "event", "field": "channel", "limit": 1})
    dau, paying, gmv = result.metrics
    # actives in range by channel: mp {1, 2}, pos {1}, app {3}: keep mp; pos and app -> (other)
    assert [(p.date.day, p.breakdown, p.value) for p in dau.series] == [
        (9, None, 2), (10, None, 2), (9, "mp", 2), (10, "mp", 1), (9, "(other)", 1), (10, "(other)", 1)]
    # everyone: (2 + 2) / 2; mp: (2 + 1) / 2; (other): (1 + 1) / 2
    assert dau.total == 2
    assert [(b.breakdown, b.total) for b in dau.by_breakdown] == [("mp", 1.5), ("(other)", 1)]
    # customers 1 (pos) and 2 (mp) paid: 2 in all, 1 in each
    assert (paying.total, [(b.breakdown, b.total) for b in paying.by_breakdown]) == (
        2, [("mp", 1), ("(other)", 1)])
    assert (gmv.total, [(b.breakdown, b.total) for b in gmv.by_breakdown]) == (80.0, [("mp", 30.0), ("(other)", 50.0)])
    assert (gmv.unit, gmv.label_zh, dau.unit) == ("money", "成交额 (GMV)", "count")


def test_an_empty_range_gives_zeros_and_no_ratios(load):
    result = overview(load([ev(1, "Page Viewed", "2026-01-01 10:00")]),
                      metrics=["dau", "mau", "aov", "paid_conversion", "d1_retention"])
    got = {m.key: (m.total, m.previous, m.change_pct, [p.value for p in m.series]) for m in result.metrics}
    assert got == {
        "dau": (0, 0, None, [0, 0, 0, 0]),
        "mau": (0, 0, None, [0, 0, 0, 0]),
        "aov": (None, None, None, [None] * 4),
        "paid_conversion": (None, None, None, [None] * 4),
        "d1_retention": (None, None, None, [None] * 4),
    }


@pytest.mark.parametrize("body, message", [
    ({"metrics": ["dau", "dau"]}, "each once"),
    ({"metrics": []}, "at least one"),
    ({"metrics": ["ltv"]}, "metrics.0"),
])
def test_bad_queries_say_what_is_wrong(body, message):
    with pytest.raises(QueryError, match=message):
        parse_query({"kind": "overview", **body})


def test_example_is_valid():
    assert parse_query(OverviewRunner.example).breakdown.field == "channel"


def test_a_second_order_on_the_first_order_day_is_a_repurchase(load):
    engine = load([
        order(1, "2026-03-09 10:00", "10.00"), order(1, "2026-03-09 15:00", "20.00"),  # twice on the 9th
        order(2, "2026-03-10 10:00", "10.00"), order(2, "2026-03-11 10:00", "10.00"),
        order(2, "2026-03-11 12:00", "10.00"),  # the third order changes nothing
        order(3, "2026-03-12 10:00", "10.00"),
    ])
    metrics = {m.key: m for m in overview(engine).metrics}
    # first orders: 1 (03-09), 2 (03-10), 3 (03-12); second orders: 1 (03-09), 2 (03-11)
    assert metrics["paying_customers"].total == 3
    assert metrics["repurchase_rate"].total == 0.6667
    # running second / first orders: 1/1, 1/2, 2/2, 2/3
    assert [p.value for p in metrics["repurchase_rate"].series] == [1.0, 0.5, 1.0, 0.6667]
    # payers per day count each customer once a day: 1, 1, 1, 1
    assert [p.value for p in metrics["paying_customers"].series] == [1, 1, 1, 1]
    assert (metrics["orders"].total, metrics["gmv"].total) == (6, 70.0)

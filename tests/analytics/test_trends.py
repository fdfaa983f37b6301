"""Trends: points per interval, totals over the range, the previous period, breakdowns.

Every expected number below was computed by hand from the events listed in the
test (or in ``SHOP``); the comments show the arithmetic.
"""

from __future__ import annotations

from datetime import date

import pytest
from conftest import ev, order

from siyu.analytics.queries import parse_query, run_query
from siyu.analytics.queries.base import QueryError
from siyu.analytics.queries.trends import TrendsRunner, interval_starts

pytestmark = pytest.mark.django_db

# Range used below: Mon 2026-01-05 .. Sun 2026-01-18 (two ISO weeks, 14 days);
# its previous period is 2025-12-22 .. 2026-01-04.
SHOP = [
    ev(1, "Page Viewed", "2026-01-05 10:00", channel="mp"),
    ev(1, "Page Viewed", "2026-01-05 23:30", channel="mp"),  # 15:30 UTC: still the 5th in Shanghai
    ev(2, "Page Viewed", "2026-01-06 00:10", channel="pos"),  # the 5th in UTC, the 6th in Shanghai
    ev(2, "Page Viewed", "2026-01-12 09:00", channel="app"),
    order(1, "2026-01-07 12:00", "120.00", channel="mp"),
    order(2, "2026-01-13 12:00", "80.00", channel="pos"),
    order(3, "2026-01-14 12:00", "50.50", channel="mp"),
    # previous period
    order(1, "2025-12-30 12:00", "100.00", channel="mp"),
    ev(2, "Page Viewed", "2026-01-04 23:50", channel="pos"),
    # outside both periods
    ev(3, "Page Viewed", "2026-01-19 00:05"),
    ev(3, "Page Viewed", "2025-12-21 23:59"),
]
RANGE = {"date_from": "2026-01-05", "date_to": "2026-01-18"}


def trends(engine, *series, **fields):
    body = {"kind": "trends", **RANGE, "series": list(series), **fields}
    return run_query(body, engine, use_cache=False)


def points(line):
    return [p.value for p in line.points]


def test_daily_count_has_every_day_on_the_brand_clock(load):
    engine = load(SHOP)
    result = trends(engine, {"event": "Page Viewed"})
    (line,) = result.series
    # 01-05: 10:00 and 23:30; 01-06: 00:10; 01-12: 09:00; every other day 0
    assert [p.date for p in line.points][:3] == [date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)]
    assert points(line) == [2, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    # previous period: only 01-04 23:50 (12-21 is before it, 01-19 after the range); (4 - 1) / 1 = +300 %
    assert (line.total, line.previous, line.change_pct) == (4, 1, 300.0)
    assert (result.previous_from, result.previous_to) == (date(2025, 12, 22), date(2026, 1, 4))
    assert (line.label, line.breakdown) == ("Page Viewed", None)


def test_unique_customers_total_counts_each_customer_once(load):
    engine = load(SHOP)
    (line,) = trends(engine, {"event": None, "math": "unique_customers"}, interval="week").series
    # week of 01-05: persons 1, 2; week of 01-12: persons 2, 3; the range: 1, 2, 3 (not 2 + 2)
    assert points(line) == [2, 2]
    # previous: person 1 (order 12-30), person 2 (view 01-04); (3 - 2) / 2 = +50 %
    assert (line.total, line.previous, line.change_pct) == (3, 2, 50.0)


def test_revenue_sum_avg_min_max(load):
    engine = load(SHOP)
    series = [{"event": "Order Completed", "math": m, "property": "revenue"} for m in ("sum", "avg", "min", "max")]
    total, avg, low, high = trends(engine, *series, interval="week").series
    # week 1: 120.00; week 2: 80.00 + 50.50; previous: 100.00
    assert points(total) == [120.0, 130.5]
    assert (total.total, total.previous, total.change_pct) == (250.5, 100.0, 150.5)
    # averages: 130.50 / 2 = 65.25; over the range 250.50 / 3 = 83.50 (not the mean of weekly averages)
    assert points(avg) == [120.0, 65.25]
    assert (avg.total, avg.previous, avg.change_pct) == (83.5, 100.0, -16.5)
    assert (points(low), low.total) == ([120.0, 50.5], 50.5)
    assert (points(high), high.total) == ([120.0, 80.0], 120.0)
    assert total.label == "Order Completed · sum of revenue"


def test_property_values_that_are_not_numbers_are_skipped(load):
    engine = load([
        ev(1, "Product Added", "2026-02-02 10:00", properties='{"qty": "2"}'),
        ev(2, "Product Added", "2026-02-02 11:00", properties='{"qty": 3}'),
        ev(2, "Product Added", "2026-02-03 11:00", properties='{"qty": "lots"}'),
        ev(3, "Product Added", "2026-02-04 11:00"),
    ])
    body = {"date_from": "2026-02-02", "date_to": "2026-02-04"}
    sums, avgs = trends(engine, {"event": "Product Added", "math": "sum", "property": "properties.qty"},
                        {"event": "Product Added", "math": "avg", "property": "properties.qty"}, **body).series
    # 02-02: 2 + 3 = 5 (avg 2.5); 02-03 "lots" and 02-04 no qty: a sum of nothing is 0, an average null
    assert points(sums) == [5.0, 0, 0]
    assert points(avgs) == [2.5, None, None]
    # nothing in the previous period (01-30 .. 02-01): no change in % from 0 or from null
    assert (sums.total, sums.previous, sums.change_pct) == (5.0, 0, None)
    assert (avgs.total, avgs.previous, avgs.change_pct) == (2.5, None, None)


def test_weeks_start_on_monday_and_only_days_in_range_count(load):
    engine = load(SHOP)
    # Wed 01-07 .. Tue 01-20: weeks of Mon 01-05, 01-12, 01-19
    result = trends(engine, {"event": "Page Viewed"}, {"event": "Order Completed"}, interval="week",
                    date_from="2026-01-07", date_to="2026-01-20")
    views, orders = result.series
    assert [p.date for p in views.points] == [date(2026, 1, 5), date(2026, 1, 12), date(2026, 1, 19)]
    # views on 01-05 and 01-06 are before date_from; 01-12 and 01-19 00:05 count
    assert points(views) == [0, 1, 1]
    assert points(orders) == [1, 2, 0]
    # previous 14 days 2025-12-24 .. 2026-01-06: views on 01-04, 01-05 (two), 01-06; (2 - 4) / 4 = -50 %
    assert (views.total, views.previous, views.change_pct) == (2, 4, -50.0)


def test_interval_starts():
    assert interval_starts(date(2026, 1, 15), date(2026, 3, 10), "month") == [
        date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    assert interval_starts(date(2026, 1, 7), date(2026, 1, 19), "week") == [
        date(2026, 1, 5), date(2026, 1, 12), date(2026, 1, 19)]
    assert interval_starts(date(2025, 12, 31), date(2026, 1, 1), "day") == [date(2025, 12, 31), date(2026, 1, 1)]


def test_breakdown_folds_the_tail_into_other_exactly(load):
    engine = load(SHOP)
    result = trends(engine, {"math": "unique_customers"}, interval="week",
                    breakdown={"on": "event", "field": "channel", "limit": 1})
    mp, other = result.series
    # mp: persons 1 and 3; pos: person 2; app: person 2. Limit 1 keeps mp; (other) = {2}: 1 customer, not 1 + 1
    assert (mp.breakdown, points(mp), mp.total) == ("mp", [1, 1], 2)
    assert (other.breakdown, points(other), other.total) == ("(other)", [1, 1], 1)
    # previous: mp person 1 (order 12-30); pos person 2 (view 01-04) -> (other)
    assert (mp.previous, mp.change_pct, other.previous, other.change_pct) == (1, 100.0, 1, 0.0)


def test_breakdown_of_counts_orders_lines_by_total(load):
    engine = load(SHOP)
    result = trends(engine, {"event": None}, breakdown={"on": "event", "field": "channel", "limit": 2})
    # mp: 2 views + 2 orders = 4; pos: 1 view + 1 order = 2; app: 1 view -> (other); (other) comes last
    assert [(s.breakdown, s.total) for s in result.series] == [("mp", 4), ("pos", 2), ("(other)", 1)]


@pytest.mark.parametrize("series, message", [
    ({"math": "sum"}, "math `sum` needs a property"),
    ({"math": "count", "property": "revenue"}, "math `count` takes no property"),
    ({"math": "avg", "property": "channel"}, "property 'channel' is not a number"),
])
def test_bad_series_say_what_is_wrong(series, message):
    with pytest.raises(QueryError, match=message):
        parse_query({"kind": "trends", "series": [series]})


def test_series_count_is_limited_and_example_is_valid():
    with pytest.raises(QueryError, match="series"):
        parse_query({"kind": "trends", "series": [{}] * 6})
    with pytest.raises(QueryError, match="series"):
        parse_query({"kind": "trends", "series": []})
    assert parse_query(TrendsRunner.example).kind == "trends"

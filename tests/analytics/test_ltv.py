"""Historical lifetime value: cumulative revenue per acquired customer, period by period.

Expected values are computed by hand from ``_shop()`` (range 1 January - 15 March 2026, months):

    person  first seen   channel  orders (brand clock, channel)
    1       2026-01-03   douyin   01-05 100 pos, 02-10 50 pos, 03-10 30 pos
    2       2026-01-20   mp       03-01 00:30 40 mp (28 February in UTC: still March on the brand clock)
    3       2026-01-25   douyin   -
    4       2026-02-05   mp       02-06 200 mp, 03-20 99 mp (after date_to: not counted)
    5       2025-12-30   -        01-02 500 (seen before the range; first order inside it)
    6       2026-03-02   -        03-03 10
"""

from __future__ import annotations

import pytest
from conftest import order, person

from siyu.analytics.queries import parse_query, run_query
from siyu.analytics.queries.base import QueryError

pytestmark = pytest.mark.django_db

RANGE = {"kind": "ltv", "date_from": "2026-01-01", "date_to": "2026-03-15", "periods": 3}


def _shop(load):
    return load(
        [order(1, "2026-01-05 10:00", "100.00", channel="pos"), order(1, "2026-02-10 10:00", "50.00", channel="pos"),
         order(1, "2026-03-10 10:00", "30.00", channel="pos"),
         order(2, "2026-03-01 00:30", "40.00", channel="mp"),
         order(4, "2026-02-06 10:00", "200.00", channel="mp"), order(4, "2026-03-20 10:00", "99.00", channel="mp"),
         order(5, "2026-01-02 10:00", "500.00"),
         order(6, "2026-03-03 10:00", "10.00")],
        persons=[person(1, "2026-01-03 09:00", acquisition_channel="douyin"),
                 person(2, "2026-01-20 09:00", acquisition_channel="mp"),
                 person(3, "2026-01-25 09:00", acquisition_channel="douyin"),
                 person(4, "2026-02-05 09:00", acquisition_channel="mp"),
                 person(5, "2025-12-30 09:00"), person(6, "2026-03-02 09:00")],
    )


def _rows(result):
    return [(str(c.cohort), c.customers, c.revenue, c.ltv, c.complete_periods) for c in result.cohorts]


def test_cumulative_revenue_per_customer_by_first_seen_month(load):
    result = run_query(RANGE, _shop(load))
    # January: 1, 2, 3 -> 100 | +50 | +30+40 over 3 customers; April has not started by 15 March
    # February: 4 -> 200 | +0 (the 20 March order is after date_to); March: 6 -> 10
    assert _rows(result) == [
        ("2026-01-01", 3, 220.0, [33.33, 50.0, 73.33, None], 2),
        ("2026-02-01", 1, 200.0, [200.0, 200.0, None, None], 1),
        ("2026-03-01", 1, 10.0, [10.0, None, None, None], 0),
    ]


def test_overall_curve_weights_the_cohorts_that_reached_each_period(load):
    result = run_query(RANGE, _shop(load))
    # period 0: (100+200+10)/5; period 1: January and February (150+200)/4; period 2: January 220/3
    overall = result.overall
    assert (overall.breakdown, overall.customers, overall.revenue) == (None, 5, 430.0)
    assert overall.ltv == [62.0, 87.5, 73.33, None]
    assert result.by_breakdown == []


def test_first_order_cohorts_take_buyers_only(load):
    result = run_query({**RANGE, "cohort_by": "first_order"}, _shop(load))
    # January: 1 and 5 (first order 2 January); February: 4; March: 2 (00:30 on 1 March) and 6
    assert _rows(result) == [
        ("2026-01-01", 2, 680.0, [300.0, 325.0, 340.0, None], 2),
        ("2026-02-01", 1, 200.0, [200.0, 200.0, None, None], 1),
        ("2026-03-01", 2, 50.0, [25.0, None, None, None], 0),
    ]
    assert result.overall.ltv == [170.0, 283.33, 340.0, None]


def test_breakdown_by_person_acquisition_channel(load):
    result = run_query({**RANGE, "breakdown": {"on": "person", "field": "acquisition_channel"}}, _shop(load))
    # douyin: 1 and 3 (January); mp: 2 (January) and 4 (February); period 2 reached by January only
    assert [(g.breakdown, g.customers, g.revenue, g.ltv) for g in result.by_breakdown] == [
        ("douyin", 2, 180.0, [50.0, 75.0, 90.0, None]),
        ("mp", 2, 240.0, [100.0, 100.0, 40.0, None]),
        ("(none)", 1, 10.0, [10.0, None, None, None]),
    ]
    assert result.overall.ltv == [62.0, 87.5, 73.33, None]


def test_event_breakdown_uses_the_first_orders_value(load):
    result = run_query({**RANGE, "breakdown": {"on": "event", "field": "channel"}}, _shop(load))
    # pos: 1; mp: 2, 4; (none): 3 (no order) and 6 (order without channel)
    assert [(g.breakdown, g.customers, g.revenue) for g in result.by_breakdown] == [
        ("(none)", 2, 10.0), ("mp", 2, 240.0), ("pos", 1, 180.0)]


def test_event_filters_decide_which_revenue_counts(load):
    result = run_query({**RANGE, "filters": [{"field": "channel", "value": "mp"}]}, _shop(load))
    # every customer first seen in the range stays; only mini-program orders count: 2's 40, 4's 200
    assert _rows(result) == [
        ("2026-01-01", 3, 40.0, [0.0, 0.0, 13.33, None], 2),
        ("2026-02-01", 1, 200.0, [200.0, 200.0, None, None], 1),
        ("2026-03-01", 1, 0.0, [0.0, None, None, None], 0),
    ]


def test_weekly_periods_start_on_monday(load):
    # Given a cohort week starting Monday 5 January: 1 orders Tue 6, Mon 12, Sun 25; 2 orders Sun 11, Mon 12
    engine = load([order(1, "2026-01-06 10:00", "10.00"), order(1, "2026-01-12 10:00", "20.00"),
                   order(1, "2026-01-25 23:00", "30.00"), order(1, "2026-01-26 10:00", "99.00"),
                   order(2, "2026-01-11 23:00", "40.00"), order(2, "2026-01-12 10:00", "60.00")])
    result = run_query({"kind": "ltv", "date_from": "2026-01-05", "date_to": "2026-01-25", "interval": "week",
                        "periods": 2, "cohort_by": "first_order"}, engine)
    # Then (10+40)/2, (+20+60)/2, (+30)/2; all three weeks ended by Sunday 25 January
    assert _rows(result) == [("2026-01-05", 2, 160.0, [25.0, 65.0, 80.0], 3)]


def test_no_customers_gives_an_empty_curve(load):
    result = run_query(RANGE, load([order(5, "2025-12-02 10:00", "500.00")], persons=[person(5, "2025-12-01 09:00")]))
    assert result.cohorts == []
    assert (result.overall.customers, result.overall.revenue, result.overall.ltv) == (0, 0.0, [None] * 4)


@pytest.mark.parametrize("body, message", [
    ({"periods": -1}, "greater than or equal to 0"),
    ({"periods": 61}, "less than or equal to 60"),
    ({"cohort_by": "signup"}, "'first_seen' or 'first_order'"),
])
def test_bad_queries_say_what_is_wrong(body, message):
    with pytest.raises(QueryError, match=message):
        parse_query({**RANGE, **body})

"""Retention: cohort matrix, revenue retention and the N-day curve, on every engine.

Every expected number below was counted by hand from the fixture above it.
"""

from __future__ import annotations

import pytest
from conftest import ev, order, person

from siyu.analytics.queries import REGISTRY, parse_query, run_query
from siyu.analytics.queries.base import QueryError

pytestmark = pytest.mark.django_db


def weekly_orders():
    # Weeks of 2026: W1 = 01-05..01-11, W2 = 01-12..01-18, W3 = 01-19..01-25.
    return [
        order(1, "2026-01-05 10:00", "100.00"), order(1, "2026-01-13 10:00", "50.00"),
        order(1, "2026-01-20 10:00", "30.00"),
        order(2, "2026-01-07 10:00", "80.00"), order(2, "2026-01-21 10:00", "20.00"),
        # first order before the range: in no cohort
        order(3, "2025-12-20 10:00", "70.00"), order(3, "2026-01-14 10:00", "70.00"),
        order(4, "2026-01-12 10:00", "40.00"), ev(4, "Page Viewed", "2026-01-19 10:00"),
        order(5, "2026-01-13 10:00", "60.00"), order(5, "2026-01-19 10:00", "10.00"),
    ]


WEEKLY = {"kind": "retention", "date_from": "2026-01-05", "date_to": "2026-01-25", "interval": "week",
          "start_event": "Order Completed", "return_event": "Order Completed", "periods": 3}


def matrix(result, series=0, field="customers"):
    return {str(c.cohort): [getattr(cell, field) for cell in c.cells] for c in result.series[series].cohorts}


def test_weekly_cohorts_of_first_orders(load):
    # Given first orders in W1 (persons 1, 2) and W2 (4, 5); person 3 ordered before the range
    engine = load(weekly_orders())
    # When the weekly repeat-order matrix is asked for
    result = run_query(WEEKLY, engine)
    # Then W1: 2 customers, 1 back in W2 (p1), 2 back in W3 (p1, p2); W2: p5 back in W3;
    # W3 is empty; cells starting after 01-25 are null
    cohorts = result.series[0].cohorts
    assert [(str(c.cohort), c.size) for c in cohorts] == [("2026-01-05", 2), ("2026-01-12", 2),
                                                         ("2026-01-19", 0)]
    assert matrix(result) == {"2026-01-05": [2, 1, 2], "2026-01-12": [2, 1, None], "2026-01-19": [0, None, None]}
    assert matrix(result, field="rate") == {"2026-01-05": [1.0, 0.5, 1.0], "2026-01-12": [1.0, 0.5, None],
                                            "2026-01-19": [None, None, None]}
    assert [str(cell.interval_start) for cell in cohorts[1].cells] == ["2026-01-12", "2026-01-19", "2026-01-26"]


def test_revenue_retention_and_pooled_average(load):
    engine = load(weekly_orders())
    result = run_query(WEEKLY, engine)
    # Then W1 spent 100+80 in W1, 50 in W2, 30+20 in W3; W2 spent 40+60, then 10
    assert matrix(result, field="revenue") == {"2026-01-05": [180.0, 50.0, 50.0],
                                               "2026-01-12": [100.0, 10.0, None],
                                               "2026-01-19": [0.0, None, None]}
    assert matrix(result, field="revenue_ratio") == {"2026-01-05": [1.0, 0.2778, 0.2778],
                                                     "2026-01-12": [1.0, 0.1, None],
                                                     "2026-01-19": [None, None, None]}
    # And the average pools complete cells: period 1 = (1 + 1) / (2 + 2), revenue (50 + 10) / (180 + 100)
    average = [(a.period, a.cohorts, a.size, a.customers, a.rate, a.revenue, a.revenue_ratio)
               for a in result.series[0].average]
    assert average == [(0, 3, 4, 4, 1.0, 280.0, 1.0), (1, 2, 4, 2, 0.5, 60.0, 0.2143),
                       (2, 1, 2, 2, 1.0, 50.0, 0.2778)]


def test_any_event_counts_as_return_when_return_event_is_null(load):
    engine = load(weekly_orders())
    result = run_query({**WEEKLY, "return_event": None}, engine)
    # Then person 4's page view in W3 brings W2's period 1 to p4 and p5
    assert matrix(result)["2026-01-12"] == [2, 2, None]


def test_start_mode_any_puts_a_customer_in_every_cohort_they_started_in(load):
    # Given p1 ordering in W1 and W2, p2 in W2 after a first order before the range
    events = [order(1, "2026-01-05 10:00", "10.00"), order(1, "2026-01-14 10:00", "10.00"),
              order(2, "2025-12-29 10:00", "10.00"), order(2, "2026-01-15 10:00", "10.00")]
    engine = load(events)
    body = {**WEEKLY, "date_to": "2026-01-18", "periods": 2}
    # Then "first" keeps only p1's first order; "any" also counts p1 and p2 in W2
    assert matrix(run_query(body, engine)) == {"2026-01-05": [1, 1], "2026-01-12": [0, None]}
    assert matrix(run_query({**body, "start_mode": "any"}, engine)) == {"2026-01-05": [1, 1],
                                                                        "2026-01-12": [2, None]}


def test_day_curve_exact_and_on_or_after(load):
    # Given sign-ups over 01-01..01-10 and later activity (any event returns)
    events = [
        ev(1, "Signed Up", "2026-01-01 10:00"), ev(1, "Page Viewed", "2026-01-02 09:00"),
        ev(1, "Page Viewed", "2026-01-09 09:00"),  # days 1 and 8
        # 00:30 on the 3rd in Shanghai is still the 2nd in UTC: it is day 1 on the brand's clock
        ev(2, "Signed Up", "2026-01-02 10:00"), ev(2, "Page Viewed", "2026-01-03 00:30"),
        ev(2, "Page Viewed", "2026-01-09 20:00"),  # days 1 and 7
        ev(3, "Signed Up", "2026-01-05 10:00"), ev(3, "Page Viewed", "2026-01-07 10:00"),  # day 2
        ev(4, "Signed Up", "2026-01-09 10:00"), ev(4, "Page Viewed", "2026-01-09 11:00"),  # day 0 only
        ev(5, "Signed Up", "2026-01-10 10:00"),
    ]
    engine = load(events)
    result = run_query({"kind": "retention", "date_from": "2026-01-01", "date_to": "2026-01-10",
                        "interval": "day", "start_event": "Signed Up", "curve_days": [7, 1]}, engine)
    # Then D1 is open to p1..p4 (p5 started on the last day): exactly day 1 = p1, p2; day >= 1 = p1, p2, p3
    # And D7 is open to p1, p2 only: exactly day 7 = p2; day >= 7 = p1, p2
    curve = [(p.day, p.eligible, p.exact, p.exact_rate, p.on_or_after, p.on_or_after_rate)
             for p in result.series[0].curve]
    assert curve == [(1, 4, 2, 0.5, 3, 0.75), (7, 2, 1, 0.5, 2, 1.0)]


def test_person_breakdown_by_month_with_limit(load):
    events = [order(1, "2026-01-10 10:00", "10.00"), order(1, "2026-02-03 10:00", "10.00"),
              order(2, "2026-01-20 10:00", "10.00"),
              order(3, "2026-01-15 10:00", "10.00"), order(3, "2026-02-20 10:00", "10.00"),
              order(4, "2026-02-01 10:00", "10.00")]
    persons = [person(1, acquisition_channel="douyin"), person(2, acquisition_channel="douyin"),
               person(3, acquisition_channel="wechat"), person(4)]
    engine = load(events, persons)
    result = run_query({"kind": "retention", "date_from": "2026-01-01", "date_to": "2026-02-20",
                        "interval": "month", "periods": 2,
                        "breakdown": {"on": "person", "field": "acquisition_channel", "limit": 1}}, engine)
    # Then douyin (2 customers) keeps its own matrix; wechat and (none) fold into "(other)"
    assert [s.breakdown for s in result.series] == ["douyin", "(other)"]
    assert matrix(result, 0) == {"2026-01-01": [2, 1], "2026-02-01": [0, None]}
    assert matrix(result, 1) == {"2026-01-01": [1, 1], "2026-02-01": [1, None]}
    # And February is still running on 02-20: its cells are not complete, so no average for period 1
    assert [c.complete for c in result.series[1].cohorts[0].cells] == [True, False]
    assert [(a.period, a.cohorts, a.rate) for a in result.series[1].average] == [(0, 1, 1.0), (1, 0, None)]


def test_event_filters_restrict_start_and_return_events(load):
    # Given p1 whose first mini-program order is in W2 (the W1 order was in a store)
    events = [order(1, "2026-01-05 10:00", "10.00", channel="pos"),
              order(1, "2026-01-13 10:00", "10.00", channel="mp"),
              order(1, "2026-01-20 10:00", "10.00", channel="mp")]
    engine = load(events)
    result = run_query({**WEEKLY, "filters": [{"field": "channel", "value": "mp"}]}, engine)
    assert matrix(result) == {"2026-01-05": [0, 0, 0], "2026-01-12": [1, 1, None],
                              "2026-01-19": [0, None, None]}


@pytest.mark.parametrize("change, message", [
    ({"periods": 61}, "periods"),
    ({"periods": 1}, "periods"),
    ({"curve_days": [0, 7]}, "each curve day must be between 1 and 365"),
    ({"interval": "year"}, "interval"),
    ({"start_mode": "last"}, "start_mode"),
])
def test_bad_queries_name_the_field(change, message):
    with pytest.raises(QueryError, match=message):
        parse_query({**WEEKLY, **change})


def test_example_body_is_valid():
    runner = REGISTRY["retention"]
    assert parse_query(runner.example).kind == "retention"

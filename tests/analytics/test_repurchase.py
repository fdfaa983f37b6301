"""Repurchase: cohorts of first-time buyers, repeat buyers, days to the second order.

Expected values are computed by hand from ``_shop()`` (range 1 January - 28 February 2026):

    person  orders (brand clock, channel)                               first   gap
    1       01-05 pos, 01-10 mp, 02-20 mp                               Jan     5
    2       01-20 mp, 03-01 00:30 mp (after date_to on the brand clock)  Jan     -
    3       2025-12-20, 01-15 (first-ever order before the range)       -       -
    4       02-01 00:30 mp (still 31 January in UTC), 02-11 mp           Feb     10
    5       02-10 09:00, 02-10 18:00                                    Feb     0
    6       01-31 pos, 02-28 23:30 pos                                  Jan     28
    7       no order
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ev, order, person

from siyu.analytics.queries import run_query
from siyu.analytics.queries.repurchase import weighted_quantile

pytestmark = pytest.mark.django_db

RANGE = {"kind": "repurchase", "date_from": "2026-01-01", "date_to": "2026-02-28"}


def _shop(load):
    return load(
        [order(1, "2026-01-05 10:00", "100.00", channel="pos"), order(1, "2026-01-10 10:00", "50.00", channel="mp"),
         order(1, "2026-02-20 10:00", "70.00", channel="mp"),
         order(2, "2026-01-20 10:00", "80.00", channel="mp"), order(2, "2026-03-01 00:30", "80.00", channel="mp"),
         order(3, "2025-12-20 10:00", "60.00"), order(3, "2026-01-15 10:00", "60.00"),
         order(4, "2026-02-01 00:30", "30.00", channel="mp"), order(4, "2026-02-11 12:00", "30.00", channel="mp"),
         order(5, "2026-02-10 09:00", "20.00"), order(5, "2026-02-10 18:00", "20.00"),
         order(6, "2026-01-31 12:00", "90.00", channel="pos"), order(6, "2026-02-28 23:30", "90.00", channel="pos"),
         ev(7, "Page Viewed", "2026-01-08 10:00")],
        persons=[person(1, acquisition_channel="douyin"), person(2, acquisition_channel="douyin"), person(3),
                 person(4, acquisition_channel="mp"), person(5), person(6, acquisition_channel="mp"), person(7)],
    )


def _cohorts(result):
    return [(str(c.cohort), c.buyers, c.repeat_buyers, c.repurchase_rate, c.median_days_to_second)
            for c in result.cohorts]


def test_monthly_cohorts_of_first_time_buyers(load):
    # Given the shop, when repurchase is asked by month of first order
    result = run_query(RANGE, _shop(load))
    # Then January holds 1, 2, 6 (3 and its older first order do not count), 1 and 6 came back;
    # February holds 4 (00:30 on 1 February in Shanghai) and 5, both came back
    assert _cohorts(result) == [("2026-01-01", 3, 2, 0.6667, 16.5), ("2026-02-01", 2, 2, 1.0, 5.0)]
    assert (result.overall.buyers, result.overall.repeat_buyers, result.overall.repurchase_rate) == (5, 4, 0.8)
    assert str(result.as_of) == "2026-02-28" and result.by_breakdown == []


def test_days_to_second_order_distribution(load):
    result = run_query(RANGE, _shop(load))
    # Gaps 0, 5, 10, 28: median (5+10)/2; p25 = 0 + 0.75*(5-0); p75 = 10 + 0.25*(28-10)
    days = result.overall.days_to_second
    assert (days.median, days.mean, days.p25, days.p75) == (7.5, 10.75, 3.75, 14.5)
    assert [(b.label, b.customers, b.share) for b in days.histogram] == [
        ("0-7", 2, 0.5), ("8-14", 1, 0.25), ("15-30", 1, 0.25), ("31-60", 0, 0.0), ("61-90", 0, 0.0),
        ("91-180", 0, 0.0), ("181+", 0, 0.0)]


def test_within_days_counts_only_quick_second_orders(load):
    # When only second orders at most 7 days after the first count
    result = run_query({**RANGE, "within_days": 7}, _shop(load))
    # Then January keeps 1 (5 days), February keeps 5 (same day); 4 (10 days) no longer counts.
    # January's windows all ended by 28 February (31 Jan + 7); February's did not.
    assert _cohorts(result) == [("2026-01-01", 3, 1, 0.3333, 5.0), ("2026-02-01", 2, 1, 0.5, 0.0)]
    assert [c.window_closed for c in result.cohorts] == [True, False]


def test_weekly_cohorts_start_on_monday(load):
    result = run_query({**RANGE, "interval": "week"}, _shop(load))
    # 1: Mon 5 Jan; 2: Tue 20 Jan; 6: Sat 31 Jan and 4: Sun 1 Feb (week of 26 Jan); 5: Tue 10 Feb
    assert [(str(c.cohort), c.buyers, c.repeat_buyers) for c in result.cohorts] == [
        ("2026-01-05", 1, 1), ("2026-01-19", 1, 0), ("2026-01-26", 2, 2), ("2026-02-09", 1, 1)]


def test_breakdown_by_person_acquisition_channel(load):
    result = run_query({**RANGE, "breakdown": {"on": "person", "field": "acquisition_channel"}}, _shop(load))
    # douyin: 1 and 2 (2 did not return); mp: 4 and 6; (none): 5
    assert [(g.breakdown, g.buyers, g.repeat_buyers, g.repurchase_rate, g.days_to_second.median)
            for g in result.by_breakdown] == [
        ("douyin", 2, 1, 0.5, 5.0), ("mp", 2, 2, 1.0, 19.0), ("(none)", 1, 1, 1.0, 0.0)]


def test_event_breakdown_uses_the_first_orders_value(load):
    result = run_query({**RANGE, "breakdown": {"on": "event", "field": "channel"}}, _shop(load))
    # 1 first bought at pos (later at mp), so 1 counts under pos with 6; mp: 2 and 4; (none): 5
    assert [(g.breakdown, g.buyers, g.repeat_buyers) for g in result.by_breakdown] == [
        ("mp", 2, 1), ("pos", 2, 2), ("(none)", 1, 1)]
    assert result.overall.buyers == 5


def test_event_filters_decide_which_orders_count(load):
    # When only mini-program orders count, 1's first order is the one of 10 January
    result = run_query({**RANGE, "filters": [{"field": "channel", "value": "mp"}]}, _shop(load))
    # Then January: 1 (next mp order 20 Feb: 41 days) and 2; February: 4 (10 days)
    assert _cohorts(result) == [("2026-01-01", 2, 1, 0.5, 41.0), ("2026-02-01", 1, 1, 1.0, 10.0)]
    assert [(b.label, b.customers) for b in result.overall.days_to_second.histogram][1:4] == [
        ("8-14", 1), ("15-30", 0), ("31-60", 1)]


def test_person_filters_restrict_the_buyers(load):
    result = run_query({**RANGE, "filters": [{"on": "person", "field": "acquisition_channel", "value": "douyin"}]},
                       _shop(load))
    assert _cohorts(result) == [("2026-01-01", 2, 1, 0.5, 5.0)]


def test_no_orders_gives_empty_cohorts(load):
    result = run_query(RANGE, load([ev(7, "Page Viewed", "2026-01-08 10:00")]))
    assert result.cohorts == []
    assert (result.overall.buyers, result.overall.repurchase_rate, result.overall.days_to_second.median) == (
        0, 0.0, None)


@pytest.mark.parametrize("body, message", [
    ({"within_days": 0}, "greater than or equal to 1"),
    ({"interval": "day"}, "'week' or 'month'"),
])
def test_bad_queries_say_what_is_wrong(body, message):
    from siyu.analytics.queries import parse_query
    from siyu.analytics.queries.base import QueryError

    with pytest.raises(QueryError, match=message):
        parse_query({**RANGE, **body})


def test_weighted_quantile_matches_numpy_on_repeated_values():
    values, counts = np.array([0, 5, 10, 28]), np.array([3, 1, 2, 4])
    expanded = np.repeat(values, counts)
    for q in (0.25, 0.5, 0.75, 0.9):
        assert weighted_quantile(values, counts, q) == round(float(np.quantile(expanded, q)), 2)

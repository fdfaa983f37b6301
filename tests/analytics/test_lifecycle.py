"""Lifecycle statuses per interval, with history before the range.

Every expected count was computed by hand from the activity days listed in the
test; the comments give each customer's days and the arithmetic (d = days from
the last activity to the interval's last day).
"""

from __future__ import annotations

from datetime import date

import pytest
from conftest import ev, order, person

from siyu.analytics.queries import parse_query, run_query
from siyu.analytics.queries.base import QueryError
from siyu.analytics.queries.lifecycle import LifecycleRunner

pytestmark = pytest.mark.django_db

FIELDS = ("new", "active", "reactivated", "idle", "silent", "churned", "newly_churned", "customers")


def lifecycle(engine, **fields):
    return run_query({"kind": "lifecycle", **fields}, engine, use_cache=False)


def counts(point):
    return tuple(getattr(point, f) for f in FIELDS)


def visits(person_id, *days):
    return [ev(person_id, "Page Viewed", f"{day} 12:00") for day in days]


# Weeks W1 = Mon 03-02 .. Sun 03-08 and W2 = 03-09 .. 03-15 (2026); silent_after 7, churned_after 14.
WEEKS = [
    *visits(1, "2026-01-10", "2026-03-03", "2026-03-10"),  # W1 reactivated (gap 52 > 14); W2 active (gap 7)
    *visits(2, "2026-03-04"),                              # W1 new; W2 silent (d 11)
    *visits(3, "2026-02-25"),                              # W1 silent (d 11); W2 churned, churn day 03-12
    *visits(4, "2026-03-06", "2026-03-07"),                # W1 new (once); W2 silent (d 8)
    *visits(5, "2026-01-01"),                              # W1, W2 churned; churn day 01-16 (before range)
    *visits(6, "2026-03-05", "2026-03-14"),                # W1 new; W2 active (gap 9)
    *visits(7, "2026-03-01", "2026-03-09"),                # W1 silent (d 7, the lower bound); W2 active (gap 8)
    *visits(8, "2026-02-27", "2026-03-02"),                # W1 active (gap 3); W2 silent (d 13)
    *visits(9, "2026-02-20", "2026-03-12"),                # W1 churned, churn day 03-07; W2 reactivated (gap 20)
    *visits(11, "2026-02-21"),                             # W1 churned (d 15), churn day 03-08; W2 churned
    *visits(12, "2026-02-22"),                             # W1 silent (d 14, the upper bound); W2 churned, day 03-09
    *visits(13, "2026-03-16"),                             # after the range: nobody yet
]


def test_weekly_statuses(load):
    engine = load(WEEKS)
    result = lifecycle(engine, date_from="2026-03-02", date_to="2026-03-15", interval="week",
                       silent_after=7, churned_after=14)
    (line,) = result.series
    w1, w2 = line.points
    assert (w1.date, w1.end, w2.date, w2.end) == (date(2026, 3, 2), date(2026, 3, 8), date(2026, 3, 9),
                                                  date(2026, 3, 15))
    # W1: new 2,4,6; active 8; reactivated 1; silent 3,7,12; churned 5,9,11 (9 and 11 crossed in W1)
    assert counts(w1) == (3, 1, 1, 0, 3, 3, 2, 11)
    # W2: active 1,6,7; reactivated 9; silent 2,4,8; churned 3,5,11,12 (3 and 12 crossed in W2)
    assert counts(w2) == (0, 3, 1, 0, 3, 4, 2, 11)
    assert line.breakdown is None


def test_daily_statuses_for_an_activity_event(load):
    engine = load([
        order(1, "2026-03-01 10:00", "10.00"), ev(1, "Page Viewed", "2026-03-03 10:00"),  # views don't count
        order(2, "2026-03-02 10:00", "10.00"), order(2, "2026-03-03 10:00", "10.00"),
        order(3, "2026-02-25 10:00", "10.00"), order(3, "2026-03-04 10:00", "10.00"),
        ev(4, "Page Viewed", "2026-03-03 10:00"),
    ])
    result = lifecycle(engine, date_from="2026-03-02", date_to="2026-03-05", interval="day",
                       event="Order Completed", silent_after=2, churned_after=3)
    # person 1: last order 03-01 -> d 1 idle, 2 silent, 3 silent, 4 churned (churn day 03-01 + 4 = 03-05)
    # person 2: 03-02 new, 03-03 active, 03-04 idle (d 1), 03-05 silent (d 2)
    # person 3: 02-25 -> churned on 03-02 and 03-03 (churn day 03-01, before the range); 03-04 reactivated
    #           (gap 7 > 3); 03-05 idle. Person 4 never ordered.
    assert [counts(p) for p in result.series[0].points] == [
        (1, 0, 0, 1, 0, 1, 0, 3),
        (0, 1, 0, 0, 1, 1, 0, 3),
        (0, 0, 1, 1, 1, 0, 0, 3),
        (0, 0, 0, 1, 1, 1, 1, 3),
    ]


def test_monthly_by_person_attribute_with_other(load):
    engine = load(
        [*visits(1, "2026-01-05", "2026-02-10"), *visits(2, "2025-09-01", "2026-01-20"),
         *visits(3, "2025-12-20"), *visits(4, "2025-10-15")],
        persons=[person(1, acquisition_channel="douyin"), person(2, acquisition_channel="douyin"),
                 person(3, acquisition_channel="wechat"), person(4)],
    )
    result = lifecycle(engine, date_from="2026-01-01", date_to="2026-02-28", interval="month",
                       breakdown={"on": "person", "field": "acquisition_channel", "limit": 1})
    douyin, other = result.series
    assert (douyin.breakdown, other.breakdown) == ("douyin", "(other)")
    # 1: Jan new, Feb active (gap 36). 2: Jan reactivated (09-01 -> 01-20 = 141 > 90), Feb silent (d 39)
    assert [counts(p) for p in douyin.points] == [(1, 0, 1, 0, 0, 0, 0, 2), (0, 1, 0, 0, 1, 0, 0, 2)]
    # wechat 3: silent in Jan (d 42) and Feb (d 70). (none) 4: churned; churn day 10-15 + 91 = 01-14
    assert [counts(p) for p in other.points] == [(0, 0, 0, 0, 1, 1, 1, 2), (0, 0, 0, 0, 1, 1, 0, 2)]
    assert [(p.date, p.end) for p in other.points] == [(date(2026, 1, 1), date(2026, 1, 31)),
                                                       (date(2026, 2, 1), date(2026, 2, 28))]


def test_first_week_is_clipped_to_the_range(load):
    # Wed 03-04 .. Tue 03-10: intervals 03-04..03-08 (labelled Mon 03-02) and 03-09..03-10
    engine = load([*visits(1, "2026-03-02", "2026-03-05"), *visits(2, "2026-03-03")])
    result = lifecycle(engine, date_from="2026-03-04", date_to="2026-03-10", interval="week",
                       silent_after=7, churned_after=14)
    w1, w2 = result.series[0].points
    assert (w1.date, w2.end) == (date(2026, 3, 2), date(2026, 3, 10))
    # person 1 first visited on 03-02, before the range: active (not new) in W1; person 2 idle (d 5)
    assert counts(w1) == (0, 1, 0, 1, 0, 0, 0, 2)
    # W2 (ends 03-10): person 1 idle (d 5 < 7); person 2 silent (d 7)
    assert counts(w2) == (0, 0, 0, 1, 1, 0, 0, 2)


@pytest.mark.parametrize("body, message", [
    ({"silent_after": 30, "churned_after": 30}, "silent_after must be smaller than churned_after"),
    ({"breakdown": {"on": "event", "field": "channel"}}, "customer attributes only"),
    ({"interval": "year"}, "interval"),
])
def test_bad_queries_say_what_is_wrong(body, message):
    with pytest.raises(QueryError, match=message):
        parse_query({"kind": "lifecycle", **body})


def test_example_is_valid():
    query = parse_query(LifecycleRunner.example)
    assert (query.silent_after, query.churned_after) == (30, 90)

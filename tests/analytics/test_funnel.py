"""Funnels: step counts, conversion, time to convert, orders, drop-off lists, on every engine.

Every expected number below was counted by hand from the fixture above it.
"""

from __future__ import annotations

import pytest
from conftest import ev

from siyu.analytics.queries import REGISTRY, parse_query, run_query
from siyu.analytics.queries.base import QueryError

pytestmark = pytest.mark.django_db

VIEW, ADD, ORDER = "Product Viewed", "Product Added", "Order Completed"
SHOP = {"kind": "funnel", "date_from": "2026-03-01", "date_to": "2026-03-31",
        "steps": [{"event": VIEW}, {"event": ADD, "label": "cart"}, {"event": ORDER}], "window": 7}


def shop_events():
    return [
        # p1 converts: +300 s to cart, +3600 s to order
        ev(1, VIEW, "2026-03-01 10:00"), ev(1, ADD, "2026-03-01 10:05"), ev(1, ORDER, "2026-03-01 11:05"),
        # p2 adds a day later, never orders
        ev(2, VIEW, "2026-03-02 10:00"), ev(2, ADD, "2026-03-03 10:00"),
        # p3 orders before adding: the order does not follow the cart step
        ev(3, VIEW, "2026-03-02 10:00"), ev(3, ORDER, "2026-03-02 11:00"), ev(3, ADD, "2026-03-02 12:00"),
        ev(4, VIEW, "2026-03-05 10:00"),
        ev(5, ADD, "2026-03-05 10:00"),  # never entered
        ev(6, VIEW, "2026-03-10 10:00"), ev(6, ADD, "2026-03-18 10:00"),  # 8 days: outside the window
        # p7's view before the range is ignored; the entry is 03-20
        ev(7, VIEW, "2026-02-27 10:00"), ev(7, VIEW, "2026-03-20 10:00"), ev(7, ADD, "2026-03-20 10:10"),
        ev(7, ORDER, "2026-03-21 10:10"),
        # p8 enters on 03-01 (first entry only): the cart on 03-20 belongs to a later visit
        ev(8, VIEW, "2026-03-01 09:00"), ev(8, VIEW, "2026-03-20 09:00"), ev(8, ADD, "2026-03-20 09:01"),
    ]


def step_rows(series):
    return [(s.step, s.label, s.count, s.conversion_from_first, s.conversion_from_previous, s.dropped)
            for s in series.steps]


def test_ordered_funnel_counts_and_conversion(load):
    engine = load(shop_events())
    result = run_query(SHOP, engine)
    # Then 7 entered (p1-p4, p6-p8), 4 reached the cart (p1, p2, p3, p7), 2 ordered (p1, p7)
    assert [s.breakdown for s in result.series] == [""]
    assert step_rows(result.series[0]) == [
        (1, VIEW, 7, 1.0, 1.0, 0), (2, "cart", 4, 0.5714, 0.5714, 3), (3, ORDER, 2, 0.2857, 0.5, 2)]


def test_time_to_convert_from_the_previous_step(load):
    engine = load(shop_events())
    steps = run_query(SHOP, engine).series[0].steps
    # Then cart: 300, 600, 7200, 86400 s -> median 3900, mean 23625; order: 3600, 86400 -> 45000
    assert [(s.median_seconds, s.average_seconds) for s in steps] == [
        (None, None), (3900.0, 23625.0), (45000.0, 45000.0)]


def test_people_who_dropped_at_a_step(load):
    engine = load(shop_events())
    # p4, p6 and p8 viewed but never reached the cart; p2 and p3 reached the cart but did not order
    result = run_query({**SHOP, "dropped_at_step": 2, "people_limit": 2}, engine)
    assert (result.people, result.people_total) == ([4, 6], 3)
    result = run_query({**SHOP, "dropped_at_step": 3}, engine)
    assert (result.people, result.people_total) == ([2, 3], 2)


def abc_events():
    return [
        ev(1, "A", "2026-03-02 10:00"), ev(1, "B", "2026-03-02 10:01"), ev(1, "C", "2026-03-02 10:02"),
        ev(2, "A", "2026-03-02 10:00"), ev(2, "C", "2026-03-02 10:01"), ev(2, "B", "2026-03-02 10:02"),
        ev(2, "C", "2026-03-02 10:03"),
        ev(3, "A", "2026-03-02 10:00"), ev(3, "B", "2026-03-02 10:01"), ev(3, "A", "2026-03-02 10:02"),
        ev(3, "C", "2026-03-02 10:03"),
        ev(4, "A", "2026-03-02 10:00"), ev(4, "Page Viewed", "2026-03-02 10:01"), ev(4, "B", "2026-03-02 10:02"),
        ev(4, "C", "2026-03-02 10:03"),
        ev(5, "A", "2026-03-02 10:00"), ev(5, "C", "2026-03-02 10:30"),
        ev(6, "B", "2026-03-02 09:00"), ev(6, "A", "2026-03-02 10:00"), ev(6, "C", "2026-03-02 10:10"),
        ev(6, "B", "2026-03-02 10:20"),
    ]


ABC = {"kind": "funnel", "date_from": "2026-03-01", "date_to": "2026-03-31", "window": 1, "window_unit": "day",
       "steps": [{"event": "A"}, {"event": "B"}, {"event": "C"}]}


@pytest.mark.parametrize("order, counts", [
    # ordered: p6 reaches B at 10:20 but no C after it; p5 has no B
    ("ordered", [6, 5, 4]),
    # strict: p2 (C before B), p5, p6 (C right after A) stop at 1; p3 (A between B and C) stops at 2;
    # p4's Page Viewed is not a funnel event
    ("strict", [6, 3, 2]),
    # any: after the entry, B and C in any order: everyone but p5
    ("any", [6, 5, 5]),
])
def test_orders(load, order, counts):
    engine = load(abc_events())
    result = run_query({**ABC, "order": order}, engine)
    assert [s.count for s in result.series[0].steps] == counts


def test_any_order_times_the_step_that_completes_the_set(load):
    engine = load(abc_events())
    steps = run_query({**ABC, "order": "any"}, engine).series[0].steps
    # Then A->{A,B} done: 60, 120, 60, 120, 1200 s (median 120, mean 312);
    # {A,B}->{A,B,C} done: 60, 0 (p2's C came first), 120, 60, 0 (median 60, mean 48)
    assert [(s.median_seconds, s.average_seconds) for s in steps[1:]] == [(120.0, 312.0), (60.0, 48.0)]


def test_window_is_inclusive_and_may_pass_date_to(load):
    # Given a view at 23:30 on the last day and a cart exactly one hour later (the next day),
    # and a cart 61 minutes after a view
    engine = load([ev(1, VIEW, "2026-03-01 23:30"), ev(1, ADD, "2026-03-02 00:30"),
                   ev(2, VIEW, "2026-03-01 10:00"), ev(2, ADD, "2026-03-01 11:01")])
    result = run_query({"kind": "funnel", "date_from": "2026-03-01", "date_to": "2026-03-01",
                        "steps": [{"event": VIEW}, {"event": ADD}], "window": 1, "window_unit": "hour",
                        "dropped_at_step": 2}, engine)
    assert [s.count for s in result.series[0].steps] == [2, 1]
    assert result.people == [2]


def test_breakdown_by_the_entry_events_channel_and_step_filters(load):
    engine = load([
        ev(1, VIEW, "2026-03-01 10:00", channel="mp"), ev(1, ORDER, "2026-03-01 11:00", revenue="120.00"),
        ev(2, VIEW, "2026-03-01 10:00", channel="mp"), ev(2, ORDER, "2026-03-01 11:00", revenue="20.00"),
        ev(3, VIEW, "2026-03-01 10:00", channel="pos"), ev(3, ORDER, "2026-03-01 11:00", revenue="300.00"),
        ev(4, VIEW, "2026-03-01 10:00"),
    ])
    body = {"kind": "funnel", "date_from": "2026-03-01", "date_to": "2026-03-31",
            "steps": [{"event": VIEW},
                      {"event": ORDER, "filters": [{"field": "revenue", "op": "gte", "value": 100}]}],
            "breakdown": {"on": "event", "field": "channel", "limit": 1}}
    result = run_query(body, engine)
    # Then mp (2 entries, p1 ordered 100+) stays; pos and (none) fold into "(other)" (p3 ordered 100+)
    assert [(s.breakdown, [st.count for st in s.steps]) for s in result.series] == [
        ("mp", [2, 1]), ("(other)", [2, 1])]


@pytest.mark.parametrize("change, message", [
    ({"steps": [{"event": VIEW}]}, "steps"),
    ({"steps": [{"event": VIEW, "filters": [{"on": "person", "field": "gender", "value": "f"}]}, {"event": ADD}]},
     "put person filters in the query's filters"),
    ({"dropped_at_step": 4}, "dropped_at_step must be a step number between 2 and 3"),
    ({"window": 367}, "at most 366 days"),
    ({"order": "loose"}, "order"),
])
def test_bad_queries_name_the_field(change, message):
    with pytest.raises(QueryError, match=message):
        parse_query({**SHOP, **change})


def test_example_body_is_valid():
    assert parse_query(REGISTRY["funnel"].example).kind == "funnel"

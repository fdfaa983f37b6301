"""Segment rules compiled to one query, on every engine (DuckDB, and Spark with the spark mark).

The shop, as of 2026-03-31 12:00 on the brand clock (expected members worked out by hand):

    person  channel      events (brand clock)                               tags   persons copy
    1       douyin       order 03-01 10:00 300, order 03-20 400, page 03-30  vip    2 orders, 700; p_alive .9
    2       wechat_oa    order 2025-10-01 100, page 01-10 (channel wechat_oa)        1 order, 100; p_alive .2,
                                                                                     predicted spend 1500
    3       douyin       page 03-25                                          staff
    4       xiaohongshu  order 03-10 200, order 03-11 250                           2 orders, 450
    5       offline      (no events)
    6       douyin       page 2025-11-01, page 03-15
    7       wechat_oa    page 2025-12-01

Lifecycle (window 03-02..03-31; silent after 30 days, churned after 90): 1 active (gap 03-01 ->
03-20 is 19 days), 2 silent (80 days idle), 3 and 4 new, 6 reactivated (2025-11-01 -> 03-15 is 134
days), 7 churned (120 days idle), 5 none.
RFM (八大类, all orders to 03-31): recency 1: 11, 2: 181, 4: 20 days; means R 70.7, F 1.67, M 416.7:
1 and 4 are important_value (R, F, M all better than the mean), 2 general_winback.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from conftest import ev, order, person

from siyu.segments.compiler import Compiler, Context, Thresholds
from siyu.segments.queries import persona
from siyu.segments.rules import RuleError, parse_rule

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 31, 12, 0)


def _shop():
    events = [
        order(1, "2026-03-01 10:00", "300"), order(1, "2026-03-20 10:00", "400"), ev(1, "Page Viewed", "2026-03-30 09:00"),
        order(2, "2025-10-01 10:00", "100"), ev(2, "Page Viewed", "2026-01-10 09:00", channel="wechat_oa"),
        ev(3, "Page Viewed", "2026-03-25 09:00"),
        order(4, "2026-03-10 10:00", "200"), order(4, "2026-03-11 10:00", "250"),
        ev(6, "Page Viewed", "2025-11-01 09:00"), ev(6, "Page Viewed", "2026-03-15 09:00"),
        ev(7, "Page Viewed", "2025-12-01 09:00"),
    ]
    persons = [
        person(1, acquisition_channel="douyin", gender="female", order_count=2, total_spend="700",
               last_order_at="2026-03-20 10:00", p_alive=0.9, clv="800", traits={"vip_level": "gold", "points": "120"}),
        person(2, acquisition_channel="wechat_oa", gender="male", order_count=1, total_spend="100",
               last_order_at="2025-10-01 10:00", p_alive=0.2, predicted_spend="1500", clv="900"),
        person(3, acquisition_channel="douyin", gender="female"),
        person(4, acquisition_channel="xiaohongshu", order_count=2, total_spend="450",
               last_order_at="2026-03-11 10:00", traits={"points": "80"}),
        person(5, acquisition_channel="offline"),
        person(6, acquisition_channel="douyin"),
        person(7, acquisition_channel="wechat_oa"),
    ]
    return events, persons, [(1, "vip"), (3, "staff")]


@pytest.fixture
def shop(load):
    events, persons, tags = _shop()
    return load(events, persons, tags=tags)


def members(engine, body, *, thresholds=None, segments=None) -> list[int]:
    compiler = Compiler(engine, Context(now=NOW, thresholds=thresholds or Thresholds(),
                                        segment_rule=(segments or {}).get))
    frame = engine.execute(compiler.members(parse_rule(body)))
    return sorted(int(x) for x in frame.person_id)


ORDERS_90 = {"type": "event", "event": "Order Completed", "within_days": 90, "count": {"op": "gte", "value": 2}}


@pytest.mark.parametrize(("body", "expected"), [
    # did Order Completed at least 2 times in the last 90 days with revenue sum > 500
    ({**ORDERS_90, "aggregate": {"fn": "sum", "field": "revenue", "op": "gt", "value": 500}}, [1]),
    # no order in 30 days: includes customers who never ordered or never did anything
    ({"type": "event", "event": "Order Completed", "within_days": 30, "count": {"op": "eq", "value": 0}},
     [2, 3, 5, 6, 7]),
    # fewer than 2 orders in 90 days (zero counts)
    ({"type": "event", "event": "Order Completed", "within_days": 90, "count": {"op": "lt", "value": 2}},
     [2, 3, 5, 6, 7]),
    # did anything at all since 03-01 (no count: at least once)
    ({"type": "event", "date_from": "2026-03-01"}, [1, 3, 4, 6]),
    ({"type": "event", "event": "Page Viewed", "filters": [{"field": "channel", "value": "wechat_oa"}]}, [2]),
    ({"type": "event", "event": "Order Completed", "aggregate": {"fn": "avg", "op": "gte", "value": 225}}, [1, 4]),
    ({"type": "attribute", "field": "acquisition_channel", "op": "in", "value": ["douyin", "xiaohongshu"]},
     [1, 3, 4, 6]),
    ({"type": "tag", "tag": "vip"}, [1]),
    ({"type": "tag", "tag": "staff", "op": "has_not"}, [1, 2, 4, 5, 6, 7]),
    ({"type": "trait", "key": "points", "op": "gt", "value": 100}, [1]),
    ({"type": "trait", "key": "vip_level", "value": "gold"}, [1]),
    ({"type": "attribute", "field": "average_order_value", "op": "gte", "value": 300}, [1]),
    ({"type": "attribute", "field": "days_since_last_order", "op": "gt", "value": 100}, [2]),
    ({"type": "attribute", "field": "gender", "op": "neq", "value": "female"}, [2, 4, 5, 6, 7]),
    # the customers worth winning back
    ({"and": [{"type": "attribute", "field": "p_alive", "op": "lt", "value": 0.3},
              {"type": "attribute", "field": "predicted_spend", "op": "gt", "value": 1000}]}, [2]),
    ({"type": "attribute", "field": "churn_risk", "op": "gte", "value": 0.5}, [2]),
    # nested: (douyin or xiaohongshu) and not staff and (p_alive < .3 or 2+ orders in 90 days)
    ({"and": [{"type": "attribute", "field": "acquisition_channel", "op": "in", "value": ["douyin", "xiaohongshu"]},
              {"not": {"type": "tag", "tag": "staff"}},
              {"or": [{"type": "attribute", "field": "p_alive", "op": "lt", "value": 0.3}, ORDERS_90]}]}, [1, 4]),
    ({"not": {"type": "attribute", "field": "p_alive", "op": "gte", "value": 0.5}}, [2, 3, 4, 5, 6, 7]),
    ({"type": "attribute", "field": "rfm_class", "value": "important_value"}, [1, 4]),
    ({"type": "attribute", "field": "rfm_class", "value": "general_winback"}, [2]),
])
def test_rule_members(shop, body, expected):
    assert members(shop, body) == expected


def test_a_compiler_shared_by_many_rules_computes_its_per_person_relations_once(shop, monkeypatch):
    """``refresh_all`` compiles every segment with one materializing compiler: the RFM classes and
    the lifecycle stages are computed once, into the engine's session, and give the same members."""
    import siyu.segments.compiler as compiler_module

    built = []
    real_rfm_table = compiler_module.rfm_table
    monkeypatch.setattr(compiler_module, "rfm_table", lambda *a: built.append("rfm") or real_rfm_table(*a))
    shared = Compiler(shop, Context(now=NOW), materialize=True)
    rules = {("rfm_class", "important_value"): [1, 4], ("rfm_class", "general_winback"): [2],
             ("lifecycle_stage", "new"): [3, 4], ("lifecycle_stage", "churned"): [7], ("value_tier", "potential"): [1, 3, 4, 6]}
    try:
        for (field, value), expected in rules.items():
            frame = shop.execute(shared.members(parse_rule({"type": "attribute", "field": field, "value": value})))
            assert sorted(int(x) for x in frame.person_id) == expected
        assert built == ["rfm"]
        # the query reads the relation as computed, not the orders it was computed from
        rule = parse_rule({"type": "attribute", "field": "rfm_class", "value": "general_winback"})
        assert "Order Completed" not in shop.compile(shared.members(rule))
        assert "Order Completed" in shop.compile(Compiler(shop, Context(now=NOW)).members(rule))
    finally:
        shared.release()
    # released: a later rule computes the relation again (the third time: the second was the
    # compiler that does not materialize)
    try:
        assert sorted(int(x) for x in shop.execute(shared.members(parse_rule(
            {"type": "attribute", "field": "rfm_class", "value": "general_winback"}))).person_id) == [2]
        assert built == ["rfm", "rfm", "rfm"]
    finally:
        shared.release()


@pytest.mark.parametrize(("stage", "expected"), [
    ("active", [1]), ("silent", [2]), ("new", [3, 4]), ("reactivated", [6]), ("churned", [7])])
def test_lifecycle_stage(shop, stage, expected):
    assert members(shop, {"type": "attribute", "field": "lifecycle_stage", "value": stage}) == expected


def test_value_tiers_follow_their_thresholds(shop):
    def tier(name, **changes):
        return members(shop, {"type": "attribute", "field": "value_tier", "value": name},
                       thresholds=Thresholds(**changes))

    # by default nobody spent 1 000: the recently active are potential, the rest low-activity
    assert tier("high_value") == []
    assert tier("potential") == [1, 3, 4, 6]
    assert tier("low_activity") == [2, 5, 7]
    # lowering the bar to 600 makes customer 1 (2 orders, 700) high-value
    assert tier("high_value", high_value_spend=Decimal("600")) == [1]
    assert tier("potential", high_value_spend=Decimal("600")) == [3, 4, 6]
    # a 10-day activity window leaves only customers active since 03-21 potential
    assert tier("potential", active_days=10) == [1, 3]


def test_segment_condition_uses_the_other_segments_rule(shop):
    douyin = {"type": "attribute", "field": "acquisition_channel", "value": "douyin"}
    segments = {7: douyin, 8: {"type": "segment", "segment": 7}}
    assert members(shop, {"type": "segment", "segment": 8}, segments=segments) == [1, 3, 6]
    assert members(shop, {"type": "segment", "segment": 7, "op": "not_in"}, segments=segments) == [2, 4, 5, 7]
    with pytest.raises(RuleError, match="no segment 9"):
        members(shop, {"type": "segment", "segment": 9}, segments=segments)
    with pytest.raises(RuleError, match="refers to itself"):
        members(shop, {"type": "segment", "segment": 10}, segments={10: {"type": "segment", "segment": 10}})


def test_persona_figures_and_make_up(shop, monkeypatch):
    from siyu.segments import queries

    monkeypatch.setattr(queries, "brand_now", lambda: NOW)
    p = persona({"type": "attribute", "field": "acquisition_channel", "op": "in", "value": ["douyin", "xiaohongshu"]},
                engine=shop)
    f = p.figures
    assert (f.customers, f.buyers, f.orders, f.total_spend) == (4, 2, 4, 1150.0)
    assert f.average_order_value == 287.5
    assert f.repurchase_rate == 1.0
    assert f.average_spend == 287.5
    assert f.average_p_alive == 0.9 and f.average_clv == 800.0  # only customer 1 has a prediction
    assert [(s.value, s.customers) for s in p.dimensions["gender"]] == [("(none)", 2), ("female", 2)]
    assert [(s.value, s.customers) for s in p.dimensions["lifecycle_stage"]] == [
        ("new", 2), ("active", 1), ("reactivated", 1)]
    assert {s.value: s.customers for s in p.dimensions["value_tier"]} == {"potential": 4}
    assert {s.value: s.customers for s in p.dimensions["rfm_class"]} == {"important_value": 2, "(none)": 2}


def test_count_matches_members(shop):
    compiler = Compiler(shop, Context(now=NOW))
    frame = shop.execute(compiler.count(parse_rule({"type": "tag", "tag": "staff", "op": "has_not"})))
    assert int(frame["count"].iloc[0]) == 6

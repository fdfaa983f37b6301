"""Compile a rule into one Ibis query over the engine's ``persons``, ``events`` and ``tags``.

Every node becomes a boolean expression over the persons relation; nothing is
evaluated row by row in Python. Conditions on behaviour become ``person_id IN
(per-person aggregate that passes)`` — or ``NOT IN (... that fails)`` when a
customer without any such event passes (``count = 0``, ``count < 3``), so
"did not order in 30 days" includes customers who never ordered. The engine
runs the whole tree as one statement with hash semi-joins.

Attributes computed at run time (``rfm_class``, ``lifecycle_stage``,
``value_tier``) join a per-person relation built only when the rule uses them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import reduce
from typing import Any

import ibis
import ibis.expr.types as ir

from siyu.analytics.engines import Engine
from siyu.analytics.queries.base import apply_filters, condition, event_value, person_value
from siyu.analytics.queries.repurchase import ORDER_EVENT
from siyu.analytics.queries.rfm import RfmQuery, rfm_table
from siyu.segments.rules import (
    ATTRIBUTES,
    NUMBER,
    AndNode,
    AttributeCondition,
    EventCondition,
    NotNode,
    OrNode,
    Rule,
    RuleError,
    SegmentCondition,
    TagCondition,
    TraitCondition,
    parse_rule,
    walk,
)

ACTIVITY_ATTRIBUTES = {"lifecycle_stage", "value_tier"}
DAYS_SINCE = {"days_since_first_seen": "first_seen_date", "days_since_last_seen": "last_seen_date",
              "days_since_first_order": "first_order_date", "days_since_last_order": "last_order_date"}
MAX_SEGMENT_NESTING = 5


@dataclass(frozen=True)
class Thresholds:
    """Value tiers and lifecycle stages (``TierSettings``; defaults as shipped)."""

    high_value_spend: Decimal = Decimal("1000")
    high_value_orders: int = 2
    lookback_days: int = 365
    active_days: int = 30
    silent_after: int = 30
    churned_after: int = 90


@dataclass(frozen=True)
class Context:
    """What a rule is evaluated against: the brand-clock time "now", the thresholds, and how
    to read another segment's rule (for ``segment`` conditions)."""

    now: datetime  # naive, on the brand's clock
    thresholds: Thresholds = Thresholds()
    segment_rule: Callable[[int], dict[str, Any] | None] | None = None

    @property
    def today(self) -> date:
        return self.now.date()


class Compiler:
    def __init__(self, engine: Engine, context: Context, *, materialize: bool = False) -> None:
        """``materialize``: compute each per-person relation (RFM, activity) once, into a table of
        the engine's session, for a compiler that compiles many rules (``segments.actions.
        refresh_all``): each otherwise recomputes it over all events. Call ``release`` after."""
        self.engine = engine
        self.context = context
        self._materialize = materialize
        self._rfm: ir.Table | None = None
        self._activity: ir.Table | None = None

    def _shared(self, relation: ir.Table) -> ir.Table:
        return relation.cache() if self._materialize else relation

    def release(self) -> None:
        """Drop the materialized relations (nothing to do for a compiler that made none)."""
        for relation in (self._rfm, self._activity):
            if self._materialize and relation is not None:
                relation.release()
        self._rfm = self._activity = None

    # -- entry points ---------------------------------------------------------------------------
    def members(self, rule: Rule) -> ir.Table:
        """``person_id`` of every customer the rule matches (one row each)."""
        p = self.persons(rule)
        return p.filter(self.predicate(rule.root, p, ())).select("person_id")

    def count(self, rule: Rule) -> ir.Table:
        m = self.members(rule)
        return m.aggregate(count=m.count())

    def persons(self, rule: Rule | None = None, *, attributes: set[str] | None = None) -> ir.Table:
        """``persons`` with the computed attributes the rule (or ``attributes``) needs joined on."""
        needed = set(attributes or ())
        if rule is not None:
            needed |= {c.field for c in walk(rule.root) if isinstance(c, AttributeCondition)}
        p = self.engine.persons()
        if "rfm_class" in needed:
            r = self.rfm().select("person_id", "rfm_class")
            p = p.left_join(r, p.person_id == r.person_id).drop("person_id_right")
        if needed & ACTIVITY_ATTRIBUTES:
            a = self.activity()
            p = p.left_join(a, p.person_id == a.person_id).drop("person_id_right")
        return p

    # -- nodes ----------------------------------------------------------------------------------
    def predicate(self, node: Any, p: ir.Table, seen: tuple[int, ...]) -> ir.BooleanValue:
        if isinstance(node, AndNode):
            return reduce(lambda a, b: a & b, (self.predicate(n, p, seen) for n in node.all_of))
        if isinstance(node, OrNode):
            return reduce(lambda a, b: a | b, (self.predicate(n, p, seen) for n in node.any_of))
        if isinstance(node, NotNode):
            return ~self.predicate(node.negated, p, seen).fill_null(False)
        if isinstance(node, AttributeCondition):
            numeric = ATTRIBUTES[node.field] == NUMBER
            return condition(self.attribute(p, node.field), node, numeric).fill_null(False)
        if isinstance(node, TraitCondition):
            return condition(self.engine.json_string(p.traits, node.key), node, False).fill_null(False)
        if isinstance(node, TagCondition):
            t = self.engine.tags()
            held = p.person_id.isin(t.filter(t.tag == node.tag).person_id)
            return held if node.op == "has" else ~held
        if isinstance(node, EventCondition):
            return self.event(node, p)
        if isinstance(node, SegmentCondition):
            return self.segment(node, p, seen)
        raise TypeError(f"not a rule node: {node!r}")

    def attribute(self, p: ir.Table, name: str) -> ir.Value:
        if name in DAYS_SINCE:
            return ibis.date(self.context.today).delta(p[DAYS_SINCE[name]], unit="day")
        if name == "average_order_value":
            return ibis.ifelse(p.order_count > 0, p.total_spend.cast("float64") / p.order_count, None)
        if name == "churn_risk":
            return 1 - p.p_alive
        if name == "value_tier":  # customers without any event have not been active
            return p.value_tier.fill_null("low_activity")
        if name in ("age_band", "birth_year"):
            return person_value(p, name)
        return p[name]

    def event(self, node: EventCondition, p: ir.Table) -> ir.BooleanValue:
        e = self.engine.events()
        e = e.filter(e.person_id.notnull())
        if node.event is not None:
            e = e.filter(e.event == node.event)
        if node.within_days is not None:
            e = e.filter(e.local_ts >= self.context.now - timedelta(days=node.within_days))
        if node.date_from is not None:
            e = e.filter(e.local_ts >= datetime.combine(node.date_from, datetime.min.time()))
        if node.date_to is not None:
            e = e.filter(e.local_ts < datetime.combine(node.date_to + timedelta(days=1), datetime.min.time()))
        e = apply_filters(self.engine, e, node.filters)
        metrics: dict[str, ir.Value] = {"n": e.count()}
        agg = node.aggregate
        if agg is not None:
            value = event_value(self.engine, e, agg.field)
            value = value.try_cast("float64") if agg.field.startswith("properties.") else value.cast("float64")
            metrics["v"] = getattr(value, {"avg": "mean"}.get(agg.fn, agg.fn))()
        per_person = e.group_by("person_id").aggregate(**metrics)
        passes = self._passes(node, per_person.n, per_person.v if agg is not None else None)
        # a customer without a matching event has n = 0, a sum of 0 and no avg/min/max
        if self._passes_without_events(node):
            return ~p.person_id.isin(per_person.filter(~passes).person_id)
        return p.person_id.isin(per_person.filter(passes).person_id)

    @staticmethod
    def _passes(node: EventCondition, n: ir.Value, v: ir.Value | None) -> ir.BooleanValue:
        tests = []
        count = node.count
        if count is None and node.aggregate is None:
            tests.append(n >= 1)
        if count is not None:
            tests.append(COMPARE[count.op](n, count.value))
        if node.aggregate is not None:
            value = v.fill_null(0) if node.aggregate.fn == "sum" else v
            tests.append(COMPARE[node.aggregate.op](value, node.aggregate.value).fill_null(False))
        return reduce(lambda a, b: a & b, tests)

    @staticmethod
    def _passes_without_events(node: EventCondition) -> bool:
        if node.count is None and node.aggregate is None:
            return False
        ok = node.count is None or COMPARE[node.count.op](0, node.count.value)
        agg = node.aggregate
        if agg is not None:
            ok = ok and agg.fn == "sum" and COMPARE[agg.op](0, agg.value)
        return ok

    def segment(self, node: SegmentCondition, p: ir.Table, seen: tuple[int, ...]) -> ir.BooleanValue:
        if node.segment in seen:
            raise RuleError([{"field": "rule", "reason": f"segment {node.segment} refers to itself"}])
        if len(seen) >= MAX_SEGMENT_NESTING:
            raise RuleError([{"field": "rule", "reason": f"segments nest more than {MAX_SEGMENT_NESTING} deep"}])
        body = self.context.segment_rule(node.segment) if self.context.segment_rule else None
        if body is None:
            raise RuleError([{"field": "rule", "reason": f"no segment {node.segment}"}])
        inner = parse_rule(body)
        q = self.persons(inner)
        members = q.filter(self.predicate(inner.root, q, (*seen, node.segment))).person_id
        held = p.person_id.isin(members)
        return held if node.op == "in" else ~held

    # -- computed attributes ---------------------------------------------------------------------
    def rfm(self) -> ir.Table:
        """The 八大类 RFM class of every customer with an order up to today."""
        if self._rfm is None:
            query = RfmQuery(kind="rfm", date_to=self.context.today, scheme="eight", lookback="all")
            self._rfm = self._shared(rfm_table(self.engine, query))
        return self._rfm

    def activity(self) -> ir.Table:
        """Per customer with any event: ``lifecycle_stage`` and ``value_tier`` as of today.

        Lifecycle (window: the last ``silent_after`` days, today included; d = days since the
        last activity): active in the window -> ``new`` (first-ever activity in it), else
        ``reactivated`` (more than ``churned_after`` days between the activity before the
        window and the first in it), else ``active``; not active -> ``silent`` (d up to
        ``churned_after``) or ``churned``. Value tier: ``high_value`` (at least
        ``high_value_orders`` orders and ``high_value_spend`` spent in the last
        ``lookback_days``), else ``potential`` (active in the last ``active_days``), else
        ``low_activity``. Customers without any event are ``low_activity`` with no stage.
        """
        if self._activity is not None:
            return self._activity
        th, today = self.context.thresholds, self.context.today
        e = self.engine.events()
        e = e.filter(e.person_id.notnull() & (e.local_ts < self.context.now + timedelta(days=1)))
        day = e.local_ts.date()
        window = ibis.date(today - timedelta(days=th.silent_after - 1))
        is_recent_order = (e.event == ORDER_EVENT) & (e.local_ts >= self.context.now - timedelta(days=th.lookback_days))
        a = e.group_by("person_id").aggregate(
            first_day=day.min(), last_day=day.max(), first_in_window=day.min(where=day >= window),
            before_window=day.max(where=day < window), orders=e.count(where=is_recent_order),
            spend=e.revenue.sum(where=is_recent_order))
        idle = ibis.date(today).delta(a.last_day, unit="day")
        gap = a.first_in_window.delta(a.before_window, unit="day")
        stage = ibis.cases(
            (a.first_day >= window, "new"),
            ((idle < th.silent_after) & gap.notnull() & (gap > th.churned_after), "reactivated"),
            (idle < th.silent_after, "active"),
            (idle <= th.churned_after, "silent"),
            else_="churned")
        high = (a.orders >= th.high_value_orders) & (a.spend.fill_null(0) >= th.high_value_spend)
        tier = ibis.cases((high, "high_value"), (idle < th.active_days, "potential"), else_="low_activity")
        self._activity = self._shared(a.select("person_id", lifecycle_stage=stage, value_tier=tier))
        return self._activity


# One table for Ibis expressions and plain numbers alike.
COMPARE = {"eq": operator.eq, "neq": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
           "lte": operator.le}

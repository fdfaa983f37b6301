"""Overview: the dashboard's headline figures, each with a daily series and the previous period.

Twelve metrics (``METRICS``) share one shape: a daily series over the range, a
total, the same total for the previous period of equal length and the change
in %. "Active" means any event that passes the query's filters; an order is an
``Order Completed`` event. Exact definitions are in ``docs/analytics.md``.

The engine computes five grouped expressions, each over both periods at once:
``daily`` (actives, orders, GMV, payers per day), ``period_active`` (distinct
actives per period), ``buyers`` (the day of each customer's first and second
order in a period), ``newcomers`` (each customer's first-ever day and whether
they were active the day after) and ``reach`` (+1/−1 where a customer enters or
leaves the 7- and 30-day windows, so WAU and MAU are running sums). With a
breakdown the rows are duplicated once under the whole ("" internally) so the
whole's distinct counts are exact; pandas only divides and adds up these small
frames.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import BaseModel, Field, field_validator

from siyu.analytics.queries import register
from siyu.analytics.queries.base import QueryBase, ResultBase, Runner
from siyu.analytics.queries.trends import (
    CURRENT,
    OTHER,
    PREVIOUS,
    change_pct,
    fold_top_breakdowns,
    previous_range,
)

ORDER_EVENT = "Order Completed"
EPOCH = date(1970, 1, 1)
WHOLE = ""  # the breakdown value of rows that stand for everyone
Unit = Literal["count", "money", "ratio"]
MetricKey = Literal["new_customers", "dau", "wau", "mau", "stickiness", "orders", "gmv", "aov",
                    "paying_customers", "paid_conversion", "repurchase_rate", "d1_retention"]


@dataclass(frozen=True)
class Metric:
    key: str
    label_en: str
    label_zh: str
    unit: Unit
    frames: tuple[str, ...]  # the expressions it reads


METRICS: tuple[Metric, ...] = (
    Metric("new_customers", "New customers", "新客数", "count", ("newcomers",)),
    Metric("dau", "Daily active customers (DAU)", "日活跃客户数 (DAU)", "count", ("daily",)),
    Metric("wau", "Weekly active customers (WAU)", "周活跃客户数 (WAU)", "count", ("reach",)),
    Metric("mau", "Monthly active customers (MAU)", "月活跃客户数 (MAU)", "count", ("reach",)),
    Metric("stickiness", "Stickiness (DAU/MAU)", "用户黏性 (DAU/MAU)", "ratio", ("daily", "reach")),
    Metric("orders", "Orders", "订单数", "count", ("daily",)),
    Metric("gmv", "GMV", "成交额 (GMV)", "money", ("daily",)),
    Metric("aov", "Average order value", "客单价", "money", ("daily",)),
    Metric("paying_customers", "Paying customers", "付费客户数", "count", ("daily", "buyers")),
    Metric("paid_conversion", "Paid conversion", "付费转化率", "ratio", ("daily", "period_active", "buyers")),
    Metric("repurchase_rate", "Repurchase rate", "复购率", "ratio", ("buyers",)),
    Metric("d1_retention", "Next-day retention", "次日留存率", "ratio", ("newcomers",)),
)
BY_KEY = {m.key: m for m in METRICS}
DAILY_COLUMNS = ("active", "orders", "gmv", "payers", "new", "retained", "wau", "mau", "first_orders",
                 "second_orders")


class OverviewQuery(QueryBase):
    """Headline figures of the range against the previous period, optionally broken down."""

    kind: Literal["overview"] = "overview"
    metrics: list[MetricKey] | None = Field(None, description="the metrics to compute, in the answer's order "
                                            "(default: all twelve)")

    @field_validator("metrics")
    @classmethod
    def _check_metrics(cls, metrics: list[str] | None) -> list[str] | None:
        if metrics is not None and (not metrics or len(set(metrics)) != len(metrics)):
            raise ValueError("metrics must name at least one metric, each once")
        return metrics

    def chosen(self) -> list[Metric]:
        return [BY_KEY[k] for k in self.metrics] if self.metrics else list(METRICS)


class OverviewPoint(BaseModel):
    date: dt.date
    value: int | float | None = Field(description="the metric on that day (null where it is undefined, e.g. "
                                      "average order value on a day without orders)")
    breakdown: str | None = Field(description="null for everyone; else the breakdown value")


class OverviewBreakdownTotal(BaseModel):
    breakdown: str
    total: int | float | None
    previous: int | float | None
    change_pct: float | None


class OverviewMetric(BaseModel):
    key: str
    label_en: str
    label_zh: str
    unit: Unit = Field(description="count, money (the brand's currency, 2 decimals) or ratio (0..1, 4 decimals)")
    total: int | float | None = Field(description="the metric over the range")
    previous: int | float | None = Field(description="the metric over the previous period")
    change_pct: float | None = Field(description="(total - previous) / previous × 100; null when previous is 0")
    series: list[OverviewPoint] = Field(description="one point per day for everyone (breakdown null), then "
                                        "one per day and breakdown value")
    by_breakdown: list[OverviewBreakdownTotal] = Field(description="totals per breakdown value (empty "
                                                       "without a breakdown)")


class OverviewResult(ResultBase):
    previous_from: dt.date
    previous_to: dt.date
    metrics: list[OverviewMetric]


@dataclass(frozen=True)
class _Period:
    """One period's daily table and its distinct counts, for one breakdown value."""

    days: pd.DataFrame  # indexed by day number, DAILY_COLUMNS
    active: int  # distinct active customers over the period
    payers: int
    repeaters: int


@register
class OverviewRunner(Runner[OverviewQuery, OverviewResult]):
    kind = "overview"
    query_model = OverviewQuery
    result_model = OverviewResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "overview", "date_from": "2026-03-01", "date_to": "2026-03-31",
        "breakdown": {"on": "event", "field": "channel", "limit": 5},
    }

    # -- periods ----------------------------------------------------------------------
    def _periods(self) -> tuple[date, date, date, date]:
        start, end = self.query.date_range()
        return (*previous_range(start, end), start, end)

    def _n(self, day: date) -> int:
        return (day - EPOCH).days

    # -- build ------------------------------------------------------------------------
    def build(self) -> dict[str, ir.Expr]:
        needed = {name for metric in self.query.chosen() for name in metric.frames}
        builders: dict[str, Callable[[ir.Table], ir.Expr]] = {
            "daily": self._daily, "period_active": self._period_active, "buyers": self._buyers,
            "newcomers": self._newcomers, "reach": self._reach}
        days = self.share(self._person_days())
        return {name: build(days) for name, build in builders.items() if name in needed}

    def _history(self) -> ir.Table:
        """Filtered events up to date_to with ``n`` (day number), ``breakdown`` (folded) and ``period``."""
        prev_start, _prev_end, start, _end = self._periods()
        _lo, hi = self.query.bounds()
        t = self.events(in_range=False)
        t = t.filter(t.local_ts < hi)
        t = t.mutate(n=t.local_ts.date().epoch_days().cast("int64"))
        t = t.mutate(period=self._period_of(t.n))
        t = self.with_breakdown(t)
        if self.query.breakdown is not None:
            current = t.filter(t.period == CURRENT)
            t = fold_top_breakdowns(t, current, lambda c: c.person_id.nunique(), self.query.breakdown.limit)
        return t

    def _period_of(self, n: ir.IntegerValue) -> ir.StringValue:
        prev_start, _prev_end, start, _end = self._periods()
        return ibis.cases((n >= self._n(start), CURRENT), (n >= self._n(prev_start), PREVIOUS), else_=None)

    def _with_whole(self, t: ir.Table) -> ir.Table:
        """``t`` plus, with a breakdown, a copy of its rows standing for everyone (breakdown "")."""
        if self.query.breakdown is None:
            return t
        return ibis.union(t.mutate(breakdown=ibis.literal(WHOLE)), t, distinct=False)

    def _person_days(self) -> ir.Table:
        """One row per customer, breakdown value and active day from 29 days before the previous
        period to date_to (what WAU/MAU look back on): the day's orders and their revenue. Every
        expression but the first-ever day reads this instead of the events (run once per query)."""
        prev_start, *_rest = self._periods()
        t = self._history()
        t = self._with_whole(t.filter(t.n >= self._n(prev_start) - 29))
        is_order = t.event == ORDER_EVENT
        days = t.group_by(["person_id", "breakdown", "n"]).aggregate(
            orders=t.count(where=is_order), gmv=t.revenue.cast("float64").sum(where=is_order))
        return days.mutate(period=self._period_of(days.n))

    def _daily(self, days: ir.Table) -> ir.Expr:
        d = days.filter(days.period.notnull())
        return d.group_by(["n", "breakdown"]).aggregate(
            active=d.count(), orders=d.orders.sum(), gmv=d.gmv.sum(), payers=d.count(where=d.orders > 0))

    def _period_active(self, days: ir.Table) -> ir.Expr:
        d = days.filter(days.period.notnull())
        return d.group_by(["period", "breakdown"]).aggregate(active=d.person_id.nunique())

    def _buyers(self, days: ir.Table) -> ir.Expr:
        """Per period and day: customers placing their first (nth 0) and their second (nth 1)
        order of the period. The second is on the first order's day when that day had two."""
        d = days.filter(days.period.notnull() & (days.orders > 0))
        w = ibis.window(group_by=[d.period, d.breakdown, d.person_id], order_by=d.n)
        d = d.mutate(rank=ibis.row_number().over(w), before=d.orders.lag().over(w))
        zero, one = ibis.literal(0, "int64"), ibis.literal(1, "int64")
        columns = ("period", "breakdown", "n")
        firsts = d.filter(d["rank"] == 0).select(*columns, nth=zero)
        same_day = d.filter((d["rank"] == 0) & (d.orders >= 2)).select(*columns, nth=one)
        next_day = d.filter((d["rank"] == 1) & (d.before == 1)).select(*columns, nth=one)
        moves = ibis.union(firsts, same_day, next_day, distinct=False)
        return moves.group_by(["period", "breakdown", "n", "nth"]).aggregate(customers=moves.count())

    def _newcomers(self, days: ir.Table) -> ir.Expr:
        """Per first-ever day: new customers and those of them active the next day."""
        if self.query.breakdown is None:
            # New in the periods: active in them and never before. Their first day is their first
            # day in ``days``; the history before is only probed for their ids (no ranking, no
            # per-customer minimum over all history).
            prev_start, *_rest = self._periods()
            firsts = days.group_by("person_id").aggregate(n=days.n.min())
            firsts = firsts.filter(firsts.n >= self._n(prev_start))
            before = self.events(in_range=False)
            before = before.filter(before.local_ts < datetime.combine(prev_start, datetime.min.time()))
            firsts = firsts.anti_join(before.select("person_id"), "person_id")
            firsts = firsts.select("person_id", breakdown=ibis.literal(WHOLE), n=firsts.n)
        else:
            t = self._history()
            w = ibis.window(group_by=t.person_id, order_by=[t.local_ts, t.uuid])
            firsts = t.mutate(rank=ibis.row_number().over(w))
            firsts = firsts.filter((firsts["rank"] == 0) & firsts.period.notnull())
            firsts = self._with_whole(firsts.select("person_id", "breakdown", "n"))
        active = days.filter(days.period.notnull() & (days.breakdown == WHOLE))
        active = active.select(_person=active.person_id, _day=active.n)
        joined = firsts.left_join(active, (firsts.person_id == active._person) & (active._day == firsts.n + 1))
        return joined.group_by(["n", "breakdown"]).aggregate(new=joined.count(),
                                                             retained=joined._day.count())

    def _reach(self, days: ir.Table) -> ir.Expr:
        """+1 on each active day, −1 when the 7- (30-) day window after it ends or the next active day starts."""
        w = ibis.window(group_by=[days.person_id, days.breakdown], order_by=days.n)
        days = days.mutate(next_n=days.n.lead().over(w))
        one, zero, minus = (ibis.literal(v, "int64") for v in (1, 0, -1))
        parts = [days.select("breakdown", "n", wau=one, mau=one)]
        for width, wau, mau in ((7, minus, zero), (30, zero, minus)):
            leaves = ibis.least(days.n + width, days.next_n.fill_null(days.n + width))
            parts.append(days.select("breakdown", n=leaves, wau=wau, mau=mau))
        moves = ibis.union(*parts, distinct=False)
        return moves.group_by(["n", "breakdown"]).aggregate(wau=moves.wau.sum(), mau=moves.mau.sum())

    # -- calculate --------------------------------------------------------------------
    def calculate(self, frames: dict[str, pd.DataFrame]) -> OverviewResult:
        prev_start, prev_end, start, end = self._periods()
        values = self._breakdown_values(frames)
        periods = {value: self._split(frames, value) for value in [WHOLE, *values]}
        metrics = [self._metric(metric, periods, values, start) for metric in self.query.chosen()]
        return OverviewResult(**self.result_fields(), previous_from=prev_start, previous_to=prev_end,
                              metrics=metrics)

    def _breakdown_values(self, frames: dict[str, pd.DataFrame]) -> list[str]:
        if self.query.breakdown is None:
            return []
        found = set().union(*(set(f.breakdown) for f in frames.values())) - {WHOLE}
        return sorted(found, key=lambda v: (v == OTHER, v))

    def _split(self, frames: dict[str, pd.DataFrame], value: str) -> dict[str, _Period]:
        """The current and previous period of one breakdown value."""
        prev_start, prev_end, start, end = self._periods()
        days = self._days(frames, value, self._n(prev_start) - 29, self._n(end))
        totals = self._period_totals(frames, value)
        return {CURRENT: _Period(days.loc[self._n(start):self._n(end)], *totals[CURRENT]),
                PREVIOUS: _Period(days.loc[self._n(prev_start):self._n(prev_end)], *totals[PREVIOUS])}

    def _days(self, frames: dict[str, pd.DataFrame], value: str, first: int, last: int) -> pd.DataFrame:
        days = pd.DataFrame(0.0, index=pd.RangeIndex(first, last + 1), columns=list(DAILY_COLUMNS))
        for name, columns in (("daily", ("active", "orders", "gmv", "payers")), ("newcomers", ("new", "retained"))):
            if name in frames:
                rows = frames[name][frames[name].breakdown == value].set_index("n")
                for column in columns:
                    days.loc[rows.index, column] = rows[column].fillna(0).astype(float)
        if "reach" in frames:
            moves = frames["reach"][frames["reach"].breakdown == value].groupby("n")[["wau", "mau"]].sum()
            moves = moves.reindex(days.index, fill_value=0)  # moves after date_to fall off the index
            days[["wau", "mau"]] = moves.cumsum().astype(float)
        if "buyers" in frames:
            rows = frames["buyers"][frames["buyers"].breakdown == value]
            for nth, column in ((0, "first_orders"), (1, "second_orders")):
                chosen = rows[rows.nth == nth].groupby("n").customers.sum()
                days.loc[chosen.index, column] = chosen.astype(float)
        return days

    def _period_totals(self, frames: dict[str, pd.DataFrame], value: str) -> dict[str, tuple[int, int, int]]:
        out = {}
        for period in (CURRENT, PREVIOUS):
            active = payers = repeaters = 0
            if "period_active" in frames:
                f = frames["period_active"]
                active = int(f[(f.breakdown == value) & (f.period == period)].active.sum())
            if "buyers" in frames:
                f = frames["buyers"]
                f = f[(f.breakdown == value) & (f.period == period)]
                payers, repeaters = int(f[f.nth == 0].customers.sum()), int(f[f.nth == 1].customers.sum())
            out[period] = (active, payers, repeaters)
        return out

    def _metric(self, metric: Metric, periods: dict[str, dict[str, _Period]], values: list[str],
                start: date) -> OverviewMetric:
        compute = CALCULATIONS[metric.key]
        series: list[OverviewPoint] = []
        totals: dict[str, tuple[Any, Any]] = {}
        for value in [WHOLE, *values]:
            daily, total = compute(periods[value][CURRENT])
            _daily, previous = compute(periods[value][PREVIOUS])
            totals[value] = (_round(total, metric.unit), _round(previous, metric.unit))
            breakdown = None if value == WHOLE else value
            series += [OverviewPoint(date=EPOCH + timedelta(days=int(n)), value=_round(v, metric.unit),
                                     breakdown=breakdown) for n, v in daily.items()]
        total, previous = totals[WHOLE]
        by_breakdown = [OverviewBreakdownTotal(breakdown=v, total=totals[v][0], previous=totals[v][1],
                                               change_pct=change_pct(*totals[v])) for v in values]
        return OverviewMetric(key=metric.key, label_en=metric.label_en, label_zh=metric.label_zh, unit=metric.unit,
                              total=total, previous=previous, change_pct=change_pct(total, previous),
                              series=series, by_breakdown=by_breakdown)


# -- the metrics: (daily series, total) from one period ---------------------------------
Calculation = Callable[[_Period], tuple[pd.Series, Any]]


def _ratio(top: pd.Series, bottom: pd.Series) -> pd.Series:
    return (top / bottom.where(bottom != 0)).astype(object).where(bottom != 0, None)


def _share(top: float, bottom: float) -> float | None:
    return top / bottom if bottom else None


def _last(p: _Period, column: str) -> tuple[pd.Series, Any]:
    return p.days[column], (p.days[column].iloc[-1] if len(p.days) else None)


def _stickiness(p: _Period) -> tuple[pd.Series, Any]:
    daily = _ratio(p.days.active, p.days.mau)
    defined = daily.dropna()
    return daily, (float(defined.astype(float).mean()) if len(defined) else None)


def _repurchase(p: _Period) -> tuple[pd.Series, Any]:
    return (_ratio(p.days.second_orders.cumsum(), p.days.first_orders.cumsum()),
            _share(p.repeaters, p.payers))


def _d1(p: _Period) -> tuple[pd.Series, Any]:
    daily = _ratio(p.days.retained, p.days.new)
    if len(daily):
        daily.iloc[-1] = None  # the day after the period's last day is not in the period
    cohorts = p.days.iloc[:-1]
    return daily, _share(cohorts.retained.sum(), cohorts.new.sum())


CALCULATIONS: dict[str, Calculation] = {
    "new_customers": lambda p: (p.days.new, p.days.new.sum()),
    "dau": lambda p: (p.days.active, p.days.active.mean() if len(p.days) else None),
    "wau": lambda p: _last(p, "wau"),
    "mau": lambda p: _last(p, "mau"),
    "stickiness": _stickiness,
    "orders": lambda p: (p.days.orders, p.days.orders.sum()),
    "gmv": lambda p: (p.days.gmv, p.days.gmv.sum()),
    "aov": lambda p: (_ratio(p.days.gmv, p.days.orders), _share(p.days.gmv.sum(), p.days.orders.sum())),
    "paying_customers": lambda p: (p.days.payers, p.payers),
    "paid_conversion": lambda p: (_ratio(p.days.payers, p.days.active), _share(p.payers, p.active)),
    "repurchase_rate": _repurchase,
    "d1_retention": _d1,
}


def _round(value: Any, unit: str) -> int | float | None:
    if value is None or pd.isna(value):
        return None
    value = float(value)
    if unit == "ratio":
        return round(value, 4)
    if unit == "money" or not value.is_integer():
        return round(value, 2)
    return int(value)

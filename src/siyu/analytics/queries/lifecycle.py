"""Lifecycle: every known customer's status in each day, week or month of the range.

A customer is *active* on a day when they did the activity event (any event by
default). For an interval I (its days inside the range, last day e) and a
customer whose first-ever activity is on or before e, exactly one status holds:

- active in I: ``new`` (first-ever activity in I), else ``reactivated`` (on their
  first active day r in I, r − previous activity > ``churned_after`` days: they
  would have counted as churned that day), else ``active``;
- not active in I, with d = e − last activity: ``idle`` (d < ``silent_after``),
  ``silent`` (silent_after ≤ d ≤ churned_after), ``churned`` (d > churned_after).

``newly_churned`` counts the churned whose churn day (last activity +
churned_after + 1) falls in I; ``customers`` is the sum of the six statuses.
History before ``date_from`` is read, so "first-ever" and "previous activity"
are true ones.

The engine does the work on distinct (customer, day) activity rows: the active
statuses come from each customer's first active day in each interval (with the
day before it, by a window); the inactive statuses from each gap between two
activities, which covers a run of intervals idle, then silent, then churned.
Each gap emits +1/−1 at the interval indexes where a status starts and ends;
pandas only adds those up across the (few) intervals.
"""

from __future__ import annotations

import datetime as dt
from datetime import date, timedelta
from functools import reduce
from typing import Any, ClassVar, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import BaseModel, Field, model_validator

from siyu.analytics.queries import register
from siyu.analytics.queries.base import QueryBase, ResultBase, Runner
from siyu.analytics.queries.trends import OTHER, Interval, interval_starts

EPOCH = date(1970, 1, 1)
ACTIVE_STATUSES = ("new", "active", "reactivated")
INACTIVE_STATUSES = ("idle", "silent", "churned", "newly_churned")
STATUSES = ACTIVE_STATUSES + INACTIVE_STATUSES


class LifecycleQuery(QueryBase):
    """Customers by lifecycle status per interval, relative to an activity event."""

    kind: Literal["lifecycle"] = "lifecycle"
    event: str | None = Field(None, min_length=1, description="the activity event (null: any event)")
    interval: Interval = Field("week", description="day, week (starting Monday) or month")
    silent_after: int = Field(30, ge=1, le=3650, description="days without activity after which a customer is "
                              "silent")
    churned_after: int = Field(90, ge=2, le=3650, description="a customer is churned when more than this many "
                               "days passed since their last activity")

    @model_validator(mode="after")
    def _check(self) -> LifecycleQuery:
        if self.silent_after >= self.churned_after:
            raise ValueError("silent_after must be smaller than churned_after")
        if self.breakdown is not None and self.breakdown.on != "person":
            raise ValueError("lifecycle breaks down by customer attributes only (breakdown.on: person): a "
                             "customer has one status per interval")
        return self


class LifecyclePoint(BaseModel):
    """Customer counts by status in one interval."""

    date: dt.date = Field(description="first day of the interval (a Monday for weeks, the 1st for months)")
    end: dt.date = Field(description="last day of the interval that is counted (at most date_to)")
    new: int = Field(description="first-ever activity in the interval")
    active: int = Field(description="active in the interval, neither new nor reactivated")
    reactivated: int = Field(description="active in the interval after more than churned_after days without "
                             "activity")
    idle: int = Field(description="not active in the interval, last activity fewer than silent_after days "
                      "before its end")
    silent: int = Field(description="last activity silent_after to churned_after days before the interval end")
    churned: int = Field(description="last activity more than churned_after days before the interval end (stock)")
    newly_churned: int = Field(description="of the churned, those whose churn day falls in the interval")
    customers: int = Field(description="customers whose first activity is on or before the interval end "
                           "(new + active + reactivated + idle + silent + churned)")


class LifecycleLine(BaseModel):
    breakdown: str | None = Field(description="the breakdown value (null without a breakdown)")
    points: list[LifecyclePoint]


class LifecycleResult(ResultBase):
    interval: Interval
    event: str | None
    silent_after: int
    churned_after: int
    series: list[LifecycleLine]


class _Grid:
    """The range's intervals (the first and last clipped to the range), indexed 0..K-1 in the engine."""

    def __init__(self, start: date, end: date, interval: str) -> None:
        self.start, self.end, self.interval = start, end, interval
        self.labels = interval_starts(start, end, interval)
        self.size = len(self.labels)

    def last_day(self, k: int) -> date:
        if k + 1 < self.size:
            return self.labels[k + 1] - timedelta(days=1)
        return self.end

    def index(self, n: ir.IntegerValue) -> ir.IntegerValue:
        """The interval holding day number ``n``: -1 before the range, K after it (null stays null)."""
        lo, hi = _day_number(self.start), _day_number(self.end)
        return ibis.cases((n < lo, -1), (n > hi, self.size), else_=self._raw_index(n))

    def _raw_index(self, n: ir.IntegerValue) -> ir.IntegerValue:
        if self.interval == "day":
            return n - _day_number(self.start)
        if self.interval == "week":
            return (n - _day_number(self.labels[0])) // 7
        starts = [(n >= _day_number(label)).cast("int64") for label in self.labels[1:]]
        return reduce(lambda a, b: a + b, starts, ibis.literal(0, "int64"))


def _day_number(day: date) -> int:
    return (day - EPOCH).days


@register
class LifecycleRunner(Runner[LifecycleQuery, LifecycleResult]):
    kind = "lifecycle"
    query_model = LifecycleQuery
    result_model = LifecycleResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "lifecycle", "date_from": "2026-01-05", "date_to": "2026-03-29", "interval": "week",
        "event": None, "silent_after": 30, "churned_after": 90,
        "breakdown": {"on": "person", "field": "acquisition_channel", "limit": 5},
    }

    @property
    def grid(self) -> _Grid:
        start, end = self.query.date_range()
        return _Grid(start, end, self.query.interval)

    def build(self) -> dict[str, ir.Expr]:
        days = self._activity_days()
        return {"active": self._active(days), "inactive": self._inactive(days)}

    def _activity_days(self) -> ir.Table:
        """Distinct (customer, day number) of activity up to date_to, with the previous and next one."""
        _lo, hi = self.query.bounds()
        t = self.events(in_range=False)
        t = t.filter(t.local_ts < hi)
        if self.query.event is not None:
            t = t.filter(t.event == self.query.event)
        t = self.with_breakdown(t)
        days = t.select("person_id", "breakdown", n=t.local_ts.date().epoch_days().cast("int64")).distinct()
        w = ibis.window(group_by=days.person_id, order_by=days.n)
        return days.mutate(prev=days.n.lag().over(w), next_n=days.n.lead().over(w))

    def _active(self, days: ir.Table) -> ir.Expr:
        """Customers per (interval, status) among those active in it, from their first active day there."""
        grid = self.grid
        t = days.filter(days.n >= _day_number(grid.start)).mutate(k=grid.index(days.n))
        t = t.filter(t.prev.isnull() | (grid.index(t.prev) < t.k))
        status = ibis.cases((t.prev.isnull(), "new"), (t.n - t.prev > self.query.churned_after, "reactivated"),
                            else_="active")
        t = t.mutate(status=status)
        return t.group_by(["k", "breakdown", "status"]).aggregate(customers=t.count())

    def _inactive(self, days: ir.Table) -> ir.Expr:
        """+1/−1 per (interval, status) where a gap between two activities enters and leaves a status."""
        grid, q = self.grid, self.query
        gap_from = grid.index(days.n) + 1
        gap_to = ibis.cases((days.next_n.isnull(), grid.size), else_=grid.index(days.next_n)) - 1
        gaps = days.mutate(gap_from=gap_from, gap_to=gap_to)
        gaps = gaps.filter(gaps.gap_from <= gaps.gap_to)
        churn_day = gaps.n + (q.churned_after + 1)
        silent_from = ibis.greatest(gaps.gap_from, grid.index(gaps.n + q.silent_after))
        churned_from = ibis.greatest(gaps.gap_from, grid.index(churn_day))
        in_range = (churn_day >= _day_number(grid.start)) & (churn_day <= _day_number(grid.end))
        newly = ibis.cases((in_range, grid.index(churn_day)), else_=-1)
        gaps = gaps.mutate(silent_from=silent_from, churned_from=churned_from, newly=newly)
        runs = {
            "idle": (gaps.gap_from, ibis.least(gaps.gap_to, gaps.silent_from - 1)),
            "silent": (gaps.silent_from, ibis.least(gaps.gap_to, gaps.churned_from - 1)),
            "churned": (gaps.churned_from, gaps.gap_to),
            "newly_churned": (ibis.greatest(gaps.newly, gaps.gap_from), ibis.least(gaps.newly, gaps.gap_to)),
        }
        parts = []
        for status, (run_from, run_to) in runs.items():
            runs_t = gaps.filter(run_from <= run_to)
            for k, delta in ((run_from, 1), (run_to + 1, -1)):
                parts.append(runs_t.select(k=k, breakdown=runs_t.breakdown, status=ibis.literal(status),
                                           delta=ibis.literal(delta, "int64")))
        moves = ibis.union(*parts, distinct=False)
        return moves.group_by(["k", "breakdown", "status"]).aggregate(delta=moves.delta.sum())

    def calculate(self, frames: dict[str, pd.DataFrame]) -> LifecycleResult:
        active, inactive = self._fold(frames["active"], frames["inactive"])
        grid = self.grid
        values = sorted(set(active.breakdown) | set(inactive.breakdown), key=lambda v: (v == OTHER, v))
        if self.query.breakdown is None:
            values = [""]
        series = [LifecycleLine(breakdown=v if self.query.breakdown is not None else None,
                                points=self._points(grid, active, inactive, v)) for v in values]
        return LifecycleResult(**self.result_fields(), interval=self.query.interval, event=self.query.event,
                               silent_after=self.query.silent_after, churned_after=self.query.churned_after,
                               series=series)

    def _fold(self, active: pd.DataFrame, inactive: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Keep the ``limit`` values with the most customers active in the range; the rest is "(other)"."""
        breakdown = self.query.breakdown
        values = set(active.breakdown) | set(inactive.breakdown)
        if breakdown is None or len(values) <= breakdown.limit:
            return active, inactive
        weight = active.groupby("breakdown").customers.sum()
        ranked = sorted(values, key=lambda v: (-int(weight.get(v, 0)), v))
        keep = set(ranked[:breakdown.limit])

        def fold(frame: pd.DataFrame, column: str) -> pd.DataFrame:
            frame = frame.assign(breakdown=frame.breakdown.where(frame.breakdown.isin(keep), OTHER))
            return frame.groupby(["k", "breakdown", "status"], as_index=False)[column].sum()

        return fold(active, "customers"), fold(inactive, "delta")

    def _points(self, grid: _Grid, active: pd.DataFrame, inactive: pd.DataFrame, value: str
                ) -> list[LifecyclePoint]:
        counts = {status: [0] * grid.size for status in STATUSES}
        for row in active[active.breakdown == value].itertuples():
            counts[row.status][int(row.k)] += int(row.customers)
        for status in INACTIVE_STATUSES:
            moves = [0] * (grid.size + 1)
            for row in inactive[(inactive.breakdown == value) & (inactive.status == status)].itertuples():
                moves[min(int(row.k), grid.size)] += int(row.delta)
            running = 0
            for k in range(grid.size):
                running += moves[k]
                counts[status][k] = running
        return [LifecyclePoint(date=grid.labels[k], end=grid.last_day(k),
                               customers=sum(counts[s][k] for s in STATUSES if s != "newly_churned"),
                               **{s: counts[s][k] for s in STATUSES}) for k in range(grid.size)]

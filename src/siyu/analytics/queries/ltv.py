"""Historical lifetime value: cumulative revenue per acquired customer, period by period.

Customers are grouped into *cohorts* by the week or month they were acquired
(first seen, or first order). For period k = 0..N after the cohort's own
period, a cell is the cohort's revenue up to and including period k divided by
the cohort's size.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import BaseModel, Field

from siyu.analytics.queries import register
from siyu.analytics.queries.base import (
    QueryBase,
    ResultBase,
    Runner,
    add_breakdown,
    as_date,
    persons_matching,
    top_values,
)
from siyu.analytics.queries.repurchase import (
    TRUNCATE_UNIT,
    Interval,
    money,
    numbered,
    order_events,
    period_start,
)


class LtvQuery(QueryBase):
    """Customers acquired between date_from and date_to; their orders up to the end of date_to."""

    kind: Literal["ltv"]
    interval: Interval = Field("month", description="cohort and period size: week (Monday start) or month")
    periods: int = Field(6, ge=0, le=60, description="the last period shown: periods 0..N after acquisition")
    cohort_by: Literal["first_seen", "first_order"] = Field(
        "first_seen", description="acquisition date: the customer's first_seen_date (every customer, buyer "
                                  "or not) or the day of their first-ever order (buyers only)")


class LtvCohort(BaseModel):
    cohort: date = Field(description="first day of the acquisition week or month")
    customers: int = Field(description="customers acquired in the cohort (within the date range)")
    revenue: float = Field(description="their revenue up to the end of date_to (all periods)")
    ltv: list[float | None] = Field(description="cumulative revenue per customer at periods 0..N; "
                                                "null for periods starting after date_to")
    complete_periods: int = Field(description="how many periods (from 0) had ended by date_to; the "
                                              "next non-null value is still growing")


class LtvGroup(BaseModel):
    breakdown: str | None = Field(description="the breakdown value; null for the overall row")
    customers: int
    revenue: float
    ltv: list[float | None] = Field(description="at period k: revenue to period k of the cohorts that "
                                                "reached period k / their customers")


class LtvResult(ResultBase):
    interval: Interval
    periods: int
    cohort_by: Literal["first_seen", "first_order"]
    cohorts: list[LtvCohort]
    overall: LtvGroup
    by_breakdown: list[LtvGroup] = Field(description="one row per breakdown value (empty without)")


@register
class LtvRunner(Runner[LtvQuery, LtvResult]):
    kind = "ltv"
    query_model = LtvQuery
    result_model = LtvResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "ltv", "date_from": "2025-07-01", "date_to": "2026-03-31", "interval": "month",
        "periods": 6, "cohort_by": "first_seen", "breakdown": {"on": "person", "field": "acquisition_channel"}}

    def build(self) -> dict[str, ir.Expr]:
        orders = order_events(self.engine, self.query.filters, before=self.query.bounds()[1])
        customers = self._customers(orders)
        j = orders.inner_join(customers, orders.person_id == customers.customer)
        j = j.mutate(period=ibis.greatest(self._period_index(j.local_ts.date(), j.cohort), 0))
        return {
            "sizes": customers.group_by(["cohort", "breakdown"]).aggregate(customers=customers.count()),
            "revenue": j.group_by(["cohort", "breakdown", "period"]).aggregate(revenue=j.revenue.sum()),
        }

    def _customers(self, orders: ir.Table) -> ir.Table:
        """customer, cohort and breakdown of each customer acquired in the range."""
        q = self.query
        start, end = q.date_range()
        if q.cohort_by == "first_seen":
            p = persons_matching(self.engine, q.filters)
            c = p.select(person_id=p.person_id, acquired=p.first_seen_date)
        else:
            first = numbered(orders)
            first = first.filter(first.seq == 0)
            c = first.select(person_id=first.person_id, acquired=first.local_ts.date())
        c = c.filter((c.acquired >= start) & (c.acquired <= end))
        c = c.mutate(cohort=c.acquired.cast("timestamp").truncate(TRUNCATE_UNIT[q.interval]).date())
        return self._breakdown(c, orders).rename(customer="person_id").drop("acquired")

    def _breakdown(self, customers: ir.Table, orders: ir.Table) -> ir.Table:
        """A person breakdown is the customer's attribute; an event breakdown their first order's value."""
        breakdown = self.query.breakdown
        if breakdown is None or breakdown.on == "person":
            return add_breakdown(self.engine, customers, breakdown)
        first = numbered(orders)
        first = add_breakdown(self.engine, first.filter(first.seq == 0), breakdown)
        first = first.select(bd_person=first.person_id, bd=first.breakdown)
        j = customers.left_join(first, customers.person_id == first.bd_person)
        return j.mutate(breakdown=j.bd.fill_null("(none)")).drop("bd", "bd_person")

    def _period_index(self, day: ir.DateValue, cohort: ir.DateValue) -> ir.IntegerValue:
        """Whole weeks or calendar months from the cohort's first day to ``day``."""
        if self.query.interval == "month":
            return (day.year() * 12 + day.month()) - (cohort.year() * 12 + cohort.month())
        return (day.delta(cohort, unit="day") / 7).floor().cast("int64")

    # -- calculate ----------------------------------------------------------------------------
    def calculate(self, frames: dict[str, pd.DataFrame]) -> LtvResult:
        sizes, revenue = _normalise(frames["sizes"], frames["revenue"])
        if self.query.breakdown is not None:
            sizes = top_values(sizes, "customers", self.query.breakdown.limit)
            kept = set(sizes.breakdown)
            revenue = revenue.assign(breakdown=revenue.breakdown.where(revenue.breakdown.isin(kept), "(other)"))
        groups = [] if self.query.breakdown is None else [
            self._group(str(value), sizes[sizes.breakdown == value], revenue[revenue.breakdown == value])
            for value in sorted(set(sizes.breakdown))]
        groups.sort(key=lambda g: (-g.customers, g.breakdown or ""))
        q = self.query
        return LtvResult(**self.result_fields(), interval=q.interval, periods=q.periods, cohort_by=q.cohort_by,
                         cohorts=self._cohorts(sizes, revenue), overall=self._group(None, sizes, revenue),
                         by_breakdown=groups)

    def _cohorts(self, sizes: pd.DataFrame, revenue: pd.DataFrame) -> list[LtvCohort]:
        rows = []
        for cohort in sorted(set(sizes.cohort)):
            group = self._group(None, sizes[sizes.cohort == cohort], revenue[revenue.cohort == cohort])
            rows.append(LtvCohort(cohort=cohort, customers=group.customers, revenue=group.revenue,
                                  ltv=group.ltv, complete_periods=self._complete_periods(cohort)))
        return rows

    def _group(self, breakdown: str | None, sizes: pd.DataFrame, revenue: pd.DataFrame) -> LtvGroup:
        """Customers, revenue and the size-weighted cumulative curve of some cohorts' rows."""
        per_cohort = sizes.groupby("cohort")["customers"].sum()
        curve: list[float | None] = []
        for k in range(self.query.periods + 1):
            reached = [c for c in per_cohort.index if self._started(c, k)]
            size = int(per_cohort[reached].sum()) if reached else 0
            cells = revenue[revenue.cohort.isin(reached) & (revenue.period <= k)]
            curve.append(float(round(_total(cells.revenue) / size, 2)) if size else None)
        return LtvGroup(breakdown=breakdown, customers=int(per_cohort.sum()),
                        revenue=float(_total(revenue.revenue)), ltv=curve)

    def _started(self, cohort: date, k: int) -> bool:
        return period_start(cohort, self.query.interval, k) <= self.query.date_range()[1]

    def _complete_periods(self, cohort: date) -> int:
        end = self.query.date_range()[1]
        k = 0
        while k <= self.query.periods and period_start(cohort, self.query.interval, k + 1) - timedelta(days=1) <= end:
            k += 1
        return k


def _normalise(sizes: pd.DataFrame, revenue: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    sizes = sizes.assign(cohort=sizes.cohort.map(as_date), customers=sizes.customers.astype("int64"))
    revenue = revenue.assign(cohort=revenue.cohort.map(as_date), period=revenue.period.astype("int64"),
                             revenue=revenue.revenue.map(money).astype(object))
    return sizes, revenue


def _total(values: Iterable[Any]) -> Decimal:
    """An exact sum of money, whatever order the engine returned the rows in."""
    return sum((money(v) for v in values), Decimal("0"))

"""Repurchase: how many first-time buyers of each cohort ordered again, and how soon.

A customer's *first order* is their first-ever ``Order Completed`` (all history,
not only the date range); the *cohort* is the week or month of that first order.
Also home of the order helpers the LTV and RFM runners share (``order_events``,
``period_start``).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from siyu.analytics.engines import Engine
from siyu.analytics.queries import register
from siyu.analytics.queries.base import (
    Filter,
    QueryBase,
    ResultBase,
    Runner,
    apply_filters,
    as_date,
    top_values,
)

ORDER_EVENT = "Order Completed"
Interval = Literal["week", "month"]
TRUNCATE_UNIT = {"week": "W", "month": "M"}
# Days from the first to the second order: (first day, last day or None for open-ended).
GAP_BUCKETS: tuple[tuple[int, int | None], ...] = (
    (0, 7), (8, 14), (15, 30), (31, 60), (61, 90), (91, 180), (181, None))


# -- order helpers shared with ltv and rfm ------------------------------------------------
def order_events(engine: Engine, filters: list[Filter], *, before: datetime,
                 since: datetime | None = None) -> ir.Table:
    """``Order Completed`` events before ``before`` (local time; from ``since`` when given), filters
    applied: the event filters decide which orders count, the person filters whose."""
    t = engine.events()
    t = t.filter((t.event == ORDER_EVENT) & (t.local_ts < before) & t.person_id.notnull())
    if since is not None:
        t = t.filter(t.local_ts >= since)
    return apply_filters(engine, t, filters)


def numbered(orders: ir.Table) -> ir.Table:
    """``orders`` with ``seq``: 0 for each customer's first order, 1 for the second, ... (same-time
    orders in event uuid order)."""
    return orders.mutate(seq=ibis.row_number().over(group_by=orders.person_id,
                                                    order_by=[orders.local_ts, orders.uuid]))


def period_start(day: date, interval: str, k: int = 0) -> date:
    """The first day of the week (Monday) or month ``k`` intervals after the one holding ``day``."""
    if interval == "week":
        return day - timedelta(days=day.weekday()) + timedelta(weeks=k)
    months = day.year * 12 + day.month - 1 + k
    return date(months // 12, months % 12 + 1, 1)


def money(value: Any) -> Decimal:
    """An engine's sum of money (Decimal, float or NULL) as an exact Decimal."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return Decimal("0")
    return Decimal(str(value))


def rate(part: int, whole: int) -> float:
    return round(float(part) / float(whole), 4) if whole else 0.0


# -- query and result ------------------------------------------------------------------------
class RepurchaseQuery(QueryBase):
    """Repurchase of the customers whose first-ever order falls between date_from and date_to."""

    kind: Literal["repurchase"]
    interval: Interval = Field("month", description="cohort size: the week (Monday start) or month of "
                                                    "the customer's first order")
    within_days: int | None = Field(
        None, ge=1, le=3650,
        description="count a customer as a repeat buyer only when the second order comes at most this "
                    "many days after the first (default: any time up to the end of date_to)")


class GapBucket(BaseModel):
    label: str = Field(description='"0-7", ..., "181+" (days from first to second order)')
    min_days: int
    max_days: int | None = Field(description="last day of the bucket; null for the open-ended one")
    customers: int
    share: float = Field(description="share of the repeat buyers, 4 decimals")


class DaysToSecond(BaseModel):
    """Days from the first to the second order, over the repeat buyers (calendar days, brand clock)."""

    median: float | None
    mean: float | None
    p25: float | None
    p75: float | None
    histogram: list[GapBucket]


class RepurchaseGroup(BaseModel):
    breakdown: str | None = Field(description="the breakdown value; null for the overall row")
    buyers: int = Field(description="customers whose first order is in the range")
    repeat_buyers: int = Field(description="of them, customers with a second order (within the window)")
    repurchase_rate: float = Field(description="repeat_buyers / buyers, 4 decimals")
    days_to_second: DaysToSecond


class RepurchaseCohort(BaseModel):
    cohort: date = Field(description="first day of the week or month of the first order")
    buyers: int
    repeat_buyers: int
    repurchase_rate: float
    median_days_to_second: float | None
    window_closed: bool | None = Field(
        description="with within_days: every buyer's window ended by date_to (the rate is final); "
                    "null without within_days")


class RepurchaseResult(ResultBase):
    interval: Interval
    within_days: int | None
    as_of: date = Field(description="orders after the end of this day are not counted (date_to)")
    cohorts: list[RepurchaseCohort]
    overall: RepurchaseGroup
    by_breakdown: list[RepurchaseGroup] = Field(description="one row per breakdown value (empty without)")


# -- runner ------------------------------------------------------------------------------------
@register
class RepurchaseRunner(Runner[RepurchaseQuery, RepurchaseResult]):
    kind = "repurchase"
    query_model = RepurchaseQuery
    result_model = RepurchaseResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "repurchase", "date_from": "2025-10-01", "date_to": "2026-03-31", "interval": "month",
        "within_days": 90, "breakdown": {"on": "person", "field": "acquisition_channel", "limit": 5}}

    def build(self) -> dict[str, ir.Expr]:
        q = self.query
        start, end = q.date_range()
        orders = numbered(order_events(self.engine, q.filters, before=q.bounds()[1]))
        first = self.with_breakdown(orders.filter(orders.seq == 0))
        first = first.select("person_id", "breakdown", first_day=first.local_ts.date(),
                             cohort=first.local_ts.truncate(TRUNCATE_UNIT[q.interval]).date())
        first = first.filter((first.first_day >= start) & (first.first_day <= end))
        second = orders.filter(orders.seq == 1)
        second = second.select(second_person=second.person_id, second_day=second.local_ts.date())
        j = first.left_join(second, first.person_id == second.second_person)
        gap = j.second_day.delta(j.first_day, unit="day")
        if q.within_days is not None:
            gap = ibis.ifelse(gap <= q.within_days, gap, ibis.null("int64"))
        j = j.mutate(gap_days=gap.cast("int64"))
        return {"buyers": j.group_by(["cohort", "breakdown", "gap_days"]).aggregate(customers=j.count())}

    def calculate(self, frames: dict[str, pd.DataFrame]) -> RepurchaseResult:
        frame = _normalise(frames["buyers"])
        if self.query.breakdown is not None:
            frame = top_values(frame, "customers", self.query.breakdown.limit)
        groups = [] if self.query.breakdown is None else [
            _group(str(value), rows) for value, rows in frame.groupby("breakdown", sort=True)]
        groups.sort(key=lambda g: (-g.buyers, g.breakdown or ""))
        return RepurchaseResult(
            **self.result_fields(), interval=self.query.interval, within_days=self.query.within_days,
            as_of=self.query.date_range()[1], cohorts=self._cohorts(frame),
            overall=_group(None, frame), by_breakdown=groups)

    def _cohorts(self, frame: pd.DataFrame) -> list[RepurchaseCohort]:
        rows = []
        for cohort, part in frame.groupby("cohort", sort=True):
            buyers, repeat = _counts(part)
            rows.append(RepurchaseCohort(
                cohort=cohort, buyers=buyers, repeat_buyers=repeat, repurchase_rate=rate(repeat, buyers),
                median_days_to_second=_stats(part)[0], window_closed=self._window_closed(cohort)))
        return rows

    def _window_closed(self, cohort: date) -> bool | None:
        if self.query.within_days is None:
            return None
        end = self.query.date_range()[1]
        last_first_order = min(period_start(cohort, self.query.interval, 1) - timedelta(days=1), end)
        return last_first_order + timedelta(days=self.query.within_days) <= end


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["cohort"] = out["cohort"].map(as_date)
    out["customers"] = out["customers"].astype("int64")
    out["gap_days"] = out["gap_days"].astype("Int64")
    return out


def _counts(rows: pd.DataFrame) -> tuple[int, int]:
    return int(rows.customers.sum()), int(rows.customers[rows.gap_days.notna()].sum())


def _group(breakdown: str | None, rows: pd.DataFrame) -> RepurchaseGroup:
    buyers, repeat = _counts(rows)
    median, mean, p25, p75 = _stats(rows)
    return RepurchaseGroup(
        breakdown=breakdown, buyers=buyers, repeat_buyers=repeat, repurchase_rate=rate(repeat, buyers),
        days_to_second=DaysToSecond(median=median, mean=mean, p25=p25, p75=p75,
                                    histogram=_histogram(rows, repeat)))


def _gaps(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Distinct gap values (sorted) and how many repeat buyers had each."""
    counts = rows[rows.gap_days.notna()].groupby("gap_days")["customers"].sum().sort_index()
    return counts.index.to_numpy(dtype="int64"), counts.to_numpy(dtype="int64")


def _stats(rows: pd.DataFrame) -> tuple[float | None, float | None, float | None, float | None]:
    """Median, mean, 25th and 75th percentile of the gaps (2 decimals), or Nones without repeat buyers."""
    values, counts = _gaps(rows)
    if not counts.sum():
        return None, None, None, None
    mean = round(float((values * counts).sum()) / float(counts.sum()), 2)
    return (weighted_quantile(values, counts, 0.5), mean, weighted_quantile(values, counts, 0.25),
            weighted_quantile(values, counts, 0.75))


def weighted_quantile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """The ``q`` quantile of ``values`` each repeated ``counts`` times, interpolated linearly between
    the two nearest ranks (numpy's default method), 2 decimals. ``values`` must be sorted."""
    cumulative = np.cumsum(counts)
    position = (int(cumulative[-1]) - 1) * q
    lower = int(np.floor(position))
    upper = int(np.ceil(position))

    def at(rank: int) -> float:
        return float(values[int(np.searchsorted(cumulative, rank, side="right"))])

    return round(at(lower) + (position - lower) * (at(upper) - at(lower)), 2)


def _histogram(rows: pd.DataFrame, repeat: int) -> list[GapBucket]:
    values, counts = _gaps(rows)
    buckets = []
    for low, high in GAP_BUCKETS:
        inside = (values >= low) & (values <= high if high is not None else True)
        n = int(counts[inside].sum())
        buckets.append(GapBucket(label=f"{low}-{high}" if high is not None else f"{low}+", min_days=low,
                                 max_days=high, customers=n, share=rate(n, repeat)))
    return buckets

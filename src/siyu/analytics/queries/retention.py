"""Retention: of the customers who started in each interval, how many came back, and what they spent.

A *cohort* is the customers whose start event (``start_event``) falls in one
day, week or month of the range. Cell (cohort c, period k) counts the cohort's
customers who did the returning event in interval c + k; period 0 is the cohort
interval itself and is 100% by definition. The same matrix is given in revenue
(``Order Completed`` revenue of the cohort in each period, from the start event
on), and a day-based curve (D1, D7, D30) pools every cohort.

Everything is aggregated by the engine: entries (one row per customer and
cohort), returns (distinct customer-days) and orders are joined and counted
there; pandas only lays the small aggregates out as a matrix.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from typing import Any, ClassVar, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import BaseModel, Field, field_validator

from siyu.analytics.queries import register
from siyu.analytics.queries.base import QueryBase, ResultBase, Runner, as_date, top_values

Interval = Literal["day", "week", "month"]
_TRUNCATE = {"day": "D", "week": "W", "month": "M"}
ORDER_EVENT = "Order Completed"


class RetentionQuery(QueryBase):
    """Cohorts by start event and interval; who came back in each later interval."""

    kind: Literal["retention"] = "retention"
    interval: Interval = Field("week", description="cohort and period length: day, week (Monday) or month")
    start_event: str = Field(ORDER_EVENT, min_length=1,
                             description="the event that puts a customer into a cohort")
    start_mode: Literal["first", "any"] = Field(
        "first", description="first: the customer's first-ever start event (earlier history included; a "
        "customer who started before date_from is in no cohort); any: every interval of the range in which "
        "the customer did the start event is a cohort they belong to")
    return_event: str | None = Field(None, min_length=1,
                                     description="the event that counts as coming back (null: any event)")
    periods: int = Field(8, ge=2, le=60, description="columns of the matrix, period 0 included")
    curve_days: list[int] = Field(default_factory=lambda: [1, 7, 30], min_length=1, max_length=12,
                                  description="days N of the N-day curve (each 1..365)")

    @field_validator("curve_days")
    @classmethod
    def _check_curve_days(cls, days: list[int]) -> list[int]:
        if any(d < 1 or d > 365 for d in days):
            raise ValueError("each curve day must be between 1 and 365")
        return sorted(set(days))


class RetentionCell(BaseModel):
    """Period ``period`` of one cohort; counts are null when the interval starts after date_to."""

    period: int
    interval_start: date = Field(description="first day of the interval cohort + period")
    complete: bool = Field(description="the interval ended on or before date_to (later events not yet seen)")
    customers: int | None = Field(description="cohort customers who did the returning event in the interval"
                                  " (period 0: the whole cohort)")
    rate: float | None = Field(description="customers / cohort size")
    revenue: float | None = Field(description="the cohort's Order Completed revenue in the interval, from each"
                                  " customer's start event on")
    revenue_ratio: float | None = Field(description="revenue / the cohort's period-0 revenue")


class RetentionCohort(BaseModel):
    cohort: date = Field(description="first day of the cohort interval")
    size: int
    cells: list[RetentionCell]


class RetentionAverage(BaseModel):
    """One period pooled over the cohorts whose interval for that period is complete."""

    period: int
    cohorts: int = Field(description="cohorts pooled (those whose cell is complete)")
    size: int = Field(description="customers in those cohorts")
    customers: int
    rate: float | None
    revenue: float
    revenue_ratio: float | None = Field(description="revenue / the same cohorts' period-0 revenue")


class CurvePoint(BaseModel):
    """N-day retention, pooled over every cohort old enough (start day + N <= date_to)."""

    day: int
    eligible: int = Field(description="cohort entries whose start day + N is on or before date_to")
    exact: int = Field(description="entries that did the returning event exactly on day N after the start day")
    exact_rate: float | None
    on_or_after: int = Field(description="entries that did it on day N or later (unbounded retention)")
    on_or_after_rate: float | None


class RetentionSeries(BaseModel):
    breakdown: str = Field(description='breakdown value ("" without a breakdown)')
    cohorts: list[RetentionCohort]
    average: list[RetentionAverage]
    curve: list[CurvePoint]


class RetentionResult(ResultBase):
    interval: Interval
    start_event: str
    start_mode: str
    return_event: str | None
    periods: int
    series: list[RetentionSeries]


@register
class RetentionRunner(Runner[RetentionQuery, RetentionResult]):
    kind = "retention"
    query_model = RetentionQuery
    result_model = RetentionResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "retention", "date_from": "2026-01-05", "date_to": "2026-03-29", "interval": "week",
        "start_event": "Order Completed", "start_mode": "first", "return_event": "Order Completed",
        "periods": 8, "curve_days": [1, 7, 30],
        "breakdown": {"on": "person", "field": "acquisition_channel", "limit": 5},
    }

    # -- build ---------------------------------------------------------------------
    def build(self) -> dict[str, ir.Expr]:
        entries = self.share(self._entries())
        returns = self.share(self._returns())
        return {"sizes": entries.group_by("breakdown", "cohort").aggregate(size=entries.count()),
                "returned": self._returned(entries, returns),
                "revenue": self._revenue(entries),
                "curve": self._curve(entries, returns)}

    def _period(self, ts: ir.TimestampValue) -> ir.DateValue:
        return ts.truncate(_TRUNCATE[self.query.interval]).date()

    def _index(self, period: ir.DateValue) -> ir.IntegerValue:
        """Consecutive intervals get consecutive numbers (``period`` is an interval's first day)."""
        if self.query.interval == "month":
            return period.year().cast("int64") * 12 + period.month().cast("int64")
        days = period.epoch_days().cast("int64")
        # Mondays are 4 + 7m days after 1970-01-01 (a Thursday), so this numbers the weeks.
        return days // 7 if self.query.interval == "week" else days

    def _entries(self) -> ir.Table:
        """One row per customer and cohort: person_id, cohort, idx, start_ts, start_day, breakdown."""
        q = self.query
        first = q.start_mode == "first"
        starts = self.events(in_range=not first)
        starts = starts.filter(starts.event == q.start_event)
        starts = starts.mutate(cohort=self._period(starts.local_ts))
        by = ["person_id"] if first else ["person_id", "cohort"]
        w = ibis.window(group_by=by, order_by=[starts.local_ts, starts.uuid])
        ranked = starts.mutate(_rn=ibis.row_number().over(w))
        ranked = ranked.filter(ranked._rn == 0)
        if first:
            lo, hi = q.bounds()
            ranked = ranked.filter((ranked.local_ts >= lo) & (ranked.local_ts < hi))
        ranked = self.with_breakdown(ranked)
        return ranked.select("person_id", "cohort", "breakdown", idx=self._index(ranked.cohort),
                             start_ts=ranked.local_ts, start_day=ranked.local_ts.date())

    def _returns(self) -> ir.Table:
        """Distinct (person_id, day, idx) on which customers did the returning event in the range."""
        t = self.events()
        if self.query.return_event is not None:
            t = t.filter(t.event == self.query.return_event)
        return t.select("person_id", day=t.local_ts.date(), idx=self._index(self._period(t.local_ts))).distinct()

    def _returned(self, entries: ir.Table, returns: ir.Table) -> ir.Table:
        j = entries.join(returns, entries.person_id == returns.person_id)
        j = j.mutate(period=j.idx_right - j.idx)
        j = j.filter((j.period >= 1) & (j.period < self.query.periods))
        return j.group_by("breakdown", "cohort", "period").aggregate(customers=j.person_id.nunique())

    def _revenue(self, entries: ir.Table) -> ir.Table:
        o = self.events()
        o = o.filter(o.event == ORDER_EVENT)
        o = o.select("person_id", "revenue", ts=o.local_ts, idx=self._index(self._period(o.local_ts)))
        j = entries.join(o, (entries.person_id == o.person_id) & (o.ts >= entries.start_ts))
        j = j.mutate(period=j.idx_right - j.idx)
        j = j.filter(j.period < self.query.periods)
        return j.group_by("breakdown", "cohort", "period").aggregate(revenue=j.revenue.sum().cast("float64"))

    def _curve(self, entries: ir.Table, returns: ir.Table) -> ir.Table:
        """Per breakdown: for each N, entries eligible, returned exactly on day N, on day N or later."""
        days = self.query.curve_days
        j = entries.join(returns, entries.person_id == returns.person_id)
        j = j.mutate(after=j.day.epoch_days().cast("int64") - j.start_day.epoch_days().cast("int64"))
        j = j.filter(j.after >= 1)
        hits = j.group_by("person_id", "cohort").aggregate(
            last=j.after.max(), **{f"hit_{n}": ibis.ifelse(j.after == n, 1, 0).max() for n in days})
        e = entries.left_join(hits, ["person_id", "cohort"])
        _, end = self.query.date_range()
        metrics: dict[str, ir.Value] = {}
        for n in days:
            metrics[f"eligible_{n}"] = ibis.ifelse(e.start_day <= end - timedelta(days=n), 1, 0).sum()
            metrics[f"exact_{n}"] = ibis.ifelse(e[f"hit_{n}"] == 1, 1, 0).sum()
            metrics[f"after_{n}"] = ibis.ifelse(e["last"] >= n, 1, 0).sum()
        return e.group_by("breakdown").aggregate(**metrics)

    # -- calculate -----------------------------------------------------------------
    def calculate(self, frames: dict[str, pd.DataFrame]) -> RetentionResult:
        frames = self._fold_breakdowns(frames)
        values = sorted(frames["sizes"].breakdown.unique(), key=_series_order(frames["sizes"]))
        if self.query.breakdown is None:
            values = [""]
        q = self.query
        return RetentionResult(**self.result_fields(), interval=q.interval, start_event=q.start_event,
                               start_mode=q.start_mode, return_event=q.return_event, periods=q.periods,
                               series=[self._series(frames, value) for value in values])

    def _fold_breakdowns(self, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """Dates normalised; breakdown values past the limit summed into "(other)"."""
        out = {}
        for name, frame in frames.items():
            frame = frame.copy()
            if "cohort" in frame:
                frame["cohort"] = frame.cohort.map(as_date)
            out[name] = frame
        if self.query.breakdown is None:
            return out
        sizes = out["sizes"].sort_values(["breakdown", "cohort"])
        folded = top_values(sizes, "size", self.query.breakdown.limit)
        keep = set(folded.breakdown) - {"(other)"}
        for name, frame in out.items():
            frame["breakdown"] = frame.breakdown.where(frame.breakdown.isin(keep), "(other)")
            keys = [c for c in ("breakdown", "cohort", "period") if c in frame]
            out[name] = frame.groupby(keys, as_index=False).sum()
        return out

    def _series(self, frames: dict[str, pd.DataFrame], value: str) -> RetentionSeries:
        def lookup(name: str, column: str) -> dict:
            f = frames[name][frames[name].breakdown == value]
            keys = ["cohort", "period"] if "period" in f else ["cohort"]
            return {tuple(k): v for k, v in zip(f[keys].itertuples(index=False), f[column], strict=True)}

        sizes = {c: int(n) for (c,), n in lookup("sizes", "size").items()}
        returned, revenue = lookup("returned", "customers"), lookup("revenue", "revenue")
        cohorts = [self._cohort(c, sizes.get(c, 0), returned, revenue) for c in self._cohort_starts()]
        curve_row = frames["curve"][frames["curve"].breakdown == value]
        return RetentionSeries(breakdown=value, cohorts=cohorts, average=self._average(cohorts),
                               curve=self._curve_points(curve_row))

    def _cohort_starts(self) -> list[date]:
        start, end = self.query.date_range()
        first, last = _truncate(start, self.query.interval), _truncate(end, self.query.interval)
        out = [first]
        while out[-1] < last:
            out.append(_shift(out[-1], self.query.interval, 1))
        return out

    def _cohort(self, cohort: date, size: int, returned: dict, revenue: dict) -> RetentionCohort:
        _, end = self.query.date_range()
        interval = self.query.interval
        rev0 = float(revenue.get((cohort, 0), 0.0))
        cells = []
        for k in range(self.query.periods):
            starts = _shift(cohort, interval, k)
            complete = _shift(cohort, interval, k + 1) <= end + timedelta(days=1)
            if starts > end:
                cells.append(RetentionCell(period=k, interval_start=starts, complete=False, customers=None,
                                           rate=None, revenue=None, revenue_ratio=None))
                continue
            customers = size if k == 0 else int(returned.get((cohort, k), 0))
            money = float(revenue.get((cohort, k), 0.0))
            cells.append(RetentionCell(period=k, interval_start=starts, complete=complete, customers=customers,
                                       rate=_ratio(customers, size), revenue=round(money, 2),
                                       revenue_ratio=_ratio(money, rev0)))
        return RetentionCohort(cohort=cohort, size=size, cells=cells)

    def _average(self, cohorts: list[RetentionCohort]) -> list[RetentionAverage]:
        out = []
        for k in range(self.query.periods):
            pooled = [c for c in cohorts if c.cells[k].complete]
            size = sum(c.size for c in pooled)
            customers = sum(c.cells[k].customers or 0 for c in pooled)
            money = sum(c.cells[k].revenue or 0.0 for c in pooled)
            money0 = sum(c.cells[0].revenue or 0.0 for c in pooled)
            out.append(RetentionAverage(period=k, cohorts=len(pooled), size=size, customers=customers,
                                        rate=_ratio(customers, size), revenue=round(money, 2),
                                        revenue_ratio=_ratio(money, money0)))
        return out

    def _curve_points(self, row: pd.DataFrame) -> list[CurvePoint]:
        def get(column: str) -> int:
            return int(row[column].fillna(0).iloc[0]) if len(row) else 0

        points = []
        for n in self.query.curve_days:
            eligible, exact, after = get(f"eligible_{n}"), get(f"exact_{n}"), get(f"after_{n}")
            points.append(CurvePoint(day=n, eligible=eligible, exact=exact, exact_rate=_ratio(exact, eligible),
                                     on_or_after=after, on_or_after_rate=_ratio(after, eligible)))
        return points


def _series_order(sizes: pd.DataFrame):
    """Largest breakdown value first; "(other)" last; ties by name."""
    totals = sizes.groupby("breakdown")["size"].sum().to_dict()
    return lambda value: (value == "(other)", -totals.get(value, 0), value)


def _ratio(part: float, whole: float) -> float | None:
    return round(float(part) / float(whole), 4) if whole else None


def _truncate(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _shift(start: date, interval: str, k: int) -> date:
    """The first day of the interval ``k`` intervals after the one starting on ``start``."""
    if interval == "day":
        return start + timedelta(days=k)
    if interval == "week":
        return start + timedelta(weeks=k)
    months = start.year * 12 + start.month - 1 + k
    year, month = divmod(months, 12)
    return date(year, month + 1, min(start.day, calendar.monthrange(year, month + 1)[1]))

"""Trends: how much of something happened per day, week or month, against the period before.

A *series* counts events (``count``), the distinct customers behind them
(``unique_customers``), or aggregates a number carried by them (``sum``,
``avg``, ``min``, ``max`` of ``revenue`` or ``properties.<key>``). For each
series (and each breakdown value) the answer gives one point per interval of
the range, the total over the range — computed over the range, not added up
from the points, so unique customers are counted once — and the same total for
the previous period of the same number of days.

The engine does the grouping: one expression for the points and one for the two
totals per series. The breakdown's long tail is folded into "(other)" inside the
engine too, so "(other)" is exact for every math (distinct customers included).

The period helpers at the bottom (``interval_starts``, ``previous_range``,
``change_pct``, ``fold_top_breakdowns``) are shared with the lifecycle and
overview runners.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from siyu.analytics.queries import register
from siyu.analytics.queries.base import QueryBase, ResultBase, Runner, as_date

Interval = Literal["day", "week", "month"]
Math = Literal["count", "unique_customers", "sum", "avg", "min", "max"]
PROPERTY_MATHS = ("sum", "avg", "min", "max")
# Maths whose value for "nothing happened" is 0; an average, minimum or maximum of nothing is null.
ZERO_MATHS = ("count", "unique_customers", "sum")
NUMERIC_EVENT_COLUMNS = ("revenue",)
TRUNCATE = {"day": "D", "week": "W", "month": "M"}
OTHER = "(other)"
CURRENT, PREVIOUS = "current", "previous"
Number = int | float


class TrendSeriesQuery(BaseModel):
    """One line of the chart: which events, and what to compute from them."""

    model_config = ConfigDict(extra="forbid")

    event: str | None = Field(None, min_length=1, description="event name (null: every event)")
    math: Math = Field("count", description="count: events; unique_customers: distinct customers; "
                       "sum, avg, min, max: of `property`")
    property: str | None = Field(None, description="the number aggregated by sum/avg/min/max: `revenue` or "
                                 "`properties.<key>` (read as a number; values that are not numbers are skipped)")
    label: str | None = Field(None, max_length=120, description="the series' name in the answer "
                              "(default: made from event, math and property)")

    @model_validator(mode="after")
    def _check(self) -> TrendSeriesQuery:
        if self.math in PROPERTY_MATHS:
            if not self.property:
                raise ValueError(f"math `{self.math}` needs a property (revenue or properties.<key>)")
            if self.property not in NUMERIC_EVENT_COLUMNS and not (
                    self.property.startswith("properties.") and len(self.property) > len("properties.")):
                raise ValueError(f"property {self.property!r} is not a number: use revenue or properties.<key>")
        elif self.property is not None:
            raise ValueError(f"math `{self.math}` takes no property (only sum, avg, min and max do)")
        return self

    def display_label(self) -> str:
        if self.label:
            return self.label
        name = self.event or "any event"
        if self.math == "count":
            return name
        if self.math == "unique_customers":
            return f"{name} · unique customers"
        return f"{name} · {self.math} of {self.property}"


class TrendsQuery(QueryBase):
    """Up to five series per day, week or month, with totals against the previous period."""

    kind: Literal["trends"] = "trends"
    interval: Interval = Field("day", description="point length: day, week (starting Monday) or month")
    series: list[TrendSeriesQuery] = Field(min_length=1, max_length=5, description="one to five series")


class TrendPoint(BaseModel):
    date: dt.date = Field(description="first day of the interval (a Monday for weeks, the 1st for months)")
    value: Number | None = Field(description="the series' value in the interval (null: avg/min/max of nothing)")


class TrendLine(BaseModel):
    """One series, or one series × one breakdown value."""

    label: str
    event: str | None
    math: Math
    property: str | None
    breakdown: str | None = Field(description="the breakdown value (null without a breakdown)")
    total: Number | None = Field(description="the value over the whole range")
    previous: Number | None = Field(description="the value over the previous period of the same length")
    change_pct: float | None = Field(description="(total - previous) / previous × 100; null when previous is 0")
    points: list[TrendPoint]


class TrendsResult(ResultBase):
    interval: Interval
    previous_from: date = Field(description="first day of the previous period")
    previous_to: date = Field(description="last day of the previous period (the day before date_from)")
    series: list[TrendLine]


@register
class TrendsRunner(Runner[TrendsQuery, TrendsResult]):
    kind = "trends"
    query_model = TrendsQuery
    result_model = TrendsResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "trends", "date_from": "2026-01-01", "date_to": "2026-01-31", "interval": "week",
        "series": [{"event": "Order Completed", "math": "count", "label": "orders"},
                   {"event": "Order Completed", "math": "sum", "property": "revenue", "label": "GMV"},
                   {"event": None, "math": "unique_customers", "label": "active customers"}],
        "breakdown": {"on": "event", "field": "channel", "limit": 5},
    }

    def build(self) -> dict[str, ir.Expr]:
        exprs: dict[str, ir.Expr] = {}
        for i, series in enumerate(self.query.series):
            t = self._series_events(series)
            agg = _aggregate(series)
            current = t.filter(t._period == CURRENT)
            exprs[f"points_{i}"] = current.group_by(bucket=current._bucket, breakdown=current.breakdown).aggregate(value=agg(current))
            exprs[f"totals_{i}"] = t.group_by(period=t._period, breakdown=t.breakdown).aggregate(value=agg(t))
        return exprs

    def _series_events(self, series: TrendSeriesQuery) -> ir.Table:
        """The series' events of both periods, with ``_period``, ``_bucket``, ``_value`` and ``breakdown``."""
        start, end = self.query.date_range()
        prev_start, _prev_end = previous_range(start, end)
        t = self.events(in_range=False)
        t = t.filter((t.local_ts >= _midnight(prev_start)) & (t.local_ts < _midnight(end + timedelta(days=1))))
        if series.event is not None:
            t = t.filter(t.event == series.event)
        t = t.mutate(
            _period=ibis.cases((t.local_ts >= _midnight(start), CURRENT), else_=PREVIOUS),
            _bucket=t.local_ts.truncate(TRUNCATE[self.query.interval]).date(),
            _value=self._value(t, series),
        )
        t = self.with_breakdown(t)
        if self.query.breakdown is not None:
            current = t.filter(t._period == CURRENT)
            t = fold_top_breakdowns(t, current, _volume(series), self.query.breakdown.limit)
        return t

    def _value(self, t: ir.Table, series: TrendSeriesQuery) -> ir.Value:
        if series.property is None:
            return ibis.null("float64")
        if series.property.startswith("properties."):
            return self.engine.json_string(t.properties, series.property[len("properties."):]).try_cast("float64")
        return t[series.property].cast("float64")

    def calculate(self, frames: dict[str, pd.DataFrame]) -> TrendsResult:
        start, end = self.query.date_range()
        prev_start, prev_end = previous_range(start, end)
        buckets = interval_starts(start, end, self.query.interval)
        lines: list[TrendLine] = []
        for i, series in enumerate(self.query.series):
            lines += self._lines(series, frames[f"points_{i}"], frames[f"totals_{i}"], buckets)
        return TrendsResult(**self.result_fields(), interval=self.query.interval, previous_from=prev_start,
                            previous_to=prev_end, series=lines)

    def _lines(self, series: TrendSeriesQuery, points: pd.DataFrame, totals: pd.DataFrame,
               buckets: list[date]) -> list[TrendLine]:
        empty = 0 if series.math in ZERO_MATHS else None
        by_point = {(as_date(r.bucket), r.breakdown): r.value for r in points.itertuples()}
        by_total = {(r.period, r.breakdown): r.value for r in totals.itertuples()}
        values = sorted({b for _p, b in by_total}) if self.query.breakdown is not None else [""]
        lines = []
        for value in values:
            total = _number(by_total.get((CURRENT, value), empty), series.math)
            previous = _number(by_total.get((PREVIOUS, value), empty), series.math)
            lines.append(TrendLine(
                label=series.display_label(), event=series.event, math=series.math, property=series.property,
                breakdown=value if self.query.breakdown is not None else None, total=total, previous=previous,
                change_pct=change_pct(total, previous),
                points=[TrendPoint(date=b, value=_number(by_point.get((b, value), empty), series.math))
                        for b in buckets]))
        return sorted(lines, key=_line_order)


def _aggregate(series: TrendSeriesQuery) -> Callable[[ir.Table], ir.Scalar]:
    math = series.math
    if math == "count":
        return lambda t: t.count()
    if math == "unique_customers":
        return lambda t: t.person_id.nunique()
    return lambda t: getattr(t._value, {"sum": "sum", "avg": "mean", "min": "min", "max": "max"}[math])()


def _volume(series: TrendSeriesQuery) -> Callable[[ir.Table], ir.Scalar]:
    """What ranks breakdown values: the series' own total when additive, else how many values it averages."""
    if series.math in ZERO_MATHS:
        return _aggregate(series)
    return lambda t: t._value.count()


def _number(value: Any, math: str) -> Number | None:
    if value is None or pd.isna(value):
        return 0 if math in ZERO_MATHS else None
    if math in ("count", "unique_customers"):
        return int(value)
    return round(float(value), 2)


def _line_order(line: TrendLine) -> tuple[bool, float, str]:
    return line.breakdown == OTHER, -(line.total or 0), line.breakdown or ""


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


# -- shared with the lifecycle and overview runners --------------------------------------
def interval_starts(start: date, end: date, interval: str) -> list[date]:
    """First day of every day, week (Monday) or month that meets [start, end]."""
    first = _truncate(start, interval)
    out = []
    while first <= end:
        out.append(first)
        first = _next_start(first, interval)
    return out


def _truncate(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _next_start(first: date, interval: str) -> date:
    if interval == "day":
        return first + timedelta(days=1)
    if interval == "week":
        return first + timedelta(days=7)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def previous_range(start: date, end: date) -> tuple[date, date]:
    """The period of the same number of days that ends the day before ``start``."""
    days = (end - start).days + 1
    return start - timedelta(days=days), start - timedelta(days=1)


def change_pct(total: float | None, previous: float | None) -> float | None:
    """Change from ``previous`` to ``total`` in percent, 2 decimals; null when there is no base."""
    if total is None or previous is None or previous == 0:
        return None
    return round((total - previous) / previous * 100, 2)


def fold_top_breakdowns(t: ir.Table, ranked_on: ir.Table, volume: Callable[[ir.Table], ir.Scalar],
                        limit: int) -> ir.Table:
    """``t`` with every breakdown value outside the ``limit`` largest by ``volume(ranked_on)`` renamed "(other)".

    Ranking happens in the engine (ties by value, so both engines keep the same
    values); folding before aggregating keeps "(other)" exact for non-additive
    measures. An empty value is shown as "(none)", like a missing one.
    """
    volumes = ranked_on.group_by("breakdown").aggregate(_volume=volume(ranked_on))
    ranked = volumes.mutate(_rank=ibis.row_number().over(order_by=[volumes._volume.desc(), volumes.breakdown]))
    kept = ranked.filter(ranked._rank < limit).select(_kept=ranked.breakdown)
    joined = t.left_join(kept, t.breakdown == kept._kept)
    folded = ibis.cases((joined._kept.isnull(), OTHER), (joined.breakdown == "", "(none)"), else_=joined.breakdown)
    return joined.mutate(breakdown=folded).drop("_kept")

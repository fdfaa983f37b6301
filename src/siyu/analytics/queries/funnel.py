"""Funnels: how many customers go from step 1 through step n within a conversion window.

Each customer enters at their first step-1 event in the date range; later steps
must happen within ``window`` of that entry (they may fall after date_to). The
engine computes, per customer, the time of every step they reached — from
small per-step event tables joined to the entries, never by looping over events
in Python — and then counts, times and lists them per breakdown value.

Orders (``order``):

- ``ordered``: step k is the first step-k event strictly after step k-1's;
  other events, funnel steps included, may happen in between;
- ``strict``: as ordered, and the customer's funnel events (events matching any
  step) right after the entry must be steps 2, 3, ... with nothing else from the
  funnel in between;
- ``any``: steps 2..n in any order, each at or after the entry.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar, Literal

import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from siyu.analytics.queries import register
from siyu.analytics.queries.base import Filter, QueryBase, ResultBase, Runner, apply_filters

WINDOW_SECONDS = {"day": 86_400, "hour": 3_600, "minute": 60}
MAX_WINDOW_SECONDS = 366 * 86_400
OTHER = "(other)"


class FunnelStep(BaseModel):
    """One step: an event name, optional conditions on that step's events, and a label."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(min_length=1, description="event name, e.g. Product Viewed")
    filters: list[Filter] = Field(default_factory=list, max_length=10,
                                  description="event-field conditions for this step only")
    label: str | None = Field(None, max_length=100, description="name shown for the step (default: event)")

    @model_validator(mode="after")
    def _event_filters_only(self) -> FunnelStep:
        if any(f.on != "event" for f in self.filters):
            raise ValueError("a step's filters are on its events (on: event); put person filters in the"
                             " query's filters")
        return self


class FunnelQuery(QueryBase):
    """Ordered steps, a conversion window, and optionally the customers who dropped at one step."""

    kind: Literal["funnel"] = "funnel"
    steps: list[FunnelStep] = Field(min_length=2, max_length=10, description="2 to 10 steps, in order")
    window: int = Field(7, ge=1, description="time allowed from the entry (step 1) to the last step")
    window_unit: Literal["day", "hour", "minute"] = Field("day", description="unit of window")
    order: Literal["ordered", "strict", "any"] = Field(
        "ordered", description="ordered: each step after the previous, anything in between; strict: also no"
        " other funnel step event in between; any: steps 2..n in any order after step 1")
    dropped_at_step: int | None = Field(
        None, ge=2, description="list the customers who reached step k-1 but not step k (k counted from 1)")
    people_limit: int = Field(100, ge=1, le=10_000, description="at most this many customers are listed")

    @model_validator(mode="after")
    def _check_funnel(self) -> FunnelQuery:
        if self.window_seconds() > MAX_WINDOW_SECONDS:
            raise ValueError("the conversion window may be at most 366 days")
        if self.dropped_at_step is not None and self.dropped_at_step > len(self.steps):
            raise ValueError(f"dropped_at_step must be a step number between 2 and {len(self.steps)}")
        return self

    def window_seconds(self) -> int:
        return self.window * WINDOW_SECONDS[self.window_unit]


class FunnelStepResult(BaseModel):
    step: int = Field(description="step number, from 1")
    label: str
    event: str
    count: int = Field(description="customers who reached this step")
    conversion_from_first: float | None = Field(description="count / step 1's count")
    conversion_from_previous: float | None = Field(description="count / the previous step's count")
    dropped: int = Field(description="customers who reached the previous step but not this one (0 at step 1)")
    median_seconds: float | None = Field(description="median time from the previous step to this one")
    average_seconds: float | None = Field(description="average time from the previous step to this one")


class FunnelSeries(BaseModel):
    breakdown: str = Field(description='breakdown value ("" without a breakdown)')
    steps: list[FunnelStepResult]


class FunnelResult(ResultBase):
    order: str
    window: int
    window_unit: str
    series: list[FunnelSeries]
    dropped_at_step: int | None = None
    people: list[int] | None = Field(None, description="person ids (ascending, at most people_limit) who"
                                     " reached step dropped_at_step - 1 but not dropped_at_step")
    people_total: int | None = Field(None, description="how many customers dropped there in all")


@register
class FunnelRunner(Runner[FunnelQuery, FunnelResult]):
    kind = "funnel"
    query_model = FunnelQuery
    result_model = FunnelResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "funnel", "date_from": "2026-03-01", "date_to": "2026-03-31",
        "steps": [{"event": "Product Viewed", "label": "viewed"},
                  {"event": "Product Added", "label": "added to cart"},
                  {"event": "Order Completed", "filters": [{"field": "revenue", "op": "gte", "value": 100}],
                   "label": "ordered 100+"}],
        "window": 7, "window_unit": "day", "order": "ordered",
        "breakdown": {"on": "event", "field": "channel", "limit": 5},
        "dropped_at_step": 3, "people_limit": 100,
    }

    # -- build ---------------------------------------------------------------------
    def build(self) -> dict[str, ir.Expr]:
        reached = self._reached()
        exprs: dict[str, ir.Expr] = {"steps": self._aggregate(reached)}
        k = self.query.dropped_at_step
        if k is not None:
            dropped = reached.filter(reached.reached == k - 1).select("person_id")
            exprs["people"] = dropped.order_by("person_id").limit(self.query.people_limit)
        return exprs

    def _step_events(self, k: int, *, entry: bool = False) -> ir.Table:
        """Events of step ``k`` (from 1): in the range for the entry, else up to a window past date_to."""
        step = self.query.steps[k - 1]
        t = self.events(in_range=False)
        lo, hi = self.query.bounds()
        if not entry:
            # A day of slack: the exact window is checked in seconds of real time.
            hi += timedelta(seconds=self.query.window_seconds() + 86_400)
        t = t.filter((t.local_ts >= lo) & (t.local_ts < hi) & (t.event == step.event))
        return apply_filters(self.engine, t, step.filters)

    def _entries(self) -> ir.Table:
        """Each customer's first step-1 event in the range: person_id, uuid, t_1, s_1, breakdown."""
        t = self._step_events(1, entry=True)
        w = ibis.window(group_by="person_id", order_by=[t.timestamp, t.uuid])
        t = t.mutate(_rn=ibis.row_number().over(w))
        t = self.with_breakdown(t.filter(t._rn == 0))
        t = t.select("person_id", "uuid", "breakdown", t_1=t.timestamp,
                     s_1=t.timestamp.epoch_seconds().cast("int64"))
        return self._limit_breakdown(t)

    def _limit_breakdown(self, entries: ir.Table) -> ir.Table:
        """Breakdown values beyond the ``limit`` most frequent (ties by value) become "(other)"."""
        if self.query.breakdown is None:
            return entries
        counts = entries.group_by("breakdown").aggregate(_n=entries.count())
        counts = counts.mutate(_rank=ibis.row_number().over(order_by=[counts._n.desc(), counts.breakdown]))
        j = entries.join(counts, "breakdown")
        value = ibis.ifelse(j._rank < self.query.breakdown.limit, j.breakdown, OTHER)
        return j.mutate(breakdown=value).drop("_n", "_rank")

    def _later(self, k: int) -> ir.Table:
        """Step-k events that may follow an entry: person_id, uuid, ts (UTC), sec (epoch seconds)."""
        t = self._step_events(k)
        return t.select("person_id", "uuid", ts=t.timestamp, sec=t.timestamp.epoch_seconds().cast("int64"))

    def _reached(self) -> ir.Table:
        """Per entered customer: breakdown, reached (1..n), and s_1..s_n (epoch seconds, null when not reached)."""
        by_order = {"ordered": self._ordered, "strict": self._strict, "any": self._any}
        return by_order[self.query.order](self.share(self._entries()))

    def _ordered(self, entries: ir.Table) -> ir.Table:
        """Step k: the first step-k event after step k-1's, within the window (the earliest is never worse)."""
        cur = entries
        window = self.query.window_seconds()
        n = len(self.query.steps)
        for k in range(2, n + 1):
            s = self._later(k)
            j = cur.join(s, (cur.person_id == s.person_id) & (s.ts > cur[f"t_{k - 1}"])
                         & (s.sec - cur.s_1 <= window))
            best = j.group_by("person_id").aggregate(**{f"t_{k}": j.ts.min(), f"s_{k}": j.sec.min()})
            # Each step reads the previous one twice: computed once, the SQL stays linear in steps.
            cur = self.share(_left_join(cur, best))
        reached = ibis.cases(*[(cur[f"s_{k}"].isnull(), k - 1) for k in range(2, n + 1)], else_=n)
        return cur.mutate(reached=reached)

    def _any(self, entries: ir.Table) -> ir.Table:
        """Each later step's first event at or after the entry, within the window, in any order."""
        cur = entries
        window = self.query.window_seconds()
        n = len(self.query.steps)
        for k in range(2, n + 1):
            s = self._later(k)
            j = entries.join(s, (entries.person_id == s.person_id) & (s.ts >= entries.t_1)
                             & (s.uuid != entries.uuid) & (s.sec - entries.s_1 <= window))
            first = j.group_by("person_id").aggregate(**{f"s_{k}": j.sec.min()})
            cur = _left_join(cur, first)
        reached = ibis.cases(*[(cur[f"s_{k}"].isnull(), k - 1) for k in range(2, n + 1)], else_=n)
        cur = cur.mutate(reached=reached)
        # A step's time counts once every earlier step is done too: time of the k-th completion.
        return cur.mutate(**{f"s_{k}": ibis.ifelse(cur.reached >= k, ibis.greatest(
            *[cur[f"s_{i}"] for i in range(1, k + 1)]), ibis.null("int64")) for k in range(2, n + 1)})

    def _strict(self, entries: ir.Table) -> ir.Table:
        """The funnel events right after the entry, ranked per customer, must be steps 2, 3, ... in turn."""
        n = len(self.query.steps)
        matches = ibis.union(*[self._later(k).mutate(step=ibis.literal(k, "int64")) for k in range(1, n + 1)])
        events = matches.select("person_id", "uuid", "ts", "sec").distinct()
        w = ibis.window(group_by="person_id", order_by=[events.ts, events.uuid])
        events = events.mutate(rn=ibis.row_number().over(w), prev_ts=events.ts.lag().over(w))
        at = entries.join(events, "uuid").select("person_id", entry_rn=ibis._.rn)
        e = entries.join(at, "person_id")
        j = e.join(events, (e.person_id == events.person_id) & (events.rn > e.entry_rn)
                   & (events.rn < e.entry_rn + n))
        j = j.mutate(pos=(j.rn - j.entry_rn).cast("int64"))
        m = matches.select(m_uuid=matches.uuid, m_step=matches.step)
        j = j.left_join(m, (j.uuid_right == m.m_uuid) & (m.m_step == j.pos + 1))
        ok = j.m_uuid.notnull() & (j.sec - j.s_1 <= self.query.window_seconds()) & (j.ts > j.prev_ts)
        j = j.mutate(bad=ibis.ifelse(ok, ibis.null("int64"), j.pos))
        per = j.group_by("person_id").aggregate(
            first_bad=j.bad.min(), seen=j.pos.count(),
            **{f"s_{k}": j.sec.max(where=j.pos == k - 1) for k in range(2, n + 1)})
        cur = _left_join(entries, per)
        cur = cur.mutate(reached=ibis.coalesce(cur.first_bad, cur.seen.fill_null(0) + 1))
        return cur.mutate(**{f"s_{k}": ibis.ifelse(cur.reached >= k, cur[f"s_{k}"], ibis.null("int64"))
                             for k in range(2, n + 1)})

    def _aggregate(self, reached: ir.Table) -> ir.Table:
        """Per breakdown: c_k (customers reaching step k), med_k and avg_k (seconds from step k-1)."""
        metrics: dict[str, ir.Value] = {}
        for k in range(1, len(self.query.steps) + 1):
            metrics[f"c_{k}"] = ibis.ifelse(reached.reached >= k, 1, 0).sum()
            if k > 1:
                took = ibis.ifelse(reached.reached >= k, reached[f"s_{k}"] - reached[f"s_{k - 1}"],
                                   ibis.null("int64"))
                metrics[f"med_{k}"] = took.cast("float64").median()
                metrics[f"avg_{k}"] = took.cast("float64").mean()
        return reached.group_by("breakdown").aggregate(**metrics)

    # -- calculate -----------------------------------------------------------------
    def calculate(self, frames: dict[str, pd.DataFrame]) -> FunnelResult:
        q = self.query
        rows = frames["steps"].sort_values("breakdown")
        series = [self._series(row) for row in rows.to_dict("records")]
        series.sort(key=lambda s: (s.breakdown == OTHER, -s.steps[0].count, s.breakdown))
        if q.breakdown is None and not series:
            series = [self._series({"breakdown": ""})]
        people = total = None
        if q.dropped_at_step is not None:
            people = sorted(int(p) for p in frames["people"].person_id)
            total = sum(s.steps[q.dropped_at_step - 1].dropped for s in series)
        return FunnelResult(**self.result_fields(), order=q.order, window=q.window, window_unit=q.window_unit,
                            series=series, dropped_at_step=q.dropped_at_step, people=people, people_total=total)

    def _series(self, row: dict[str, Any]) -> FunnelSeries:
        counts = [_int(row.get(f"c_{k}")) for k in range(1, len(self.query.steps) + 1)]
        steps = []
        for i, step in enumerate(self.query.steps):
            k = i + 1
            steps.append(FunnelStepResult(
                step=k, label=step.label or step.event, event=step.event, count=counts[i],
                conversion_from_first=_ratio(counts[i], counts[0]),
                conversion_from_previous=_ratio(counts[i], counts[i - 1]) if i else _ratio(counts[0], counts[0]),
                dropped=counts[i - 1] - counts[i] if i else 0,
                median_seconds=_seconds(row.get(f"med_{k}")), average_seconds=_seconds(row.get(f"avg_{k}"))))
        return FunnelSeries(breakdown=str(row["breakdown"]), steps=steps)


def _left_join(left: ir.Table, right: ir.Table) -> ir.Table:
    """``left`` with ``right``'s columns by person_id (nulls where ``right`` has no row)."""
    joined = left.left_join(right, "person_id")
    return joined.drop(*[c for c in joined.columns if c.endswith("_right")])


def _int(value: Any) -> int:
    return 0 if value is None or pd.isna(value) else int(value)


def _seconds(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 2)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None

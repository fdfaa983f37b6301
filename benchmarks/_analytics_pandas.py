"""The analytics benchmark's baseline and its checks: the same five insights written in plain pandas.

``bench_analytics.py`` times each query runner against this module, and
``tests/test_bench_analytics.py`` runs the comparison on a tiny demo. For each
kind a function computes, from an events DataFrame loaded once, exactly the
frames the runner's ``build()`` expressions return (same columns, same
definitions — see docs/analytics.md); the runner's own ``calculate`` then lays
them out, so the two answers are compared as whole results (``compare``).
Only what the benchmark's bodies use is written here (no filters, no breakdown).

The events frame (``load_events``): ``event`` (categorical), ``person_id``
(float, NaN when unknown), ``uuid_rank`` (the uuid's rank in byte order, the
runners' tie-break, as an integer), ``ts_us`` (UTC microseconds), ``lus``
(brand-clock microseconds) and ``cents`` (revenue × 100, NaN when unset).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

DAY_US = 86_400_000_000
ORDER = "Order Completed"
EPOCH = date(1970, 1, 1)


# -- the benchmark's queries ----------------------------------------------------------------
def bodies(date_to: date) -> dict[str, dict[str, Any]]:
    """The five benchmarked queries over the 13 weeks (91 days) ending ``date_to``."""
    span = {"date_from": (date_to - timedelta(days=90)).isoformat(), "date_to": date_to.isoformat()}
    return {
        "trends": {"kind": "trends", **span, "interval": "day", "series": [
            {"event": ORDER, "math": "count", "label": "orders"},
            {"event": ORDER, "math": "sum", "property": "revenue", "label": "GMV"},
            {"event": None, "math": "unique_customers", "label": "active customers"}]},
        "retention": {"kind": "retention", **span, "interval": "week", "start_event": ORDER,
                      "start_mode": "first", "return_event": ORDER, "periods": 13, "curve_days": [1, 7, 30]},
        "funnel": {"kind": "funnel", **span, "window": 7, "window_unit": "day", "order": "ordered",
                   "steps": [{"event": "Product Viewed"}, {"event": "Product Added"},
                             {"event": "Checkout Started"}, {"event": ORDER}]},
        "repurchase": {"kind": "repurchase", **span, "interval": "month", "within_days": 30},
        "rfm": {"kind": "rfm", **span, "scheme": "eight", "lookback": "all", "customers_limit": 100},
    }


# -- loading (not timed) -----------------------------------------------------------------------
LOAD_SQL = (
    "SELECT event, person_id, dense_rank() OVER (ORDER BY uuid) AS uuid_rank, epoch_us(timestamp) AS ts_us,"
    " epoch_us(local_ts) AS lus, CAST(revenue * 100 AS BIGINT) AS cents FROM analytics_events"
)


def load_events(cursor) -> pd.DataFrame:
    """Every event of the store's ``analytics_events`` as the frame the functions below read."""
    frame = cursor.execute(LOAD_SQL).df()
    frame["event"] = frame["event"].astype("category")
    for column in ("person_id", "cents"):
        frame[column] = frame[column].astype("float64")
    for column in ("uuid_rank", "ts_us", "lus"):
        frame[column] = frame[column].astype("int64")
    return frame


# -- shared helpers ----------------------------------------------------------------------------
def _us(day: date | datetime) -> int:
    """Brand-clock microseconds of midnight starting ``day`` (or of a naive local datetime)."""
    if isinstance(day, datetime):
        return (day - datetime(1970, 1, 1)) // timedelta(microseconds=1)
    return (day - EPOCH).days * DAY_US


def _day(epoch_days: int) -> date:
    return EPOCH + timedelta(days=int(epoch_days))


def _monday(days: pd.Series) -> pd.Series:
    """Epoch day of the Monday starting each day's week (1970-01-01 was a Thursday)."""
    return days - (days + 3) % 7


def _month_index(days: pd.Series) -> pd.Series:
    """year × 12 + month (1-12) of each epoch day, the runners' consecutive month number."""
    stamps = pd.to_datetime(days.to_numpy(dtype="int64"), unit="D")
    return pd.Series(stamps.year * 12 + stamps.month, index=days.index)


def _month_first(index: int) -> date:
    year, month = divmod(int(index) - 1, 12)
    return date(year, month + 1, 1)


def _period(days: pd.Series, interval: str) -> tuple[pd.Series, Any]:
    """(consecutive index of each day's interval, function index -> first day) for day/week/month."""
    if interval == "day":
        return days, _day
    if interval == "week":
        return _monday(days) // 7, lambda i: _day(int(i) * 7 + 4)
    return _month_index(days), _month_first


def _between(ev: pd.DataFrame, lo: int | None, hi: int, event: str | None = None) -> pd.DataFrame:
    mask = ev.lus < hi
    if lo is not None:
        mask &= ev.lus >= lo
    if event is not None:
        mask &= ev.event == event
    return ev[mask]


def _first_per_person(t: pd.DataFrame, time: str) -> pd.DataFrame:
    """Each person's first row by (time, uuid); the rows without a person form one group, as in SQL."""
    return t.sort_values([time, "uuid_rank"]).drop_duplicates("person_id", keep="first")


def _plain(query: Any) -> None:
    if query.filters or query.breakdown is not None:
        raise NotImplementedError("the pandas baseline covers queries without filters or breakdown")


# -- trends ----------------------------------------------------------------------------------------
def trends(ev: pd.DataFrame, q: Any) -> dict[str, pd.DataFrame]:
    from siyu.analytics.queries.trends import previous_range

    _plain(q)
    start, end = q.date_range()
    prev_start, _ = previous_range(start, end)
    both = _between(ev, _us(prev_start), _us(end + timedelta(days=1)))
    frames = {}
    for i, series in enumerate(q.series):
        t = both if series.event is None else both[both.event == series.event]
        current = t.lus >= _us(start)
        idx, first_day = _period(t.lus // DAY_US, q.interval)
        now = t[current]
        points = _series_value(now, series.math, idx[current])
        frames[f"points_{i}"] = pd.DataFrame({"bucket": [first_day(b) for b in points.index],
                                              "breakdown": "", "value": points.to_numpy()})
        totals = _series_value(t, series.math, np.where(current, "current", "previous"))
        frames[f"totals_{i}"] = pd.DataFrame({"period": totals.index, "breakdown": "",
                                              "value": totals.to_numpy()})
    return frames


def _series_value(t: pd.DataFrame, math_: str, keys: Any) -> pd.Series:
    groups = t.groupby(keys, sort=True)
    if math_ == "count":
        return groups.size()
    if math_ == "unique_customers":
        return groups["person_id"].nunique()
    if math_ == "sum":
        return groups["cents"].sum() / 100
    raise NotImplementedError(f"the pandas baseline has no {math_!r}")


# -- retention --------------------------------------------------------------------------------------
def retention(ev: pd.DataFrame, q: Any) -> dict[str, pd.DataFrame]:
    _plain(q)
    if q.start_mode != "first":
        raise NotImplementedError("the pandas baseline covers start_mode first")
    lo, hi = (_us(b) for b in q.bounds())
    entries = _first_per_person(ev[ev.event == q.start_event], "lus")
    entries = entries[(entries.lus >= lo) & (entries.lus < hi)]
    idx, first_day = _period(entries.lus // DAY_US, q.interval)
    entries = pd.DataFrame({"person_id": entries.person_id, "idx": idx, "start_us": entries.lus,
                            "start_day": entries.lus // DAY_US})
    known = entries[entries.person_id.notna()]
    returns = _between(ev, lo, hi, q.return_event)
    ret_days = returns.lus // DAY_US
    returns = pd.DataFrame({"person_id": returns.person_id, "day": ret_days,
                            "idx_r": _period(ret_days, q.interval)[0]}).drop_duplicates()
    j = known.merge(returns, on="person_id")
    returned = _returned(j, q.periods)
    sizes = entries.groupby("idx").size().rename("size").reset_index()
    frames = {"sizes": sizes, "returned": returned, "revenue": _cohort_revenue(ev, known, lo, hi, q),
              "curve": _curve(entries, j, q)}
    for frame in frames.values():
        if "idx" in frame:
            frame.insert(0, "cohort", [first_day(i) for i in frame.pop("idx")])
        frame.insert(0, "breakdown", "")
    return frames


def _returned(j: pd.DataFrame, periods: int) -> pd.DataFrame:
    j = j.assign(period=j.idx_r - j.idx)
    j = j[(j.period >= 1) & (j.period < periods)]
    return j.groupby(["idx", "period"])["person_id"].nunique().rename("customers").reset_index()


def _cohort_revenue(ev: pd.DataFrame, known: pd.DataFrame, lo: int, hi: int, q: Any) -> pd.DataFrame:
    o = _between(ev, lo, hi, ORDER)
    o = pd.DataFrame({"person_id": o.person_id, "cents": o.cents, "us": o.lus,
                      "idx_o": _period(o.lus // DAY_US, q.interval)[0]})
    j = known.merge(o, on="person_id")
    j = j[j.us >= j.start_us]
    j = j.assign(period=j.idx_o - j.idx)
    j = j[j.period < q.periods]
    revenue = j.groupby(["idx", "period"])["cents"].sum() / 100
    return revenue.rename("revenue").reset_index()


def _curve(entries: pd.DataFrame, j: pd.DataFrame, q: Any) -> pd.DataFrame:
    j = j.assign(after=j.day - j.start_day)
    j = j[j.after >= 1]
    hits = j.groupby("person_id")["after"].max().rename("last").to_frame()
    for n in q.curve_days:
        hits[f"hit_{n}"] = hits.index.isin(j.person_id[j.after == n])
    e = entries.merge(hits, left_on="person_id", right_index=True, how="left")
    end_day = (q.date_range()[1] - EPOCH).days
    row: dict[str, Any] = {}
    for n in q.curve_days:
        row[f"eligible_{n}"] = int((e.start_day <= end_day - n).sum())
        row[f"exact_{n}"] = int(e[f"hit_{n}"].eq(True).sum())
        row[f"after_{n}"] = int((e["last"] >= n).sum())
    return pd.DataFrame([row])


# -- funnel ------------------------------------------------------------------------------------------
def funnel(ev: pd.DataFrame, q: Any) -> dict[str, pd.DataFrame]:
    _plain(q)
    if q.order != "ordered" or any(s.filters for s in q.steps) or q.dropped_at_step is not None:
        raise NotImplementedError("the pandas baseline covers ordered funnels without step filters")
    lo, hi = (_us(b) for b in q.bounds())
    window = q.window_seconds()
    late = hi + (window + 86_400) * 1_000_000
    entries = _first_per_person(_between(ev, lo, hi, q.steps[0].event), "ts_us")
    cur = pd.DataFrame({"person_id": entries.person_id, "t_1": entries.ts_us, "s_1": _seconds(entries.ts_us)})
    cur = cur.reset_index(drop=True)
    n = len(q.steps)
    for k in range(2, n + 1):
        cur = _next_step(cur, _between(ev, lo, late, q.steps[k - 1].event), k, window)
    reached = cur[[f"s_{k}" for k in range(2, n + 1)]].notna().sum(axis=1) + 1
    row: dict[str, Any] = {"breakdown": ""}
    for k in range(1, n + 1):
        row[f"c_{k}"] = int((reached >= k).sum())
        if k > 1:
            took = (cur[f"s_{k}"] - cur[f"s_{k - 1}"])[reached >= k]
            row[f"med_{k}"], row[f"avg_{k}"] = took.median(), took.mean()
    return {"steps": pd.DataFrame([row]) if len(cur) else pd.DataFrame(columns=list(row))}


def _seconds(us: pd.Series) -> pd.Series:
    """Epoch seconds rounded half to even, as DuckDB casts EPOCH(ts) to BIGINT."""
    return np.rint(us / 1e6).astype("int64")


def _next_step(cur: pd.DataFrame, events: pd.DataFrame, k: int, window: int) -> pd.DataFrame:
    """``cur`` with t_k, s_k: each person's first step-k event strictly after step k-1, within the window.

    The first later event is enough: seconds never decrease with time, so when
    it misses the window every later one does too.
    """
    prev = f"t_{k - 1}"
    ready = cur[cur[prev].notna() & cur.person_id.notna()].reset_index()
    ready[prev] = ready[prev].astype("int64")
    later = pd.DataFrame({"person_id": events.person_id, f"t_{k}": events.ts_us})
    later = later[later.person_id.notna()].sort_values(f"t_{k}")
    found = pd.merge_asof(ready.sort_values(prev), later, left_on=prev, right_on=f"t_{k}", by="person_id",
                          direction="forward", allow_exact_matches=False)
    found[f"s_{k}"] = np.rint(found[f"t_{k}"] / 1e6)
    found = found[found[f"s_{k}"] - found.s_1 <= window].set_index("index")
    return cur.join(found[[f"t_{k}", f"s_{k}"]])


# -- repurchase --------------------------------------------------------------------------------------
def _orders(ev: pd.DataFrame, hi: int, lo: int | None = None) -> pd.DataFrame:
    o = _between(ev, lo, hi, ORDER)
    return o[o.person_id.notna()]


def repurchase(ev: pd.DataFrame, q: Any) -> dict[str, pd.DataFrame]:
    _plain(q)
    start, end = q.date_range()
    orders = _orders(ev, _us(q.bounds()[1])).sort_values(["person_id", "lus", "uuid_rank"])
    seq = orders.groupby("person_id").cumcount()
    first, second = orders[seq == 0], orders[seq == 1]
    first = pd.DataFrame({"person_id": first.person_id, "first_day": first.lus // DAY_US})
    first = first[(first.first_day >= (start - EPOCH).days) & (first.first_day <= (end - EPOCH).days)]
    second = pd.DataFrame({"person_id": second.person_id, "second_day": second.lus // DAY_US})
    j = first.merge(second, on="person_id", how="left")
    gap = j.second_day - j.first_day
    if q.within_days is not None:
        gap = gap.where(gap <= q.within_days)
    idx, first_day = _period(j.first_day, q.interval)
    j = pd.DataFrame({"idx": idx, "breakdown": "", "gap_days": gap})
    counts = j.groupby(["idx", "breakdown", "gap_days"], dropna=False).size().rename("customers").reset_index()
    counts.insert(0, "cohort", [first_day(i) for i in counts.pop("idx")])
    return {"buyers": counts}


# -- rfm -------------------------------------------------------------------------------------------------
def rfm(ev: pd.DataFrame, q: Any) -> dict[str, pd.DataFrame]:
    from siyu.analytics.queries.rfm import EIGHT

    _plain(q)
    if q.scheme != "eight":
        raise NotImplementedError("the pandas baseline covers the eight-class scheme")
    lo, hi = (_us(b) for b in q.bounds())
    orders = _orders(ev, hi, lo if q.lookback == "range" else None)
    c = orders.groupby("person_id").agg(last=("lus", "max"), frequency=("lus", "size"), cents=("cents", "sum"))
    c = c.reset_index()
    c["cents"] = c.cents.astype("int64")  # exact: cents × customers overflows a float's 53 bits
    c["recency_days"] = (q.date_range()[1] - EPOCH).days - c["last"] // DAY_US
    c["r_score"] = _ntile(c, ["recency_days", "person_id"], [False, True])
    c["f_score"] = _ntile(c, ["frequency", "person_id"], [True, True])
    c["m_score"] = _ntile(c, ["cents", "person_id"], [True, True])
    n = len(c)
    high = (c.recency_days * n < c.recency_days.sum(), c.frequency * n > c.frequency.sum(), c.cents * n > c.cents.sum())
    keys = {(k.r_high, k.f_high, k.m_high): k.key for k in EIGHT}
    c["rfm_class"] = [keys[(bool(r), bool(f), bool(m))] for r, f, m in zip(*high, strict=True)]
    c["monetary"] = c.cents / 100
    classes = c.groupby("rfm_class").agg(customers=("person_id", "size"), revenue=("cents", "sum"),
                                         recency=("recency_days", "sum"), frequency=("frequency", "sum"))
    classes["revenue"] = classes.revenue / 100
    top = c.sort_values(["cents", "person_id"], ascending=[False, True]).head(q.customers_limit)
    columns = ["person_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_class"]
    return {"classes": classes.reset_index(), "customers": top[columns]}


def _ntile(frame: pd.DataFrame, by: list[str], ascending: list[bool], tiles: int = 5) -> np.ndarray:
    """SQL NTILE(tiles) over ``by`` (1-based): the first n mod tiles groups hold one row more."""
    n = len(frame)
    position = np.empty(n, dtype="int64")
    position[frame.sort_values(by, ascending=ascending).index.to_numpy()] = np.arange(n)
    size, extra = divmod(n, tiles)
    big = extra * (size + 1)
    small = extra + (position - big) // max(size, 1)
    return np.where(position < big, position // (size + 1), small) + 1


FRAMES = {"trends": trends, "retention": retention, "funnel": funnel, "repurchase": repurchase, "rfm": rfm}


# -- comparing answers ---------------------------------------------------------------------------------
def compare(runner: Any, pandas: Any, path: str = "") -> list[str]:
    """Differences between two answers (model dumps): counts exactly, other numbers to 1e-6 relative."""
    if isinstance(runner, dict) and isinstance(pandas, dict):
        if runner.keys() != pandas.keys():
            return [f"{path}: keys {sorted(runner)} != {sorted(pandas)}"]
        return [d for key in runner if key != "cached" for d in compare(runner[key], pandas[key], f"{path}.{key}")]
    if isinstance(runner, list) and isinstance(pandas, list):
        if len(runner) != len(pandas):
            return [f"{path}: {len(runner)} items != {len(pandas)}"]
        return [d for i, (a, b) in enumerate(zip(runner, pandas, strict=True)) for d in compare(a, b, f"{path}[{i}]")]
    if isinstance(runner, float) or isinstance(pandas, float):
        if runner is not None and pandas is not None and not isinstance(runner, bool) and math.isclose(
                runner, pandas, rel_tol=1e-6, abs_tol=1e-9):
            return []
    elif runner == pandas and type(runner) is type(pandas):
        return []
    return [f"{path}: runner {runner!r} != pandas {pandas!r}"]

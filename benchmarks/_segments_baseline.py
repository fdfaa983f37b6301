"""The segment benchmark's baselines: a rule evaluated in pandas, and row by row in Python.

``bench_segments.py`` counts a rule through ``siyu.segments`` (one compiled query)
and checks both baselines give the same count. Both read frames loaded once
from the store (``load``, not timed) and follow the rule's definitions in
docs/segments.md, not the compiler's plan: a customer without a matching event
has a count of 0 and a sum of 0 (so ``count = 0`` keeps those who never did
it), a missing attribute fails every comparison, and groups are plain
AND / OR / NOT. Only the condition kinds the benchmark's rules use are written
here: attributes stored on the persons copy, events (count, aggregate of
revenue, ``within_days``) and tags.

- ``pandas_members``: each condition is a boolean column over the persons frame
  (vectorised: ``isin``, ``groupby``, comparisons); groups combine the columns.
- ``row_members``: the way a contact-by-contact segment builder (Mautic's
  segment filters run per contact) works — for each customer, each condition in
  turn, stopping at the first that decides; an event condition walks that
  customer's events.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

COMPARE = {"eq": operator.eq, "neq": operator.ne, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt,
           "lte": operator.le}
EPOCH = datetime(1970, 1, 1)


@dataclass
class Frames:
    persons: pd.DataFrame  # person_id and the attributes the rules read
    events: pd.DataFrame  # event (categorical), person_id, lus (brand-clock µs), revenue (float, NaN unset)
    tags: pd.DataFrame  # person_id, tag


def load(cursor, attributes: dict[str, bool]) -> Frames:
    """The persons' ``attributes`` (name -> numeric: read as float), every event with a person, and
    every tag, from the analytics views."""
    columns = ", ".join(["person_id", *(f"CAST({name} AS DOUBLE) AS {name}" if numeric else name
                                         for name, numeric in attributes.items())])
    persons = cursor.execute(f"SELECT {columns} FROM analytics_persons ORDER BY person_id").df()
    events = cursor.execute(
        "SELECT event, person_id, epoch_us(local_ts) AS lus, CAST(revenue AS DOUBLE) AS revenue"
        " FROM analytics_events WHERE person_id IS NOT NULL ORDER BY person_id").df()
    events["event"] = events["event"].astype("category")
    tags = cursor.execute("SELECT person_id, tag FROM analytics_person_tags").df()
    return Frames(persons, events, tags)


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _compare(op: str, left: Any, value: Any) -> Any:
    if op == "in":
        return left.isin(value) if isinstance(left, pd.Series) else left in value
    if op == "not_in":
        return ~left.isin(value) & left.notna() if isinstance(left, pd.Series) else left not in value
    return COMPARE[op](left, value)


# -- pandas, vectorised ------------------------------------------------------------------------
def pandas_members(frames: Frames, rule: dict[str, Any], now: datetime) -> np.ndarray:
    """Person ids matching ``rule`` (the JSON form), in ascending order."""
    mask = _mask(frames, rule, now)
    return frames.persons.person_id.to_numpy()[mask.to_numpy()]


def _mask(frames: Frames, node: dict[str, Any], now: datetime) -> pd.Series:
    if "and" in node:
        return _fold(frames, node["and"], now, operator.and_)
    if "or" in node:
        return _fold(frames, node["or"], now, operator.or_)
    if "not" in node:
        return ~_mask(frames, node["not"], now)
    kind = node["type"]
    p = frames.persons
    if kind == "attribute":
        column = p[node["field"]]
        return pd.Series(_compare(node["op"], column, node["value"]), index=p.index).fillna(False).astype(bool) \
            & column.notna()
    if kind == "tag":
        held = p.person_id.isin(frames.tags.person_id[frames.tags.tag == node["tag"]])
        return held if node.get("op", "has") == "has" else ~held
    if kind == "event":
        return _event_mask(frames, node, now)
    raise ValueError(f"the baseline has no {kind} conditions")


def _fold(frames: Frames, nodes: list[dict[str, Any]], now: datetime, op) -> pd.Series:
    out = _mask(frames, nodes[0], now)
    for node in nodes[1:]:
        out = op(out, _mask(frames, node, now))
    return out


def _event_mask(frames: Frames, node: dict[str, Any], now: datetime) -> pd.Series:
    e = frames.events
    keep = np.ones(len(e), dtype=bool)
    if node.get("event") is not None:
        keep &= (e.event == node["event"]).to_numpy()
    if node.get("within_days") is not None:
        keep &= (e.lus >= _us(now - timedelta(days=node["within_days"]))).to_numpy()
    chosen = e[keep]
    agg = node.get("aggregate")
    grouped = chosen.groupby("person_id", sort=False)
    n = grouped.size().reindex(frames.persons.person_id, fill_value=0).to_numpy()
    tests = []
    if node.get("count") is None and agg is None:
        tests.append(n >= 1)
    if node.get("count") is not None:
        tests.append(COMPARE[node["count"]["op"]](n, node["count"]["value"]))
    if agg is not None:
        fn = {"avg": "mean"}.get(agg["fn"], agg["fn"])
        v = getattr(grouped.revenue, fn)().reindex(frames.persons.person_id)
        v = v.fillna(0) if agg["fn"] == "sum" else v
        tests.append((COMPARE[agg["op"]](v, agg["value"]) & v.notna()).to_numpy())
    out = tests[0]
    for test in tests[1:]:
        out = out & test
    return pd.Series(out, index=frames.persons.index)


# -- row by row ----------------------------------------------------------------------------------
@dataclass
class Rows:
    """The frames as Python objects: one dict per customer, each customer's events as a slice."""

    persons: list[dict[str, Any]]
    spans: dict[int, tuple[int, int]]
    event: list[str]
    lus: list[int]
    revenue: list[float]
    tags: dict[int, set[str]]


def rows(frames: Frames) -> Rows:
    """``frames`` turned into what a per-contact loop reads (not timed: a CRM has it in memory or in rows)."""
    e = frames.events
    pid = e.person_id.to_numpy()
    starts = np.flatnonzero(np.r_[True, pid[1:] != pid[:-1]]) if len(pid) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(pid)]
    spans = {int(pid[s]): (int(s), int(t)) for s, t in zip(starts, ends, strict=True)}
    tags: dict[int, set[str]] = {}
    for person, tag in zip(frames.tags.person_id.tolist(), frames.tags.tag.tolist(), strict=True):
        tags.setdefault(int(person), set()).add(tag)
    return Rows(frames.persons.to_dict("records"), spans, e.event.astype(str).tolist(), e.lus.tolist(),
                e.revenue.tolist(), tags)


def row_members(data: Rows, rule: dict[str, Any], now: datetime) -> list[int]:
    """Person ids matching ``rule``, testing one customer at a time."""
    return [int(p["person_id"]) for p in data.persons if _row(data, p, rule, now)]


def _row(data: Rows, p: dict[str, Any], node: dict[str, Any], now: datetime) -> bool:
    if "and" in node:
        return all(_row(data, p, n, now) for n in node["and"])
    if "or" in node:
        return any(_row(data, p, n, now) for n in node["or"])
    if "not" in node:
        return not _row(data, p, node["not"], now)
    kind = node["type"]
    if kind == "attribute":
        value = p[node["field"]]
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        return not missing and bool(_compare(node["op"], value, node["value"]))
    if kind == "tag":
        held = node["tag"] in data.tags.get(int(p["person_id"]), ())
        return held if node.get("op", "has") == "has" else not held
    if kind == "event":
        return _row_event(data, int(p["person_id"]), node, now)
    raise ValueError(f"the baseline has no {kind} conditions")


def _row_event(data: Rows, person: int, node: dict[str, Any], now: datetime) -> bool:
    name, days, agg = node.get("event"), node.get("within_days"), node.get("aggregate")
    since = _us(now - timedelta(days=days)) if days is not None else None
    n, values = 0, []
    start, end = data.spans.get(person, (0, 0))
    for i in range(start, end):
        if (name is None or data.event[i] == name) and (since is None or data.lus[i] >= since):
            n += 1
            if agg is not None and not math.isnan(data.revenue[i]):
                values.append(data.revenue[i])
    count = node.get("count")
    if count is None and agg is None:
        return n >= 1
    if count is not None and not COMPARE[count["op"]](n, count["value"]):
        return False
    if agg is None:
        return True
    if agg["fn"] == "sum":
        return COMPARE[agg["op"]](sum(values), agg["value"])
    if not values:
        return False
    value = {"avg": lambda v: sum(v) / len(v), "min": min, "max": max}[agg["fn"]](values)
    return COMPARE[agg["op"]](value, agg["value"])

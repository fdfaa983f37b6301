"""What every insight query shares: date range, filters, breakdown, and the runner contract.

A runner (one class per insight kind) takes a typed query, *builds* Ibis
expressions over the engine's ``events`` and ``persons`` relations, and then
*calculates* the typed result from the executed frames. Building never touches
data, so the same runner runs on DuckDB and on Spark.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import date, datetime, timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.types as ir
import pandas as pd
from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, model_validator

from siyu.analytics.engines import Engine
from siyu.db import MAX_INT

# Columns of ``events`` a query may filter or break down on; ``properties.<key>``
# reaches into the event's properties.
EVENT_FIELDS = ("event", "type", "channel", "store", "utm_source", "utm_medium", "utm_campaign", "qr_scene",
                "source_id", "order_id", "revenue")
# Attributes of ``persons``; ``age_band`` is derived from ``birth_year``.
PERSON_FIELDS = ("acquisition_channel", "first_store", "first_utm_source", "first_qr_scene", "gender", "city",
                 "birth_year", "age_band", "order_count", "total_spend", "referrer_id")
NUMERIC_FIELDS = {"source_id", "revenue", "birth_year", "order_count", "total_spend", "referrer_id"}
AGE_BANDS = ((0, 18, "<18"), (18, 25, "18-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"),
             (55, 200, "55+"))
MAX_RANGE_DAYS = 3 * 366

Op = Literal["eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "is_set", "is_not_set"]


class Filter(BaseModel):
    """One condition on an event field (``on: event``) or a customer attribute (``on: person``)."""

    model_config = ConfigDict(extra="forbid")

    on: Literal["event", "person"] = "event"
    field: str = Field(description="an event column, `properties.<key>`, or a person attribute")
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> Filter:
        _check_field(self.on, self.field)
        check_value(self.op, self.value)
        return self


def check_value(op: str, value: Any) -> None:
    """Raise ValueError unless ``value`` suits ``op`` (a list for in/not_in, a number to compare ...)."""
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"`{op}` needs a non-empty list as value")
    elif op in ("is_set", "is_not_set"):
        pass
    elif value is None or isinstance(value, (list, dict)):
        raise ValueError(f"`{op}` needs one value (a string or a number)")
    if op in ("gt", "gte", "lt", "lte") and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise ValueError(f"`{op}` compares numbers: value must be a number")
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, int) and not -MAX_INT - 1 <= v <= MAX_INT:  # the stores' integers are 64-bit
            raise ValueError(f"{v} is out of range: whole numbers run from {-MAX_INT - 1} to {MAX_INT}")


class Breakdown(BaseModel):
    """Split the answer by the values of one field (the ``limit`` most frequent; the rest is "other")."""

    model_config = ConfigDict(extra="forbid")

    on: Literal["event", "person"] = "event"
    field: str
    limit: int = Field(10, ge=1, le=50)

    @model_validator(mode="after")
    def _check(self) -> Breakdown:
        _check_field(self.on, self.field)
        return self


def _check_field(on: str, name: str) -> None:
    if on == "event":
        if name.startswith("properties."):
            if not name[len("properties."):]:
                raise ValueError("`properties.` needs a property name after the dot")
            return
        if name not in EVENT_FIELDS:
            raise ValueError(f"unknown event field {name!r}: use one of {', '.join(EVENT_FIELDS)}"
                             " or properties.<key>")
    elif name not in PERSON_FIELDS:
        raise ValueError(f"unknown person field {name!r}: use one of {', '.join(PERSON_FIELDS)}")


class QueryBase(BaseModel):
    """Fields every insight takes. Dates are days on the brand's clock, both ends included."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    date_from: date | None = Field(None, description="first day (default: 29 days before date_to)")
    date_to: date | None = Field(None, description="last day, included (default: today)")
    filters: list[Filter] = Field(default_factory=list, max_length=20)
    breakdown: Breakdown | None = None

    @model_validator(mode="after")
    def _check_range(self) -> QueryBase:
        start, end = self.date_range()
        if start > end:
            raise ValueError("date_from is after date_to")
        if (end - start).days > MAX_RANGE_DAYS:
            raise ValueError(f"the date range may span at most {MAX_RANGE_DAYS} days")
        return self

    def date_range(self) -> tuple[date, date]:
        end = self.date_to or today()
        return self.date_from or end - timedelta(days=29), end

    def bounds(self) -> tuple[datetime, datetime]:
        """The range as naive local times [start, end) for comparing with ``local_ts``."""
        start, end = self.date_range()
        return datetime.combine(start, datetime.min.time()), datetime.combine(end + timedelta(days=1),
                                                                              datetime.min.time())


def today() -> date:
    return datetime.now(ZoneInfo(settings.TIME_ZONE)).date()


class ResultBase(BaseModel):
    """Fields every answer carries."""

    kind: str
    engine: str = Field(description="the engine that computed it: duckdb or spark")
    timezone: str = Field(description="the brand's time zone that decided what a day is")
    date_from: date
    date_to: date
    cached: bool = Field(False, description="answered from the cache (no new events since)")


Q = TypeVar("Q", bound=QueryBase)
R = TypeVar("R", bound=ResultBase)


class Runner(ABC, Generic[Q, R]):
    """One insight kind: build expressions from the query, then calculate the result."""

    kind: ClassVar[str]
    query_model: ClassVar[type[QueryBase]]
    result_model: ClassVar[type[ResultBase]]
    example: ClassVar[dict[str, Any]] = {}

    def __init__(self, query: Q, engine: Engine) -> None:
        self.query = query
        self.engine = engine
        self._shared: list[ir.Table] | None = None  # set while ``run`` runs

    @abstractmethod
    def build(self) -> dict[str, ir.Expr]:
        """Named Ibis expressions; nothing is executed here."""

    @abstractmethod
    def calculate(self, frames: dict[str, pd.DataFrame]) -> R:
        """The typed result from the executed expressions."""

    def run(self) -> R:
        self._shared = []
        try:
            frames = {name: self.engine.execute(expr) for name, expr in self.build().items()}
        finally:
            shared, self._shared = self._shared, None
            for table in shared:
                table.release()
        return self.calculate(frames)

    def share(self, table: ir.Table) -> ir.Table:
        """``table``, computed once when several of ``build``'s expressions read it.

        While ``run`` runs, the engine materialises it (a temporary table, released
        afterwards); otherwise ``build`` stays free of execution and returns it as is.
        """
        if self._shared is None:
            return table
        cached = table.cache()
        self._shared.append(cached)
        return cached

    def result_fields(self) -> dict[str, Any]:
        start, end = self.query.date_range()
        return {"kind": self.kind, "engine": self.engine.name, "timezone": settings.TIME_ZONE,
                "date_from": start, "date_to": end}

    # -- helpers shared by runners --------------------------------------------------
    def events(self, *, in_range: bool = True, filters: bool = True) -> ir.Table:
        """``events`` within the query's dates, with its filters applied."""
        t = self.engine.events()
        if in_range:
            lo, hi = self.query.bounds()
            t = t.filter((t.local_ts >= lo) & (t.local_ts < hi))
        if filters:
            t = apply_filters(self.engine, t, self.query.filters)
        return t

    def with_breakdown(self, t: ir.Table) -> ir.Table:
        """``t`` (which has ``person_id``) with a ``breakdown`` string column ("" when none)."""
        return add_breakdown(self.engine, t, self.query.breakdown)


# -- filters and breakdowns ----------------------------------------------------------
def event_value(engine: Engine, t: ir.Table, name: str) -> ir.Value:
    if name.startswith("properties."):
        return engine.json_string(t.properties, name[len("properties."):])
    return t[name]


def person_value(p: ir.Table, name: str) -> ir.Value:
    if name == "age_band":
        age = ibis.literal(today().year) - p.birth_year
        case = ibis.cases(*[((age >= lo) & (age < hi), label) for lo, hi, label in AGE_BANDS], else_=None)
        return case
    return p[name]


def condition(value: ir.Value, f: Filter, numeric: bool) -> ir.BooleanValue:
    """``f``'s test (its ``op`` and ``value``) applied to ``value``; NULL never equals anything."""
    v = f.value
    if f.op == "is_set":
        return value.notnull()
    if f.op == "is_not_set":
        return value.isnull()
    if f.op in ("in", "not_in"):
        vals = [_coerce(x, numeric) for x in v]
        cond = value.isin(vals)
        return cond if f.op == "in" else ~cond | value.isnull()
    if f.op == "contains":
        return value.cast("string").contains(str(v))
    if f.op in ("gt", "gte", "lt", "lte"):
        num = value if numeric else value.try_cast("float64")
        return {"gt": num > v, "gte": num >= v, "lt": num < v, "lte": num <= v}[f.op]
    target = _coerce(v, numeric)
    if f.op == "eq":
        return value == target
    return (value != target) | value.isnull()


def _coerce(value: Any, numeric: bool) -> Any:
    if numeric:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise QueryError([{"field": "filters.value", "reason": f"{value!r} is not a number"}]) from None
    return str(value)


def apply_filters(engine: Engine, t: ir.Table, filters: list[Filter]) -> ir.Table:
    """``t`` (events) restricted by event filters, and to persons matching the person filters."""
    for f in filters:
        if f.on == "event":
            t = t.filter(condition(event_value(engine, t, f.field), f, f.field in NUMERIC_FIELDS))
    if any(f.on == "person" for f in filters):
        t = t.semi_join(persons_matching(engine, filters).select("person_id"), "person_id")
    return t


def persons_matching(engine: Engine, filters: list[Filter]) -> ir.Table:
    """``persons`` restricted by the person filters."""
    p = engine.persons()
    for f in filters:
        if f.on == "person":
            p = p.filter(condition(person_value(p, f.field), f, f.field in NUMERIC_FIELDS))
    return p


def add_breakdown(engine: Engine, t: ir.Table, breakdown: Breakdown | None) -> ir.Table:
    if breakdown is None:
        return t.mutate(breakdown=ibis.literal(""))
    if breakdown.on == "event":
        value = event_value(engine, t, breakdown.field)
        return t.mutate(breakdown=value.cast("string").fill_null("(none)"))
    p = engine.persons()
    p = p.select(person_id=p.person_id, _bd=person_value(p, breakdown.field).cast("string"))
    joined = t.left_join(p, t.person_id == p.person_id).drop("person_id_right")
    return joined.mutate(breakdown=joined._bd.fill_null("(none)")).drop("_bd")


def top_values(frame: pd.DataFrame, weight: str, limit: int, column: str = "breakdown") -> pd.DataFrame:
    """Keep the ``limit`` breakdown values with the largest total ``weight``; fold the rest into "(other)"."""
    if frame.empty or frame[column].nunique() <= limit:
        return frame
    keep = set(frame.groupby(column)[weight].sum().nlargest(limit).index)
    out = frame.copy()
    out[column] = out[column].where(out[column].isin(keep), "(other)")
    return out


def as_date(value: Any) -> date:
    """A day from whatever an engine returned (date, datetime, Timestamp)."""
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, datetime):
        return value.date()
    return value


class QueryError(ValueError):
    """The query cannot be run as given; ``errors`` lists field and reason."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))

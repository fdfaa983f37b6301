"""Reading segments: count a rule, list its members, describe them (persona).

Everything here runs one compiled query on the configured analytics engine
(``analytics.engines.get_engine``); stored membership is read from the event store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import ibis.expr.types as ir
import pandas as pd
from django.conf import settings
from pydantic import BaseModel, Field

from siyu.accounts.actor import Actor
from siyu.analytics.engine import get_store
from siyu.analytics.engines import Engine, get_engine
from siyu.analytics.queries.base import person_value
from siyu.analytics.queries.repurchase import money, rate
from siyu.analytics.queries.rfm import EIGHT
from siyu.customers.models import Person
from siyu.customers.schemas import person_summary
from siyu.segments.compiler import Compiler, Context, Thresholds
from siyu.segments.models import Segment, TierSettings
from siyu.segments.rules import LIFECYCLE_STAGES, VALUE_TIERS, Rule, parse_rule

# label (English, Chinese) of each value of the built-in segmentations
STAGE_LABELS = {"new": ("New", "新客"), "active": ("Active", "活跃"), "reactivated": ("Reactivated", "回流"),
                "silent": ("Silent", "沉默"), "churned": ("Churned", "流失")}
TIER_LABELS = {"high_value": ("High-value paying", "高价值付费客户"), "potential": ("Potential", "潜力客户"),
               "low_activity": ("Low activity", "低活跃客户")}
RFM_LABELS = {c.key: (c.label_en, c.label_zh) for c in EIGHT}
PERSONA_DIMENSIONS = ("gender", "age_band", "city", "acquisition_channel", "value_tier", "rfm_class",
                      "lifecycle_stage")
CITY_LIMIT = 10


def brand_now() -> datetime:
    """Now on the brand's clock, naive (compared with events' ``local_ts``)."""
    return datetime.now(ZoneInfo(settings.TIME_ZONE)).replace(tzinfo=None)


def thresholds() -> Thresholds:
    t = TierSettings.current()
    return Thresholds(high_value_spend=t.high_value_spend, high_value_orders=t.high_value_orders,
                      lookback_days=t.lookback_days, active_days=t.active_days, silent_after=t.silent_after,
                      churned_after=t.churned_after)


def context(now: datetime | None = None) -> Context:
    return Context(now=now or brand_now(), thresholds=thresholds(),
                   segment_rule=lambda pk: Segment.objects.filter(pk=pk).values_list("rule", flat=True).first())


def compiler(engine: Engine | None = None, now: datetime | None = None, *, materialize: bool = False) -> Compiler:
    return Compiler(engine or get_engine(), context(now), materialize=materialize)


def count(body: Any, *, engine: Engine | None = None, now: datetime | None = None) -> int:
    """How many customers match the rule now. Raises RuleError for a bad rule."""
    c = compiler(engine, now)
    rule = parse_rule(body)
    return int(c.engine.execute(c.count(rule))["count"].iloc[0])


def member_ids(rule: Rule, *, engine: Engine | None = None, now: datetime | None = None,
               limit: int | None = None, using: Compiler | None = None) -> list[int]:
    """The matching person ids in ascending order (the first ``limit``). ``using``: a compiler
    shared by several rules (its engine and time then apply)."""
    c = using or compiler(engine, now)
    m = c.members(rule).order_by("person_id")
    if limit is not None:
        m = m.limit(limit)
    return [int(x) for x in c.engine.execute(m)["person_id"]]


# -- stored membership (the last refresh) ---------------------------------------------------------
MAX_CHANGES = 1_000_000


def stored_members(segment_id: int, actor: Actor, *, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of a segment's members as customer summaries (masked by ``actor``), and how many
    there are."""
    store = get_store()
    ids = store.segment_members(segment_id, offset=offset, limit=limit)
    people = Person.objects.in_bulk(ids)
    return {"count": store.segment_size(segment_id),
            "items": [person_summary(people[pk], actor) for pk in ids if pk in people]}


def changes(segment_id: int, since: datetime) -> dict[str, Any]:
    """Who entered and who left a segment at the refreshes since ``since``."""
    rows = get_store().segment_changes(segment_id, since, limit=MAX_CHANGES)
    return {"since": since, "entered": [p for p, c, _at in rows if c == "entered"],
            "left": [p for p, c, _at in rows if c == "left"]}


# -- persona --------------------------------------------------------------------------------------
class Share(BaseModel):
    value: str
    customers: int
    share: float = Field(description="of the segment, 4 decimals")


class PersonaFigures(BaseModel):
    customers: int
    buyers: int = Field(description="customers with at least one order")
    orders: int
    total_spend: float
    average_spend: float | None = Field(description="total spend per customer")
    average_order_value: float | None = Field(description="total spend / orders (客单价)")
    repurchase_rate: float = Field(description="buyers with 2+ orders / buyers")
    average_p_alive: float | None
    predicted_spend: float | None = Field(description="sum of predicted spend over the model's horizon")
    average_clv: float | None


class Persona(BaseModel):
    """What a segment is made of and what it is worth."""

    figures: PersonaFigures
    dimensions: dict[str, list[Share]] = Field(description="dimension -> values by customers, largest first")


def persona(body: Any, *, engine: Engine | None = None, now: datetime | None = None) -> Persona:
    """The make-up of the customers matching the rule: gender, age band, region, channel, value
    tier, RFM class, lifecycle stage, and their key figures."""
    c = compiler(engine, now)
    rule = parse_rule(body)
    members = c.members(rule)
    p = c.persons(attributes={"rfm_class", "value_tier", "lifecycle_stage"})
    p = p.filter(p.person_id.isin(members.person_id))
    p = p.mutate(
        age_band=person_value(p, "age_band"), value_tier=c.attribute(p, "value_tier"),
        has_order=(p.order_count > 0).cast("int64"), repeat=(p.order_count >= 2).cast("int64"))
    figures = p.aggregate(
        customers=p.count(), buyers=p.has_order.sum(), repeaters=p.repeat.sum(), orders=p.order_count.sum(),
        total_spend=p.total_spend.sum(), p_alive=p.p_alive.mean(), predicted_spend=p.predicted_spend.sum(),
        clv=p.clv.mean(), predicted=p.p_alive.count())
    exprs: dict[str, ir.Expr] = {"figures": figures}
    for name in PERSONA_DIMENSIONS:
        value = p[name].cast("string").fill_null("(none)")
        exprs[name] = p.group_by(value=value).aggregate(customers=p.count())
    frames = {name: c.engine.execute(expr) for name, expr in exprs.items()}
    return Persona(figures=_figures(frames.pop("figures").iloc[0]),
                   dimensions={name: _shares(frame, name) for name, frame in frames.items()})


def _figures(row: pd.Series) -> PersonaFigures:
    n, buyers, orders = int(row["customers"]), int(_num(row["buyers"])), int(_num(row["orders"]))
    spend = money(row["total_spend"])
    predicted = int(row["predicted"])
    return PersonaFigures(
        customers=n, buyers=buyers, orders=orders, total_spend=float(spend),
        average_spend=round(float(spend) / n, 2) if n else None,
        average_order_value=round(float(spend) / orders, 2) if orders else None,
        repurchase_rate=rate(int(_num(row["repeaters"])), buyers),
        average_p_alive=round(float(row["p_alive"]), 4) if predicted else None,
        predicted_spend=float(money(row["predicted_spend"])) if predicted else None,
        average_clv=round(float(row["clv"]), 2) if predicted else None)


def _num(value: Any) -> float:
    return 0.0 if value is None or pd.isna(value) else float(value)


def _shares(frame: pd.DataFrame, name: str) -> list[Share]:
    total = int(frame.customers.sum())
    frame = frame.sort_values(["customers", "value"], ascending=[False, True])
    if name == "city" and len(frame) > CITY_LIMIT:
        head, rest = frame.iloc[:CITY_LIMIT], frame.iloc[CITY_LIMIT:]
        frame = pd.concat([head, pd.DataFrame({"value": ["(other)"], "customers": [rest.customers.sum()]})])
    return [Share(value=str(r.value), customers=int(r.customers), share=rate(int(r.customers), total))
            for r in frame.itertuples()]


def label(kind: str, value: str, language: str = "en") -> str:
    """The display label of a built-in segmentation's value (``kind``: rfm, lifecycle, tier)."""
    labels = {"rfm": RFM_LABELS, "lifecycle": STAGE_LABELS, "tier": TIER_LABELS}[kind]
    en, zh = labels.get(value, (value, value))
    return zh if language.startswith("zh") else en


BUILTIN: tuple[tuple[str, str, str], ...] = (
    *(("rfm", key, "rfm_class") for key in RFM_LABELS),
    *(("lifecycle", key, "lifecycle_stage") for key in LIFECYCLE_STAGES),
    *(("tier", key, "value_tier") for key in VALUE_TIERS),
)


def builtin_rule(attribute: str, value: str) -> dict[str, Any]:
    return {"type": "attribute", "field": attribute, "op": "eq", "value": value}


"""RFM: every buyer's recency, frequency and monetary value, quintile scores and class.

``rfm_table(engine, query)`` is the per-customer relation (an Ibis table, not
executed) that the runner summarises and that segments can store.
"""

from __future__ import annotations

from datetime import date
from typing import Any, ClassVar, Literal, NamedTuple

import ibis
import ibis.expr.types as ir
import pandas as pd
from pydantic import BaseModel, Field, model_validator

from siyu.analytics.engines import Engine
from siyu.analytics.queries import register
from siyu.analytics.queries.base import QueryBase, ResultBase, Runner
from siyu.analytics.queries.repurchase import money, order_events, rate

Scheme = Literal["eight", "eleven"]
Lookback = Literal["all", "range"]


class EightClass(NamedTuple):
    key: str
    label_en: str
    label_zh: str
    r_high: bool
    f_high: bool
    m_high: bool


class ElevenClass(NamedTuple):
    key: str
    label_en: str
    label_zh: str
    r: tuple[int, int]
    fm: tuple[int, int]


# R, F and M each "high" when better than the mean of all scored customers (八大类).
EIGHT: tuple[EightClass, ...] = (
    EightClass("important_value", "Important value", "重要价值客户", True, True, True),
    EightClass("important_development", "Important to develop", "重要发展客户", True, False, True),
    EightClass("important_retention", "Important to retain", "重要保持客户", False, True, True),
    EightClass("important_winback", "Important to win back", "重要挽留客户", False, False, True),
    EightClass("general_value", "General value", "一般价值客户", True, True, False),
    EightClass("general_development", "General to develop", "一般发展客户", True, False, False),
    EightClass("general_retention", "General to retain", "一般保持客户", False, True, False),
    EightClass("general_winback", "General to win back", "一般挽留客户", False, False, False),
)

# Cells of the R score x FM score grid (FM: the mean of F and M rounded half up); ranges inclusive.
ELEVEN: tuple[ElevenClass, ...] = (
    ElevenClass("champions", "Champions", "冠军客户", (5, 5), (4, 5)),
    ElevenClass("loyal_customers", "Loyal Customers", "忠诚客户", (3, 4), (4, 5)),
    ElevenClass("potential_loyalist", "Potential Loyalist", "潜在忠诚客户", (4, 5), (2, 3)),
    ElevenClass("new_customers", "New Customers", "新客户", (5, 5), (1, 1)),
    ElevenClass("promising", "Promising", "有潜力客户", (4, 4), (1, 1)),
    ElevenClass("need_attention", "Need Attention", "需要关注客户", (3, 3), (3, 3)),
    ElevenClass("about_to_sleep", "About To Sleep", "即将沉睡客户", (3, 3), (1, 2)),
    ElevenClass("at_risk", "At Risk", "有流失风险客户", (1, 2), (3, 4)),
    ElevenClass("cant_lose_them", "Can't Lose Them", "不能失去的客户", (1, 2), (5, 5)),
    ElevenClass("hibernating", "Hibernating", "沉睡客户", (2, 2), (1, 2)),
    ElevenClass("lost", "Lost", "已流失客户", (1, 1), (1, 2)),
)


def class_labels(scheme: str) -> list[tuple[str, str, str]]:
    """(key, English label, Chinese label) of each class of ``scheme``, in display order."""
    classes = EIGHT if scheme == "eight" else ELEVEN
    return [(c.key, c.label_en, c.label_zh) for c in classes]


def eleven_class(r: int, fm: int) -> str:
    """The eleven-segment class of an R score and an FM score (both 1-5)."""
    for c in ELEVEN:
        if c.r[0] <= r <= c.r[1] and c.fm[0] <= fm <= c.fm[1]:
            return c.key
    raise ValueError(f"no class for R={r}, FM={fm}")


# -- query and result ---------------------------------------------------------------------------
class RfmQuery(QueryBase):
    """RFM of every customer with an order up to the end of date_to."""

    kind: Literal["rfm"]
    scheme: Scheme = Field("eight", description='"eight": the 八大类 classes (R, F, M above or below their '
                                                'mean); "eleven": the R x FM score grid (Champions ... Lost)')
    lookback: Lookback = Field("all", description='"all": every order up to the end of date_to; "range": '
                                                  "only orders from date_from to date_to")
    customers_limit: int = Field(100, ge=0, le=10_000,
                                 description="how many customers to list, highest monetary first")

    @model_validator(mode="after")
    def _no_breakdown(self) -> RfmQuery:
        if self.breakdown is not None:
            raise ValueError("rfm takes no breakdown: filter on the field instead")
        return self


class RfmMeans(BaseModel):
    recency_days: float | None
    frequency: float | None
    monetary: float | None


class RfmClassRow(BaseModel):
    rfm_class: str
    label_en: str
    label_zh: str
    customers: int
    share: float = Field(description="share of the scored customers, 4 decimals")
    revenue: float
    avg_recency_days: float | None
    avg_frequency: float | None
    avg_monetary: float | None


class RfmCustomer(BaseModel):
    person_id: int
    recency_days: int = Field(description="days from the last order's day to date_to")
    frequency: int = Field(description="orders")
    monetary: float = Field(description="revenue of those orders")
    r_score: int
    f_score: int
    m_score: int
    rfm_class: str


class RfmResult(ResultBase):
    scheme: Scheme
    lookback: Lookback
    as_of: date = Field(description="recency is counted to this day (date_to)")
    total_customers: int
    revenue: float
    means: RfmMeans = Field(description="the averages the eight classes compare with")
    classes: list[RfmClassRow] = Field(description="every class of the scheme, in display order")
    customers: list[RfmCustomer] = Field(description="up to customers_limit, highest monetary first")


# -- the per-customer relation ------------------------------------------------------------------
def rfm_table(engine: Engine, query: RfmQuery) -> ir.Table:
    """One row per customer with an order: person_id, recency_days, frequency, monetary, r_score,
    f_score, m_score (1-5) and rfm_class (a key of ``query.scheme``). Not executed."""
    lo, hi = query.bounds()
    orders = order_events(engine, query.filters, before=hi, since=lo if query.lookback == "range" else None)
    c = orders.group_by("person_id").aggregate(
        last_day=orders.local_ts.max().date(), frequency=orders.count(), monetary=orders.revenue.sum())
    c = c.select("person_id", "frequency",
                 recency_days=ibis.date(query.date_range()[1]).delta(c.last_day, unit="day").cast("int64"),
                 monetary=c.monetary.fill_null(0).cast("decimal(18, 2)"))
    # NTILE over a total order (value, then person_id) so every engine puts ties in the same tile.
    c = c.mutate(
        r_score=ibis.ntile(5).over(order_by=[c.recency_days.desc(), c.person_id]) + 1,
        f_score=ibis.ntile(5).over(order_by=[c.frequency, c.person_id]) + 1,
        m_score=ibis.ntile(5).over(order_by=[c.monetary, c.person_id]) + 1,
    )
    c = _with_eight_class(c) if query.scheme == "eight" else c.mutate(rfm_class=_eleven_class(c))
    return c.select("person_id", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score",
                    "rfm_class")


def _with_eight_class(c: ir.Table) -> ir.Table:
    """High means better than the mean; compared exactly (value x customers against the total) so
    that no engine's rounding of the mean decides a customer's class."""
    n = c.person_id.count()
    c = c.mutate(_r=c.recency_days * n < c.recency_days.sum(), _f=c.frequency * n > c.frequency.sum(),
                 _m=c.monetary * n > c.monetary.sum())
    return c.mutate(rfm_class=ibis.cases(
        *[((c._r == k.r_high) & (c._f == k.f_high) & (c._m == k.m_high), k.key) for k in EIGHT]))


def _eleven_class(c: ir.Table) -> ir.StringValue:
    total = c.f_score + c.m_score
    # the mean of F and M rounded half up: sums 2 -> 1, 3-4 -> 2, 5-6 -> 3, 7-8 -> 4, 9-10 -> 5
    fm = ibis.cases((total <= 2, 1), (total <= 4, 2), (total <= 6, 3), (total <= 8, 4), else_=5)
    return ibis.cases(*[(c.r_score.between(*k.r) & fm.between(*k.fm), k.key) for k in ELEVEN])


# -- runner -----------------------------------------------------------------------------------------
@register
class RfmRunner(Runner[RfmQuery, RfmResult]):
    kind = "rfm"
    query_model = RfmQuery
    result_model = RfmResult
    example: ClassVar[dict[str, Any]] = {
        "kind": "rfm", "date_from": "2025-04-01", "date_to": "2026-03-31", "scheme": "eight",
        "lookback": "range", "customers_limit": 20}

    def build(self) -> dict[str, ir.Expr]:
        t = rfm_table(self.engine, self.query)
        classes = t.group_by("rfm_class").aggregate(
            customers=t.count(), revenue=t.monetary.sum(), recency=t.recency_days.sum(),
            frequency=t.frequency.sum())
        top = t.order_by([t.monetary.desc(), t.person_id]).limit(self.query.customers_limit)
        return {"classes": classes, "customers": top}

    def calculate(self, frames: dict[str, pd.DataFrame]) -> RfmResult:
        sums = frames["classes"].set_index("rfm_class")
        total = int(sums.customers.sum())
        revenue = sum((money(v) for v in sums.revenue), money(0))
        means = RfmMeans(recency_days=_mean(sums.recency.sum(), total), frequency=_mean(sums.frequency.sum(), total),
                         monetary=_mean(revenue, total))
        return RfmResult(
            **self.result_fields(), scheme=self.query.scheme, lookback=self.query.lookback,
            as_of=self.query.date_range()[1], total_customers=total, revenue=float(revenue), means=means,
            classes=[_class_row(key, en, zh, sums, total) for key, en, zh in class_labels(self.query.scheme)],
            customers=[_customer(row) for row in frames["customers"].to_dict("records")])


def _mean(value: Any, count: int) -> float | None:
    return round(float(money(value)) / count, 2) if count else None


def _class_row(key: str, label_en: str, label_zh: str, sums: pd.DataFrame, total: int) -> RfmClassRow:
    row = sums.loc[key] if key in sums.index else None
    n = int(row.customers) if row is not None else 0
    return RfmClassRow(
        rfm_class=key, label_en=label_en, label_zh=label_zh, customers=n, share=rate(n, total),
        revenue=float(money(row.revenue)) if row is not None else 0.0,
        avg_recency_days=_mean(row.recency, n) if n else None,
        avg_frequency=_mean(row.frequency, n) if n else None,
        avg_monetary=_mean(row.revenue, n) if n else None)


def _customer(row: dict[str, Any]) -> RfmCustomer:
    return RfmCustomer(
        person_id=int(row["person_id"]), recency_days=int(row["recency_days"]), frequency=int(row["frequency"]),
        monetary=float(money(row["monetary"])), r_score=int(row["r_score"]), f_score=int(row["f_score"]),
        m_score=int(row["m_score"]), rfm_class=str(row["rfm_class"]))

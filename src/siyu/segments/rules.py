"""The segment rule: a tree of AND / OR / NOT over conditions, as JSON.

One form everywhere (API, CLI, console, saved segments and rule tags)::

    {"and": [
        {"type": "attribute", "field": "acquisition_channel", "op": "in", "value": ["douyin", "xiaohongshu"]},
        {"type": "event", "event": "Order Completed", "within_days": 90,
         "count": {"op": "gte", "value": 2},
         "aggregate": {"fn": "sum", "field": "revenue", "op": "gt", "value": 500}},
        {"not": {"type": "tag", "tag": "staff"}},
        {"or": [{"type": "attribute", "field": "p_alive", "op": "lt", "value": 0.3},
                {"type": "attribute", "field": "lifecycle_stage", "op": "eq", "value": "churned"}]}
    ]}

A node is ``{"and": [...]}``, ``{"or": [...]}``, ``{"not": node}`` or a condition
with a ``type``. Parsing checks every field and value; ``compiler`` turns the
tree into one query. Definitions of every attribute are in docs/segments.md.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from siyu.analytics.queries.base import Filter, Op, check_value
from siyu.analytics.queries.rfm import EIGHT
from siyu.db import MAX_INT

# Per-customer attributes a condition may test, with their kind.
NUMBER, TEXT = "number", "text"
ATTRIBUTES: dict[str, str] = {
    # copied from the profile (operational DB)
    "acquisition_channel": TEXT, "first_store": TEXT, "first_utm_source": TEXT, "first_qr_scene": TEXT,
    "gender": TEXT, "city": TEXT, "age_band": TEXT, "birth_year": NUMBER, "referrer_id": NUMBER,
    "order_count": NUMBER, "total_spend": NUMBER, "average_order_value": NUMBER,
    "days_since_first_seen": NUMBER, "days_since_last_seen": NUMBER,
    "days_since_first_order": NUMBER, "days_since_last_order": NUMBER,
    # predicted by the CLV models (valuation)
    "p_alive": NUMBER, "churn_risk": NUMBER, "expected_purchases": NUMBER, "predicted_spend": NUMBER,
    "clv": NUMBER,
    # computed when the rule runs (built-in segmentations)
    "rfm_class": TEXT, "lifecycle_stage": TEXT, "value_tier": TEXT,
}
LIFECYCLE_STAGES = ("new", "active", "reactivated", "silent", "churned")
VALUE_TIERS = ("high_value", "potential", "low_activity")
CHOICES: dict[str, tuple[str, ...]] = {
    "rfm_class": tuple(c.key for c in EIGHT),
    "lifecycle_stage": LIFECYCLE_STAGES,
    "value_tier": VALUE_TIERS,
}
MAX_DEPTH = 6
MAX_CONDITIONS = 100

Compare = Literal["eq", "neq", "gt", "gte", "lt", "lte"]


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AttributeCondition(_Node):
    """A customer attribute compared with a value."""

    type: Literal["attribute"]
    field: str = Field(description="one of the attributes in docs/segments.md")
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> AttributeCondition:
        if self.field not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {self.field!r}: use one of {', '.join(ATTRIBUTES)}")
        check_value(self.op, self.value)
        if ATTRIBUTES[self.field] == NUMBER and self.op in ("eq", "neq", "in", "not_in"):
            values = self.value if isinstance(self.value, list) else [self.value]
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
                raise ValueError(f"{self.field} is a number: value must be a number")
        if self.field in CHOICES and self.op in ("eq", "neq", "in", "not_in"):
            values = self.value if isinstance(self.value, list) else [self.value]
            unknown = [v for v in values if v not in CHOICES[self.field]]
            if unknown:
                raise ValueError(f"{self.field} has no value {unknown[0]!r}: use one of "
                                 f"{', '.join(CHOICES[self.field])}")
        return self


class TraitCondition(_Node):
    """A trait the customer was identified with (``traits.<key>``), compared as text or number."""

    type: Literal["trait"]
    key: str = Field(min_length=1, max_length=100)
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _check(self) -> TraitCondition:
        check_value(self.op, self.value)
        return self


class TagCondition(_Node):
    """The customer carries (``has``) or does not carry (``has_not``) a tag."""

    type: Literal["tag"]
    tag: str = Field(min_length=1, max_length=64)
    op: Literal["has", "has_not"] = "has"


class Comparison(_Node):
    op: Compare
    value: float = Field(ge=0)


class Aggregate(_Node):
    """``fn`` of a numeric event field over the matching events, compared with ``value``."""

    fn: Literal["sum", "avg", "min", "max"] = "sum"
    field: str = Field("revenue", description="revenue, source_id or properties.<key>")
    op: Compare
    value: float

    @model_validator(mode="after")
    def _check(self) -> Aggregate:
        if not (self.field in ("revenue", "source_id") or
                (self.field.startswith("properties.") and len(self.field) > len("properties."))):
            raise ValueError("aggregate.field must be revenue, source_id or properties.<key>")
        return self


class EventCondition(_Node):
    """How often (and for how much) the customer did an event, in a time window.

    "did Order Completed at least 2 times in the last 90 days with revenue sum > 500"::

        {"type": "event", "event": "Order Completed", "within_days": 90,
         "count": {"op": "gte", "value": 2},
         "aggregate": {"fn": "sum", "field": "revenue", "op": "gt", "value": 500}}

    Without ``count`` and ``aggregate`` it means "did it at least once";
    ``{"op": "eq", "value": 0}`` means "did not do it".
    """

    type: Literal["event"]
    event: str | None = Field(None, min_length=1, description="the event name (null: any event)")
    filters: list[Filter] = Field(default_factory=list, max_length=10,
                                  description="conditions on the event's fields (on: event)")
    within_days: int | None = Field(None, ge=1, le=3650, description="the last N days up to now")
    date_from: date | None = None
    date_to: date | None = None
    count: Comparison | None = None
    aggregate: Aggregate | None = None

    @model_validator(mode="after")
    def _check(self) -> EventCondition:
        if any(f.on != "event" for f in self.filters):
            raise ValueError("an event condition filters on event fields only (on: event); test customer "
                             "attributes with an attribute condition beside it")
        if self.within_days is not None and (self.date_from or self.date_to):
            raise ValueError("give within_days or date_from/date_to, not both")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from is after date_to")
        if self.count is not None and self.count.value != int(self.count.value):
            raise ValueError("count.value must be a whole number")
        return self


class SegmentCondition(_Node):
    """The customer is (``in``) or is not (``not_in``) in another segment (by its rule, now)."""

    type: Literal["segment"]
    segment: int = Field(ge=1, le=MAX_INT, description="the segment's id")
    op: Literal["in", "not_in"] = "in"


class AndNode(_Node):
    all_of: list[Node] = Field(alias="and", min_length=1, max_length=MAX_CONDITIONS)


class OrNode(_Node):
    any_of: list[Node] = Field(alias="or", min_length=1, max_length=MAX_CONDITIONS)


class NotNode(_Node):
    negated: Node = Field(alias="not")


Condition = AttributeCondition | TraitCondition | TagCondition | EventCondition | SegmentCondition
GROUPS = ("and", "or", "not")
CONDITION_TYPES = ("attribute", "trait", "tag", "event", "segment")


def _kind(node: Any) -> str | None:
    if isinstance(node, dict):
        groups = [k for k in GROUPS if k in node]
        if groups:
            return groups[0]
        kind = node.get("type")
        return kind if kind in CONDITION_TYPES else None
    return {AndNode: "and", OrNode: "or", NotNode: "not"}.get(type(node), getattr(node, "type", None))


Node = Annotated[
    Annotated[AndNode, Tag("and")] | Annotated[OrNode, Tag("or")] | Annotated[NotNode, Tag("not")]
    | Annotated[AttributeCondition, Tag("attribute")] | Annotated[TraitCondition, Tag("trait")]
    | Annotated[TagCondition, Tag("tag")] | Annotated[EventCondition, Tag("event")]
    | Annotated[SegmentCondition, Tag("segment")],
    Discriminator(
        _kind, custom_error_type="invalid_node",
        custom_error_message='a node is {"and": [...]}, {"or": [...]}, {"not": node} or a condition whose "type" '
                             "is attribute, trait, tag, event or segment"),
]
for _model in (AndNode, OrNode, NotNode):
    _model.model_rebuild()


class Rule(BaseModel):
    """A parsed rule: ``root`` is its top node."""

    root: Node

    def to_json(self) -> dict[str, Any]:
        return self.root.model_dump(mode="json", by_alias=True, exclude_none=True)


class RuleError(ValueError):
    """The rule is not valid; ``errors`` lists where (a path into the rule) and why."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))


def parse_rule(body: Any) -> Rule:
    """The rule from its JSON form; raises RuleError naming each bad field."""
    if not isinstance(body, dict):
        raise RuleError([{"field": "rule", "reason": "a rule is a JSON object"}])
    try:
        rule = Rule(root=body)
    except ValidationError as exc:
        raise RuleError([{"field": _path(e["loc"]), "reason": _reason(e)} for e in exc.errors()]) from None
    depth, count = _measure(rule.root)
    if depth > MAX_DEPTH:
        raise RuleError([{"field": "rule", "reason": f"groups nest {depth} deep; at most {MAX_DEPTH}"}])
    if count > MAX_CONDITIONS:
        raise RuleError([{"field": "rule", "reason": f"{count} conditions; at most {MAX_CONDITIONS}"}])
    return rule


def _path(loc: tuple) -> str:
    """``('root', 'and', 'and', 1, 'event', 'count', 'op')`` -> ``rule.and[1].count.op``.

    Pydantic names the union member (the node's kind) before each node's fields; those
    names are left out. A node starts the rule, follows a list index, or is ``not``'s child.
    """
    out, at_node = "rule", True
    for part in loc[1:]:
        if isinstance(part, int):
            out, at_node = out + f"[{part}]", True
        elif at_node and part in GROUPS + CONDITION_TYPES:
            at_node = False
        else:
            out += f".{part}"
            at_node = part == "not"
    return out


def _reason(error: dict) -> str:
    message = error.get("msg", "invalid")
    return message.removeprefix("Value error, ")


def _measure(node: Any, depth: int = 1) -> tuple[int, int]:
    """(deepest nesting of groups, number of conditions) of a node."""
    children = {AndNode: lambda n: n.all_of, OrNode: lambda n: n.any_of, NotNode: lambda n: [n.negated]}
    get = children.get(type(node))
    if get is None:
        return depth - 1, 1
    measured = [_measure(child, depth + 1) for child in get(node)]
    return max([depth] + [d for d, _c in measured]), sum(c for _d, c in measured)


def walk(node: Any):
    """Every condition of a rule's tree, depth first."""
    if isinstance(node, AndNode):
        for child in node.all_of:
            yield from walk(child)
    elif isinstance(node, OrNode):
        for child in node.any_of:
            yield from walk(child)
    elif isinstance(node, NotNode):
        yield from walk(node.negated)
    else:
        yield node

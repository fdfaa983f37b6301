"""Reads behind the segment and tag pages: segments by group, stored members page by page,
who entered and left, the builder's choices and a rule in words.

Membership comes from the event store (``EventStore.segment_members``); counts,
previews and personas from ``siyu.segments.queries``.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import ibis
from django.conf import settings
from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from siyu.analytics.engine import EventStoreBusy, get_store
from siyu.analytics.engines import get_engine
from siyu.analytics.queries.base import AGE_BANDS
from siyu.console import labels
from siyu.console.queries import customers
from siyu.customers.models import Person
from siyu.segments import queries
from siyu.segments.compiler import Compiler
from siyu.segments.models import PersonTag, Segment, Tag
from siyu.segments.rules import ATTRIBUTES, CHOICES, parse_rule

BUILTIN_KINDS = ("rfm", "lifecycle", "tier")
PREVIEW = 20
CHANGES_SHOWN = 50


def language() -> str:
    return get_language() or "en"


def segment_label(segment: Segment) -> str:
    """A built-in segment's name in the reader's language; a custom segment's own name."""
    if segment.key:
        kind, _sep, value = segment.key.partition(":")
        if kind in BUILTIN_KINDS:
            return queries.label(kind, value, language())
    return segment.name


def segment_groups() -> list[dict[str, Any]]:
    """Built-in segments by kind (in their definition's order), then the custom ones."""
    order = {f"{kind}:{value}": n for n, (kind, value, _attr) in enumerate(queries.BUILTIN)}
    titles = {"rfm": _("RFM classes"), "lifecycle": _("Lifecycle stages"), "tier": _("Value tiers"),
              "custom": _("Custom segments")}
    rows: dict[str, list[Segment]] = {key: [] for key in titles}
    for segment in Segment.objects.all():
        kind = segment.key.partition(":")[0] if segment.key else "custom"
        rows[kind if kind in rows else "custom"].append(segment)
    rows_sorted = {kind: sorted(found, key=lambda s: order.get(s.key, len(order))) for kind, found in rows.items()}
    rows_sorted["custom"] = sorted(rows["custom"], key=lambda s: s.name.lower())
    return [{"key": kind, "title": titles[kind],
             "rows": [{"segment": s, "label": segment_label(s)} for s in rows_sorted[kind]]} for kind in titles]


# -- members ----------------------------------------------------------------------------------
class StoredMembers:
    """A segment's members at its last refresh, for Django's Paginator: ids come from the event
    store a page at a time, customers from the operational database."""

    def __init__(self, segment_id: int) -> None:
        self.segment_id = segment_id

    def count(self) -> int:
        return get_store().segment_size(self.segment_id)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[Person]:
        start, stop = index.start or 0, index.stop
        ids = get_store().segment_members(self.segment_id, offset=start,
                                          limit=None if stop is None else stop - start)
        return people_in_order(ids)


def people_in_order(ids: list[int]) -> list[Person]:
    """The surviving customers among ``ids``, in that order."""
    found = customers().in_bulk(ids)
    return [found[pk] for pk in ids if pk in found]


def preview(body: dict[str, Any]) -> list[Person]:
    """The first customers (by number) the rule matches now."""
    return people_in_order(queries.member_ids(parse_rule(body), limit=PREVIEW))


def yesterday_start() -> datetime:
    """The start of yesterday on the brand's clock."""
    tz = ZoneInfo(settings.TIME_ZONE)
    today = timezone.now().astimezone(tz).date()
    return datetime.combine(today - timedelta(days=1), time.min, tzinfo=tz)


def recent_changes(segment: Segment) -> dict[str, Any]:
    """Who entered and left since the start of yesterday: counts from the refreshes, the
    latest customers from the event store's change log."""
    since = yesterday_start()
    totals = segment.refreshes.filter(at__gte=since).aggregate(entered=Sum("entered"), left=Sum("left"))
    rows = get_store().segment_changes(segment.pk, since, limit=20 * CHANGES_SHOWN)
    entered = [pk for pk, change, _at in rows if change == "entered"][:CHANGES_SHOWN]
    left = [pk for pk, change, _at in rows if change == "left"][:CHANGES_SHOWN]
    return {"since": since, "entered": totals["entered"] or 0, "left": totals["left"] or 0,
            "entered_ids": entered, "left_ids": left}


def size_history(segment: Segment, limit: int = 365) -> list[Any]:
    """The segment's refreshes, oldest first (the latest ``limit``)."""
    return list(reversed(segment.refreshes.all()[:limit]))


# -- tags ---------------------------------------------------------------------------------------
def tag_rows() -> list[Tag]:
    return list(Tag.objects.annotate(people_count=Count("people")).order_by("name"))


def person_tags(person: Person) -> list[PersonTag]:
    return list(PersonTag.objects.filter(person=person).select_related("tag").order_by("tag__name"))


def manual_tag_names() -> list[str]:
    return list(Tag.objects.filter(rule__isnull=True).order_by("name").values_list("name", flat=True))


# -- the rule checker, before saving ---------------------------------------------------------------
def check_references(body: dict[str, Any], segment: Segment | None = None) -> None:
    """Build (not run) the rule's query as if ``segment`` already had it, so the live count
    reports a loop through other segments while the rule is edited. Raises RuleError.
    (Saving is checked again by ``segments.actions``.)"""
    rule = parse_rule(body)
    context = queries.context()
    if segment is not None:
        stored = context.segment_rule

        def lookup(pk: int) -> dict[str, Any] | None:
            return body if pk == segment.pk else stored(pk) if stored else None

        context = replace(context, segment_rule=lookup)
    compiler = Compiler(get_engine(), context)
    compiler.members(rule)


# -- event names for the builder ---------------------------------------------------------------
_events_lock = threading.Lock()
_events: dict[str, Any] = {}


def event_names(limit: int = 200) -> list[str]:
    """The most frequent event names (for the builder's suggestions); [] when the store is busy."""
    try:
        engine = get_engine()
        version = engine.version()
        with _events_lock:
            if _events.get("version") == version:
                return _events["names"]
        e = engine.events()
        e = e.filter(e.event.notnull())
        names = [str(n) for n in engine.execute(
            e.group_by("event").aggregate(n=e.count()).order_by(ibis.desc("n")).limit(limit))["event"]]
    except EventStoreBusy:
        return []
    with _events_lock:
        _events.update(version=version, names=names)
    return names


# -- the builder's choices -----------------------------------------------------------------------
ATTRIBUTE_GROUPS: tuple[tuple[Any, tuple[str, ...]], ...] = (
    (gettext_lazy("Profile"), ("acquisition_channel", "first_store", "first_utm_source", "first_qr_scene",
                               "gender", "city", "age_band", "birth_year", "referrer_id")),
    (gettext_lazy("Orders and activity"), ("order_count", "total_spend", "average_order_value",
                                           "days_since_first_seen", "days_since_last_seen",
                                           "days_since_first_order", "days_since_last_order")),
    (gettext_lazy("Predictions (CLV models)"), ("p_alive", "churn_risk", "expected_purchases",
                                                "predicted_spend", "clv")),
    (gettext_lazy("Segmentations"), ("rfm_class", "lifecycle_stage", "value_tier")),
)


def attribute_labels() -> dict[str, str]:
    return {
        "acquisition_channel": _("Acquisition channel"), "first_store": _("First store"),
        "first_utm_source": _("First traffic source (utm_source)"), "first_qr_scene": _("First QR code scene"),
        "gender": _("Gender"), "city": _("City"), "age_band": _("Age band"), "birth_year": _("Birth year"),
        "referrer_id": _("Referred by (customer number)"), "order_count": _("Orders"),
        "total_spend": _("Total spend"), "average_order_value": _("Average order value"),
        "days_since_first_seen": _("Days since first seen"), "days_since_last_seen": _("Days since last seen"),
        "days_since_first_order": _("Days since first order"), "days_since_last_order": _("Days since last order"),
        "p_alive": _("Probability still active (P(alive))"), "churn_risk": _("Churn risk (1 − P(alive))"),
        "expected_purchases": _("Expected purchases"), "predicted_spend": _("Predicted spend"),
        "clv": _("Customer lifetime value (CLV)"), "rfm_class": _("RFM class"),
        "lifecycle_stage": _("Lifecycle stage"), "value_tier": _("Value tier"),
    }


def value_label(field: str, value: Any) -> str:
    """How a value of a built-in segmentation (or gender) reads."""
    kinds = {"rfm_class": "rfm", "lifecycle_stage": "lifecycle", "value_tier": "tier"}
    if field in kinds and isinstance(value, str):
        return queries.label(kinds[field], value, language())
    if field == "gender":
        return labels.gender_label(value)
    if field == "acquisition_channel" and isinstance(value, str):
        return labels.channel_label(value)
    return str(value)


def attribute_choices(field: str) -> list[list[str]] | None:
    """The values the builder offers in a list (the rule checker's choices, plus gender and age band)."""
    values: tuple[str, ...] | None = CHOICES.get(field)
    if field == "gender":
        values = ("male", "female")
    elif field == "age_band":
        values = tuple(band for _low, _high, band in AGE_BANDS)
    return [[v, value_label(field, v)] for v in values] if values else None


def op_labels() -> dict[str, str]:
    return {"eq": _("is"), "neq": _("is not"), "in": _("is one of"), "not_in": _("is none of"),
            "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "contains": _("contains"),
            "is_set": _("is set"), "is_not_set": _("is not set")}


def compare_labels() -> dict[str, str]:
    return {"eq": "=", "neq": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}


def fn_labels() -> dict[str, str]:
    return {"sum": _("sum"), "avg": _("average"), "min": _("minimum"), "max": _("maximum")}


def type_labels() -> dict[str, str]:
    return {"attribute": _("Attribute"), "trait": _("Trait"), "tag": _("Tag"), "event": _("Event"),
            "segment": _("Segment")}


def builder_options(segment: Segment | None = None) -> dict[str, Any]:
    """Everything the rule builder (segments.js) offers, labelled in the reader's language."""
    labels = attribute_labels()
    grouped = [(title, names) for title, names in ATTRIBUTE_GROUPS]
    listed = {name for _title, names in grouped for name in names}
    others = tuple(name for name in ATTRIBUTES if name not in listed)
    if others:
        grouped.append((gettext_lazy("Other"), others))
    attributes = [{"group": str(title), "fields": [
        {"name": name, "label": labels.get(name, name), "kind": ATTRIBUTES[name],
         "choices": attribute_choices(name)} for name in names if name in ATTRIBUTES]} for title, names in grouped]
    segments = Segment.objects.exclude(pk=segment.pk) if segment else Segment.objects.all()
    return {
        "types": type_labels(), "attributes": attributes, "ops": op_labels(), "compare": compare_labels(),
        "fns": fn_labels(),
        "tagOps": {"has": _("has the tag"), "has_not": _("does not have the tag")},
        "segmentOps": {"in": _("is in the segment"), "not_in": _("is not in the segment")},
        "segments": [[s.pk, segment_label(s)] for s in segments],
        "tags": list(Tag.objects.order_by("name").values_list("name", flat=True)),
        "events": event_names(),
        "text": builder_text(),
    }


def builder_text() -> dict[str, str]:
    return {
        "all": _("all"), "any": _("any"), "match": _("Customers matching"), "ofThese": _("of these"),
        "not": _("not"), "notTitle": _("Match customers who do NOT meet this"),
        "addCondition": _("+ Condition"), "addGroup": _("+ Group"), "remove": _("Remove"),
        "field": _("Attribute"), "value": _("Value"), "values": _("Values, separated by commas"),
        "trait": _("Trait key"), "tag": _("Tag name"), "event": _("Event name (empty: any event)"),
        "withinDays": _("in the last N days"), "days": _("days"), "count": _("times"),
        "anyCount": _("at least once"), "aggregate": _("and"), "noAggregate": _("(no amount condition)"),
        "of": _("of"), "chooseSegment": _("Choose a segment"), "noSegments": _("No other segment yet"),
        "jsonError": _("Not valid JSON yet:"), "jsonObject": _("A rule is a JSON object."),
        "moreInJson": _("More options of this condition are kept in the JSON."),
        "type": _("Condition type"), "operator": _("Operator"), "aggField": _("Event field"),
    }


# -- a rule in words ------------------------------------------------------------------------------
def describe(node: dict[str, Any]) -> dict[str, Any]:
    """The rule as a tree of sentences: {"text": ..., "children": [...]}."""
    if "and" in node:
        return {"text": _("All of:"), "children": [describe(child) for child in node["and"]]}
    if "or" in node:
        return {"text": _("Any of:"), "children": [describe(child) for child in node["or"]]}
    if "not" in node:
        return {"text": _("Not:"), "children": [describe(node["not"])]}
    return {"text": condition_text(node), "children": []}


def _values(field: str, value: Any) -> str:
    values = value if isinstance(value, list) else [value]
    return ", ".join(value_label(field, v) for v in values)


def condition_text(node: dict[str, Any]) -> str:
    kind, ops = node.get("type"), op_labels()
    if kind == "attribute":
        field, op = node.get("field", ""), node.get("op", "eq")
        subject = attribute_labels().get(field, field)
        if op in ("is_set", "is_not_set"):
            return f"{subject} {ops[op]}"
        return f"{subject} {ops.get(op, op)} {_values(field, node.get('value'))}"
    if kind == "trait":
        op = node.get("op", "eq")
        subject = _("trait %(key)s") % {"key": node.get("key")}
        return f"{subject} {ops[op]}" if op in ("is_set", "is_not_set") else \
            f"{subject} {ops.get(op, op)} {_values('', node.get('value'))}"
    if kind == "tag":
        template = _("has the tag %(tag)s") if node.get("op", "has") == "has" else _("does not have the tag %(tag)s")
        return template % {"tag": node.get("tag")}
    if kind == "event":
        return event_text(node)
    if kind == "segment":
        target = Segment.objects.filter(pk=node.get("segment")).first()
        name = segment_label(target) if target else f"#{node.get('segment')}"
        template = _("is in the segment %(name)s") if node.get("op", "in") == "in" else \
            _("is not in the segment %(name)s")
        return template % {"name": name}
    return str(node)


def event_text(node: dict[str, Any]) -> str:
    compare = compare_labels()
    parts = [_("did %(event)s") % {"event": node.get("event") or _("any event")}]
    count = node.get("count")
    if count:
        parts.append(_("times %(op)s %(value)s") % {"op": compare.get(count["op"], count["op"]),
                                                    "value": _number(count["value"])})
    if node.get("within_days"):
        parts.append(_("in the last %(days)s days") % {"days": node["within_days"]})
    if node.get("date_from") or node.get("date_to"):
        parts.append(_("from %(start)s to %(end)s") % {"start": node.get("date_from") or "…",
                                                       "end": node.get("date_to") or "…"})
    agg = node.get("aggregate")
    if agg:
        parts.append(_("%(fn)s of %(field)s %(op)s %(value)s") % {
            "fn": fn_labels().get(agg.get("fn", "sum"), agg.get("fn")), "field": agg.get("field", "revenue"),
            "op": compare.get(agg["op"], agg["op"]), "value": _number(agg["value"])})
    for f in node.get("filters") or []:
        parts.append(f"{f.get('field')} {op_labels().get(f.get('op', 'eq'), f.get('op'))} {f.get('value', '')}".strip())
    return " · ".join(parts)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)

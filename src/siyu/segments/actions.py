"""State changes on tags, segments and tier settings; each records who made it in the audit log.

Refreshing writes a segment's members into the event store, so it runs in the
process that owns the store (the server, or a CLI command when no server runs).
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
from django.db import transaction

from siyu.accounts.actor import Actor
from siyu.analytics import sync
from siyu.analytics.engine import EventStoreBusy, get_store
from siyu.analytics.engines import Engine
from siyu.customers.models import IdentityKind, Person
from siyu.customers.queries import Lookup, NotFound, find_person
from siyu.privacy.actions import audit
from siyu.segments import queries
from siyu.segments.compiler import Compiler
from siyu.segments.models import PersonTag, Segment, SegmentRefresh, Tag, TierSettings
from siyu.segments.rules import SegmentCondition, TagCondition, parse_rule, walk

MAX_TAG_PEOPLE = 1_000_000


class SegmentError(ValueError):
    """A refused change; nothing was saved."""


def _name(value: str, limit: int) -> str:
    value = (value or "").strip()
    if not value or len(value) > limit:
        raise SegmentError(f"name must be 1-{limit} characters")
    return value


def _rule(body: Any, *, segment: Segment | None = None) -> dict[str, Any]:
    """The rule in canonical JSON form; raises RuleError (a ValueError) naming each bad field, or
    SegmentError when it names a missing segment or reaches ``segment`` itself."""
    rule = parse_rule(body)
    for pk in _referenced(rule.root):
        if not Segment.objects.filter(pk=pk).exists():
            raise SegmentError(f"no segment {pk}")
        if segment is not None and _reaches(pk, segment.pk):
            raise SegmentError("a segment cannot contain itself (directly or through another segment)")
    return rule.to_json()


def _referenced(node: Any) -> list[int]:
    """The ids of the segments a rule's ``segment`` conditions name."""
    return [n.segment for n in walk(node) if isinstance(n, SegmentCondition)]


def _reaches(start: int, target: int) -> bool:
    """Whether segment ``start`` is ``target`` or refers to it, through any chain of segments."""
    seen, frontier = set(), [start]
    while frontier:
        pk = frontier.pop()
        if pk == target:
            return True
        if pk in seen:
            continue
        seen.add(pk)
        body = Segment.objects.filter(pk=pk).values_list("rule", flat=True).first()
        if body:
            frontier += _referenced(parse_rule(body).root)
    return False


def _sync_tags() -> None:
    """Bring the event store's copy of tags up to date now, when this process may open the store;
    otherwise the server that holds it does within seconds."""
    with contextlib.suppress(EventStoreBusy):
        sync.sync_tags(get_store())


# -- segments ------------------------------------------------------------------------------------
def create_segment(actor: Actor, name: str, rule: Any, description: str = "") -> Segment:
    name, body = _name(name, 200), _rule(rule)
    with transaction.atomic():
        segment = Segment.objects.create(name=name, rule=body, description=(description or "")[:500],
                                         created_by=actor.label)
        audit(actor, "change", "segment", segment.pk, op="create", name=name)
    return segment


def update_segment(actor: Actor, segment: Segment, name: str, rule: Any, description: str = "") -> Segment:
    if segment.builtin:
        raise SegmentError("built-in segments follow their definition; edit the tier thresholds instead")
    name, body = _name(name, 200), _rule(rule, segment=segment)
    with transaction.atomic():
        segment.name, segment.rule, segment.description = name, body, (description or "")[:500]
        segment.save(update_fields=["name", "rule", "description", "updated_at"])
        audit(actor, "change", "segment", segment.pk, op="update", name=name)
    return segment


def delete_segment(actor: Actor, segment: Segment) -> None:
    if segment.builtin:
        raise SegmentError("built-in segments cannot be deleted")
    users = [s.name for s in Segment.objects.exclude(pk=segment.pk) if segment.pk in _referenced(parse_rule(s.rule).root)]
    if users:
        raise SegmentError(f"segment {segment.pk} is used by: {', '.join(users)}")
    pk = segment.pk
    with transaction.atomic():
        audit(actor, "change", "segment", pk, op="delete", name=segment.name)
        segment.delete()
    get_store().drop_segment(pk)


def refresh_segment(actor: Actor, segment: Segment, *, engine: Engine | None = None,
                    now: datetime | None = None, using: Compiler | None = None) -> SegmentRefresh:
    """Recompute the members, store them with who entered and left, and record the size.
    ``using``: a compiler shared by the segments of one run (``refresh_all``); its engine and
    time then apply, not ``engine`` and ``now``."""
    compiler = using or queries.compiler(engine, now)
    started = time.perf_counter()
    ids = queries.member_ids(parse_rule(segment.rule), using=compiler)
    at = datetime.now(UTC)
    changed = get_store().replace_segment_members(segment.pk, pa.array(ids, type=pa.int64()), at)
    with transaction.atomic():
        refresh = SegmentRefresh.objects.create(
            segment=segment, at=at, size=changed["size"], entered=changed["entered"], left=changed["left"],
            duration_ms=int((time.perf_counter() - started) * 1000), engine=compiler.engine.name)
        segment.refreshed_at, segment.size = at, changed["size"]
        segment.save(update_fields=["refreshed_at", "size"])
        audit(actor, "change", "segment", segment.pk, op="refresh", size=changed["size"])
    return refresh


_REFRESHING = threading.Lock()  # one run at a time: the scheduler, the console and the API may all ask


def refresh_all(actor: Actor, *, engine: Engine | None = None) -> dict[str, Any]:
    """Bring the event store up to date, then refresh every rule tag and every segment. A run
    asked for while another is going waits for it (they would share the engine's materialized
    relations, and replace the same members)."""
    with _REFRESHING:
        return _refresh_all(actor, engine)


def _refresh_all(actor: Actor, engine: Engine | None) -> dict[str, Any]:
    started = time.perf_counter()
    store = get_store()
    sync.sync_all(store)
    tags = [refresh_rule_tag(actor, t, engine=engine) for t in Tag.objects.exclude(rule=None)]
    sync.sync_all(store)  # the rule tags just changed
    # One compiler for every segment: one "now", and the RFM classes and lifecycle stages (which
    # most built-in segments test) computed once instead of once per segment.
    shared = queries.compiler(engine, materialize=True)
    try:
        segments = [refresh_segment(actor, s, using=shared) for s in Segment.objects.all()]
    finally:
        shared.release()
    return {"segments": len(segments), "rule_tags": len(tags),
            "seconds": round(time.perf_counter() - started, 3)}


def ensure_builtin_segments() -> int:
    """Create the built-in segments (RFM classes, lifecycle stages, value tiers) that are missing."""
    have = set(Segment.objects.exclude(key="").values_list("key", flat=True))
    created = 0
    for kind, value, attribute in queries.BUILTIN:
        key = f"{kind}:{value}"
        if key not in have:
            Segment.objects.create(key=key, name=queries.label(kind, value), created_by="siyu",
                                   rule=queries.builtin_rule(attribute, value))
            created += 1
    return created


# -- tier settings ---------------------------------------------------------------------------------
TIER_FIELDS = {"high_value_spend": Decimal, "high_value_orders": int, "lookback_days": int, "active_days": int,
               "silent_after": int, "churned_after": int}


def update_tier_settings(actor: Actor, values: dict[str, Any]) -> TierSettings:
    """Change some thresholds; raises SegmentError naming a bad field."""
    current = TierSettings.current()
    for name, value in values.items():
        kind = TIER_FIELDS.get(name)
        if kind is None:
            raise SegmentError(f"{name}: unknown setting; use one of {', '.join(TIER_FIELDS)}")
        try:
            parsed = kind(str(value))
        except (ValueError, InvalidOperation):
            raise SegmentError(f"{name}: {value!r} is not a {'number' if kind is Decimal else 'whole number'}") from None
        if parsed < 0 or (kind is int and parsed > 3650 and name != "high_value_orders"):
            raise SegmentError(f"{name}: must be between 0 and 3650")
        if kind is int and parsed < 1:
            raise SegmentError(f"{name}: must be at least 1")
        setattr(current, name, parsed)
    if current.silent_after >= current.churned_after:
        raise SegmentError("silent_after must be smaller than churned_after")
    with transaction.atomic():
        current.updated_by = actor.label
        current.save()
        audit(actor, "change", "tier_settings", current.pk, op="update", **{k: str(v) for k, v in values.items()})
    return current


# -- tags ------------------------------------------------------------------------------------------
def _tag_name(name: str) -> str:
    name = _name(name, 64)
    if any(ch in name for ch in ",\n\t"):
        raise SegmentError("a tag name cannot contain commas, tabs or line breaks")
    return name


def create_tag(actor: Actor, name: str, description: str = "", rule: Any = None) -> Tag:
    name = _tag_name(name)
    if Tag.objects.filter(name=name).exists():
        raise SegmentError(f"a tag named {name!r} already exists")
    body = _rule(rule) if rule is not None else None
    if body is not None and any(isinstance(n, TagCondition) and n.tag == name for n in walk(parse_rule(body).root)):
        raise SegmentError("a rule tag cannot test itself")
    with transaction.atomic():
        tag = Tag.objects.create(name=name, description=(description or "")[:300], rule=body,
                                 created_by=actor.label)
        audit(actor, "change", "tag", tag.pk, op="create", name=name, rule=body is not None)
    return tag


def delete_tag(actor: Actor, tag: Tag) -> None:
    with transaction.atomic():
        audit(actor, "change", "tag", tag.pk, op="delete", name=tag.name, people=tag.people.count())
        tag.delete()
    _sync_tags()


def _manual_tag(actor: Actor, name: str) -> Tag:
    tag = Tag.objects.filter(name=name).first()
    if tag is None:
        return create_tag(actor, name)
    if tag.is_rule:
        raise SegmentError(f"tag {name!r} is kept by its rule; it cannot be set by hand")
    return tag


def add_tag(actor: Actor, name: str, person_ids: Iterable[int], *, origin: str = PersonTag.Origin.MANUAL) -> int:
    """Tag these customers (creating the tag when new); returns how many newly got it.

    Every id must be a surviving customer, or nothing is tagged."""
    ids = _surviving(person_ids)
    with transaction.atomic():
        tag = _manual_tag(actor, _tag_name(name))
        have = set(PersonTag.objects.filter(tag=tag, person_id__in=ids).values_list("person_id", flat=True))
        new = [PersonTag(person_id=pk, tag=tag, origin=origin, added_by=actor.label) for pk in ids if pk not in have]
        PersonTag.objects.bulk_create(new, batch_size=5000)
        audit(actor, "change", "tag", tag.pk, op="add", origin=origin, people=len(new))
    _sync_tags()
    return len(new)


def remove_tag(actor: Actor, name: str, person_ids: Iterable[int]) -> int:
    tag = Tag.objects.filter(name=name).first()
    if tag is None:
        raise SegmentError(f"no tag {name!r}")
    if tag.is_rule:
        raise SegmentError(f"tag {name!r} is kept by its rule; it cannot be removed by hand")
    ids = list(person_ids)
    with transaction.atomic():
        removed, _kinds = PersonTag.objects.filter(tag=tag, person_id__in=ids).delete()
        audit(actor, "change", "tag", tag.pk, op="remove", people=removed)
    _sync_tags()
    return removed


def _surviving(person_ids: Iterable[int]) -> list[int]:
    ids = sorted({int(pk) for pk in person_ids})
    if not ids:
        raise SegmentError("no customers given")
    if len(ids) > MAX_TAG_PEOPLE:
        raise SegmentError(f"at most {MAX_TAG_PEOPLE:,} customers at once")
    found = _live(ids)
    missing = [pk for pk in ids if pk not in found]
    if missing:
        shown = ", ".join(str(pk) for pk in missing[:5])
        raise SegmentError(f"{len(missing)} unknown or merged customer ids: {shown}"
                           + (" ..." if len(missing) > 5 else ""))
    return ids


def _live(ids: list[int]) -> set[int]:
    """Those of the sorted ``ids`` that are customers now (neither merged nor erased)."""
    found: set[int] = set()
    for start in range(0, len(ids), 20_000):
        found |= set(Person.objects.filter(pk__in=ids[start:start + 20_000], merged_into__isnull=True,
                                           erased_at__isnull=True).values_list("pk", flat=True))
    return found


def tag_segment(actor: Actor, name: str, segment: Segment) -> int:
    """Tag every current member of a segment (as of its last refresh)."""
    if segment.refreshed_at is None:
        raise SegmentError(f"segment {segment.pk} has not been refreshed yet")
    ids = get_store().segment_members(segment.pk, limit=None)
    if not ids:
        return 0
    return add_tag(actor, name, ids, origin=PersonTag.Origin.SEGMENT)


# CSV columns that name a customer: the customer number, or an id of some kind.
CSV_ID_COLUMNS = ("customer_id", *IdentityKind.values)


@dataclass
class TagImport:
    tagged: int = 0
    rows: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False


def import_tag_csv(actor: Actor, name: str, data: bytes, *, dry_run: bool = False) -> TagImport:
    """Tag the customers a CSV names (one per row, by ``customer_id`` or an id column such as
    ``phone``). Rows naming nobody are reported by row number and field; the rest are tagged
    (unless ``dry_run``). A file without any usable column is refused."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SegmentError("the file is not UTF-8 text (save the CSV as UTF-8)") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = [c for c in (reader.fieldnames or []) if c and c.strip() in CSV_ID_COLUMNS]
    if not columns:
        raise SegmentError(f"the CSV needs a header with one of: {', '.join(CSV_ID_COLUMNS)}")
    result, ids = TagImport(dry_run=dry_run), []
    for number, row in enumerate(reader, start=2):  # row 1 is the header
        result.rows += 1
        pk, error = _resolve_row(row, columns)
        if error:
            result.errors.append({"row": number, **error})
        else:
            ids.append(pk)
    if ids and not dry_run:
        result.tagged = add_tag(actor, name, ids, origin=PersonTag.Origin.IMPORT)
    elif ids:
        existing = Tag.objects.filter(name=_tag_name(name)).first()
        if existing is not None and existing.is_rule:
            raise SegmentError(f"tag {name!r} is kept by its rule; it cannot be set by hand")
        result.tagged = len(set(ids))
    return result


def _resolve_row(row: dict[str, str], columns: list[str]) -> tuple[int | None, dict[str, str] | None]:
    for column in columns:
        value = (row.get(column) or "").strip()
        if not value:
            continue
        key = column.strip()
        if key == "customer_id":
            if not value.isdigit():
                return None, {"field": column, "reason": f"{value!r} is not a customer number"}
            person = Person.objects.filter(pk=int(value)).first()
            if person is None or person.erased_at is not None:
                return None, {"field": column, "reason": f"no customer {value}"}
            while person.merged_into_id:
                person = Person.objects.get(pk=person.merged_into_id)
            return person.pk, None
        try:
            return find_person(Lookup(key, value)).pk, None
        except ValueError as exc:
            return None, {"field": column, "reason": str(exc)}
        except NotFound:
            return None, {"field": column, "reason": f"no customer with this {key}"}
    return None, {"field": ",".join(columns), "reason": "empty: no id on this row"}


def refresh_rule_tag(actor: Actor, tag: Tag, *, engine: Engine | None = None) -> dict[str, int]:
    """Put the tag on exactly the customers its rule matches now."""
    if not tag.is_rule:
        raise SegmentError(f"tag {tag.name!r} has no rule")
    live = _live(queries.member_ids(parse_rule(tag.rule), engine=engine))  # the copy may lag a merge
    have = set(PersonTag.objects.filter(tag=tag).values_list("person_id", flat=True))
    add, drop = live - have, have - live
    with transaction.atomic():
        PersonTag.objects.bulk_create([PersonTag(person_id=pk, tag=tag, origin=PersonTag.Origin.RULE,
                                                 added_by=actor.label) for pk in add], batch_size=5000)
        drop_list = sorted(drop)
        for start in range(0, len(drop_list), 20_000):
            PersonTag.objects.filter(tag=tag, person_id__in=drop_list[start:start + 20_000]).delete()
        tag.refreshed_at = datetime.now(UTC)
        tag.save(update_fields=["refreshed_at"])
        audit(actor, "change", "tag", tag.pk, op="refresh", added=len(add), removed=len(drop))
    _sync_tags()
    return {"added": len(add), "removed": len(drop), "size": len(live)}


# -- export ----------------------------------------------------------------------------------------
EXPORT_COLUMNS = ("customer_id", "name", "phone", "email", "acquisition_channel", "order_count", "total_spend",
                  "last_seen")


def export_members(actor: Actor, segment: Segment) -> Iterable[str]:
    """The members (as of the last refresh) as CSV lines. Personal data is masked unless the
    actor may export it; an unmasked export is written to the audit log first."""
    from siyu.customers.profile import read_pii
    from siyu.privacy.masking import mask

    ids = get_store().segment_members(segment.pk, limit=None)
    unmasked = actor.can_export_pii
    if unmasked:
        audit(actor, "export_pii", "segment", segment.pk, rows=len(ids), fields=["name", "phone", "email"])

    def line(values: Iterable[Any]) -> str:
        out = io.StringIO()
        csv.writer(out).writerow(values)
        return out.getvalue()

    def show(kind: str, value: str | None) -> str:
        return (value if unmasked else mask(kind, value)) or ""

    yield "\ufeff" + line(EXPORT_COLUMNS)  # a BOM, so spreadsheet programs read the Chinese names as UTF-8
    for start in range(0, len(ids), 5000):
        persons = Person.objects.filter(pk__in=ids[start:start + 5000]).order_by("pk")
        for p in persons:
            pii = read_pii(p)
            yield line((p.pk, show("name", pii.get("name")), show("phone", pii.get("phone")),
                        show("email", pii.get("email")), p.acquisition_channel, p.order_count, p.total_spend,
                        p.last_seen.isoformat() if p.last_seen else ""))

"""Traits, personal data and behavioural attributes on a person's profile."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection

from siyu.customers.models import Person
from siyu.db import datetime_param, json_param
from siyu.orders.actions import refresh_order_stats
from siyu.orders.models import Order
from siyu.privacy import crypto

# Trait names that carry personal data, mapped to the canonical PII field.
PII_TRAITS = {
    "name": "name", "first_name": "first_name", "firstName": "first_name", "last_name": "last_name",
    "lastName": "last_name", "username": "name", "nickname": "name", "real_name": "name",
    "phone": "phone", "mobile": "phone", "tel": "phone", "email": "email", "address": "address",
    "$name": "name", "$phone": "phone", "$email": "email", "id_card": "id_card", "idCard": "id_card",
}
# Never stored anywhere (not even encrypted): we have no purpose for them.
DROPPED_TRAITS = {"password", "ip", "$ip"}
# Ids live in the identity table, not among the traits.
ID_TRAITS = {
    "unionid", "wechat_unionid", "openid", "wechat_openid", "wecom_id", "wecom_external_userid",
    "external_userid", "member_no", "memberNo", "member_id",
}
MAX_TRAITS = 200
_RICH_FIELDS = ("first_seen", "last_seen", "traits", "pii_enc", "first_touch", "first_touch_at", "last_touch",
                "last_touch_at", "acquisition_channel")
_RICH_JSON = frozenset({"traits", "first_touch", "last_touch"})
_RICH_TIMES = frozenset({"first_seen", "last_seen", "first_touch_at", "last_touch_at"})
_RICH_INDEX = {name: i for i, name in enumerate(_RICH_FIELDS, start=1)}  # its place in a row of _RICH_SELECT
_RICH_SELECT = f"SELECT id, {', '.join(_RICH_FIELDS)} FROM customers_person WHERE id IN"


@dataclass
class ProfileUpdate:
    """What one message says about its person."""

    person_id: int
    at: datetime
    traits: dict[str, Any] = field(default_factory=dict)
    pii: dict[str, str] = field(default_factory=dict)
    set_once: bool = False
    unset: list[str] = field(default_factory=list)
    increment: dict[str, float] = field(default_factory=dict)
    append: dict[str, list] = field(default_factory=dict)
    touch: dict[str, str] = field(default_factory=dict)
    touches_seen: bool = True
    clear: bool = False  # forget every trait and all personal data (Sensors profile_delete)


GENDERS = {
    "male": "male", "m": "male", "man": "male", "男": "male", "先生": "male", "1": "male",
    "female": "female", "f": "female", "woman": "female", "女": "female", "女士": "female", "2": "female",
}
_NORMALISE_PII = {"phone": crypto.normalise_phone, "email": crypto.normalise_email}


def normalise_gender(value: Any) -> str | None:
    """``male`` / ``female`` from the spellings shops use, else None (unknown)."""
    return GENDERS.get(str(value).strip().lower())


def split_traits(traits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate plain traits from personal data; drop what we never keep.

    Phones, emails and gender are stored in one canonical form whatever channel
    they came from, so a merge never keeps a raw spelling over a clean one.
    """
    plain, pii = {}, {}
    for key, value in traits.items():
        if key in DROPPED_TRAITS or key in ID_TRAITS or value is None:
            continue
        if key in PII_TRAITS:
            field = PII_TRAITS[key]
            pii[field] = _canonical(field, str(value))
        elif key == "gender":
            plain[key] = normalise_gender(value) or value
        elif isinstance(key, str) and not key.startswith("$identity"):
            plain[key] = value
    return plain, pii


def _canonical(field: str, value: str) -> str:
    normalise = _NORMALISE_PII.get(field)
    if normalise is None:
        return value
    try:
        return normalise(value)
    except crypto.InvalidValue:
        return value


def read_pii(person: Person) -> dict[str, str]:
    return json.loads(crypto.decrypt(person.pii_enc)) if person.pii_enc else {}


def write_pii(person: Person, pii: dict[str, str]) -> None:
    person.pii_enc = crypto.encrypt(json.dumps(pii, ensure_ascii=False, sort_keys=True)) if pii else ""


def apply_updates(updates: Iterable[ProfileUpdate]) -> None:
    """Apply profile updates in message order.

    Most messages only say "seen at T" (and maybe where from): those persons are
    updated with SQL that keeps the earliest/latest values, without reading them.
    Persons whose traits or personal data change are read, changed and written.
    """
    fold = ProfileFold()
    for update in updates:
        fold.add(update)
    fold.apply()


class ProfileFold:
    """A batch's profile updates folded per person, then written with one statement per person.

    ``seen`` records a message that only says "seen at T, from there" without
    building a ``ProfileUpdate``; ``add`` takes any update. A person with at least
    one rich update (traits, personal data) gets all of its updates applied in
    order on the loaded row; every other person gets one monotone UPDATE with the
    earliest/latest seen and touch of the batch — the same result as applying the
    updates one by one: first values keep the earliest (the first of equals), last
    values the latest (the last of equals).
    """

    def __init__(self) -> None:
        # person -> [first seen, last seen, first touch at, first touch, last touch at, last touch]
        self._seen: dict[int, list] = {}
        self._updates: dict[int, list[ProfileUpdate]] = {}  # persons with a rich update: everything, in order

    def seen(self, person_id: int, at: datetime, touch: dict[str, str], touches_seen: bool = True) -> None:
        updates = self._updates.get(person_id)
        if updates is not None:
            updates.append(ProfileUpdate(person_id=person_id, at=at, touch=touch, touches_seen=touches_seen))
            return
        s = self._seen.get(person_id)
        if s is None:
            self._seen[person_id] = s = [None, None, None, None, None, None]
        if touches_seen:
            if s[0] is None or at < s[0]:
                s[0] = at
            if s[1] is None or at > s[1]:
                s[1] = at
        if touch:
            if s[2] is None or at < s[2]:
                s[2], s[3] = at, touch
            if s[4] is None or at >= s[4]:
                s[4], s[5] = at, touch

    def add(self, update: ProfileUpdate) -> None:
        pid = update.person_id
        updates = self._updates.get(pid)
        if updates is not None:
            updates.append(update)
        elif _is_rich(update):
            # From now on this person is read and written: replay what was folded so far first
            # (as updates of the same effect: the earliest and latest of each kind, in order).
            self._updates[pid] = [*self._unfold(pid), update]
        else:
            self.seen(pid, update.at, update.touch, update.touches_seen)

    def _unfold(self, pid: int) -> list[ProfileUpdate]:
        s = self._seen.pop(pid, None)
        if s is None:
            return []
        out = []
        for at in (s[0], s[1]):
            if at is not None:
                out.append(ProfileUpdate(person_id=pid, at=at))
        if s[2] is not None:
            out.append(ProfileUpdate(person_id=pid, at=s[2], touch=s[3], touches_seen=False))
            out.append(ProfileUpdate(person_id=pid, at=s[4], touch=s[5], touches_seen=False))
        return out

    def apply(self) -> None:
        _apply_rich(self._updates)
        _apply_folded(self._seen)


def apply_activity(rows: Iterable[tuple]) -> None:
    """Fold activity summaries (``EventStore.activity_to_fold``'s rows) into the persons they
    name, or the persons those were merged into since (erased ones are skipped); inside a
    transaction. The same monotone UPDATEs as a batch's seen times (``_apply_folded``), with the
    parameters the event store made: SQLite's text as it is, aware datetimes and JSON on
    PostgreSQL. A person named twice (merged into another in the list) gets two UPDATEs, which
    keep the earliest and latest values as one would."""
    rows = list(rows)
    survivor = _survivors([row[0] for row in rows])
    postgres, adapt_json = connection.vendor != "sqlite", json_param()
    seen_rows, touch_rows = [], []
    for pid, lo, hi, f_at, f_touch, channel, l_at, l_touch in rows:
        if survivor:
            pid = survivor.get(pid, pid)
            if pid is None:
                continue
        if postgres:
            lo, hi = _aware_utc(lo), _aware_utc(hi)
        if f_touch is None:
            seen_rows.append((*_seen_params(lo, hi), pid))
            continue
        if postgres:
            f_at, l_at = _aware_utc(f_at), _aware_utc(l_at)
            f_touch, l_touch = adapt_json(orjson.loads(f_touch)), adapt_json(orjson.loads(l_touch))
        touch_rows.append((*_seen_params(lo, hi), *_touch_params(f_at, f_touch, channel, l_at, l_touch), pid))
    _write_monotone(seen_rows, touch_rows)


def _aware_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _survivors(ids: list[int]) -> dict[int, int | None]:
    """For those of ``ids`` merged into another person since, the survivor (chains followed); for
    erased ones, None. Other ids are left out. (Plain SQL, as a fold asks for tens of thousands;
    500 ids a query, under the 999 parameters older SQLite builds allow.)"""
    link: dict[int, int | None] = {}
    todo = ids
    with connection.cursor() as cur:
        while todo:
            rows = []
            for i in range(0, len(todo), 500):
                part = todo[i : i + 500]
                cur.execute("SELECT id, merged_into_id FROM customers_person WHERE id IN"
                            f" ({', '.join(['%s'] * len(part))})"
                            " AND (merged_into_id IS NOT NULL OR erased_at IS NOT NULL)", part)
                rows += cur.fetchall()
            link.update(rows)
            todo = [into for _pk, into in rows if into is not None and into not in link]
    out: dict[int, int | None] = {}
    for pid in link:
        end: int | None = pid
        for _hop in range(100):
            if end not in link:
                break
            end = link[end]
            if end is None:
                break
        out[pid] = end
    return out


def _is_rich(u: ProfileUpdate) -> bool:
    return bool(u.traits or u.pii or u.unset or u.increment or u.append or u.clear)


class _Row:
    """The columns of a person that profile updates read and write, loaded without the ORM
    (model instances cost more than the update itself on this hot path). ``_apply`` treats it
    like a ``Person``. A column is converted from what the database returned (JSON text, naive
    times on SQLite) when an update first reads it: most updates read few of them (a touch
    replaces the last touch without reading it), and ``_apply_rich`` writes back only the
    columns they changed."""

    __slots__ = ("pk", "_values", *_RICH_FIELDS)

    def __init__(self, values: Sequence[Any]) -> None:
        self.pk, self._values = values[0], values

    def __getattr__(self, name: str) -> Any:  # a column not read yet (its slot is empty)
        index = _RICH_INDEX.get(name)
        if index is None:
            raise AttributeError(name)
        value = self._values[index]
        if name in _RICH_JSON:
            value = orjson.loads(value) if isinstance(value, str | bytes) else value
        elif name in _RICH_TIMES:
            value = _aware(value)
        setattr(self, name, value)
        return value


def _apply_rich(by_person: dict[int, list[ProfileUpdate]]) -> None:
    if not by_person:
        return
    rows = _load_rows(list(by_person))
    changed: dict[tuple[str, ...], list[_Row]] = {}  # the columns changed -> the rows that changed them
    for pid, updates in by_person.items():
        row = rows[pid]
        fields: set[str] = set()
        for update in updates:
            fields.update(apply_update(row, update))
        if fields:
            changed.setdefault(tuple(f for f in _RICH_FIELDS if f in fields), []).append(row)
    if not changed:
        return
    adapt_dt, adapt_json = datetime_param(), json_param()
    with connection.cursor() as cur:
        for fields, changed_rows in changed.items():
            adapt = [adapt_json if f in _RICH_JSON else adapt_dt if f in _RICH_TIMES else None for f in fields]
            params = [[a(v) if a else v for a, v in zip(adapt, (getattr(row, f) for f in fields), strict=True)]
                      + [row.pk] for row in changed_rows]
            cur.executemany(f"UPDATE customers_person SET {', '.join(f + ' = %s' for f in fields)} WHERE id = %s",
                            params)


def _load_rows(ids: list[int]) -> dict[int, _Row]:
    out: dict[int, _Row] = {}
    # PostgreSQL: lock the rows read here, as what an update read is written back (SQLite's IMMEDIATE
    # transaction already excludes other writers).
    lock = " FOR UPDATE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cur:
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            cur.execute(f"{_RICH_SELECT} ({', '.join(['%s'] * len(chunk))}){lock}", chunk)
            out.update((r[0], _Row(r)) for r in cur.fetchall())
    missing = set(ids) - out.keys()
    if missing:
        raise Person.DoesNotExist(f"persons {sorted(missing)[:10]} do not exist")
    return out


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive (UTC, as Django stores them); PostgreSQL aware."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _apply_folded(folded: dict[int, list]) -> None:
    """first/last seen and first/last touch, as monotone SQL updates (no read)."""
    seen_rows, touch_rows, touch_only = [], [], []
    adapt_dt, adapt_json = datetime_param(), json_param()
    for pid, (lo, hi, f_at, f_touch, l_at, l_touch) in folded.items():
        # A person seen once in the batch (the common case) has one datetime in every slot:
        # convert it once.
        window = None
        if lo is not None:
            a_lo = adapt_dt(lo)
            window = (a_lo, a_lo if hi is lo else adapt_dt(hi))
        touch = None
        if f_at is not None:
            fa = window[0] if window and f_at is lo else adapt_dt(f_at)
            la = fa if l_at is f_at else window[1] if window and l_at is hi else adapt_dt(l_at)
            ft = adapt_json({**f_touch, "at": _iso(f_at, fa)})
            lt = ft if l_at is f_at and l_touch is f_touch else adapt_json({**l_touch, "at": _iso(l_at, la)})
            touch = _touch_params(fa, ft, f_touch.get("channel", "")[:64], la, lt)
        if touch and window:
            touch_rows.append((*_seen_params(*window), *touch, pid))
        elif touch:
            touch_only.append((*touch, pid))
        elif window:
            seen_rows.append((*_seen_params(*window), pid))
    _write_monotone(seen_rows, touch_rows, touch_only)


def _iso(at: datetime, param: Any) -> str:
    """``at.isoformat()``, derived from its parameter when that is SQLite's text (naive UTC,
    ``str`` form) rather than the datetime itself (PostgreSQL)."""
    if at.tzinfo is UTC and isinstance(param, str):
        return f"{param[:10]}T{param[11:]}+00:00"
    return at.isoformat()


_SEEN_SET = (
    "first_seen = CASE WHEN first_seen IS NULL OR first_seen > %s THEN %s ELSE first_seen END,"
    " last_seen = CASE WHEN last_seen IS NULL OR last_seen < %s THEN %s ELSE last_seen END"
)
_TOUCH_SET = (
    "first_touch = CASE WHEN first_touch_at IS NULL OR first_touch_at > %s THEN %s ELSE first_touch END,"
    " acquisition_channel = CASE WHEN first_touch_at IS NULL OR first_touch_at > %s THEN %s"
    " ELSE acquisition_channel END,"
    " first_touch_at = CASE WHEN first_touch_at IS NULL OR first_touch_at > %s THEN %s ELSE first_touch_at END,"
    " last_touch = CASE WHEN last_touch_at IS NULL OR last_touch_at <= %s THEN %s ELSE last_touch END,"
    " last_touch_at = CASE WHEN last_touch_at IS NULL OR last_touch_at <= %s THEN %s ELSE last_touch_at END"
)


def _seen_params(lo: Any, hi: Any) -> tuple:
    """``_SEEN_SET``'s parameters: the earliest and latest time seen."""
    return lo, lo, hi, hi


def _touch_params(f_at: Any, f_touch: Any, channel: str, l_at: Any, l_touch: Any) -> tuple:
    """``_TOUCH_SET``'s parameters: the first touch (its time, the touch, its channel) and the last."""
    return f_at, f_touch, f_at, channel, f_at, f_at, l_at, l_touch, l_at, l_at


def _write_monotone(seen_rows: list[tuple], touch_rows: list[tuple], touch_only: Sequence[tuple] = ()) -> None:
    """The monotone UPDATEs of seen times (``_seen_params`` + id), of both (then the touch's) and
    of touches alone, each an ``executemany``."""
    with connection.cursor() as cur:
        if seen_rows:
            cur.executemany(f"UPDATE customers_person SET {_SEEN_SET} WHERE id = %s", seen_rows)
        if touch_rows:
            cur.executemany(f"UPDATE customers_person SET {_SEEN_SET}, {_TOUCH_SET} WHERE id = %s", touch_rows)
        if touch_only:
            cur.executemany(f"UPDATE customers_person SET {_TOUCH_SET} WHERE id = %s", touch_only)


def apply_update(person: Person, u: ProfileUpdate) -> list[str]:
    """Apply one update to ``person`` in memory; returns the fields it changed."""
    changed = []
    if u.touches_seen:
        if person.first_seen is None or u.at < person.first_seen:
            person.first_seen = u.at
            changed.append("first_seen")
        if person.last_seen is None or u.at > person.last_seen:
            person.last_seen = u.at
            changed.append("last_seen")
    if u.traits or u.unset or u.increment or u.append or u.clear:
        _apply_traits(person.traits, u)
        changed.append("traits")
    if (u.unset or u.clear) and person.pii_enc:
        current = read_pii(person)
        kept = {} if u.clear else {k: v for k, v in current.items() if k not in u.unset}
        if kept != current:
            write_pii(person, kept)
            changed.append("pii_enc")
    if u.pii:
        current = read_pii(person)
        merged = {**u.pii, **current} if u.set_once else {**current, **u.pii}
        if merged != current:
            write_pii(person, merged)
            changed.append("pii_enc")
    if u.touch:
        changed += _apply_touch(person, u)
    return changed


def _apply_traits(traits: dict[str, Any], u: ProfileUpdate) -> None:
    if u.clear:
        traits.clear()
    for key, value in u.traits.items():
        if u.set_once and key in traits:
            continue
        if len(traits) < MAX_TRAITS or key in traits:
            traits[key] = value
    for key in u.unset:
        traits.pop(key, None)
    for key, delta in u.increment.items():
        current = traits.get(key, 0)
        traits[key] = (current if isinstance(current, (int, float)) else 0) + delta
    for key, values in u.append.items():
        current = traits.get(key)
        current = current if isinstance(current, list) else []
        traits[key] = current + [v for v in values if v not in current]


def _apply_touch(person: Person, u: ProfileUpdate) -> list[str]:
    changed = []
    if person.last_touch_at is None or u.at >= person.last_touch_at:
        person.last_touch, person.last_touch_at = {**u.touch, "at": u.at.isoformat()}, u.at
        changed += ["last_touch", "last_touch_at"]
    if person.first_touch_at is None or u.at < person.first_touch_at:
        person.first_touch, person.first_touch_at = {**u.touch, "at": u.at.isoformat()}, u.at
        person.acquisition_channel = u.touch.get("channel", "")[:64]
        changed += ["first_touch", "first_touch_at", "acquisition_channel"]
    return changed


def fold_profile(merged: Person, into: Person) -> None:
    """Move what ``merged`` knew into ``into``; the survivor's own values win."""
    into.traits = {**merged.traits, **into.traits}
    write_pii(into, {**read_pii(merged), **read_pii(into)})
    for attr, pick in (("first_seen", min), ("last_seen", max)):
        values = [v for v in (getattr(merged, attr), getattr(into, attr)) if v is not None]
        setattr(into, attr, pick(values) if values else None)
    if merged.first_touch_at and (not into.first_touch_at or merged.first_touch_at < into.first_touch_at):
        into.first_touch, into.first_touch_at = merged.first_touch, merged.first_touch_at
        into.acquisition_channel = merged.acquisition_channel
    if merged.last_touch_at and (not into.last_touch_at or merged.last_touch_at > into.last_touch_at):
        into.last_touch, into.last_touch_at = merged.last_touch, merged.last_touch_at
    into.referrer_id = into.referrer_id or merged.referrer_id
    into.save(update_fields=["traits", "pii_enc", "first_seen", "last_seen", "first_touch", "first_touch_at",
                             "acquisition_channel", "last_touch", "last_touch_at", "referrer"])
    Order.objects.filter(person_id=merged.pk).update(person_id=into.pk)
    refresh_order_stats([into.pk, merged.pk])
    _move_tags(merged.pk, into.pk)


def _move_tags(merged_id: int, into_id: int) -> None:
    """The survivor carries every tag either carried (once)."""
    from siyu.segments.models import PersonTag

    held = PersonTag.objects.filter(person_id=into_id).values_list("tag_id", flat=True)
    PersonTag.objects.filter(person_id=merged_id, tag_id__in=held).delete()
    PersonTag.objects.filter(person_id=merged_id).update(person_id=into_id)

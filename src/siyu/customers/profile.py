"""Traits, personal data and behavioural attributes on a person's profile."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from siyu.customers.models import Person
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


def split_traits(traits: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate plain traits from personal data; drop what we never keep."""
    plain, pii = {}, {}
    for key, value in traits.items():
        if key in DROPPED_TRAITS or key in ID_TRAITS or value is None:
            continue
        if key in PII_TRAITS:
            pii[PII_TRAITS[key]] = str(value)
        elif isinstance(key, str) and not key.startswith("$identity"):
            plain[key] = value
    return plain, pii


def read_pii(person: Person) -> dict[str, str]:
    return json.loads(crypto.decrypt(person.pii_enc)) if person.pii_enc else {}


def write_pii(person: Person, pii: dict[str, str]) -> None:
    person.pii_enc = crypto.encrypt(json.dumps(pii, ensure_ascii=False, sort_keys=True)) if pii else ""


def apply_updates(updates: Iterable[ProfileUpdate]) -> None:
    """Apply profile updates in order, one read and one write per touched person."""
    updates = list(updates)
    persons = Person.objects.in_bulk({u.person_id for u in updates})
    changed: dict[str, set[int]] = {}
    for update in updates:
        person = persons[update.person_id]
        for fname in _apply(person, update):
            changed.setdefault(fname, set()).add(person.pk)
    fields = sorted(changed)
    rows = [persons[pid] for pid in {pid for ids in changed.values() for pid in ids}]
    if rows:
        Person.objects.bulk_update(rows, fields, batch_size=500)


def _apply(person: Person, u: ProfileUpdate) -> list[str]:
    changed = []
    if u.touches_seen:
        if person.first_seen is None or u.at < person.first_seen:
            person.first_seen = u.at
            changed.append("first_seen")
        if person.last_seen is None or u.at > person.last_seen:
            person.last_seen = u.at
            changed.append("last_seen")
    if u.traits or u.unset or u.increment or u.append:
        _apply_traits(person.traits, u)
        changed.append("traits")
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
    changed = ["last_touch"]
    person.last_touch = {**u.touch, "at": u.at.isoformat()}
    first_at = person.first_touch.get("at") if person.first_touch else None
    if first_at is None or u.at.isoformat() < first_at:
        person.first_touch = {**u.touch, "at": u.at.isoformat()}
        person.acquisition_channel = u.touch.get("channel", "")[:64]
        changed += ["first_touch", "acquisition_channel"]
    return changed


def fold_profile(merged: Person, into: Person) -> None:
    """Move what ``merged`` knew into ``into``; the survivor's own values win."""
    into.traits = {**merged.traits, **into.traits}
    write_pii(into, {**read_pii(merged), **read_pii(into)})
    for attr, pick in (("first_seen", min), ("last_seen", max)):
        values = [v for v in (getattr(merged, attr), getattr(into, attr)) if v is not None]
        setattr(into, attr, pick(values) if values else None)
    mine, theirs = into.first_touch.get("at"), merged.first_touch.get("at")
    if theirs and (not mine or theirs < mine):
        into.first_touch, into.acquisition_channel = merged.first_touch, merged.acquisition_channel
    if (merged.last_touch.get("at") or "") > (into.last_touch.get("at") or ""):
        into.last_touch = merged.last_touch
    into.referrer_id = into.referrer_id or merged.referrer_id
    into.save(update_fields=["traits", "pii_enc", "first_seen", "last_seen", "first_touch",
                             "acquisition_channel", "last_touch", "referrer"])
    Order.objects.filter(person_id=merged.pk).update(person_id=into.pk)
    refresh_order_stats([into.pk, merged.pk])

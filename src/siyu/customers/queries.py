"""Reading profiles: lookup by any id, search, and the profile as people may see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from siyu.accounts.actor import Actor
from siyu.analytics.engine import open_store
from siyu.customers.identity import make_claim
from siyu.customers.models import Identity, IdentityKind, MergeConflict, Person, PersonMerge
from siyu.customers.profile import ProfileUpdate, apply_update, read_pii
from siyu.db import row_number
from siyu.privacy import crypto
from siyu.privacy.actions import audit
from siyu.privacy.masking import mask
from siyu.valuation.queries import prediction_dict

# Identity kinds shown masked to roles without the personal-data permission.
MASKED_KINDS = {"phone", "email", "unionid", "openid", "wecom_id", "user_id", "member_no"}


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Lookup:
    kind: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Lookup:
        """'phone:+8613800000000' -> Lookup; raises ValueError naming the problem."""
        kind, sep, value = text.partition(":")
        if not sep or not value:
            raise ValueError(f"expected KIND:VALUE with KIND one of {', '.join(IdentityKind.values)}")
        if kind not in IdentityKind.values:
            raise ValueError(f"unknown identity kind {kind!r}; use one of {', '.join(IdentityKind.values)}")
        return cls(kind, value)


def find_person(lookup: Lookup) -> Person:
    """The surviving person holding this id; raises NotFound, or ValueError for a malformed id."""
    try:
        claim = make_claim(lookup.kind, lookup.value)
    except crypto.InvalidValue as exc:
        raise ValueError(str(exc)) from None
    ident = Identity.objects.filter(kind=claim.kind, value_hash=claim.key[1]).values_list("person_id", flat=True).first()
    if ident is None:
        raise NotFound(f"no customer with {lookup.kind} {lookup.value!r}")
    return surviving(Person.objects.get(pk=ident))


def surviving(person: Person) -> Person:
    while person.merged_into_id:
        person = Person.objects.get(pk=person.merged_into_id)
    return person


def merged_ids(person: Person) -> list[int]:
    """The person and every person ever merged into it (events keep the old ids)."""
    ids, frontier = [person.pk], [person.pk]
    while frontier:
        frontier = list(Person.objects.filter(merged_into_id__in=frontier).values_list("pk", flat=True))
        ids += frontier
    return ids


def search(q: str = "", channel: str = "") -> QuerySet[Person]:
    """Persons matching an exact id (phone, email, any id value) or a person number."""
    qs = Person.objects.filter(merged_into__isnull=True, erased_at__isnull=True)
    if channel:
        qs = qs.filter(acquisition_channel=channel)
    q = q.strip()
    if not q:
        return qs
    if ":" in q:
        try:
            return qs.filter(pk=find_person(Lookup.parse(q)).pk)
        except (ValueError, NotFound):
            return qs.none()
    hashes = []
    for kind in IdentityKind.values:
        try:
            hashes.append(make_claim(kind, q).key)
        except crypto.InvalidValue:
            continue
    ids = set(Identity.objects.filter(value_hash__in=[h for _k, h in hashes]).values_list("person_id", flat=True))
    number = row_number(q)  # digits past a row number (or "²") are only ever an id value
    if number is not None:
        ids.add(number)
    return qs.filter(pk__in={surviving(p).pk for p in Person.objects.filter(pk__in=ids)})


SEEN_FIELDS = ("first_seen", "last_seen", "first_touch", "first_touch_at", "last_touch", "last_touch_at",
               "acquisition_channel")


def with_recent_activity(person: Person) -> Person:
    """``person`` with what the event store has not yet folded into its profile
    (``sync.fold_activity``) added to its seen times and touches, in memory only; as loaded in
    a process that does not hold the store (a command beside the server, whose writer folds
    within ``pipeline.FOLD_SECONDS``)."""
    store = open_store()
    if store is None:
        return person
    rows = [row for rows in store.activity(merged_ids(person)) for row in rows]
    # Read after the store: a fold in between has moved its part into the database by now.
    person.refresh_from_db(fields=SEEN_FIELDS)
    for _pid, lo, hi, f_at, f_touch, l_at, l_touch in rows:
        apply_update(person, ProfileUpdate(person_id=person.pk, at=lo))
        apply_update(person, ProfileUpdate(person_id=person.pk, at=hi))
        if f_touch is not None:
            apply_update(person, ProfileUpdate(person_id=person.pk, at=f_at, touch=f_touch, touches_seen=False))
            apply_update(person, ProfileUpdate(person_id=person.pk, at=l_at, touch=l_touch, touches_seen=False))
    return person


def _show(kind: str, value: str | None, actor: Actor) -> str | None:
    return value if actor.can_see_pii else mask(kind, value)


def profile(person: Person, actor: Actor, *, with_pii_audit: bool = True) -> dict[str, Any]:
    """The profile as ``actor`` may see it; unmasked views are written to the audit log. Its seen
    times and touches include the activity not yet folded (``with_recent_activity``)."""
    with_recent_activity(person)
    identities = [
        {"kind": i.kind, "value": _show(i.kind if i.kind in MASKED_KINDS else "id", crypto.decrypt(i.value_enc), actor),
         "first_seen_at": i.first_seen_at.isoformat()}
        for i in person.identities.order_by("kind", "first_seen_at")
    ]
    pii = read_pii(person)
    personal = {k: _show("name" if "name" in k else k, v, actor) for k, v in pii.items()}
    if actor.can_see_pii and with_pii_audit and actor.user is not None:
        audit(actor, "view_pii", "person", person.pk, fields=sorted(pii) + ["identities"])
    aov = person.average_order_value
    return {
        "id": person.pk,
        "created_at": person.created_at.isoformat(),
        "identities": identities,
        "personal": personal,
        "masked": not actor.can_see_pii,
        "traits": person.traits,
        "computed": {
            "first_seen": _iso(person.first_seen),
            "last_seen": _iso(person.last_seen),
            "first_order_at": _iso(person.first_order_at),
            "last_order_at": _iso(person.last_order_at),
            "order_count": person.order_count,
            "total_spend": str(person.total_spend),
            "average_order_value": str(aov) if aov is not None else None,
            "acquisition_channel": person.acquisition_channel or None,
            "first_touch": person.first_touch,
            "last_touch": person.last_touch,
            "referrer_id": person.referrer_id,
        },
        "merged_from": merged_ids(person)[1:],
        "predictions": prediction_dict(person.pk),
    }


def merge_history(person: Person) -> list[dict[str, Any]]:
    ids = merged_ids(person)
    rows = PersonMerge.objects.filter(into_id__in=ids).order_by("at", "pk")
    return [
        {"at": m.at.isoformat(), "merged": m.merged_id, "into": m.into_id, "reason": m.reason,
         "evidence": m.evidence, "actor": m.actor_label,
         "explanation": explain_merge(m)}
        for m in rows
    ]


def explain_merge(m: PersonMerge) -> str:
    ids = ", ".join(m.evidence.get("ids", [])) or "ids"
    where = m.evidence.get("message_id") or m.evidence.get("row")
    via = f" in {m.reason} message {where}" if m.evidence.get("message_id") else (
        f" in import row {where}" if where else "")
    return f"person {m.merged_id} merged into {m.into_id}: they were seen together ({ids}){via}"


def open_conflicts(person: Person | None = None) -> QuerySet[MergeConflict]:
    qs = MergeConflict.objects.filter(status=MergeConflict.Status.OPEN)
    if person is not None:
        qs = qs.filter(person_a=person) | qs.filter(person_b=person)
    return qs


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def display_name(person: Person, actor: Actor) -> str:
    """A label for lists: the (masked) name, else the customer number."""
    name = read_pii(person).get("name") if person.pii_enc else None
    if name:
        return _show("name", name, actor) or ""
    return f"#{person.pk}"


def timeline(person: Person, limit: int = 100) -> list[dict[str, Any]]:
    from siyu.analytics.engine import get_store

    rows = get_store().timeline(merged_ids(person), limit)
    return [
        {**r, "timestamp": r["timestamp"].isoformat(),
         "revenue": str(r["revenue"]) if r["revenue"] is not None else None}
        for r in rows
    ]

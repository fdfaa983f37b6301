"""Identity resolution: which person does a set of ids observed together belong to?

Rules (ARCHITECTURE.md, "Identity resolution"):

1. Every id a message carries is a *claim* (kind, normalised value). Claims seen
   together in one message, import row or API call belong to one person.
2. Strong claims decide: the person of the first known strong claim (user id,
   member number, phone, unionid, WeCom id — in that order) is the target.
3. Other persons reached by the claims are merged into the target when they are
   *compatible*: for every strong kind both hold, they share at least one value.
   Incompatible pairs are not merged; a ``MergeConflict`` is queued for review.
4. A person reached only through weak ids (a device, an openid) that holds a
   different strong id than the message brings is not taken over: the classic
   shared-device case. A new person is created for the new strong ids.
5. Unseen claims attach to the target. Merges never rewrite the event store:
   they record an override (merged person -> surviving person) that queries apply.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from django.db import connection, transaction
from django.utils import timezone

from siyu.customers.models import (
    STRONG_KINDS,
    Identity,
    IdentityKind,
    MergeConflict,
    Person,
    PersonMerge,
)
from siyu.privacy import crypto

_STRONG_ORDER = {kind: i for i, kind in enumerate(STRONG_KINDS)}
_NORMALISERS = {
    IdentityKind.PHONE: crypto.normalise_phone,
    IdentityKind.EMAIL: crypto.normalise_email,
}
MAX_ID_LENGTH = 200
_STRONG_SQL = ("SELECT kind, value_hash FROM customers_identity WHERE person_id = %s"
               f" AND kind IN ({', '.join(['%s'] * len(STRONG_KINDS))})")
_KINDS = frozenset(IdentityKind.values)


class Claim(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One id a message carries: its kind, its normalised value, and ``key`` = (kind, keyed hash),
    what lookups use. A ``msgspec`` struct, as claims cross processes inside every message
    (``ingest.intake.pack``), encoded by position: a new field goes last, with a default. Equal
    when all three are (the key follows from kind and value under one lookup key)."""

    kind: str
    value: str
    key: tuple[str, str] = ("", "")

    def __post_init__(self) -> None:
        # The keyed hash is needed several times per message: computed once, here, and carried
        # along when the claim is decoded in another process (only a claim made here lacks it).
        if not self.key[1]:
            msgspec.structs.force_setattr(self, "key", (self.kind, crypto.lookup_hash(self.kind, self.value)))

    @property
    def strong(self) -> bool:
        return self.kind in _STRONG_ORDER


CLAIM_CACHE = 100_000  # claims made from text, kept for the ids that come again (then all dropped)
_claims: dict[tuple[str, str], Claim] = {}
crypto.on_key_reset(_claims.clear)


def make_claim(kind: str, raw: Any) -> Claim:
    """Normalise one id; raises ``crypto.InvalidValue`` with a readable reason.

    Claims are immutable, and a customer sends the same ids with every message: one made from
    text is kept and given again (~0.3 µs instead of ~4 for the normalising and the keyed hash).
    Like the phone cache, it lives only in the memory of the process that parses. (Phone numbers
    are left to that cache: how one is read depends on the default region, a setting.)"""
    if type(raw) is str and kind != "phone":
        claim = _claims.get((kind, raw))
        if claim is None:
            claim = _make_claim(kind, raw)
            if len(_claims) >= CLAIM_CACHE:
                _claims.clear()
            _claims[(kind, raw)] = claim
        return claim
    return _make_claim(kind, raw)


def _make_claim(kind: str, raw: Any) -> Claim:
    if kind not in _KINDS:
        raise crypto.InvalidValue(f"unknown identity kind {kind!r}")
    if raw is None or isinstance(raw, (dict, list, bool)):
        raise crypto.InvalidValue(f"{kind} must be a string or number")
    text = str(raw).strip()
    if not text:
        raise crypto.InvalidValue(f"{kind} is empty")
    if len(text) > MAX_ID_LENGTH:
        raise crypto.InvalidValue(f"{kind} is longer than {MAX_ID_LENGTH} characters")
    normaliser = _NORMALISERS.get(kind)
    return Claim(kind, normaliser(text) if normaliser else text)


def _owners_of(hashes_by_kind: dict[str, list[str]]) -> dict[tuple[str, str], int]:
    """Person ids of known identities, with plain SQL (this runs for every batch)."""
    out: dict[tuple[str, str], int] = {}
    with connection.cursor() as cur:
        for kind, hashes in hashes_by_kind.items():
            unique = list(dict.fromkeys(hashes))
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                cur.execute(
                    "SELECT value_hash, person_id FROM customers_identity WHERE kind = %s"
                    f" AND value_hash IN ({', '.join(['%s'] * len(chunk))})",
                    [kind, *chunk],
                )
                out.update(((kind, h), pid) for h, pid in cur.fetchall())
    return out


def _insert_persons(n: int) -> list[int]:
    """Insert ``n`` empty persons and return their ids in order (plain SQL: a hot path)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    cols = "(created_at, pii_enc, traits, order_count, total_spend, acquisition_channel, first_touch, last_touch)"
    ids: list[int] = []
    with connection.cursor() as cur:
        for i in range(0, n, 500):
            k = min(500, n - i)
            values = ", ".join(["(%s, '', '{}', 0, 0, '', '{}', '{}')"] * k)
            cur.execute(f"INSERT INTO customers_person {cols} VALUES {values} RETURNING id", [now] * k)
            ids += sorted(r[0] for r in cur.fetchall())
    return ids


def _insert_identities(rows: list[tuple]) -> None:
    if not rows:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cur:
        cur.executemany(
            "INSERT INTO customers_identity (person_id, kind, value_hash, value_enc, source_id, first_seen_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(*row, now) for row in rows],
        )


def _same(a: int | _NewPerson, b: int | _NewPerson) -> bool:
    """Person ids compare by value, persons created in this batch by identity."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return a is b


@dataclass(eq=False)
class _NewPerson:
    """A person created in this batch, saved in bulk at the end."""

    claims: list[Claim] = field(default_factory=list)
    row_id: int | None = None
    into: int | _NewPerson | None = None  # set when folded into another person in this batch


class IdentityCache:
    """Process-wide cache of (kind, hash) -> person id; only committed facts go in.

    Compact, because at a million customers it holds millions of ids: the key is
    the first 96 bits of the keyed hash as an int (the hash already covers the
    kind), and two generations of plain dicts stand in for an LRU: entries go to
    the young one, a hit in the old one is copied back, and when the young one
    holds half the limit it becomes the old one (the old one is dropped).
    """

    def __init__(self, limit: int = 2_000_000) -> None:
        self._young: dict[int, int] = {}
        self._old: dict[int, int] = {}
        self._limit = limit
        self._lock = threading.Lock()

    @staticmethod
    def compact(key: tuple[str, str]) -> int | tuple[str, str]:
        try:
            return int(key[1][:24], 16)
        except ValueError:  # not a lookup hash (never produced by crypto.lookup_hash)
            return key

    def get_many(self, keys: Iterable[tuple[str, str]]) -> tuple[dict[tuple[str, str], int], list[tuple[str, str]]]:
        """The person ids of ``keys`` found here, and the keys not found (in their order); one
        call for a batch's ids, ``compact`` written out (it runs for every id of every message)."""
        young, old = self._young, self._old
        found: dict[tuple[str, str], int] = {}
        missing: list[tuple[str, str]] = []
        for key in keys:
            try:
                k: int | tuple[str, str] = int(key[1][:24], 16)
            except ValueError:
                k = key
            hit = young.get(k)
            if hit is None:
                hit = old.get(k)
                if hit is None:
                    missing.append(key)
                    continue
                young[k] = hit
            found[key] = hit
        return found, missing

    def update(self, entries: dict[tuple[str, str], int]) -> None:
        compact = self.compact
        with self._lock:
            self._young.update((compact(k), v) for k, v in entries.items())
            if len(self._young) >= self._limit // 2:
                self._old, self._young = self._young, {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def clear(self) -> None:
        with self._lock:
            self._young, self._old = {}, {}


CACHE = IdentityCache()


class Resolver:
    """Resolve a batch of claim lists to person ids inside one transaction."""

    def __init__(self, actor_label: str, source_id: int | None = None) -> None:
        self.actor_label = actor_label
        self.source_id = source_id
        self._owner: dict[tuple[str, str], int | _NewPerson] = {}
        self._strong: dict[int, dict[str, set[str]]] = {}
        self._new_persons: list[_NewPerson] = []
        self._new_identities: list[tuple[Claim, int | _NewPerson]] = []
        self._redirect: dict[int, int] = {}
        self._cached: dict[tuple[str, str], int] = {}  # what the process cache said (no need to tell it again)
        self.merges: list[tuple[int, int]] = []  # (merged, into)
        self.created: set[int] = set()  # the persons this batch created (their ids, once resolved)
        self._conflicts_found: list[tuple] = []

    # -- public --------------------------------------------------------------
    def resolve(self, claim_lists: list[list[Claim]], evidence: Sequence[dict] | Callable[[int], dict]) -> list[int]:
        """Return the person id for each claim list (must run inside ``atomic``).

        ``evidence`` is one dict per claim list, or a function of the list's index
        that builds it (only claim lists that link or create persons need one).
        """
        self._prefetch([c for claims in claim_lists for c in claims])
        evidence_of = evidence if callable(evidence) else evidence.__getitem__
        if not callable(evidence) and len(evidence) != len(claim_lists):
            raise ValueError("one evidence dict per claim list")
        owner = self._owner
        targets: list[int | _NewPerson] = []
        for i, claims in enumerate(claim_lists):
            # Fast path, the usual case: every id is known and names the same person (saved, or
            # created earlier in this batch). The rules below would return it and change nothing.
            person = None
            for claim in claims:
                p = owner.get(claim.key)
                if p is None or (person is not None and p != person):  # ids by value, new persons by identity
                    person = None
                    break
                person = p
            targets.append(person if person is not None else self._resolve_one(claims, evidence_of(i)))
        self._flush()
        return [self._final_id(t) for t in targets]

    # -- lookups -------------------------------------------------------------
    def _prefetch(self, claims: list[Claim]) -> None:
        owner = self._owner
        cached, unknown = CACHE.get_many(dict.fromkeys(c.key for c in claims if c.key not in owner))
        owner.update(cached)
        self._cached.update(cached)
        if unknown:
            missing: dict[str, list[str]] = defaultdict(list)
            for kind, value_hash in unknown:
                missing[kind].append(value_hash)
            owner.update(_owners_of(missing))
        self._follow_merges()

    def _follow_merges(self) -> None:
        """Replace ids of persons merged elsewhere (maybe by another process) by survivors."""
        ids = list({p for p in self._owner.values() if isinstance(p, int)})
        rows = {}
        with connection.cursor() as cur:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                cur.execute(
                    "SELECT id, merged_into_id FROM customers_person WHERE merged_into_id IS NOT NULL"
                    f" AND id IN ({', '.join(['%s'] * len(chunk))})",
                    chunk,
                )
                rows.update(cur.fetchall())
        for merged, into in rows.items():
            seen = {merged}
            while into not in seen:
                seen.add(into)
                nxt = Person.objects.filter(pk=into).values_list("merged_into", flat=True).first()
                if not nxt:
                    break
                into = nxt
            self._redirect[merged] = into
        for key, pid in self._owner.items():
            if isinstance(pid, int) and pid in self._redirect:
                self._owner[key] = self._redirect[pid]

    def _strong_ids(self, person: int | _NewPerson) -> dict[str, set[str]]:
        if isinstance(person, _NewPerson):
            out: dict[str, set[str]] = defaultdict(set)
            for c in person.claims:
                if c.strong:
                    out[c.kind].add(c.key[1])
            return out
        if person not in self._strong:
            out = defaultdict(set)
            with connection.cursor() as cur:  # plain SQL: this runs for every person a message links
                cur.execute(_STRONG_SQL, [person, *STRONG_KINDS])
                for kind, h in cur.fetchall():
                    out[kind].add(h)
            self._strong[person] = out
        return self._strong[person]

    @staticmethod
    def _conflicts(a: dict[str, set[str]], b: dict[str, set[str]]) -> list[str]:
        return sorted(k for k in a.keys() & b.keys() if a[k] and b[k] and not (a[k] & b[k]))

    # -- the rules -----------------------------------------------------------
    def _resolve_one(self, claims: list[Claim], evidence: dict) -> int | _NewPerson:
        claims = list(dict.fromkeys(claims))
        strong = sorted((c for c in claims if c.strong), key=lambda c: _STRONG_ORDER[c.kind])
        weak = [c for c in claims if not c.strong]
        strong_persons = self._persons_of(strong)
        weak_persons = [p for p in self._persons_of(weak) if not any(_same(p, s) for s in strong_persons)]
        new_strong = {c.kind: {c.key[1]} for c in strong if c.key not in self._owner}

        target = strong_persons[0] if strong_persons else None
        for other in strong_persons[1:]:
            target = self._merge_or_flag(target, other, evidence)
        for other in weak_persons:
            if target is None:
                if not new_strong or not self._conflicts(self._strong_ids(other), new_strong):
                    target = other
            else:
                target = self._merge_or_flag(target, other, evidence, quiet_if_incompatible=bool(strong))
        if target is None:
            target = _NewPerson()
            self._new_persons.append(target)
        for claim in claims:
            if claim.key not in self._owner:
                self._attach(claim, target)
        return target

    def _persons_of(self, claims: list[Claim]) -> list[int | _NewPerson]:
        seen: list[int | _NewPerson] = []
        for claim in claims:
            person = self._owner.get(claim.key)
            if person is not None and not any(_same(person, s) for s in seen):
                seen.append(person)
        return seen

    def _attach(self, claim: Claim, person: int | _NewPerson) -> None:
        self._owner[claim.key] = person
        if isinstance(person, _NewPerson):
            person.claims.append(claim)
        elif claim.strong and person in self._strong:
            self._strong[person][claim.kind].add(claim.key[1])
        self._new_identities.append((claim, person))

    def _merge_or_flag(self, target, other, evidence: dict, quiet_if_incompatible: bool = False):
        """Merge ``other`` into ``target`` if compatible; otherwise queue a conflict."""
        if _same(target, other):
            return target
        conflicts = self._conflicts(self._strong_ids(target), self._strong_ids(other))
        if conflicts:
            if not quiet_if_incompatible:
                self._flag(target, other, conflicts, evidence)
            return target
        if isinstance(other, _NewPerson):
            for claim in other.claims:
                self._owner[claim.key] = target
                if isinstance(target, _NewPerson):
                    target.claims.append(claim)
            # Earlier messages and new ids of this batch that point at ``other`` follow ``into``
            # when written (``_final_id``); ``other`` itself is never inserted.
            other.into = target
            return target
        if isinstance(target, _NewPerson):
            # An existing person survives; the new one was only ever in memory.
            return self._merge_or_flag(other, target, evidence)
        self._merge(other, target, evidence)
        return target

    def _flag(self, a, b, conflicts: list[str], evidence: dict) -> None:
        # Persons created in this batch have no id yet: conflicts are written in _flush.
        self._conflicts_found.append((a, b, conflicts, evidence))

    def _write_conflicts(self) -> None:
        for a, b, conflicts, evidence in self._conflicts_found:
            lo, hi = sorted((self._final_id(a), self._final_id(b)))
            if lo == hi:
                continue
            if not MergeConflict.objects.filter(person_a_id=lo, person_b_id=hi, status="open").exists():
                MergeConflict.objects.create(
                    person_a_id=lo, person_b_id=hi, conflicting_kinds=conflicts, evidence=evidence
                )

    def _merge(self, merged: int, into: int, evidence: dict) -> None:
        merge_persons(merged, into, reason=evidence.get("reason", "linked"), evidence=evidence,
                      actor_label=self.actor_label)
        self.merges.append((merged, into))
        self._redirect[merged] = into
        for key, pid in self._owner.items():
            if pid == merged:
                self._owner[key] = into
        strong = self._strong_ids(into)
        for kind, values in self._strong.pop(merged, {}).items():
            strong[kind] |= values

    # -- writing -------------------------------------------------------------
    def _flush(self) -> None:
        new_persons = [p for p in self._new_persons if p.into is None]
        if new_persons:
            for np_, pid in zip(new_persons, _insert_persons(len(new_persons)), strict=True):
                np_.row_id = pid
                self.created.add(pid)
        final_id, redirect, cached = self._final_id, self._redirect, self._cached
        rows = [
            (final_id(person), claim.kind, claim.key[1], crypto.encrypt(claim.value), self.source_id)
            for claim, person in self._new_identities
        ]
        _insert_identities(rows)
        self._write_conflicts()
        committed = {}
        for key, p in self._owner.items():
            if p.__class__ is not int or p in redirect:
                p = final_id(p)
            if cached.get(key) != p:
                committed[key] = p
        transaction.on_commit(lambda: CACHE.update(committed))

    def _final_id(self, person: int | _NewPerson) -> int:
        while isinstance(person, _NewPerson) and person.into is not None:
            person = person.into
        if isinstance(person, _NewPerson):
            assert person.row_id is not None
            return person.row_id
        while person in self._redirect:  # merged more than once in this batch
            person = self._redirect[person]
        return person


def merge_persons(merged_id: int, into_id: int, *, reason: str, evidence: dict, actor_label: str) -> PersonMerge:
    """Fold person ``merged_id`` into ``into_id``: ids, orders and computed attributes move.

    The event store is not rewritten: an override is recorded from the ``PersonMerge`` rows
    (``sync.unsynced_merges``), by ingestion in its batch's DuckDB transaction, else by the sync.
    """
    from siyu.customers.profile import fold_profile

    if merged_id == into_id:
        raise ValueError(f"cannot merge person {merged_id} into itself")
    merged = Person.objects.select_for_update().get(pk=merged_id)
    into = Person.objects.select_for_update().get(pk=into_id)
    Identity.objects.filter(person_id=merged_id).update(person_id=into_id)
    Person.objects.filter(merged_into_id=merged_id).update(merged_into_id=into_id)
    fold_profile(merged, into)
    merged.merged_into_id = into_id
    merged.save(update_fields=["merged_into"])
    return PersonMerge.objects.create(
        into_id=into_id, merged_id=merged_id, reason=reason, evidence=evidence, actor_label=actor_label
    )

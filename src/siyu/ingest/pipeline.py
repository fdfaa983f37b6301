"""The ingestion pipeline: dedupe, resolve identities, update profiles and orders, store events.

Every protocol (Segment, Sensors, imports, the demo) ends here, so one code
path decides what a customer is. ``process`` is synchronous; ``writer.IngestWriter``
runs it on one thread so many requests share each commit.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta

import orjson
from django.db import transaction

from siyu.analytics import sync
from siyu.analytics.engine import EventRow, get_store, utcnow
from siyu.customers.identity import Resolver
from siyu.customers.profile import ProfileUpdate, apply_updates
from siyu.ingest.messages import Message
from siyu.orders.actions import OrderFact, RefundFact, record_orders, record_refunds


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    person_ids: list[int] = field(default_factory=list)
    unknown_refunds: list[str] = field(default_factory=list)


class DedupeWindow:
    """Message ids seen recently, per source. One process owns the event store, so
    this in-memory window is authoritative; it is reloaded from the store on start."""

    def __init__(self, limit: int = 5_000_000, days: int = 7) -> None:
        self._seen: OrderedDict[tuple[int | None, str], None] = OrderedDict()
        self._limit, self._days = limit, days
        self._loaded = False
        self._lock = threading.Lock()

    def _load(self) -> None:
        since = utcnow() - timedelta(days=self._days)
        for key in reversed(get_store().message_ids_since(since, self._limit)):
            self._seen[key] = None
        self._loaded = True

    def fresh(self, items: list[tuple[int | None, Message]]) -> list[tuple[int | None, Message]]:
        with self._lock:
            if not self._loaded:
                self._load()
            out, batch = [], set()
            for source_id, msg in items:
                key = (source_id, msg.message_id)
                if key in self._seen or key in batch:
                    continue
                batch.add(key)
                out.append((source_id, msg))
            return out

    def add(self, items: list[tuple[int | None, Message]]) -> None:
        with self._lock:
            for source_id, msg in items:
                self._seen[(source_id, msg.message_id)] = None
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()
            self._loaded = False


DEDUPE = DedupeWindow()


def process(items: list[tuple[int | None, Message]], actor_label: str = "ingest") -> Outcome:
    """Durably record messages: operational facts first, then the events."""
    fresh = DEDUPE.fresh(items)
    outcome = Outcome(accepted=len(fresh), duplicates=len(items) - len(fresh))
    if not fresh:
        return outcome
    source_ids = {s for s, _m in fresh}
    with transaction.atomic():
        resolver = Resolver(actor_label, source_id=next(iter(source_ids)) if len(source_ids) == 1 else None)
        person_ids = resolver.resolve(
            [m.claims for _s, m in fresh],
            [{"reason": m.type, "message_id": m.message_id, "source_id": s,
              "ids": sorted({c.kind for c in m.claims})} for s, m in fresh],
        )
        apply_updates(_profile_update(m, pid) for (_s, m), pid in zip(fresh, person_ids, strict=True))
        outcome.unknown_refunds = _record_orders(fresh, person_ids)
    store = get_store()
    store.append([_event_row(s, m, pid) for (s, m), pid in zip(fresh, person_ids, strict=True) if m.store_event])
    if resolver.merges:
        sync.sync_overrides(store)
    DEDUPE.add(fresh)
    outcome.person_ids = person_ids
    return outcome


def _profile_update(m: Message, person_id: int) -> ProfileUpdate:
    update = ProfileUpdate(person_id=person_id, at=m.timestamp, touch=m.touch)
    op = m.profile_op
    if op in ("set", "set_once"):
        update.traits, update.pii, update.set_once = m.traits, m.pii, op == "set_once"
    elif op == "increment":
        update.increment = m.traits
    elif op == "append":
        update.append = m.traits
    elif op == "unset":
        update.unset = list(m.traits) + list(m.pii)
    elif op == "delete":
        update.clear = True
    return update


def _record_orders(fresh: list[tuple[int | None, Message]], person_ids: list[int]) -> list[str]:
    completed, refunds = [], []
    for (source_id, m), pid in zip(fresh, person_ids, strict=True):
        if m.order is None:
            continue
        if m.order.kind == "completed":
            completed.append(OrderFact(
                external_id=m.order.order_id, person_id=pid, placed_at=m.timestamp,
                amount=m.order.amount, currency=m.order.currency, channel=m.touch.get("channel", ""),
                store=m.touch.get("store", ""), coupon=m.order.coupon, items=m.order.items,
                origin=f"event:{source_id}",
            ))
        else:
            refunds.append(RefundFact(external_id=m.order.order_id, amount=m.order.amount))
    if completed:
        record_orders(completed)
    return record_refunds(refunds) if refunds else []


def _event_row(source_id: int | None, m: Message, person_id: int) -> EventRow:
    touch = m.touch
    return EventRow(
        uuid=str(uuid.uuid4()),
        message_id=m.message_id,
        source_id=source_id,
        type=m.type,
        event=m.event,
        person_id=person_id,
        distinct_hash=m.distinct.key[1][:32],
        timestamp=m.timestamp,
        received_at=m.received_at,
        channel=touch.get("channel"),
        utm_source=touch.get("utm_source"),
        utm_medium=touch.get("utm_medium"),
        utm_campaign=touch.get("utm_campaign"),
        store=touch.get("store"),
        qr_scene=touch.get("qr_scene"),
        order_id=m.order.order_id if m.order else None,
        revenue=m.order.amount if m.order and m.order.kind == "completed" else None,
        properties=_json(m.properties),
        context=_json(m.context),
    )


def _json(value: dict) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()

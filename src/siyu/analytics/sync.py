"""Rerunnable syncs from the operational database into the event store.

Each sync remembers the last row it copied in ``sync_state``; a crash midway is
fixed by running it again: overrides are upserts, and order events are written
in the same transaction as the position that says they were written.
"""

from __future__ import annotations

import json

from siyu.analytics.engine import EventRow, EventStore, utcnow
from siyu.customers.models import PersonMerge
from siyu.orders.models import Order


def sync_overrides(store: EventStore) -> int:
    """Copy merges recorded since the last run into ``person_overrides``."""
    position = store.get_position("person_merges")
    merges = list(PersonMerge.objects.filter(pk__gt=position).order_by("pk")
                  .values_list("pk", "merged_id", "into_id", "at")[:100_000])
    if not merges:
        return 0
    store.apply_overrides((merged, into, at) for _pk, merged, into, at in merges)
    store.set_position("person_merges", merges[-1][0])
    return len(merges)


def sync_imported_orders(store: EventStore, batch: int = 10_000) -> int:
    """Write an ``Order Completed`` event for each imported order not yet in the store."""
    total = 0
    while True:
        position = store.get_position("imported_orders")
        orders = list(Order.objects.filter(pk__gt=position, origin__startswith="import:").order_by("pk")[:batch])
        if not orders:
            return total
        now = utcnow()
        store.append([
            EventRow(
                uuid=f"order-{o.pk}", message_id=f"import-order:{o.pk}", source_id=None, type="track",
                event="Order Completed", person_id=o.person_id, distinct_hash="", timestamp=o.placed_at,
                received_at=now, channel=o.channel or None, store=o.store or None, order_id=o.external_id,
                revenue=o.amount,
                properties=json.dumps({"order_id": o.external_id, "total": str(o.amount),
                                       "currency": o.currency, "coupon": o.coupon}, ensure_ascii=False),
            )
            for o in orders
        ], position=("imported_orders", orders[-1].pk))
        total += len(orders)


def sync_all(store: EventStore) -> dict[str, int]:
    return {"overrides": sync_overrides(store), "imported_orders": sync_imported_orders(store)}

"""The event store's syncs from the operational database: rerunnable, never duplicating."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from siyu.analytics import sync
from siyu.analytics.engine import get_store
from siyu.customers.identity import merge_persons
from siyu.customers.models import Person
from siyu.orders.actions import OrderFact, record_orders

pytestmark = pytest.mark.django_db


def _order_events() -> list[tuple]:
    return get_store().cursor().execute(
        "SELECT order_id, revenue, person_id FROM events WHERE event = 'Order Completed' ORDER BY order_id"
    ).fetchall()


def test_imported_orders_reach_the_event_store_once_however_often_sync_runs():
    person = Person.objects.create()
    record_orders([
        OrderFact(external_id=f"POS-{i}", person_id=person.pk, placed_at=datetime(2026, 3, i + 1, tzinfo=UTC),
                  amount=Decimal("12.50"), origin="import:1")
        for i in range(3)
    ])
    record_orders([OrderFact(external_id="WEB-1", person_id=person.pk, placed_at=datetime(2026, 3, 9, tzinfo=UTC),
                             amount=Decimal("9"), origin="event:1")])
    assert sync.sync_imported_orders(get_store(), batch=2) == 3
    assert sync.sync_imported_orders(get_store()) == 0
    assert _order_events() == [(f"POS-{i}", Decimal("12.50"), person.pk) for i in range(3)]


def test_merge_overrides_keep_every_chain_one_hop_long():
    a, b, c = (Person.objects.create() for _ in range(3))
    merge_persons(a.pk, b.pk, reason="test", evidence={}, actor_label="t")
    sync.sync_overrides(get_store())
    merge_persons(b.pk, c.pk, reason="test", evidence={}, actor_label="t")
    assert sync.sync_overrides(get_store()) == 1
    assert sync.sync_overrides(get_store()) == 0
    rows = get_store().cursor().execute(
        "SELECT old_person_id, person_id FROM person_overrides ORDER BY old_person_id").fetchall()
    assert rows == [(a.pk, c.pk), (b.pk, c.pk)]


def test_overrides_recorded_together_are_one_hop_in_any_order():
    store, at = get_store(), datetime(2026, 5, 1, tzinfo=UTC)
    store.apply_overrides([(9, 1, at)])  # an earlier merge: 9 -> 1
    # In one call: 1 -> 2 after 2 -> 3 (the chain arrives backwards), and 4 -> 5 -> 6.
    store.apply_overrides([(2, 3, at), (1, 2, at), (4, 5, at), (5, 6, at)])
    rows = store.cursor().execute("SELECT old_person_id, person_id FROM person_overrides ORDER BY 1").fetchall()
    assert rows == [(1, 3), (2, 3), (4, 6), (5, 6), (9, 3)]
    store.apply_overrides([])
    assert store.cursor().execute("SELECT count(*) FROM person_overrides").fetchone() == (5,)


def test_merging_a_person_into_itself_is_refused():
    p = Person.objects.create()
    with pytest.raises(ValueError, match="itself"):
        merge_persons(p.pk, p.pk, reason="test", evidence={}, actor_label="t")

"""Order attributes kept on the person as orders arrive: counted as they are inserted, equal
to recomputing them from the orders."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from siyu.customers.models import Person
from siyu.orders.actions import (
    OrderFact,
    RefundFact,
    record_orders,
    record_refunds,
    refresh_order_stats,
)

pytestmark = pytest.mark.django_db

STATS = ("order_count", "total_spend", "first_order_at", "last_order_at")


def _stats(ids: list[int]) -> dict[int, tuple]:
    return {p.pk: tuple(getattr(p, f) for f in STATS) for p in Person.objects.filter(pk__in=ids)}


def test_orders_counted_as_they_arrive_equal_the_orders_recomputed():
    rng = random.Random(5)
    persons = [Person.objects.create().pk for _ in range(6)]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    n = 0
    for batch in range(8):
        facts = []
        for _ in range(rng.randint(1, 9)):  # a person may get several orders in one batch, in any time order
            n += 1
            facts.append(OrderFact(f"O-{n}", rng.choice(persons), start + timedelta(hours=rng.randint(-500, 500),
                                                                                   microseconds=rng.choice([0, 250_000])),
                                   Decimal(rng.randint(1, 99_999)) / 100))
        record_orders(facts, new=batch % 2 == 0)
        if batch == 4:  # refunds recompute from the orders; later orders are counted on top
            record_refunds([RefundFact("O-1", None), RefundFact("O-2", Decimal("0.01"))])
    counted = _stats(persons)
    refresh_order_stats(persons)
    recomputed = _stats(persons)
    assert counted == recomputed
    assert sum(c[0] for c in counted.values()) == n - 1  # O-1 refunded whole
    assert all(c[0] == 0 or c[2] <= c[3] for c in counted.values())


def test_an_order_already_recorded_is_not_counted_again():
    person = Person.objects.create()
    fact = OrderFact("O-1", person.pk, datetime(2026, 3, 1, tzinfo=UTC), Decimal("12.30"))
    assert record_orders([fact]) == (["O-1"], [])
    assert record_orders([fact, fact]) == ([], ["O-1"])
    person.refresh_from_db()
    assert (person.order_count, person.total_spend) == (1, Decimal("12.30"))


def test_lookups_by_person_are_served_by_the_composite_indexes_alone():
    """customers.0004 and orders.0002 drop the person_id indexes by name: check on each database
    that they are gone and that the composite indexes starting with person_id remain."""
    from django.db import connection

    with connection.cursor() as cur:
        for table, composite in (("customers_identity", ["person_id", "kind"]),
                                 ("orders_order", ["person_id", "placed_at"])):
            indexes = [c["columns"] for c in connection.introspection.get_constraints(cur, table).values()
                       if c["index"] and not c["primary_key"]]
            assert ["person_id"] not in indexes, table
            assert composite in indexes, table

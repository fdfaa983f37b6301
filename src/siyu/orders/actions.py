"""Recording orders and refunds, and keeping each person's order attributes true."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, F, Max, Min, Sum

from siyu.customers.models import Person
from siyu.db import bulk_set
from siyu.orders.models import Order


@dataclass(frozen=True)
class OrderFact:
    external_id: str
    person_id: int
    placed_at: datetime
    amount: Decimal
    currency: str = "CNY"
    channel: str = ""
    store: str = ""
    coupon: str = ""
    items: list = field(default_factory=list)
    origin: str = ""


@dataclass(frozen=True)
class RefundFact:
    external_id: str
    amount: Decimal | None  # None: the whole order


def record_orders(facts: Iterable[OrderFact]) -> tuple[list[str], list[str]]:
    """Insert orders not seen before; returns (created ids, already-known ids).

    Idempotent on ``external_id``: the same order arriving twice (a retried
    request, a re-imported file) is recorded once.
    """
    facts = list({f.external_id: f for f in facts}.values())
    known = set(
        Order.objects.filter(external_id__in=[f.external_id for f in facts]).values_list("external_id", flat=True)
    )
    new = [f for f in facts if f.external_id not in known]
    Order.objects.bulk_create(
        [
            Order(external_id=f.external_id, person_id=f.person_id, placed_at=f.placed_at, amount=f.amount,
                  currency=f.currency, channel=f.channel, store=f.store, coupon=f.coupon, items=f.items,
                  origin=f.origin)
            for f in new
        ],
        batch_size=500,
    )
    refresh_order_stats({f.person_id for f in new})
    return [f.external_id for f in new], sorted(known)


def record_refunds(facts: Iterable[RefundFact]) -> list[str]:
    """Apply refunds to known orders; returns the ids that were not found.

    A refund never takes an order below zero: a repeated full refund is a no-op.
    """
    facts = list(facts)
    orders = {o.external_id: o for o in Order.objects.select_for_update().filter(
        external_id__in=[f.external_id for f in facts])}
    missing, touched = [], set()
    for fact in facts:
        order = orders.get(fact.external_id)
        if order is None:
            missing.append(fact.external_id)
            continue
        want = order.amount if fact.amount is None else order.refunded_amount + fact.amount
        order.refunded_amount = min(order.amount, max(Decimal("0"), want))
        order.status = (Order.Status.REFUNDED if order.refunded_amount >= order.amount
                        else Order.Status.PARTIALLY_REFUNDED)
        order.save(update_fields=["refunded_amount", "status"])
        touched.add(order.person_id)
    refresh_order_stats(touched)
    return missing


def refresh_order_stats(person_ids: Iterable[int]) -> None:
    """Recompute order_count, total_spend, first/last order from the orders themselves."""
    ids = list(person_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        stats = (
            Order.objects.filter(person_id__in=chunk)
            .exclude(status=Order.Status.REFUNDED)
            .values("person_id")
            .annotate(n=Count("id"), spend=Sum(F("amount") - F("refunded_amount")),
                      first=Min("placed_at"), last=Max("placed_at"))
        )
        by_person = {row["person_id"]: row for row in stats}
        persons = list(Person.objects.filter(pk__in=chunk).only("id"))
        for person in persons:
            row = by_person.get(person.pk)
            person.order_count = row["n"] if row else 0
            person.total_spend = (row["spend"] or Decimal("0")) if row else Decimal("0")
            person.first_order_at = row["first"] if row else None
            person.last_order_at = row["last"] if row else None
        fields = ("order_count", "total_spend", "first_order_at", "last_order_at")
        bulk_set(Person, ((p, fields) for p in persons))


__all__ = ["OrderFact", "RefundFact", "record_orders", "record_refunds", "refresh_order_stats"]

"""Importing orders: one row per order, idempotent on the order id.

A customer id the shop knows but siyu does not yet creates the customer, so no
order is ever dropped for want of a profile (docs/imports.md says so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils.translation import gettext as _

from siyu.customers.identity import Claim, Resolver, make_claim
from siyu.imports import values
from siyu.imports.base import (
    ClaimKey,
    Context,
    NewCustomers,
    Report,
    RowRejected,
    count_new_customers,
    created_persons,
    owners_of,
    read_cells,
)
from siyu.imports.columns import ID_KINDS, ORDERS, ColumnMap
from siyu.imports.errors import ImportFileError, RowError, ValueProblem
from siyu.imports.readers import SheetRow
from siyu.orders.actions import OrderFact, RefundFact, record_orders, record_refunds
from siyu.orders.models import Order
from siyu.privacy.crypto import InvalidValue

REQUIRED = ("order_id", "placed_at", "amount")
_KIND_LIKE = re.compile(r"[a-z][a-z_]{1,19}")  # how a kind of id is written before KIND:VALUE's colon
CUSTOMER_FIELDS = ("customer", *(f"customer_{k}" for k in ID_KINDS))
MAX_ORDER_ID = 100
MAX_LABEL = 64


@dataclass(slots=True)
class OrderRecord:
    row: int
    order_id: str
    claims: list[Claim]
    keys: list[ClaimKey]
    placed_at: datetime
    amount: Decimal
    currency: str
    store: str = ""
    channel: str = ""
    coupon: str = ""
    refunded: Decimal | None = None  # the order's refunded total according to the file
    full_refund: bool = False


@dataclass
class OrderPlan:
    new: list[OrderRecord] = field(default_factory=list)
    refunds: list[RefundFact] = field(default_factory=list)  # for orders already imported
    owners: dict[ClaimKey, int] = field(default_factory=dict)


class OrderImporter:
    catalog = ORDERS

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.customer_kind = ctx.options.get("customer_kind") or "member_no"
        self.seen: dict[str, int] = {}  # order id -> first row, to refuse duplicates within the file
        self.new_customers = NewCustomers()

    def check_columns(self, columns: ColumnMap) -> None:
        missing = [f for f in REQUIRED if not columns.has(f)]
        if not any(columns.has(f) for f in CUSTOMER_FIELDS):
            missing.append("customer")
        if missing:
            raise ImportFileError(
                _("the file has no column for %(missing)s; orders need a customer id, order id, time and"
                  " amount. Rename the columns or map them to these fields (columns found: %(columns)s)")
                % {"missing": ", ".join(missing), "columns": ", ".join(h for h in columns.headers if h)},
                needs_mapping=True,
            )

    # -- validation ----------------------------------------------------------
    def validate(self, row: SheetRow, columns: ColumnMap) -> OrderRecord:
        got: dict[str, Any] = {}
        claims: list[Claim] = []

        def read(fname: str, value: Any) -> None:
            if fname in CUSTOMER_FIELDS:
                claims.append(self._claim(fname, values.text(value)))
            else:
                got[fname] = _read_field(fname, value, self.ctx.now)

        errors = read_cells(row, columns, read, (ValueProblem, InvalidValue))
        if not row.problems:
            errors += self._completeness(row.number, got, claims, {e.field for e in errors}, columns)
        if errors:
            raise RowRejected(errors)
        record = OrderRecord(
            row=row.number, order_id=got["order_id"], claims=claims, keys=[c.key for c in claims],
            placed_at=got["placed_at"], amount=got["amount"],
            currency=got.get("currency") or values.default_currency(), store=got.get("store", ""),
            channel=got.get("channel", ""), coupon=got.get("coupon", ""),
        )
        _refund(record, got.get("status"), got.get("refund_amount"))
        self.seen[record.order_id] = row.number
        return record

    def _claim(self, fname: str, raw: str) -> Claim:
        if fname != "customer":
            return make_claim(fname.removeprefix("customer_"), raw)
        kind, sep, value = raw.partition(":")
        if sep and kind in ID_KINDS:
            return make_claim(kind, value)
        if sep and _KIND_LIKE.fullmatch(kind):
            # ``qq:1`` or ``mobile:138…`` meant a kind; taken as a member number it would make a
            # new customer of every row.
            raise ValueProblem(_("%(kind)r before the colon is not a kind of id (%(kinds)s); map the column to"
                                 " customer_%(default)s to read the whole cell as that id")
                               % {"kind": kind, "kinds": ", ".join(ID_KINDS), "default": self.customer_kind})
        return make_claim(self.customer_kind, raw)

    def _completeness(self, number: int, got: dict[str, Any], claims: list[Claim], failed: set[str],
                      columns: ColumnMap) -> list[RowError]:
        """Required values that are missing (not those already reported as unreadable)."""
        errors = [RowError(number, f, _("is empty; every order needs it"), _header(columns, f))
                  for f in REQUIRED if f not in got and f not in failed]
        if not claims and not failed & set(CUSTOMER_FIELDS):
            header = ", ".join(h for f in CUSTOMER_FIELDS if (h := _header(columns, f)))
            errors.append(RowError(number, "customer", _("is empty; every order needs a customer id"), header))
        first = self.seen.get(got.get("order_id", ""))
        if first is not None:
            errors.append(RowError(number, "order_id", _("order %(id)s already appears in row %(row)d of this file")
                                   % {"id": got["order_id"], "row": first}, _header(columns, "order_id")))
        status, refund = got.get("status"), got.get("refund_amount")
        if "amount" in got and refund is not None and refund > got["amount"]:
            errors.append(RowError(number, "refund_amount", _("is larger than the order amount"),
                                   _header(columns, "refund_amount")))
        if status == values.PARTIALLY_REFUNDED and refund is None:
            errors.append(RowError(number, "refund_amount", _("is empty; a partially refunded order needs it"),
                                   _header(columns, "refund_amount") or _header(columns, "status")))
        return errors

    # -- writing -------------------------------------------------------------
    def plan(self, records: list[OrderRecord], report: Report) -> OrderPlan:
        """Unknown order ids are new; known ones only move their refund forward, or are skipped."""
        known = {
            ext: (amount, refunded)
            for ext, amount, refunded in Order.objects.filter(external_id__in=[r.order_id for r in records])
            .values_list("external_id", "amount", "refunded_amount")
        }
        plan = OrderPlan()
        for record in records:
            if record.order_id not in known:
                plan.new.append(record)
                continue
            refund = _refund_update(record, *known[record.order_id])
            if refund is None:
                report.skipped += 1
            else:
                plan.refunds.append(refund)
        plan.owners = owners_of(k for r in plan.new for k in r.keys)
        if self.ctx.dry_run:
            report.accepted += len(plan.new) + len(plan.refunds)
            count_new_customers([r.keys for r in plan.new], plan.owners, self.new_customers)
            report.customers_created = self.new_customers.count
        return plan

    def commit(self, plan: OrderPlan, report: Report) -> None:
        created: set[str] = set()
        if plan.new:
            resolver = Resolver(self.ctx.actor_label)
            person_ids = resolver.resolve([r.claims for r in plan.new],
                                          [self.ctx.evidence(r.row, r.claims) for r in plan.new])
            report.merges += len(resolver.merges)
            report.customers_created += created_persons([r.keys for r in plan.new], plan.owners, person_ids)
            ids, already = record_orders(self._fact(r, pid) for r, pid in zip(plan.new, person_ids, strict=True))
            created = set(ids)
            report.skipped += len(already)  # recorded by someone else since the plan was made
        refunds = [RefundFact(r.order_id, None if r.full_refund else r.refunded)
                   for r in plan.new if r.order_id in created and r.refunded]
        if refunds or plan.refunds:
            record_refunds([*refunds, *plan.refunds])
        report.accepted += len(created) + len(plan.refunds)

    def _fact(self, r: OrderRecord, person_id: int) -> OrderFact:
        return OrderFact(external_id=r.order_id, person_id=person_id, placed_at=r.placed_at, amount=r.amount,
                         currency=r.currency, channel=r.channel, store=r.store, coupon=r.coupon,
                         origin=f"import:{self.ctx.job_id}")


def _header(columns: ColumnMap, fname: str) -> str:
    return ", ".join(columns.headers[i] for i in columns.columns_of(fname))


def _read_field(fname: str, value: Any, now: datetime) -> Any:
    if fname == "order_id":
        return values.bounded_text(value, MAX_ORDER_ID)
    if fname == "placed_at":
        return values.parse_time(value, now)
    if fname in ("amount", "refund_amount"):
        return values.parse_amount(value)
    if fname == "currency":
        return values.parse_currency(value)
    if fname == "status":
        return values.parse_status(value)
    return values.bounded_text(value, MAX_LABEL)  # store, channel, coupon


def _refund(record: OrderRecord, status: str | None, refund: Decimal | None) -> None:
    """The refunded total the file states: its refund_amount, else all of it when the status says so."""
    if refund is not None and refund > 0:
        record.refunded = refund
        record.full_refund = refund >= record.amount
    elif status == values.REFUNDED:
        record.refunded, record.full_refund = record.amount, True


def _refund_update(record: OrderRecord, amount: Decimal, refunded: Decimal) -> RefundFact | None:
    """The refund that brings a known order up to what the file says; None when it is already there.

    Refunds only move forward, so importing the same file again changes nothing.
    """
    if record.full_refund:
        return RefundFact(record.order_id, None) if refunded < amount else None
    if record.refunded is not None and record.refunded > refunded:
        return RefundFact(record.order_id, min(record.refunded, amount) - refunded)
    return None

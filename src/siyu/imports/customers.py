"""Importing customers: each row's ids are resolved to one person, its other columns fill the profile."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _

from siyu.customers.identity import Claim, Resolver, make_claim
from siyu.customers.models import Person
from siyu.customers.profile import ProfileUpdate, apply_updates, read_pii, split_traits
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
from siyu.imports.columns import CUSTOMERS, ID_KINDS, PERSONAL_PREFIX, TRAIT_PREFIX, ColumnMap
from siyu.imports.errors import ImportFileError, RowError, ValueProblem
from siyu.imports.readers import SheetRow
from siyu.privacy.crypto import InvalidValue

TEXT_FIELDS = {"name", "city", "province", "address"}
PARSERS = {"gender": values.parse_gender, "birthday": values.parse_birthday}


@dataclass(slots=True)
class CustomerRecord:
    row: int
    claims: list[Claim]
    keys: list[ClaimKey]
    traits: dict[str, Any]
    pii: dict[str, str]


@dataclass
class CustomerPlan:
    write: list[CustomerRecord] = field(default_factory=list)
    owners: dict[ClaimKey, int] = field(default_factory=dict)


class CustomerImporter:
    catalog = CUSTOMERS

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.new_customers = NewCustomers()
        # Customers an earlier row changes: a later row about them is applied, never skipped,
        # so the file's last word wins. A real run sees earlier chunks in the database.
        self.touched: set[int] = set()

    def check_columns(self, columns: ColumnMap) -> None:
        if not any(columns.has(kind) for kind in ID_KINDS):
            raise ImportFileError(
                _("no column holds a customer id; name one of the columns %(kinds)s, or map one to such a"
                  " field (columns found: %(columns)s)")
                % {"kinds": ", ".join(ID_KINDS), "columns": ", ".join(h for h in columns.headers if h)},
                needs_mapping=True,
            )

    # -- validation ----------------------------------------------------------
    def validate(self, row: SheetRow, columns: ColumnMap) -> CustomerRecord:
        claims: list[Claim] = []
        fields: dict[str, Any] = {}
        personal: dict[str, str] = {}

        def read(fname: str, value: Any) -> None:
            if fname in ID_KINDS:
                claim = make_claim(fname, values.text(value))
                claims.append(claim)
                if fname in ("phone", "email"):
                    fields.setdefault(fname, claim.value)
            elif fname in PARSERS:
                parsed = PARSERS[fname](value)
                if parsed is not None:
                    fields[fname] = parsed
            elif fname in TEXT_FIELDS:
                fields[fname] = values.text(value)
            elif fname.startswith(PERSONAL_PREFIX):
                personal[fname[len(PERSONAL_PREFIX):]] = values.text(value)
            elif fname.startswith(TRAIT_PREFIX):
                fields[fname[len(TRAIT_PREFIX):]] = values.plain(value)

        errors = read_cells(row, columns, read, (ValueProblem, InvalidValue))
        if not errors and not claims:
            errors.append(RowError(row.number, "ids", _("no customer id in this row: fill in at least one of %(cols)s")
                                   % {"cols": ", ".join(_id_columns(columns))}))
        if errors:
            raise RowRejected(errors)
        plain, pii = split_traits(fields)
        claims = list(dict.fromkeys(claims))
        return CustomerRecord(row.number, claims, [c.key for c in claims], plain, {**pii, **personal})

    # -- writing -------------------------------------------------------------
    def plan(self, records: list[CustomerRecord], report: Report) -> CustomerPlan:
        """Rows whose ids all point at one customer who already has every value are skipped."""
        owners = owners_of(k for r in records for k in r.keys)
        persons = Person.objects.in_bulk({*owners.values()})
        pii_of: dict[int, dict[str, str]] = {}
        plan = CustomerPlan(owners=owners)
        if not self.ctx.dry_run:
            self.touched = set()
        for record in records:
            found = {owners.get(k) for k in record.keys}
            person = persons.get(found.pop()) if len(found) == 1 else None
            if person is not None and person.pk not in self.touched and _holds(person, record, pii_of):
                report.skipped += 1
            else:
                plan.write.append(record)
                self.touched.update(owners[k] for k in record.keys if k in owners)
        if self.ctx.dry_run:
            report.accepted += len(plan.write)
            count_new_customers([r.keys for r in plan.write], owners, self.new_customers)
            report.customers_created = self.new_customers.count
        return plan

    def commit(self, plan: CustomerPlan, report: Report) -> None:
        if not plan.write:
            return
        resolver = Resolver(self.ctx.actor_label)
        person_ids = resolver.resolve([r.claims for r in plan.write],
                                      [self.ctx.evidence(r.row, r.claims) for r in plan.write])
        apply_updates(
            ProfileUpdate(person_id=pid, at=self.ctx.now, traits=r.traits, pii=r.pii, touches_seen=False)
            for r, pid in zip(plan.write, person_ids, strict=True)
        )
        report.accepted += len(plan.write)
        report.merges += len(resolver.merges)
        report.customers_created += created_persons([r.keys for r in plan.write], plan.owners, person_ids)


def _holds(person: Person, record: CustomerRecord, pii_of: dict[int, dict[str, str]]) -> bool:
    """Does the profile already say everything this row says?"""
    if any(person.traits.get(k, _MISSING) != v for k, v in record.traits.items()):
        return False
    if not record.pii:
        return True
    if person.pk not in pii_of:
        pii_of[person.pk] = read_pii(person)
    current = pii_of[person.pk]
    return all(current.get(k) == v for k, v in record.pii.items())


_MISSING = object()


def _id_columns(columns: ColumnMap) -> list[str]:
    return [columns.headers[i] for i, f in sorted(columns.fields.items()) if f in ID_KINDS]

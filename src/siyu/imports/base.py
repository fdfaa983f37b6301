"""The small contract every importer implements, and what importers share.

An importer turns a validated row into a record (``validate``), decides which
records of a chunk would change anything (``plan``, read-only, also the dry
run) and writes them (``commit``, inside the caller's transaction). New kinds
of import register themselves in ``IMPORTERS`` with the same interface.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from siyu.customers.identity import Claim
from siyu.customers.models import Identity, Person
from siyu.imports.columns import Catalog, ColumnMap
from siyu.imports.errors import RowError
from siyu.imports.readers import SheetRow

MAX_REPORTED_ERRORS = 1000
MAX_MERGE_HOPS = 100  # a guard: merge chains are short, and never cycles
ClaimKey = tuple[str, str]


class RowRejected(Exception):
    """A row with at least one problem: it is reported and changes nothing."""

    def __init__(self, errors: list[RowError]) -> None:
        super().__init__("; ".join(e.reason for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Context:
    """One run of one file."""

    job_id: int
    file_name: str
    actor_label: str
    dry_run: bool
    now: datetime
    options: dict[str, str] = field(default_factory=dict)

    def evidence(self, row: int, claims: list[Claim]) -> dict[str, Any]:
        """Why ids were linked: shown by ``siyu customer merges`` as "seen together in import row N"."""
        return {"reason": "import", "row": row, "file": self.file_name, "job_id": self.job_id,
                "ids": sorted({c.kind for c in claims})}


@dataclass
class Report:
    """Counts and row errors of one run."""

    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    error_count: int = 0
    errors: list[RowError] = field(default_factory=list)
    merges: int = 0
    conflicts: int = 0
    customers_created: int = 0

    def reject(self, errors: list[RowError]) -> None:
        self.rejected += 1
        self.error_count += len(errors)
        room = MAX_REPORTED_ERRORS - len(self.errors)
        self.errors += errors[: max(room, 0)]


class Importer(Protocol):
    catalog: Catalog

    def __init__(self, ctx: Context) -> None: ...

    def check_columns(self, columns: ColumnMap) -> None:
        """Raise ImportFileError when a required field has no column."""

    def validate(self, row: SheetRow, columns: ColumnMap) -> Any:
        """The row as a record; raises RowRejected naming every bad field."""

    def plan(self, records: list[Any], report: Report) -> Any:
        """Read-only: which records would change something (dry runs stop here)."""

    def commit(self, plan: Any, report: Report) -> None:
        """Write a planned chunk; runs inside the caller's transaction."""


def read_cells(row: SheetRow, columns: ColumnMap, read: Callable[[str, Any], None],
               errors_of: tuple[type[Exception], ...]) -> list[RowError]:
    """Feed each non-empty mapped cell to ``read``; collect one error per bad cell (the row's
    problems from the reader, such as a merged cell, then the other cells' own), so one pass
    finds them all."""
    errors = [RowError(row.number, _problem_field(columns, col), reason,
                       columns.headers[col] if col is not None else "")
              for col, reason in row.problems]
    unread = {col for col, _reason in row.problems}
    if None in unread:  # the row as a whole is wrong (too many or too few cells): its cells may not line up
        return errors
    for index, fname in columns.fields.items():
        if index in unread:
            continue
        value = row.cells[index]
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            read(fname, value)
        except errors_of as exc:
            errors.append(RowError(row.number, field_label(fname), str(exc), columns.headers[index]))
    return errors


def _problem_field(columns: ColumnMap, col: int | None) -> str:
    if col is None:
        return "columns"
    return field_label(columns.fields[col]) if col in columns.fields else columns.headers[col] or "columns"


def field_label(fname: str) -> str:
    return fname.split(":", 1)[1] if ":" in fname else fname


def owners_of(keys: Iterable[ClaimKey]) -> dict[ClaimKey, int]:
    """The surviving person holding each known id (unknown ids are absent)."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, value_hash in set(keys):
        by_kind[kind].append(value_hash)
    found: dict[ClaimKey, int] = {}
    for kind, hashes in by_kind.items():
        for i in range(0, len(hashes), 500):
            rows = Identity.objects.filter(kind=kind, value_hash__in=hashes[i : i + 500])
            found.update(((kind, h), pid) for h, pid in rows.values_list("value_hash", "person_id"))
    survivors = _survivors(set(found.values()))
    return {key: survivors.get(pid, pid) for key, pid in found.items()}


def _survivors(person_ids: set[int]) -> dict[int, int]:
    """merged person -> surviving person, following chains of merges."""
    out: dict[int, int] = {}
    pending = _merged_into(person_ids)
    for _hop in range(MAX_MERGE_HOPS):
        if not pending:
            break
        out.update(pending)
        nxt = _merged_into(set(pending.values()))
        pending = {m: nxt[i] for m, i in pending.items() if i in nxt}
    return out


def _merged_into(person_ids: set[int]) -> dict[int, int]:
    ids = list(person_ids)
    out: dict[int, int] = {}
    for i in range(0, len(ids), 500):
        rows = Person.objects.filter(pk__in=ids[i : i + 500], merged_into__isnull=False)
        out.update(rows.values_list("pk", "merged_into"))
    return out


class NewCustomers:
    """Counts the customers a dry run would create: rows whose ids are all unknown,
    grouped when rows share an id (a union-find over id keys)."""

    def __init__(self) -> None:
        self._parent: dict[ClaimKey, ClaimKey] = {}
        self.count = 0

    def _find(self, key: ClaimKey) -> ClaimKey:
        while self._parent[key] != key:
            self._parent[key] = self._parent[self._parent[key]]
            key = self._parent[key]
        return key

    def add(self, keys: list[ClaimKey]) -> None:
        roots = {self._find(k) for k in keys if k in self._parent}
        self.count += 1 - len(roots)
        anchor = next(iter(roots)) if roots else keys[0]
        for key in keys:
            self._parent.setdefault(key, key)
        for key in [*keys, *roots]:
            self._parent[self._find(key)] = self._find(anchor)


def count_new_customers(rows: list[list[ClaimKey]], owners: dict[ClaimKey, int],
                        new_customers: NewCustomers) -> None:
    """Dry run: add rows that name no existing customer to the union-find."""
    for keys in rows:
        if keys and not any(k in owners for k in keys):
            new_customers.add(keys)


def created_persons(rows: list[list[ClaimKey]], owners: dict[ClaimKey, int], person_ids: list[int]) -> int:
    """Real run: distinct persons resolved for rows whose ids were all unknown before."""
    return len({pid for keys, pid in zip(rows, person_ids, strict=True) if not any(k in owners for k in keys)})

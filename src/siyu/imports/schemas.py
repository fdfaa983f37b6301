"""Shapes of the import API."""

from __future__ import annotations

from typing import Any

from ninja import Schema


class RowErrorOut(Schema):
    row: int
    field: str
    column: str
    reason: str


class ImportJobOut(Schema):
    job_id: int
    kind: str
    file: str
    sha256: str
    file_format: dict[str, str]
    dry_run: bool
    status: str
    message: str
    rows: int
    accepted: int
    rejected: int
    skipped: int
    customers_created: int
    merges: int
    conflicts: int
    error_count: int
    errors: list[RowErrorOut]
    mapping: dict[str, str]
    unmapped_columns: list[str]
    options: dict[str, Any]
    actor: str
    created_at: str
    finished_at: str | None


class ImportResultOut(ImportJobOut):
    previous_job_id: int | None = None
    event_store: str = "unchanged"


class ImportJobSummary(Schema):
    job_id: int
    kind: str
    file: str
    dry_run: bool
    status: str
    accepted: int
    rejected: int
    skipped: int
    actor: str
    created_at: str

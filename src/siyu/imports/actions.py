"""Importing customers and orders from CSV and Excel files.

Every run is an ``ImportJob``. The whole file is read and validated first; a
dry run stops there and changes nothing. A real run then writes the valid rows
in chunks, one transaction each; a rejected row changes nothing and is
reported with its row number (header = row 1), field and reason. Rows that
would change nothing (an order id already imported, a customer whose profile
already says everything the row says) are counted as ``skipped``, so importing
the same file twice is harmless.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.accounts.actor import Actor
from siyu.customers.models import MergeConflict
from siyu.imports.base import Context, Importer, Report, RowRejected
from siyu.imports.columns import ID_KINDS, ColumnMap, build_mapping
from siyu.imports.customers import CustomerImporter
from siyu.imports.errors import ImportFileError
from siyu.imports.models import ImportJob
from siyu.imports.orders import OrderImporter
from siyu.imports.readers import read_table

log = logging.getLogger("siyu.imports")

IMPORTERS: dict[str, type[Importer]] = {"customers": CustomerImporter, "orders": OrderImporter}
CHUNK_ROWS = 2_000
_SYNC_LOCK = threading.Lock()
_COUNTS = ("rows", "accepted", "rejected", "skipped", "customers_created", "merges", "conflicts", "error_count")

__all__ = ["IMPORTERS", "ImportFileError", "import_file", "job_dict"]


def import_file(actor: Actor, kind: str, path: str | Path, mapping: dict[str, str] | None = None,
                dry_run: bool = False, sheet: str | None = None, *, file_name: str | None = None,
                customer_kind: str | None = None) -> dict[str, Any]:
    """Import one file of ``kind`` (customers or orders); returns counts and row errors.

    ``mapping`` is {column: field} and wins over the automatic mapping; ``customer_kind``
    is the id kind of an orders file's customer column (default member_no). Raises
    ImportFileError, changing nothing, when the file as a whole cannot be imported.
    """
    importer_class = _importer_class(kind)
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(_("no such file: %(path)s") % {"path": path})
    options = _options(customer_kind)
    job = ImportJob.objects.create(
        kind=kind, file_name=(file_name or path.name)[:255], file_sha256=_sha256(path),
        file_size=path.stat().st_size, dry_run=dry_run, options=options, actor_label=actor.label,
    )
    ctx = Context(job_id=job.pk, file_name=job.file_name, actor_label=actor.label, dry_run=dry_run,
                  now=timezone.now(), options=options)
    importer = importer_class(ctx)
    try:
        columns, report = _run(importer, ctx, job, path, mapping or {}, sheet)
    except ImportFileError as exc:
        _close(job, ImportJob.Status.REFUSED, message=str(exc))
        exc.job_id = job.pk
        raise
    except Exception as exc:
        _close(job, ImportJob.Status.FAILED, message=f"{type(exc).__name__}: {exc}")
        raise
    _close(job, ImportJob.Status.FINISHED, report=report, columns=columns)
    result = job_dict(job)
    result["previous_job_id"] = _previous_import(job)
    result["event_store"] = _sync_event_store() if report.accepted and not dry_run else "unchanged"
    return result


def _importer_class(kind: str) -> type[Importer]:
    if kind not in IMPORTERS:
        raise ImportFileError(_("cannot import %(kind)r: choose one of %(kinds)s")
                              % {"kind": kind, "kinds": ", ".join(IMPORTERS)})
    return IMPORTERS[kind]


def _options(customer_kind: str | None) -> dict[str, str]:
    if customer_kind and customer_kind not in ID_KINDS:
        raise ImportFileError(_("unknown customer id kind %(kind)r; use one of %(kinds)s")
                              % {"kind": customer_kind, "kinds": ", ".join(ID_KINDS)})
    return {"customer_kind": customer_kind} if customer_kind else {}


def _run(importer: Importer, ctx: Context, job: ImportJob, path: Path, mapping: dict[str, str],
         sheet: str | None) -> tuple[ColumnMap, Report]:
    table = read_table(path, sheet)
    try:
        job.file_format = {"format": table.format, **table.detail}
        job.save(update_fields=["file_format"])
        columns = build_mapping(importer.catalog, table.headers,
                                {str(k).strip(): str(v).strip() for k, v in mapping.items()})
        importer.check_columns(columns)
        report = Report()
        records = _validate(importer, table.rows, columns, report)
    finally:
        table.close()
    for start in range(0, len(records), CHUNK_ROWS):
        chunk = records[start : start + CHUNK_ROWS]
        if ctx.dry_run:
            importer.plan(chunk, report)
            continue
        with transaction.atomic():
            importer.commit(importer.plan(chunk, report), report)
    report.errors.sort(key=lambda e: e.row)
    if not ctx.dry_run:
        report.conflicts = MergeConflict.objects.filter(evidence__job_id=ctx.job_id).count()
    return columns, report


def _validate(importer: Importer, rows: Any, columns: ColumnMap, report: Report) -> list[Any]:
    """Every row checked before anything is written; rejected rows go to the report."""
    records = []
    for row in rows:
        report.rows += 1
        try:
            records.append(importer.validate(row, columns))
        except RowRejected as exc:
            report.reject(exc.errors)
    return records


def _close(job: ImportJob, status: str, *, message: str = "", report: Report | None = None,
           columns: ColumnMap | None = None) -> None:
    job.status, job.message, job.finished_at = status, message[:2000], timezone.now()
    fields = ["status", "message", "finished_at"]
    if columns is not None:
        job.mapping, job.unmapped_columns = columns.as_dict(), columns.unmapped
        fields += ["mapping", "unmapped_columns"]
    if report is not None:
        for name in _COUNTS:
            setattr(job, name, getattr(report, name))
        job.errors = [e.as_dict() for e in report.errors]
        fields += [*_COUNTS, "errors"]
    job.save(update_fields=fields)
    log.debug("import %s %s: %s (%s accepted, %s rejected, %s skipped)", job.pk, job.file_name, status,
             job.accepted, job.rejected, job.skipped)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _previous_import(job: ImportJob) -> int | None:
    """The last real import of the very same file (same bytes), if any."""
    return (ImportJob.objects.filter(kind=job.kind, file_sha256=job.file_sha256, dry_run=False,
                                     status=ImportJob.Status.FINISHED)
            .exclude(pk=job.pk).order_by("-pk").values_list("pk", flat=True).first())


def _sync_event_store() -> str:
    """Mirror imported orders and merges into the event store when this process can open it.

    The process running ``siyu serve`` owns the event store; a CLI import while the
    server runs leaves the copy to the server's sync (``analytics.sync``).
    """
    from siyu.analytics import sync
    from siyu.analytics.engine import EventStoreBusy, get_store

    try:
        store = get_store()
    except EventStoreBusy:
        return "pending"
    with _SYNC_LOCK:
        sync.sync_all(store)
    return "synced"


def job_dict(job: ImportJob) -> dict[str, Any]:
    """An import run as the CLI and the API report it."""
    return {
        "job_id": job.pk, "kind": job.kind, "file": job.file_name, "sha256": job.file_sha256,
        "file_format": dict(job.file_format),
        "dry_run": job.dry_run, "status": job.status, "message": job.message, "rows": job.rows,
        "accepted": job.accepted, "rejected": job.rejected, "skipped": job.skipped,
        "customers_created": job.customers_created, "merges": job.merges, "conflicts": job.conflicts,
        "error_count": job.error_count,
        "errors": list(job.errors), "mapping": dict(job.mapping), "unmapped_columns": list(job.unmapped_columns),
        "options": dict(job.options), "actor": job.actor_label, "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }

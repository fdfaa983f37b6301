"""File imports over HTTP: upload a CSV or Excel file of customers or orders."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from ninja import File, Form, Query, Router
from ninja.errors import HttpError
from ninja.files import UploadedFile

from siyu.accounts.actor import Actor
from siyu.api import require
from siyu.imports import actions
from siyu.imports.models import ImportJob
from siyu.imports.schemas import ImportJobOut, ImportJobSummary, ImportResultOut

router = Router(tags=["imports"])


@router.post("/customers", response=ImportResultOut, summary="Import customers from a CSV or Excel file")
def import_customers(request: HttpRequest, file: File[UploadedFile], dry_run: Form[bool] = False,
                     mapping: Form[str] = "", sheet: Form[str] = ""):
    """Multipart upload: ``file``, and optionally ``dry_run``, ``mapping`` (JSON {column: field}), ``sheet``."""
    return _import(request, "customers", file, dry_run, mapping, sheet)


@router.post("/orders", response=ImportResultOut, summary="Import orders from a CSV or Excel file")
def import_orders(request: HttpRequest, file: File[UploadedFile], dry_run: Form[bool] = False,
                  mapping: Form[str] = "", sheet: Form[str] = "", customer_kind: Form[str] = ""):
    """As for customers; ``customer_kind`` is the id kind of the customer column (default member_no)."""
    return _import(request, "orders", file, dry_run, mapping, sheet, customer_kind)


@router.get("", response=list[ImportJobSummary], summary="List import runs, newest first")
def list_jobs(request: HttpRequest, limit: int = Query(50, ge=1, le=500)):
    require(request, "imports.view_importjob")
    return [_summary(job) for job in ImportJob.objects.all()[:limit]]


@router.get("/{job_id}", response=ImportJobOut, summary="One import run with its row errors")
def get_job(request: HttpRequest, job_id: int):
    require(request, "imports.view_importjob")
    return actions.job_dict(get_object_or_404(ImportJob, pk=job_id))


def _import(request: HttpRequest, kind: str, upload: UploadedFile, dry_run: bool, mapping: str, sheet: str,
            customer_kind: str = "") -> dict:
    require(request, "imports.add_importjob")
    columns = _parse_mapping(mapping)
    with _saved(upload) as path:
        try:
            return actions.import_file(Actor.for_user(request.user), kind, path, mapping=columns,
                                       dry_run=dry_run, sheet=sheet or None, file_name=upload.name,
                                       customer_kind=customer_kind or None)
        except actions.ImportFileError as exc:
            raise HttpError(422, exc.hinted(_('%(refusal)s. Map a column with mapping={"COLUMN": "FIELD"}.'))) from None


def _parse_mapping(raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HttpError(422, _("mapping is not valid JSON: %(error)s") % {"error": exc}) from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise HttpError(422, _('mapping must be a JSON object of column names to fields, e.g. {"手机": "phone"}'))
    return mapping


@contextmanager
def _saved(upload: UploadedFile) -> Iterator[Path]:
    """The upload as a file on disk (readers need a path); removed afterwards."""
    suffix = Path(upload.name or "").suffix.lower()[:10]
    with tempfile.TemporaryDirectory(prefix="siyu-import-") as folder:
        path = Path(folder) / f"upload{suffix}"
        with path.open("wb") as fh:
            for chunk in upload.chunks():
                fh.write(chunk)
        yield path


def _summary(job: ImportJob) -> dict:
    return {"job_id": job.pk, "kind": job.kind, "file": job.file_name, "dry_run": job.dry_run,
            "status": job.status, "accepted": job.accepted, "rejected": job.rejected, "skipped": job.skipped,
            "actor": job.actor_label, "created_at": job.created_at.isoformat()}

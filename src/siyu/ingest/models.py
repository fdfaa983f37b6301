"""Sources (one write key each), the dead-letter table of rejected messages, and how far the
intake log has been processed."""

from __future__ import annotations

import json
import secrets
from typing import Any

from django.db import models
from django.utils.translation import gettext_lazy as _

from siyu.privacy import crypto


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


class Source(models.Model):
    class Kind(models.TextChoices):
        SEGMENT = "segment", _("Segment HTTP API")
        SENSORS = "sensors", _("Sensors Data protocol")
        WEBHOOK = "webhook", _("Webhook")
        IMPORT = "import", _("File import")

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SEGMENT)
    write_key = models.CharField(max_length=64, unique=True, default=new_write_key)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DeadLetter(models.Model):
    """A message we refused, with why. The payload is encrypted: it may hold personal data."""

    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    endpoint = models.CharField(max_length=32)
    message_index = models.IntegerField(null=True, blank=True)
    message_id = models.CharField(max_length=200, blank=True)
    field = models.CharField(max_length=100, blank=True)
    reason = models.CharField(max_length=500)
    payload_enc = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]

    @classmethod
    def record(cls, source_id: int | None, endpoint: str, index: int | None, raw: Any, field: str,
               reason: str) -> DeadLetter:
        """Keep ``raw`` (any JSON-able value; the rest as text) with why it was refused."""
        message_id = raw.get("messageId", raw.get("message_id", "")) if isinstance(raw, dict) else ""
        return cls.objects.create(
            source_id=source_id, endpoint=endpoint, message_index=index,
            message_id=str(message_id).replace("\x00", "")[:200], field=field.replace("\x00", "")[:100],
            reason=reason.replace("\x00", "")[:500],
            payload_enc=crypto.encrypt(json.dumps(raw, ensure_ascii=False, default=str)[:100_000]),
        )


class IntakePosition(models.Model):
    """How far the ingestion writer has processed an intake log (``ingest.intake``, named by its
    ``log_id``): saved in the same transaction as what those messages changed here."""

    log_id = models.CharField(max_length=32, primary_key=True)
    position = models.BigIntegerField(default=0)

    @classmethod
    def of(cls, log_id: str) -> int:
        return cls.objects.filter(log_id=log_id).values_list("position", flat=True).first() or 0

    @classmethod
    def save_position(cls, log_id: str, position: int) -> None:
        if not cls.objects.filter(log_id=log_id).update(position=position):
            cls.objects.create(log_id=log_id, position=position)

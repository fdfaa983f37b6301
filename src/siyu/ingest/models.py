"""Sources (one write key each) and the dead-letter table of rejected messages."""

from __future__ import annotations

import secrets

from django.db import models
from django.utils.translation import gettext_lazy as _


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

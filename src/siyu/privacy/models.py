"""Audit log of who saw or exported personal data, and who changed what."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AuditEvent(models.Model):
    """One attributable action: a view or export of personal data, or a state change."""

    class Action(models.TextChoices):
        VIEW_PII = "view_pii", _("Viewed personal data")
        EXPORT_PII = "export_pii", _("Exported personal data")
        CHANGE = "change", _("Changed data")

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="user name, 'cli', 'api-token:<name>', 'system'")
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        permissions = [
            ("view_personal_data", "Can see personal data unmasked"),
            ("export_personal_data", "Can export personal data unmasked"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.object_type}:{self.object_id}"

from django.db import models
from django.utils.translation import gettext_lazy as _


class ImportJob(models.Model):
    """One import of one file; re-importing the same file is recognised by its hash."""

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")
        REFUSED = "refused", _("Refused")  # the file as a whole could not be imported; nothing changed
        FAILED = "failed", _("Failed")  # an unexpected error; chunks committed before it stay

    kind = models.CharField(max_length=16)
    file_name = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64, db_index=True)
    file_size = models.BigIntegerField(default=0)
    file_format = models.JSONField(default=dict, blank=True,
                                   help_text="how the file was read: format, encoding, delimiter, sheet")
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    message = models.TextField(blank=True, help_text="why the file was refused or the run failed")
    mapping = models.JSONField(default=dict, help_text="column -> field, as decided for this run")
    options = models.JSONField(default=dict, blank=True)
    unmapped_columns = models.JSONField(default=list, blank=True)
    rows = models.IntegerField(default=0)
    accepted = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    customers_created = models.IntegerField(default=0)
    merges = models.IntegerField(default=0)
    conflicts = models.IntegerField(default=0, help_text="merges refused and queued for review")
    error_count = models.IntegerField(default=0)
    errors = models.JSONField(default=list, help_text="the first row errors (row, field, column, reason)")
    actor_label = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import {self.pk}: {self.kind} from {self.file_name}"

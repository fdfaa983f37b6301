from django.db import models


class ImportJob(models.Model):
    """One import of one file; re-importing the same file is recognised by its hash."""

    kind = models.CharField(max_length=16)
    file_name = models.CharField(max_length=255)
    file_sha256 = models.CharField(max_length=64, db_index=True)
    dry_run = models.BooleanField(default=False)
    mapping = models.JSONField(default=dict)
    accepted = models.IntegerField(default=0)
    rejected = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    errors = models.JSONField(default=list)
    actor_label = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

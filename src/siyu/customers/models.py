"""One profile per person, the identities that point at it, and the merge history."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _


class IdentityKind(models.TextChoices):
    USER_ID = "user_id", _("User id")
    ANONYMOUS_ID = "anonymous_id", _("Anonymous id")
    PHONE = "phone", _("Phone")
    EMAIL = "email", _("Email")
    UNIONID = "unionid", _("WeChat unionid")
    OPENID = "openid", _("WeChat openid")
    WECOM_ID = "wecom_id", _("WeCom external user id")
    MEMBER_NO = "member_no", _("Member number")


# Ids that name one real person: two profiles that each hold a different value of
# the same strong kind are never merged silently (a shared device or a typo in a
# CRM export would otherwise fuse two customers). Weak ids (devices, openids per
# app, emails) attach freely.
STRONG_KINDS = (
    IdentityKind.USER_ID,
    IdentityKind.MEMBER_NO,
    IdentityKind.PHONE,
    IdentityKind.UNIONID,
    IdentityKind.WECOM_ID,
)


class Person(models.Model):
    """A customer. Personal data lives encrypted in ``pii_enc``; traits hold the rest."""

    created_at = models.DateTimeField(auto_now_add=True)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from"
    )
    pii_enc = models.TextField(blank=True, help_text="AES-GCM encrypted JSON: name, phone, email, address")
    traits = models.JSONField(default=dict, blank=True)
    # Computed attributes, maintained by the actions that change them.
    first_seen = models.DateTimeField(null=True, blank=True)
    # No index: it changes with nearly every message, and nothing looks persons up by it (the
    # sync signature scans the table anyway).
    last_seen = models.DateTimeField(null=True, blank=True)
    first_order_at = models.DateTimeField(null=True, blank=True)
    last_order_at = models.DateTimeField(null=True, blank=True)
    order_count = models.IntegerField(default=0)
    total_spend = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    acquisition_channel = models.CharField(max_length=64, blank=True, db_index=True)
    first_touch = models.JSONField(default=dict, blank=True)
    first_touch_at = models.DateTimeField(null=True, blank=True)
    last_touch = models.JSONField(default=dict, blank=True)
    last_touch_at = models.DateTimeField(null=True, blank=True)
    referrer = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="referred"
    )
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"person {self.pk}"

    @property
    def average_order_value(self) -> Decimal | None:
        if not self.order_count:
            return None
        return (self.total_spend / self.order_count).quantize(Decimal("0.01"))


class Identity(models.Model):
    # No index of its own: the (person, kind) index below serves every lookup by person, and a
    # second index would only be one more B-tree written for each new identity.
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="identities", db_index=False)
    kind = models.CharField(max_length=16, choices=IdentityKind.choices)
    value_hash = models.CharField(max_length=64)
    value_enc = models.TextField()
    source = models.ForeignKey("ingest.Source", null=True, blank=True, on_delete=models.SET_NULL)
    first_seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["value_hash", "kind"], name="identity_unique_value"),
        ]
        indexes = [models.Index(fields=["person", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} of person {self.person_id}"


class PersonMerge(models.Model):
    """``merged`` was folded into ``into``; ``evidence`` says which ids linked them."""

    into = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="merges_in")
    merged = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="merges_out")
    reason = models.CharField(max_length=32)
    evidence = models.JSONField(default=dict)
    actor_label = models.CharField(max_length=150)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]


class MergeConflict(models.Model):
    """Two profiles linked by some id but each holding a different strong id: queued for review."""

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        MERGED = "merged", _("Merged")
        DISMISSED = "dismissed", _("Dismissed")

    person_a = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="+")
    person_b = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="+")
    conflicting_kinds = models.JSONField(default=list)
    evidence = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    at = models.DateTimeField(auto_now_add=True)
    resolved_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-at"]
        constraints = [
            models.UniqueConstraint(
                fields=["person_a", "person_b"],
                condition=models.Q(status="open"),
                name="one_open_conflict_per_pair",
            )
        ]

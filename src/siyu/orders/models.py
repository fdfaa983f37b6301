"""Orders: the money facts every value metric stands on. Amounts are Decimal."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _


class Order(models.Model):
    class Status(models.TextChoices):
        COMPLETED = "completed", _("Completed")
        PARTIALLY_REFUNDED = "partially_refunded", _("Partially refunded")
        REFUNDED = "refunded", _("Refunded")

    external_id = models.CharField(max_length=100, unique=True, help_text="the shop/POS order id")
    # No index of its own: the (person, placed_at) index serves every lookup by person.
    person = models.ForeignKey("customers.Person", on_delete=models.PROTECT, related_name="orders", db_index=False)
    placed_at = models.DateTimeField(db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, default="CNY")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.COMPLETED)
    channel = models.CharField(max_length=64, blank=True)
    store = models.CharField(max_length=64, blank=True)
    coupon = models.CharField(max_length=64, blank=True)
    items = models.JSONField(default=list, blank=True)
    origin = models.CharField(max_length=64, help_text="'event:<source>' or 'import:<job id>'")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-placed_at"]
        indexes = [models.Index(fields=["person", "placed_at"])]

    def __str__(self) -> str:
        return self.external_id

    @property
    def net_amount(self) -> Decimal:
        return self.amount - self.refunded_amount

"""CLV fits and each customer's newest prediction.

Every fit is kept as a :class:`ClvModel` (its parameters, hold-out quality and distributions);
only the newest fit's :class:`CustomerPrediction` rows are kept, replaced all at once.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _


class ClvModel(models.Model):
    """One fit of BG/NBD, Pareto/NBD and Gamma-Gamma on the brand's orders."""

    class TimeUnit(models.TextChoices):
        DAY = "day", _("Day")
        WEEK = "week", _("Week")

    class Status(models.TextChoices):
        CURRENT = "current", _("Current")  # its predictions are the stored ones
        SUPERSEDED = "superseded", _("Superseded")  # a newer fit replaced its predictions

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_label = models.CharField(max_length=150)
    time_unit = models.CharField(max_length=4, choices=TimeUnit.choices, default=TimeUnit.WEEK)
    calibration_end = models.DateField(
        null=True, blank=True, help_text="the models were fitted on orders up to this day; null: all orders"
    )
    observation_end = models.DateField(help_text="the day predictions are made as of (the last order day)")
    horizon_days = models.PositiveIntegerField(default=365)
    discount_rate = models.FloatField(default=0.1, help_text="annual")
    customers = models.IntegerField(default=0, help_text="customers with a prediction")
    orders = models.IntegerField(default=0, help_text="orders read (net of refunds, positive)")
    fitted_customers = models.IntegerField(default=0, help_text="customers in the calibration period")
    repeat_customers = models.IntegerField(default=0, help_text="of those, customers with a repeat purchase")
    params = models.JSONField(default=dict, help_text="bgnbd, pareto_nbd and gamma_gamma parameters")
    quality = models.JSONField(null=True, blank=True, help_text="predicted vs actual in the hold-out period")
    distribution = models.JSONField(default=dict, help_text="histograms of predicted CLV and P(alive)")
    duration_ms = models.IntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CURRENT)

    class Meta:
        ordering = ["-created_at", "-pk"]
        get_latest_by = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"CLV model {self.pk} ({self.created_at:%Y-%m-%d %H:%M})"


class CustomerPrediction(models.Model):
    """A customer's predicted value under the newest fit. The field names are a contract: the
    analytics sync and segments read ``p_alive``, ``expected_purchases``, ``predicted_spend``, ``clv``."""

    person = models.OneToOneField(
        "customers.Person", primary_key=True, on_delete=models.CASCADE, related_name="prediction"
    )
    # Every row of a fit is written in the transaction that creates the fit, so the database
    # need not check a million references to it at commit (PostgreSQL: 13 s → 7 s for 1 000 000
    # rows), nor index a column that holds one value.
    model = models.ForeignKey(ClvModel, on_delete=models.CASCADE, related_name="predictions",
                              db_constraint=False, db_index=False)
    p_alive = models.FloatField(help_text="probability the customer is still active at the observation end")
    expected_purchases = models.FloatField(help_text="expected purchases over the model's horizon")
    predicted_spend = models.DecimalField(
        max_digits=14, decimal_places=2, help_text="expected spend over the horizon, undiscounted"
    )
    clv = models.DecimalField(max_digits=14, decimal_places=2, help_text="expected spend, discounted")
    computed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"prediction for person {self.person_id}"

    @property
    def churn_risk(self) -> float:
        return 1.0 - self.p_alive


MAX_MONEY = Decimal("999999999999.99")  # what DecimalField(14, 2) holds

"""Reading CLV fits and predictions, as the CLI, the API, the console and profiles show them."""

from __future__ import annotations

from typing import Any

from siyu.valuation.models import ClvModel, CustomerPrediction


def latest_model() -> ClvModel | None:
    """The newest fit (its predictions are the stored ones), or None before the first fit."""
    return ClvModel.objects.order_by("-created_at", "-pk").first()


def model_dict(model: ClvModel) -> dict[str, Any]:
    """A fit with its parameters at full precision, hold-out quality and distributions."""
    params = model.params or {}
    return {
        "model_id": model.pk,
        "created_at": model.created_at.isoformat(),
        "actor": model.actor_label,
        "status": model.status,
        "time_unit": model.time_unit,
        "calibration_end": _iso(model.calibration_end),
        "observation_end": _iso(model.observation_end),
        "horizon_days": model.horizon_days,
        "discount_rate": model.discount_rate,
        "customers": model.customers,
        "orders": model.orders,
        "fitted_customers": model.fitted_customers,
        "repeat_customers": model.repeat_customers,
        "bgnbd": params.get("bgnbd"),
        "pareto_nbd": params.get("pareto_nbd"),
        "gamma_gamma": params.get("gamma_gamma"),
        "quality": model.quality,
        "distribution": model.distribution,
        "predictions": model.predictions.count() if model.status == ClvModel.Status.CURRENT else 0,
        "duration_ms": model.duration_ms,
    }


def prediction_dict(person_id: int) -> dict[str, Any] | None:
    """The customer's prediction under the newest fit, or None (no fit yet, no order then, or
    merged since: the next fit predicts for the surviving profile)."""
    row = CustomerPrediction.objects.select_related("model").filter(person_id=person_id).first()
    if row is None:
        return None
    return {
        "p_alive": row.p_alive,
        "churn_risk": row.churn_risk,
        "expected_purchases": row.expected_purchases,
        "predicted_spend": str(row.predicted_spend),
        "clv": str(row.clv),
        "horizon_days": row.model.horizon_days,
        "observation_end": _iso(row.model.observation_end),
        "model_id": row.model_id,
        "computed_at": row.computed_at.isoformat(),
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None

"""Typed request and response bodies of the CLV API (and the predictions block of a profile)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from ninja import Schema
from pydantic import Field

from siyu.valuation.predict import MAX_DISCOUNT_RATE, MAX_HORIZON_DAYS


class FitIn(Schema):
    calibration_end: date | None = Field(
        None, description="fit on orders up to this day (the later ones measure the fit); empty: all orders")
    time_unit: Literal["day", "week"] = Field("week", description="the unit the models count time in")
    horizon_days: int = Field(365, ge=1, le=MAX_HORIZON_DAYS, description="predict over this many days")
    discount_rate: float = Field(0.1, ge=0, le=MAX_DISCOUNT_RATE, description="annual discount rate of CLV")


class BGNBDParams(Schema):
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


class ParetoNBDParams(Schema):
    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float


class GammaGammaParams(Schema):
    p: float
    q: float
    gamma: float


class QualityBucket(Schema):
    frequency: str
    customers: int
    predicted: float | None
    predicted_pareto_nbd: float | None
    actual: float | None


class QualityTotal(Schema):
    customers: int
    predicted: float
    predicted_pareto_nbd: float
    actual: float


class PAliveCheck(Schema):
    lower: float
    upper: float
    customers: int
    mean_p_alive: float | None
    bought_in_holdout: float | None


class Quality(Schema):
    calibration_end: str
    holdout_days: int
    holdout_length: float
    buckets: list[QualityBucket]
    total: QualityTotal
    p_alive: list[PAliveCheck]


class ClvModelOut(Schema):
    model_id: int
    created_at: str
    actor: str
    status: str
    time_unit: str
    calibration_end: str | None
    observation_end: str | None
    horizon_days: int
    discount_rate: float
    customers: int
    orders: int
    fitted_customers: int
    repeat_customers: int
    bgnbd: BGNBDParams | None
    pareto_nbd: ParetoNBDParams | None
    gamma_gamma: GammaGammaParams | None
    quality: Quality | None
    distribution: dict
    predictions: int
    duration_ms: int


class PredictionOut(Schema):
    p_alive: float
    churn_risk: float
    expected_purchases: float
    predicted_spend: str
    clv: str
    horizon_days: int
    observation_end: str | None
    model_id: int
    computed_at: str

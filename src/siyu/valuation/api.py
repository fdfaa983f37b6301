"""Fit the CLV models and read the newest fit: ``POST /api/v1/clv/fit``, ``GET /api/v1/clv/model``."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router
from ninja.errors import HttpError

from siyu.accounts.actor import Actor
from siyu.api import require
from siyu.valuation import queries
from siyu.valuation.fitting import ClvError, fit_and_predict
from siyu.valuation.schemas import ClvModelOut, FitIn

router = Router(tags=["clv"])


@router.post("/fit", response=ClvModelOut, summary="Fit the CLV models and replace every prediction")
def fit(request: HttpRequest, body: FitIn):
    """Fits BG/NBD, Pareto/NBD and Gamma-Gamma on the orders up to ``calibration_end`` and
    stores each customer's P(alive), expected purchases, spend and CLV (docs/clv.md). Takes
    seconds per hundred thousand customers; answers when the predictions are stored."""
    require(request, "valuation.add_clvmodel")
    try:
        model = fit_and_predict(Actor.for_user(request.user), calibration_end=body.calibration_end,
                                time_unit=body.time_unit, horizon_days=body.horizon_days,
                                discount_rate=body.discount_rate)
    except ClvError as exc:
        raise HttpError(422, str(exc)) from None
    return queries.model_dict(model)


@router.get("/model", response=ClvModelOut, summary="The newest CLV fit")
def latest(request: HttpRequest):
    require(request, "valuation.view_clvmodel")
    model = queries.latest_model()
    if model is None:
        raise HttpError(404, "no CLV model has been fitted yet: POST /api/v1/clv/fit or run `siyu clv fit`")
    return queries.model_dict(model)

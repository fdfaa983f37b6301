"""From order arrays to fitted models, predictions, hold-out quality and distributions.

No database here: :func:`fit` takes numpy arrays (person, day number, net value per order) and
returns a frozen :class:`Fit`; ``fitting.py`` reads the orders and stores the result. (Error
messages go through Django's gettext: the console shows them in the reader's language.)

Which model predicts what (docs/clv.md, "Predictions"):

* expected purchases over the horizon, predicted spend and CLV come from BG/NBD with
  Gamma-Gamma spend;
* P(alive) comes from Pareto/NBD. BG/NBD lets a customer leave only after a repeat purchase, so
  it gives every one-time buyer P(alive) = 1 however long ago they bought: on CDNOW its P(alive)
  is *negatively* correlated with buying again in the hold-out (−0.22), Pareto/NBD's positively
  (+0.43). Churn risk = 1 − P(alive) has to rank one-time buyers too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from django.utils.translation import gettext as _

from siyu.clv import (
    BGNBD,
    CustomerSummary,
    GammaGamma,
    ParetoNBD,
    clv,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    summarize_orders,
)
from siyu.clv.summary import DAYS_PER_UNIT

TIME_UNITS = tuple(DAYS_PER_UNIT)
MAX_HORIZON_DAYS = 1826  # five years: beyond that a purchase model says little
MAX_DISCOUNT_RATE = 1.0  # 100 % a year
MIN_REPEAT_CUSTOMERS = 20
DAYS_PER_YEAR = 365.25
DAYS_PER_MONTH = DAYS_PER_YEAR / 12
FREQUENCY_BUCKETS = 7  # hold-out quality per calibration frequency 0..6, then 7+
CLV_BINS = 20
P_ALIVE_BINS = 10


class ClvError(ValueError):
    """A refused or failed CLV fit; nothing was saved."""


@dataclass(frozen=True)
class FitSettings:
    calibration_end: date | None
    time_unit: str
    horizon_days: int
    discount_rate: float

    @classmethod
    def checked(cls, calibration_end: date | None, time_unit: str, horizon_days: int,
                discount_rate: float) -> FitSettings:
        """The settings, once valid. Raises ClvError naming the first bad one."""
        if time_unit not in TIME_UNITS:
            raise ClvError(_("time_unit must be one of %(units)s, not %(unit)s")
                           % {"units": ", ".join(TIME_UNITS), "unit": repr(time_unit)})
        if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or not (
            1 <= horizon_days <= MAX_HORIZON_DAYS
        ):
            raise ClvError(_("horizon_days must be a whole number of days from 1 to %(max)s")
                           % {"max": MAX_HORIZON_DAYS})
        if isinstance(discount_rate, bool) or not (
            isinstance(discount_rate, (int, float)) and 0 <= discount_rate <= MAX_DISCOUNT_RATE
        ):
            raise ClvError(_("discount_rate must be an annual rate from 0 to 1 (0.1 means 10 per cent a year)"))
        if calibration_end is not None and not isinstance(calibration_end, date):
            raise ClvError(_("calibration_end must be a date"))
        return cls(calibration_end, time_unit, int(horizon_days), float(discount_rate))

    @property
    def unit_days(self) -> float:
        return DAYS_PER_UNIT[self.time_unit]


@dataclass(frozen=True)
class Fit:
    """The fitted models and one prediction per customer (arrays in ``person_ids`` order)."""

    bgnbd: BGNBD
    pareto_nbd: ParetoNBD
    gamma_gamma: GammaGamma
    observation_end: int  # day number
    orders: int
    fitted_customers: int
    repeat_customers: int
    person_ids: np.ndarray
    p_alive: np.ndarray
    expected_purchases: np.ndarray
    predicted_spend: np.ndarray
    clv: np.ndarray
    quality: dict[str, Any] | None
    distribution: dict[str, Any]

    @property
    def params(self) -> dict[str, Any]:
        bg, pn, gg = self.bgnbd, self.pareto_nbd, self.gamma_gamma
        return {
            "bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b,
                      "log_likelihood": bg.log_likelihood},
            "pareto_nbd": {"r": pn.r, "alpha": pn.alpha, "s": pn.s, "beta": pn.beta,
                           "log_likelihood": pn.log_likelihood},
            "gamma_gamma": {"p": gg.p, "q": gg.q, "gamma": gg.gamma},
        }


def fit(person_ids: np.ndarray, days: np.ndarray, values: np.ndarray, settings: FitSettings) -> Fit:
    """Fit on the orders up to the calibration end, predict from every order up to the last
    order day. ``days`` are whole day numbers (days since 1970-01-01 on the brand's clock).

    Raises ClvError when there are no orders, the calibration end falls outside them, fewer
    than MIN_REPEAT_CUSTOMERS customers bought twice by then, or a fit fails.
    """
    if not len(days):
        raise ClvError(_("there are no orders to fit: record or import orders first"))
    dates = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    first, last = dates.min(), dates.max()
    end = _calibration_end(settings.calibration_end, first, last)
    calibration = summarize_orders(person_ids, dates, values, end, time_unit=settings.time_unit)
    bg, pn, gg = _fit_models(calibration)
    full = calibration if end == last else summarize_orders(
        person_ids, dates, values, last, time_unit=settings.time_unit)
    p_alive, expected, spend, value = predictions(bg, pn, gg, full, settings)
    quality = None if end == last else holdout_quality(
        bg, pn, calibration, full, (last - end).astype(int), settings)
    return Fit(
        bgnbd=bg, pareto_nbd=pn, gamma_gamma=gg, observation_end=int(last.astype(np.int64)),
        orders=len(days), fitted_customers=len(calibration),
        repeat_customers=int((calibration.frequency > 0).sum()),
        person_ids=np.asarray(full.customer_ids, dtype=np.int64), p_alive=p_alive,
        expected_purchases=expected, predicted_spend=spend, clv=value, quality=quality,
        distribution=distribution(p_alive, expected, spend, value),
    )


def _calibration_end(chosen: date | None, first: np.datetime64, last: np.datetime64) -> np.datetime64:
    if chosen is None:
        return last
    end = np.datetime64(chosen, "D")
    if end < first:
        raise ClvError(_("calibration_end %(day)s is before the first order (%(first)s): no order to fit on")
                       % {"day": chosen, "first": first})
    if end > last:
        raise ClvError(_("calibration_end %(day)s is after the last order (%(last)s); leave it empty "
                         "to fit on every order") % {"day": chosen, "last": last})
    return end


def _fit_models(summary: CustomerSummary) -> tuple[BGNBD, ParetoNBD, GammaGamma]:
    repeat = summary.frequency > 0
    # Gamma-Gamma reads the repeat buyers whose repeat purchases were not all free (0.00)
    spenders = repeat & (summary.monetary_value > 0)
    if repeat.sum() < MIN_REPEAT_CUSTOMERS:
        raise ClvError(_("too few repeat buyers to fit: %(n)s customers bought on two or more days by the "
                         "calibration end; the models need at least %(min)s")
                       % {"n": int(repeat.sum()), "min": MIN_REPEAT_CUSTOMERS})
    if spenders.sum() < MIN_REPEAT_CUSTOMERS:
        raise ClvError(_("too few repeat buyers who paid to fit Gamma-Gamma: %(n)s customers; it needs "
                         "at least %(min)s") % {"n": int(spenders.sum()), "min": MIN_REPEAT_CUSTOMERS})
    try:
        bg = fit_bgnbd(summary)
        gg = fit_gamma_gamma(summary.frequency[spenders], summary.monetary_value[spenders])
        pn = fit_pareto_nbd(summary)
    except ValueError as exc:
        raise ClvError(_("the models could not be fitted: %(reason)s") % {"reason": exc}) from None
    if not gg.q > 1:
        raise ClvError(_("the Gamma-Gamma fit has q = %(q)s ≤ 1: the spend per purchase has no finite "
                         "mean in these orders, so spend cannot be predicted") % {"q": f"{gg.q:.3g}"})
    return bg, pn, gg


def predictions(bg: BGNBD, pn: ParetoNBD, gg: GammaGamma, summary: CustomerSummary,
                settings: FitSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(P(alive), expected purchases, predicted spend, CLV) of every customer in ``summary``.

    The horizon is cut into months (at least one period); each month's expected spend is
    discounted by the annual rate compounded to that month's end.
    """
    horizon = settings.horizon_days / settings.unit_days
    expected = bg.conditional_expected_purchases(summary, horizon)
    spend = expected * gg.expected_average_spend(summary.frequency, summary.monetary_value)
    periods = max(1, round(settings.horizon_days / DAYS_PER_MONTH))
    period_days = settings.horizon_days / periods
    rate = (1 + settings.discount_rate) ** (period_days / DAYS_PER_YEAR) - 1
    value = clv(bg, gg, summary, periods, rate, period_length=period_days / settings.unit_days)
    p_alive = pn.probability_alive(summary)
    # Pareto/NBD's hypergeometric terms can overflow for extreme histories: BG/NBD answers those.
    p_alive = np.where(np.isfinite(p_alive), p_alive, bg.probability_alive(summary))
    for name, a in (("expected purchases", expected), ("spend", spend), ("CLV", value)):
        if not np.all(np.isfinite(a)):
            raise ClvError(_("the models gave no finite %(what)s for %(n)s customers")
                           % {"what": name, "n": int((~np.isfinite(a)).sum())})
    return np.clip(p_alive, 0.0, 1.0), expected, spend, value


# -- hold-out quality ---------------------------------------------------------------------
def holdout_quality(bg: BGNBD, pn: ParetoNBD, calibration: CustomerSummary, full: CustomerSummary,
                    holdout_days: int, settings: FitSettings) -> dict[str, Any]:
    """Predicted vs actual repeat purchases in the hold-out (calibration end, last order day]
    of the customers who bought by the calibration end, per calibration frequency 0..6, 7+;
    and, per P(alive) tenth, the share of customers who bought in the hold-out."""
    rows = np.searchsorted(full.customer_ids, calibration.customer_ids)
    # purchase days in the hold-out: the full history's purchase days minus the calibration's
    actual = full.frequency[rows] - calibration.frequency
    length = holdout_days / settings.unit_days
    predicted = bg.conditional_expected_purchases(calibration, length)
    predicted_pn = pn.conditional_expected_purchases(calibration, length)
    bucket = np.minimum(calibration.frequency, FREQUENCY_BUCKETS).astype(int)
    buckets = []
    for b in range(FREQUENCY_BUCKETS + 1):
        m = bucket == b
        n = int(m.sum())
        buckets.append({
            "frequency": f"{b}+" if b == FREQUENCY_BUCKETS else str(b), "customers": n,
            "predicted": _mean(predicted, m), "predicted_pareto_nbd": _mean(predicted_pn, m),
            "actual": _mean(actual, m),
        })
    return {
        "calibration_end": str(np.datetime64(settings.calibration_end, "D")),
        "holdout_days": int(holdout_days),
        "holdout_length": length,
        "buckets": buckets,
        "total": {"customers": len(calibration), "predicted": float(predicted.sum()),
                  "predicted_pareto_nbd": float(predicted_pn.sum()), "actual": float(actual.sum())},
        "p_alive": _p_alive_check(pn.probability_alive(calibration), actual > 0),
    }


def _p_alive_check(p_alive: np.ndarray, bought: np.ndarray) -> list[dict[str, Any]]:
    tenth = np.minimum((np.nan_to_num(p_alive) * P_ALIVE_BINS).astype(int), P_ALIVE_BINS - 1)
    out = []
    for b in range(P_ALIVE_BINS):
        m = tenth == b
        out.append({"lower": b / P_ALIVE_BINS, "upper": (b + 1) / P_ALIVE_BINS, "customers": int(m.sum()),
                    "mean_p_alive": _mean(p_alive, m), "bought_in_holdout": _mean(bought, m)})
    return out


def _mean(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


# -- distributions --------------------------------------------------------------------------
def distribution(p_alive: np.ndarray, expected: np.ndarray, spend: np.ndarray,
                 value: np.ndarray) -> dict[str, Any]:
    """Histograms of CLV (20 bins up to the 99th percentile; the last bin holds the rest) and of
    P(alive) (tenths), with summary figures."""
    top = float(np.percentile(value, 99)) or float(value.max()) or 1.0
    step = nice_step(top / CLV_BINS)
    bins = max(1, math.ceil(top / step))
    clv_bin = np.minimum((value // step).astype(np.int64), bins - 1)
    alive_bin = np.minimum((p_alive * P_ALIVE_BINS).astype(np.int64), P_ALIVE_BINS - 1)
    return {
        "clv": {
            "edges": [round(step * i, 10) for i in range(bins + 1)],
            "counts": np.bincount(clv_bin, minlength=bins).tolist(),
            "total": float(value.sum()), "mean": float(value.mean()),
            "median": float(np.median(value)), "p90": float(np.percentile(value, 90)),
            "p99": float(np.percentile(value, 99)), "max": float(value.max()),
        },
        "p_alive": {
            "edges": [i / P_ALIVE_BINS for i in range(P_ALIVE_BINS + 1)],
            "counts": np.bincount(alive_bin, minlength=P_ALIVE_BINS).tolist(),
            "mean": float(p_alive.mean()),
        },
        "expected_purchases": {"total": float(expected.sum()), "mean": float(expected.mean())},
        "predicted_spend": {"total": float(spend.sum()), "mean": float(spend.mean())},
    }


def nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 × 10^k that is at least ``raw``."""
    if not raw > 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * magnitude * (1 + 1e-12):
            return m * magnitude
    return 10.0 * magnitude

"""CLV models pinned to the published CDNOW numbers and to lifetimes' own predictions."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

from siyu.clv import (
    clv,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
    summarize_orders,
    summary_from_arrays,
)

DATASETS = Path(importlib.util.find_spec("lifetimes").submodule_search_locations[0]) / "datasets"
RTOL = 1e-4


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATASETS / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def cdnow_spend() -> pd.DataFrame:
    return pd.read_csv(DATASETS / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def summary(cdnow_spend):
    d = cdnow_spend
    return summary_from_arrays(d.x, d.t_x, d["T"], d.zbar, customer_ids=d.ID)


@pytest.fixture(scope="module")
def bg(summary):
    return fit_bgnbd(summary)


@pytest.fixture(scope="module")
def gg(cdnow_spend):
    return fit_gamma_gamma(cdnow_spend.x, cdnow_spend.zbar)


@pytest.fixture(scope="module")
def lifetimes_bg(cdnow):
    return BetaGeoFitter().fit(cdnow.frequency, cdnow.recency, cdnow["T"])


@pytest.fixture(scope="module")
def lifetimes_gg(cdnow_spend):
    repeat = cdnow_spend[cdnow_spend.x > 0]
    return GammaGammaFitter().fit(repeat.x, repeat.zbar)


# -- published numbers --------------------------------------------------------------------
def test_bgnbd_reproduces_fader_hardie_lee_2005(bg):
    assert (round(bg.r, 3), round(bg.alpha, 3), round(bg.a, 3), round(bg.b, 3)) == (
        0.243,
        4.414,
        0.793,
        2.426,
    )
    assert bg.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert bg.n == 2357


def test_gamma_gamma_reproduces_fader_hardie_2013(gg):
    assert (round(gg.p, 2), round(gg.q, 2)) == (6.25, 3.74)
    # the shipped mean spends are rounded to cents, which moves gamma to 15.4477 (lifetimes too)
    assert gg.gamma == pytest.approx(15.44, abs=0.01)
    assert gg.n == 946


def test_pareto_nbd_reproduces_published_fit(summary):
    pn = fit_pareto_nbd(summary)
    assert (round(pn.r, 2), round(pn.alpha, 2), round(pn.s, 2), round(pn.beta, 2)) == (
        0.55,
        10.58,
        0.61,
        11.67,
    )
    assert pn.log_likelihood == pytest.approx(-9595.0, abs=0.05)


# -- against lifetimes' predictions -------------------------------------------------------
def test_bgnbd_parameters_match_lifetimes(bg, lifetimes_bg):
    theirs = lifetimes_bg.params_
    ours = [bg.r, bg.alpha, bg.a, bg.b]
    np.testing.assert_allclose(ours, [theirs[k] for k in ("r", "alpha", "a", "b")], rtol=RTOL)


def test_probability_alive_matches_lifetimes(bg, summary, cdnow, lifetimes_bg):
    theirs = lifetimes_bg.conditional_probability_alive(cdnow.frequency, cdnow.recency, cdnow["T"])
    np.testing.assert_allclose(bg.probability_alive(summary), theirs, rtol=RTOL)


def test_conditional_expected_purchases_match_lifetimes(bg, summary, cdnow, lifetimes_bg):
    theirs = lifetimes_bg.conditional_expected_number_of_purchases_up_to_time(
        39, cdnow.frequency, cdnow.recency, cdnow["T"]
    )
    np.testing.assert_allclose(bg.conditional_expected_purchases(summary, 39), theirs, rtol=RTOL)


def test_new_customer_expected_purchases_match_lifetimes(bg, lifetimes_bg):
    t = np.array([1.0, 39.0, 78.0])
    theirs = lifetimes_bg.expected_number_of_purchases_up_to_time(t)
    np.testing.assert_allclose(bg.expected_purchases_new_customer(t), theirs, rtol=RTOL)


def test_expected_average_spend_matches_lifetimes(gg, cdnow_spend, lifetimes_gg):
    d = cdnow_spend
    theirs = lifetimes_gg.conditional_expected_average_profit(d.x, d.zbar)
    np.testing.assert_allclose(gg.expected_average_spend(d.x, d.zbar), theirs, rtol=RTOL)


def test_clv_matches_lifetimes(bg, gg, summary, cdnow_spend, lifetimes_bg, lifetimes_gg):
    d = cdnow_spend
    theirs = lifetimes_gg.customer_lifetime_value(
        lifetimes_bg, d.x, d.t_x, d["T"], d.zbar, time=12, discount_rate=0.01, freq="W"
    )
    ours = clv(bg, gg, summary, 12, 0.01, period_length=4.345)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL)


def test_pareto_nbd_predictions_match_lifetimes(summary, cdnow):
    pn = fit_pareto_nbd(summary)
    theirs = ParetoNBDFitter().fit(cdnow.frequency, cdnow.recency, cdnow["T"])
    f, r, T = cdnow.frequency, cdnow.recency, cdnow["T"]
    # both optimisers stop within ~1e-4 of the optimum of a flat likelihood: compare at 1e-3
    np.testing.assert_allclose(
        pn.probability_alive(summary), theirs.conditional_probability_alive(f, r, T), rtol=1e-3
    )
    np.testing.assert_allclose(
        pn.conditional_expected_purchases(summary, 39),
        theirs.conditional_expected_number_of_purchases_up_to_time(39, f, r, T),
        rtol=1e-3,
    )


# -- the summary builder ------------------------------------------------------------------
def test_summary_from_hand_computed_orders():
    # given: customer 7 buys on days 0, 0 (same day: one purchase), 7 and 21; customer 3 once on
    # day 14; customer 9 only after the calibration end (day 28)
    ids = np.array([7, 7, 7, 7, 3, 9])
    days = np.array([0.0, 0.5, 7.2, 21.9, 14.0, 30.0])
    values = np.array([10.0, 5.0, 20.0, 40.0, 8.0, 99.0])
    # when
    s = summarize_orders(ids, days, values, 28.0, time_unit="week")
    # then
    np.testing.assert_array_equal(s.customer_ids, [3, 7])
    np.testing.assert_array_equal(s.frequency, [0, 2])
    np.testing.assert_allclose(s.recency, [0, 3])
    np.testing.assert_allclose(s.T, [2, 4])
    np.testing.assert_allclose(s.monetary_value, [0, 30])


def test_summary_accepts_dates_and_days():
    ids = np.array(["b", "a", "b"])
    dates = np.array(["2024-01-01", "2024-01-05", "2024-01-11"], dtype="datetime64[D]")
    s = summarize_orders(ids, dates, np.array([1.0, 2.0, 3.0]), "2024-01-31", time_unit="day")
    np.testing.assert_array_equal(s.customer_ids, ["a", "b"])
    np.testing.assert_allclose(s.frequency, [0, 1])
    np.testing.assert_allclose(s.recency, [0, 10])
    np.testing.assert_allclose(s.T, [26, 30])
    np.testing.assert_allclose(s.monetary_value, [0, 3])


def test_summary_from_raw_cdnow_reproduces_shipped_summary(cdnow_spend):
    raw = np.loadtxt(DATASETS / "CDNOW_sample.txt", dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    s = summarize_orders(
        raw[:, 1].astype(int), dates, raw[:, 4].astype(float), np.datetime64("1997-09-30")
    )
    d = cdnow_spend
    np.testing.assert_array_equal(s.customer_ids, d.ID)
    np.testing.assert_array_equal(s.frequency, d.x)
    # the shipped file is rounded to 2 decimals
    np.testing.assert_allclose(s.recency, d.t_x, atol=0.005 + 1e-9)
    np.testing.assert_allclose(s.T, d["T"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(s.monetary_value, d.zbar, atol=0.005 + 1e-9)


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([], [], [], "empty"),
        ([1, -1], [1, 0], [2, 2], "frequency contains negative"),
        ([1, 1], [3, 1], [2, 2], "recency is greater than T"),
        ([0.5], [1], [2], "whole numbers"),
        ([0], [1], [2], "frequency 0 must have recency 0"),
        ([1], [np.nan], [2], "NaN"),
    ],
)
def test_bad_summary_is_refused(frequency, recency, T, message):
    with pytest.raises(ValueError, match=message):
        summary_from_arrays(frequency, recency, T)


def test_fit_without_repeat_purchases_is_refused():
    s = summary_from_arrays([0, 0], [0, 0], [3, 4])
    with pytest.raises(ValueError, match="no customer has a repeat purchase"):
        fit_bgnbd(s)
    with pytest.raises(ValueError, match="no customer has a repeat purchase"):
        fit_gamma_gamma([0, 0], [0, 0])


def test_gamma_gamma_refuses_non_positive_spend():
    with pytest.raises(ValueError, match="positive and finite"):
        fit_gamma_gamma([1, 2], [5.0, 0.0])


def test_orders_after_calibration_end_only_are_refused():
    with pytest.raises(ValueError, match="no orders on or before the calibration end"):
        summarize_orders(np.array([1]), np.array([10.0]), np.array([1.0]), 5.0)


def test_clv_refuses_bad_horizon(bg, gg, summary):
    with pytest.raises(ValueError, match="horizon_periods"):
        clv(bg, gg, summary, 0, 0.01)
    with pytest.raises(ValueError, match="discount_rate"):
        clv(bg, gg, summary, 12, -0.1)


# -- the fast paths -----------------------------------------------------------------------
@pytest.mark.parametrize("unit_days", [1.0, 7.0, None])
def test_distinct_rows_match_a_plain_grouping(unit_days):
    from siyu.clv.models import _distinct_rows

    rng = np.random.default_rng(3)
    x = rng.integers(0, 6, 5_000).astype(float)
    T_days = rng.integers(0, 40, 5_000)
    t_days = np.where(x > 0, rng.integers(0, 40, 5_000) % (T_days + 1), 0)
    # whole days or weeks take the integer-code path; arbitrary floats the sorted-values path
    scale = rng.random() + 0.5 if unit_days is None else 1.0 / unit_days
    t_x, T = t_days * scale, T_days * scale
    rows, inverse = _distinct_rows(x, t_x, T, inverse=True)
    expected = pd.DataFrame({"x": x, "t": t_x, "T": T}).value_counts().sort_index()
    got = pd.Series(rows.weight, index=pd.MultiIndex.from_arrays([rows.x, rows.t_x, rows.T]))
    pd.testing.assert_series_equal(got, expected.astype(float), check_names=False)
    np.testing.assert_array_equal(rows.x[inverse], x)
    np.testing.assert_array_equal(rows.t_x[inverse], t_x)
    np.testing.assert_array_equal(rows.T[inverse], T)


@pytest.mark.parametrize("high", [1_000, 2**60])
def test_argsort_small_sorts_packed_and_wide_keys(high):
    from siyu.clv.summary import _argsort_small

    key = np.random.default_rng(5).integers(0, high, 10_000, dtype=np.int64)
    order = _argsort_small(key)
    np.testing.assert_array_equal(key[order], np.sort(key))
    assert sorted(order.tolist()) == list(range(len(key)))

"""Predicted customer value: the CDNOW sample as orders, fitted, stored, shown and refused.

The 6 919 CDNOW_sample transactions (shipped with lifetimes) become Order rows at noon brand
time, one person per CDNOW customer. Fitted with the 39-week calibration of Fader, Hardie & Lee
(2005), the stored fit must reproduce the published parameters and the stored predictions must
equal what the pure library computes from the same transactions.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from siyu.accounts.actor import Actor
from siyu.clv import clv, fit_bgnbd, fit_gamma_gamma, fit_pareto_nbd, summarize_orders
from siyu.customers.identity import make_claim
from siyu.customers.models import Identity, Person
from siyu.customers.queries import profile
from siyu.orders.models import Order
from siyu.privacy import crypto
from siyu.privacy.models import AuditEvent
from siyu.valuation.fitting import ClvError, fit_and_predict, read_orders, refit_if_due
from siyu.valuation.models import ClvModel, CustomerPrediction

pytestmark = pytest.mark.django_db

DATASETS = Path(importlib.util.find_spec("lifetimes").submodule_search_locations[0]) / "datasets"
CALIBRATION_END = date(1997, 9, 30)
LAST_DAY = date(1998, 6, 30)
ACTOR = Actor.system("test-clv")


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def brand_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(settings.TIME_ZONE))


@pytest.fixture(scope="module")
def transactions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(CDNOW customer id, day, amount) of every CDNOW_sample transaction."""
    raw = np.loadtxt(DATASETS / "CDNOW_sample.txt", dtype=str)
    days = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    return raw[:, 1].astype(int), days, raw[:, 4].astype(float)


@pytest.fixture(scope="module")
def _cdnow_db(django_db_setup, django_db_blocker, transactions):
    """The transactions as orders (noon, brand time), one person per CDNOW customer, and one
    fit with the 39-week calibration, committed once for the module (each test's own changes
    are rolled back); removed at the end. Yields (CDNOW id → person id, the fit's id)."""
    ids, days, amounts = transactions
    with django_db_blocker.unblock():
        customers = np.unique(ids)
        persons = Person.objects.bulk_create([Person() for _ in customers])
        person_of = {int(c): p.pk for c, p in zip(customers, persons, strict=True)}
        Order.objects.bulk_create(
            [Order(external_id=f"cdnow-{i}", person_id=person_of[int(c)], placed_at=brand_noon(d.item()),
                   amount=Decimal(f"{a:.2f}"), origin="test")
             for i, (c, d, a) in enumerate(zip(ids, days, amounts, strict=True))],
            batch_size=2000,
        )
        model = fit_and_predict(ACTOR, calibration_end=CALIBRATION_END, time_unit="week")
    yield person_of, model.pk
    with django_db_blocker.unblock():
        AuditEvent.objects.filter(object_type="clv_model", object_id=str(model.pk)).delete()
        ClvModel.objects.filter(pk=model.pk).delete()
        Order.objects.filter(person_id__in=person_of.values()).delete()
        Person.objects.filter(pk__in=person_of.values()).delete()


@pytest.fixture
def cdnow(db, _cdnow_db) -> dict[int, int]:
    """CDNOW customer id → person id; the module's fit is the newest."""
    return _cdnow_db[0]


@pytest.fixture(scope="module")
def reference(transactions) -> dict:
    """What the pure library computes from the raw transactions: the models fitted on the
    calibration period, predictions from the full history (weeks, 365 days, 10 % a year)."""
    ids, days, amounts = transactions
    calibration = summarize_orders(ids, days, amounts, np.datetime64(CALIBRATION_END))
    full = summarize_orders(ids, days, amounts, np.datetime64(LAST_DAY))
    bg, pn = fit_bgnbd(calibration), fit_pareto_nbd(calibration)
    gg = fit_gamma_gamma(calibration.frequency, calibration.monetary_value)
    expected = bg.conditional_expected_purchases(full, 365 / 7)
    return {
        "customers": full.customer_ids, "calibration": calibration, "full": full, "bg": bg, "pn": pn, "gg": gg,
        "p_alive": pn.probability_alive(full), "expected": expected,
        "spend": expected * gg.expected_average_spend(full.frequency, full.monetary_value),
        # 12 monthly periods of 365/12 days, each discounted at 10 % a year compounded to its end
        "clv": clv(bg, gg, full, 12, 1.1 ** (365 / 12 / 365.25) - 1, period_length=365 / 12 / 7),
    }


@pytest.fixture
def fitted(cdnow, _cdnow_db) -> ClvModel:
    return ClvModel.objects.get(pk=_cdnow_db[1])


def no_fits() -> None:
    """Within a test (rolled back after it): as before any fit."""
    ClvModel.objects.all().delete()


# -- the published numbers --------------------------------------------------------------
def test_fit_reproduces_the_published_cdnow_parameters(fitted):
    bg, gg, pn = fitted.params["bgnbd"], fitted.params["gamma_gamma"], fitted.params["pareto_nbd"]
    assert (round(bg["r"], 3), round(bg["alpha"], 3), round(bg["a"], 3), round(bg["b"], 3)) == (
        0.243, 4.414, 0.793, 2.426)
    assert bg["log_likelihood"] == pytest.approx(-9582.4, abs=0.05)
    assert (round(gg["p"], 2), round(gg["q"], 2)) == (6.25, 3.74)
    assert gg["gamma"] == pytest.approx(15.44, abs=0.01)
    assert (round(pn["r"], 2), round(pn["alpha"], 2), round(pn["s"], 2), round(pn["beta"], 2)) == (
        0.55, 10.58, 0.61, 11.67)
    assert (fitted.customers, fitted.fitted_customers, fitted.repeat_customers, fitted.orders) == (
        2357, 2357, 946, 6919)
    assert (fitted.calibration_end, fitted.observation_end, fitted.time_unit) == (
        CALIBRATION_END, LAST_DAY, "week")
    assert fitted.status == ClvModel.Status.CURRENT


def test_stored_predictions_equal_the_librarys(fitted, cdnow, reference):
    rows = {p.person_id: p for p in CustomerPrediction.objects.filter(model=fitted)}
    assert len(rows) == 2357
    stored = [rows[cdnow[int(c)]] for c in reference["customers"]]
    np.testing.assert_allclose([p.p_alive for p in stored], reference["p_alive"], rtol=1e-9)
    np.testing.assert_allclose([p.expected_purchases for p in stored], reference["expected"], rtol=1e-9)
    np.testing.assert_allclose([float(p.predicted_spend) for p in stored], reference["spend"], atol=0.005001)
    np.testing.assert_allclose([float(p.clv) for p in stored], reference["clv"], atol=0.005001)
    assert all(p.predicted_spend == p.predicted_spend.quantize(Decimal("0.01")) for p in stored)


def test_one_time_buyers_get_a_churn_risk(fitted, cdnow, reference):
    # BG/NBD gives every one-time buyer P(alive) = 1 (no churn risk at all); Pareto/NBD does not
    once = reference["full"].frequency == 0
    assert np.all(reference["bg"].probability_alive(reference["full"])[once] == 1)
    person_ids = [cdnow[int(c)] for c in reference["customers"][once]]
    risks = [p.churn_risk for p in CustomerPrediction.objects.filter(person_id__in=person_ids)]
    assert len(risks) == once.sum() > 1000
    assert min(risks) > 0 and np.mean(risks) > 0.5


def test_without_discounting_clv_equals_the_predicted_spend(cdnow):
    model = fit_and_predict(ACTOR, calibration_end=CALIBRATION_END, discount_rate=0.0, horizon_days=200)
    pairs = CustomerPrediction.objects.filter(model=model).values_list("predicted_spend", "clv")
    assert max(abs(spend - value) for spend, value in pairs) <= Decimal("0.01")
    assert sum(spend for spend, _v in pairs) > 0


def test_hold_out_quality_compares_predicted_and_actual_repeat_purchases(fitted, transactions, reference):
    ids, days, _a = transactions
    holdout = days > np.datetime64(CALIBRATION_END)
    actual_days = len(set(zip(ids[holdout].tolist(), days[holdout].tolist(), strict=True)))
    quality = fitted.quality
    assert (quality["holdout_days"], quality["calibration_end"]) == (273, "1997-09-30")
    assert quality["total"]["actual"] == actual_days == 1882
    predicted = reference["bg"].conditional_expected_purchases(reference["calibration"], 39)
    assert quality["total"]["predicted"] == pytest.approx(predicted.sum(), rel=1e-9)
    assert [b["frequency"] for b in quality["buckets"]] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(b["customers"] for b in quality["buckets"]) == 2357
    assert quality["buckets"][0]["customers"] == 1411  # FHL05: 1 411 customers made no repeat purchase
    zero = reference["calibration"].frequency == 0
    assert quality["buckets"][0]["predicted"] == pytest.approx(predicted[zero].mean(), rel=1e-9)
    assert sum(b["customers"] for b in quality["p_alive"]) == 2357


def test_distribution_counts_every_customer(fitted):
    clv_hist, alive = fitted.distribution["clv"], fitted.distribution["p_alive"]
    assert sum(clv_hist["counts"]) == sum(alive["counts"]) == 2357
    assert len(clv_hist["edges"]) == len(clv_hist["counts"]) + 1
    assert clv_hist["total"] == pytest.approx(float(sum(CustomerPrediction.objects.values_list("clv", flat=True))),
                                              abs=2357 * 0.005)


def test_a_fit_without_calibration_end_uses_every_order_and_has_no_quality(cdnow):
    model = fit_and_predict(ACTOR, time_unit="day", horizon_days=90)
    assert (model.calibration_end, model.quality, model.time_unit) == (None, None, "day")
    assert model.fitted_customers == model.customers == 2357


# -- which orders count ---------------------------------------------------------------------
def test_refunded_negative_merged_and_erased_orders_are_left_out(db):
    keep, survivor, gone, erased = (Person.objects.create() for _ in range(4))
    gone.merged_into = survivor
    gone.save()
    erased.erased_at = timezone.now()
    erased.save()
    day = date(2026, 3, 1)

    def order(person, n, amount, refunded="0", status=Order.Status.COMPLETED, at=None):
        Order.objects.create(external_id=f"o{n}", person=person, placed_at=at or brand_noon(day),
                             amount=Decimal(amount), refunded_amount=Decimal(refunded), status=status)

    order(keep, 1, "100.00")
    order(keep, 2, "80.00", refunded="30.00", status=Order.Status.PARTIALLY_REFUNDED)
    order(keep, 3, "50.00", refunded="50.00", status=Order.Status.REFUNDED)
    order(keep, 4, "0.00")  # a free order is still a purchase
    order(keep, 5, "-20.00")  # a return booked as an order is not
    order(survivor, 6, "10.00", at=datetime(2026, 3, 1, 16, 30, tzinfo=ZoneInfo("UTC")))  # 00:30 brand time
    order(survivor, 9, "5.00", at=datetime(2026, 3, 1, 23, 59, 59, 600_000, tzinfo=ZoneInfo(settings.TIME_ZONE)))
    order(gone, 7, "11.00")
    order(erased, 8, "12.00")

    orders = read_orders()

    ours = {keep.pk, survivor.pk, gone.pk, erased.pk}
    got = sorted(row for row in zip(orders.person_ids.tolist(), orders.days.tolist(), orders.values.tolist(),
                                    strict=True) if row[0] in ours)
    first = (day - date(1970, 1, 1)).days
    assert got == [(keep.pk, first, 0.0), (keep.pk, first, 50.0), (keep.pk, first, 100.0),
                   (survivor.pk, first, 5.0), (survivor.pk, first + 1, 10.0)]


def test_refunded_orders_stop_counting(fitted):
    # given the customer predicted to spend most, when every order but their first is refunded
    top = CustomerPrediction.objects.order_by("-predicted_spend").first()
    first = Order.objects.filter(person_id=top.person_id).order_by("placed_at").first()
    refunded = Order.objects.filter(person_id=top.person_id).exclude(pk=first.pk).update(
        status=Order.Status.REFUNDED, refunded_amount=F("amount"))

    after = fit_and_predict(ACTOR, calibration_end=CALIBRATION_END)

    # then the fit reads fewer orders and sees a one-time buyer
    assert refunded > 0 and after.orders == fitted.orders - refunded
    now = CustomerPrediction.objects.get(person_id=top.person_id)
    assert now.predicted_spend < top.predicted_spend
    assert now.expected_purchases < top.expected_purchases


# -- storage -------------------------------------------------------------------------------
def test_a_new_fit_replaces_every_prediction_and_keeps_the_history(fitted):
    second = fit_and_predict(ACTOR, calibration_end=CALIBRATION_END, horizon_days=730)
    fitted.refresh_from_db()
    assert (fitted.status, second.status) == (ClvModel.Status.SUPERSEDED, ClvModel.Status.CURRENT)
    assert set(CustomerPrediction.objects.values_list("model_id", flat=True)) == {second.pk}
    assert CustomerPrediction.objects.count() == 2357
    assert ClvModel.objects.count() == 2
    assert second.duration_ms > 0


def test_a_fit_is_audited(fitted):
    event = AuditEvent.objects.get(object_type="clv_model", object_id=str(fitted.pk))
    assert (event.action, event.actor_label) == ("change", "test-clv")
    assert event.detail == {"op": "fit", "time_unit": "week", "calibration_end": "1997-09-30",
                            "observation_end": "1998-06-30", "horizon_days": 365, "discount_rate": 0.1,
                            "customers": 2357}


def test_refit_if_due_refits_with_the_last_settings_only_when_due(cdnow):
    no_fits()
    assert refit_if_due(24) is None  # never fitted: nothing to refit with
    first = fit_and_predict(ACTOR, calibration_end=CALIBRATION_END, horizon_days=180, discount_rate=0.05)
    assert refit_if_due(24) is None
    ClvModel.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(hours=25))

    again = refit_if_due(24)

    assert again is not None and again.pk != first.pk
    assert (again.calibration_end, again.time_unit, again.horizon_days, again.discount_rate) == (
        CALIBRATION_END, "week", 180, 0.05)
    assert again.actor_label == "clv-refit"
    with pytest.raises(ClvError, match="max_age_hours"):
        refit_if_due(0)


# -- refused fits -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time_unit": "month"}, "time_unit must be one of day, week, not 'month'"),
        ({"horizon_days": 0}, "horizon_days must be a whole number of days from 1 to 1826"),
        ({"horizon_days": 4000}, "horizon_days must be a whole number of days from 1 to 1826"),
        ({"discount_rate": -0.1}, "discount_rate must be an annual rate from 0 to 1"),
        ({"discount_rate": 1.5}, "discount_rate must be an annual rate from 0 to 1"),
        ({"calibration_end": date(1996, 12, 31)}, "calibration_end 1996-12-31 is before the first order (1997-01-01)"),
        ({"calibration_end": date(1998, 7, 1)}, "calibration_end 1998-07-01 is after the last order (1998-06-30)"),
        ({"calibration_end": date(1997, 1, 2)}, "too few repeat buyers to fit"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(fitted, options, message):
    before = list(CustomerPrediction.objects.order_by("pk").values_list("pk", "model_id", "clv"))
    with pytest.raises(ClvError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_and_predict(ACTOR, **options)
    assert list(ClvModel.objects.values_list("pk", "status")) == [(fitted.pk, ClvModel.Status.CURRENT)]
    assert list(CustomerPrediction.objects.order_by("pk").values_list("pk", "model_id", "clv")) == before
    assert AuditEvent.objects.filter(object_type="clv_model").count() == 1


def test_a_fit_without_orders_is_refused(cdnow):
    Order.objects.all().delete()
    with pytest.raises(ClvError, match="there are no orders to fit"):
        fit_and_predict(ACTOR)


# -- profiles, CLI, API, console ------------------------------------------------------------
def test_the_profile_carries_the_prediction(fitted, cdnow):
    person = Person.objects.get(pk=cdnow[1])
    stored = CustomerPrediction.objects.get(person=person)

    shown = profile(person, ACTOR)["predictions"]

    assert shown == {"p_alive": stored.p_alive, "churn_risk": 1 - stored.p_alive,
                     "expected_purchases": stored.expected_purchases, "predicted_spend": str(stored.predicted_spend),
                     "clv": str(stored.clv), "horizon_days": 365, "observation_end": "1998-06-30",
                     "model_id": fitted.pk, "computed_at": stored.computed_at.isoformat()}
    assert profile(Person.objects.create(), ACTOR)["predictions"] is None


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from siyu.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_fit_prints_the_model_as_json(fitted, capsys):
    code, out, _err = run_cli(capsys, "clv", "fit", "--calibration-end", "1997-09-30", "--time-unit", "week",
                              "--horizon-days", "365", "--discount-rate", "0.1", "--json")
    assert code == 0
    data = json.loads(out)
    model = ClvModel.objects.get(status=ClvModel.Status.CURRENT)
    assert data["model_id"] == model.pk != fitted.pk
    assert data["bgnbd"] == model.params["bgnbd"]  # full precision
    assert set(data["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(data["pareto_nbd"]) == {"r", "alpha", "s", "beta", "log_likelihood"}
    assert set(data["gamma_gamma"]) == {"p", "q", "gamma"}
    assert (data["customers"], data["predictions"], data["calibration_end"], data["time_unit"]) == (
        2357, 2357, "1997-09-30", "week")
    assert data["quality"]["total"]["actual"] == 1882
    assert AuditEvent.objects.get(object_type="clv_model", object_id=str(model.pk)).actor_label.startswith("cli:")


def test_cli_show_and_customer_show(fitted, cdnow, capsys):
    code, out, _err = run_cli(capsys, "clv", "show", "--json")
    assert code == 0 and json.loads(out)["model_id"] == fitted.pk
    code, out, _err = run_cli(capsys, "clv", "show")
    assert code == 0 and "BG/NBD      r=0.2426 alpha=4.4136 a=0.7929 b=2.4259" in out
    person = Person.objects.get(pk=cdnow[1])
    claim = make_claim("member_no", "CD-1")
    Identity.objects.create(person=person, kind=claim.kind, value_hash=claim.key[1],
                            value_enc=crypto.encrypt(claim.value))
    code, out, _err = run_cli(capsys, "customer", "show", "member_no:CD-1", "--json")
    assert code == 0
    assert json.loads(out)["predictions"]["model_id"] == fitted.pk


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("clv", "fit", "--calibration-end", "30/09/1997"), "--calibration-end must be a date YYYY-MM-DD"),
        (("clv", "fit", "--horizon-days", "0"), "horizon_days must be a whole number"),
        (("clv", "show"), "no CLV model has been fitted yet"),
    ],
)
def test_cli_errors_exit_2_naming_the_problem(cdnow, capsys, args, needle):
    no_fits()
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 2
    assert needle in json.loads(out)["error"] and needle in err


def api_as(client, role: str):
    from siyu.accounts.actions import create_user

    user, _pw = create_user(f"u-{role}", role, password="pw-12345678")
    client.force_login(user)
    return client


def test_api_fit_and_read_the_model(client, cdnow):
    no_fits()
    api = api_as(client, "data_analyst")
    assert api.get("/api/v1/clv/model").status_code == 404
    response = api.post("/api/v1/clv/fit", {"calibration_end": "1997-09-30", "time_unit": "week"},
                        content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert round(body["bgnbd"]["r"], 3) == 0.243 and body["predictions"] == 2357
    assert api.get("/api/v1/clv/model").json()["model_id"] == body["model_id"]
    audit = AuditEvent.objects.get(object_type="clv_model", object_id=str(body["model_id"]))
    assert audit.actor_label == "u-data_analyst"


def test_api_refuses_bad_input_with_the_field_or_reason(client, cdnow):
    api = api_as(client, "data_analyst")
    bad = api.post("/api/v1/clv/fit", {"time_unit": "month"}, content_type="application/json")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.time_unit"
    late = api.post("/api/v1/clv/fit", {"calibration_end": "1999-01-01"}, content_type="application/json")
    assert late.status_code == 422 and "after the last order" in late.json()["detail"]


@pytest.mark.parametrize(("role", "method", "path"), [
    ("community_manager", "post", "/api/v1/clv/fit"),
    ("content_specialist", "get", "/api/v1/clv/model"),
])
def test_api_needs_the_permission(client, db, role, method, path):
    response = getattr(api_as(client, role), method)(path, content_type="application/json")
    assert response.status_code == 403
    assert "valuation." in response.json()["detail"]


def test_console_model_page_shows_the_fit_and_the_form(client, fitted):
    html = api_as(client, "data_analyst").get("/analytics/clv/").content.decode()
    for needle in ("0.2426", "4.4136", "6.2496", 'id="clv-quality-spec"', 'id="clv-value-spec"',
                   'id="clv-alive-spec"', 'id="clv-fit-form"', "2,357"):
        assert needle in html, needle


def test_console_fit_form_fits_for_analysts_only(client, fitted):
    viewer = api_as(client, "community_manager")
    assert 'id="clv-fit-form"' not in viewer.get("/analytics/clv/").content.decode()
    assert viewer.post("/analytics/clv/", {"time_unit": "week"}).status_code == 403
    analyst = api_as(client, "data_analyst")
    response = analyst.post("/analytics/clv/", {"calibration_end": "1997-09-30", "time_unit": "week",
                                                "horizon_days": 365, "discount_rate": 0.1})
    assert response.status_code == 302
    assert ClvModel.objects.get(status=ClvModel.Status.CURRENT).actor_label == "u-data_analyst"
    refused = analyst.post("/analytics/clv/", {"calibration_end": "1999-01-01", "time_unit": "week",
                                               "horizon_days": 365, "discount_rate": 0.1})
    assert refused.status_code == 400 and "after the last order" in refused.content.decode()


def test_console_customer_page_shows_the_prediction(client, fitted, cdnow):
    html = api_as(client, "data_analyst").get(f"/customers/{cdnow[1]}/").content.decode()
    stored = CustomerPrediction.objects.get(person_id=cdnow[1])
    assert 'id="predictions"' in html
    assert f"{stored.clv:,.2f}" in html

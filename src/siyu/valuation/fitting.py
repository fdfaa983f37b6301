"""Fit the CLV models on the brand's orders and store every customer's prediction.

Reading: one SQL query over the orders (net of refunds, merged and erased persons left out) into
numpy arrays — no model instance per order. Fitting and predicting: the pure library
``siyu.clv`` (see :mod:`siyu.valuation.predict`). Writing: one transaction replaces every
``CustomerPrediction`` row and records the fit, with an audit event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import repeat

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.accounts.actor import Actor
from siyu.customers.models import Person
from siyu.orders.models import Order
from siyu.privacy.actions import audit
from siyu.valuation.models import MAX_MONEY, ClvModel, CustomerPrediction
from siyu.valuation.predict import ClvError, Fit, FitSettings, fit

READ_CHUNK = 100_000
WRITE_BATCH = 20_000
EPOCH = date(1970, 1, 1)

__all__ = ["ClvError", "Orders", "fit_and_predict", "read_orders", "refit_if_due"]


@dataclass(frozen=True)
class Orders:
    """Orders as the models read them, one entry per order: the person, the order's day on the
    brand's clock (days since 1970-01-01) and its net value."""

    person_ids: np.ndarray
    days: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.person_ids)


def fit_and_predict(
    actor: Actor,
    *,
    calibration_end: date | None = None,
    time_unit: str = "week",
    horizon_days: int = 365,
    discount_rate: float = 0.1,
) -> ClvModel:
    """Fit BG/NBD, Pareto/NBD and Gamma-Gamma on the orders up to ``calibration_end`` (all
    orders when None) and replace every customer's prediction, as of the last order day.

    Raises ClvError (a ValueError) when a setting is out of range, there are no orders, the
    calibration end falls outside the orders, too few customers bought twice, or a fit fails;
    nothing is saved then.
    """
    fit_settings = FitSettings.checked(calibration_end, time_unit, horizon_days, discount_rate)
    started = time.perf_counter()
    orders = read_orders()
    result = fit(orders.person_ids, orders.days, orders.values, fit_settings)
    return _save(actor, fit_settings, result, started)


def read_orders() -> Orders:
    """Every order that counts toward customer value: not refunded, a net amount (amount −
    refunded amount) of 0 or more, of a person neither merged away nor erased.

    A 0.00 order (a gift, a fully discounted order) is a purchase: it says the customer is
    still buying, and the published CDNOW fits count it. A negative one (a return booked as an
    order) is not."""
    person, seconds, value = [], [], []
    with connection.cursor() as cur:
        cur.execute(_orders_sql(), [Order.Status.REFUNDED.value])
        while rows := cur.fetchmany(READ_CHUNK):
            block = np.array(rows, dtype=np.float64)
            person.append(block[:, 0].astype(np.int64))
            seconds.append(block[:, 1].astype(np.int64))
            value.append(block[:, 2])
    if not person:
        empty = np.zeros(0)
        return Orders(empty.astype(np.int64), empty.astype(np.int64), empty)
    return Orders(np.concatenate(person), local_days(np.concatenate(seconds)), np.concatenate(value))


def _orders_sql() -> str:
    # Epoch seconds and a float net amount straight from the database: no datetime or Decimal
    # object per row (2 856 093 orders read in 5 s, benchmarks/bench_valuation.py).
    if connection.vendor == "postgresql":
        # floor, not the cast's rounding: 23:59:59.6 stays on its day
        epoch, net = "FLOOR(EXTRACT(EPOCH FROM o.placed_at))::bigint", "(o.amount - o.refunded_amount)::float8"
    else:
        epoch, net = "CAST(strftime('%%s', o.placed_at) AS INTEGER)", "CAST(o.amount - o.refunded_amount AS REAL)"
    orders, persons = Order._meta.db_table, Person._meta.db_table
    return (
        f"SELECT o.person_id, {epoch}, {net} FROM {orders} o JOIN {persons} p ON p.id = o.person_id"
        " WHERE o.status <> %s AND o.amount - o.refunded_amount >= 0"
        " AND p.merged_into_id IS NULL AND p.erased_at IS NULL"
    )


def local_days(epoch_seconds: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of each instant on the brand's clock (settings.TIME_ZONE)."""
    if not len(epoch_seconds):
        return epoch_seconds.astype(np.int64)
    instants = pd.to_datetime(epoch_seconds, unit="s", utc=True).tz_convert(settings.TIME_ZONE)
    wall = instants.tz_localize(None).to_numpy()
    return wall.astype("datetime64[D]").astype(np.int64)


def day_of(number: int) -> date:
    return EPOCH + timedelta(days=int(number))


# -- writing ------------------------------------------------------------------------------
def _save(actor: Actor, fit_settings: FitSettings, result: Fit, started: float) -> ClvModel:
    """Record the fit and replace every prediction in one transaction."""
    with transaction.atomic():
        _lock_predictions()
        model = ClvModel.objects.create(
            actor_label=actor.label,
            time_unit=fit_settings.time_unit,
            calibration_end=fit_settings.calibration_end,
            observation_end=day_of(result.observation_end),
            horizon_days=fit_settings.horizon_days,
            discount_rate=fit_settings.discount_rate,
            customers=len(result.person_ids),
            orders=result.orders,
            fitted_customers=result.fitted_customers,
            repeat_customers=result.repeat_customers,
            params=result.params,
            quality=result.quality,
            distribution=result.distribution,
            status=ClvModel.Status.CURRENT,
        )
        ClvModel.objects.filter(status=ClvModel.Status.CURRENT).exclude(pk=model.pk).update(
            status=ClvModel.Status.SUPERSEDED
        )
        CustomerPrediction.objects.all().delete()
        _insert_predictions(model, result, model.created_at)
        model.duration_ms = round((time.perf_counter() - started) * 1000)
        model.save(update_fields=["duration_ms"])
        audit(actor, "change", "clv_model", model.pk, op="fit", time_unit=model.time_unit,
              calibration_end=_iso(model.calibration_end), observation_end=_iso(model.observation_end),
              horizon_days=model.horizon_days, discount_rate=model.discount_rate, customers=model.customers)
    return model


def _lock_predictions() -> None:
    """Two fits at once take turns (SQLite's write transactions already do)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute(f"LOCK TABLE {CustomerPrediction._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")


_INSERTED = ("person", "model", "p_alive", "expected_purchases", "predicted_spend", "clv", "computed_at")


def _insert_predictions(model: ClvModel, result: Fit, computed_at: datetime) -> None:
    """Insert every prediction: PostgreSQL with COPY, SQLite with one ``executemany`` per batch
    (as ``orders.actions`` inserts orders). bulk_create costs ten times as much per row (100 000
    rows on SQLite: 3.4 s against 0.33 s), and on PostgreSQL even ``executemany`` takes 40 s for
    1 000 000 rows (benchmarks/bench_valuation.py) — all of it inside the write transaction.
    Money goes in as floats rounded to cents: SQLite stores a decimal column's value as a
    number either way, PostgreSQL casts it to numeric(14, 2)."""
    ops = connection.ops
    table = ops.quote_name(CustomerPrediction._meta.db_table)
    columns = ", ".join(ops.quote_name(CustomerPrediction._meta.get_field(name).column) for name in _INSERTED)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(_INSERTED))})"
    ids = result.person_ids.tolist()
    p_alive, expected = result.p_alive.tolist(), result.expected_purchases.tolist()
    spend, value = _cents(result.predicted_spend), _cents(result.clv)
    at = ops.adapt_datetimefield_value(computed_at)
    with connection.cursor() as cur:
        for start in range(0, len(ids), WRITE_BATCH):
            stop = start + WRITE_BATCH
            rows = zip(ids[start:stop], repeat(model.pk), p_alive[start:stop], expected[start:stop],
                       spend[start:stop], value[start:stop], repeat(at), strict=False)
            if connection.vendor == "postgresql":
                with cur.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                cur.executemany(insert, list(rows))


def _cents(values: np.ndarray) -> list[float]:
    """Money rounded to cents and capped at what DecimalField(14, 2) holds."""
    return np.round(np.minimum(values, float(MAX_MONEY)), 2).tolist()


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


# -- scheduled refits ---------------------------------------------------------------------
def refit_if_due(max_age_hours: float, actor: Actor | None = None) -> ClvModel | None:
    """Refit with the newest fit's settings when that fit is older than ``max_age_hours``;
    returns the new fit, or None when none is due (or there has never been a fit: the first fit
    is someone's choice of settings).

    Raises ClvError when ``max_age_hours`` is not positive or the refit is refused.
    """
    if not max_age_hours > 0:
        raise ClvError(_("max_age_hours must be positive"))
    last = ClvModel.objects.order_by("-created_at", "-pk").first()
    if last is None or timezone.now() - last.created_at < timedelta(hours=max_age_hours):
        return None
    return fit_and_predict(
        actor or Actor.system("clv-refit"),
        calibration_end=last.calibration_end,
        time_unit=last.time_unit,
        horizon_days=last.horizon_days,
        discount_rate=last.discount_rate,
    )

"""``fit_and_predict`` at scale: read the orders, fit three models, write every prediction.

Loads ``--customers`` persons and their orders (about 2.9 per customer, drawn from the BG/NBD +
Gamma-Gamma processes with CDNOW's parameters, as ``bench_clv.py`` draws them, over 78 weeks)
straight into the operational database — SQLite in a fresh data folder, or PostgreSQL when
``DATABASE_URL`` is set — then runs what ``siyu clv fit --calibration-end`` runs and prints the
seconds of each stage:

1. read: the orders into numpy arrays (one SQL query);
2. fit: summaries, BG/NBD, Pareto/NBD, Gamma-Gamma, predictions, hold-out quality;
3. write: one transaction replacing every ``CustomerPrediction`` (bulk_create in batches).

The baseline for the read is the same query's rows counted without numpy (``SELECT COUNT(*)``
over the same join), and for the write a bare ``executemany`` of the same rows into the same
table, both measured in the same run.

    .venv/bin/python benchmarks/bench_valuation.py --customers 1000000
    DATABASE_URL=postgres://… .venv/bin/python benchmarks/bench_valuation.py --customers 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))
from bench_clv import draw_orders  # noqa: E402

START = datetime(2025, 1, 1, 4, 0, tzinfo=UTC)  # noon in Shanghai
CALIBRATION_END = (START + timedelta(days=273)).date()
CHUNK = 50_000


def populate(customers: int, seed: int) -> int:
    """Persons 1..N and their orders, by executemany (values as the ORM would store them)."""
    from django.db import connection, transaction
    from django.utils import timezone

    cust, day, value = draw_orders(customers, seed)
    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    person_sql = ("INSERT INTO customers_person (id, created_at, pii_enc, traits, order_count, total_spend,"
                  " acquisition_channel, first_touch, last_touch) VALUES (%s, %s, '', '{}', 0, 0, '', '{}', '{}')")
    order_sql = ("INSERT INTO orders_order (external_id, person_id, placed_at, amount, refunded_amount, currency,"
                 " status, channel, store, coupon, items, origin, created_at)"
                 " VALUES (%s, %s, %s, %s, 0, 'CNY', 'completed', '', '', '', '[]', 'bench', %s)")
    with transaction.atomic(), connection.cursor() as cur:
        for start in range(0, customers, CHUNK):
            cur.executemany(person_sql, [(i + 1, now) for i in range(start, min(start + CHUNK, customers))])
        placed = [ops.adapt_datetimefield_value(START + timedelta(days=float(d))) for d in day]
        rows = [(f"B{i}", int(c) + 1, p, f"{v:.2f}", now)
                for i, (c, p, v) in enumerate(zip(cust, placed, np.maximum(value, 0.01), strict=True))]
        for start in range(0, len(rows), CHUNK):
            cur.executemany(order_sql, rows[start:start + CHUNK])
    return len(rows)


def timed(label: str, func, *args, **kwargs):
    started = time.perf_counter()
    result = func(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"{label:<34} {seconds:8.2f} s", flush=True)
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reuse", action="store_true",
                        help="keep the orders already in the database (PostgreSQL: skip the slow load)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        os.environ["SIYU_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-valuation-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    from django.db import connection, transaction

    from siyu.accounts.actor import Actor
    from siyu.cli import ensure_migrated
    from siyu.valuation import fitting
    from siyu.valuation.models import CustomerPrediction
    from siyu.valuation.predict import FitSettings, fit

    ensure_migrated()
    print(f"database: {connection.vendor}, {args.customers:,} customers", flush=True)
    from siyu.orders.models import Order

    if args.reuse and Order.objects.exists():
        orders = Order.objects.count()
    else:
        orders, _s = timed("populate", populate, args.customers, args.seed)
    print(f"orders: {orders:,}")
    settings = FitSettings.checked(CALIBRATION_END, "week", 365, 0.1)
    with connection.cursor() as cur:
        count_sql = "SELECT COUNT(*) FROM (" + fitting._orders_sql() + ") q"
        _c, floor_read = timed("read floor (COUNT(*) of the query)", lambda: cur.execute(count_sql, ["refunded"]))
    read, t_read = timed("read orders into arrays", fitting.read_orders)
    result, t_fit = timed("fit + predict + quality", fit, read.person_ids, read.days, read.values, settings)
    model, t_save = timed("write (fit_and_predict's _save)", fitting._save, Actor.system("bench"), settings,
                          result, time.perf_counter())
    assert CustomerPrediction.objects.filter(model=model).count() == len(result.person_ids)

    def bare_insert() -> None:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("DELETE FROM valuation_customerprediction")
            rows = list(zip(result.person_ids.tolist(), [model.pk] * len(result.person_ids),
                            result.p_alive.tolist(), result.expected_purchases.tolist(),
                            np.round(result.predicted_spend, 2).tolist(), np.round(result.clv, 2).tolist(),
                            [connection.ops.adapt_datetimefield_value(model.created_at)] * len(result.person_ids),
                            strict=True))
            sql = ("INSERT INTO valuation_customerprediction (person_id, model_id, p_alive, expected_purchases,"
                   " predicted_spend, clv, computed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)")
            for start in range(0, len(rows), CHUNK):
                cur.executemany(sql, rows[start:start + CHUNK])

    _b, t_bare = timed("write floor (bare executemany)", bare_insert)
    total = t_read + t_fit + t_save
    print(f"\nfit_and_predict: {total:.1f} s for {orders:,} orders / {len(result.person_ids):,} predictions")
    print(f"read / floor {t_read / max(floor_read, 1e-9):.1f}x, write / bare executemany {t_save / t_bare:.1f}x")
    print("params:", {k: {n: round(v, 4) for n, v in p.items()} for k, p in result.params.items()})


if __name__ == "__main__":
    main()

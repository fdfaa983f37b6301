"""The RFM summary the CLV models read: frequency, recency, T and mean repeat spend per customer.

Pure numpy: raw orders as arrays in, a frozen :class:`CustomerSummary` out. Definitions follow
Fader, Hardie & Lee (2005) and lifetimes' ``summary_data_from_transaction_data``:

* orders are placed on whole days; several orders by one customer on one day are one purchase
  (their values add up);
* ``frequency`` = number of purchase days − 1 (repeat purchases);
* ``recency`` = last purchase − first purchase, ``T`` = calibration end − first purchase, both in
  ``time_unit`` (``"day"`` or ``"week"`` = 7 days);
* ``monetary_value`` = mean value of the repeat purchases (the first purchase is left out, as the
  Gamma-Gamma model requires), 0 for customers without a repeat purchase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAYS_PER_UNIT = {"day": 1.0, "week": 7.0}


@dataclass(frozen=True)
class CustomerSummary:
    """One row per customer; every array has the same length and order as ``customer_ids``."""

    customer_ids: np.ndarray
    frequency: np.ndarray
    recency: np.ndarray
    T: np.ndarray
    monetary_value: np.ndarray
    time_unit: str = "week"

    def __len__(self) -> int:
        return len(self.frequency)


def summary_from_arrays(
    frequency: np.ndarray,
    recency: np.ndarray,
    T: np.ndarray,
    monetary_value: np.ndarray | None = None,
    *,
    customer_ids: np.ndarray | None = None,
    time_unit: str = "week",
) -> CustomerSummary:
    """Wrap an already computed RFM summary, checking it.

    Raises ValueError when the arrays are empty, of different lengths, not finite, negative,
    when a frequency is not a whole number, when recency exceeds T, or when a customer without
    repeat purchases has a recency other than 0.
    """
    f, r, t = (np.asarray(a, dtype=float) for a in (frequency, recency, T))
    m = np.zeros_like(f) if monetary_value is None else np.asarray(monetary_value, dtype=float)
    ids = np.arange(len(f)) if customer_ids is None else np.asarray(customer_ids)
    _check_summary(f, r, t, m, ids, time_unit)
    return CustomerSummary(ids, f, r, t, m, time_unit)


def _check_summary(
    f: np.ndarray, r: np.ndarray, t: np.ndarray, m: np.ndarray, ids: np.ndarray, unit: str
) -> None:
    if unit not in DAYS_PER_UNIT:
        raise ValueError(f"time_unit must be one of {sorted(DAYS_PER_UNIT)}, not {unit!r}")
    if len(f) == 0:
        raise ValueError("the summary is empty: no customers to fit")
    if not len(f) == len(r) == len(t) == len(m) == len(ids) or f.ndim != 1:
        raise ValueError("frequency, recency, T, monetary_value must be 1-d arrays of one length")
    for name, a in (("frequency", f), ("recency", r), ("T", t), ("monetary_value", m)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or infinite values")
        if np.any(a < 0):
            raise ValueError(f"{name} contains negative values")
    if np.any(f != np.round(f)):
        raise ValueError("frequency must be whole numbers of repeat purchases")
    if np.any(r > t):
        raise ValueError(
            "recency is greater than T for some customers (last purchase after the end)"
        )
    if np.any((f == 0) & (r != 0)):
        raise ValueError("customers with frequency 0 must have recency 0")


def summarize_orders(
    customer_ids: np.ndarray,
    order_times: np.ndarray,
    order_values: np.ndarray,
    calibration_end: float | np.datetime64 | str,
    *,
    time_unit: str = "week",
) -> CustomerSummary:
    """Build the RFM summary of every customer with an order on or before ``calibration_end``.

    ``order_times`` are float days (any origin) or ``datetime64``; ``calibration_end`` is on the
    same scale (a day number, or a date). Orders after the calibration end are ignored.

    Raises ValueError when the arrays differ in length, values are negative or not finite, or no
    order falls on or before the calibration end.
    """
    if time_unit not in DAYS_PER_UNIT:
        raise ValueError(f"time_unit must be one of {sorted(DAYS_PER_UNIT)}, not {time_unit!r}")
    ids, days, values = np.asarray(customer_ids), _to_days(order_times), np.asarray(order_values)
    values = values.astype(float)
    if not len(ids) == len(days) == len(values):
        raise ValueError("customer_ids, order_times and order_values must have one length")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("order_values must be finite and non-negative")
    end = int(_to_days(np.asarray([calibration_end], dtype=np.asarray(order_times).dtype))[0])
    keep = days <= end
    if not keep.any():
        raise ValueError("no orders on or before the calibration end")
    return _summarize_days(ids[keep], days[keep], values[keep], end, time_unit)


def _to_days(times: np.ndarray) -> np.ndarray:
    """Whole day numbers (int64) from float days or datetime64."""
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        return times.astype("datetime64[D]").astype(np.int64)
    times = times.astype(float)
    if not np.all(np.isfinite(times)):
        raise ValueError("order_times contains NaN or infinite values")
    return np.floor(times).astype(np.int64)


def _summarize_days(
    ids: np.ndarray, days: np.ndarray, values: np.ndarray, end: int, unit: str
) -> CustomerSummary:
    customers, cust = _customer_codes(ids)
    first_day = int(days.min())
    span = int(end - first_day) + 1
    # one sort on a (customer, day) key; runs of equal keys are same-day orders, merged
    key = cust * span + (days - first_day)
    order = _argsort_small(key)
    key = key[order]
    starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    day_value = np.add.reduceat(values[order], starts)
    pair_cust, pair_day = key[starts] // span, key[starts] % span + first_day
    n = len(customers)
    purchases = np.bincount(pair_cust, minlength=n)
    first = np.concatenate(([0], np.cumsum(purchases)[:-1]))
    last = first + purchases - 1
    frequency = (purchases - 1).astype(float)
    repeat_total = np.bincount(pair_cust, weights=day_value, minlength=n) - day_value[first]
    monetary = np.divide(repeat_total, frequency, out=np.zeros(n), where=frequency > 0)
    scale = DAYS_PER_UNIT[unit]
    recency = (pair_day[last] - pair_day[first]) / scale
    T = (end - pair_day[first]) / scale
    return CustomerSummary(customers, frequency, recency, T.astype(float), monetary, unit)


def _argsort_small(key: np.ndarray) -> np.ndarray:
    """An argsort of non-negative int64 keys, unstable; when key and position fit in 63 bits
    together, one plain sort of key·2^k + position (4x faster than an argsort)."""
    n = len(key)
    shift = max(int(n - 1).bit_length(), 1)
    if n == 0 or int(key.max()) >= 2 ** (63 - shift):
        return np.argsort(key)
    packed = np.sort((key << shift) | np.arange(n, dtype=np.int64))
    return packed & ((1 << shift) - 1)


def _customer_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct customer ids and each order's code 0..n-1 into them (int64)."""
    if np.issubdtype(ids.dtype, np.integer) and len(ids):
        low, high = int(ids.min()), int(ids.max())
        if high - low < 4 * len(ids):  # dense integer ids: a bincount instead of a sort
            seen = np.bincount(ids - low, minlength=high - low + 1) > 0
            code = np.cumsum(seen) - 1
            return np.flatnonzero(seen) + low, code[ids - low]
    customers, cust = np.unique(ids, return_inverse=True)
    return customers, cust.astype(np.int64)

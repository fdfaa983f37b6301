"""CLV models at scale: siyu's BG/NBD + Gamma-Gamma fit against lifetimes' on the same data.

Draws raw orders for ``--customers`` customers from the BG/NBD generative process (CDNOW's
published parameters: purchase rate lambda ~ Gamma(r, alpha), dropout p ~ Beta(a, b) after each
repeat purchase) with Gamma-Gamma spend, first purchases spread over 12 weeks and 78 weeks of
orders in float days (numpy, seeded); the calibration period ends at day 273 (39 weeks).

Then, in the same process and on the same data:

1. siyu: ``summarize_orders`` (raw orders → RFM summary in weeks) + ``fit_bgnbd`` +
   ``fit_gamma_gamma``, the median of ``--repeats`` runs;
2. lifetimes: ``BetaGeoFitter().fit`` + ``GammaGammaFitter().fit`` on siyu's summary (one row
   per customer, as lifetimes is normally called), once — it is the slow side.

Prints both wall times, the ratio lifetimes / siyu and both parameter sets, and checks that they
agree to 4 significant digits. The figure to meet: 1 000 000 customers, siyu at least 10× faster
than lifetimes with the same parameters to 4 significant digits.

    .venv/bin/python benchmarks/bench_clv.py --customers 1000000
    .venv/bin/python benchmarks/bench_clv.py --customers 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from siyu.clv import fit_bgnbd, fit_gamma_gamma, summarize_orders  # noqa: E402

FIGURE_CUSTOMERS, FIGURE_RATIO, SIGNIFICANT = 1_000_000, 10.0, 4
BGNBD_TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # weeks, FHL05 on CDNOW
GG_TRUE = {"p": 6.25, "q": 3.74, "gamma": 15.44}  # FH13 on CDNOW
CALIBRATION_END_DAY, HORIZON_WEEKS, ACQUISITION_WEEKS = 273.0, 78.0, 12.0


def draw_orders(customers: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw orders (customer id, float day, value) from the BG/NBD + Gamma-Gamma processes."""
    rng = np.random.default_rng(seed)
    t = BGNBD_TRUE
    lam = rng.gamma(t["r"], 1.0 / t["alpha"], customers)  # purchases per week
    drop = rng.beta(t["a"], t["b"], customers)
    lives = rng.geometric(drop)  # the repeat purchase after which the customer leaves
    in_window = rng.poisson(lam * HORIZON_WEEKS)
    repeats = np.minimum(lives, in_window)
    birth = rng.uniform(0, ACQUISITION_WEEKS * 7, customers)
    # given n arrivals in the window they are uniform; the first `repeats` of them happen
    cust = np.repeat(np.arange(customers), in_window)
    when = rng.uniform(0, HORIZON_WEEKS * 7, len(cust))
    order = np.lexsort((when, cust))
    cust, when = cust[order], when[order]
    rank = np.arange(len(cust)) - np.repeat(np.cumsum(in_window) - in_window, in_window)
    kept = rank < repeats[cust]
    cust = np.concatenate((np.arange(customers), cust[kept]))
    day = np.concatenate((birth, birth[cust[customers:]] + when[kept]))
    g = GG_TRUE
    nu = rng.gamma(g["q"], 1.0 / g["gamma"], customers)
    value = rng.gamma(g["p"], 1.0 / nu[cust])
    return cust, day, value


def run_siyu(cust: np.ndarray, day: np.ndarray, value: np.ndarray) -> tuple[float, tuple]:
    t0 = time.perf_counter()
    summary = summarize_orders(cust, day, value, CALIBRATION_END_DAY, time_unit="week")
    bg = fit_bgnbd(summary)
    gg = fit_gamma_gamma(summary.frequency, summary.monetary_value)
    return time.perf_counter() - t0, (summary, bg, gg)


def run_lifetimes(summary) -> tuple[float, dict, dict]:
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    f = pd.Series(summary.frequency)
    r, T, m = pd.Series(summary.recency), pd.Series(summary.T), pd.Series(summary.monetary_value)
    t0 = time.perf_counter()
    bgf = BetaGeoFitter().fit(f, r, T)
    repeat = f > 0
    ggf = GammaGammaFitter().fit(f[repeat], m[repeat])
    seconds = time.perf_counter() - t0
    bg = {k: float(bgf.params_[k]) for k in ("r", "alpha", "a", "b")}
    gg = {
        "p": float(ggf.params_["p"]),
        "q": float(ggf.params_["q"]),
        "gamma": float(ggf.params_["v"]),
    }
    return seconds, bg, gg


def same_digits(x: float, y: float, digits: int = SIGNIFICANT) -> bool:
    """Equal when rounded to ``digits`` significant digits (or within half a unit of the last)."""
    rounded = [float(f"{v:.{digits - 1}e}") for v in (x, y)]
    return rounded[0] == rounded[1] or abs(x - y) <= 0.5 * 10 ** (
        np.floor(np.log10(abs(y))) - digits + 1
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=FIGURE_CUSTOMERS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    t0 = time.perf_counter()
    cust, day, value = draw_orders(args.customers, args.seed)
    print(
        f"  drew {len(cust):,} orders of {args.customers:,} customers in "
        f"{time.perf_counter() - t0:.1f}s (seed {args.seed})"
    )
    runs = [run_siyu(cust, day, value) for _ in range(args.repeats)]
    siyu_s = statistics.median(s for s, _ in runs)
    summary, bg, gg = runs[0][1]
    print(
        f"  siyu (summary from raw orders + BG/NBD + Gamma-Gamma): median {siyu_s:.2f}s "
        f"of {args.repeats} ({', '.join(f'{s:.2f}' for s, _ in runs)}); "
        f"{len(summary):,} customers, {int((summary.frequency > 0).sum()):,} repeat buyers"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        life_s, life_bg, life_gg = run_lifetimes(summary)
    print(f"  lifetimes (BetaGeoFitter + GammaGammaFitter on the same summary): {life_s:.2f}s")
    ours = {
        "r": bg.r,
        "alpha": bg.alpha,
        "a": bg.a,
        "b": bg.b,
        "p": gg.p,
        "q": gg.q,
        "gamma": gg.gamma,
    }
    theirs = {**life_bg, **life_gg}
    agree = True
    for name, value_ in ours.items():
        ok = same_digits(value_, theirs[name])
        agree &= ok
        print(
            f"    {name:>5}: siyu {value_:.6g}  lifetimes {theirs[name]:.6g}  "
            f"truth {({**BGNBD_TRUE, **GG_TRUE})[name]}  {'same' if ok else 'DIFFERENT'}"
        )
    print(f"  BG/NBD log-likelihood {bg.log_likelihood:,.1f}; Gamma-Gamma {gg.log_likelihood:,.1f}")
    ratio = life_s / siyu_s
    print(f"  ratio lifetimes / siyu: {ratio:.1f}x")
    met = ratio >= FIGURE_RATIO and agree and args.customers >= FIGURE_CUSTOMERS
    print(
        f"  figure ({FIGURE_CUSTOMERS:,} customers, >= {FIGURE_RATIO:.0f}x faster, parameters "
        f"equal to {SIGNIFICANT} significant digits): {'MET' if met else 'NOT MET'}"
    )
    if not agree:
        print("  parameters differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

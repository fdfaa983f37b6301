"""Purchase models (BG/NBD, Pareto/NBD), the Gamma-Gamma spend model and CLV.

Pure statistics: a :class:`~siyu.clv.summary.CustomerSummary` (or plain arrays) in, frozen
dataclasses and arrays out; no Django, no SQL. References, cited by equation number below:

* [FHL05] Fader, Hardie & Lee (2005), "Counting Your Customers" the Easy Way: An Alternative to
  the Pareto/NBD Model. Marketing Science 24(2).
* [FH05] Fader & Hardie (2005), A Note on Deriving the Pareto/NBD Model and Related Expressions.
* [FH13] Fader & Hardie (2013), The Gamma-Gamma Model of Monetary Value.

Every fit maximises the closed-form log-likelihood over log-parameters with L-BFGS-B and an
analytic gradient (Pareto/NBD: a finite-difference one). Customers with identical (x, t_x, T) rows are
fitted once with a weight, and terms that depend on x only are computed once per distinct x.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln, hyp2f1

from siyu.clv.summary import CustomerSummary

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


# -- shared helpers -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Rows:
    """Distinct (x, t_x, T) rows with their counts; ``xu``/``xi`` index the distinct x values."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    weight: np.ndarray
    xu: np.ndarray
    xi: np.ndarray


def _distinct_rows(x: np.ndarray, t_x: np.ndarray, T: np.ndarray, *, inverse: bool = False):
    """The distinct rows with their counts; with ``inverse``, also each input row's index into
    them, as ``(rows, inverse)``."""
    # Each column becomes an integer code, the three codes one integer key, and the keys are
    # sorted without an argsort: ~5x faster than a lexsort of the float columns.
    (xv, xc), (tv, tc), (Tv, Tc) = (_value_codes(c) for c in (x, t_x, T))
    nt, nT = len(tv), len(Tv)
    if len(xv) * nt * nT >= 2**62:
        raise ValueError("too many distinct (frequency, recency, T) values to fit")
    row_keys = (xc * nt + tc) * nT + Tc
    keys = np.sort(row_keys)
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    weight = np.diff(np.append(starts, len(keys))).astype(float)
    distinct = keys[starts]
    xs, ts, Ts = xv[distinct // (nt * nT)], tv[distinct // nT % nt], Tv[distinct % nT]
    xu, xi = np.unique(xs, return_inverse=True)
    rows = _Rows(xs, ts, Ts, weight, xu, xi)
    return (rows, np.searchsorted(distinct, row_keys)) if inverse else rows


def _value_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A table of values and each value's integer code into it (table[code] == value).

    Summaries count whole days, so values are multiples of 1 or 1/7: then the code is the
    value times 1 or 7 and the table the codes divided back, computed as the summary computed
    them. Otherwise the table is the sorted distinct values (a binary search per value: slower).
    """
    if len(values) and values.min() >= 0 and values.max() < 2**18:  # a table of ≤ 2^21 codes
        for per_unit in (1.0, 7.0):
            scaled = values * per_unit
            codes = np.rint(scaled)
            if np.array_equal(codes / per_unit, values):
                return np.arange(int(codes.max()) + 1) / per_unit, codes.astype(np.int64)
    distinct = np.unique(values)
    return distinct, np.searchsorted(distinct, values).astype(np.int64)


def _dot(a: np.ndarray, b: np.ndarray):
    """a · b over the last axis of a, without BLAS: OpenBLAS leaves its worker threads spinning
    after a large dot product, and on a machine with two cores they slow every numpy call that
    follows (the Gamma-Gamma fit ran 4x slower). A float for vectors, an array for a matrix."""
    result = np.einsum("...i,i->...", a, b)
    return float(result) if result.ndim == 0 else result


def _check_fittable(summary: CustomerSummary) -> None:
    if len(summary) == 0:
        raise ValueError("the summary is empty: no customers to fit")
    if np.any(summary.recency > summary.T) or np.any(summary.frequency < 0):
        raise ValueError("invalid summary: negative frequency or recency greater than T")
    if not np.any(summary.frequency > 0):
        raise ValueError("no customer has a repeat purchase: the purchase model cannot be fitted")


def _maximise(objective: Objective, start: np.ndarray, what: str) -> np.ndarray:
    """Minimise a (value, gradient) objective over log-parameters; return the parameters.

    Raises ValueError when the optimiser does not converge or runs off to 0 or infinity.
    """
    res = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-8},
    )
    _, grad = objective(res.x)
    if not (res.success or np.max(np.abs(grad)) < 1e-6) or not np.all(np.abs(res.x) < 30):
        raise ValueError(f"the {what} fit did not converge: {res.message}")
    return np.exp(res.x)


def _time_scale(T: np.ndarray) -> float:
    """Rescale time so that the longest T is 10: it keeps alpha near 1 for the optimiser."""
    return 10.0 / float(np.max(T))


# -- BG/NBD [FHL05] -------------------------------------------------------------------------
def _bgnbd_loglik(params: np.ndarray, rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log-likelihood [FHL05 eq. 6] and its gradient w.r.t. (r, alpha, a, b)."""
    r, alpha, a, b = params
    xu, xi, x = rows.xu, rows.xi, rows.x
    has = x > 0
    # terms that depend on x only, once per distinct x
    a1 = (gammaln(r + xu) - gammaln(r))[xi] + r * np.log(alpha)
    bl = betaln(a, b)
    b2 = (betaln(a, b + xu) - bl)[xi]
    xm1 = np.where(xu > 0, xu - 1, 0)
    b3 = (betaln(a + 1, b + xm1) - bl)[xi]
    log_aT, log_at = np.log(alpha + rows.T), np.log(alpha + rows.t_x)
    l2 = b2 - (r + x) * log_aT
    l3 = np.where(has, b3 - (r + x) * log_at, -np.inf)
    lse = np.logaddexp(l2, l3)
    w2, w3 = np.exp(l2 - lse), np.exp(l3 - lse)
    psi_ab, psi_a, psi_b = digamma(a + b), digamma(a), digamma(b)
    psi_abx = digamma(a + b + xu)[xi]
    d_r = (digamma(r + xu) - digamma(r))[xi] + np.log(alpha) - w2 * log_aT - w3 * log_at
    d_alpha = r / alpha - (r + x) * (w2 / (alpha + rows.T) + w3 / (alpha + rows.t_x))
    d_a = w2 * (psi_ab - psi_abx) + w3 * (digamma(a + 1) - psi_abx - psi_a + psi_ab)
    d_b2 = digamma(b + xu)[xi] - psi_abx - psi_b + psi_ab
    d_b3 = digamma(b + xm1)[xi] - psi_abx - psi_b + psi_ab
    d_b = w2 * d_b2 + np.where(has, w3 * d_b3, 0.0)
    return a1 + lse, np.stack([d_r, d_alpha, d_a, d_b])


@dataclass(frozen=True)
class BGNBD:
    """A fitted BG/NBD purchase model [FHL05]; time in the summary's ``time_unit``."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n: int

    def _ratio(self, s: CustomerSummary) -> np.ndarray:
        """a/(b+x-1) · ((alpha+T)/(alpha+t_x))^(r+x) for x > 0, else 0 — the odds of dropout."""
        x = s.frequency
        has = x > 0
        log_term = (
            np.log(self.a)
            - np.log(np.where(has, self.b + x - 1, 1.0))
            + (self.r + x) * (np.log(self.alpha + s.T) - np.log(self.alpha + s.recency))
        )
        return np.where(has, np.exp(np.minimum(log_term, 700.0)), 0.0)

    def probability_alive(self, summary: CustomerSummary) -> np.ndarray:
        """P(customer still active at T | x, t_x, T) [FHL05 eq. 11 via the dropout odds]."""
        return 1.0 / (1.0 + self._ratio(summary))

    def conditional_expected_purchases(self, summary: CustomerSummary, t: float) -> np.ndarray:
        """Expected purchases in (T, T+t] of each customer [FHL05 eq. 10]."""
        x, T = summary.frequency, summary.T
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        head = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
        body = (a + b + x - 1) / (a - 1) * (1 - head * hyp2f1(r + x, b + x, a + b + x - 1, z))
        return body / (1.0 + self._ratio(summary))

    def expected_purchases_new_customer(self, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases in (0, t] of a customer just acquired [FHL05 eq. 9]."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        t = np.asarray(t, dtype=float)
        head = (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t))
        return (a + b - 1) / (a - 1) * (1 - head)


def _prepared_rows(summary: CustomerSummary):
    """The distinct (x, t_x, T) rows with their weights, as given and with time rescaled for
    the optimiser: (scale, rows, rescaled rows)."""
    _check_fittable(summary)
    scale = _time_scale(summary.T)
    unscaled = _distinct_rows(summary.frequency, summary.recency, summary.T)
    return scale, unscaled, replace(unscaled, t_x=unscaled.t_x * scale, T=unscaled.T * scale)


def fit_bgnbd(summary: CustomerSummary) -> BGNBD:
    """Fit the BG/NBD model by maximum likelihood [FHL05 eq. 6].

    Raises ValueError when the summary is empty or has no repeat purchase, or the fit does not
    converge.
    """
    scale, unscaled, rows = _prepared_rows(summary)
    total = rows.weight.sum()

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(theta)
        ll, grad = _bgnbd_loglik(params, rows)
        return -_dot(rows.weight, ll) / total, -_dot(grad, rows.weight) * params / total

    start = np.zeros(4)
    r, alpha, a, b = _maximise(objective, start, "BG/NBD")
    alpha /= scale
    ll = _dot(unscaled.weight, _bgnbd_loglik(np.array([r, alpha, a, b]), unscaled)[0])
    return BGNBD(float(r), float(alpha), float(a), float(b), ll, len(summary))


# -- Gamma-Gamma [FH13] ---------------------------------------------------------------------
@dataclass(frozen=True)
class GammaGamma:
    """A fitted Gamma-Gamma model of the mean spend per purchase [FH13]."""

    p: float
    q: float
    gamma: float
    log_likelihood: float
    n: int

    def expected_average_spend(
        self, frequency: np.ndarray, monetary_value: np.ndarray
    ) -> np.ndarray:
        """E[mean spend | x, m_x] [FH13 eq. 5]; customers with x = 0 get the population mean."""
        x, m = np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
        p, q, g = self.p, self.q, self.gamma
        return p * (g + x * m) / (p * x + q - 1)

    @property
    def population_mean_spend(self) -> float:
        """E[mean spend] of a new customer, p·gamma/(q−1); infinite when q ≤ 1."""
        return self.p * self.gamma / (self.q - 1) if self.q > 1 else float("inf")


@dataclass(frozen=True)
class _Spends:
    """Repeat buyers' x and mean spend m, with the constants of the likelihood precomputed."""

    x: np.ndarray
    xm: np.ndarray  # x·m
    xu: np.ndarray
    counts: np.ndarray  # customers per distinct x
    sum_x_log_mx: float  # sum of x·(log m + log x)
    sum_log_m: float

    @classmethod
    def of(cls, x: np.ndarray, m: np.ndarray) -> _Spends:
        xu, counts = np.unique(x, return_counts=True)
        log_m = np.log(m)
        return cls(x, x * m, xu, counts.astype(float), _dot(x, log_m + np.log(x)),
                   float(log_m.sum()))


def _gg_loglik(params: np.ndarray, d: _Spends) -> tuple[float, np.ndarray]:
    """Total log-likelihood of the repeat buyers' mean spends [FH13] and its gradient."""
    p, q, g = params
    n, x, counts = len(d.x), d.x, d.counts
    g_xm = g + d.xm
    log_gxm = np.log(g_xm)
    sum_x_log = _dot(x, log_gxm)
    sum_log = float(log_gxm.sum())
    recip = 1.0 / g_xm
    inv = p * _dot(x, recip) + q * float(recip.sum())
    pxu = p * d.xu
    ll = (
        _dot(counts, gammaln(pxu + q) - gammaln(pxu))
        + n * (q * np.log(g) - gammaln(q))
        + p * d.sum_x_log_mx
        - d.sum_log_m
        - p * sum_x_log
        - q * sum_log
    )
    psi_pxq = digamma(pxu + q)
    d_p = _dot(counts, d.xu * (psi_pxq - digamma(pxu))) + d.sum_x_log_mx - sum_x_log
    d_q = _dot(counts, psi_pxq) + n * (np.log(g) - digamma(q)) - sum_log
    d_g = n * q / g - inv
    return float(ll), np.array([d_p, d_q, d_g])


def fit_gamma_gamma(frequency: np.ndarray, monetary_value: np.ndarray) -> GammaGamma:
    """Fit the Gamma-Gamma spend model on the customers with at least one repeat purchase.

    ``monetary_value`` is each customer's mean spend over the repeat purchases.

    Raises ValueError when the arrays differ in length, no customer has a repeat purchase, a
    repeat buyer has a spend ≤ 0, or the fit does not converge.
    """
    x, m = np.asarray(frequency, dtype=float), np.asarray(monetary_value, dtype=float)
    if x.shape != m.shape:
        raise ValueError("frequency and monetary_value must have one length")
    keep = x > 0
    if not keep.any():
        raise ValueError("no customer has a repeat purchase: Gamma-Gamma cannot be fitted")
    x, m = x[keep], m[keep]
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError("monetary_value must be positive and finite for repeat buyers")
    scale = 1.0 / float(np.mean(m))
    scaled = _Spends.of(x, m * scale)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(theta)
        ll, grad = _gg_loglik(params, scaled)
        return -ll / len(x), -grad * params / len(x)

    start = np.zeros(3)
    p, q, g = _maximise(objective, start, "Gamma-Gamma")
    g /= scale
    ll = _gg_loglik(np.array([p, q, g]), _Spends.of(x, m))[0]
    return GammaGamma(float(p), float(q), float(g), ll, int(len(x)))


# -- Pareto/NBD [FH05] ----------------------------------------------------------------------
def _pnbd_terms(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray):
    """log of the two summands of the Pareto/NBD likelihood [FH05 eq. 22], without the
    common factor Gamma(r+x) alpha^r beta^s / Gamma(r)."""
    r, alpha, s, beta = params
    rsx = r + s + x
    if alpha >= beta:
        rho, b_arg, z_diff = alpha, s + 1, alpha - beta
    else:
        rho, b_arg, z_diff = beta, r + x, beta - alpha
    log_f1 = np.log(hyp2f1(rsx, b_arg, rsx + 1, z_diff / (rho + t_x))) - rsx * np.log(rho + t_x)
    log_f2 = np.log(hyp2f1(rsx, b_arg, rsx + 1, z_diff / (rho + T))) - rsx * np.log(rho + T)
    with np.errstate(divide="ignore"):
        log_a0 = log_f1 + np.log(-np.expm1(np.minimum(log_f2 - log_f1, 0.0)))
    first = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    second = np.log(s) - np.log(rsx) + log_a0
    return first, second


def _pnbd_loglik(params: np.ndarray, rows: _Rows) -> np.ndarray:
    r, alpha, s, beta = params
    first, second = _pnbd_terms(params, rows.x, rows.t_x, rows.T)
    head = gammaln(r + rows.x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    return head + np.logaddexp(first, second)


@dataclass(frozen=True)
class ParetoNBD:
    """A fitted Pareto/NBD purchase model [Schmittlein, Morrison & Colombo 1987; FH05]."""

    r: float
    alpha: float
    s: float
    beta: float
    log_likelihood: float
    n: int

    @property
    def _params(self) -> np.ndarray:
        return np.array([self.r, self.alpha, self.s, self.beta])

    def probability_alive(self, summary: CustomerSummary) -> np.ndarray:
        """P(customer still active at T | x, t_x, T) [FH05 eq. 25]."""
        first, second = _pnbd_terms(self._params, summary.frequency, summary.recency, summary.T)
        return np.exp(first - np.logaddexp(first, second))

    def conditional_expected_purchases(self, summary: CustomerSummary, t: float) -> np.ndarray:
        """Expected purchases in (T, T+t] of each customer [FH05 eq. 27]."""
        r, alpha, s, beta = self._params
        x, T = summary.frequency, summary.T
        tail = 1 - ((beta + T) / (beta + T + t)) ** (s - 1)
        per_alive = (r + x) * (beta + T) / ((alpha + T) * (s - 1)) * tail
        return self.probability_alive(summary) * per_alive

    def expected_purchases_new_customer(self, t: float | np.ndarray) -> np.ndarray:
        """Expected purchases in (0, t] of a customer just acquired [FH05 eq. 16]."""
        r, alpha, s, beta = self._params
        t = np.asarray(t, dtype=float)
        return r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))


def fit_pareto_nbd(summary: CustomerSummary) -> ParetoNBD:
    """Fit the Pareto/NBD model by maximum likelihood [FH05 eq. 22].

    Raises ValueError when the summary is empty or has no repeat purchase, or the fit does not
    converge.
    """
    scale, unscaled, rows = _prepared_rows(summary)
    total = rows.weight.sum()

    def objective(theta: np.ndarray) -> float:
        value = -_dot(rows.weight, _pnbd_loglik(np.exp(theta), rows)) / total
        return value if np.isfinite(value) else 1e300

    # L-BFGS-B on a finite-difference gradient: ~170 likelihoods where Nelder-Mead took ~900,
    # to the same optimum (parameters within 1e-6, log-likelihood equal)
    res = minimize(
        objective,
        np.zeros(4),
        method="L-BFGS-B",
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9, "eps": 1e-7},
    )
    if not res.success or not np.all(np.abs(res.x) < 30):
        raise ValueError(f"the Pareto/NBD fit did not converge: {res.message}")
    r, alpha, s, beta = np.exp(res.x)
    alpha, beta = alpha / scale, beta / scale
    params = np.array([r, alpha, s, beta])
    ll = _dot(unscaled.weight, _pnbd_loglik(params, unscaled))
    return ParetoNBD(float(r), float(alpha), float(s), float(beta), ll, len(summary))


# -- CLV ------------------------------------------------------------------------------------
def clv(
    purchase_model: BGNBD | ParetoNBD,
    spend_model: GammaGamma,
    summary: CustomerSummary,
    horizon_periods: int,
    discount_rate_per_period: float,
    *,
    period_length: float = 1.0,
) -> np.ndarray:
    """Discounted expected spend of each customer over ``horizon_periods`` periods.

    Each period lasts ``period_length`` summary time units (4.345 weeks = a month); period k's
    expected purchases times the expected spend per purchase is discounted by (1+d)^k, as
    lifetimes' ``customer_lifetime_value`` does.

    Raises ValueError when the horizon is not a positive whole number, the discount rate is
    negative, or the period length is not positive.
    """
    if int(horizon_periods) != horizon_periods or horizon_periods < 1:
        raise ValueError("horizon_periods must be a whole number of periods, at least 1")
    if not discount_rate_per_period >= 0:
        raise ValueError("discount_rate_per_period must be non-negative")
    if not period_length > 0:
        raise ValueError("period_length must be positive")
    # the discounted purchases depend on (x, t_x, T) only: computed once per distinct row
    rows, inverse = _distinct_rows(summary.frequency, summary.recency, summary.T, inverse=True)
    n = len(rows.x)
    distinct = CustomerSummary(np.arange(n), rows.x, rows.t_x, rows.T, np.zeros(n), summary.time_unit)
    discounted = np.zeros(n)
    before = np.zeros(n)
    for k in range(1, int(horizon_periods) + 1):
        upto = purchase_model.conditional_expected_purchases(distinct, k * period_length)
        discounted += (upto - before) / (1 + discount_rate_per_period) ** k
        before = upto
    spend = spend_model.expected_average_spend(summary.frequency, summary.monetary_value)
    return discounted[inverse] * spend

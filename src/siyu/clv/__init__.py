"""Customer-lifetime-value models: a pure library (numpy/scipy in, frozen dataclasses out).

See docs/clv.md. Nothing here touches Django or the database.
"""

from __future__ import annotations

from siyu.clv.models import (
    BGNBD,
    GammaGamma,
    ParetoNBD,
    clv,
    fit_bgnbd,
    fit_gamma_gamma,
    fit_pareto_nbd,
)
from siyu.clv.summary import CustomerSummary, summarize_orders, summary_from_arrays

__all__ = [
    "BGNBD",
    "CustomerSummary",
    "GammaGamma",
    "ParetoNBD",
    "clv",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_pareto_nbd",
    "summarize_orders",
    "summary_from_arrays",
]

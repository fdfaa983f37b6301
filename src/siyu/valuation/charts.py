"""The CLV model page's charts: hold-out quality, predicted CLV and P(alive) histograms.

Built from a stored fit's JSON (``ClvModel.quality`` and ``distribution``) with the analytics
chart building blocks, so they look like every other chart of the console (Altair → Vega-Lite,
drawn by vega-embed). Titles and headers are in the viewer's language.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
from django.utils.translation import gettext as _

from siyu.analytics.charts import Figures, bar_chart


def quality_figures(quality: dict[str, Any]) -> Figures:
    """Mean repeat purchases in the hold-out per calibration frequency: predicted by each model
    and actual, one row per (frequency, series)."""
    series = (("predicted", _("Predicted (BG/NBD)")), ("predicted_pareto_nbd", _("Predicted (Pareto/NBD)")),
              ("actual", _("Actual")))
    rows = [{"frequency": b["frequency"], "series": label, "purchases": b[key], "customers": b["customers"]}
            for b in quality["buckets"] for key, label in series if b["customers"]]
    return Figures(
        title=_("Repeat purchases in the hold-out, per customer"),
        frame=pd.DataFrame(rows, columns=["frequency", "series", "purchases", "customers"]),
        headers={"frequency": _("Repeat purchases in the calibration period"), "series": _("Series"),
                 "purchases": _("Mean repeat purchases in the hold-out"), "customers": _("Customers")},
        note=_("%(days)s days after the calibration end (%(end)s).") % {
            "days": quality["holdout_days"], "end": quality["calibration_end"]},
    )


def quality_chart(figures: Figures) -> alt.Chart:
    order = list(dict.fromkeys(figures.frame["frequency"]))
    series = list(dict.fromkeys(figures.frame["series"]))  # the predictions, then what happened
    return bar_chart(figures, "frequency", "purchases", series="series", sort=order).encode(
        color=alt.Color("series:N", title=figures.headers["series"], sort=series),
        xOffset=alt.XOffset("series:N", sort=series))


def clv_figures(distribution: dict[str, Any]) -> Figures:
    """Customers per predicted-CLV bin; the last bin holds everything above it."""
    hist = distribution["clv"]
    edges, counts = hist["edges"], hist["counts"]
    labels = [f"{_amount(lo)}–{_amount(hi)}" for lo, hi in zip(edges[:-2], edges[1:-1], strict=True)]
    labels.append(f"≥ {_amount(edges[-2])}")
    frame = pd.DataFrame({"bin": labels, "customers": counts})
    return Figures(title=_("Predicted customer value"), frame=frame,
                   headers={"bin": _("Predicted CLV"), "customers": _("Customers")})


def alive_figures(distribution: dict[str, Any]) -> Figures:
    """Customers per tenth of P(alive)."""
    edges, counts = distribution["p_alive"]["edges"], distribution["p_alive"]["counts"]
    labels = [f"{lo:.0%}–{hi:.0%}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    return Figures(title=_("Probability of being active"), frame=pd.DataFrame({"bin": labels, "customers": counts}),
                   headers={"bin": _("P(alive)"), "customers": _("Customers")})


def histogram_chart(figures: Figures) -> alt.Chart:
    order = list(figures.frame["bin"])
    # up to 20 bins: slanted labels stay readable on a narrow card
    return bar_chart(figures, "bin", "customers", sort=order).encode(
        x=alt.X("bin:N", title=figures.headers["bin"], sort=order, axis=alt.Axis(labelAngle=-40)))


def _amount(value: float) -> str:
    """1,250 or 2.5: bin edges without needless decimals."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")

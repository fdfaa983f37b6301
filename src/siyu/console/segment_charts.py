"""Charts of the segment pages, in the analytics chart registry (``siyu.analytics.charts``).

``segment_size``: a segment's size at each refresh; ``segment_persona``: one dimension of a
segment's persona (customers per gender, age band, city, ...). Each is a small frozen
result with a ``kind``, so ``charts.figures_for`` and ``charts.chart_for`` draw them like
any insight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import altair as alt
import pandas as pd
from django.conf import settings
from django.utils.translation import gettext as _

from siyu.analytics import charts
from siyu.analytics.charts import PALETTE, Figures, register_chart
from siyu.console.segment_queries import value_label
from siyu.segments.queries import Share


@dataclass(frozen=True)
class SizeHistory:
    kind: ClassVar[str] = "segment_size"
    refreshes: list[Any]  # SegmentRefresh rows, oldest first


@dataclass(frozen=True)
class PersonaDimension:
    kind: ClassVar[str] = "segment_persona"
    dimension: str
    shares: list[Share]


def message_chart(title: str, text: str) -> alt.Chart:
    frame = pd.DataFrame({"text": [text]})
    return alt.Chart(frame, title=title).mark_text(color="#5b6475", fontSize=13).encode(text="text:N")


# -- size over time -------------------------------------------------------------------------------
def size_figures(result: SizeHistory) -> Figures:
    """One row per refresh: when (on the brand's clock), size, entered, left."""
    tz = ZoneInfo(settings.TIME_ZONE)
    rows = [{"at": r.at.astimezone(tz).replace(tzinfo=None).isoformat(timespec="minutes"), "size": r.size,
             "entered": r.entered, "left": r.left} for r in result.refreshes]
    return Figures(title=_("Size at each refresh"),
                   frame=pd.DataFrame(rows, columns=["at", "size", "entered", "left"], dtype=object),
                   headers={"at": _("Refreshed"), "size": _("Customers"), "entered": _("Entered"),
                            "left": _("Left")})


def size_chart(figures: Figures) -> alt.Chart:
    if figures.frame.empty:
        return message_chart(figures.title, _("Not refreshed yet."))
    h = figures.headers
    # Times are brand-local and read as local by the viewer's browser too: shown as stored.
    return alt.Chart(figures.frame, title=figures.title).mark_line(point=True, color=PALETTE[0]).encode(
        x=alt.X("at:T", title=h["at"], axis=alt.Axis(format="%m-%d %H:%M", labelOverlap=True)),
        y=alt.Y("size:Q", title=h["size"], axis=alt.Axis(format="~s", tickMinStep=1)),
        tooltip=[alt.Tooltip("at:T", title=h["at"], format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("size:Q", title=h["size"], format=","),
                 alt.Tooltip("entered:Q", title=h["entered"], format=","),
                 alt.Tooltip("left:Q", title=h["left"], format=",")])


register_chart("segment_size", size_figures, size_chart)


# -- persona -------------------------------------------------------------------------------------
def dimension_titles() -> dict[str, str]:
    return {"gender": _("Gender"), "age_band": _("Age band"), "city": _("City"),
            "acquisition_channel": _("Acquisition channel"), "value_tier": _("Value tier"),
            "rfm_class": _("RFM class"), "lifecycle_stage": _("Lifecycle stage")}


def share_label(dimension: str, value: str) -> str:
    if value == "(none)":
        return _("Unknown")
    if value == "(other)":
        return _("Other")
    return value_label(dimension, value)


def persona_figures(result: PersonaDimension) -> Figures:
    """Customers and share of the segment per value of one dimension, largest first."""
    rows = [{"value": share_label(result.dimension, s.value), "customers": s.customers, "share": s.share}
            for s in result.shares]
    title = dimension_titles().get(result.dimension, result.dimension)
    return Figures(title=title, frame=pd.DataFrame(rows, columns=["value", "customers", "share"], dtype=object),
                   headers={"value": title, "customers": _("Customers"), "share": _("Share")},
                   percent=frozenset({"share"}))


def persona_chart(figures: Figures) -> alt.Chart:
    if figures.frame.empty:
        return message_chart(figures.title, _("No customers in this segment."))
    h = figures.headers
    # Thin bars: a dimension with one or two values should not fill the card.
    return alt.Chart(figures.frame, title=figures.title).mark_bar(color=PALETTE[0], size=14).encode(
        y=alt.Y("value:N", title=None, sort=list(figures.frame["value"]), axis=alt.Axis(labelLimit=160)),
        x=alt.X("customers:Q", title=h["customers"], axis=alt.Axis(format="~s", tickMinStep=1, tickCount=5)),
        tooltip=[alt.Tooltip("value:N", title=h["value"]),
                 alt.Tooltip("customers:Q", title=h["customers"], format=","),
                 alt.Tooltip("share:Q", title=h["share"], format=".1%")])


register_chart("segment_persona", persona_figures, persona_chart)


def spec_of(result: SizeHistory | PersonaDimension) -> dict[str, Any]:
    """The Vega-Lite spec the page embeds for one of these results."""
    return charts.spec(charts.chart_for(result.kind, charts.figures_for(result)))  # type: ignore[arg-type]

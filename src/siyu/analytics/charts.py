"""Charts for every insight kind, from one registry.

Each kind registers two functions: ``figures(result) -> Figures`` (the numbers
behind the chart: a tidy table with translated headers) and ``chart(figures)
-> alt.Chart``. The Vega-Lite spec built from them is what the console embeds
(with vega-embed from ``vl_convert.javascript_bundle()``, served by siyu itself)
and what the exports render to PNG/PDF with vl-convert; the CSV and Excel exports
write the same figures. Titles, axes and headers are in the language active when
the function runs (the viewer's).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import vl_convert
from django.conf import settings
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _

from siyu.analytics.queries.base import ResultBase

# Rendered exports and the page use the same size; the page widens charts to their card.
EXPORT_WIDTH = 640
HEIGHT = 220
PALETTE = ["#1f6f5c", "#d1861b", "#3b6fb6", "#b42318", "#7a4fb5", "#2c9a80", "#8a6d3b", "#5b6475",
           "#c2549d", "#4c9ed9", "#9aa3b2"]
FONT = ('system-ui, -apple-system, "Segoe UI", Roboto, "PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", '
        '"Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif')


@dataclass(frozen=True)
class Figures:
    """The numbers behind one chart: ``frame`` has stable column keys, ``headers`` their translated names."""

    title: str
    frame: pd.DataFrame
    headers: dict[str, str]
    # Columns shown as percentages (0.25 -> 25.0%) and as money in the table.
    percent: frozenset[str] = frozenset()
    money: frozenset[str] = frozenset()
    note: str = ""
    interval: str = "day"

    def kind_of(self, column: str) -> str:
        return "percent" if column in self.percent else "money" if column in self.money else ""

    def cells(self) -> list[list[tuple[Any, str]]]:
        """``table()`` with each value's display kind, for templates."""
        kinds = [self.kind_of(c) for c in self.headers]
        return [list(zip(row, kinds, strict=True)) for row in self.table()]

    def table(self) -> list[list[Any]]:
        """Rows of plain values in ``headers`` order (dates as ISO text)."""
        cols = list(self.headers)
        return [[_plain(v) for v in row] for row in self.frame[cols].itertuples(index=False, name=None)]


def _plain(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, date)):
        return value.isoformat()[:10]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, float) and pd.isna(value):
        return None
    return value


@dataclass(frozen=True)
class ChartKind:
    figures: Callable[[ResultBase], Figures]
    chart: Callable[[Figures], alt.TopLevelMixin]


CHARTS: dict[str, ChartKind] = {}


def register_chart(kind: str, figures: Callable[[ResultBase], Figures],
                   chart: Callable[[Figures], alt.TopLevelMixin]) -> None:
    """Make ``figures`` and ``chart`` the way results of ``kind`` are shown and exported."""
    CHARTS[kind] = ChartKind(figures=figures, chart=chart)


def figures_for(result: ResultBase) -> Figures:
    """The figures of any registered kind. Raises KeyError for a kind with no chart."""
    return CHARTS[result.kind].figures(result)


def chart_for(kind: str, figures: Figures) -> alt.TopLevelMixin:
    return CHARTS[kind].chart(figures)


def spec(chart: alt.TopLevelMixin, *, width: int | str = "container") -> dict[str, Any]:
    """The Vega-Lite spec (a JSON-ready dict): ``width="container"`` on the page, pixels for exports."""
    return _json_ready(chart.properties(width=width, height=HEIGHT).configure(**CONFIG).to_dict())


def _json_ready(value: dict[str, Any]) -> dict[str, Any]:
    """Dates in the inline data as ISO text (what Vega-Lite parses, and what vl-convert accepts);
    NaN (a missing value in a frame) as null, which JSON has and NaN is not."""
    text = json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, date) else str(v))
    return json.loads(text, parse_constant=lambda _constant: None)


CONFIG: dict[str, Any] = {
    "font": FONT,
    "view": {"stroke": None},
    "range": {"category": PALETTE},
    "axis": {"labelColor": "#5b6475", "titleColor": "#5b6475", "gridColor": "#eef0f4", "domainColor": "#cdd2db",
             "tickColor": "#cdd2db", "titleFontWeight": "normal"},
    "legend": {"orient": "bottom", "labelColor": "#5b6475", "titleColor": "#5b6475", "labelLimit": 180,
               "columns": 4},
    "title": {"anchor": "start", "fontSize": 13, "fontWeight": 600, "color": "#1d2433"},
}


def stacked(charts: Iterable[alt.TopLevelMixin], width: int = EXPORT_WIDTH) -> dict[str, Any]:
    """Several charts one under the other (exports): one spec."""
    parts = [c.properties(width=width, height=HEIGHT) for c in charts]
    return _json_ready(alt.vconcat(*parts, spacing=36).resolve_scale(color="independent").configure(**CONFIG)
                       .to_dict())


def to_png(vl_spec: dict[str, Any], scale: float = 2.0) -> bytes:
    return vl_convert.vegalite_to_png(vl_spec, scale=scale)


def to_svg(vl_spec: dict[str, Any]) -> str:
    return vl_convert.vegalite_to_svg(vl_spec)


def to_pdf(vl_spec: dict[str, Any]) -> bytes:
    return vl_convert.vegalite_to_pdf(vl_spec)


# -- building blocks -----------------------------------------------------------------------
def day_axis(column: str, title: str, interval: str = "day") -> alt.X:
    """A date axis read as UTC days, so no viewer's clock can shift a day (dates are brand-local already)."""
    fmt = {"month": "%Y-%m"}.get(interval, "%m-%d")
    unit = {"month": "utcyearmonth"}.get(interval, "utcyearmonthdate")
    return alt.X(f"{column}:T", timeUnit=unit, title=title, axis=alt.Axis(format=fmt, labelOverlap=True,
                                                                          formatType="time"))


def day_tooltip(column: str, title: str, interval: str = "day") -> alt.Tooltip:
    fmt = {"month": "%Y-%m"}.get(interval, "%Y-%m-%d")
    unit = {"month": "utcyearmonth"}.get(interval, "utcyearmonthdate")
    return alt.Tooltip(f"{column}:T", timeUnit=unit, title=title, format=fmt)


def value_format(figures: Figures, column: str) -> str:
    """The tooltip format of a column: 12.5%, 1,234.50 or 1,234."""
    if column in figures.percent:
        return ".1%"
    if column in figures.money:
        return ",.2f"
    return ",.4~f"


def axis_format(figures: Figures, column: str) -> str:
    """Axis labels stay short: 25%, 1.5k."""
    return ".0%" if column in figures.percent else "~s"


def line_chart(figures: Figures, x: str, y: str, *, series: str | None = None,
               interval: str = "day") -> alt.Chart:
    """One line per ``series`` value (or one line) over days/weeks/months."""
    fmt = value_format(figures, y)
    encoding: dict[str, Any] = {
        "x": day_axis(x, figures.headers[x], interval),
        "y": alt.Y(f"{y}:Q", title=figures.headers[y], axis=alt.Axis(format=axis_format(figures, y))),
        "tooltip": [day_tooltip(x, figures.headers[x], interval),
                    *([alt.Tooltip(f"{series}:N", title=figures.headers[series])] if series else []),
                    alt.Tooltip(f"{y}:Q", title=figures.headers[y], format=fmt)],
    }
    if series:
        encoding["color"] = alt.Color(f"{series}:N", title=figures.headers[series])
    mark = {"point": len(figures.frame) <= 62, **({} if series else {"color": PALETTE[0]})}
    return alt.Chart(figures.frame, title=figures.title).mark_line(**mark).encode(**encoding)


def bar_chart(figures: Figures, category: str, y: str, *, series: str | None = None,
              sort: list[str] | None = None) -> alt.Chart:
    """Bars per category (in ``sort`` order), grouped by ``series`` when given."""
    fmt = value_format(figures, y)
    encoding: dict[str, Any] = {
        "x": alt.X(f"{category}:N", title=figures.headers[category], sort=sort,
                   axis=alt.Axis(labelAngle=0, labelLimit=120)),
        "y": alt.Y(f"{y}:Q", title=figures.headers[y], axis=alt.Axis(format=axis_format(figures, y))),
        "tooltip": [alt.Tooltip(f"{category}:N", title=figures.headers[category]),
                    *([alt.Tooltip(f"{series}:N", title=figures.headers[series])] if series else []),
                    alt.Tooltip(f"{y}:Q", title=figures.headers[y], format=fmt)],
    }
    if series:
        encoding["color"] = alt.Color(f"{series}:N", title=figures.headers[series])
        encoding["xOffset"] = alt.XOffset(f"{series}:N")
    else:
        encoding["color"] = alt.value(PALETTE[0])
    return alt.Chart(figures.frame, title=figures.title).mark_bar().encode(**encoding)


def empty_chart(title: str) -> alt.Chart:
    """A chart that says there is nothing to show (an empty range, no data yet)."""
    frame = pd.DataFrame({"text": [_("No data in this date range.")]})
    return alt.Chart(frame, title=title).mark_text(color="#5b6475", fontSize=13).encode(text="text:N")


def breakdown_header() -> str:
    return _("Breakdown")


# -- the vega-embed bundle ---------------------------------------------------------------------
_bundle_lock = threading.Lock()


def bundle_name() -> str:
    """A file name that changes with the bundled library versions (so it can be cached forever)."""
    versions = f"{vl_convert.get_vega_version()}-{vl_convert.get_vegalite_versions()[-1]}-" \
               f"{vl_convert.get_vega_embed_version()}"
    return f"vega-{hashlib.sha256(versions.encode()).hexdigest()[:12]}.js"


def bundle_path() -> Path:
    """Vega, Vega-Lite and vega-embed in one script, generated by vl-convert once into the data folder."""
    path = Path(settings.DATA_DIR) / "cache" / bundle_name()
    if path.exists():
        return path
    with _bundle_lock:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(vl_convert.javascript_bundle(), encoding="utf-8")
            tmp.replace(path)
    return path


# -- per kind ------------------------------------------------------------------------------------
# Each kind: ``<kind>_figures(result) -> Figures`` and ``<kind>_chart(figures)``, registered at the end.
def _frame(rows: list[dict[str, Any]], columns: Iterable[str]) -> pd.DataFrame:
    """Rows as given (object columns: a count stays an int next to a missing value, not 3.0)."""
    return pd.DataFrame(rows, columns=list(columns), dtype=object)


def series_label(value: str | None) -> str:
    """A breakdown value as shown: "" (no breakdown) reads "All"."""
    return _("All") if value in ("", None) else str(value)


def retention_figures(result: Any) -> Figures:
    """Every cohort's cells that have started: cohort, size, period, customers, rate."""
    rows = [{"breakdown": series_label(s.breakdown), "cohort": c.cohort, "size": c.size, "period": cell.period,
             "customers": cell.customers, "rate": cell.rate}
            for s in result.series for c in s.cohorts for cell in c.cells if cell.customers is not None]
    headers = {"breakdown": breakdown_header(), "cohort": _("Cohort"), "size": _("Cohort size"),
               "period": _("Period"), "customers": _("Customers returning"), "rate": _("Retention")}
    if all(s.breakdown == "" for s in result.series):
        headers.pop("breakdown")
    interval = {"day": _("days"), "week": _("weeks"), "month": _("months")}[result.interval]
    return Figures(title=_("Retention by cohort (%(interval)s)") % {"interval": interval},
                   frame=_frame(rows, ["breakdown", "cohort", "size", "period", "customers", "rate"]),
                   headers=headers, percent=frozenset({"rate"}))


def retention_chart(figures: Figures) -> alt.Chart:
    """A cohort × period heatmap; with a breakdown, the average rate per period, one line per value."""
    frame = figures.frame
    if frame.empty:
        return empty_chart(figures.title)
    if "breakdown" in figures.headers:
        pooled = frame.assign(weighted=frame["rate"].astype(float).fillna(0) * frame["size"].astype(float),
                              size=frame["size"].astype(float))
        pooled = pooled.groupby(["breakdown", "period"], as_index=False)[["weighted", "size"]].sum()
        pooled["rate"] = (pooled["weighted"] / pooled["size"].where(pooled["size"] > 0)).round(4)
        shown = Figures(figures.title, pooled, {"breakdown": figures.headers["breakdown"],
                                                "period": figures.headers["period"],
                                                "rate": figures.headers["rate"]}, percent=frozenset({"rate"}))
        return alt.Chart(pooled, title=figures.title).mark_line(point=True).encode(
            x=alt.X("period:O", title=shown.headers["period"], axis=alt.Axis(labelAngle=0)),
            y=alt.Y("rate:Q", title=shown.headers["rate"], axis=alt.Axis(format="%")),
            color=alt.Color("breakdown:N", title=shown.headers["breakdown"]),
            tooltip=[alt.Tooltip("breakdown:N", title=shown.headers["breakdown"]),
                     alt.Tooltip("period:O", title=shown.headers["period"]),
                     alt.Tooltip("rate:Q", title=shown.headers["rate"], format=".1%")])
    data = frame.assign(cohort=frame["cohort"].map(lambda d: d.isoformat()))
    base = alt.Chart(data, title=figures.title).encode(
        x=alt.X("period:O", title=figures.headers["period"], axis=alt.Axis(labelAngle=0)),
        y=alt.Y("cohort:O", title=figures.headers["cohort"]))
    heat = base.mark_rect().encode(
        color=alt.Color("rate:Q", title=figures.headers["rate"], scale=alt.Scale(scheme="greens", domain=[0, 1]),
                        legend=alt.Legend(format="%")),
        tooltip=[alt.Tooltip("cohort:O", title=figures.headers["cohort"]),
                 alt.Tooltip("size:Q", title=figures.headers["size"]),
                 alt.Tooltip("period:O", title=figures.headers["period"]),
                 alt.Tooltip("customers:Q", title=figures.headers["customers"]),
                 alt.Tooltip("rate:Q", title=figures.headers["rate"], format=".1%")])
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("rate:Q", format=".0%"),
        color=alt.condition("datum.rate > 0.5", alt.value("white"), alt.value("#1d2433")))
    return heat + text


register_chart("retention", retention_figures, retention_chart)


def repurchase_figures(result: Any) -> Figures:
    """Per breakdown value when there is one, else per cohort: buyers, repeat buyers, rate, median days."""
    if result.by_breakdown:
        rows = [{"group": series_label(g.breakdown), "buyers": g.buyers, "repeat_buyers": g.repeat_buyers,
                 "repurchase_rate": g.repurchase_rate, "median_days": g.days_to_second.median}
                for g in result.by_breakdown]
        first = breakdown_header()
    else:
        rows = [{"group": c.cohort.isoformat()[: 7 if result.interval == "month" else 10], "buyers": c.buyers,
                 "repeat_buyers": c.repeat_buyers, "repurchase_rate": c.repurchase_rate,
                 "median_days": c.median_days_to_second} for c in result.cohorts]
        first = _("Cohort (first order)")
    window = (_("Repurchase rate within %(days)s days") % {"days": result.within_days} if result.within_days
              else _("Repurchase rate"))
    overall = result.overall
    note = _("Overall: %(repeat)s of %(buyers)s first-time buyers ordered again (%(rate).1f%%).") % {
        "repeat": overall.repeat_buyers, "buyers": overall.buyers, "rate": overall.repurchase_rate * 100}
    return Figures(title=window, frame=_frame(rows, ["group", "buyers", "repeat_buyers", "repurchase_rate",
                                                     "median_days"]),
                   headers={"group": first, "buyers": _("First-time buyers"), "repeat_buyers": _("Repeat buyers"),
                            "repurchase_rate": _("Repurchase rate"), "median_days": _("Median days to 2nd order")},
                   percent=frozenset({"repurchase_rate"}), note=note)


def repurchase_chart(figures: Figures) -> alt.Chart:
    if figures.frame.empty:
        return empty_chart(figures.title)
    return bar_chart(figures, "group", "repurchase_rate", sort=list(figures.frame["group"]))


register_chart("repurchase", repurchase_figures, repurchase_chart)


def line_name(label: str, breakdown: str | None) -> str:
    return label if breakdown in (None, "") else f"{label} · {breakdown}"


def trends_figures(result: Any) -> Figures:
    """One row per series (× breakdown value) and interval: the series' value."""
    rows = [{"series": line_name(line.label, line.breakdown), "date": point.date, "value": point.value}
            for line in result.series for point in line.points]
    every = {"day": _("per day"), "week": _("per week"), "month": _("per month")}[result.interval]
    money = frozenset({"value"}) if all(line.property == "revenue" for line in result.series) else frozenset()
    return Figures(title=_("Trends %(every)s") % {"every": every},
                   frame=_frame(rows, ["series", "date", "value"]),
                   headers={"series": _("Series"), "date": _("Date"), "value": _("Value")},
                   money=money, interval=result.interval)


def trends_chart(figures: Figures) -> alt.Chart:
    if figures.frame.empty:
        return empty_chart(figures.title)
    many = figures.frame["series"].nunique() > 1
    return line_chart(figures, "date", "value", series="series" if many else None, interval=figures.interval)


register_chart("trends", trends_figures, trends_chart)


def ltv_figures(result: Any) -> Figures:
    """Cumulative revenue per customer at each period after acquisition: overall, then per breakdown value."""
    groups = [result.overall, *result.by_breakdown]
    rows = [{"group": series_label(g.breakdown), "customers": g.customers, "period": k, "ltv": value}
            for g in groups for k, value in enumerate(g.ltv) if value is not None]
    unit = {"week": _("weeks"), "month": _("months")}.get(result.interval, result.interval)
    return Figures(title=_("Lifetime value per customer (%(unit)s after acquisition)") % {"unit": unit},
                   frame=_frame(rows, ["group", "customers", "period", "ltv"]),
                   headers={"group": breakdown_header(), "customers": _("Customers"), "period": _("Period"),
                            "ltv": _("Cumulative revenue per customer")},
                   money=frozenset({"ltv"}))


def period_lines(figures: Figures, y: str, series: str) -> alt.Chart:
    """One line per ``series`` value over periods 0, 1, 2, ... after the start."""
    fmt = value_format(figures, y)
    return alt.Chart(figures.frame, title=figures.title).mark_line(point=True).encode(
        x=alt.X("period:O", title=figures.headers["period"], axis=alt.Axis(labelAngle=0)),
        y=alt.Y(f"{y}:Q", title=figures.headers[y], axis=alt.Axis(format=axis_format(figures, y))),
        color=alt.Color(f"{series}:N", title=figures.headers[series]),
        tooltip=[alt.Tooltip(f"{series}:N", title=figures.headers[series]),
                 alt.Tooltip("period:O", title=figures.headers["period"]),
                 alt.Tooltip(f"{y}:Q", title=figures.headers[y], format=fmt)])


def ltv_chart(figures: Figures) -> alt.Chart:
    if figures.frame.empty:
        return empty_chart(figures.title)
    return period_lines(figures, "ltv", "group")


register_chart("ltv", ltv_figures, ltv_chart)


def funnel_figures(result: Any) -> Figures:
    """One row per step (× breakdown value): customers reaching it, conversion, drop-off, median time."""
    rows = [{"breakdown": series_label(s.breakdown), "step": f"{st.step}. {st.label}", "count": st.count,
             "from_first": st.conversion_from_first, "from_previous": st.conversion_from_previous,
             "dropped": st.dropped,
             "median_hours": None if st.median_seconds is None else round(st.median_seconds / 3600, 2)}
            for s in result.series for st in s.steps]
    headers = {"breakdown": breakdown_header(), "step": _("Step"), "count": _("Customers"),
               "from_first": _("Conversion from step 1"), "from_previous": _("Conversion from previous step"),
               "dropped": _("Dropped out"), "median_hours": _("Median hours from previous step")}
    if all(s.breakdown == "" for s in result.series):
        headers.pop("breakdown")
    unit = {"day": _("days"), "hour": _("hours"), "minute": _("minutes")}.get(result.window_unit, result.window_unit)
    return Figures(title=_("Funnel, within %(window)s %(unit)s") % {"window": result.window, "unit": unit},
                   frame=_frame(rows, ["breakdown", "step", "count", "from_first", "from_previous", "dropped",
                                       "median_hours"]),
                   headers=headers, percent=frozenset({"from_first", "from_previous"}))


def funnel_chart(figures: Figures) -> alt.Chart:
    if figures.frame.empty:
        return empty_chart(figures.title)
    steps = list(dict.fromkeys(figures.frame["step"]))
    grouped = "breakdown" in figures.headers
    bars = bar_chart(figures, "step", "count", series="breakdown" if grouped else None, sort=steps)
    bars = bars.encode(tooltip=[alt.Tooltip("step:N", title=figures.headers["step"]),
                                *([alt.Tooltip("breakdown:N", title=figures.headers["breakdown"])] if grouped else []),
                                alt.Tooltip("count:Q", title=figures.headers["count"], format=","),
                                alt.Tooltip("from_first:Q", title=figures.headers["from_first"], format=".1%"),
                                alt.Tooltip("dropped:Q", title=figures.headers["dropped"], format=",")])
    if grouped:
        return bars
    labels = alt.Chart(figures.frame).mark_text(dy=-7, fontSize=11, color="#1d2433").encode(
        x=alt.X("step:N", sort=steps), y="count:Q", text=alt.Text("from_first:Q", format=".1%"))
    return alt.layer(bars, labels, title=figures.title)


register_chart("funnel", funnel_figures, funnel_chart)


def funnel_drops(result: Any) -> list[tuple[int, str, int]]:
    """(step number, step label, customers who dropped there, all breakdown values together) for steps 2+."""
    if not result.series:
        return []
    first = result.series[0].steps
    return [(st.step, st.label, sum(s.steps[i].dropped for s in result.series))
            for i, st in enumerate(first) if st.step > 1]


def funnel_step_name(result: Any, step: int) -> str:
    for st in (result.series[0].steps if result.series else []):
        if st.step == step:
            return st.label
    return str(step)


def rfm_figures(result: Any) -> Figures:
    """One row per class of the scheme: customers, share, revenue and the class's average R, F and M."""
    chinese = (get_language() or "").startswith("zh")
    rows = [{"class": c.label_zh if chinese else c.label_en, "customers": c.customers, "share": c.share,
             "revenue": c.revenue, "recency": c.avg_recency_days, "frequency": c.avg_frequency,
             "monetary": c.avg_monetary} for c in result.classes]
    note = _("%(customers)s buyers scored as of %(day)s; revenue %(revenue)s.") % {
        "customers": f"{result.total_customers:,}", "day": result.as_of.isoformat(), "revenue": f"{result.revenue:,.2f}"}
    return Figures(title=_("RFM classes"),
                   frame=_frame(rows, ["class", "customers", "share", "revenue", "recency", "frequency", "monetary"]),
                   headers={"class": _("Class"), "customers": _("Customers"), "share": _("Share"),
                            "revenue": _("Revenue"), "recency": _("Average days since last order"),
                            "frequency": _("Average orders"), "monetary": _("Average spend")},
                   percent=frozenset({"share"}), money=frozenset({"revenue", "monetary"}), note=note)


def rfm_chart(figures: Figures) -> alt.Chart:
    """Customers per class, largest classes easy to compare (horizontal bars in the scheme's order)."""
    if figures.frame.empty:
        return empty_chart(figures.title)
    order = list(figures.frame["class"])
    return alt.Chart(figures.frame, title=figures.title).mark_bar(color=PALETTE[0]).encode(
        y=alt.Y("class:N", title=None, sort=order, axis=alt.Axis(labelLimit=200)),
        x=alt.X("customers:Q", title=figures.headers["customers"]),
        tooltip=[alt.Tooltip("class:N", title=figures.headers["class"]),
                 alt.Tooltip("customers:Q", title=figures.headers["customers"], format=","),
                 alt.Tooltip("share:Q", title=figures.headers["share"], format=".1%"),
                 alt.Tooltip("revenue:Q", title=figures.headers["revenue"], format=",.2f")])


register_chart("rfm", rfm_figures, rfm_chart)

LIFECYCLE_STATUSES = ("new", "active", "reactivated", "idle", "silent", "churned", "newly_churned")


def lifecycle_figures(result: Any) -> Figures:
    """One row per interval (× breakdown value): customers in each status."""
    rows = [{"breakdown": series_label(line.breakdown), "date": p.date,
             **{s: getattr(p, s) for s in LIFECYCLE_STATUSES}, "customers": p.customers}
            for line in result.series for p in line.points]
    headers = {"breakdown": breakdown_header(), "date": _("Date"), "new": _("New"), "active": _("Active"),
               "reactivated": _("Reactivated"), "idle": _("Idle"), "silent": _("Silent"), "churned": _("Churned"),
               "newly_churned": _("Newly churned"), "customers": _("Customers")}
    if all(line.breakdown in (None, "") for line in result.series):
        headers.pop("breakdown")
    every = {"day": _("per day"), "week": _("per week"), "month": _("per month")}[result.interval]
    return Figures(title=_("Lifecycle %(every)s") % {"every": every},
                   frame=_frame(rows, ["breakdown", "date", *LIFECYCLE_STATUSES, "customers"]),
                   headers=headers, interval=result.interval)


def lifecycle_chart(figures: Figures) -> alt.Chart:
    """Stacked bars: new, active and reactivated above the axis, newly churned below it. With a breakdown,
    one line per value of the customers active in the interval."""
    frame = figures.frame
    if frame.empty:
        return empty_chart(figures.title)
    if "breakdown" in figures.headers:
        active = frame.assign(value=frame["new"] + frame["active"] + frame["reactivated"])
        shown = Figures(figures.title, active, {"date": figures.headers["date"],
                                                "breakdown": figures.headers["breakdown"],
                                                "value": _("Active customers")}, interval=figures.interval)
        return line_chart(shown, "date", "value", series="breakdown", interval=figures.interval)
    shown_statuses = ("new", "active", "reactivated", "newly_churned")
    long = frame[["date", *shown_statuses]].melt(id_vars=["date"], var_name="key", value_name="customers")
    long["customers"] = long["customers"].where(long["key"] != "newly_churned", -long["customers"])
    long["status"] = long["key"].map(figures.headers)
    order = [figures.headers[s] for s in shown_statuses]
    return alt.Chart(long, title=figures.title).mark_bar().encode(
        x=day_axis("date", figures.headers["date"], figures.interval),
        y=alt.Y("customers:Q", title=figures.headers["customers"], stack=True),
        color=alt.Color("status:N", title=None, sort=order,
                        scale=alt.Scale(domain=order, range=[PALETTE[0], PALETTE[5], PALETTE[2], PALETTE[3]])),
        order=alt.Order("order:Q"),
        tooltip=[day_tooltip("date", figures.headers["date"], figures.interval),
                 alt.Tooltip("status:N", title=_("Status")), alt.Tooltip("customers:Q", title=_("Customers"))],
    ).transform_calculate(order=f"indexof({json.dumps(order, ensure_ascii=False)}, datum.status)")


register_chart("lifecycle", lifecycle_figures, lifecycle_chart)


# -- the Overview dashboard -------------------------------------------------------------------------
# The dashboard's eight cards: title, the overview metrics whose figures the card shows, and the
# metrics it charts (one line each; with a breakdown only the first, one line per value).
@dataclass(frozen=True)
class CardSpec:
    title: Any
    metrics: tuple[str, ...]
    charted: tuple[str, ...]


OVERVIEW_CARDS: dict[str, CardSpec] = {
    "new_customers": CardSpec(gettext_lazy("New customers"), ("new_customers",), ("new_customers",)),
    "active_customers": CardSpec(gettext_lazy("Active customers and stickiness"),
                                 ("dau", "wau", "mau", "stickiness"), ("dau", "wau", "mau")),
    "orders": CardSpec(gettext_lazy("Orders"), ("orders",), ("orders",)),
    "gmv": CardSpec(gettext_lazy("GMV"), ("gmv",), ("gmv",)),
    "aov": CardSpec(gettext_lazy("Average order value"), ("aov",), ("aov",)),
    "paying_customers": CardSpec(gettext_lazy("Paying customers and paid conversion"),
                                 ("paying_customers", "paid_conversion"), ("paying_customers",)),
    "repurchase_rate": CardSpec(gettext_lazy("Repurchase rate"), ("repurchase_rate",), ("repurchase_rate",)),
    "d1_retention": CardSpec(gettext_lazy("Next-day retention (D1)"), ("d1_retention",), ("d1_retention",)),
}
OVERVIEW_METRICS: dict[str, Any] = {key: card.title for key, card in OVERVIEW_CARDS.items()}
UNITS = {"count": "", "money": "money", "ratio": "percent"}


@dataclass(frozen=True)
class Figure:
    """A headline number with the previous period's and the change (a fraction: 0.25 = +25%)."""

    key: str
    label: str
    value: float | int | None
    previous: float | int | None
    change: float | None
    unit: str = ""  # "", "money" or "percent"


@dataclass(frozen=True)
class Card:
    figures: list[Figure]
    table: Figures
    chart: alt.TopLevelMixin


def metric_label(metric: Any) -> str:
    return metric.label_zh if (get_language() or "").startswith("zh") else metric.label_en


def overview_card(result: Any, card_key: str) -> Card:
    """One dashboard card from an overview result: its figures (everyone), its series and its chart."""
    card = OVERVIEW_CARDS[card_key]
    metrics = {m.key: m for m in result.metrics}
    shown = [metrics[k] for k in card.metrics if k in metrics]
    figures = [Figure(key=m.key, label=metric_label(m), value=m.total, previous=m.previous,
                      change=None if m.change_pct is None else m.change_pct / 100, unit=UNITS[m.unit])
               for m in shown]
    table = overview_series(str(card.title), [metrics[k] for k in card.charted if k in metrics])
    return Card(figures=figures, table=table, chart=overview_chart(table))


def overview_series(title: str, charted: list[Any]) -> Figures:
    """Daily values of the charted metrics: everyone, or one row per breakdown value when there is one."""
    broken = any(m.by_breakdown for m in charted)
    if broken:
        charted = charted[:1]
    rows = [{"metric": metric_label(m), "breakdown": series_label(p.breakdown), "date": p.date, "value": p.value}
            for m in charted for p in m.series if (p.breakdown is not None) == broken]
    headers = {"metric": _("Metric"), "breakdown": breakdown_header(), "date": _("Date"), "value": _("Value")}
    if not broken:
        headers.pop("breakdown")
    unit = UNITS[charted[0].unit] if charted else ""
    return Figures(title=title, frame=_frame(rows, ["metric", "breakdown", "date", "value"]), headers=headers,
                   percent=frozenset({"value"}) if unit == "percent" else frozenset(),
                   money=frozenset({"value"}) if unit == "money" else frozenset())


def overview_chart(table: Figures) -> alt.Chart:
    if table.frame.empty:
        return empty_chart(table.title)
    if "breakdown" in table.headers:
        series = "breakdown"
    elif table.frame["metric"].nunique() > 1:
        series = "metric"
    else:
        series = None
    chart = line_chart(table, "date", "value", series=series)
    # The card's heading names the metric: no chart title, no y-axis title.
    return chart.encode(y=alt.Y("value:Q", title=None, axis=alt.Axis(format=axis_format(table, "value")))
                        ).properties(title="")


def overview_summary(result: Any) -> Figures:
    """Every overview metric's total, previous-period total and change (exports)."""
    rows = [{"metric": metric_label(m), "total": m.total, "previous": m.previous,
             "change": None if m.change_pct is None else round(m.change_pct / 100, 4)} for m in result.metrics]
    title = _("%(start)s to %(end)s against %(prev_start)s to %(prev_end)s") % {
        "start": result.date_from, "end": result.date_to, "prev_start": result.previous_from,
        "prev_end": result.previous_to}
    return Figures(title=title, frame=_frame(rows, ["metric", "total", "previous", "change"]),
                   headers={"metric": _("Metric"), "total": _("This period"), "previous": _("Previous period"),
                            "change": _("Change")}, percent=frozenset({"change"}))

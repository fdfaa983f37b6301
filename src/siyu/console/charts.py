"""Server-side SVG bar charts: geometry here, markup in ``console/_bar_chart.html``.

A placeholder until a charting library arrives; it needs no JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    anchor: str = "middle"


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    plot_height: int
    bars: list[Bar]
    ticks: list[Tick]
    max_value: int
    total: int


def bar_chart(series: list[tuple[date, int]], width: int = 720, plot_height: int = 140) -> BarChart:
    """One bar per day, scaled to the largest value, with three date ticks below."""
    slot = width / max(len(series), 1)
    gap = min(max(slot * 0.2, 1.0), 6.0)
    top = max((v for _d, v in series), default=0)
    bars = []
    for i, (day, value) in enumerate(series):
        h = round(plot_height * value / top, 1) if top else 0.0
        bars.append(Bar(x=round(i * slot + gap / 2, 1), y=round(plot_height - h, 1),
                        width=round(slot - gap, 1), height=h, label=day.isoformat(), value=value))
    picks = sorted({0, len(series) // 2, len(series) - 1}) if series else []
    # The first and last labels hang inwards so the chart's edges do not clip them.
    ticks = [Tick(x=0.0 if i == 0 else float(width) if i == len(series) - 1 else round(i * slot + slot / 2, 1),
                  label=series[i][0].strftime("%m-%d"),
                  anchor="start" if i == 0 else "end" if i == len(series) - 1 else "middle")
             for i in picks]
    return BarChart(width=width, height=plot_height + 20, plot_height=plot_height, bars=bars,
                    ticks=ticks, max_value=top, total=sum(v for _d, v in series))

"""Dashboard downloads: the figures behind each chart (CSV, Excel) and the charts themselves (PNG, PDF).

Every section is one insight (or one Overview metric): its ``Figures`` and its
chart, both from ``charts`` — the same definitions the page draws. Exports hold
aggregates only; a funnel's list of people who dropped out never enters them.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import altair as alt
from django.utils.translation import gettext as _
from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from siyu.analytics import charts
from siyu.analytics.queries.base import ResultBase

SHEET_NAME_MAX = 31
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")


@dataclass(frozen=True)
class Section:
    """One chart of an export and the numbers behind it."""

    name: str
    figures: charts.Figures
    chart: alt.TopLevelMixin | None  # None: figures only (left out of the images)


def section(name: str, result: ResultBase) -> Section:
    figures = charts.figures_for(result)
    return Section(name=name, figures=figures, chart=charts.chart_for(result.kind, figures))


def dashboard_sections(items: list[tuple[str, dict[str, Any]]],
                       run: Callable[[dict[str, Any]], ResultBase]) -> list[Section]:
    """One section per (insight name, query body), in dashboard order. Raises QueryError from ``run``."""
    return [section(name, run(body)) for name, body in items]


def overview_sections(result: ResultBase) -> list[Section]:
    """A summary of every metric (no chart), then one section per dashboard card."""
    summary = charts.overview_summary(result)
    out = [Section(name=str(_("Summary")), figures=summary, chart=None)]
    for key, title in charts.OVERVIEW_METRICS.items():
        card = charts.overview_card(result, key)
        out.append(Section(name=str(title), figures=card.table, chart=card.chart.properties(title=str(title))))
    return out


# -- figures ------------------------------------------------------------------------------------
def to_csv(sections: list[Section]) -> bytes:
    """Each section as a block: its name, a header row, its rows, then a blank line. UTF-8 with a BOM
    so that spreadsheet programs read Chinese text correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for part in sections:
        writer.writerow([part.name])
        writer.writerow(list(part.figures.headers.values()))
        writer.writerows([["" if v is None else v for v in row] for row in part.figures.table()])
        writer.writerow([])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def sheet_names(names: list[str]) -> list[str]:
    """Excel sheet names: at most 31 characters, none of []:*?/\\, unique (a number added when needed)."""
    out: list[str] = []
    for name in names:
        base = _SHEET_FORBIDDEN.sub("_", name).strip("'") or "Sheet"
        candidate, n = base[:SHEET_NAME_MAX], 1
        while candidate.lower() in {o.lower() for o in out}:
            n += 1
            suffix = f" ({n})"
            candidate = base[: SHEET_NAME_MAX - len(suffix)] + suffix
        out.append(candidate)
    return out


def to_xlsx(sections: list[Section]) -> bytes:
    """One sheet per section: a bold header row, then the figures (percentages and money formatted)."""
    book = Workbook()
    book.remove(book.active)
    for name, part in zip(sheet_names([s.name for s in sections]), sections, strict=True):
        sheet = book.create_sheet(title=name)
        sheet.append(list(part.figures.headers.values()))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in part.figures.table():
            sheet.append(row)
        for index, column in enumerate(part.figures.headers, start=1):
            number_format = {"percent": "0.0%", "money": "#,##0.00"}.get(part.figures.kind_of(column))
            letter = get_column_letter(index)
            sheet.column_dimensions[letter].width = max(12, len(part.figures.headers[column]) + 4)
            if number_format:
                for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                    cell.number_format = number_format
        sheet.freeze_panes = "A2"
    if not sections:
        book.create_sheet(title="Sheet")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# -- images --------------------------------------------------------------------------------------
def stacked_spec(sections: list[Section]) -> dict[str, Any]:
    """Every section's chart, one under the other, in one Vega-Lite spec."""
    drawn = [s.chart for s in sections if s.chart is not None]
    if not drawn:
        return charts.spec(charts.empty_chart(""), width=charts.EXPORT_WIDTH)
    return charts.stacked(drawn)


def to_png(sections: list[Section]) -> bytes:
    return charts.to_png(stacked_spec(sections))


def to_pdf(sections: list[Section]) -> bytes:
    return charts.to_pdf(stacked_spec(sections))


# format -> (content type, writer)
FORMATS: dict[str, Callable[[list[Section]], tuple[str, bytes]]] = {
    "csv": lambda s: ("text/csv; charset=utf-8", to_csv(s)),
    "xlsx": lambda s: ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", to_xlsx(s)),
    "png": lambda s: ("image/png", to_png(s)),
    "pdf": lambda s: ("application/pdf", to_pdf(s)),
}

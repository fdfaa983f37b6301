"""Reading CSV and Excel files into a header and numbered rows.

A reader never interprets values: it hands over cells as the file holds them
(strings for CSV; strings, numbers and datetimes for Excel) together with the
spreadsheet's row number (the header is row 1) and anything that makes a row
unreadable as it stands (a wrong number of cells, a merged cell).
"""

from __future__ import annotations

import codecs
import csv
import io
import posixpath
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from django.utils.translation import gettext as _

from siyu.imports.errors import ImportFileError

CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
DELIMITERS = (",", ";", "\t")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary .xls format
_MERGE_RE = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?mergeCell\s[^>]*?\bref\s*=\s*[\"']([A-Z]+[0-9]+(?::[A-Z]+[0-9]+)?)[\"']")


@dataclass(frozen=True)
class SheetRow:
    """One data row: its cells (one per header column) and why it cannot be read, if so."""

    number: int
    cells: list[Any]
    problems: list[tuple[int | None, str]] = field(default_factory=list)  # (column index, reason)


@dataclass
class Table:
    """A file's header and an iterator over its data rows (read once)."""

    headers: list[str]
    rows: Iterator[SheetRow]
    format: str
    detail: dict[str, str] = field(default_factory=dict)  # encoding, delimiter, sheet
    close: Callable[[], None] = lambda: None  # releases the open workbook, if any


def read_table(path: Path, sheet: str | None = None) -> Table:
    """Open a CSV or Excel file; raises ImportFileError when it cannot be read at all."""
    with path.open("rb") as fh:
        magic = fh.read(4)
    suffix = path.suffix.lower()
    if magic == _OLE_MAGIC or suffix == ".xls":
        raise ImportFileError(_("old Excel .xls files are not supported: save the sheet as .xlsx or .csv"))
    if suffix in EXCEL_SUFFIXES or (magic == _ZIP_MAGIC and suffix not in CSV_SUFFIXES):
        return read_xlsx(path, sheet)
    if sheet:
        raise ImportFileError(_("a sheet can be chosen in Excel files only; this file is read as CSV"))
    return read_csv(path)


# -- CSV ---------------------------------------------------------------------
def decode(data: bytes) -> tuple[str, str]:
    """Text and encoding name: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030 (GBK)."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return _decode_as(data, encoding), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # GB18030 is a superset of GBK and GB2312, the encodings of most Chinese POS exports.
    return _decode_as(data, "gb18030"), "gb18030"


def _decode_as(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            _("the file is not valid text in %(encoding)s (bad bytes on line %(line)d); save it as UTF-8 CSV")
            % {"encoding": encoding, "line": line}
        ) from None


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header line most: comma, semicolon or tab."""
    first_line = text.split("\n", 1)[0]
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(path: Path) -> Table:
    text, encoding = decode(path.read_bytes())
    if not text.strip():
        raise ImportFileError(_("the file is empty"))
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        headers = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise ImportFileError(_("the header row cannot be read as CSV: %(error)s") % {"error": exc}) from None
    names = {",": "comma", ";": "semicolon", "\t": "tab"}
    return Table(headers, _csv_rows(reader, len(headers)), "csv",
                 {"encoding": encoding, "delimiter": names[delimiter]})


def _csv_rows(reader: Any, width: int) -> Iterator[SheetRow]:
    number = 1
    while True:
        number += 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield SheetRow(number, [], [(None, _csv_error(exc))])
            continue
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != width:
            yield SheetRow(number, [], [(None, _width_problem(cells, width))])
            continue
        yield SheetRow(number, cells)


def _csv_error(exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return _("a quote opened in this row is never closed; the rows after it could not be read")
    return _("cannot be read as CSV: %(error)s") % {"error": exc}


def _width_problem(cells: list[str], width: int) -> str:
    reason = _("has %(cells)d cells but the header has %(width)d columns") % {"cells": len(cells), "width": width}
    if any("\n" in c for c in cells):
        reason += " " + _("(a quote left open may have joined several lines into this row)")
    return reason


# -- Excel -------------------------------------------------------------------
def read_xlsx(path: Path, sheet: str | None) -> Table:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise ImportFileError(_("cannot open the Excel file: %(error)s") % {"error": exc}) from None
    names = workbook.sheetnames
    name = sheet or names[0]
    if name not in names:
        workbook.close()
        raise ImportFileError(_("the workbook has no sheet %(sheet)r; its sheets are: %(names)s")
                              % {"sheet": name, "names": ", ".join(names)})
    try:
        merged = merged_ranges(path, name)
    except (KeyError, ElementTree.ParseError, zipfile.BadZipFile) as exc:
        workbook.close()
        raise ImportFileError(_("cannot read the sheet layout: %(error)s") % {"error": exc}) from None
    worksheet = workbook[name]
    worksheet.reset_dimensions()  # exporters often write a wrong <dimension>; read every row
    rows = worksheet.iter_rows(values_only=True)
    headers = [_header_text(v) for v in next(rows, ())]
    while headers and not headers[-1]:
        headers.pop()

    def close() -> None:
        rows.close()  # the sheet's XML stream, then the archive
        workbook.close()

    try:
        _refuse_merged_header(merged)
        if not headers:
            raise ImportFileError(_("the first row of sheet %(sheet)r is empty; it must hold the column names")
                                  % {"sheet": name})
    except ImportFileError:
        close()
        raise
    return Table(headers, _xlsx_rows(rows, len(headers), _merged_by_row(merged), close), "xlsx",
                 {"sheet": name}, close=close)


def _header_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return "" if value is None else str(value).strip()


def _refuse_merged_header(merged: list[tuple[str, tuple[int, int, int, int]]]) -> None:
    in_header = [ref for ref, (_c1, r1, _c2, _r2) in merged if r1 == 1]
    if in_header:
        raise ImportFileError(
            _("the header row has merged cells (%(ranges)s); unmerge them so every column has its own name")
            % {"ranges": ", ".join(in_header[:10])}
        )


def _merged_by_row(merged: list[tuple[str, tuple[int, int, int, int]]]) -> dict[int, list[tuple[int, str]]]:
    by_row: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for ref, (min_col, min_row, _max_col, max_row) in merged:
        for row in range(min_row, max_row + 1):
            by_row[row].append((min_col - 1, ref))
    return by_row


def _xlsx_rows(rows: Iterator[tuple], width: int, merged: dict[int, list[tuple[int, str]]],
               close: Callable[[], None]) -> Iterator[SheetRow]:
    try:
        for number, values in enumerate(rows, start=2):
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue
            cells = list(values[:width]) + [None] * (width - len(values))
            problems: list[tuple[int | None, str]] = [
                (col if col < width else None, _("cell %(cell)s is part of the merged cells %(range)s; unmerge them and"
                                        " fill in the value on every row") % {"cell": ref.split(":")[0],
                                                                               "range": ref})
                for col, ref in merged.get(number, [])
            ]
            extra = [i for i, v in enumerate(values[width:], start=width) if v not in (None, "")]
            if extra:
                problems.append((None, _("has a value in column %(column)s, which has no header")
                                 % {"column": _column_letter(extra[0])}))
            yield SheetRow(number, cells, problems)
    finally:
        close()


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def merged_ranges(path: Path, sheet: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The merged cell ranges of one sheet, with their (min_col, min_row, max_col, max_row).

    openpyxl's read-only mode does not expose merged cells, and a full load of a
    large sheet costs too much memory, so the sheet's XML is scanned as a stream.
    """
    from openpyxl.utils.cell import range_boundaries

    with zipfile.ZipFile(path) as archive:
        member = _sheet_member(archive, sheet)
        found: list[str] = []
        tail = b""
        with archive.open(member) as stream:
            while chunk := stream.read(1 << 20):
                data = tail + chunk
                found += [m.decode() for m in _MERGE_RE.findall(data)]
                # An element cut by the chunk boundary is matched again with the next
                # chunk; ranges seen twice are de-duplicated below.
                tail = data[-512:]
    out = []
    for ref in dict.fromkeys(found):
        bounds = range_boundaries(ref)
        out.append((ref, (bounds[0], bounds[1], bounds[2], bounds[3])))
    return out


def _sheet_member(archive: zipfile.ZipFile, sheet: str) -> str:
    """The zip member holding ``sheet``'s XML, found through the workbook's relationships."""
    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    rel_id = None
    for el in workbook.iter():
        if el.tag.endswith("}sheet") and el.get("name") == sheet:
            rel_id = next((v for k, v in el.attrib.items() if k.endswith("}id")), None)
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    for el in rels.iter():
        if el.tag.endswith("}Relationship") and el.get("Id") == rel_id:
            target = el.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else posixpath.normpath(f"xl/{target}")
    raise KeyError(f"sheet {sheet!r} is not in the workbook's relationships")

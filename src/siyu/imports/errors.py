"""What can go wrong with an import: the whole file, or one row."""

from __future__ import annotations

from dataclasses import dataclass


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (unreadable, no header, bad mapping, ...).

    Nothing is changed when this is raised. ``job_id`` names the ``ImportJob`` that
    recorded the refusal, when one was recorded. The message names no interface's syntax
    (it is also the job's record); when ``needs_mapping``, the CLI and the API add how their
    own caller maps a column to a field (``hinted``).
    """

    job_id: int | None = None

    def __init__(self, message: str, *, needs_mapping: bool = False) -> None:
        super().__init__(message)
        self.needs_mapping = needs_mapping

    def hinted(self, template: str) -> str:
        """The refusal for one interface: ``template`` (its translated "%(refusal)s. Map a column
        with …") when the refusal needs a mapping, else the refusal alone."""
        return template % {"refusal": self} if self.needs_mapping else str(self)


class ValueProblem(ValueError):
    """One cell cannot be read as the field it is mapped to; the message says why."""


@dataclass(frozen=True)
class RowError:
    """One problem in one row: ``row`` is the spreadsheet's row number (header = 1)."""

    row: int
    field: str
    reason: str
    column: str = ""

    def as_dict(self) -> dict[str, int | str]:
        return {"row": self.row, "field": self.field, "column": self.column, "reason": self.reason}

"""Small database helpers for hot paths, portable across SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import connection

# The largest integer an id or an offset may be: SQLite, PostgreSQL and DuckDB integers are signed
# 64-bit, and a larger one reaching a query is an error of the database, not a "not found". The API
# (``siyu.api.Offset``/``RowId``), the CLI (``siyu.cli.bounded``) and searches bound numbers by it.
MAX_INT = 2**63 - 1


def row_number(text: str) -> int | None:
    """``text`` as the number of a stored row (1 to MAX_INT, ASCII digits), else None."""
    text = text.strip()
    if not (text.isdecimal() and text.isascii()) or len(text) > 19:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_INT else None


def datetime_param() -> Callable[[datetime | None], Any]:
    """A parameter adapter for aware datetimes, equal to ``connection.ops.adapt_datetimefield_value``
    but without its per-call checks (it runs several times per ingested message).

    SQLite stores naive UTC text (``str`` of the naive value, as Django does); PostgreSQL's
    driver takes the aware value itself.
    """
    if connection.vendor != "sqlite":
        return connection.ops.adapt_datetimefield_value
    slow = connection.ops.adapt_datetimefield_value

    def adapt(value: datetime | None) -> str | None:
        if value is not None and value.tzinfo is UTC:
            return value.isoformat(" ")[:-6]  # drop "+00:00": the text str() gives the naive value
        return slow(value)

    return adapt


def json_param() -> Callable[[Any], Any]:
    """A JSON field parameter adapter for the plain dicts, lists, strings and numbers the hot paths
    write: ``orjson`` instead of ``json.dumps`` (it keeps non-ASCII text as it is, which both
    databases' JSON functions read the same), wrapped as jsonb on PostgreSQL as the ORM does."""
    if connection.vendor != "postgresql":
        return json_text
    from psycopg.types.json import Jsonb

    return lambda value: Jsonb(value, dumps=json_text)


def json_text(value: Any) -> str:
    """JSON text as siyu stores it: non-ASCII kept, non-JSON values as strings, any key type."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits (a trait incremented far enough)
        return json.dumps(value, ensure_ascii=False, default=str)


def drop_field_index(model_name: str, name: str, field, *, index: str, table: str, column: str):
    """A migration operation that drops the index Django made for a field with a plain DROP INDEX
    and records ``field`` (the field without its index) in the migration state: altering the
    field instead would rebuild the table on SQLite. ``index`` has the same name on both
    databases while it is under PostgreSQL's 63 characters."""
    from django.db import migrations

    return migrations.SeparateDatabaseAndState(
        database_operations=[migrations.RunSQL(f"DROP INDEX IF EXISTS {index}",
                                               reverse_sql=f"CREATE INDEX {index} ON {table} ({column})")],
        state_operations=[migrations.AlterField(model_name=model_name, name=name, field=field)],
    )

"""Small database helpers for hot paths, portable across SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from django.db import connection, models


def bulk_set(model: type[models.Model], changes: Iterable[tuple[models.Model, Sequence[str]]]) -> int:
    """Write the named fields of each instance with one ``executemany`` per field set.

    Django's ``bulk_update`` builds a CASE expression per row and field, which costs
    far more than the write itself on large batches; this issues plain
    ``UPDATE … SET f = %s WHERE pk = %s`` statements with values prepared by the
    fields themselves (so JSON, dates and decimals are stored exactly as the ORM would).
    """
    groups: dict[tuple[str, ...], list[models.Model]] = defaultdict(list)
    for obj, fields in changes:
        if fields:
            groups[tuple(sorted(set(fields)))].append(obj)
    meta = model._meta
    table = connection.ops.quote_name(meta.db_table)
    pk_col = connection.ops.quote_name(meta.pk.column)
    written = 0
    with connection.cursor() as cur:
        for names, objs in groups.items():
            fields = [meta.get_field(n) for n in names]
            sets = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
            sql = f"UPDATE {table} SET {sets} WHERE {pk_col} = %s"
            params = [
                [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields] + [obj.pk]
                for obj in objs
            ]
            cur.executemany(sql, params)
            written += len(objs)
    return written

"""Analytics engines: where query runners' Ibis expressions are executed.

Runners build expressions over two relations and never see a connection:

- ``events``: every event, merged persons folded into their survivor, with
  ``local_ts`` (the brand's wall-clock time, a naive timestamp) beside the UTC
  ``timestamp``;
- ``persons``: each surviving person's non-personal attributes;
- ``tags``: (person_id, tag) of every tagged person.

``DuckDBEngine`` reads the embedded event store (``engine.EventStore``);
``SparkEngine`` reads the same relations from Spark tables (a copy of the store
in local mode, or Parquet exported from it on a cluster). This module and
``engine.py`` are the only code that touches a database connection.
"""

from __future__ import annotations

import os
import sys
import threading
from abc import ABC, abstractmethod
from functools import cache
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
from django.conf import settings

from siyu.analytics.engine import ANALYTICS_SOURCES, PERSON_DATE_COLUMNS, EventStore, get_store


@ibis.udf.scalar.builtin(name="json_extract_string")
def _duckdb_json_string(doc: str, path: str) -> str: ...


@ibis.udf.scalar.builtin(name="get_json_object")
def _spark_json_string(doc: str, path: str) -> str: ...


class Engine(ABC):
    """Executes Ibis expressions over ``events`` and ``persons``."""

    name: str

    @abstractmethod
    def events(self) -> ir.Table: ...

    @abstractmethod
    def persons(self) -> ir.Table: ...

    @abstractmethod
    def tags(self) -> ir.Table: ...

    @abstractmethod
    def execute(self, expr: ir.Expr) -> pd.DataFrame: ...

    @abstractmethod
    def version(self) -> Any:
        """Changes whenever the data changes: answers are cached per version."""

    @abstractmethod
    def json_string(self, column: ir.StringValue, key: str) -> ir.StringValue:
        """The text of ``key`` in a JSON object column (NULL when absent)."""

    def compile(self, expr: ir.Expr) -> str:
        return str(ibis.to_sql(expr, dialect=self.dialect))

    dialect: str = "duckdb"


def _json_path(key: str) -> str:
    return "$." + '"' + key.replace('"', "") + '"'


class DuckDBEngine(Engine):
    """The embedded event store. Each thread gets its own cursor, so queries from
    several requests run at once."""

    name = dialect = "duckdb"

    def __init__(self, store: EventStore | None = None) -> None:
        self._store = store
        self._local = threading.local()

    @property
    def store(self) -> EventStore:
        return self._store or get_store()

    def _backend(self):
        store = self.store
        backend = getattr(self._local, "backend", None)
        if backend is None or self._local.store is not store:
            backend = ibis.duckdb.from_connection(store.cursor())
            self._local.backend, self._local.store = backend, store
        return backend

    def events(self) -> ir.Table:
        return self._backend().table("analytics_events")

    def persons(self) -> ir.Table:
        return self._backend().table("analytics_persons")

    def tags(self) -> ir.Table:
        return self._backend().table("analytics_person_tags")

    def execute(self, expr: ir.Expr) -> pd.DataFrame:
        return self._backend().execute(expr)

    def version(self) -> Any:
        store = self.store
        return (store.opening, store.generation)

    def json_string(self, column: ir.StringValue, key: str) -> ir.StringValue:
        return _duckdb_json_string(column.cast("string"), _json_path(key))


class SparkEngine(Engine):
    """Apache Spark through Ibis's pyspark backend.

    ``analytics_events`` and ``analytics_persons`` must exist as tables or views
    in the session: ``load_from_store`` copies them from the embedded store (local
    mode, tests); on a cluster, point them at Parquet exported with
    ``siyu analytics export`` (docs/analytics.md).
    """

    name = "spark"
    dialect = "pyspark"

    def __init__(self, session) -> None:
        self.session = session
        self._backend = ibis.pyspark.connect(session)
        self._version = 0

    def events(self) -> ir.Table:
        return self._backend.table("analytics_events")

    def persons(self) -> ir.Table:
        return self._backend.table("analytics_persons")

    def tags(self) -> ir.Table:
        return self._backend.table("analytics_person_tags")

    def execute(self, expr: ir.Expr) -> pd.DataFrame:
        return self._backend.execute(expr)

    def version(self) -> Any:
        return ("spark", id(self), self._version)

    def json_string(self, column: ir.StringValue, key: str) -> ir.StringValue:
        return _spark_json_string(column, _json_path(key))

    def load_from_store(self, store: EventStore) -> None:
        """Copy the store's events, persons and tags into the session (local mode)."""
        cur = store.cursor()
        for name, sql in ANALYTICS_SOURCES.items():
            frame = cur.execute(sql).arrow().read_all().to_pandas()
            # An explicit schema: a column that is NULL in every row would otherwise become NullType.
            schema = _spark_schema(cur, sql)
            self.session.createDataFrame(frame, schema=schema).createOrReplaceTempView(f"_siyu_{name}")
        self._define_views()

    def load_parquet(self, directory: str) -> None:
        """Read the Parquet files written by ``siyu analytics export`` (any path Spark reads:
        a local folder, HDFS, S3)."""
        base = directory.rstrip("/")
        for name in ANALYTICS_SOURCES:
            self.session.read.parquet(f"{base}/{name}.parquet").createOrReplaceTempView(f"_siyu_{name}")
        self._define_views()

    def _define_views(self) -> None:
        tz = settings.TIME_ZONE.replace("'", "")
        dates = ", ".join(f"to_date(from_utc_timestamp({column}, '{tz}')) AS {name}"
                          for name, column in PERSON_DATE_COLUMNS.items())
        self.session.sql(
            "CREATE OR REPLACE TEMP VIEW analytics_events AS SELECT *,"
            f" from_utc_timestamp(timestamp, '{tz}') AS local_ts FROM _siyu_events"
        )
        self.session.sql(f"CREATE OR REPLACE TEMP VIEW analytics_persons AS SELECT *, {dates} FROM _siyu_persons")
        self.session.sql("CREATE OR REPLACE TEMP VIEW analytics_person_tags AS SELECT * FROM _siyu_person_tags")
        self._version += 1


def _spark_schema(cur, sql: str) -> str:
    """The Spark DDL schema of a DuckDB query's columns."""
    spark_types = {"VARCHAR": "string", "BIGINT": "bigint", "INTEGER": "int", "JSON": "string",
                   "TIMESTAMP WITH TIME ZONE": "timestamp", "DECIMAL(18,2)": "decimal(18,2)",
                   "BOOLEAN": "boolean", "DATE": "date", "DOUBLE": "double"}
    described = cur.execute(f"DESCRIBE {sql}").fetchall()
    return ", ".join(f"`{name}` {spark_types[kind]}" for name, kind, *_rest in described)


@cache
def spark_session(master: str | None = None):
    """A Spark session configured for siyu (UTC session clock, no UI)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.appName("siyu")
               .master(master or settings.SIYU_SPARK_MASTER)
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    """The configured engine (``SIYU_ANALYTICS_ENGINE``: duckdb, the default, or spark)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            if settings.SIYU_ANALYTICS_ENGINE == "spark":
                spark = SparkEngine(spark_session())
                if settings.SIYU_SPARK_DATA:
                    spark.load_parquet(settings.SIYU_SPARK_DATA)
                else:
                    spark.load_from_store(get_store())
                _engine = spark
            else:
                _engine = DuckDBEngine()
        return _engine

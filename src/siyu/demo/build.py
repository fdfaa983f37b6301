"""``siyu demo``: build the demo brand through the ingestion pipeline, then report.

The generator (``stream.py``) renders what the brand's apps would send; this
module creates the sources and the admin login, feeds every batch to
``ingest.pipeline.process`` (the function the group-commit writer runs), and
summarises what the product recorded.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import F, Sum

from siyu import conf
from siyu.accounts.actor import Actor
from siyu.collector import between_batches
from siyu.demo import brand
from siyu.demo.render import SOURCES
from siyu.demo.stream import Batch, DemoStream, ParallelStream
from siyu.wal import WAL

log = logging.getLogger("siyu.demo")
DEMO_ACTOR = "demo"
ADMIN = "admin"
PARALLEL_FROM = 5_000  # customers
BULK_WAL_FRAMES = 250_000  # ~1 GB: the build waits for a checkpoint rarely, and empties the log when done
BULK_CACHE_KIB = 512 * 1024  # SQLite's page cache while loading (the default is 64 MiB)


class DemoError(RuntimeError):
    """The demo cannot be built here (say why, change nothing)."""


def build_demo(customers: int = 20_000, seed: int = 7, progress: bool = True, *, fresh: bool = False,
               end: datetime | None = None, workers: int | None = None,
               chunk_sessions: int | None = None) -> dict:
    """Build the demo brand into the data folder; returns the login and what was recorded.

    Skips the build when the folder already holds the demo (``fresh`` wipes it
    first). ``workers`` processes render and parse while this one ingests (0:
    all in this process; default: one per spare CPU, at most four, from 5 000
    customers). ``end`` closes the six-month window (default: now). Raises
    DemoError when the folder holds other customers, or when ``fresh`` is asked
    of a database this command did not create.
    """
    if customers < 1 or customers > 1_000_000:
        raise DemoError("--customers must be between 1 and 1 000 000")
    started = time.monotonic()
    if fresh:
        _wipe()
    existing = _existing()
    if existing is not None:
        return existing
    _check_empty()
    say = _printer(progress)
    end = end or datetime.now(UTC).replace(microsecond=0)
    workers = default_workers(customers) if workers is None else workers
    source_ids = _create_sources()
    stream = DemoStream(customers, seed, end, chunk_sessions=chunk_sessions)
    plan = stream.plan
    say(f"demo: {brand.BRAND}: {plan.customers:,} customers, {plan.orders:,} orders in {plan.sessions:,} visits,"
        f" {plan.start:%Y-%m-%d} to {plan.end:%Y-%m-%d}; drawn in {time.monotonic() - started:.1f}s;"
        f" {workers or 'no'} generator process{'es' if workers != 1 else ''}")
    if workers:
        # Workers hash ids with the folder's lookup key: create it before they start, or on a
        # fresh folder each would generate its own and the same phone would hash differently.
        conf.pii_keys()
    source = ParallelStream(stream, workers) if workers else stream
    del stream  # with workers, only they keep the drawn brand
    with between_batches() as collect, _bulk_load(), WAL.running(restart_at=BULK_WAL_FRAMES):
        fed = _feed(source.batches(), source_ids, plan.sessions, say, collect)
    from siyu.accounts.actions import create_user

    _user, password = create_user(ADMIN, "admin", superuser=True)
    segments = _value_and_segments(say)
    elapsed = time.monotonic() - started
    say(f"demo: done in {elapsed:.0f}s")
    return {"status": "built", "username": ADMIN, "password": password, **_summary(), "messages": fed["accepted"],
            "rejected": fed["rejected"], "seconds": round(elapsed, 1),
            "messages_per_second": round(fed["accepted"] / max(elapsed, 1e-9)),
            "time_ingesting_s": fed["ingest_s"], "time_waiting_for_generator_s": fed["generator_wait_s"],
            "seed": seed, "h5_shop_write_key": _write_key("h5"), **segments}


def _value_and_segments(say) -> dict:
    """Predict every buyer's value and compute the built-in segments, as the server's schedule would."""
    from siyu.accounts.actor import Actor
    from siyu.segments.actions import ensure_builtin_segments, refresh_all
    from siyu.valuation.fitting import ClvError, fit_and_predict

    before = time.monotonic()
    actor = Actor.system(DEMO_ACTOR)
    try:
        model = fit_and_predict(actor)
        fitted = model.pk
    except ClvError as exc:  # a tiny demo may not have enough repeat buyers
        say(f"demo: no CLV model: {exc}")
        fitted = None
    ensure_builtin_segments()
    done = refresh_all(actor)
    say(f"demo: predicted customer value and refreshed {done['segments']} segments in"
        f" {time.monotonic() - before:.0f}s")
    return {"clv_model": fitted, "segments": done["segments"]}


def _feed(batches, source_ids: dict[str, int], sessions: int, say, collect) -> dict:
    from siyu.ingest import pipeline

    accepted = rejected = 0
    last_say = time.monotonic()
    t0 = last_say
    waiting = ingesting = 0.0
    batches = iter(batches)
    while True:
        before = time.monotonic()
        item = next(batches, None)
        waiting += time.monotonic() - before
        if item is None:
            break
        batch, prog = item
        if batch:
            before = time.monotonic()
            # History, loaded in time order: a customer appears about once a fold window, so
            # seen times are written with each batch rather than folded later.
            outcome = pipeline.process(_with_ids(batch, source_ids), actor_label=DEMO_ACTOR, fold_later=False)
            ingesting += time.monotonic() - before
            accepted += outcome.accepted
        del batch, item  # freed here, so the collection below finds little young left to scan
        collect()
        rejected += len(prog.rejected)
        now = time.monotonic()
        if now - last_say >= 5 and prog.sessions_done:
            share = prog.sessions_done / max(sessions, 1)
            eta = (now - t0) * (1 - share) / share
            say(f"demo: {share:6.1%}  {accepted:,} messages  {accepted / (now - t0):,.0f}/s  ~{eta:.0f}s left")
            last_say = now
    return {"accepted": accepted, "rejected": rejected, "ingest_s": round(ingesting, 1),
            "generator_wait_s": round(waiting, 1)}


@contextmanager
def _bulk_load():
    """SQLite settings for loading the history, restored after.

    A larger page cache: at a million customers each batch changes tens of thousands of pages
    spread over a ~2 GB file (new identities land at random places in the lookup index, seen
    customers anywhere in the person table), which the default cache cannot hold until the
    commit. ``synchronous=NORMAL``: commits do not wait for the disk. A crash or power loss
    then loses at most the last batches, never consistency, and a build that did not finish is
    refused until rebuilt with --fresh (``_existing``). FULL is back before the login is
    created, and that commit syncs the log, with every batch before it.
    """
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    before = [raw.execute(f"PRAGMA {name}").fetchone()[0] for name in ("cache_size", "synchronous")]
    raw.execute(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
    raw.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        if connection.connection is raw:  # not if the connection broke and was replaced
            try:
                raw.execute(f"PRAGMA cache_size={before[0]}")
                raw.execute(f"PRAGMA synchronous={before[1]}")
            except sqlite3.Error:  # e.g. a transaction left open by a failure: never hide that error
                log.exception("could not restore SQLite's settings after loading the demo")


def default_workers(customers: int) -> int:
    if customers < PARALLEL_FROM:
        return 0  # forking costs more than it saves
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def _with_ids(batch: Batch, source_ids: dict[str, int]) -> list:
    return [(source_ids[key], msg) for key, msg in batch]


def _printer(enabled: bool):
    def say(line: str) -> None:
        if enabled:
            print(line, file=sys.stderr, flush=True)

    return say


# -- the data folder -------------------------------------------------------------
def _existing() -> dict | None:
    """The summary of a demo already built here; raises DemoError for one that never finished."""
    from django.contrib.auth import get_user_model

    from siyu.ingest.models import Source

    if not Source.objects.filter(created_by=DEMO_ACTOR).exists():
        return None
    if not get_user_model().objects.filter(username=ADMIN).exists():  # the login is created last
        raise DemoError("an earlier `siyu demo` stopped before it finished; rebuild it with --fresh")
    return {"status": "exists: this data folder already holds the demo (pass --fresh to rebuild it)",
            "username": ADMIN,
            "password": "(as printed when the demo was built; or `siyu user create NAME --role admin`)",
            **_summary()}


def _check_empty() -> None:
    from siyu.customers.models import Person

    n = Person.objects.count()
    if n:
        raise DemoError(f"this data folder already holds {n} customers that are not the demo's; point"
                        " SIYU_DATA_DIR at an empty folder, or pass --fresh to wipe this one")


def _wipe() -> None:
    """Delete the operational database and the event store, then recreate them empty."""
    from django.core.management import call_command
    from django.db import connection, connections

    from siyu.analytics.engine import close_store
    from siyu.customers.identity import CACHE
    from siyu.ingest.pipeline import DEDUPE

    data = Path(settings.DATA_DIR).resolve()
    db = settings.DATABASES["default"]
    db_path = Path(str(db["NAME"])).resolve()
    events = Path(settings.SIYU_EVENT_STORE).resolve()
    if db["ENGINE"] != "django.db.backends.sqlite3" or db_path.parent != data or events.parent != data:
        raise DemoError("--fresh only wipes the SQLite database and event store inside the data folder;"
                        " use an empty SIYU_DATA_DIR instead")
    close_store()
    connections.close_all()
    for path in (db_path, events):
        for suffix in ("", "-wal", "-shm", "-journal", ".wal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    CACHE.clear()
    DEDUPE.reset()
    connection.ensure_connection()
    call_command("migrate", verbosity=0, interactive=False)


def _create_sources() -> dict[str, int]:
    from siyu.ingest.actions import create_source

    actor = Actor.system(DEMO_ACTOR)
    return {key: create_source(actor, name, kind).pk for key, (name, kind) in SOURCES.items()}


def _write_key(key: str) -> str:
    from siyu.ingest.models import Source

    return Source.objects.get(name=SOURCES[key][0]).write_key




def _summary() -> dict:
    """What the product recorded, read back from both stores."""
    from siyu.analytics.engine import get_store
    from siyu.customers.models import Identity, MergeConflict, Person, PersonMerge
    from siyu.orders.models import Order

    persons = Person.objects.filter(merged_into__isnull=True)
    gmv = Order.objects.aggregate(v=Sum(F("amount") - F("refunded_amount")))["v"] or Decimal("0")
    return {
        "brand": brand.BRAND,
        "customers": persons.count(),
        "members": Identity.objects.filter(kind="member_no").values("person_id").distinct().count(),
        "buyers": persons.filter(order_count__gte=1).count(),
        "repeat_buyers": persons.filter(order_count__gte=2).count(),
        "orders": Order.objects.count(),
        "gmv_cny": f"{gmv:,.2f}",
        "refunded_orders": Order.objects.exclude(status="completed").count(),
        "events": get_store().counts()["events"],
        "merges": PersonMerge.objects.count(),
        "merge_conflicts_to_review": MergeConflict.objects.filter(status="open").count(),
        "data_dir": str(settings.DATA_DIR),
    }

"""``siyu serve``: one process that owns the event store and serves everything."""

from __future__ import annotations

import gc
import logging
import signal
import sys

from waitress import serve as waitress_serve

log = logging.getLogger("siyu")
SCHEDULER_STOP_SECONDS = 15.0
# Read from a connection at once: a 100-message batch (~60 KB) in one read, not waitress's 8 KB.
RECV_BYTES = 256 * 1024


def prepare() -> None:
    """Open the event store and bring it up to date with the operational database."""
    from siyu.analytics import sync
    from siyu.analytics.engine import get_store

    store = get_store()
    done = sync.sync_all(store)
    if any(done.values()):
        log.info("event store synced: %s", done)


def warm_up() -> None:
    """Import what the first request would: the URL configuration mounts every API router and
    builds its schemas (~2 s on these cores), which would otherwise fall on the first visitor."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - evaluated for its imports


def serve(host: str, port: int, threads: int = 16) -> None:
    from django.conf import settings
    from django.core.management import call_command

    from siyu import wal
    from siyu.accounts import local
    from siyu.ingest import parsers
    from siyu.ingest.writer import get_writer
    from siyu.scheduler import Scheduler
    from siyu.wsgi import application

    call_command("collectstatic", interactive=False, verbosity=0)
    prepare()
    warm_up()
    # Long-lived caches (dedupe window, identity cache) would otherwise be rescanned
    # by every collection; measured: ~25% of ingest CPU per message in the demo.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    get_writer().start()  # also syncs what other processes record while the server is idle
    scheduler = Scheduler()
    scheduler.start()  # the default dashboard, segments, rule tags and CLV refits
    # SIGTERM (a service manager, `kill`) ends the server like Ctrl-C: through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    workers = settings.SIYU_INGEST_WORKERS
    try:
        parsers.start(parsers.default_workers() if workers is None else workers)
        local.publish(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}")
        print(f"siyu is serving on http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
        waitress_serve(application, host=host, port=port, threads=threads, ident="siyu",
                       max_request_body_size=settings.SIYU_MAX_UPLOAD_BYTES, channel_timeout=60,
                       connection_limit=1000, recv_bytes=RECV_BYTES)
    finally:
        # No new refresh; one under way may finish (else it may hold the log the writer empties).
        if not scheduler.stop(timeout=SCHEDULER_STOP_SECONDS):
            log.warning("a scheduled refresh is still running; the SQLite log may stay until the next start")
        try:
            # Requests already queued are committed; the writer then empties the SQLite log.
            if not get_writer().stop(timeout=30):
                log.warning("the ingestion writer did not finish within 30 s; queued requests were not answered")
            wal.empty_log()
        finally:
            parsers.stop()

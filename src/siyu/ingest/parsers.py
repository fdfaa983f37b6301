"""Parse workers: processes that turn request bodies into messages for the server.

One interpreter cannot both parse tens of thousands of messages a second and
write them (the GIL). ``siyu serve`` therefore starts ``SIYU_INGEST_WORKERS``
processes; an ingestion request hands its raw body to one of them
(``bodies.packed_segment_body``) and gets back validated messages, already encoded
for the intake log (``intake.pack``: compact, as properties and context are JSON text,
``Message.event_json``). The
workers never open a database. Without workers (tests, CLI commands,
``SIYU_INGEST_WORKERS=0``) the same function runs in the request thread.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

log = logging.getLogger("siyu.ingest")
T = TypeVar("T")

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()


def default_workers() -> int:
    """One per core beyond the first (the server's own), at most four."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def start(workers: int) -> None:
    """Start the workers now and wait until each has loaded the parser (a few seconds)."""
    global _pool
    if workers <= 0:
        return
    from siyu import conf

    conf.pii_keys()  # created here first: workers hash ids with it and must all read the same key
    with _lock:
        if _pool is not None:
            return
        # Spawned, not forked: the server process already runs threads.
        _pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker)
        pool = _pool
    for fut in [pool.submit(os.getpid) for _ in range(workers * 2)]:
        fut.result()


def stop() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def run(func: Callable[..., T], *args) -> T:
    """``func(*args)`` in a parse worker, or in this thread when there are none.

    A worker that died (killed, out of memory) fails its calls; the pool is then
    replaced and the call runs here, so a request is never lost to it.
    """
    pool = _pool
    if pool is None:
        return func(*args)
    try:
        return pool.submit(func, *args).result()
    except BrokenProcessPool:
        log.exception("a parse worker died; restarting the workers")
        _restart(pool)
        return func(*args)


def _restart(broken: ProcessPoolExecutor) -> None:
    global _pool
    with _lock:
        if _pool is not broken:
            return
        workers = broken._max_workers
        _pool = None
    broken.shutdown(wait=False, cancel_futures=True)
    threading.Thread(target=start, args=(workers,), name="siyu-parse-restart", daemon=True).start()


def _init_worker() -> None:
    import signal

    import django

    # Ctrl-C reaches the whole process group: the server stops its workers itself. A server
    # killed outright cannot, so each worker also leaves when its parent is gone.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    django.setup()
    # Parsed messages are short-lived: collections would only rescan the loaded modules.
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def watch_parent() -> None:
    """End this process when its parent is gone (a server killed outright cannot stop it)."""
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="siyu-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)

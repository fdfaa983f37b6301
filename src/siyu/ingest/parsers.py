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
import pickle
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("siyu.ingest")
T = TypeVar("T")


class WorkerDied(Exception):
    """A parse worker ended (killed, out of memory) before it answered, or the workers were
    stopped."""


class _Worker:
    """One parse worker process and the server's end of its pipe. A call is one message each
    way on the pipe, made by the request thread itself: no feeder or result thread, no futures
    (``concurrent.futures.ProcessPoolExecutor`` cost the server ~4x the CPU a call). Only the
    thread that took the worker from the pool uses its pipe."""

    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child,), name="siyu-parse-worker", daemon=True)
        self.process.start()
        child.close()

    def call(self, func: Callable[..., T], args: tuple) -> T:
        try:
            self.conn.send((func, args))
            status, value = self.conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkerDied(str(exc)) from None
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        self.conn.close()  # the worker reads the end of its pipe and leaves
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class _Pool:
    """The workers; a call takes whichever is idle (waiting, without the GIL, when none is) and
    gives it back after. ``shutdown`` closes each worker once it is given back, so a pipe is never
    closed under a call (a call on a worker that died ends at once, with ``WorkerDied``)."""

    _CLOSED = None  # in the idle queue once the pool is shut down: calls waiting for a worker end

    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # not forked: the server process already runs threads
        self.size = workers
        self.workers: list[_Worker] = []
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        try:
            for _ in range(workers):
                self.workers.append(_Worker(ctx))
                self._idle.put(self.workers[-1])
        except BaseException:
            self.shutdown(timeout=0)  # the ones started so far
            raise

    def run(self, func: Callable[..., T], args: tuple) -> T:
        worker = self._idle.get()
        if worker is self._CLOSED:
            self._idle.put(worker)
            raise WorkerDied("the parse workers were stopped")
        try:
            return worker.call(func, args)
        finally:
            self._idle.put(worker)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Close every worker as it comes back from its call; after ``timeout`` seconds, kill the
        ones still busy (their calls then end with ``WorkerDied``) and close them as they come back."""
        idle = self._idle
        deadline = time.monotonic() + timeout
        left = len(self.workers)
        while left:
            try:
                worker = idle.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                for busy in self.workers:
                    busy.process.kill()
                deadline = time.monotonic() + timeout
                continue
            if worker is self._CLOSED:
                continue
            worker.close()
            left -= 1
        idle.put(self._CLOSED)


_pool: _Pool | None = None
_generation = 0  # bumped by ``stop``: a restart under way then installs nothing
_lock = threading.Lock()


def default_workers() -> int:
    """One per core beyond the first (the server's own), at most four."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


def start(workers: int, *, generation: int | None = None) -> None:
    """Start the workers now and wait until each has loaded the parser (a few seconds).
    ``generation``: install them only if ``stop`` was not called since (a restart)."""
    global _pool
    if workers <= 0:
        return
    from siyu import conf

    conf.pii_keys()  # created here first: workers hash ids with it and must all read the same key
    with _lock:
        if _pool is not None:
            return
    pool = _Pool(workers)
    try:
        for worker in pool.workers:  # the first call returns once the worker has set up Django
            worker.call(os.getpid, ())
    except BaseException:
        pool.shutdown(timeout=0)
        raise
    with _lock:
        if _pool is None and generation in (None, _generation):
            _pool = pool
            return
    pool.shutdown()  # another thread started workers meanwhile, or they were stopped


def stop() -> None:
    global _pool, _generation
    with _lock:
        pool, _pool = _pool, None
        _generation += 1
    if pool is not None:
        pool.shutdown()


def run(func: Callable[..., T], *args) -> T:
    """``func(*args)`` in a parse worker, or in this thread when there are none.

    A worker that died (killed, out of memory) fails its call; the workers are then
    replaced and the call runs here, so a request is never lost to it.
    """
    pool = _pool
    if pool is None:
        return func(*args)
    try:
        return pool.run(func, args)
    except WorkerDied:
        if _restart(pool):
            log.exception("a parse worker died; restarting the workers")
        return func(*args)


def _restart(broken: _Pool) -> bool:
    """Replace the workers of ``broken`` (on a thread of its own); False when that is under way
    already, or they were stopped."""
    global _pool
    with _lock:
        if _pool is not broken:
            return False
        _pool = None
        generation = _generation
    threading.Thread(target=_replace, args=(broken, generation), name="siyu-parse-restart", daemon=True).start()
    return True


def _replace(broken: _Pool, generation: int) -> None:
    broken.shutdown()
    try:
        start(broken.size, generation=generation)
    except Exception:
        log.exception("the parse workers could not be restarted; requests are parsed in their own threads")


def _serve(conn) -> None:
    """A worker's life: set up, then answer calls until the server closes its end of the pipe.
    Errors go back as values (a call's own exception, raised again in the server)."""
    _init_worker()
    while True:
        try:
            func, args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", func(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
            answer = ("error", exc)
        try:
            conn.send(answer)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an answer that cannot cross
            conn.send(("error", RuntimeError(f"{func.__name__}: answer cannot be sent back: {exc}")))


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

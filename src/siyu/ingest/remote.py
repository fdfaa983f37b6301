"""The processing process's side of ``processor``: its pipe to the server, and the event store
as it sees it.

Kept apart from ``processor`` so that the spawned process can import its entry point before
Django is set up. The pipe carries requests from the child and one answer to each:
``(verb, *args)`` -> ``("ok", value)`` or ``("error", exception)``; the server's
``processor.StoreAgent`` answers them. The child is one thread, so there is never more than
one request in flight.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa


def start_child(path: str) -> tuple[multiprocessing.Process, Any]:
    """Spawn the processing process for the intake log at ``path``; returns it and the server's
    end of its pipe."""
    ctx = multiprocessing.get_context("spawn")  # not forked: the server already runs threads
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_child_main, args=(theirs, path), name="siyu-ingest-processor", daemon=True)
    child.start()
    theirs.close()
    return child, ours


def _child_main(conn, path: str) -> None:
    import gc

    import django

    from siyu.ingest.parsers import watch_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the server stops us
    watch_parent()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    django.setup()
    from siyu.analytics import engine
    from siyu.collector import between_batches
    from siyu.ingest.processor import IntakeProcessor

    lock = threading.Lock()  # one request at a time on the one pipe
    engine.use_store(RemoteStore(conn, lock))
    gc.freeze()
    # Collected between groups (and after idle work), not while one is being processed; all
    # generations every 100 times, as this process runs for as long as the server.
    with between_batches(full_every=100) as collect:
        IntakeProcessor(path, PipeHost(conn, lock), after_work=collect).run()
    conn.send(("exit",))


class _Remote:
    def __init__(self, conn, lock: threading.Lock | None = None) -> None:
        self._conn = conn
        self._lock = lock or threading.Lock()

    def call(self, *request: Any) -> Any:
        with self._lock:
            self._conn.send(request)
            status, value = self._conn.recv()
        if status == "error":
            raise value
        return value


class PipeHost(_Remote):
    """The child's ``Host``: the server's writer thread, over the pipe."""

    def recovered(self, position: int, last_id: int, backlog: int) -> None:
        self.call("recovered", position, last_id, backlog)

    def advanced(self, row_id: int, messages: int) -> None:
        self.call("advanced", row_id, messages)

    def wait_for_work(self, processed: int, timeout: float) -> str:
        return self.call("wait", processed, timeout)


class RemoteStore(_Remote):
    """The event store as the child sees it: each call runs in the server (``StoreAgent``)."""

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        self.call("lock")
        try:
            yield
        finally:
            self.call("unlock")

    def begin_append(self, rows, *, activity=None, intake: tuple[str, int] | None = None) -> RemotePending:
        from siyu.analytics.engine import event_table

        table = event_table(rows, activity)
        if table is None:
            return RemotePending(self, False)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as out:
            out.write_table(table)
        self.call("begin", sink.getvalue().to_pybytes(), activity is not None, intake)
        return RemotePending(self, True)

    def activity(self, person_ids=None, *, chunk: int = 10_000) -> Iterator[list[tuple]]:
        return self._chunks("activity", person_ids, chunk=chunk)

    def activity_to_fold(self, *, chunk: int = 10_000) -> Iterator[list[tuple]]:
        return self._chunks("activity_to_fold", chunk=chunk)

    def message_id_chunks(self, since, limit: int, size: int) -> Iterator[list[tuple]]:
        return self._chunks("message_id_chunks", since, limit, size)

    def _chunks(self, name: str, *args, **kwargs) -> Iterator[list]:
        """A chunked read of the store, a chunk per request (the dedupe window's millions of ids
        would otherwise cross the pipe, and sit in both processes, at once)."""
        self.call("iterate", name, args, kwargs)
        while (chunk := self.call("next")) is not None:
            yield chunk

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.call("store", name, args, kwargs)


class RemotePending:
    """``PendingAppend`` for an insert running in the server."""

    def __init__(self, store: RemoteStore, is_open: bool) -> None:
        self._store, self._open = store, is_open

    @property
    def open(self) -> bool:
        return self._open

    def wait(self) -> None:
        if self._open:
            self._store.call("wait_insert")

    def commit(self, overrides=(), position=None) -> None:
        if self._open:
            self._open = False
            self._store.call("commit", list(overrides), position)

    def rollback(self) -> None:
        if self._open:
            self._open = False
            self._store.call("rollback")

"""The demo brand as a stream of parsed messages, in time order, batch by batch.

Messages are built as the apps would send them and parsed by the same
functions the HTTP endpoints use (``segment.parse``, ``sensors.parse``), so a
message the product would refuse is refused here too. Rendering and parsing
can run in forked worker processes while this one ingests.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection

import numpy as np

from siyu.collector import between_batches
from siyu.demo import population, timeline
from siyu.demo.render import Raw, Renderer
from siyu.ingest import intake, segment, sensors
from siyu.ingest.messages import Message, MessageError

Batch = list[tuple[str, Message]]
CHUNK_SESSIONS = 2_400  # about 10 000 messages per batch
LARGE_CHUNK_SESSIONS = 7_200  # from LARGE_FROM customers: ~25 000, so commits share more pages
LARGE_FROM = 100_000


def chunk_sessions_for(customers: int) -> int:
    return LARGE_CHUNK_SESSIONS if customers >= LARGE_FROM else CHUNK_SESSIONS


@dataclass
class Plan:
    """What the generator drew before rendering a single message."""

    customers: int
    sessions: int
    orders: int
    chunks: int
    start: datetime
    end: datetime


@dataclass
class Progress:
    sessions_done: int
    rejected: list[str] = field(default_factory=list)


def parse_raw(raw: Raw) -> Message:
    """Parse one generated message exactly as its endpoint would; raises MessageError."""
    received_at = datetime.fromtimestamp((raw.ms + 200 + raw.ms % 1_800) / 1000, UTC)
    if raw.msg_type == "sensors":
        return sensors.parse(raw.body, received_at)
    return segment.parse(raw.body, received_at, msg_type=raw.msg_type)


class DemoStream:
    """Draws the brand (numpy, vectorised), then renders and parses it chunk by chunk.

    A chunk is ``chunk_sessions`` consecutive sessions (about four messages each; by
    default ``chunk_sessions_for(customers)``) and becomes one batch for the pipeline.
    Chunks render the same in any process, so several workers can share the work.
    """

    def __init__(self, customers: int, seed: int, end: datetime, params: population.Params | None = None,
                 chunk_sessions: int | None = None) -> None:
        self.params = params or population.Params.for_customers(customers)
        rng = np.random.default_rng(seed)
        self.window = population.Window.ending(end, self.params.days)
        self.customers = population.customers(rng, customers, self.window, self.params)
        owners, times = population.purchases(rng, self.customers, self.window)
        self.orders = population.orders(rng, self.customers, self.window, owners, times, self.params)
        self.timeline = timeline.timeline(rng, self.customers, self.orders, self.window, self.params)
        self.renderer = Renderer(self.customers, self.orders, seed)
        self.chunk_sessions = max(1, chunk_sessions or chunk_sessions_for(customers))
        self.plan = Plan(customers=customers, sessions=len(self.timeline), orders=len(self.orders),
                         chunks=-(-len(self.timeline) // self.chunk_sessions),
                         start=datetime.fromtimestamp(self.window.start_t, UTC), end=end)

    def raw(self, chunk: int) -> Iterator[list[Raw]]:
        """Raw messages of one chunk, grouped per session."""
        tl, render = self.timeline, self.renderer.session
        lo = chunk * self.chunk_sessions
        hi = min(lo + self.chunk_sessions, len(tl))
        self.renderer.begin(chunk)
        rows = zip(tl.kind[lo:hi].tolist(), tl.cust[lo:hi].tolist(), tl.t[lo:hi].tolist(), tl.aux[lo:hi].tolist(),
                   strict=True)
        for kind, cust, t, aux in rows:
            yield render(kind, cust, t, aux)

    def chunk(self, chunk: int) -> tuple[Batch, Progress]:
        """One chunk's messages, parsed, with how far through the sessions it ends."""
        batch: Batch = []
        progress = Progress(min((chunk + 1) * self.chunk_sessions, len(self.timeline)))
        for session in self.raw(chunk):
            for raw in session:
                try:
                    batch.append((raw.source, parse_raw(raw)))
                except MessageError as exc:
                    progress.rejected.append(f"{raw.source} {raw.msg_type}: {exc}")
        return batch, progress

    def batches(self) -> Iterator[tuple[Batch, Progress]]:
        for chunk in range(self.plan.chunks):
            yield self.chunk(chunk)


# -- worker processes ----------------------------------------------------------
_FORKED: DemoStream | None = None  # handed to forked workers without pickling, then dropped


def _produce(worker: int, workers: int, pipes: list[tuple[Connection, Connection]]) -> None:
    """Worker process: render and parse every ``workers``-th chunk, in order, and send each down
    this worker's pipe."""
    stream = _FORKED
    assert stream is not None
    # Keep only this worker's sending end: the parent then reads an end of file, not a hang,
    # from a worker that dies, even in the middle of a chunk.
    for i, (receiving, sending) in enumerate(pipes):
        receiving.close()
        if i != worker:
            sending.close()
    out = pipes[worker][1]
    # A thread sends while the next chunk renders, up to AHEAD chunks ahead of the parent.
    ready: queue.Queue = queue.Queue(maxsize=ParallelStream.AHEAD)
    sender = threading.Thread(target=_send_all, args=(ready, out), name="siyu-demo-sender")
    sender.start()
    try:
        with between_batches() as collect:
            for chunk in range(worker, stream.plan.chunks, workers):
                # Encoded here, not by the sender, so nothing young is alive to collect.
                ready.put(("batch", _encode(*stream.chunk(chunk))))
                collect()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        ready.put(("error", traceback.format_exc()))
    finally:
        ready.put(None)
        sender.join()


def _encode(batch: Batch, progress: Progress) -> bytes:
    """A chunk as the bytes a worker sends: the messages as the intake log holds them
    (``intake.pack``, far cheaper than pickling them), their source keys and the progress."""
    return pickle.dumps(([key for key, _m in batch], intake.pack([m for _key, m in batch]), progress),
                        pickle.HIGHEST_PROTOCOL)


def _decode(payload: bytes) -> tuple[Batch, Progress]:
    keys, packed, progress = pickle.loads(payload)  # noqa: S301 - from this build's own workers
    return list(zip(keys, intake.unpack(packed), strict=True)), progress


def _send_all(ready: queue.Queue, out: Connection) -> None:
    try:
        while (item := ready.get()) is not None:
            out.send(item)
    except BaseException:  # noqa: BLE001 - the parent stopped reading (failed, died), or no memory
        # Leave at once: the parent then reads an end of file instead of waiting for the chunk,
        # and no orphan keeps rendering into a queue nobody empties.
        os._exit(1)


class ParallelStream:
    """``DemoStream.batches`` produced by forked workers while this process ingests.

    Workers are forked, not spawned: they inherit the drawn brand (numpy arrays
    shared copy-on-write, then released here) and the configured Django, and
    never touch either database; a spawned child would re-run the main script.
    """

    AHEAD = 2  # chunks each worker may render ahead of the ingesting process

    def __init__(self, stream: DemoStream, workers: int) -> None:
        global _FORKED
        ctx = multiprocessing.get_context("fork")
        self.plan = stream.plan
        pipes = [ctx.Pipe(duplex=False) for _ in range(workers)]  # (receiving, sending) per worker
        self._pipes = [receiving for receiving, _sending in pipes]
        self._procs = [ctx.Process(target=_produce, args=(w, workers, pipes), name=f"siyu-demo-generator-{w}",
                                   daemon=True) for w in range(workers)]
        _FORKED = stream
        try:
            for proc in self._procs:
                proc.start()
        finally:
            _FORKED = None
            for _receiving, sending in pipes:
                sending.close()  # each worker holds the only sending end of its pipe

    def batches(self) -> Iterator[tuple[Batch, Progress]]:
        # Received in this thread: a second thread decoding beside the ingesting one measured
        # slower (every database call hands it the GIL, and getting it back waits).
        finished = False
        try:
            for chunk in range(self.plan.chunks):
                yield self._receive(chunk)  # not kept in a local: the consumer frees it when done
            finished = True
        finally:
            for proc in self._procs:
                if not finished:  # the consumer stopped early (an error, Ctrl-C): stop the producers too
                    proc.terminate()
                proc.join(30)
            for pipe in self._pipes:
                pipe.close()

    def _receive(self, chunk: int) -> tuple[Batch, Progress]:
        kind, payload = self._next(chunk)
        if kind == "error":
            raise RuntimeError(f"the demo generator failed:\n{payload}")
        return _decode(payload)

    def _next(self, chunk: int) -> tuple:
        source, worker = self._pipes[chunk % len(self._pipes)], self._procs[chunk % len(self._procs)]
        try:
            return source.recv()
        except (EOFError, OSError):  # the worker exited (killed, out of memory say), perhaps mid-chunk
            worker.join(5)
            return "error", f"{worker.name} exited with code {worker.exitcode} before sending chunk {chunk}"

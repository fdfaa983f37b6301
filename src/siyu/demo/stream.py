"""The demo brand as a stream of parsed messages, in time order, batch by batch.

Messages are built as the apps would send them and parsed by the same
functions the HTTP endpoints use (``segment.parse``, ``sensors.parse``), so a
message the product would refuse is refused here too. Generating and parsing
can run in a second process (``parallel=True``) while this one ingests.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from siyu.demo import population, timeline
from siyu.demo.render import Raw, Renderer
from siyu.ingest import segment, sensors
from siyu.ingest.messages import Message, MessageError

Batch = list[tuple[str, Message]]


@dataclass
class Plan:
    """What the generator drew before rendering a single message."""

    customers: int
    sessions: int
    orders: int
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
    """Draws the brand (numpy, vectorised), then renders and parses it session by session."""

    def __init__(self, customers: int, seed: int, end: datetime, params: population.Params | None = None) -> None:
        self.params = params or population.Params()
        rng = np.random.default_rng(seed)
        self.window = population.Window.ending(end, self.params.days)
        self.customers = population.customers(rng, customers, self.window, self.params)
        owners, times = population.purchases(rng, self.customers, self.window)
        self.orders = population.orders(rng, self.customers, self.window, owners, times, self.params)
        self.timeline = timeline.timeline(rng, self.customers, self.orders, self.window, self.params)
        self.renderer = Renderer(self.customers, self.orders, seed)
        self.plan = Plan(customers=customers, sessions=len(self.timeline), orders=len(self.orders),
                         start=datetime.fromtimestamp(self.window.start_t, UTC), end=end)

    def raw(self, first: int = 0, last: int | None = None) -> Iterator[list[Raw]]:
        """Raw messages of sessions ``first:last``, grouped per session."""
        tl, render = self.timeline, self.renderer.session
        last = len(tl) if last is None else last
        for lo in range(first, last, 50_000):
            hi = min(lo + 50_000, last)
            rows = zip(tl.kind[lo:hi].tolist(), tl.cust[lo:hi].tolist(), tl.t[lo:hi].tolist(),
                       tl.aux[lo:hi].tolist(), strict=True)
            for kind, cust, t, aux in rows:
                yield render(kind, cust, t, aux)

    def batches(self, size: int) -> Iterator[tuple[Batch, Progress]]:
        """Parsed messages in batches of about ``size``, with how far through the sessions we are."""
        batch: Batch = []
        progress = Progress(0)
        for done, session in enumerate(self.raw(), start=1):
            for raw in session:
                try:
                    batch.append((raw.source, parse_raw(raw)))
                except MessageError as exc:
                    progress.rejected.append(f"{raw.source} {raw.msg_type}: {exc}")
            if len(batch) >= size:
                progress.sessions_done = done
                yield batch, progress
                batch, progress = [], Progress(done)
        progress.sessions_done = len(self.timeline)
        yield batch, progress


# -- a second process --------------------------------------------------------
def _produce(queue, customers: int, seed: int, end: datetime, size: int, params: population.Params) -> None:
    """Worker process: build the stream and hand parsed batches to the ingesting process."""
    try:
        stream = DemoStream(customers, seed, end, params)
        queue.put(("plan", stream.plan))
        for batch, progress in stream.batches(size):
            queue.put(("batch", (batch, progress)))
        queue.put(("done", None))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put(("error", traceback.format_exc()))


class ParallelStream:
    """The same batches as ``DemoStream.batches``, produced by a forked process."""

    def __init__(self, customers: int, seed: int, end: datetime, size: int,
                 params: population.Params | None = None) -> None:
        # Forked, not spawned: the child inherits the configured Django and never touches either
        # database, and a spawned child would re-run the parent's main script.
        ctx = multiprocessing.get_context("fork")
        self._queue = ctx.Queue(maxsize=4)
        self._proc = ctx.Process(target=_produce, name="siyu-demo-generator", daemon=True,
                                 args=(self._queue, customers, seed, end, size, params or population.Params()))
        self._proc.start()
        self.plan: Plan = self._get("plan")

    def _get(self, want: str):
        kind, payload = self._queue.get()
        if kind == "error":
            self._proc.join(5)
            raise RuntimeError(f"the demo generator failed:\n{payload}")
        if kind != want:
            raise RuntimeError(f"the demo generator sent {kind!r}, expected {want!r}")
        return payload

    def batches(self) -> Iterator[tuple[Batch, Progress]]:
        finished = False
        try:
            while True:
                kind, payload = self._queue.get()
                if kind == "done":
                    finished = True
                    break
                if kind == "error":
                    raise RuntimeError(f"the demo generator failed:\n{payload}")
                yield payload
        finally:
            if not finished:  # the consumer stopped early (an error, Ctrl-C): stop the producer too
                self._proc.terminate()
            self._proc.join(30)

"""``collector.between_batches``: the cyclic collector runs when the caller says, not mid-batch."""

from __future__ import annotations

import gc

from siyu.collector import between_batches


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_collection_waits_for_the_batch_to_end_then_frees_its_cycles():
    generations: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            generations.append(info["generation"])

    was_enabled = gc.isenabled()
    gc.enable()
    gc.callbacks.append(record)
    try:
        with between_batches(full_every=3) as collect:
            assert not gc.isenabled()
            for _ in range(50_000):  # far past the automatic threshold: nothing collects
                _Cycle()
            assert generations == []
            for _ in range(6):
                collect()
            assert generations == [1, 1, 2, 1, 1, 2]
            assert not any(isinstance(o, _Cycle) for o in gc.get_objects())  # the cycles were freed
        assert gc.isenabled()  # switched back on, after a last full collection
        assert generations[-1] == 2
    finally:
        gc.callbacks.remove(record)
        if not was_enabled:
            gc.disable()


def test_it_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with between_batches() as collect:
            collect()
        assert not gc.isenabled()
    finally:
        gc.enable()

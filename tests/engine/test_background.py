"""An operator on its own thread: same batches in the same order, checkpoints wait for it,
its errors reach the pipeline."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import pyarrow as pa
import pytest

from ecomwatch.engine.background import InBackground


class Slow:
    name = "slow"

    def __init__(self, fail_at: int | None = None) -> None:
        self.seen: list[tuple[int, int | None]] = []
        self.threads: set[str] = set()
        self.fail_at = fail_at

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        time.sleep(0.01)
        value = events["n"][0].as_py()
        if value == self.fail_at:
            raise ValueError(f"bad batch {value}")
        self.threads.add(threading.current_thread().name)
        self.seen.append((value, watermark_us))

    def snapshot(self) -> dict:
        return {"seen": len(self.seen)}

    def restore(self, state: dict) -> None:
        self.seen = [(-1, None)] * state["seen"]


def batch(n: int) -> pa.Table:
    return pa.table({"n": [n]})


def test_batches_arrive_in_order_and_a_snapshot_waits_for_all_of_them():
    slow = Slow()
    background = InBackground(slow, depth=2)
    for n in range(20):
        background.process(batch(n), n * 10)
    snapshot = background.snapshot()
    assert isinstance(snapshot, Future)
    assert snapshot.result() == {"seen": 20}  # nothing was still on its way
    assert slow.seen == [(n, n * 10) for n in range(20)]
    assert slow.threads and threading.current_thread().name not in slow.threads
    background.restore({"seen": 3})
    assert len(slow.seen) == 3
    background.close()


def test_an_error_in_the_operator_is_raised_in_the_pipeline():
    background = InBackground(Slow(fail_at=3), depth=2)
    with pytest.raises(ValueError, match="bad batch 3"):
        for n in range(10):
            background.process(batch(n), None)
        background.snapshot()
    background.close()


class Gated(Slow):
    """Waits for the test before each batch; its snapshot holds its own list, which later
    batches change."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        self.gate.wait()
        super().process(events, watermark_us)

    def snapshot(self) -> dict:
        return {"seen": self.seen}


def test_the_pipeline_goes_on_while_a_snapshot_is_taken_and_the_snapshot_stays_as_taken():
    operator = Gated()
    background = InBackground(operator, depth=4)
    background.process(batch(0), 0)
    snapshot = background.snapshot()  # returns while batch 0 is still held at the gate
    background.process(batch(1), 1)
    assert isinstance(snapshot, Future) and not snapshot.done()
    operator.gate.set()
    background.drain()
    assert operator.seen == [(0, 0), (1, 1)]
    assert snapshot.result() == {"seen": [(0, 0)]}  # a copy, taken between the batches
    background.close()

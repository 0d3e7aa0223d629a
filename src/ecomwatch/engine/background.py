"""Run an operator on its own thread, so that it works while the pipeline decodes the next batch.

Batches reach the operator in order (one worker thread); at most `depth` wait, so memory stays
bounded and a slow operator slows the pipeline instead of falling behind without limit.
`snapshot` is taken on the same thread after every batch before it, so a checkpoint holds the
state that matches the committed source positions. An error in the operator is raised in the
pipeline at its next call.
"""

from __future__ import annotations

import copy
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from ecomwatch.engine.operator import Operator, State


class InBackground:
    def __init__(self, operator: Operator, *, depth: int = 4) -> None:
        self.operator = operator
        self.name = operator.name
        self.depth = depth
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"op-{operator.name}")
        self._pending: deque[Future[Any]] = deque()  # batches, and snapshots

    def process(self, events: pa.Table, watermark_us: int | None) -> None:
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self.operator.process, events, watermark_us))

    def drain(self) -> None:
        """Wait until the operator has processed every batch handed to it."""
        while self._pending:
            self._pending.popleft().result()

    def snapshot(self) -> State | Future[State]:
        """The operator's state once it has seen every batch handed to it, taken on its own
        thread: the pipeline goes on, and the commit waits for it (after its data files)."""
        state = self._pool.submit(self._copied_snapshot)
        self._pending.append(state)  # counted in the depth
        return state

    def _copied_snapshot(self) -> State:
        # A copy: the state may hold the operator's own dicts, which its next batches change
        # while the commit thread still serializes them.
        state = self.operator.snapshot()
        return copy.deepcopy(state.result() if isinstance(state, Future) else state)

    def restore(self, state: dict[str, Any]) -> None:
        self.drain()
        self.operator.restore(state)

    def close(self) -> None:
        """Stop the thread; batches not processed yet are dropped (the last checkpoint holds)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

"""A live source: events the collector accepted, handed to the engine in micro-batches.

The collector `offer`s decoded requests; the engine's `read` loop takes them out in batches of up
to `batch_rows` events, or once the oldest waiting request has waited `batch_seconds` (so what
came in while the engine worked on the last batch goes at once), and yields an empty batch
when nothing arrived for `batch_seconds` (so the engine's clock, watermark and commits go on
while idle). The queue is bounded in events and in time: a full queue, or one whose oldest
request has waited longer than `max_wait_s`, refuses the offer, and the collector answers 429.
The time bound keeps the delay from acceptance to detection short when clients send more than
the pipeline takes: they are told to retry instead of queueing seconds of backlog.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator

from ecomwatch.decode.validate import Decoded, merge_decoded
from ecomwatch.sources.base import Position, SourceBatch


class QueueSource:
    def __init__(
        self,
        *,
        source_id: str,
        max_events: int = 200_000,
        max_wait_s: float = 1.0,
        batch_rows: int = 20_000,
        batch_seconds: float = 0.15,
    ) -> None:
        self.name = "http collector"
        self.source_id = source_id
        self.size = 0
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self._items: deque[tuple[Decoded, float]] = deque()
        self._queued = 0  # events waiting
        self._taken = 0  # events handed to the engine
        self._closed = False
        self._ready = threading.Condition()
        self.latencies: deque[float] = deque(maxlen=10_000)  # queue wait of recent batches

    @property
    def depth(self) -> int:
        return self._queued

    def behind(self) -> bool:
        """The engine is not keeping up: the oldest queued request has waited half the time
        after which requests are refused."""
        with self._ready:
            return bool(self._items) and (
                time.monotonic() - self._items[0][1] > self.max_wait_s / 2
            )

    def offer(self, decoded: Decoded) -> bool:
        """Queue a decoded request; False (nothing queued) when it does not fit."""
        rows = decoded.read
        with self._ready:
            if self._closed:
                return False
            now = time.monotonic()
            if self._items and (
                self._queued + rows > self.max_events or now - self._items[0][1] > self.max_wait_s
            ):
                return False
            self._items.append((decoded, now))
            self._queued += rows
            self._ready.notify()
        return True

    def close(self) -> None:
        """No more offers; `read` ends once the queue is drained."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def read(self, start: Position) -> Iterator[SourceBatch]:
        while True:
            with self._ready:
                # A batch closes `batch_seconds` after its oldest request arrived (or when full):
                # requests that came while the engine worked on the last batch go at once.
                idle_until = time.monotonic() + self.batch_seconds
                while not self._items and not self._closed:
                    left = idle_until - time.monotonic()
                    if left <= 0:
                        break  # nothing came: an empty batch keeps the engine's clock going
                    self._ready.wait(left)
                while self._items and self._queued < self.batch_rows and not self._closed:
                    left = self._items[0][1] + self.batch_seconds - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                taken: list[tuple[Decoded, float]] = []
                rows = 0
                while self._items and (not taken or rows < self.batch_rows):
                    item = self._items.popleft()
                    taken.append(item)
                    rows += item[0].read
                self._queued -= rows
                finished = self._closed and not self._items
            if taken:
                now = time.monotonic()
                self.latencies.extend(now - at for _, at in taken)
                self._taken += rows
            yield SourceBatch(merge_decoded([d for d, _ in taken]), Position(self._taken, 1), 0)
            if finished:
                return

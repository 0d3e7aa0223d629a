"""Event time: the watermark and the clocks that advance it when the stream goes quiet."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

US = 1_000_000


class Clock(Protocol):
    def now(self) -> float:
        """Seconds, monotonic."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()


@dataclass
class FakeClock:
    """A clock the tests move by hand."""

    current: float = 0.0

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds


class Watermark:
    """Max event time seen minus the allowed lateness, never moving backwards.

    When no event arrives for `idle_timeout_s` of clock time, the watermark also moves forward
    with the clock, so windows of a key that went silent still close.
    """

    def __init__(
        self, *, lateness_s: float, idle_timeout_s: float = 10.0, clock: Clock | None = None
    ) -> None:
        self.lateness_us = int(lateness_s * US)
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock or SystemClock()
        self.max_event_us: int | None = None
        self._value: int | None = None
        self._last_arrival = self.clock.now()

    def current(self) -> int | None:
        """The watermark in microseconds since the epoch (None before any event)."""
        if self.max_event_us is None:
            return self._value
        candidate = self.max_event_us - self.lateness_us
        idle = self.clock.now() - self._last_arrival
        if idle > self.idle_timeout_s:
            candidate += int(idle * US)
        if self._value is None or candidate > self._value:
            self._value = candidate
        return self._value

    def observe(self, event_time: pa.Array | pa.ChunkedArray) -> int:
        """Take a batch's event times; return how many of them were late on arrival."""
        if len(event_time) == 0:
            return 0
        before = self.current()
        micros = pc.cast(event_time, pa.timestamp("us", tz="UTC")).cast(pa.int64())
        late = 0 if before is None else int(pc.sum(pc.less(micros, before)).as_py() or 0)
        batch_max = int(pc.max(micros).as_py())
        if self.max_event_us is None or batch_max > self.max_event_us:
            self.max_event_us = batch_max
        self._last_arrival = self.clock.now()
        self.current()
        return late

    def snapshot(self) -> dict[str, Any]:
        return {"max_event_us": self.max_event_us, "watermark_us": self._value}

    def restore(self, state: dict[str, Any]) -> None:
        self.max_event_us = state.get("max_event_us")
        self._value = state.get("watermark_us")
        self._last_arrival = self.clock.now()

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
        self.bound_us: int | None = None  # the source's latest bound (not snapshotted)

    def current(self) -> int | None:
        """The watermark in microseconds since the epoch (None before any event)."""
        if self.max_event_us is None:
            return self._value
        latest = self.max_event_us
        if self.bound_us is not None:
            if self.bound_us <= 0:
                return self._value  # held until the part behind has given its first events
            latest = min(latest, self.bound_us)
        candidate = latest - self.lateness_us
        idle = self.clock.now() - self._last_arrival
        if idle > self.idle_timeout_s:
            candidate += int(idle * US)
        if self._value is None or candidate > self._value:
            self._value = candidate
        return self._value

    def observe(
        self, event_time: pa.Array | pa.ChunkedArray, *, bound_us: int | None = None
    ) -> int:
        """Take a batch's event times; return how many of them were late on arrival.

        `bound_us`, from a source of parts read side by side, holds the watermark at or before
        that event time (plus lateness) until the part behind catches up."""
        if len(event_time) == 0:
            self.bound_us = bound_us
            return 0
        before = self.current()  # as the batch found it: the bound of the batch before
        self.bound_us = bound_us
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

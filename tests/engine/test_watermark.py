from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomwatch.engine.watermark import US, Watermark
from ecomwatch.testing import FakeClock


def times(seconds: list[int]) -> pa.Array:
    return pa.array([s * US for s in seconds], pa.timestamp("us", tz="UTC"))


def test_watermark_is_max_minus_lateness_and_counts_late_events():
    mark = Watermark(lateness_s=10, clock=FakeClock())
    assert mark.current() is None
    assert mark.observe(times([100, 105])) == 0
    assert mark.current() == 95 * US
    # 90 is before the watermark (95): late. 96 is not.
    assert mark.observe(times([90, 96])) == 1
    assert mark.current() == 95 * US


def test_a_bound_holds_the_watermark_for_the_part_behind():
    """Two shards read side by side: one far ahead must not make the other's events late."""
    mark = Watermark(lateness_s=10, clock=FakeClock())
    # The first shard's events arrive while the second has given nothing yet: held (0).
    assert mark.observe(times([100, 5000]), bound_us=0) == 0
    assert mark.current() is None
    # The second shard's first events, up to 300: the watermark may reach 300 - 10.
    assert mark.observe(times([100, 300]), bound_us=300 * US) == 0
    assert mark.current() == 290 * US
    # Its next events (from 300 on) are on time; an event before the watermark is still late.
    assert mark.observe(times([300, 280, 4000]), bound_us=4000 * US) == 1
    assert mark.current() == 3990 * US
    # Without a bound it is max - lateness again.
    mark.observe(times([6000]))
    assert mark.current() == 5990 * US


def test_idle_clock_moves_the_watermark_so_quiet_windows_close():
    clock = FakeClock()
    mark = Watermark(lateness_s=10, idle_timeout_s=5, clock=clock)
    mark.observe(times([100]))
    clock.advance(4)
    assert mark.current() == 90 * US  # not idle long enough yet
    clock.advance(26)
    assert mark.current() == 120 * US  # 30 s idle: 90 + 30
    mark.observe(times([101]))  # an old event after the idle jump does not pull it back
    assert mark.current() == 120 * US


def test_snapshot_restore_round_trip():
    mark = Watermark(lateness_s=1, clock=FakeClock())
    mark.observe(times([50]))
    other = Watermark(lateness_s=1, clock=FakeClock())
    other.restore(mark.snapshot())
    assert other.current() == mark.current()


@settings(max_examples=200, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 10_000), max_size=20), max_size=30),
    idles=st.lists(st.floats(0, 100), max_size=30),
    lateness=st.integers(0, 500),
)
def test_watermark_never_goes_backwards(batches, idles, lateness):
    clock = FakeClock()
    mark = Watermark(lateness_s=lateness, idle_timeout_s=5, clock=clock)
    previous = None
    for i, batch in enumerate(batches):
        mark.observe(times(batch))
        if i < len(idles):
            clock.advance(idles[i])
        now = mark.current()
        if previous is not None:
            assert now is not None and now >= previous
        previous = now

"""The collector's queue: bounded in events and in how long its oldest request waits."""

from __future__ import annotations

import time

from ecomwatch.serve.queue_source import QueueSource
from ecomwatch.sources.base import Position
from tests.serve.test_collector_api import event
from tests.serve.test_collector_decode import decode, ndjson


def request(n: int):
    return decode(ndjson([event(i) for i in range(n)]))


def test_a_queue_refuses_when_full_or_when_its_oldest_request_waited_too_long():
    queue = QueueSource(source_id="q", max_events=100, max_wait_s=0.2, batch_seconds=0.01)
    assert queue.offer(request(60))
    assert not queue.offer(request(60))  # 120 > 100 events
    assert queue.offer(request(40))
    batches = queue.read(Position())
    assert next(batches).decoded.events.num_rows == 100  # drained: room again
    assert queue.offer(request(10))
    time.sleep(0.3)
    assert not queue.offer(request(10))  # the oldest waited 0.3 s > 0.2 s
    assert next(batches).decoded.events.num_rows == 10
    assert queue.offer(request(10))  # an empty queue always takes a request
    queue.close()
    assert sum(b.decoded.events.num_rows for b in batches) == 10


def test_a_batch_closes_batch_seconds_after_its_oldest_request_arrived():
    queue = QueueSource(source_id="q", batch_seconds=0.3, batch_rows=1_000)
    batches = queue.read(Position())
    assert queue.offer(request(5))
    started = time.monotonic()
    assert next(batches).decoded.events.num_rows == 5
    assert time.monotonic() - started >= 0.25  # waited for more, up to batch_seconds
    assert queue.offer(request(7))
    time.sleep(0.4)  # as if the engine were busy with the last batch
    started = time.monotonic()
    assert next(batches).decoded.events.num_rows == 7
    assert time.monotonic() - started < 0.2  # it had waited long enough: taken at once
    started = time.monotonic()
    assert next(batches).decoded.events.num_rows == 0  # idle: an empty batch
    assert time.monotonic() - started >= 0.25
    queue.close()


def test_a_queue_is_behind_once_its_oldest_request_waited_half_the_refusal_time():
    queue = QueueSource(source_id="q", max_wait_s=0.4, batch_seconds=0.01)
    assert not queue.behind()  # empty
    assert queue.offer(request(3))
    assert not queue.behind()
    time.sleep(0.25)
    assert queue.behind()
    batches = queue.read(Position())
    assert next(batches).decoded.events.num_rows == 3
    assert not queue.behind()
    queue.close()

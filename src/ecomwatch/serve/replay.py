"""Send a file of events to a collector at a chosen pace (demos and load tests).

Rows are read through the same decoders as `ecomwatch run` (rejected rows are not sent), encoded
as NDJSON a block at a time (`ndjson`) and POSTed in batches over keep-alive connections. `rate`
paces by events per second, `speed` by event time (2.0: twice as fast as the events happened);
neither: as fast as the collector takes them. A 429 is retried after its Retry-After delay;
nothing is dropped.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.config import Config
from ecomwatch.serve.ndjson import encode_lines
from ecomwatch.sources.base import Position


@dataclass
class ReplayStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    retries_429: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return (
                round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)
                if (ordered)
                else None
            )

        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "requests": self.requests,
            "retries_429": self.retries_429,
            "seconds": round(self.seconds, 3),
            "events_per_s": round(self.accepted / self.seconds) if self.seconds else 0,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
        }


@dataclass(frozen=True)
class Body:
    """One request: NDJSON lines, their count and the earliest event time among them."""

    first_us: int
    data: bytes
    rows: int


def event_blocks(paths: list[Path], config: Config | None = None) -> Iterator[pa.Table]:
    """The files' accepted events in the blocks the decoders read, in file order (web logs
    read as `config`'s `[weblog]` says)."""
    from ecomwatch.ingest import open_inputs

    sources, errors = open_inputs(paths, config or Config())
    if errors:
        raise ValueError(str(errors[0]))
    for source in sources:
        for part in source.read(Position()):
            if part.decoded.events.num_rows:
                yield part.decoded.events


def request_bodies(blocks: Iterable[pa.Table], batch: int) -> Iterator[Body]:
    """Each block's events as NDJSON bodies of up to `batch` events (one DuckDB connection
    encodes them all)."""
    con = duckdb.connect()
    for block in blocks:
        lines = encode_lines(block, con)
        for start in range(0, len(lines), batch):
            stop = min(start + batch, len(lines))
            first_us = int(lines.times_us[start:stop].min())
            yield Body(first_us, lines.body(start, stop), stop - start)


class Sender:
    """One keep-alive connection; POSTs a batch and retries 429s."""

    def __init__(self, url: str, token: str | None, compress: bool) -> None:
        parts = urlsplit(url)
        self.host = parts.netloc
        self.path = (parts.path or "/").rstrip("/") + "/v1/events"
        self.headers = {"Content-Type": "application/x-ndjson"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        if compress:
            self.headers["Content-Encoding"] = "gzip"
        self.compress = compress
        self.connection = http.client.HTTPConnection(self.host, timeout=60)

    def post(self, batch: Body, stats: ReplayStats, lock: threading.Lock) -> None:
        body = gzip.compress(batch.data, 1) if self.compress else batch.data
        while True:
            started = time.perf_counter()
            try:
                self.connection.request("POST", self.path, body, self.headers)
                response = self.connection.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                self.connection = http.client.HTTPConnection(self.host, timeout=60)
                time.sleep(0.5)
                continue
            elapsed = time.perf_counter() - started
            if response.status == 429:
                with lock:
                    stats.retries_429 += 1
                time.sleep(float(response.getheader("Retry-After", "1")))
                continue
            if response.status >= 300 and response.status != 422:
                raise RuntimeError(f"the collector answered {response.status}: {payload[:300]!r}")
            answer = json.loads(payload)
            with lock:
                stats.requests += 1
                stats.sent += batch.rows
                stats.accepted += answer["accepted"]
                stats.rejected += len(answer["rejected"])
                stats.latencies.append(elapsed)
            return


def replay(
    paths: list[Path],
    url: str,
    *,
    token: str | None = None,
    rate: float | None = None,
    speed: float | None = None,
    batch: int = 500,
    connections: int = 1,
    compress: bool = False,
    repeat_for_s: float | None = None,
    on_progress: Callable[[int], None] | None = None,
    config: Config | None = None,
) -> ReplayStats:
    """Send the files (again and again for `repeat_for_s` seconds, if given)."""
    stats = ReplayStats()
    lock = threading.Lock()
    local = threading.local()

    def send(body: Body) -> None:
        if not hasattr(local, "sender"):
            local.sender = Sender(url, token, compress)
        local.sender.post(body, stats, lock)
        if on_progress:
            on_progress(body.rows)

    if repeat_for_s is None:
        started = time.perf_counter()
        bodies = request_bodies(event_blocks(paths, config), batch)
    else:
        # Sent over and over: the files are read before the clock starts, so that reading them
        # counts neither in the time sent for nor in the events/s (nor makes a paced run catch
        # up).
        blocks = list(event_blocks(paths, config))
        started = time.perf_counter()
        bodies = _repeated_bodies(blocks, batch, started, repeat_for_s)
    first_event: int | None = None
    queued = 0
    with ThreadPoolExecutor(max(1, connections), thread_name_prefix="replay") as pool:
        pending = []
        for body in bodies:
            first_event = body.first_us if first_event is None else first_event
            if rate:
                sleep_until(started + queued / rate)
            elif speed:
                sleep_until(started + (body.first_us - first_event) / 1e6 / speed)
            queued += body.rows
            pending.append(pool.submit(send, body))
            if len(pending) >= 4 * connections:  # bounded: the file is not read ahead
                pending.pop(0).result()
        for future in pending:
            future.result()
    stats.seconds = time.perf_counter() - started
    return stats


def _repeated_bodies(
    blocks: list[pa.Table], batch: int, started: float, repeat_for_s: float
) -> Iterator[Body]:
    """The blocks sent over and over until `repeat_for_s` after `started`; each round moves the
    event times on by the blocks' span, so that time keeps going forward as in a real stream."""
    times = pa.chunked_array([b["event_time"] for b in blocks]).cast(pa.int64())
    span_us = int(pc.max(times).as_py()) - int(pc.min(times).as_py()) + 1_000_000
    rounds = 0

    def moved(shift_us: int) -> Iterator[pa.Table]:
        shift = pa.scalar(shift_us, pa.duration("us"))
        for block in blocks:
            yield block.set_column(0, "event_time", pc.add(block["event_time"], shift))

    while time.perf_counter() - started < repeat_for_s:
        for body in request_bodies(moved(rounds * span_us) if rounds else blocks, batch):
            if time.perf_counter() - started >= repeat_for_s:
                return
            yield body
        rounds += 1


def sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)

"""Send a file of events to a collector at a chosen pace (demos and load tests).

Rows are read through the same decoders as `ecomwatch run` (rejected rows are not sent), turned
into JSON and POSTed in batches over keep-alive connections. `rate` paces by events per second,
`speed` by event time (2.0: twice as fast as the events happened); neither: as fast as the
collector takes them. A 429 is retried after its Retry-After delay; nothing is dropped.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.config import Config
from ecomwatch.sources.base import Position

SENT_COLUMNS = (
    "event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price",
    "user_id", "user_session", "ip", "user_agent", "event_id",
)  # fmt: skip


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


def event_batches(paths: list[Path], batch: int) -> Iterator[pa.Table]:
    """The files' accepted events in batches of `batch`, in file order."""
    from ecomwatch.ingest import open_inputs

    sources, errors = open_inputs(paths, Config())
    if errors:
        raise ValueError(str(errors[0]))
    for source in sources:
        for part in source.read(Position()):
            events = part.decoded.events
            for offset in range(0, events.num_rows, batch):
                yield events.slice(offset, batch)


def json_batches(paths: list[Path], batch: int) -> Iterator[tuple[int, list[bytes]]]:
    """(first event time in µs, rows as JSON) per batch, in file order."""
    for chunk in event_batches(paths, batch):
        yield _encoded(chunk)


def _encoded(chunk: pa.Table) -> tuple[int, list[bytes]]:
    return _first_time(chunk), [json.dumps(r).encode() for r in _records(chunk)]


def _first_time(events: pa.Table) -> int:
    return int(pc.min(events["event_time"]).cast(pa.int64()).as_py())


def _records(events: pa.Table) -> list[dict[str, Any]]:
    columns = [c for c in SENT_COLUMNS if c in events.column_names]
    table = events.select(columns)
    stamps = table["event_time"]
    micros = stamps.cast(pa.int64()).to_numpy()
    if not (micros % 1_000_000).any():  # REES46 times: no fraction to send
        stamps = stamps.cast(pa.timestamp("s", tz="UTC"))
    times = pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%SZ")
    table = table.set_column(0, "event_time", times)
    rows = table.to_pylist()
    for row in rows:
        for key in [k for k, v in row.items() if v is None]:
            del row[key]
    return rows


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

    def post(self, rows: list[bytes], stats: ReplayStats, lock: threading.Lock) -> None:
        body = b"\n".join(rows)
        if self.compress:
            body = gzip.compress(body, 1)
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
                stats.sent += len(rows)
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
) -> ReplayStats:
    """Send the files (again and again for `repeat_for_s` seconds, if given)."""
    stats = ReplayStats()
    lock = threading.Lock()
    local = threading.local()

    def send(rows: list[bytes]) -> None:
        if not hasattr(local, "sender"):
            local.sender = Sender(url, token, compress)
        local.sender.post(rows, stats, lock)
        if on_progress:
            on_progress(len(rows))

    started = time.perf_counter()
    first_event: int | None = None
    queued = 0
    with ThreadPoolExecutor(max(1, connections), thread_name_prefix="replay") as pool:
        pending = []
        for event_us, rows in _batches(paths, batch, started, repeat_for_s):
            first_event = event_us if first_event is None else first_event
            if rate:
                _sleep_until(started + queued / rate)
            elif speed:
                _sleep_until(started + (event_us - first_event) / 1e6 / speed)
            queued += len(rows)
            pending.append(pool.submit(send, rows))
            if len(pending) >= 4 * connections:  # bounded: the file is not read ahead
                pending.pop(0).result()
        for future in pending:
            future.result()
    stats.seconds = time.perf_counter() - started
    return stats


def _batches(
    paths: list[Path], batch: int, started: float, repeat_for_s: float | None
) -> Iterator[tuple[int, list[bytes]]]:
    if repeat_for_s is None:
        yield from json_batches(paths, batch)
        return
    # Sent over and over until the time is up; each round moves the event times on by the
    # files' span, so that time keeps going forward as in a real stream.
    chunks = list(event_batches(paths, batch))
    times = pa.chunked_array([c["event_time"] for c in chunks]).cast(pa.int64())
    span_us = int(pc.max(times).as_py()) - int(pc.min(times).as_py()) + 1_000_000
    rounds = 0
    while time.perf_counter() - started < repeat_for_s:
        shift = pa.scalar(rounds * span_us, pa.duration("us"))
        for chunk in chunks:
            if time.perf_counter() - started >= repeat_for_s:
                return
            moved = pc.add(chunk["event_time"], shift) if rounds else chunk["event_time"]
            yield _encoded(chunk.set_column(0, "event_time", moved))
        rounds += 1


def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)

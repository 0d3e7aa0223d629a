"""`ecomwatch bench kinesis`: consuming a Kinesis stream into the lake with detection, against a
do-nothing consumer of the same stream in the same run (the server's own ceiling).

1. A stream of `shards` shards is filled with `events` simulated events, `per_record` to a
   record (how shops pack them).
2. The baseline reads it whole with the same polling limits (one GetRecords per shard per
   0.2 s, the same Limit, all shards at once) and keeps nothing.
3. `ecomwatch run`'s path (KinesisSource → engine → Hudi lake + detector) reads it whole.
4. Live: a producer sends `live_seconds` of events at `live_rate` events/s into a new stream
   while the consumer runs, event time going as fast as the clock; the memory over that phase,
   and, once the producer stops, how long until every event is read.

Memory is this process's resident set, sampled every half second during step 3. The server is
kinesis-local (from services/, `make services`) or moto's (a dev dependency), started here,
unless `endpoint` names another.
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console

from ecomwatch.benchmarks.workdir import bench_workdir
from ecomwatch.cli.stream_commands import poll_settings
from ecomwatch.config import Config, load_config
from ecomwatch.detect.rules import load_rules
from ecomwatch.ingest import ingest
from ecomwatch.process_memory import peak_rss_mb, rss_mb
from ecomwatch.serve.stream_replay import replay_to_stream
from ecomwatch.simulate.attacks import AttackScenario, in_chunks
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic
from ecomwatch.sources.kinesis import KinesisSource, PollSettings
from ecomwatch.testing_servers import kinesis_local, moto_server


def _client(endpoint: str) -> Any:
    return boto3.client("kinesis", endpoint_url=endpoint)


def _create(endpoint: str, name: str, shards: int) -> None:
    kinesis = _client(endpoint)
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    while (
        kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        != "ACTIVE"
    ):
        time.sleep(0.1)


def null_consumer(endpoint: str, name: str, settings: PollSettings, per_record: int) -> float:
    """Read every shard to its tip and keep nothing; seconds taken."""
    kinesis = _client(endpoint)
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=name)["Shards"]]
    limit = max(1, min(10_000, settings.target_events // per_record))

    def drain(shard_id: str) -> int:
        iterator = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        events = 0
        while iterator:
            called = time.monotonic()
            response = kinesis.get_records(ShardIterator=iterator, Limit=limit)
            records = response["Records"]
            events += sum(r["Data"].count(b"\n") + 1 for r in records)
            if response.get("MillisBehindLatest") == 0 and len(records) < limit:
                return events
            iterator = response.get("NextShardIterator")
            time.sleep(max(0.0, settings.poll_interval_s - (time.monotonic() - called)))
        return events

    started = time.perf_counter()
    with ThreadPoolExecutor(len(shards)) as pool:
        list(pool.map(drain, shards))
    return time.perf_counter() - started


class _Memory:
    """This process's resident memory every half second, in a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(0.5):
            self.samples.append((time.monotonic() - started, rss_mb()))

    def __enter__(self) -> _Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict[str, Any]:
        later = [mb for t, mb in self.samples if t >= self.samples[-1][0] * 0.2] or [0.0]
        end = self.samples[-1][0] if self.samples else 1.0
        tenths = [
            max((mb for t, mb in self.samples if i <= 10 * t / end < i + 1), default=0.0)
            for i in range(10)
        ]
        return {
            "rss_mb_max_by_tenth": [round(mb) for mb in tenths],
            "rss_mb_after_first_fifth_min": round(min(later), 1),
            "rss_mb_after_first_fifth_max": round(max(later), 1),
            "rss_mb_per_min_after_first_fifth": self._slope(1 / 5),
            "rss_mb_per_min_last_quarter": self._slope(3 / 4),
        }

    def _slope(self, after: float) -> float | None:
        """MB per minute, least squares over the samples past `after` of the phase."""
        tail = self.samples[int(len(self.samples) * after) :]
        if len(tail) < 4:
            return None
        times, mbs = zip(*tail, strict=True)
        return round(statistics.linear_regression(times, mbs).slope * 60, 1)


def _simulate_live(out: Path, events: int, seconds: float) -> None:
    write_traffic(generate(TrafficSpec(events=events, seed=18, days=seconds / 86_400)), out)


def run_kinesis_bench(
    *,
    events: int,
    shards: int,
    per_record: int,
    live_seconds: float,
    live_rate: float,
    endpoint: str | None,
    server: str,
    workdir: Path | None,
    console: Console,
) -> dict[str, Any]:
    with (
        bench_workdir(workdir, "ecomwatch-bench-kinesis-") as base,
        _server(endpoint, server) as url,
        _aws_env(url),
    ):
        figures = _measure(
            url, base, events=events, shards=shards, per_record=per_record,
            live_seconds=live_seconds, live_rate=live_rate, console=console,
        )  # fmt: skip
        return {**figures, "server": endpoint or server}


SERVERS: dict[str, Callable[[], AbstractContextManager[str]]] = {
    "kinesis-local": kinesis_local,
    "moto": moto_server,
}


@contextmanager
def _server(endpoint: str | None, server: str) -> Iterator[str]:
    if endpoint:
        yield endpoint
    else:
        with SERVERS[server]() as url:
            yield url


@contextmanager
def _aws_env(url: str) -> Iterator[None]:
    import os

    settings = {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
        "AWS_DEFAULT_REGION": os.environ.get("AWS_REGION", "us-east-1"),
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _measure(
    url: str,
    base: Path,
    *,
    events: int,
    shards: int,
    per_record: int,
    live_seconds: float,
    live_rate: float,
    console: Console,
) -> dict[str, Any]:
    config = load_config()  # ECOMWATCH_* settings apply
    settings = poll_settings(config)
    data = base / "traffic.csv"
    table, _ = AttackScenario(TrafficSpec(events=events, seed=17, days=events / 2_000_000)).build()
    write_traffic(in_chunks(table), data)
    name = f"bench-{int(time.time())}"
    _create(url, name, shards)
    console.print(f"filling a {shards}-shard stream with {events:,} events, {per_record} a record")
    put = replay_to_stream([data], name, per_record=per_record)

    console.print("do-nothing consumer: reading the stream whole")
    null_s = null_consumer(url, name, settings, per_record)

    console.print("ecomwatch: the stream into a Hudi lake with detection")
    source = KinesisSource(name, until_caught_up=True, settings=settings)
    with _Memory() as memory:
        started = time.perf_counter()
        summary = ingest(
            [], base / "lake", config=config, opened=([source], []), alerts=base / "alerts.jsonl",
            rules=load_rules(), checkpoint_seconds=config.serve.commit_seconds,
            behind=source.behind,
        )  # fmt: skip
        run_s = time.perf_counter() - started
    assert summary.accepted == put.events, (summary.accepted, put.events)

    console.print(f"live: {live_rate:,.0f} events/s for {live_seconds:.0f} s while consuming")
    lag = _live_lag(url, base, shards, per_record, live_seconds, live_rate, config, settings)
    return {
        "bench": "kinesis",
        "events": events,
        "shards": shards,
        "per_record": per_record,
        "put_events_per_s": put.to_json()["events_per_s"],
        "null_consumer_s": round(null_s, 2),
        "null_consumer_events_per_s": round(events / null_s),
        "run_s": round(run_s, 2),
        "run_events_per_s": round(events / run_s),
        "ratio_to_null_consumer": round(null_s / run_s, 3),
        "alerts": sum(1 for _ in (base / "alerts.jsonl").open()),
        "commits": summary.checkpoints,
        **memory.figures(),
        "peak_rss_mb": peak_rss_mb(),
        **lag,
    }


def _live_lag(
    url: str,
    base: Path,
    shards: int,
    per_record: int,
    seconds: float,
    rate: float,
    config: Config,
    settings: PollSettings,
) -> dict[str, Any]:
    """Produce at `rate` for `seconds` while consuming, event time going as fast as the clock
    (so the rules' retention evicts as it would in production): the consumer's memory over the
    phase, and the time from the producer's end until the consumer has read every event."""
    data = base / "live.csv"
    # Simulated in a child process: the memory measured below is the consumer's, not what
    # simulating hours of traffic took.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_simulate_live, data, int(rate * seconds), seconds).result()
    name = f"live-{int(time.time())}"
    _create(url, name, shards)
    source = KinesisSource(name, settings=settings)
    consumer = threading.Thread(
        target=ingest,
        args=([], base / "live-lake"),
        kwargs={
            "config": config, "opened": ([source], []), "alerts": base / "live-alerts.jsonl",
            "checkpoint_seconds": config.serve.commit_seconds, "behind": source.behind,
        },
        daemon=True,
    )  # fmt: skip
    with _Memory() as memory:
        consumer.start()
        put = replay_to_stream([data], name, per_record=per_record, rate=rate)
    stopped = time.perf_counter()
    deadline = stopped + 120
    while sum(s.read for s in source.shards.values()) < put.events:
        if time.perf_counter() > deadline:
            break
        time.sleep(0.05)
    caught_up_s = time.perf_counter() - stopped
    source.stop()
    consumer.join(60)
    return {
        "live_events": put.events,
        "live_put_events_per_s": put.to_json()["events_per_s"],
        "live_read_all_s_after_producer_stopped": round(caught_up_s, 2),
        **{f"live_{key}": value for key, value in memory.figures().items()},
    }

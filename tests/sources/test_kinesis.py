"""The Kinesis source and producer against real Kinesis-compatible servers on loopback."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import duckdb
import pytest

from ecomwatch.config import Config
from ecomwatch.decode.kpl import SubRecord, aggregate
from ecomwatch.engine.pipeline import Pipeline
from ecomwatch.engine.watermark import Watermark
from ecomwatch.ingest import ingest
from ecomwatch.lake.open import open_lake
from ecomwatch.serve.stream_replay import replay_to_stream
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic
from ecomwatch.sinks.jsonl import read_json_lines
from ecomwatch.sinks.kinesis_producer import KinesisProducer, OutRecord
from ecomwatch.sources.kinesis import KinesisSource, PollSettings, StartAt
from ecomwatch.testing import MemoryCommitter
from tests.kinesis_servers import create_stream, use_endpoint, wait_active

pytestmark = pytest.mark.integration

FAST = PollSettings(poll_interval_s=0.2, idle_poll_s=0.2, list_interval_s=1.0, retry_for_s=5)


def shop_file(tmp_path: Path, events: int, seed: int = 3) -> Path:
    path = tmp_path / f"shop-{seed}.csv"
    write_traffic(generate(TrafficSpec(events=events, seed=seed, days=0.05)), path)
    return path


def consume(stream: str, lake: Path, **options: Any) -> tuple[Any, KinesisSource]:
    source = KinesisSource(
        stream, until_caught_up=True, settings=options.pop("settings", FAST), **options
    )
    summary = ingest([], lake, config=Config(), opened=([source], []), checkpoint_seconds=1)
    return summary, source


def consume_in_background(
    source: KinesisSource, lake: Path
) -> tuple[threading.Thread, dict[str, Any]]:
    """A consumer running until `source.stop()`; its summary lands in the dict."""
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(
            summary=ingest([], lake, config=Config(), opened=([source], []), checkpoint_seconds=1)
        )
    )
    thread.start()
    return thread, result


def lake_keys(lake: Path) -> list[str]:
    files = open_lake(lake).data_files()
    if not files:
        return []
    return [
        row[0]
        for row in duckdb.sql(f"SELECT _hoodie_record_key FROM read_parquet({files})").fetchall()
    ]


def event_line(i: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "event_time": f"2019-11-01T00:00:{i % 60:02d}Z",
        "event_type": "view",
        "product_id": 500 + i,
        "price": 3.0,
        "user_id": 9,
        "user_session": "s",
        "ip": "10.1.1.1",
    }
    return {**row, **changes}


def test_every_shard_into_the_lake_with_rejects_named(
    any_kinesis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(monkeypatch, any_kinesis)
    name = f"shop-{time.monotonic_ns()}"
    kinesis = create_stream(any_kinesis, name, 4)
    sent = replay_to_stream([shop_file(tmp_path, 4_000)], name, per_record=50)
    assert sent.events == 4_000
    # Other shapes a producer sends: a JSON array, gzip, a KPL record, a damaged record.
    lines = [json.dumps(event_line(i)) for i in range(6)]
    odd = [
        ("[" + ",".join(lines[:2]) + "]").encode(),
        gzip.compress("\n".join(lines[2:4]).encode()),
        aggregate([SubRecord("a", lines[4].encode()), SubRecord("b", lines[5].encode())]),
        b"\x1f\x8b not gzip",
        json.dumps(event_line(9, price="free")).encode(),
    ]
    for data in odd:
        kinesis.put_record(StreamName=name, Data=data, PartitionKey="k")

    summary, source = consume(name, tmp_path / "lake")

    assert summary.read == 4_000 + 6 + 2
    assert summary.accepted == 4_006 and summary.rejected == 2
    shards = source.shards.values()
    assert len(source.shards) == 4
    assert sum(s.read for s in shards) == summary.read
    assert all(s.read == s.accepted + s.rejected for s in shards)
    keys = lake_keys(tmp_path / "lake")
    assert len(keys) == len(set(keys)) == 4_006
    assert sum(".1:0" in k or ".0:0" in k for k in keys) == 2  # the KPL sub-records
    rejects = read_json_lines(Path(summary.dead_letter or ""))
    assert {r["reason"] for r in rejects} == {"undecodable_record", "bad_price"}
    assert all(r["source"].startswith(f"kinesis:{name}/shardId-") for r in rejects)


def test_a_second_run_reads_only_what_is_new(
    any_kinesis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(monkeypatch, any_kinesis)
    name = f"again-{time.monotonic_ns()}"
    create_stream(any_kinesis, name, 2)
    replay_to_stream([shop_file(tmp_path, 1_500, seed=1)], name, per_record=25)
    first, _ = consume(name, tmp_path / "lake")
    again, _ = consume(name, tmp_path / "lake")
    replay_to_stream([shop_file(tmp_path, 700, seed=2)], name, per_record=1)
    third, _ = consume(name, tmp_path / "lake")
    assert (first.accepted, again.accepted, third.accepted) == (1_500, 0, 700)
    keys = lake_keys(tmp_path / "lake")
    assert len(keys) == len(set(keys)) == 2_200


def test_from_latest_skips_what_came_before(
    moto_kinesis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(monkeypatch, moto_kinesis)
    name = f"latest-{time.monotonic_ns()}"
    create_stream(moto_kinesis, name, 1)
    replay_to_stream([shop_file(tmp_path, 300, seed=4)], name)
    source = KinesisSource(name, start=StartAt.parse("latest"), settings=FAST)
    lake = tmp_path / "lake"
    thread, result = consume_in_background(source, lake)
    time.sleep(1.5)  # the consumer has its iterators
    replay_to_stream([shop_file(tmp_path, 200, seed=5)], name)
    wait_until(lambda: sum(s.read for s in source.shards.values()) >= 200)
    source.stop()
    thread.join(30)
    assert result["summary"].accepted == 200


def wait_until(condition: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_resharding_while_running_loses_and_doubles_nothing(
    kinesis_local: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(monkeypatch, kinesis_local)
    name = f"reshard-{time.monotonic_ns()}"
    kinesis = create_stream(kinesis_local, name, 2)
    source = KinesisSource(name, settings=FAST)
    lake = tmp_path / "lake"
    thread, result = consume_in_background(source, lake)
    replay_to_stream([shop_file(tmp_path, 600, seed=6)], name, per_record=10)
    shards = kinesis.list_shards(StreamName=name)["Shards"]
    first = shards[0]
    low, high = (int(first["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
    kinesis.split_shard(
        StreamName=name, ShardToSplit=first["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    wait_active(kinesis, name)
    replay_to_stream([shop_file(tmp_path, 600, seed=7)], name, per_record=10)
    open_shards = [
        s
        for s in kinesis.list_shards(StreamName=name)["Shards"]
        if "EndingSequenceNumber" not in s["SequenceNumberRange"]
    ]
    children = sorted(
        (s for s in open_shards if s.get("ParentShardId") == first["ShardId"]),
        key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]),
    )
    kinesis.merge_shards(
        StreamName=name,
        ShardToMerge=children[0]["ShardId"],
        AdjacentShardToMerge=children[1]["ShardId"],
    )
    wait_active(kinesis, name)
    replay_to_stream([shop_file(tmp_path, 600, seed=8)], name, per_record=10)
    wait_until(lambda: sum(s.read for s in source.shards.values()) >= 1_800)
    time.sleep(1.0)  # anything more would be a double
    source.stop()
    thread.join(60)
    summary = result["summary"]
    assert summary.accepted == 1_800
    keys = lake_keys(lake)
    assert len(keys) == len(set(keys)) == 1_800
    states = source.shards
    assert len(states) == 5  # 2 + 2 children of the split + 1 of the merge
    assert states[first["ShardId"]].finished
    assert all(states[c["ShardId"]].finished for c in children)


class FlakyClient:
    """A real client whose calls fail the way the service fails, a set number of times."""

    def __init__(self, real: Any, *, throttles: int, expiries: int, outages: int) -> None:
        self.real = real
        self.throttles, self.expiries, self.outages = throttles, expiries, outages
        self.partial_puts = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @staticmethod
    def error(code: str, operation: str) -> botocore.exceptions.ClientError:
        return botocore.exceptions.ClientError(
            {
                "Error": {"Code": code, "Message": "injected"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
            operation,
        )

    def get_records(self, **params: Any) -> Any:
        if self.throttles:
            self.throttles -= 1
            raise self.error("ProvisionedThroughputExceededException", "GetRecords")
        if self.outages:
            self.outages -= 1
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://injected")
        if self.expiries:
            self.expiries -= 1
            raise self.error("ExpiredIteratorException", "GetRecords")
        return self.real.get_records(**params)

    def put_records(self, **params: Any) -> Any:
        """The first call writes only every other record and says the rest failed."""
        if not self.partial_puts:
            return self.real.put_records(**params)
        self.partial_puts -= 1
        records = params["Records"]
        self.real.put_records(**{**params, "Records": records[::2]})
        return {
            "FailedRecordCount": len(records) // 2,
            "Records": [
                {"SequenceNumber": "1", "ShardId": "x"}
                if i % 2 == 0
                else {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "x"}
                for i in range(len(records))
            ],
        }


def test_faults_are_retried_and_nothing_is_lost(
    moto_kinesis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(monkeypatch, moto_kinesis)
    name = f"faults-{time.monotonic_ns()}"
    real = create_stream(moto_kinesis, name, 1)
    producer = KinesisProducer(name, client=FlakyClient(real, throttles=0, expiries=0, outages=0))
    lines = [json.dumps(event_line(i)).encode() for i in range(40)]
    producer.put([OutRecord(str(i), line, 1) for i, line in enumerate(lines)])
    assert producer.stats.retried_records == 20 and producer.stats.events == 40

    flaky = FlakyClient(real, throttles=3, expiries=2, outages=2)
    summary, source = consume(name, tmp_path / "lake", client=flaky)
    assert summary.accepted == 40
    assert len(set(lake_keys(tmp_path / "lake"))) == 40
    retried = source.calls.retries.by_error
    assert retried["ProvisionedThroughputExceededException"] == 3
    assert retried["ExpiredIteratorException"] == 2
    assert retried["EndpointConnectionError"] == 2


def test_a_missing_stream_is_a_clear_error(
    moto_kinesis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_endpoint(monkeypatch, moto_kinesis)
    summary, _ = consume("no-such-stream", tmp_path / "lake")
    assert summary.failed
    error = summary.failed[0].error or ""
    assert "ListShards" in error and "does not exist" in error


class WatermarkLog:
    """An operator that notes the watermark each batch brings, and the latest event time."""

    name = "watermark_log"

    def __init__(self) -> None:
        self.watermarks: list[int | None] = []
        self.latest_us = 0

    def process(self, events: Any, watermark_us: int | None) -> None:
        if events.num_rows:
            latest = events["event_time"].cast("int64").to_numpy().max()
            self.latest_us = max(self.latest_us, int(latest))
        self.watermarks.append(watermark_us)

    def snapshot(self) -> dict[str, Any]:
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        return None


def test_quiet_shards_let_the_clock_move_the_watermark(
    moto_kinesis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once every shard is quiet, the watermark moves on with the clock (DESIGN principle 3), so
    the windows of a bot that stopped are closed even though no event comes after it."""
    use_endpoint(monkeypatch, moto_kinesis)
    name = f"quiet-{time.monotonic_ns()}"
    create_stream(moto_kinesis, name, 2)
    replay_to_stream([shop_file(tmp_path, 500, seed=9)], name)
    source = KinesisSource(name, settings=FAST)
    log = WatermarkLog()
    pipeline = Pipeline(
        committer=MemoryCommitter(),
        operators=[log],
        watermark=Watermark(lateness_s=60, idle_timeout_s=1),
        checkpoint_seconds=0.5,
    )
    thread = threading.Thread(target=pipeline.run, args=([source],))
    thread.start()
    wait_until(lambda: sum(s.read for s in source.shards.values()) >= 500)
    time.sleep(4)  # quiet: past the idle timeout
    source.stop()
    thread.join(30)
    last = log.watermarks[-1]
    assert last is not None
    # Events alone put it at latest - 60 s; four quiet seconds moved it on by more than two.
    assert last > log.latest_us - 60 * 1_000_000 + 2 * 1_000_000

"""The same Hudi table on s3://, against moto's S3 server started here on loopback."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from hudi import HudiQueryType, HudiReadOptions, HudiTableBuilder
from moto.server import ThreadedMotoServer

from ecomwatch.analytics.report import lake_report
from ecomwatch.config import load_config
from ecomwatch.ingest import ingest
from ecomwatch.lake.open import open_lake
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic

pytestmark = pytest.mark.integration

BUCKET = "shop-lake"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hudi_rs_on_s3(uri: str, endpoint: str):
    """The table read by hudi-rs from the moto server."""
    options = {
        "aws_endpoint_url": endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
        "aws_allow_http": "true",
    }
    return HudiTableBuilder.from_base_uri(uri).with_storage_options(options).build()


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    settings = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


def test_ingest_to_s3_read_with_hudi_rs_and_report(s3_endpoint, tmp_path: Path):
    data = tmp_path / "t.csv"
    write_traffic(generate(TrafficSpec(events=20_000, seed=4, days=1)), data)
    uri = f"s3://{BUCKET}/events"
    config = load_config(
        environ={
            "ECOMWATCH_ENGINE__CHECKPOINT_ROWS": "7000",
            "ECOMWATCH_DECODE__CHUNK_BYTES": "262144",
        }
    )
    summary = ingest([data], uri, config=config, dead_letter=tmp_path / "dl.jsonl")
    assert summary.accepted == 20_000 and summary.checkpoints >= 3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    names = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="events/")["Contents"]]
    assert "events/.hoodie/hoodie.properties" in names
    assert any(n.endswith(".commit") for n in names)
    assert not any(
        n.endswith(".inflight") and n.replace(".inflight", ".commit") not in names for n in names
    )

    table = hudi_rs_on_s3(uri, s3_endpoint)
    snapshot = pa.Table.from_batches(table.read())
    assert snapshot.num_rows == 20_000
    assert len(set(snapshot["_hoodie_record_key"].to_pylist())) == 20_000

    # Time travel and incremental reads over S3, checked against our own commit metadata.
    history = [c for c in open_lake(uri).commits() if c["inserts"]]
    assert len(history) >= 3
    first, second = history[0], history[1]
    as_of = table.read(HudiReadOptions().with_as_of_timestamp(first["instant"]))
    assert sum(b.num_rows for b in as_of) == first["inserts"]
    between = table.read(
        HudiReadOptions()
        .with_query_type(HudiQueryType.Incremental)
        .with_start_timestamp(first["instant"])
        .with_end_timestamp(second["instant"])
    )
    assert sum(b.num_rows for b in between) == second["inserts"]

    report = lake_report(open_lake(uri))
    assert report["totals"]["events"] == 20_000

    again = ingest([data], uri, config=config, dead_letter=tmp_path / "dl.jsonl")
    assert again.read == 0  # already ingested: the checkpoint lives in the S3 timeline


def test_second_writer_on_s3_fails_cleanly_and_an_expired_lock_is_taken_over(s3_endpoint):
    from ecomwatch.lake.base import LakeError
    from ecomwatch.lake.hudi_table import HudiTable

    uri = f"s3://{BUCKET}/locked"
    first = HudiTable(uri, writer=True)
    with pytest.raises(LakeError, match="another writer"):
        HudiTable(uri, writer=True)
    # A writer that died leaves its lock; once the lease has run out the next writer takes it.
    first._lock_handle.lease_s = -1
    first._lock_handle.renew()
    second = HudiTable(uri, writer=True)
    second.close()
    HudiTable(uri, writer=True).close()


def test_an_archived_table_on_s3_reads_whole_in_hudi_rs_and_reports(s3_endpoint):
    from ecomwatch.lake.hudi_table import HudiTable
    from ecomwatch.lake.hudi_timeline import Archive
    from tests.lake.test_hudi_table import events

    uri = f"s3://{BUCKET}/archived"
    table = HudiTable(uri, writer=True, retain_commits=2, keep_commits=(3, 5))
    for i in range(12):
        table.commit(events(10, start=i * 100, shift_s=i * 60), {"n": i})
    assert Archive.read(table.loc).until is not None  # archived at least once
    assert len(table.completed()) <= 5 and len(table.commits()) == 12
    table.close()
    reader = hudi_rs_on_s3(uri, s3_endpoint)
    assert sum(b.num_rows for b in reader.read()) == 120
    lake = open_lake(uri)
    rollups = lake.rollup_files()
    assert rollups is not None and any("/merged-" in p for p in rollups["hour_type"])
    report = lake_report(lake)  # from the merged and the active commits' rollups
    assert report["totals"]["events"] == 120
    assert report == lake_report(lake, use_rollups=False)  # the same as from the raw events

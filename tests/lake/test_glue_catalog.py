"""`lake register` in the Glue Data Catalog (moto's server on loopback), read back through the
API field by field, and `lake athena-ddl` saying the same in DDL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import sqlglot
from sqlglot import exp

from ecomwatch.lake.glue_catalog import INPUT_FORMAT, OUTPUT_FORMAT, SERDE
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import write_traffic
from tests.kinesis_servers import CREDENTIALS

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "ecomwatch.cli.main"]


def _traffic(path: Path, days: float, seed: int) -> Path:
    write_traffic(generate(TrafficSpec(events=6_000, seed=seed, days=days)), path)
    return path


def test_register_then_a_new_day_adds_its_partition(moto_kinesis: str, tmp_path: Path):
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis}
    lake = tmp_path / "lake"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, check=True)

    cli("run", str(_traffic(tmp_path / "a.csv", 2, 1)), "--lake", str(lake))
    first = json.loads(cli("lake", "register", str(lake), "--glue-database", "shop",
                           "--json").stdout)  # fmt: skip
    assert first["created_database"] and first["created_table"]
    assert first["added"] == ["2019-11-01", "2019-11-02"] and first["removed"] == []

    glue = boto3.client(
        "glue", endpoint_url=moto_kinesis, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    table = glue.get_table(DatabaseName="shop", Name="ecomwatch_events")["Table"]
    storage = table["StorageDescriptor"]
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["Parameters"]["EXTERNAL"] == "TRUE"
    assert (storage["InputFormat"], storage["OutputFormat"]) == (INPUT_FORMAT, OUTPUT_FORMAT)
    assert storage["SerdeInfo"]["SerializationLibrary"] == SERDE
    assert storage["Location"] == lake.resolve().as_uri() + "/"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["event_date"]
    names = [c["Name"] for c in storage["Columns"]]
    assert names[:5] == ["_hoodie_commit_time", "_hoodie_commit_seqno", "_hoodie_record_key",
                         "_hoodie_partition_path", "_hoodie_file_name"]  # fmt: skip
    types = {c["Name"]: c["Type"] for c in storage["Columns"]}
    assert (types["event_time"], types["price"], types["product_id"], types["brand"]) == (
        "timestamp", "double", "bigint", "string",
    )  # fmt: skip
    assert "event_date" not in types  # a partition key, not a column
    partitions = glue.get_partitions(DatabaseName="shop", TableName="ecomwatch_events")
    locations = {p["Values"][0]: p["StorageDescriptor"]["Location"]
                 for p in partitions["Partitions"]}  # fmt: skip
    assert locations == {
        day: f"{lake.resolve().as_uri()}/event_date={day}/" for day in ("2019-11-01", "2019-11-02")
    }

    # Three more days of traffic (the simulator starts on 2019-11-01): only the new day is added.
    cli("run", str(_traffic(tmp_path / "b.csv", 3, 2)), "--lake", str(lake))
    again = json.loads(cli("lake", "register", str(lake), "--glue-database", "shop",
                           "--json").stdout)  # fmt: skip
    assert not again["created_database"] and not again["created_table"]
    assert again["added"] == ["2019-11-03"] and again["partitions"] == 3

    ddl = cli("lake", "athena-ddl", str(lake), "--database", "shop").stdout
    create, alter = sqlglot.parse(ddl, read="hive")
    assert create is not None and alter is not None
    defined = [c.name for c in create.find_all(exp.ColumnDef)]
    assert defined == [*names, "event_date"]  # the columns, then the partition key
    for day, location in locations.items():
        assert f"PARTITION (`event_date` = '{day}') LOCATION '{location}'" in ddl


def test_glue_sync_registers_at_start_and_adds_days_after_commits(
    moto_kinesis: str, tmp_path: Path
):
    """`[aws] glue_sync = true`: a run on a new lake registers the table and adds the days it
    commits (many commits here); a later run with a new day adds that day; the partitions are
    then the lake's, as `lake register` would make them."""
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": moto_kinesis}
    config = tmp_path / "aws.toml"
    config.write_text(
        '[aws]\nglue_database = "synced"\nglue_sync = true\n[engine]\ncheckpoint_rows = 1000\n'
    )
    lake = tmp_path / "lake"
    for days, seed in ((2, 1), (3, 2)):
        ran = subprocess.run(
            [*CLI, "run", str(_traffic(tmp_path / f"{seed}.csv", days, seed)), "--lake",
             str(lake), "--config", str(config)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert f"glue: {2 if seed == 1 else 1} partition(s) added to synced.ecomwatch_events" in (
            ran.stdout + ran.stderr
        )
    glue = boto3.client(
        "glue", endpoint_url=moto_kinesis, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    listed = glue.get_partitions(DatabaseName="synced", TableName="ecomwatch_events")
    days = [p["Values"][0] for p in listed["Partitions"]]
    assert sorted(days) == ["2019-11-01", "2019-11-02", "2019-11-03"]


def test_glue_sync_without_a_database_is_a_configuration_error(tmp_path: Path):
    config = tmp_path / "aws.toml"
    config.write_text("[aws]\nglue_sync = true\n")
    ran = subprocess.run(
        [*CLI, "run", str(_traffic(tmp_path / "t.csv", 1, 1)), "--lake", str(tmp_path / "l"),
         "--config", str(config)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 2 and "glue_sync = true needs glue_database" in ran.stderr


def test_days_glue_refused_are_tried_again_and_named_at_close(moto_kinesis: str, tmp_path):
    """Glue unreachable at start and for the first commit: the days stay pending; once it
    answers, the next commit's sync adds them all; if it never does, close names them."""
    from botocore.config import Config as BotoConfig

    from ecomwatch import testing_servers as servers
    from ecomwatch.config import AwsConfig
    from ecomwatch.lake.glue_sync import GlueSync

    def glue(endpoint: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            "glue", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=1),
        )  # fmt: skip

    settings = AwsConfig(glue_database="retried", glue_sync=True)
    down = glue(f"http://127.0.0.1:{servers.free_port()}")
    partitions = ["event_date=2019-11-01"]
    sync = GlueSync(str(tmp_path / "lake"), partitions, settings, client=down)
    assert sync.error is not None
    sync.committed({"2019-11-02"})
    assert sync.close() == ["2019-11-01", "2019-11-02"]  # never reachable: both named

    sync = GlueSync(str(tmp_path / "lake"), partitions, settings, client=down)
    sync.catalog.client = glue(moto_kinesis)  # Glue is back: the next commit's sync
    sync.committed({"2019-11-02"})  # registers the table, then adds the days
    assert sync.close() == []
    listed = glue(moto_kinesis).get_partitions(DatabaseName="retried", TableName="ecomwatch_events")
    assert sorted(p["Values"][0] for p in listed["Partitions"]) == ["2019-11-01", "2019-11-02"]

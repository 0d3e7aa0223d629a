"""`ecomwatch replay --to kinesis://`, `run kinesis://` and `lake info` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kinesis_servers import CREDENTIALS, create_stream
from tests.sources.test_kinesis import lake_keys, shop_file
from tests.test_crash_resume import commits

pytestmark = pytest.mark.integration


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ecomwatch.cli.main", *args]


@pytest.fixture
def env(moto_kinesis: str) -> dict[str, str]:
    return {
        **os.environ,
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": moto_kinesis,
        "ECOMWATCH_SERVE__COMMIT_SECONDS": "0.5",
        "ECOMWATCH_KINESIS__IDLE_POLL_S": "0.2",
    }


def test_replay_run_and_lake_info(moto_kinesis: str, env: dict[str, str], tmp_path: Path) -> None:
    name = f"cli-{time.monotonic_ns()}"
    create_stream(moto_kinesis, name, 2)
    data = shop_file(tmp_path, 3_000, seed=21)
    put = subprocess.run(
        cli("replay", str(data), "--to", f"kinesis://{name}", "--per-record", "20", "--json"),
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert put.returncode == 0, put.stderr
    figures = json.loads(put.stdout)
    assert figures["events"] == 3_000 and figures["records"] >= 150

    lake = tmp_path / "lake"
    run = subprocess.run(
        cli("run", f"kinesis://{name}", "--lake", str(lake), "--until-caught-up", "--json"),
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["read"] == summary["accepted"] == 3_000
    assert sum(s["read"] for s in summary["shards"].values()) == 3_000
    assert all(s["millis_behind"] == 0 for s in summary["shards"].values())

    info = subprocess.run(
        cli("lake", "info", str(lake), "--json"), env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    shards = json.loads(info.stdout)["streams"][f"kinesis://{name}"]["shards"]
    assert shards == {k: {**v} for k, v in summary["shards"].items()}
    table = subprocess.run(
        cli("lake", "info", str(lake)), env=env, capture_output=True, text=True, check=False
    )
    for shard_id in shards:
        assert shard_id in table.stdout


def test_sigterm_drains_commits_and_exits_0(
    moto_kinesis: str, env: dict[str, str], tmp_path: Path
) -> None:
    name = f"term-{time.monotonic_ns()}"
    create_stream(moto_kinesis, name, 1)
    subprocess.run(
        cli("replay", str(shop_file(tmp_path, 2_000, seed=22)), "--to", f"kinesis://{name}"),
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    lake = tmp_path / "lake"
    child = subprocess.Popen(
        cli("run", f"kinesis://{name}", "--lake", str(lake), "--json"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while commits(lake) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    # A second consumer of the same lake is refused while the first runs.
    second = subprocess.run(
        cli("run", f"kinesis://{name}", "--lake", str(lake), "--until-caught-up"),
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert second.returncode == 2
    assert "another writer holds" in second.stderr
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    assert json.loads(stdout)["accepted"] == 2_000
    assert len(set(lake_keys(lake))) == 2_000


def test_a_missing_stream_exits_1_naming_it(env: dict[str, str], tmp_path: Path) -> None:
    run = subprocess.run(
        cli("run", "kinesis://nowhere", "--lake", str(tmp_path / "lake"), "--until-caught-up"),
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert "does not exist" in run.stdout and "kinesis://nowhere" in run.stdout


def test_files_and_a_stream_together_is_a_usage_error(tmp_path: Path) -> None:
    run = subprocess.run(
        cli("run", "a.csv", "kinesis://s", "--lake", str(tmp_path / "lake")),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2 and "one stream or files" in run.stderr

"""Kinesis-compatible servers on loopback for the tests (a pytest plugin).

- `kinesis_local`: kinesis-local (the kinesis-mock engine, from npm, installed by `make
  services` into services/node_modules): faithful sequence numbers, shard ends after a
  split or merge, iterator expiry.
- `moto_kinesis`: moto's server (PyPI), a second implementation.

Each fixture yields the endpoint URL; `aws_env` points boto3 at it for a test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[1]
KINESIS_LOCAL = Path(
    os.environ.get(
        "ECOMWATCH_KINESIS_LOCAL", ROOT / "services" / "node_modules" / "kinesis-local" / "main.js"
    )
)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")


@pytest.fixture(scope="session")
def kinesis_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not KINESIS_LOCAL.is_file():
        pytest.fail(
            f"kinesis-local is not installed at {KINESIS_LOCAL}: run `make services` "
            "(npm ci in services/), or set ECOMWATCH_KINESIS_LOCAL to its main.js"
        )
    plain, tls = free_port(), free_port()
    log = tmp_path_factory.mktemp("kinesis-local") / "server.log"
    env = {
        **os.environ,
        "KINESIS_MOCK_PLAIN_PORT": str(plain),
        "KINESIS_MOCK_TLS_PORT": str(tls),
        "LOG_LEVEL": "WARN",
        "SHOULD_PERSIST_DATA": "false",
        **{
            f"{op}_DURATION": "100ms"
            for op in ("CREATE_STREAM", "DELETE_STREAM", "SPLIT_SHARD", "MERGE_SHARDS")
        },
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [node, KINESIS_LOCAL.name], cwd=KINESIS_LOCAL.parent, env=env, stdout=out, stderr=out
        )
    try:
        wait_for_port(plain, process, 60)
        yield f"http://127.0.0.1:{plain}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="session")
def moto_kinesis() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["kinesis_local", "moto_kinesis"])
def any_kinesis(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs on both servers."""
    return str(request.getfixturevalue(request.param))


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for key, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def client(endpoint: str) -> Any:
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def create_stream(endpoint: str, name: str, shards: int) -> Any:
    kinesis = client(endpoint)
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_active(kinesis, name)
    return kinesis


def wait_active(kinesis: Any, name: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return
        time.sleep(0.1)
    raise RuntimeError(f"stream {name} not ACTIVE after {timeout_s} s")

"""Kinesis-compatible servers on loopback for the tests (a pytest plugin).

- `kinesis_local`: kinesis-local (the kinesis-mock engine, from npm, installed by `make
  services` into services/node_modules): faithful sequence numbers, shard ends after a
  split or merge, iterator expiry.
- `moto_kinesis`: moto's server (PyPI), a second implementation.

Both are started once per test session (`ecomwatch.testing_servers`).

Each fixture yields the endpoint URL; `aws_env` points boto3 at it for a test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ecomwatch import testing_servers as servers

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def kinesis_local() -> Iterator[str]:
    try:
        with servers.kinesis_local() as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def moto_kinesis() -> Iterator[str]:
    with servers.moto_server() as url:
        yield url


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

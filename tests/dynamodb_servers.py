"""DynamoDB-compatible servers on loopback for the tests (a pytest plugin).

- `moto_dynamodb`: moto's server (the session's one, shared with the Kinesis tests);
- `dynalite`: dynalite from npm (`make services`), a second implementation without TTL calls.

Each test that takes `any_dynamodb` runs on both; each fixture yields the endpoint URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ecomwatch import testing_servers as servers
from tests.kinesis_servers import CREDENTIALS


@pytest.fixture(scope="session")
def moto_dynamodb(moto_kinesis: str) -> str:
    return moto_kinesis


@pytest.fixture(scope="session")
def dynalite() -> Iterator[str]:
    try:
        with servers.dynalite() as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(params=["moto_dynamodb", "dynalite"])
def any_dynamodb(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def dynamodb_client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=CREDENTIALS["AWS_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )

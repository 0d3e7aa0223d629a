"""Calling Kinesis: which stream, a client from the standard AWS settings, and retries.

Region, credentials and endpoint come from boto3's usual settings (`AWS_REGION`, profiles,
`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_KINESIS`). botocore's own retries stay on (its
"standard" mode, a few attempts); on top of them every call is retried with capped exponential
backoff and full jitter: throttling (`ProvisionedThroughputExceededException`,
`LimitExceededException`) for as long as it lasts, since it only says "slower"; connection
faults and server errors for up to `retry_for_s` of failing in a row, after which the caller gets
a `SourceError` naming the stream and the call. A missing stream or permission is never retried.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from ecomwatch.aws_settings import region
from ecomwatch.sources.base import SourceError

SCHEME = "kinesis://"
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException"})
# Errors that say the request can never succeed as it is.
_FINAL = {
    "ResourceNotFoundException": "the stream does not exist (check its name, region and account)",
    "AccessDeniedException": "permission denied (the credentials may not make this call)",
    "UnrecognizedClientException": "the credentials are not valid for this endpoint",
    "InvalidSignatureException": "the request signature is not valid (check the credentials)",
    "ExpiredTokenException": "the session credentials have expired",
    "InvalidArgumentException": "the service refused the call's arguments",
    "ValidationException": "the service refused the call's arguments",
}
_ARN = re.compile(r"^arn:aws[\w-]*:kinesis:(?P<region>[\w-]+):\d{12}:stream/(?P<name>[\w.-]+)$")


@dataclass(frozen=True)
class StreamRef:
    """A stream as the user named it: `kinesis://NAME`, `kinesis://ARN` or a bare ARN."""

    name: str
    arn: str | None = None

    @classmethod
    def parse(cls, text: str) -> StreamRef:
        body = text.removeprefix(SCHEME).strip().rstrip("/")
        match = _ARN.match(body)
        if match:
            return cls(match["name"], body)
        if not re.fullmatch(r"[\w.-]{1,128}", body):
            raise ValueError(
                f"{text!r} is not a Kinesis stream: use kinesis://STREAM_NAME or "
                "kinesis://arn:aws:kinesis:REGION:ACCOUNT:stream/NAME"
            )
        return cls(body)

    @property
    def uri(self) -> str:
        return SCHEME + (self.arn or self.name)

    @property
    def region(self) -> str | None:
        match = _ARN.match(self.arn or "")
        return match["region"] if match else None

    def params(self) -> dict[str, str]:
        """How calls name the stream."""
        return {"StreamARN": self.arn} if self.arn else {"StreamName": self.name}


def is_stream_uri(text: str) -> bool:
    return text.startswith(SCHEME) or bool(_ARN.match(text))


def kinesis_client(stream: StreamRef | None = None, *, timeout_s: float = 30.0) -> Any:
    """A boto3 Kinesis client from the standard settings (botocore's region, else
    `AWS_REGION`, else the ARN's, else us-east-1)."""
    session = boto3.session.Session()
    config = botocore.config.Config(
        retries={"mode": "standard"},
        connect_timeout=min(10.0, timeout_s),
        read_timeout=timeout_s,
        max_pool_connections=32,
    )
    return session.client(
        "kinesis", region_name=region(session, stream.region if stream else None), config=config
    )


@dataclass
class RetryCounts:
    """Calls retried, by the error that made them retry (for the summary and /metrics)."""

    by_error: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, error: str) -> None:
        with self._lock:
            self.by_error[error] = self.by_error.get(error, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_error.values())


class KinesisCalls:
    """Kinesis calls on one stream, retried as the module docstring says."""

    def __init__(
        self,
        client: Any,
        stream: StreamRef,
        *,
        retry_for_s: float = 300.0,
        base_delay_s: float = 0.1,
        max_delay_s: float = 5.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.client = client
        self.stream = stream
        self.retry_for_s = retry_for_s
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep
        self.retries = RetryCounts()

    def __call__(self, operation: str, *, name_stream: bool = True, **params: Any) -> Any:
        """`operation` (boto3's snake-case method name) with the stream named, retried."""
        method = getattr(self.client, operation)
        if name_stream:
            params = {**self.stream.params(), **params}
        attempt = 0
        failing_since: float | None = None
        while True:
            try:
                return method(**params)
            except botocore.exceptions.ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code == "ExpiredIteratorException":
                    raise  # the caller takes a new iterator
                if code in _FINAL or (400 <= status < 500 and code not in THROTTLED):
                    raise self._final(operation, code, exc) from exc
                if code not in THROTTLED:
                    failing_since = failing_since or time.monotonic()
                    self._give_up_after(operation, code or str(status), failing_since, exc)
                self.retries.add(code or f"HTTP {status}")
            except (
                botocore.exceptions.ConnectionError,
                botocore.exceptions.HTTPClientError,
            ) as exc:
                failing_since = failing_since or time.monotonic()
                self._give_up_after(operation, type(exc).__name__, failing_since, exc)
                self.retries.add(type(exc).__name__)
            self.sleep(self._delay(attempt))
            attempt += 1

    def list_shards(self) -> list[dict[str, Any]]:
        """Every shard of the stream, open and closed (ListShards, all pages)."""
        response = self("list_shards")
        shards = list(response.get("Shards", []))
        while response.get("NextToken"):
            response = self("list_shards", name_stream=False, NextToken=response["NextToken"])
            shards.extend(response.get("Shards", []))
        return shards

    def _delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))

    def _final(self, operation: str, code: str, exc: botocore.exceptions.ClientError) -> Exception:
        meaning = _FINAL.get(code, "the service refused the call")
        message = exc.response.get("Error", {}).get("Message", "")
        return SourceError(
            self.stream.uri, f"{_api_name(operation)}: {meaning} ({code}: {message})"
        )

    def _give_up_after(self, operation: str, what: str, since: float, exc: BaseException) -> None:
        if time.monotonic() - since >= self.retry_for_s:
            raise SourceError(
                self.stream.uri,
                f"{_api_name(operation)} failed for {self.retry_for_s:.0f} s ({what}: {exc}); "
                "check the endpoint and the network, then run again (the checkpoint holds)",
            ) from exc


def _api_name(operation: str) -> str:
    return "".join(part.title() for part in operation.split("_"))

"""A real `ecomwatch serve` process on loopback, started by the tests that need one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    lake: Path
    token: str | None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = "default",
    ) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        use = self.token if token == "default" else token
        if use:
            sent["Authorization"] = f"Bearer {use}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def post_events(self, rows: list[dict], **kwargs) -> tuple[int, dict]:
        status, _, body = self.request("POST", "/v1/events", json.dumps(rows).encode(), **kwargs)
        return status, json.loads(body)

    def get_json(self, path: str, **kwargs) -> tuple[int, object]:
        status, _, body = self.request("GET", path, **kwargs)
        return status, json.loads(body)

    def stop(self, timeout: float = 60) -> str:
        self.process.terminate()  # SIGTERM
        _, stderr = self.process.communicate(timeout=timeout)
        return stderr


def start_server(
    lake: Path,
    *,
    token: str | None = TOKEN,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> Server:
    port = free_port()
    environment = {**os.environ, **(env or {})}
    if token:
        environment["ECOMWATCH_TOKENS"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "ecomwatch.cli.main", "serve", "--lake", str(lake),
         "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )  # fmt: skip
    server = Server(process, f"http://127.0.0.1:{port}", lake, token)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited: {process.communicate()[1]}")
        try:
            if server.request("GET", "/readyz", token=None)[0] == 200:
                return server
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("serve did not become ready in 60 s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path / "lake")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.communicate()

"""AWS-compatible servers on loopback, for the tests and the benchmarks.

- `kinesis_local()`: kinesis-local (the kinesis-mock engine, from npm; `make services` installs it
  into services/node_modules): faithful sequence numbers, shard ends, iterator expiry.
- `moto_server()`: moto's server (PyPI), in a process of its own: S3, Kinesis, DynamoDB,
  CloudWatch, Glue, SNS.
- `dynalite()`: dynalite (DynamoDB, from npm like kinesis-local), a second DynamoDB; it has no
  TTL or transaction calls.

Each is a context manager that yields the endpoint URL and stops the server after.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ecomwatch

_CHECKOUT = Path(ecomwatch.__file__).resolve().parents[2]  # src/ecomwatch → the checkout
_MAIN_JS = Path("services") / "node_modules" / "kinesis-local" / "main.js"
_DYNALITE_JS = Path("services") / "node_modules" / "dynalite" / "cli.js"


def _service_file(relative: Path, variable: str) -> Path:
    """A file of services/node_modules: `variable` if set, else services/ here or in the
    checkout ecomwatch runs from."""
    if variable in os.environ:
        return Path(os.environ[variable])
    here = Path.cwd() / relative
    return here if here.is_file() else _CHECKOUT / relative


def kinesis_local_main() -> Path:
    """Where kinesis-local's main.js is (ECOMWATCH_KINESIS_LOCAL to say elsewhere)."""
    return _service_file(_MAIN_JS, "ECOMWATCH_KINESIS_LOCAL")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _listening(
    command: list[str],
    port: int,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    background: bool = False,
) -> Iterator[str]:
    """`background`: at the lowest CPU priority, so that on a shared machine the server takes
    what the client leaves (a benchmark's stand-in for a server on other hardware)."""
    log = subprocess.DEVNULL
    if background:
        command = ["nice", "-n", "19", *command]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode} at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} does not listen on {port} after 60 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # still busy with a backlog of requests
            process.kill()
            process.wait(10)


@contextmanager
def kinesis_local(main_js: Path | None = None) -> Iterator[str]:
    main_js = main_js or kinesis_local_main()
    node = shutil.which("node")
    if node is None or not main_js.is_file():
        raise RuntimeError(
            f"kinesis-local is not at {main_js}: run `make services` in the ecomwatch checkout "
            "(or set ECOMWATCH_KINESIS_LOCAL to its main.js)"
        )
    plain, tls = free_port(), free_port()
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
    with _listening([node, main_js.name], plain, cwd=main_js.parent, env=env) as url:
        yield url


@contextmanager
def moto_server(*, background: bool = False) -> Iterator[str]:
    """moto's server in a process of its own (in the caller's it would share the GIL)."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _listening(command, port, background=background) as url:
        yield url


@contextmanager
def dynalite(
    path: Path | None = None, port: int | None = None, *, background: bool = False
) -> Iterator[str]:
    """dynalite (DynamoDB on LevelDB, from npm into services/node_modules): in memory, or kept
    in `path` so that a server started again on it has the same tables."""
    cli = _service_file(_DYNALITE_JS, "ECOMWATCH_DYNALITE")
    node = shutil.which("node")
    if node is None or not cli.is_file():
        raise RuntimeError(
            f"dynalite is not at {cli}: run `make services` in the ecomwatch checkout "
            "(or set ECOMWATCH_DYNALITE to its cli.js)"
        )
    port = port or free_port()
    storage = ["--path", str(path)] if path is not None else []
    command = [node, str(cli), "--port", str(port), *storage]
    with _listening(command, port, background=background) as url:
        yield url

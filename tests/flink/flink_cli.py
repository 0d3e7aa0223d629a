"""What the tests that run a Flink job share: the Flink environment and the CLI that runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FLINK_PYTHON = Path(__file__).resolve().parents[2] / ".venv-flink" / "bin" / "python"
LATENESS_S = 300  # the default [engine] lateness_s, which `flink compile` reads


def need_flink() -> None:
    """Skip, saying how to get one, when there is no Flink environment."""
    if not FLINK_PYTHON.exists():
        pytest.skip(f"no Flink environment at {FLINK_PYTHON}: `make flink` creates it")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`ecomwatch ARGS…` with the Flink environment, as a user runs it (`env`: variables to
    set besides)."""
    env = {**os.environ, "ECOMWATCH_FLINK_PYTHON": str(FLINK_PYTHON), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ecomwatch.cli.main", *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip


@contextmanager
def watched(directory: Path) -> Iterator[set[str]]:
    """The names of the entries that appear two levels under `directory` while the block runs
    (looked at every 0.1 s)."""
    seen: set[str] = set()
    done = threading.Event()

    def look() -> None:
        while not done.wait(0.1):
            try:
                seen.update(path.name for path in directory.glob("*/*"))
            except OSError:  # a directory removed while it was listed: look again
                continue

    watcher = threading.Thread(target=look, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()

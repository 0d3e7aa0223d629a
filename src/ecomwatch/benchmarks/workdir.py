"""Where a benchmark writes its files: the `--workdir` given (kept, so the next run reuses its
simulated input), or a new temporary directory removed when the benchmark ends — a 10 M-event
ingest bench writes 3 GB, which must not pile up in the system's temporary directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def bench_workdir(given: Path | None, prefix: str) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    made = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)

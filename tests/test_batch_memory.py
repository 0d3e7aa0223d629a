"""A file run puts Arrow on jemalloc and malloc on two arenas, unless the user chose otherwise."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from ecomwatch.batch_memory import BATCH_ARENAS, use_batch_allocator


@pytest.fixture(autouse=True)
def _pool_restored() -> Iterator[None]:
    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


def test_a_file_run_allocates_with_jemalloc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    pa.set_memory_pool(pa.system_memory_pool())
    assert use_batch_allocator() == "jemalloc"
    assert pa.default_memory_pool().backend_name == "jemalloc"


def test_the_users_choice_of_allocator_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    pa.set_memory_pool(pa.system_memory_pool())
    assert use_batch_allocator() == "system"


ARENAS_USED = """
import ctypes, sys, threading
from ecomwatch.batch_memory import use_batch_allocator
if sys.argv[1] == "limited":
    use_batch_allocator()
barrier = threading.Barrier(8)
kept = []
def allocate():
    kept.append([bytes(2000 + i) for i in range(200)])  # past Python's small-object allocator
    barrier.wait()
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
path = sys.argv[2]
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(open(path).read().count("<heap nr="))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's arenas only")
def test_a_file_run_shares_two_malloc_arenas_between_its_threads(tmp_path: Path) -> None:
    def arenas(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        report = tmp_path / f"{mode}.xml"
        done = subprocess.run(
            [sys.executable, "-c", ARENAS_USED, mode, str(report)],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        return int(done.stdout)

    assert arenas("limited") <= BATCH_ARENAS
    assert arenas("default") > BATCH_ARENAS  # eight threads, eight arenas (up to 8 a core)

"""A file run puts Arrow on jemalloc, unless the user chose an allocator."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from ecomwatch.batch_memory import use_batch_allocator


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

"""The service's allocator settings."""

from __future__ import annotations

import pyarrow as pa

from ecomwatch.serve.memory import use_returning_allocators


def test_arrow_uses_the_system_allocator_afterwards():
    before = pa.default_memory_pool()
    try:
        use_returning_allocators()
        assert pa.default_memory_pool().backend_name == "system"
        assert pa.array(range(1000)).sum().as_py() == 499_500  # allocations still work
    finally:
        pa.set_memory_pool(before)

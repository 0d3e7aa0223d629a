"""Memory settings for the long-running service.

A service decodes requests on several threads and frees most of what it allocates within
seconds. With Arrow's default allocator (mimalloc) and glibc's default number of arenas, freed
memory stays with the process. One 120-s load test each (resident size after the first
minute): Arrow's default 426 to 1,002 MB; the system allocator with two glibc arenas, set by
environment variables, 344 to 726 MB; as set by this function, 395 to 924 MB. Less swing, not
flat (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util

import pyarrow as pa

M_ARENA_MAX = -8  # glibc's mallopt parameter for the most arenas


def use_returning_allocators(arenas: int = 2) -> None:
    """Arrow on the system allocator, and glibc (where it is the C library) on `arenas` arenas."""
    pa.set_memory_pool(pa.system_memory_pool())
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
        libc.mallopt(M_ARENA_MAX, arenas)

"""Memory settings for the long-running service.

A service decodes requests on several threads and frees most of what it allocates within
seconds. With Arrow's default allocator (mimalloc) and glibc's default number of arenas, freed
memory stays with the process. One 120-s load test each (resident size after the first
minute): Arrow's default 426 to 1,002 MB; the system allocator with two glibc arenas, set by
environment variables, 344 to 726 MB; as set by this function, 395 to 924 MB. Less swing, not
flat (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import pyarrow as pa

from ecomwatch.batch_memory import limit_malloc_arenas


def use_returning_allocators(arenas: int = 2) -> None:
    """Arrow on the system allocator, and glibc (where it is the C library) on `arenas` arenas."""
    pa.set_memory_pool(pa.system_memory_pool())
    limit_malloc_arenas(arenas)

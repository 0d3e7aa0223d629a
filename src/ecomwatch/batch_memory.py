"""Arrow's allocator for a batch run over files (`ecomwatch run FILE`, `ecomwatch detect`).

A file run allocates hundreds of megabytes of fresh column buffers a second and keeps them
until the lake commits them. With Arrow's default allocator (mimalloc) on this project's
machine, keeping what 92 CSV chunks of 8 MB decode to cost 2.8 s of CPU against 0.7 s when each
is freed at once: new pages, each faulted in. jemalloc took 1.4 s, the C library's 1.2 s. On
the whole `ecomwatch run` of the 10 M-event bench file, jemalloc held the peak resident size
160-180 MB lower than mimalloc (120-310 MB with detection) and the plain run was 9-12 % faster
(docs/BENCHMARKS.md). The live service keeps its own setting
(`serve/memory.py`); `ARROW_DEFAULT_MEMORY_POOL`, when set, is left to decide.
"""

from __future__ import annotations

import contextlib
import os

import pyarrow as pa


def use_batch_allocator() -> str:
    """Arrow on jemalloc where this pyarrow has it; the allocator's name."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        # A pyarrow built without jemalloc (Windows wheels) keeps its default.
        with contextlib.suppress(NotImplementedError):
            pa.set_memory_pool(pa.jemalloc_memory_pool())
    return pa.default_memory_pool().backend_name

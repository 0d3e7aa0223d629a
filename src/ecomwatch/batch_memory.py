"""Allocator settings for a batch run over files (`ecomwatch run FILE`, `ecomwatch detect`).

A file run allocates hundreds of megabytes of fresh column buffers a second and keeps them
until the lake commits them. With Arrow's default allocator (mimalloc) on this project's
machine, keeping what 92 CSV chunks of 8 MB decode to cost 2.8 s of CPU against 0.7 s when each
is freed at once: new pages, each faulted in. jemalloc took 1.4 s, the C library's 1.2 s. On
the whole `ecomwatch run` of the 10 M-event bench file, jemalloc held the peak resident size
160-180 MB lower than mimalloc (120-310 MB with detection) and the plain run was 9-12 % faster
(docs/BENCHMARKS.md). `ARROW_DEFAULT_MEMORY_POOL`, when set, is left to decide.

What Arrow does not allocate (NumPy arrays, Python's larger objects, the detector's state) goes
through the C library's malloc, which gives each thread that allocates an arena of its own (up
to eight per core). Decoding, committing and detecting threads each kept hundreds of megabytes
of freed memory in their arenas: on a month of events (67.5 M), two arenas held the run's peak
resident size 320-450 MB lower, its time within the runs' spread (docs/BENCHMARKS.md).
`MALLOC_ARENA_MAX`, when set, is left to decide. The live service keeps its own settings
(`serve/memory.py`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

import pyarrow as pa

M_ARENA_MAX = -8  # glibc's mallopt parameter for the most arenas
BATCH_ARENAS = 2


def use_batch_allocator() -> str:
    """Arrow on jemalloc where this pyarrow has it, and the C library's malloc on
    `BATCH_ARENAS` arenas; Arrow's allocator's name."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        # A pyarrow built without jemalloc (Windows wheels) keeps its default.
        with contextlib.suppress(NotImplementedError):
            pa.set_memory_pool(pa.jemalloc_memory_pool())
    if not os.environ.get("MALLOC_ARENA_MAX"):
        limit_malloc_arenas(BATCH_ARENAS)
    return pa.default_memory_pool().backend_name


def limit_malloc_arenas(arenas: int) -> None:
    """Have glibc's malloc (where it is the C library) share at most `arenas` arenas between
    the threads created from now on; other C libraries keep their own ways."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version"):
        libc.mallopt(M_ARENA_MAX, arenas)

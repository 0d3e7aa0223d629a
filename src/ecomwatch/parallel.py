"""Ordered parallel map over an iterator, for work that releases the GIL (pyarrow, numpy)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_parallel(
    items: Iterator[T], work: Callable[[T], R], pool: ThreadPoolExecutor, window: int
) -> Iterator[R]:
    """Map `work` over `items` on `pool`, yielding results in order with at most `window` ahead.

    If `items` raises, the results already submitted are yielded before the error propagates.
    """
    pending: deque[Future[R]] = deque()
    error: Exception | None = None
    try:
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= window:
                yield pending.popleft().result()
    except Exception as exc:  # a fault in `items`: first hand out what was read before it
        error = exc
    while pending:
        yield pending.popleft().result()
    if error is not None:
        raise error

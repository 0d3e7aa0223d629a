"""Splitting NCSA access log lines (common, combined, vhost_combined) into fields with numpy,
no parser in the way: the fields are found from where the quotes, spaces and newlines of the
chunk are, and handed to Arrow as views into the chunk's bytes (`binary_view`: no copy until
the text is needed).

A line of the usual shape — `[vhost ]ip ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] "request"
status bytes["referrer" "agent"][ extras]`, its quotes the layout's own (no `\\"` escape) — is
split here; any other line (Apache's `\\"`, a lone `\\r`, a field missing or out of place) is
returned as a leftover for the regular-expression path, which reads or rejects it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_INLINE = 12  # a view holds up to 12 bytes itself (Arrow's binary_view layout)
_STAMP = 26  # len("10/Oct/2000:13:55:36 -0700")
_WINDOW = 64  # bytes looked at past a field's start for the space that ends it


@dataclass(frozen=True)
class SplitLines:
    columns: dict[str, pa.Array]  # binary_view, one row per split line
    lines: np.ndarray  # 0-based index in the chunk of each split line
    leftovers: np.ndarray  # 0-based indices of the non-blank lines not split here


class _Bytes:
    """The chunk's bytes, and where its quotes and line ends are."""

    def __init__(self, data: bytes, line_count: int) -> None:
        self.data = data
        self.buf = np.frombuffer(data, dtype=np.uint8)
        padded = np.concatenate([self.buf, np.zeros(_WINDOW, np.uint8)])
        self.padded = padded
        # every position's next _WINDOW bytes, as rows of a view (no copy until indexed)
        self.windows = np.lib.stride_tricks.sliding_window_view(padded, _WINDOW)
        newlines = np.flatnonzero(self.buf == 10)
        self.newlines = newlines
        self.starts = np.concatenate([[0], newlines + 1])[:line_count]
        ends = np.concatenate([newlines, [len(data)]])[:line_count]
        before = np.maximum(ends - 1, 0)
        self.ends = ends - ((ends > self.starts) & (self.buf[before] == 13))  # drop a \r

    def next_space(self, at: np.ndarray, limit: np.ndarray, width: int) -> np.ndarray:
        """The first space in [at, at + width) before `limit`, else `limit` (the fields read
        this way are short: an address, a status, a size)."""
        hits = self.windows[at, :width] == 32
        space = at + hits.argmax(axis=1)
        return np.where(hits.any(axis=1) & (space < limit), space, limit)

    def views(self, begin: np.ndarray, end: np.ndarray) -> pa.Array:
        """The spans [begin, end) as a binary_view array over the chunk's bytes."""
        n = len(begin)
        lengths = (end - begin).astype(np.int32)
        view = np.empty((n, 16), dtype=np.uint8)
        view[:, 4:16] = self.windows[begin, :_INLINE]
        short = lengths <= _INLINE
        view[short, 4:16] *= np.arange(_INLINE) < lengths[short, None]  # zero past the value
        words = view.view(np.int32)  # (n, 4): length, prefix or inline bytes, buffer, offset
        words[:, 0] = lengths
        long = ~short
        words[long, 2] = 0
        words[long, 3] = begin[long]
        buffers = [None, pa.py_buffer(view), pa.py_buffer(self.data)]
        return pa.Array.from_buffers(pa.binary_view(), n, buffers)


def split_lines(
    data: bytes, line_count: int, *, vhost: bool, combined: bool, extras: bool
) -> SplitLines:
    """Split the lines of the usual shape; the others are leftovers (see the module)."""
    chunk = _Bytes(data, line_count)
    buf, starts, ends = chunk.buf, chunk.starts, chunk.ends
    filled = ends > starts
    quotes = np.flatnonzero(buf == 34)
    quote_line = np.searchsorted(chunk.newlines, quotes)
    counts = np.bincount(quote_line, minlength=line_count)[:line_count]
    core = 6 if combined else 2
    shaped = counts >= core if extras else counts == core
    escaped = quotes[(quotes > 0) & (buf[np.maximum(quotes - 1, 0)] == 92)]
    shaped[np.searchsorted(chunk.newlines, escaped)] = False
    lone_cr = np.flatnonzero(buf == 13) if b"\r" in data else np.zeros(0, np.int64)
    if len(lone_cr):
        following = chunk.padded[lone_cr + 1]
        shaped[np.searchsorted(chunk.newlines, lone_cr[following != 10])] = False
    candidates = np.flatnonzero(shaped & filled)
    first = np.concatenate([[0], np.cumsum(counts)])[candidates]
    q = [quotes[first + k] for k in range(core)]
    start, end = starts[candidates], ends[candidates]

    # the head: [vhost ]ip ident user [stamp] — the stamp's brackets right before the quote
    stamp_end = q[0] - 2
    ok = (buf[q[0] - 1] == 32) & (buf[stamp_end] == 93) & (q[0] - _STAMP - 3 >= start)
    stamp_begin = stamp_end - _STAMP
    ok &= buf[np.maximum(stamp_begin - 1, 0)] == 91
    first_space = chunk.next_space(start, end, _WINDOW)
    columns_at: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if vhost:
        ip_begin = first_space + 1
        columns_at["host"] = (start, first_space)
    else:
        ip_begin = start
    ip_end = chunk.next_space(ip_begin, end, _WINDOW)
    ok &= ip_end < stamp_begin
    columns_at["ip"] = (ip_begin, ip_end)
    columns_at["stamp"] = (stamp_begin, stamp_end)
    columns_at["request"] = (q[0] + 1, q[1])
    # status and size: ` 200 1234` after the request
    status_begin = q[1] + 2
    ok &= buf[np.minimum(q[1] + 1, len(buf) - 1)] == 32
    after = q[2] - 1 if combined else end
    status_end = chunk.next_space(status_begin, after, 8)
    size_end = chunk.next_space(status_end + 1, after, 24)
    ok &= (status_end < after) & (status_end > status_begin) & (size_end > status_end + 1)
    columns_at["status"] = (status_begin, status_end)
    columns_at["bytes"] = (status_end + 1, size_end)
    last = q[-1]
    if combined:
        ok &= (size_end == q[2] - 1) & (chunk.padded[q[3] + 1] == 32) & (q[4] == q[3] + 2)
        columns_at["referrer"] = (q[2] + 1, q[3])
        columns_at["agent"] = (q[4] + 1, q[5])
    elif not extras:
        ok &= size_end == end
    if extras:  # what follows, as one text (a cookie is looked for in it)
        rest_begin = np.minimum(last + 2 if combined else size_end + 1, end)
        columns_at["extra0"] = (rest_begin, np.maximum(rest_begin, end))
    elif combined:
        ok &= q[5] + 1 == end
    kept = candidates[ok]
    columns = {
        name: chunk.views(begin[ok].astype(np.int64), finish[ok].astype(np.int64))
        for name, (begin, finish) in columns_at.items()
    }
    split = np.zeros(line_count, dtype=bool)
    split[kept] = True
    return SplitLines(columns, kept, np.flatnonzero(filled & ~split))

"""Chunks of whole lines: a file (seekable, read a chunk at a time) and a stream (a .gz, read
with a carried partial line) are cut at the same places, whatever the lines' lengths."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ecomwatch.decode.chunks import iter_chunks


class Unseekable(io.RawIOBase):
    """A stream that can only be read forward, as a decompressing one."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


def _cuts(stream: io.IOBase, chunk_bytes: int, offset: int = 0) -> list[tuple[int, int, int]]:
    stream.seek(offset) if stream.seekable() else stream.read(offset)
    return [
        (c.offset, c.first_line, len(c.data))
        for c in iter_chunks(stream, offset=offset, first_line=1, chunk_bytes=chunk_bytes)
    ]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 300), min_size=0, max_size=60),
    chunk_bytes=st.integers(1, 700),
    last_newline=st.booleans(),
)
def test_a_file_and_a_stream_are_cut_at_the_same_lines(
    lengths: list[int], chunk_bytes: int, last_newline: bool
) -> None:
    rng = random.Random(len(lengths))
    data = b"\n".join(bytes(rng.choice(b"ab ") for _ in range(n)) for n in lengths)
    data += b"\n" if last_newline and data else b""
    chunks = list(iter_chunks(io.BytesIO(data), offset=0, first_line=1, chunk_bytes=chunk_bytes))
    assert b"".join(c.data for c in chunks) == data
    assert all(c.data.endswith(b"\n") for c in chunks[:-1])
    assert _cuts(io.BytesIO(data), chunk_bytes) == _cuts(Unseekable(data), chunk_bytes)


def test_a_line_longer_than_a_chunk_and_the_probe_is_one_chunk() -> None:
    long_line = b"x" * 200_000 + b"\n"
    data = b"a\n" + long_line + b"b\n" * 10
    cuts = _cuts(io.BytesIO(data), 100_000)
    assert cuts == _cuts(Unseekable(data), 100_000)
    assert cuts == [(0, 1, 2), (2, 2, len(data) - 2)]  # the long line takes the rest along

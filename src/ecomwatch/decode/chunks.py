"""Split a byte stream into chunks of whole lines, remembering where each chunk starts.

Chunks let the decoders parse in parallel while every row keeps its exact physical line number,
and let a source resume at a chunk boundary after a crash.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np


class StreamFault(Exception):
    """The stream broke mid-way (a truncated .gz, an I/O error). Rows before it were kept."""


@dataclass(frozen=True)
class TextChunk:
    data: bytes
    offset: int  # byte offset of the chunk in the (decompressed) stream
    first_line: int  # 1-based physical line number of the chunk's first line
    line_count: int = field(init=False)  # counted once: chunks are megabytes

    def __post_init__(self) -> None:
        # numpy counts newlines about twice as fast as bytes.count.
        newlines = int(np.count_nonzero(np.frombuffer(self.data, dtype=np.uint8) == 10))
        count = newlines + (0 if self.data.endswith(b"\n") else 1)
        object.__setattr__(self, "line_count", count if self.data else 0)

    @property
    def end_offset(self) -> int:
        return self.offset + len(self.data)

    @property
    def next_line(self) -> int:
        return self.first_line + self.line_count

    def blank_lines(self) -> list[int]:
        """0-based indices of empty lines inside the chunk (rare, so found with `find`)."""
        found: set[int] = set()
        data = self.data
        if data.startswith((b"\n", b"\r\n")):
            found.add(0)
        for pattern in (b"\n\n", b"\n\r\n"):
            start = data.find(pattern)
            while start != -1:
                found.add(data.count(b"\n", 0, start + 1))
                start = data.find(pattern, start + 1)
        return sorted(found)


def iter_chunks(
    stream: BinaryIO, *, offset: int, first_line: int, chunk_bytes: int
) -> Iterator[TextChunk]:
    """Yield chunks that end on a newline (the last may not), starting at `offset`: each is the
    longest run of whole lines within `chunk_bytes` of its start.

    A read error yields the whole lines read so far plus the partial tail, then raises
    StreamFault, so that nothing read before the fault is lost.
    """
    carry = b""
    line = first_line
    position = offset
    # A file is read a chunk of whole lines at a time (its end found first, or a seek back
    # over the partial line) rather than its partial line joined to the next block: the
    # chunk's bytes are not copied again.
    seekable = isinstance(stream, io.IOBase) and stream.seekable()
    while True:
        # A chunk is at most chunk_bytes from its start (unless one line is longer), so chunk
        # boundaries depend only on where reading started: a resumed run sees the same batches.
        want = chunk_bytes - len(carry) if len(carry) < chunk_bytes else chunk_bytes
        try:
            block = _whole_lines(stream, want) if seekable and not carry else stream.read(want)
        except (EOFError, OSError, ValueError, zlib.error) as exc:
            if carry:
                yield TextChunk(carry, position, line)
            raise StreamFault(str(exc) or type(exc).__name__) from exc
        if not block:
            if carry:
                yield TextChunk(carry, position, line)
            return
        data = carry + block if carry else block
        cut = data.rfind(b"\n")
        if cut == -1:
            carry = data
            continue
        chunk = TextChunk(data[: cut + 1] if cut + 1 < len(data) else data, position, line)
        carry = data[cut + 1 :]
        if seekable and carry:
            stream.seek(-len(carry), io.SEEK_CUR)
            carry = b""
        position = chunk.end_offset
        line = chunk.next_line
        yield chunk


_PROBE = 1 << 16  # bytes read at the end of a chunk's span to find its last line end


def _whole_lines(stream: BinaryIO, want: int) -> bytes:
    """Up to `want` bytes from the stream's position, ending with the last line end among
    them: found by a small read at the span's end, then the chunk read once into its own
    bytes. Without a line end in that small read (a very long line), just `want` bytes."""
    start = stream.tell()
    probe_at = max(start, start + want - _PROBE)
    stream.seek(probe_at)
    tail = stream.read(start + want - probe_at)
    cut = tail.rfind(b"\n")
    stream.seek(start)
    if cut == -1:
        return stream.read(want)
    return stream.read(probe_at + cut + 1 - start)

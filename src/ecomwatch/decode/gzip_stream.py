"""A gzip reader that keeps everything before a fault.

`gzip.GzipFile.read` raises on a truncated stream and drops what it decompressed in that call.
This reader feeds zlib itself: it returns every byte it could decompress, and only then raises
EOFError, so a truncated `.gz` loses nothing that was readable. Concatenated members are read
one after another, as gzip does.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

_READ = 1 << 20


class GzipStream:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self._inflate = zlib.decompressobj(wbits=31)
        self._buffer = bytearray()
        self._done = False

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size and not self._done:
            compressed = self.raw.read(_READ)
            if not compressed:
                if not self._inflate.eof and (self._inflate.unconsumed_tail or self._started):
                    self._buffer += self._inflate.flush()
                    self._done = True
                    self._truncated = True
                    return
                self._done = True
                return
            self._started = True
            self._buffer += self._inflate.decompress(compressed)
            while self._inflate.eof and self._inflate.unused_data:
                rest = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=31)
                self._buffer += self._inflate.decompress(rest)

    _started = False
    _truncated = False

    def read(self, size: int = -1) -> bytes:
        self._fill(size if size >= 0 else 1 << 62)
        if not self._buffer and self._truncated:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        take = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        return data

    def readline(self) -> bytes:
        line = bytearray()
        while True:
            self._fill(len(line) + 1 if not self._buffer else 1)
            if not self._buffer:
                return bytes(line)
            cut = self._buffer.find(b"\n")
            if cut >= 0:
                line += self._buffer[: cut + 1]
                del self._buffer[: cut + 1]
                return bytes(line)
            line += self._buffer
            self._buffer.clear()

    def close(self) -> None:
        return None

    def __enter__(self) -> GzipStream:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

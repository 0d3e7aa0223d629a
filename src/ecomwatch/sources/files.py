"""Files as sources: CSV, CSV.gz, JSON Lines (optionally .gz), Parquet, and web server access
logs (optionally .gz; known by their first line, whatever the file's name).

Text files are cut into chunks of whole lines that are parsed on a small thread pool (pyarrow
releases the GIL) and yielded in order, so positions stay exact.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecomwatch.decode.chunks import StreamFault, TextChunk, iter_chunks
from ecomwatch.decode.csv_decoder import (
    CsvLayout,
    LayoutError,
    TypedAttempts,
    decode_csv_chunk,
    sniff_layout,
)
from ecomwatch.decode.gzip_stream import GzipStream
from ecomwatch.decode.jsonl_decoder import decode_jsonl_chunk
from ecomwatch.decode.validate import Decoded, empty_decoded, validate
from ecomwatch.decode.web_logs import (
    LogFormat,
    WebLogLayout,
    WebLogOptions,
    decode_web_chunk,
    sniff_web_log,
)
from ecomwatch.parallel import ordered_parallel
from ecomwatch.schema import INPUT_COLUMNS
from ecomwatch.sources.base import Position, SourceBatch, SourceError

DEFAULT_CHUNK_BYTES = 8 << 20
_SAMPLE = 64 << 10
_EDGE = 1 << 20


class InputFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"
    ACCESS_LOG = "access_log"


def detect_format(path: Path) -> tuple[InputFormat, bool]:
    """(format, gzip-compressed) from the file name."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    if compressed:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last == ".parquet":
        return InputFormat.PARQUET, False
    if last in (".jsonl", ".ndjson", ".json"):
        return InputFormat.JSONL, compressed
    return InputFormat.CSV, compressed


def fingerprint(path: Path) -> str:
    """A content fingerprint read in constant time: size, first and last MiB, 16 samples.

    It identifies a file however it is named or moved. Two files that differ only in bytes that
    none of the samples cover would collide; for exports and logs that change as a whole or grow
    at the end, that does not happen in practice, and it keeps re-runs on large files instant.
    """
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=12)
    with path.open("rb") as f:
        digest.update(f.read(_EDGE))
        if size > _EDGE:
            for k in range(1, 17):
                f.seek(size * k // 17)
                digest.update(f.read(_SAMPLE))
            f.seek(max(0, size - _EDGE))
            digest.update(f.read(_EDGE))
    return digest.hexdigest()


class FileSource:
    """One input file. `read(position)` resumes exactly where a checkpoint left off."""

    def __init__(
        self,
        path: Path | str,
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        threads: int = 2,
        web: WebLogOptions | None = None,
    ) -> None:
        self.path = Path(path)
        self.web = web or WebLogOptions()  # for a web log: its format, URL map, session cookie
        self.name = str(path)
        self.chunk_bytes = chunk_bytes
        self.threads = max(1, threads)
        self.format, self.compressed = detect_format(self.path)
        try:
            self.size = self.path.stat().st_size
            self.source_id = fingerprint(self.path)
        except OSError as exc:
            raise SourceError(self.name, f"cannot read the file: {exc.strerror or exc}") from exc

        self.log_layout: WebLogLayout | None = None
        if self.format is not InputFormat.PARQUET and self.size:
            self.log_layout = self._web_log_layout()
            if self.log_layout is not None:
                self.format = InputFormat.ACCESS_LOG

    def _web_log_layout(self) -> WebLogLayout | None:
        """The layout when the first lines are a web log's, else None (a format named in the
        options that the file does not have is a SourceError)."""
        wanted = self.web.format
        try:
            return sniff_web_log(self._head(), wanted)
        except LayoutError as exc:
            if wanted is LogFormat.AUTO:
                return None
            raise SourceError(self.name, f"not in the {wanted.value} format: {exc}") from exc
        except (OSError, EOFError, zlib.error, StreamFault):
            return None  # reading reports the damage, with what came before it

    def read(self, start: Position) -> Iterator[SourceBatch]:
        if start.done:
            return
        if self.size == 0:
            yield SourceBatch(empty_decoded(), Position(0, 1, done=True), 0)
            return
        try:
            if self.format is InputFormat.PARQUET:
                yield from self._read_parquet(start)
            else:
                yield from self._read_text(start)
        except SourceError:
            raise
        except (OSError, LayoutError, StreamFault, pa.ArrowException, EOFError, zlib.error) as exc:
            raise SourceError(self.name, _describe(exc, self.compressed)) from exc

    # text formats -------------------------------------------------------------------------

    def _open_stream(self) -> tuple[BinaryIO, BinaryIO]:
        raw = self.path.open("rb")
        if self.compressed:
            return raw, GzipStream(raw)  # type: ignore[return-value]
        return raw, raw

    def _head(self) -> bytes:
        """The first lines (up to 4, for a header of several)."""
        raw, stream = self._open_stream()
        with raw, stream:
            return b"".join(stream.readline() for _ in range(4))

    def _read_text(self, start: Position) -> Iterator[SourceBatch]:
        layout: CsvLayout | None = None
        log_layout = self.log_layout
        offset, line = start.offset, start.line
        if self.format is InputFormat.CSV:
            layout, header_bytes = self._sniff()
            if offset == 0 and layout.has_header:
                offset, line = header_bytes, 2
        attempts = TypedAttempts()
        raw, stream = self._open_stream()
        with raw, stream:
            self._seek(stream, offset)

            def decode(chunk: TextChunk) -> tuple[Decoded, TextChunk]:
                if log_layout is not None:
                    return (
                        decode_web_chunk(
                            chunk,
                            log_layout,
                            self.web,
                            source_name=self.name,
                            source_id=self.source_id,
                        ),
                        chunk,
                    )
                if layout is not None:
                    return (
                        decode_csv_chunk(
                            chunk,
                            layout,
                            source_name=self.name,
                            source_id=self.source_id,
                            attempts=attempts,
                        ),
                        chunk,
                    )
                return (
                    decode_jsonl_chunk(chunk, source_name=self.name, source_id=self.source_id),
                    chunk,
                )

            chunks = iter_chunks(
                stream, offset=offset, first_line=line, chunk_bytes=self.chunk_bytes
            )
            last = Position(offset, line)
            with ThreadPoolExecutor(self.threads, thread_name_prefix="decode") as pool:
                for decoded, chunk in ordered_parallel(chunks, decode, pool, self.threads + 1):
                    last = Position(chunk.end_offset, chunk.next_line)
                    yield SourceBatch(decoded, last, _tell(raw))
            yield SourceBatch(
                empty_decoded(), Position(last.offset, last.line, done=True), self.size
            )

    def _sniff(self) -> tuple[CsvLayout, int]:
        raw, stream = self._open_stream()
        with raw, stream:
            first = stream.readline()
        if not first.strip():
            raise LayoutError("the file is empty or starts with a blank line")
        return sniff_layout(first), len(first)

    @staticmethod
    def _seek(stream: BinaryIO, offset: int) -> None:
        if offset == 0:
            return
        if not isinstance(stream, GzipStream):
            stream.seek(offset)
            return
        remaining = offset
        while remaining > 0:
            block = stream.read(min(remaining, 1 << 20))
            if not block:
                raise SourceError("stream", "the file is shorter than the checkpoint position")
            remaining -= len(block)

    # parquet ------------------------------------------------------------------------------

    def _read_parquet(self, start: Position) -> Iterator[SourceBatch]:
        parquet = pq.ParquetFile(self.path)
        names = {n.lower(): n for n in parquet.schema_arrow.names}
        wanted = [names[c] for c in INPUT_COLUMNS if c in names]
        row = start.offset
        seen = 0
        # About as many rows per batch as a text chunk of the same size holds.
        rows_per_batch = max(1024, self.chunk_bytes // 128)
        for batch in parquet.iter_batches(batch_size=rows_per_batch, columns=wanted):
            if seen + batch.num_rows <= row:
                seen += batch.num_rows
                continue
            batch = batch.slice(row - seen) if row > seen else batch
            seen = max(seen, row)
            table = pa.Table.from_batches([batch]).rename_columns(
                [n.lower() for n in batch.schema.names]
            )
            positions = np.arange(seen + 1, seen + 1 + table.num_rows, dtype=np.int64)
            decoded = validate(table, positions, source_name=self.name, source_id=self.source_id)
            seen += table.num_rows
            row = seen
            progress = self.size * seen // max(1, parquet.metadata.num_rows)
            yield SourceBatch(decoded, Position(seen, seen + 1), progress)
        yield SourceBatch(empty_decoded(), Position(seen, seen + 1, done=True), self.size)


def _tell(raw: BinaryIO) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError):
        return 0


def _describe(exc: BaseException, compressed: bool) -> str:
    text = str(exc) or type(exc).__name__
    if compressed and isinstance(exc, StreamFault | EOFError | gzip.BadGzipFile | zlib.error):
        return f"the gzip stream is damaged or truncated ({text}); rows before the fault were kept"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read the file: {exc.strerror}"
    return text


def file_sources(paths: list[Path], **options: Any) -> tuple[list[FileSource], list[SourceError]]:
    """Open every path that can be opened; the others come back as errors, not exceptions."""
    sources: list[FileSource] = []
    errors: list[SourceError] = []
    for path in paths:
        if path.is_dir():
            errors.append(SourceError(str(path), "is a directory, not a file"))
            continue
        if not os.access(path, os.R_OK):
            errors.append(SourceError(str(path), "cannot read the file (missing or no permission)"))
            continue
        try:
            sources.append(FileSource(path, **options))
        except SourceError as exc:
            errors.append(exc)
    return sources, errors

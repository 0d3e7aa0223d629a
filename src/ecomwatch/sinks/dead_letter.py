"""The dead-letter sink: rejected rows as JSON Lines, appended, with exactly-once truncation.

Each checkpoint records the file's length after a flush; a resumed run truncates the file back
to that length, so rows rejected after the last checkpoint are written once, not twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa


class DeadLetterFile:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self.written = 0

    def resume_at(self, length: int) -> None:
        """Drop what was appended after the last checkpoint."""
        self._file.flush()
        if self.path.stat().st_size > length:
            os.truncate(self.path, length)
        self._file.seek(0, os.SEEK_END)

    def write(self, rejects: pa.Table) -> None:
        if rejects.num_rows == 0:
            return
        lines = [json.dumps(row, ensure_ascii=False) for row in rejects.to_pylist()]
        self._file.write(("\n".join(lines) + "\n").encode("utf-8"))
        self.written += len(lines)

    def flush(self) -> int:
        """Make what was written durable; return the file length to record in a checkpoint."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> None:
        self._file.close()

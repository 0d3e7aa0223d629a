"""An append-only JSON Lines file with exactly-once truncation: dead letters, alerts.

Each checkpoint records the file's length after a flush; a resumed run truncates the file back
to that length, so lines written after the last checkpoint are written once, not twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines file (blank lines skipped)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class JsonLinesFile:
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

    def write(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self.write_records(rows.to_pylist())

    def write_records(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        lines = [json.dumps(record, ensure_ascii=False) for record in records]
        self._file.write(("\n".join(lines) + "\n").encode("utf-8"))
        self.written += len(lines)

    def flush(self) -> int:
        """Make what was written durable; return the file length to record in a checkpoint."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self._file.tell()

    def close(self) -> None:
        self._file.close()

"""Open a lake by location: an existing table keeps its format; a new one gets the default."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from ecomwatch.lake.base import EventTable, LakeError
from ecomwatch.lake.hudi_format import PROPERTIES_FILE
from ecomwatch.lake.hudi_table import HudiTable
from ecomwatch.lake.parquet_table import META_DIR, ParquetTable
from ecomwatch.lake.storage import locate


class LakeFormat(StrEnum):
    HUDI = "hudi"
    PARQUET = "parquet"


def detect_format(uri: str | Path) -> LakeFormat | None:
    loc = locate(uri)
    if loc.exists(PROPERTIES_FILE):
        return LakeFormat.HUDI
    if loc.exists(META_DIR, "commits"):
        return LakeFormat.PARQUET
    return None


def open_lake(
    uri: str | Path, *, writer: bool = False, new_format: LakeFormat = LakeFormat.HUDI
) -> EventTable:
    """The table at `uri`; a writer creates it (in `new_format`) when it does not exist."""
    found = detect_format(uri)
    if found is None and not writer:
        raise LakeError(
            f"{uri} is not an ecomwatch lake (neither a Hudi table nor a Parquet lake); "
            "create one with `ecomwatch run INPUT --lake DIR`"
        )
    chosen = found or new_format
    if chosen is LakeFormat.HUDI:
        return HudiTable(str(uri), writer=writer)
    if str(uri).startswith("s3://"):
        raise LakeError("the plain Parquet lake is local only; use the Hudi format on S3")
    return ParquetTable(Path(uri), writer=writer)

"""A Hudi table's base files: partitions, file groups and their slices as of an instant.

A base file `<partition>/<fileId>_<token>_<instant>.parquet` is one version of a file group;
the group's slice as of an instant is its newest version written by a committed instant no
later than that one (Hudi's copy-on-write snapshot). Files of instants not committed are
invisible to readers.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ecomwatch.lake.hudi_format import (
    PARTITION_FIELD,
    PARTITION_METADATA,
    BaseFile,
    parse_base_file,
)
from ecomwatch.lake.hudi_timeline import Archive
from ecomwatch.lake.storage import Location


class BaseFiles:
    """Listing and reading the base files at `loc`; each file's size and rows read once."""

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self._facts: dict[str, tuple[int, int]] = {}  # path → (bytes, rows)

    def partitions(self) -> list[str]:
        return [
            d
            for d in self.loc.list_dirs()
            if d.startswith(f"{PARTITION_FIELD}=") and self.loc.exists(d, PARTITION_METADATA)
        ]

    def listed(self) -> list[BaseFile]:
        """Every base file on storage, committed or not."""
        found = []
        for partition in self.partitions():
            for path in self.loc.list_files(partition):
                base = parse_base_file(partition, path.rsplit("/", 1)[-1])
                if base is not None:
                    found.append(base)
        return found

    def facts(self, path: str) -> tuple[int, int]:
        """A base file's size and rows, read once: a file version never changes (a writer asks
        for every file group's on every commit)."""
        if path not in self._facts:
            with self.loc.fs.open_input_file(self.loc.path(path)) as f:
                self._facts[path] = (f.size(), pq.ParquetFile(f).metadata.num_rows)
        return self._facts[path]

    def read(self, base: BaseFile, schema: pa.Schema) -> pa.Table:
        """A base file as `schema`; columns added to the schema since it was written (the web
        columns) come back null."""
        with self.loc.fs.open_input_file(self.loc.path(base.path)) as f:
            parquet = pq.ParquetFile(f)
            present = set(parquet.schema_arrow.names)
            table = parquet.read(columns=[n for n in schema.names if n in present])
        for index, field in enumerate(schema):
            if field.name not in present:
                table = table.add_column(index, field, pa.nulls(table.num_rows, field.type))
        return table.cast(schema)

    def delete(self, base: BaseFile) -> None:
        self.loc.delete(base.path)
        self._facts.pop(base.path, None)


def latest_slices(
    bases: list[BaseFile], completed: set[str], archive: Archive, as_of: str | None
) -> dict[tuple[str, str], BaseFile]:
    """Per file group, its newest base file of a committed instant no later than `as_of`."""
    latest: dict[tuple[str, str], BaseFile] = {}
    for base in bases:
        if not archive.committed(base.instant, completed) or (
            as_of is not None and base.instant > as_of
        ):
            continue
        key = (base.partition, base.file_id)
        if key not in latest or base.instant > latest[key].instant:
            latest[key] = base
    return latest

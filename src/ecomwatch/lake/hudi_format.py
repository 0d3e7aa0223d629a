"""Apache Hudi table format facts: names, properties, instants, schemas, commit metadata.

Copy-on-write, table version 6, timeline layout version 1, no metadata table — the layout read by
Hudi 0.14/0.15 (Spark, Athena, Trino) and hudi-rs. Facts here come from the Hudi specification
and hudi-rs's reader; the code is ours.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

TABLE_VERSION = 6
TIMELINE_LAYOUT_VERSION = 1
HOODIE_DIR = ".hoodie"
PROPERTIES_FILE = ".hoodie/hoodie.properties"
PARTITION_METADATA = ".hoodie_partition_metadata"

META_COLUMNS = (
    "_hoodie_commit_time",
    "_hoodie_commit_seqno",
    "_hoodie_record_key",
    "_hoodie_partition_path",
    "_hoodie_file_name",
)
RECORD_KEY_FIELD = "event_key"
PARTITION_FIELD = "event_date"
PRECOMBINE_FIELD = "event_time"
KEY_GENERATOR = "org.apache.hudi.keygen.SimpleKeyGenerator"

_INSTANT = re.compile(r"^(\d{17})\.(commit|commit\.requested|inflight)$")
_BASE_FILE = re.compile(
    r"^(?P<file_id>[0-9a-f-]+)_(?P<token>\d+-\d+-\d+)_(?P<instant>\d{17})\.parquet$"
)


class Operation:
    INSERT = "INSERT"
    UPSERT = "UPSERT"
    DELETE = "DELETE"


def new_instant_time(after: str | None = None) -> str:
    """`yyyyMMddHHmmssSSS` in UTC, strictly after `after`."""
    now = datetime.now(UTC)
    text = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
    if after is not None and text <= after:
        text = str(int(after) + 1)
    return text


def base_file_name(file_id: str, write_token: str, instant: str) -> str:
    return f"{file_id}_{write_token}_{instant}.parquet"


@dataclass(frozen=True)
class BaseFile:
    partition: str
    name: str
    file_id: str
    instant: str

    @property
    def path(self) -> str:
        return f"{self.partition}/{self.name}"


def parse_base_file(partition: str, name: str) -> BaseFile | None:
    match = _BASE_FILE.match(name)
    if match is None:
        return None
    return BaseFile(partition, name, match["file_id"], match["instant"])


def parse_timeline_name(name: str) -> tuple[str, str] | None:
    """(instant, state) for commit timeline files: state is requested, inflight or completed."""
    match = _INSTANT.match(name)
    if match is None:
        return None
    kind = match.group(2)
    state = {"commit": "completed", "commit.requested": "requested", "inflight": "inflight"}[kind]
    return match.group(1), state


def table_properties(table_name: str, avro_schema: str) -> str:
    """hoodie.properties in Java properties syntax (':' and '=' escaped in values)."""
    props = {
        "hoodie.table.name": table_name,
        "hoodie.table.type": "COPY_ON_WRITE",
        "hoodie.table.version": str(TABLE_VERSION),
        "hoodie.timeline.layout.version": str(TIMELINE_LAYOUT_VERSION),
        "hoodie.table.recordkey.fields": RECORD_KEY_FIELD,
        "hoodie.table.precombine.field": PRECOMBINE_FIELD,
        "hoodie.table.partition.fields": PARTITION_FIELD,
        "hoodie.table.keygenerator.class": KEY_GENERATOR,
        "hoodie.datasource.write.hive_style_partitioning": "true",
        "hoodie.datasource.write.partitionpath.urlencode": "false",
        "hoodie.datasource.write.drop.partition.columns": "false",
        "hoodie.table.base.file.format": "PARQUET",
        "hoodie.populate.meta.fields": "true",
        "hoodie.archivelog.folder": "archived",
        "hoodie.table.timeline.timezone": "UTC",
        "hoodie.table.metadata.partitions": "",
        "hoodie.table.create.schema": avro_schema,
        # Hudi's checksum: CRC32 of "<database>.<table>" (no database: an empty name).
        "hoodie.table.checksum": str(zlib.crc32(f".{table_name}".encode())),
    }
    lines = ["#Properties saved by ecomwatch", f"#{datetime.now(UTC).isoformat()}"]
    lines += [f"{key}={_escape(value)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")


def parse_properties(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        match = re.match(r"((?:[^\\=:]|\\.)*)[=:](.*)$", line)
        key, value = match.groups() if match else (line, "")
        props[_unescape(key.strip())] = _unescape(value.strip())
    return props


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def partition_metadata(instant: str) -> str:
    return f"#partition metadata\ncommitTime={instant}\npartitionDepth=1\n"


def _avro_type(arrow_type: pa.DataType) -> Any:
    if pa.types.is_dictionary(arrow_type):
        return _avro_type(arrow_type.value_type)
    if pa.types.is_timestamp(arrow_type):
        return {"type": "long", "logicalType": "timestamp-micros"}
    if pa.types.is_int64(arrow_type):
        return "long"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "double"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    return "string"


def avro_schema(schema: pa.Schema, table_name: str) -> str:
    """The Avro record schema Hudi records for the table (without the meta columns)."""
    fields = []
    for field in schema:
        if field.name in META_COLUMNS:
            continue
        kind = _avro_type(field.type)
        if field.nullable:
            fields.append({"name": field.name, "type": ["null", kind], "default": None})
        else:
            fields.append({"name": field.name, "type": kind})
    record = {
        "type": "record",
        "name": f"{table_name}_record",
        "namespace": f"hoodie.{table_name}",
        "fields": fields,
    }
    return json.dumps(record, separators=(",", ":"))


def write_stat(
    *,
    file_id: str,
    path: str,
    partition: str,
    prev_commit: str,
    inserts: int,
    updates: int,
    deletes: int,
    records: int,
    size: int,
) -> dict[str, Any]:
    """One entry of partitionToWriteStats."""
    return {
        "fileId": file_id,
        "path": path,
        "cdcStats": None,
        "prevCommit": prev_commit,
        "numWrites": records,
        "numDeletes": deletes,
        "numUpdateWrites": updates,
        "numInserts": inserts,
        "totalWriteBytes": size,
        "totalWriteErrors": 0,
        "tempPath": None,
        "partitionPath": partition,
        "totalLogRecords": 0,
        "totalLogFilesCompacted": 0,
        "totalLogSizeCompacted": 0,
        "totalUpdatedRecordsCompacted": 0,
        "totalLogBlocks": 0,
        "totalCorruptLogBlock": 0,
        "totalRollbackBlocks": 0,
        "fileSizeInBytes": size,
        "minEventTime": None,
        "maxEventTime": None,
        "runtimeStats": None,
    }


def commit_metadata(
    stats: dict[str, list[dict[str, Any]]], operation: str, extra: dict[str, str]
) -> bytes:
    return json.dumps(
        {
            "partitionToWriteStats": stats,
            "compacted": False,
            "extraMetadata": extra,
            "operationType": operation,
        },
        indent=2,
    ).encode()

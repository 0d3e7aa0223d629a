"""The Hudi table in a Hive-style catalog, the way Athena reads Hudi copy-on-write tables: the
AWS Glue Data Catalog (`ecomwatch lake register`) and the same definition as Athena DDL
(`ecomwatch lake athena-ddl`).

Athena reads a Hudi copy-on-write table through Hudi's input format, which keeps only the
latest file slice of each file group (so rewritten files never count twice); the rows are
Parquet, read by Hive's Parquet SerDe. The table is partitioned by `event_date`, one catalog
partition per lake partition, each added explicitly: Athena's `MSCK REPAIR TABLE` does not
work on Hudi tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ecomwatch.lake.hudi_format import PARTITION_FIELD
from ecomwatch.lake.hudi_rows import DATA_SCHEMA, TABLE_NAME

INPUT_FORMAT = "org.apache.hudi.hadoop.HoodieParquetInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARTITIONS_PER_CALL = 100  # BatchCreatePartition's limit
CREATED_BY = {"created-by": "ecomwatch"}


def hive_type(arrow: pa.DataType) -> str:
    """The Hive (Glue, Athena) type of a column as ecomwatch writes it to Parquet."""
    if pa.types.is_dictionary(arrow):
        return hive_type(arrow.value_type)
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "string"
    if pa.types.is_timestamp(arrow):
        return "timestamp"
    named = {pa.int64(): "bigint", pa.int32(): "int", pa.int16(): "smallint",
             pa.int8(): "tinyint", pa.float64(): "double", pa.float32(): "float",
             pa.bool_(): "boolean", pa.date32(): "date"}  # fmt: skip
    if arrow in named:
        return named[arrow]
    raise ValueError(f"no Hive type for {arrow}")


def columns(schema: pa.Schema = DATA_SCHEMA) -> list[tuple[str, str]]:
    """The table's columns in file order, the partition column left out (it is a key)."""
    return [(f.name, hive_type(f.type)) for f in schema if f.name != PARTITION_FIELD]


def catalog_location(lake_location: str) -> str:
    """The lake as a catalog location: s3:// as it is, a local directory as a file:// URI
    (catalogued, but Athena reads only s3://)."""
    if lake_location.startswith("s3://"):
        return lake_location.rstrip("/")
    return Path(lake_location).resolve().as_uri()


@dataclass(frozen=True)
class CatalogTable:
    """What the catalog says about the lake: where it is and its partitions (`event_date`
    values, e.g. 2019-11-01)."""

    database: str
    name: str
    location: str
    partitions: tuple[str, ...]

    def partition_location(self, day: str) -> str:
        return f"{self.location}/{PARTITION_FIELD}={day}"


def partition_days(partition_paths: list[str]) -> tuple[str, ...]:
    """`event_date=2019-11-01` → `2019-11-01`, sorted."""
    prefix = f"{PARTITION_FIELD}="
    return tuple(sorted({p.removeprefix(prefix) for p in partition_paths if p.startswith(prefix)}))


def athena_ddl(table: CatalogTable) -> str:
    """`CREATE EXTERNAL TABLE` and one `ALTER TABLE ADD PARTITION` per lake partition (Hive's
    DDL, which is what Athena takes for DDL statements)."""
    body = ",\n".join(f"  `{name}` {kind}" for name, kind in columns())
    create = (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{table.database}`.`{table.name}` (\n{body})\n"
        f"PARTITIONED BY (`{PARTITION_FIELD}` string)\n"
        f"ROW FORMAT SERDE '{SERDE}'\n"
        f"STORED AS INPUTFORMAT '{INPUT_FORMAT}'\n"
        f"OUTPUTFORMAT '{OUTPUT_FORMAT}'\n"
        f"LOCATION '{table.location}/'\n"
        "TBLPROPERTIES ('created-by'='ecomwatch');"
    )
    if not table.partitions:
        return create + "\n"
    parts = "\n".join(
        f"  PARTITION (`{PARTITION_FIELD}` = '{day}') LOCATION '{table.partition_location(day)}/'"
        for day in table.partitions
    )
    alter = f"ALTER TABLE `{table.database}`.`{table.name}` ADD IF NOT EXISTS\n{parts};"
    return f"{create}\n\n{alter}\n"


def _storage(location: str) -> dict[str, Any]:
    return {
        "Location": location + "/",
        "InputFormat": INPUT_FORMAT,
        "OutputFormat": OUTPUT_FORMAT,
        "SerdeInfo": {"SerializationLibrary": SERDE, "Parameters": {"serialization.format": "1"}},
    }


def table_input(table: CatalogTable) -> dict[str, Any]:
    """Glue's TableInput for the lake."""
    return {
        "Name": table.name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "classification": "parquet", **CREATED_BY},
        "PartitionKeys": [{"Name": PARTITION_FIELD, "Type": "string"}],
        "StorageDescriptor": {
            "Columns": [{"Name": name, "Type": kind} for name, kind in columns()],
            **_storage(table.location),
        },
    }


@dataclass
class Registered:
    """What `register` did: whether it made the database and the table, and the partitions it
    added and removed."""

    created_database: bool
    created_table: bool
    added: list[str]
    removed: list[str]


class GlueCatalog:
    """The Glue Data Catalog through boto3 (retries in botocore's standard mode)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def register(self, table: CatalogTable) -> Registered:
        """Create or update the database and table, then make the catalog's partitions the
        lake's: add the missing ones, remove those the lake no longer has."""
        made_database = self._ensure_database(table.database)
        made_table = self._put_table(table)
        known = set(self.partitions(table.database, table.name))
        wanted = set(table.partitions)
        added, removed = sorted(wanted - known), sorted(known - wanted)
        self.add_partitions(table, added)
        for start in range(0, len(removed), 25):  # BatchDeletePartition takes 25
            self.client.batch_delete_partition(
                DatabaseName=table.database,
                TableName=table.name,
                PartitionsToDelete=[{"Values": [d]} for d in removed[start : start + 25]],
            )
        return Registered(made_database, made_table, added, removed)

    def _ensure_database(self, database: str) -> bool:
        try:
            self.client.create_database(
                DatabaseInput={"Name": database, "Description": "ecomwatch's lake"},
                Tags=CREATED_BY,
            )
            return True
        except self.client.exceptions.AlreadyExistsException:
            return False

    def _put_table(self, table: CatalogTable) -> bool:
        try:
            self.client.create_table(DatabaseName=table.database, TableInput=table_input(table))
            return True
        except self.client.exceptions.AlreadyExistsException:
            self.client.update_table(DatabaseName=table.database, TableInput=table_input(table))
            return False

    def partitions(self, database: str, name: str) -> list[str]:
        days: list[str] = []
        pages = self.client.get_paginator("get_partitions")
        for page in pages.paginate(DatabaseName=database, TableName=name):
            days += [p["Values"][0] for p in page["Partitions"]]
        return sorted(days)

    def add_partitions(self, table: CatalogTable, days: list[str]) -> None:
        """Add partitions (one already there is left as it is); an error names the first
        partition Glue refused."""
        for start in range(0, len(days), PARTITIONS_PER_CALL):
            answer = self.client.batch_create_partition(
                DatabaseName=table.database,
                TableName=table.name,
                PartitionInputList=[
                    {"Values": [day], "StorageDescriptor": {
                        "Columns": [{"Name": n, "Type": k} for n, k in columns()],
                        **_storage(table.partition_location(day)),
                    }}
                    for day in days[start : start + PARTITIONS_PER_CALL]
                ],
            )  # fmt: skip
            refused = [
                e for e in answer.get("Errors", [])
                if e["ErrorDetail"].get("ErrorCode") != "AlreadyExistsException"
            ]  # fmt: skip
            if refused:
                first = refused[0]
                raise RuntimeError(
                    f"Glue refused partition {first['PartitionValues']}: "
                    f"{first['ErrorDetail'].get('ErrorMessage')}"
                )


def catalog_table(lake_location: str, partition_paths: list[str], database: str,
                  name: str = TABLE_NAME) -> CatalogTable:  # fmt: skip
    return CatalogTable(
        database, name, catalog_location(lake_location), partition_days(partition_paths)
    )

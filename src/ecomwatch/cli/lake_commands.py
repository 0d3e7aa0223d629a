"""`ecomwatch lake info|history|clean|rollback LAKE`: look after a Hudi table."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ecomwatch.cli.stream_commands import checkpointed_streams, print_shards
from ecomwatch.console import error_line, print_table
from ecomwatch.lake.base import LakeError
from ecomwatch.lake.hudi_table import DATA_SCHEMA, HudiTable

lake_app = typer.Typer(help="Inspect and maintain a Hudi lake.", no_args_is_help=True)
out = Console()
err = Console(stderr=True, soft_wrap=True)

LakeArg = Annotated[str, typer.Argument(help="The lake: a directory or s3://bucket/prefix.")]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")]


def _open(lake: str, *, writer: bool = False) -> HudiTable:
    try:
        return HudiTable(lake, writer=writer)
    except LakeError as exc:
        err.print(error_line(exc))
        raise typer.Exit(2) from exc


def _info(table: HudiTable) -> dict[str, Any]:
    slices = table.file_slices()
    partitions: dict[str, dict[str, int]] = defaultdict(lambda: {"file_groups": 0, "bytes": 0})
    for base in slices.values():
        partitions[base.partition]["file_groups"] += 1
        partitions[base.partition]["bytes"] += table.loc.size(base.path)
    instants = table.instants()
    return {
        "location": table.location,
        "table_type": table.properties.get("hoodie.table.type"),
        "table_version": table.properties.get("hoodie.table.version"),
        "record_key": table.properties.get("hoodie.table.recordkey.fields"),
        "partition_field": table.properties.get("hoodie.table.partition.fields"),
        "schema": {f.name: str(f.type) for f in DATA_SCHEMA},
        "commits": len(table.commits()),  # archived ones included
        "active_commits": len(table.completed()),
        "pending": [i.time for i in instants if i.state != "completed"],
        "partitions": dict(sorted(partitions.items())),
        "file_groups": len(slices),
        "bytes": sum(p["bytes"] for p in partitions.values()),
        "streams": checkpointed_streams(table.last_checkpoint()),
    }


@lake_app.command()
def info(lake: LakeArg, as_json: JsonOption = False) -> None:
    """Schema, partitions, file groups, sizes and commits."""
    data = _info(_open(lake))
    if as_json:
        print(json.dumps(data))
        return
    for key in (
        "location",
        "table_type",
        "table_version",
        "record_key",
        "partition_field",
        "commits",
        "pending",
        "file_groups",
        "bytes",
    ):
        out.print(f"{key:>16}: {data[key]}")
    table = Table(title="Partitions", title_justify="left")
    for column in ("partition", "file groups", "bytes"):
        table.add_column(column, justify="left" if column == "partition" else "right")
    for name, p in data["partitions"].items():
        table.add_row(name, f"{p['file_groups']:,}", f"{p['bytes']:,}")
    print_table(out, table)
    for name, stream in data["streams"].items():
        print_shards(stream["shards"], out, f"Checkpoint of {name} (lag as last read)")


@lake_app.command()
def history(lake: LakeArg, as_json: JsonOption = False) -> None:
    """Every completed commit: operation, files, inserts, updates, deletes, bytes."""
    commits = _open(lake).commits()
    if as_json:
        print(json.dumps(commits))
        return
    table = Table(title="Commits", title_justify="left")
    for column in ("instant", "operation", "files", "inserts", "updates", "deletes", "bytes"):
        table.add_column(column, justify="left" if column in ("instant", "operation") else "right")
    for c in commits:
        table.add_row(
            c["instant"],
            str(c["operation"]),
            *(f"{c[k]:,}" for k in ("files", "inserts", "updates", "deletes", "bytes")),
        )
    print_table(out, table)


@lake_app.command()
def clean(
    lake: LakeArg,
    retain_commits: Annotated[
        int, typer.Option(min=1, help="Keep what the last N commits' snapshots need.")
    ] = 10,
) -> None:
    """Delete old file versions that no snapshot of the last N commits reads."""
    table = _open(lake, writer=True)
    try:
        removed = table.clean(retain_commits=retain_commits)
    finally:
        table.close()
    out.print(f"removed {len(removed)} old file version(s)")


@lake_app.command()
def rollback(lake: LakeArg) -> None:
    """Roll back instants a crashed writer left requested or inflight."""
    table = _open(lake, writer=False)
    pending = [i.time for i in table.instants() if i.state != "completed"]
    writer = _open(lake, writer=True)  # opening as a writer rolls them back
    writer.close()
    out.print(f"rolled back {len(pending)} pending instant(s): {', '.join(pending) or 'none'}")


def _catalog_table(lake: str, database: str, name: str) -> Any:
    from ecomwatch.lake.glue_catalog import catalog_table

    table = _open(lake)
    partitions = [base.partition for base in table.file_slices().values()]
    return catalog_table(table.location, partitions, database, name)


DatabaseOption = Annotated[str, typer.Option("--glue-database", help="The Glue database.")]
TableOption = Annotated[str, typer.Option("--table", help="The table's name in the catalog.")]


@lake_app.command()
def register(
    lake: LakeArg,
    database: DatabaseOption,
    name: TableOption = "ecomwatch_events",
    as_json: JsonOption = False,
) -> None:
    """Register the lake in the AWS Glue Data Catalog for Athena: the table (Hudi's input
    format) and one partition per lake partition; run again after new days to add them."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from ecomwatch.aws_settings import region
    from ecomwatch.lake.glue_catalog import GlueCatalog

    table = _catalog_table(lake, database, name)
    session = boto3.session.Session()
    catalog = GlueCatalog(session.client("glue", region_name=region(session)))
    try:
        done = catalog.register(table)
    except (ClientError, BotoCoreError, RuntimeError) as exc:
        err.print(error_line(f"Glue: {exc}"))
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps({"database": database, "table": name, "location": table.location,
                          "partitions": len(table.partitions), **vars(done)}))  # fmt: skip
        return
    made = [w for w, did in (("database", done.created_database), ("table", done.created_table))
            if did]  # fmt: skip
    out.print(
        f"{database}.{name} → {table.location}: "
        f"{'created ' + ' and '.join(made) if made else 'table updated'}; "
        f"{len(done.added)} partition(s) added, {len(done.removed)} removed, "
        f"{len(table.partitions)} in all"
    )
    if not table.location.startswith("s3://"):
        err.print("note: Athena reads only s3:// locations; this lake is on local disk")


@lake_app.command("athena-ddl")
def athena_ddl(
    lake: LakeArg,
    database: Annotated[str, typer.Option("--database", help="The database.")] = "ecomwatch",
    name: TableOption = "ecomwatch_events",
) -> None:
    """Print the Athena DDL for the lake: CREATE EXTERNAL TABLE and ALTER TABLE ADD PARTITION
    (Athena's MSCK REPAIR TABLE does not work on Hudi tables)."""
    from ecomwatch.lake.glue_catalog import athena_ddl as ddl

    print(ddl(_catalog_table(lake, database, name)), end="")

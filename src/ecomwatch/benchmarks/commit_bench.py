"""`ecomwatch bench commits`: what a long run of small commits does to a Hudi table.

A live service commits every two seconds. The same simulated commits (each a batch of events a
little later than the one before) go to two new tables in turn: one cleaned and archived after
commits as `HudiTable` does by default (`hudi_archive`), one never (the baseline). The figures
are the commit time at the start and the end of the run, and what is on disk at the end.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ecomwatch.lake.hudi_archive import ROLLUP_DIR
from ecomwatch.lake.hudi_format import HOODIE_DIR
from ecomwatch.lake.hudi_table import HudiTable
from ecomwatch.schema import EVENT_SCHEMA, as_events
from ecomwatch.simulate.traffic import TrafficSpec, generate
from ecomwatch.simulate.writers import as_typed_table

NEVER = (10**9 - 1, 10**9)  # keep_commits that never archive


def batch_of_events(events: int, seed: int = 1) -> pa.Table:
    traffic = as_typed_table(pa.concat_tables(generate(TrafficSpec(events=events, seed=seed))))
    columns = {
        "event_id": pa.nulls(traffic.num_rows, pa.string()),
        "source": pa.array(["bench"] * traffic.num_rows),
        "source_pos": pa.array(np.arange(traffic.num_rows, dtype=np.int64)),
    }
    return as_events(traffic.drop_columns([c for c in columns if c in traffic.column_names])
                     .append_column("event_id", columns["event_id"])
                     .append_column("source", columns["source"])
                     .append_column("source_pos", columns["source_pos"]))  # fmt: skip


def _run(
    root: Path,
    batch: pa.Table,
    commits: int,
    maintained: bool,
    progress: Callable[[], None],
) -> dict[str, Any]:
    shutil.rmtree(root, ignore_errors=True)
    times = batch["event_time"].cast(pa.int64())
    span_us = int(pc.max(times).as_py()) - int(pc.min(times).as_py()) + 1
    options: dict[str, Any] = {} if maintained else {"keep_commits": NEVER}
    table = HudiTable(str(root), writer=True, **options)
    took = []
    try:
        for i in range(commits):
            shift = pa.scalar(i * span_us, pa.duration("us"))
            moved = batch.set_column(0, "event_time", pc.add(batch["event_time"], shift))
            moved = moved.set_column(
                EVENT_SCHEMA.get_field_index("source_pos"),
                "source_pos",
                pc.add(batch["source_pos"], i * batch.num_rows),
            )
            started = time.perf_counter()
            table.commit(moved, {"commit": i})
            took.append(time.perf_counter() - started)
            progress()
        files = [p for p in root.rglob("*") if p.is_file()]
        tenth = max(1, commits // 10)
        return {
            "commit_ms_first_tenth": round(1000 * statistics.median(took[:tenth]), 1),
            "commit_ms_last_tenth": round(1000 * statistics.median(took[-tenth:]), 1),
            "commit_ms_max": round(1000 * max(took), 1),
            "commit_seconds_total": round(sum(took), 2),
            "files": len(files),
            "megabytes": round(sum(p.stat().st_size for p in files) / 2**20, 1),
            "timeline_files": sum(1 for p in (root / HOODIE_DIR).iterdir() if p.is_file()),
            "rollup_files": sum(1 for _ in (root / ROLLUP_DIR).rglob("*.parquet")),
            "rows_read_back": sum(pq.read_metadata(p).num_rows for p in table.data_files()),
        }
    finally:
        table.close()


def run_commit_bench(
    *, commits: int, events: int, workdir: Path, progress: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    batch = batch_of_events(events)
    maintained = _run(workdir / "maintained", batch, commits, True, progress)
    never = _run(workdir / "never-maintained", batch, commits, False, progress)
    return {
        "commits": commits,
        "events_per_commit": batch.num_rows,
        "maintained": maintained,
        "never_maintained": never,
        "last_commit_ratio": round(
            maintained["commit_ms_last_tenth"] / never["commit_ms_last_tenth"], 3
        ),
        "total_commit_time_ratio": round(
            maintained["commit_seconds_total"] / never["commit_seconds_total"], 3
        ),
        "disk_ratio": round(maintained["megabytes"] / never["megabytes"], 3),
    }

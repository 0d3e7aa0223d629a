"""The Hudi table, read back by hudi-rs (the `hudi` package): snapshot, time travel,
incremental, upserts, deletes, small files, rollback, cleaning, faults."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hudi import HudiQueryType, HudiReadOptions, HudiTableBuilder

from ecomwatch.lake.base import LakeError
from ecomwatch.lake.hudi_table import HudiTable
from ecomwatch.lake.storage import Location
from ecomwatch.testing import events_table

BASE = datetime(2019, 11, 1, 12, tzinfo=UTC)


def events(
    n: int, *, day: int = 1, start: int = 0, ids: bool = False, price: float = 1.5, shift_s: int = 0
):
    return events_table(
        [
            {
                "event_time": BASE.replace(day=day) + timedelta(seconds=i + shift_s),
                "event_type": "view",
                "product_id": start + i,
                "price": price,
                "user_id": 7,
                "user_session": "s",
                "event_id": f"e{start + i}" if ids else None,
                "source": "src",
                "source_pos": start + i,
            }
            for i in range(n)
        ]
    )


def hudi_rs(path: Path):
    return HudiTableBuilder.from_base_uri(str(path)).build()


def read(path: Path, options: HudiReadOptions | None = None) -> pa.Table:
    batches = hudi_rs(path).read(options) if options else hudi_rs(path).read()
    if not batches:
        return pa.table({"_hoodie_record_key": pa.array([], pa.string())})
    return pa.Table.from_batches(batches)


def keys(table: pa.Table) -> list[str]:
    return sorted(table["_hoodie_record_key"].to_pylist())


@pytest.fixture
def table(tmp_path: Path):
    t = HudiTable(str(tmp_path / "t"), writer=True)
    yield t
    t.close()


def test_layout_properties_and_snapshot(table: HudiTable, tmp_path: Path):
    table.commit(pa.concat_tables([events(5), events(3, day=2, start=100)]), {"n": 1})
    root = tmp_path / "t"
    props = (root / ".hoodie" / "hoodie.properties").read_text()
    for line in (
        "hoodie.table.type=COPY_ON_WRITE",
        "hoodie.table.version=6",
        "hoodie.timeline.layout.version=1",
        "hoodie.table.recordkey.fields=event_key",
        "hoodie.table.precombine.field=event_time",
        "hoodie.table.partition.fields=event_date",
        "hoodie.datasource.write.hive_style_partitioning=true",
        "hoodie.table.base.file.format=PARQUET",
    ):
        assert line in props
    assert (root / "event_date=2019-11-01" / ".hoodie_partition_metadata").exists()
    (commit,) = list((root / ".hoodie").glob("*.commit"))
    meta = json.loads(commit.read_text())
    assert meta["operationType"] == "INSERT"
    stat = meta["partitionToWriteStats"]["event_date=2019-11-01"][0]
    assert stat["numInserts"] == stat["numWrites"] == 5 and stat["prevCommit"] == "null"
    assert "schema" in meta["extraMetadata"]
    snapshot = read(root)
    assert snapshot.num_rows == 8
    assert keys(snapshot) == sorted(
        [f"src:{i:012d}" for i in range(5)] + [f"src:{i:012d}" for i in range(100, 103)]
    )
    assert set(snapshot["_hoodie_partition_path"].to_pylist()) == {
        "event_date=2019-11-01",
        "event_date=2019-11-02",
    }
    assert table.last_checkpoint() == {"n": 1}


def test_time_travel_and_incremental(table: HudiTable, tmp_path: Path):
    first = str(table.commit(events(5), {}).commit)
    second = str(table.commit(events(4, start=10), {}).commit)  # tops up the small file
    third = str(table.commit(events(2, day=3, start=50), {}).commit)
    root = tmp_path / "t"
    assert read(root).num_rows == 11
    as_of_first = read(root, HudiReadOptions().with_as_of_timestamp(first))
    assert keys(as_of_first) == sorted(f"src:{i:012d}" for i in range(5))
    as_of_second = read(root, HudiReadOptions().with_as_of_timestamp(second))
    assert as_of_second.num_rows == 9
    between = read(
        root,
        HudiReadOptions()
        .with_query_type(HudiQueryType.Incremental)
        .with_start_timestamp(first)
        .with_end_timestamp(second),
    )
    assert keys(between) == sorted(f"src:{i:012d}" for i in range(10, 14))
    after_second = read(
        root,
        HudiReadOptions()
        .with_query_type(HudiQueryType.Incremental)
        .with_start_timestamp(second)
        .with_end_timestamp(third),
    )
    assert keys(after_second) == ["src:000000000050", "src:000000000051"]
    # The small file was topped up: one file group in the partition, in two versions.
    files = sorted(p.name for p in (root / "event_date=2019-11-01").glob("*.parquet"))
    assert len(files) == 2 and files[0].split("_")[0] == files[1].split("_")[0]


def test_small_commits_top_up_a_file_only_while_the_rewrite_is_cheap(tmp_path: Path):
    """A small file is topped up only while rewriting it costs at most about half what the
    commit inserts, then a new file group starts: commits of 1,000 and 20,000 rows in turn,
    each large commit tops up the small file before it, no commit rewrites a file of its own
    size (a batch `run` committing 2 M rows a time rewrote every file once: 1.2 times the
    time)."""
    table = HudiTable(str(tmp_path / "t"), writer=True, top_up_always_bytes=0)
    sizes = [1_000, 20_000] * 4
    try:
        start = 0
        for n in sizes:
            table.commit(events(n, start=start), {})
            start += n
    finally:
        table.close()
    root = tmp_path / "t"
    assert read(root).num_rows == sum(sizes)
    metas = [json.loads(p.read_text()) for p in sorted((root / ".hoodie").glob("*.commit"))]
    stats = [s for m in metas for s in m["partitionToWriteStats"]["event_date=2019-11-01"]]
    assert [s["numInserts"] for s in stats] == sizes
    topped_up = [s for s in stats if s["prevCommit"] != "null"]
    assert [s["numWrites"] for s in topped_up] == [21_000] * 4  # the new rows and the 1,000
    assert len({s["fileId"] for s in stats}) == 4


def test_upsert_replaces_by_key_with_precombine_and_delete_removes(
    table: HudiTable, tmp_path: Path
):
    table.commit(events(6, ids=True, price=1.0), {})
    # A later version of e0..e2 (newer event_time): replaces; an older version of e3: ignored.
    newer = events(3, ids=True, price=9.0, shift_s=100)
    older = events(1, start=3, ids=True, price=5.0, shift_s=-100)
    info = table.commit(pa.concat_tables([newer, older]), {})
    root = tmp_path / "t"
    snapshot = read(root)
    assert snapshot.num_rows == 6
    price = dict(
        zip(snapshot["_hoodie_record_key"].to_pylist(), snapshot["price"].to_pylist(), strict=True)
    )
    assert price == {"e0": 9.0, "e1": 9.0, "e2": 9.0, "e3": 1.0, "e4": 1.0, "e5": 1.0}
    meta = json.loads((root / ".hoodie" / f"{info.commit}.commit").read_text())
    assert meta["operationType"] == "UPSERT"
    assert (
        sum(s["numUpdateWrites"] for s in meta["partitionToWriteStats"]["event_date=2019-11-01"])
        == 3
    )
    table.delete(["e1", "e4"])
    assert keys(read(root)) == ["e0", "e2", "e3", "e5"]
    # Rows changed: the rollups no longer add up, so reports read the raw events.
    assert table.rollup_files() is None


def test_pending_instant_is_rolled_back_by_the_next_writer(tmp_path: Path):
    root = tmp_path / "t"
    writer = HudiTable(str(root), writer=True)
    writer.commit(events(3), {"n": 1})
    writer.close()
    # What a crash mid-commit leaves: requested + inflight, a data file, a rollup file.
    pending = "29991231235959999"
    (root / ".hoodie" / f"{pending}.commit.requested").write_text("")
    (root / ".hoodie" / f"{pending}.inflight").write_text("")
    partial = (
        root
        / "event_date=2019-11-01"
        / f"aaaaaaaa-0000-0000-0000-000000000000-0_0-0-0_{pending}.parquet"
    )
    partial.write_bytes(b"PAR1 partial")
    rollup = (
        root / ".hoodie" / ".aux" / "ecomwatch" / "rollups" / "item" / f"part-{pending}.parquet"
    )
    rollup.write_bytes(b"partial")
    state = root / ".hoodie" / ".aux" / "ecomwatch" / "checkpoints" / f"{pending}.json"
    state.write_text('{"n": 2}')
    assert read(root).num_rows == 3  # readers never see the pending instant
    reopened = HudiTable(str(root), writer=True)
    reopened.close()
    assert not partial.exists() and not rollup.exists() and not state.exists()
    assert not list((root / ".hoodie").glob(f"{pending}*"))
    assert read(root).num_rows == 3
    assert HudiTable(str(root)).last_checkpoint() == {"n": 1}


def test_checkpoint_is_kept_beside_the_timeline_and_only_the_latest_stays(
    table: HudiTable, tmp_path: Path
):
    root = tmp_path / "t"
    big = {"state": "x" * 200_000}
    for i in range(3):
        table.commit(events(2, start=10 * i), {"n": i, **big})
    table.delete(["src:000000000000"])  # a commit without a checkpoint
    assert table.last_checkpoint() == {"n": 2, **big}
    # The timeline holds a reference, not the state.
    assert all(p.stat().st_size < 20_000 for p in (root / ".hoodie").glob("*.commit"))
    (kept,) = (root / ".hoodie" / ".aux" / "ecomwatch" / "checkpoints").glob("*.json")
    meta = json.loads(sorted((root / ".hoodie").glob("*.commit"))[2].read_text())
    assert meta["extraMetadata"]["ecomwatch.checkpoint.file"].endswith(kept.name)
    kept.write_text("{truncated")
    with pytest.raises(LakeError, match=r"checkpoint .* is missing or corrupt"):
        HudiTable(str(root)).last_checkpoint()


def test_checkpoint_inline_in_the_commit_as_earlier_versions_wrote_it(
    table: HudiTable, tmp_path: Path
):
    table.commit(events(2), {"n": 1})
    (commit,) = (tmp_path / "t" / ".hoodie").glob("*.commit")
    meta = json.loads(commit.read_text())
    extra = meta["extraMetadata"]
    del extra["ecomwatch.checkpoint.file"]
    extra["ecomwatch.checkpoint"] = json.dumps({"n": "inline"})
    commit.write_text(json.dumps(meta))
    assert HudiTable(str(tmp_path / "t")).last_checkpoint() == {"n": "inline"}


def test_second_writer_fails_cleanly(table: HudiTable, tmp_path: Path):
    with pytest.raises(LakeError, match="another writer"):
        HudiTable(str(tmp_path / "t"), writer=True)


def test_corrupt_or_missing_timeline_file_is_a_clear_error(table: HudiTable, tmp_path: Path):
    info = table.commit(events(2), {"n": 1})
    commit = tmp_path / "t" / ".hoodie" / f"{info.commit}.commit"
    commit.write_text("{not json")
    with pytest.raises(LakeError, match="missing or corrupt"):
        HudiTable(str(tmp_path / "t")).last_checkpoint()
    with pytest.raises(LakeError, match="not a Hudi table"):
        HudiTable(str(tmp_path / "nothing"))


def test_clean_keeps_the_latest_snapshots(table: HudiTable, tmp_path: Path):
    for i in range(4):
        table.commit(events(3, start=10 * i), {})  # each tops up the same small file group
    root = tmp_path / "t"
    before = keys(read(root))
    assert len(list((root / "event_date=2019-11-01").glob("*.parquet"))) == 4
    removed = table.clean(retain_commits=1)
    assert len(removed) == 3
    assert keys(read(root)) == before


def test_record_key_is_event_id_or_source_position(table: HudiTable, tmp_path: Path):
    mixed = pa.concat_tables([events(2, ids=True), events(2, start=5)])
    table.write(mixed, "UPSERT")
    assert keys(read(tmp_path / "t")) == ["e0", "e1", "src:000000000005", "src:000000000006"]
    assert pc.all(
        pc.equal(read(tmp_path / "t")["event_key"], read(tmp_path / "t")["_hoodie_record_key"])
    ).as_py()


def test_a_reader_that_loses_the_race_with_a_commit_reads_the_newer_checkpoint(
    table: HudiTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    table.commit(events(2), {"n": 1})
    reader = HudiTable(str(tmp_path / "t"))
    read_bytes = Location.read_bytes
    raced = []

    def commit_meanwhile(self: Location, *parts: str) -> bytes:
        if "checkpoints/" in parts[0] and not raced:
            raced.append(table.commit(events(2, start=10), {"n": 2}))  # deletes the old one
        return read_bytes(self, *parts)

    monkeypatch.setattr(Location, "read_bytes", commit_meanwhile)
    assert reader.last_checkpoint() == {"n": 2}
    assert raced


def test_record_keys_of_many_sources_match_those_built_one_source_at_a_time(monkeypatch):
    """A stream gives every record its own source; those keys are built in one vectorized
    join (one source at a time took 9.2 s for 10,000 one-event records) and must be the same."""
    import numpy as np

    from ecomwatch.lake import hudi_rows

    n = 3_000
    names = pa.array([f"kinesis:clicks/shardId-000000000001/4968{i:020d}" for i in range(300)])
    table = pa.table(
        {
            "source": pa.DictionaryArray.from_arrays(
                pa.array(np.arange(n) % 300, pa.int32()), names
            ),
            "source_pos": pa.array(np.arange(n) // 300, pa.int64()),
            "event_id": pa.array([f"id-{i}" if i % 7 == 0 else None for i in range(n)]),
        }
    )
    joined = hudi_rows.record_keys(table)
    monkeypatch.setattr(hudi_rows, "_FEW_SOURCES", 10**9)
    one_by_one = hudi_rows.record_keys(table)
    assert joined.equals(one_by_one)
    assert (
        joined[1].as_py()
        == "kinesis:clicks/shardId-000000000001/4968" + "1".zfill(20) + ":000000000000"
    )
    assert joined[7].as_py() == "id-7"


def test_a_table_written_before_the_web_columns_reads_and_grows(tmp_path: Path):
    """Base files without the web columns (an earlier version's) read them as null, and a
    commit that tops such a file up rewrites it with them; hudi-rs reads the table."""
    import pyarrow.parquet as pq

    from ecomwatch.lake.hudi_rows import DATA_SCHEMA

    web = ["host", "method", "path", "query", "status", "bytes", "referrer", "request_kind"]
    root = tmp_path / "t"
    table = HudiTable(str(root), writer=True)
    try:
        table.commit(events(30), {})
    finally:
        table.close()
    [old] = root.glob("event_date=*/*.parquet")
    pq.write_table(pq.read_table(old).drop_columns(web), old)  # as an earlier version wrote it
    assert not set(web) & set(pq.read_schema(old).names)
    table = HudiTable(str(root), writer=True)
    try:
        table.commit(events(20, start=100), {})
    finally:
        table.close()
    rows = read(root)
    assert rows.num_rows == 50 and set(web) <= set(rows.column_names)
    assert rows["path"].null_count == 50
    newest = max(root.glob("event_date=*/*.parquet"), key=lambda p: p.name)
    assert pq.read_schema(newest).names == DATA_SCHEMA.names


def test_label_columns_stay_dictionary_encoded_across_chunks_and_keys_are_delta_strings(
    table: HudiTable, tmp_path: Path
):
    """Chunks decoded apart carry dictionaries of their own; the file must still hold each
    label column as one dictionary (a change of dictionary made Arrow's writer fall back to
    plain strings: user agents took 8 times the bytes), and the keys as DELTA_BYTE_ARRAY. hudi-rs
    and DuckDB read the file back."""
    import duckdb
    import pyarrow.parquet as pq

    agents = [f"Mozilla/5.0 (agent {i}) " + "x" * 150 for i in range(40)]

    def chunk(start: int, n: int) -> pa.Table:
        rows = events(n, start=start, shift_s=start)  # in time order: no sort merges them
        labels = pa.array([agents[(start // 5_000 + i) % 40] for i in range(n)]).dictionary_encode()
        return rows.set_column(
            rows.schema.get_field_index("user_agent"),
            "user_agent",
            labels.cast(rows["user_agent"].type),
        )

    chunks = [chunk(i * 5_000, 5_000) for i in range(6)]
    assert len({c["user_agent"].chunk(0).dictionary[0].as_py() for c in chunks}) > 1
    table.commit(pa.concat_tables(chunks), {})
    (path,) = (tmp_path / "t" / "event_date=2019-11-01").glob("*.parquet")
    metadata = pq.ParquetFile(path).metadata
    columns = {
        metadata.row_group(0).column(i).path_in_schema: metadata.row_group(0).column(i)
        for i in range(metadata.num_columns)
    }
    # 30,000 rows of 40 agents: a dictionary and 6-bit indices, not 30,000 long strings.
    assert columns["user_agent"].total_uncompressed_size < 40 * 200 + 30_000
    for key in ("_hoodie_record_key", "event_key", "_hoodie_commit_seqno"):
        assert "DELTA_BYTE_ARRAY" in columns[key].encodings, key
    assert read(tmp_path / "t").num_rows == 30_000
    assert duckdb.connect().execute(
        f"SELECT count(DISTINCT user_agent) FROM '{path}'"
    ).fetchone() == (40,)


def test_a_commit_does_not_rewrite_a_file_as_large_as_what_it_inserts(tmp_path: Path):
    """Batch ingest commits equal shares: each is a file group of its own, not a rewrite of
    the one before (which doubled the bytes written)."""
    table = HudiTable(str(tmp_path / "t"), writer=True, top_up_always_bytes=0)
    try:
        table.commit(events(20_000), {})
        table.commit(events(20_000, start=20_000, shift_s=20_000), {})
    finally:
        table.close()
    metas = [
        json.loads(p.read_text()) for p in sorted((tmp_path / "t" / ".hoodie").glob("*.commit"))
    ]
    stats = [s for m in metas for s in m["partitionToWriteStats"]["event_date=2019-11-01"]]
    assert [(s["numWrites"], s["prevCommit"]) for s in stats] == [(20_000, "null")] * 2

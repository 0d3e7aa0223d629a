"""The Parquet lake's commit protocol: atomic commits, crash leftovers removed, one writer."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from ecomwatch.lake.base import LakeError
from ecomwatch.lake.parquet_table import ParquetTable
from ecomwatch.testing import events_table


def sample(n: int, day: int = 1):
    return events_table(
        [
            {
                "event_time": __import__("datetime").datetime(
                    2019, 11, day, 12, tzinfo=__import__("datetime").UTC
                ),
                "event_type": "view",
                "product_id": i,
                "price": 1.0,
                "user_id": 1,
                "source": "src",
                "source_pos": i,
            }
            for i in range(n)
        ]
    )


def test_commit_partitions_by_date_and_records_checkpoint(tmp_path: Path):
    table = ParquetTable(tmp_path, writer=True)
    info = table.commit(__import__("pyarrow").concat_tables([sample(3, 1), sample(2, 2)]), {"k": 1})
    table.close()
    assert info.rows == 5 and info.files == 2
    reader = ParquetTable(tmp_path)
    assert reader.last_checkpoint() == {"k": 1}
    files = reader.data_files()
    assert sorted(Path(f).parent.name for f in files) == [
        "event_date=2019-11-01",
        "event_date=2019-11-02",
    ]
    count = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet({files})").fetchall()[0][0]
    assert count == 5


def test_leftovers_of_a_crashed_commit_are_removed(tmp_path: Path):
    table = ParquetTable(tmp_path, writer=True)
    table.commit(sample(3), {"n": 1})
    table.close()
    part = tmp_path / "event_date=2019-11-01"
    # A crash after writing data files of commit 2 but before its record:
    (part / "part-00000002-0000.parquet").write_bytes(b"partial")
    (part / "part-00000002-0001.parquet.inprogress").write_bytes(b"partial")
    (tmp_path / "_ecomwatch" / "commits" / ".00000002.json.tmp").write_text("{")
    (tmp_path / "_ecomwatch" / "checkpoints" / "00000002.json").write_text('{"n": 2}')
    reader_before = ParquetTable(tmp_path)
    assert len(reader_before.data_files()) == 1  # readers never list the partial commit
    writer = ParquetTable(tmp_path, writer=True)
    writer.close()
    assert sorted(p.name for p in part.iterdir()) == ["part-00000001-0000.parquet"]
    assert [p.name for p in (tmp_path / "_ecomwatch" / "checkpoints").iterdir()] == [
        "00000001.json"
    ]
    assert ParquetTable(tmp_path).last_checkpoint() == {"n": 1}


def test_only_the_latest_checkpoint_is_kept_and_inline_ones_still_read(tmp_path: Path):
    table = ParquetTable(tmp_path, writer=True)
    for i in range(3):
        table.commit(sample(1), {"n": i, "state": "x" * 100_000})
    table.close()
    commits = tmp_path / "_ecomwatch" / "commits"
    assert all(p.stat().st_size < 5_000 for p in commits.glob("*.json"))
    checkpoints = tmp_path / "_ecomwatch" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["00000003.json"]
    assert ParquetTable(tmp_path).last_checkpoint()["n"] == 2
    # A record written by an earlier version holds its checkpoint inline.
    record = json.loads((commits / "00000003.json").read_text())
    del record["checkpoint_file"]
    record["checkpoint"] = {"n": "inline"}
    (commits / "00000003.json").write_text(json.dumps(record))
    assert ParquetTable(tmp_path).last_checkpoint() == {"n": "inline"}


def test_second_writer_fails_cleanly(tmp_path: Path):
    first = ParquetTable(tmp_path, writer=True)
    with pytest.raises(LakeError, match="another writer"):
        ParquetTable(tmp_path, writer=True)
    first.close()
    ParquetTable(tmp_path, writer=True).close()


def test_reading_a_directory_that_is_no_lake(tmp_path: Path):
    with pytest.raises(LakeError, match="not an ecomwatch lake"):
        ParquetTable(tmp_path)


def test_corrupt_commit_record_is_a_clear_error(tmp_path: Path):
    table = ParquetTable(tmp_path, writer=True)
    table.commit(sample(1), {})
    table.close()
    record = tmp_path / "_ecomwatch" / "commits" / "00000001.json"
    record.write_text(json.dumps({"commit": 1})[:-3])
    with pytest.raises(LakeError, match="unreadable"):
        ParquetTable(tmp_path).data_files()


def test_a_reader_that_loses_the_race_with_a_commit_reads_the_newer_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    writer = ParquetTable(tmp_path, writer=True)
    writer.commit(sample(1), {"n": 1})
    read_text = Path.read_text
    raced = []

    def commit_meanwhile(self: Path, *args, **kwargs) -> str:
        if self.parent.name == "checkpoints" and not raced:
            raced.append(writer.commit(sample(1), {"n": 2}))  # deletes the old one
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", commit_meanwhile)
    assert ParquetTable(tmp_path).last_checkpoint() == {"n": 2}
    assert raced
    writer.close()

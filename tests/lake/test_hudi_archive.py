"""Cleaning and archiving after commits: a long-lived table keeps a short timeline and few
rollup files, and still reads the same (here and in hudi-rs), through crashes at every step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from ecomwatch.lake import hudi_archive
from ecomwatch.lake.hudi_archive import ROLLUP_DIR
from ecomwatch.lake.hudi_table import HudiTable
from ecomwatch.lake.hudi_timeline import ARCHIVE_FILE, Archive
from ecomwatch.lake.rollups import ROLLUPS
from ecomwatch.lake.storage import Location
from tests.lake.test_hudi_table import events, keys, read

COMMITS = 24


def small_table(path: Path) -> HudiTable:
    return HudiTable(str(path), writer=True, retain_commits=2, keep_commits=(3, 5))


def fill(table: HudiTable, commits: int = COMMITS, first: int = 0) -> None:
    for i in range(first, first + commits):
        table.commit(events(10, start=i * 100, shift_s=i * 60), {"n": i})


def timeline_commits(root: Path) -> list[Path]:
    return sorted((root / ".hoodie").glob("*.commit"))


def rollup_sums(table: HudiTable) -> tuple[int, float]:
    files = table.rollup_files()
    assert files is not None
    con = duckdb.connect()
    events_, revenue = con.execute(
        f"SELECT sum(events), sum(revenue) FROM read_parquet({files['hour_type']!r})"
    ).fetchone()
    return int(events_), round(float(revenue), 2)


def test_a_long_run_keeps_a_short_timeline_and_reads_every_row(tmp_path: Path):
    root = tmp_path / "t"
    table = small_table(root)
    fill(table)
    # Never more than keep_max completed commits on the active timeline.
    assert 3 <= len(timeline_commits(root)) <= 5
    assert len(list((root / ".hoodie").glob("*.inflight"))) == len(timeline_commits(root))
    archive = Archive.read(table.loc)
    assert archive.until is not None and archive.until < timeline_commits(root)[0].stem
    # Every row, here and in hudi-rs (which takes instants before the timeline as committed).
    expected = sorted(f"src:{i * 100 + j:012d}" for i in range(COMMITS) for j in range(10))
    assert keys(read(root)) == expected
    con = duckdb.connect()
    rows = con.execute(f"SELECT count(*) FROM read_parquet({table.data_files()!r})").fetchone()
    assert rows == (COMMITS * 10,)
    # The history still has every commit; the checkpoint is the latest.
    history = table.commits()
    assert len(history) == COMMITS and sum(c["inserts"] for c in history) == COMMITS * 10
    assert table.last_checkpoint() == {"n": COMMITS - 1}
    # Rollups: merged, fewer files, and the same totals as the events.
    assert rollup_sums(table) == (COMMITS * 10, COMMITS * 10 * 1.5)
    # One merged file per rollup for each archiving's commits (two or more each here).
    files = table.rollup_files()
    active = len(timeline_commits(root))
    assert files is not None and all(
        len(files[name]) <= (COMMITS - active) // 2 + active for name in ROLLUPS
    )
    on_disk = list((root / ROLLUP_DIR).rglob("*.parquet"))
    assert len(on_disk) < COMMITS * len(ROLLUPS)
    # Old file versions were cleaned: one file group, a few versions.
    assert len(list((root / "event_date=2019-11-01").glob("*.parquet"))) <= 4
    # The archived metadata left the writer's cache.
    assert archive.until not in table.timeline._metadata
    table.close()
    reopened = HudiTable(str(root))
    assert reopened.commits() == history and rollup_sums(reopened) == rollup_sums(table)


def test_once_rows_change_reports_read_raw_events_after_archiving_too(tmp_path: Path):
    table = small_table(tmp_path / "t")
    table.commit(events(5, ids=True), {})
    table.commit(events(5, ids=True, price=2.0), {})  # an upsert: rollups no longer hold
    assert table.rollup_files() is None
    fill(table, 10, first=1)
    assert Archive.read(table.loc).rollups is None
    assert table.rollup_files() is None
    assert read(tmp_path / "t").num_rows == 5 + 100


@pytest.mark.parametrize(
    ("step", "crashes_on"),
    [
        ("history", lambda path: "/archived/" in path),  # the archived commits' metadata
        ("archive_file", lambda path: path == ARCHIVE_FILE),
        ("timeline", lambda path: path.endswith(".commit.requested")),
        ("redundant", lambda path: "/rollups/" in path),  # the previous archiving's merges
    ],
)
def test_a_crash_at_any_step_of_archiving_reads_the_same_and_is_finished_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, crashes_on: Any
):
    root = tmp_path / "t"
    table = small_table(root)
    fill(table, 8)  # a first archiving done: the next one has redundant files to delete
    real_delete, real_write = Location.delete, Location.write_atomic
    writes = step in ("history", "archive_file")

    def delete(loc: Location, path: str) -> None:
        if not writes and crashes_on(path):
            raise OSError("crash")
        real_delete(loc, path)

    def write_atomic(loc: Location, path: str, data: bytes) -> None:
        if writes and crashes_on(path):
            raise OSError("crash")
        real_write(loc, path, data)

    monkeypatch.setattr(Location, "delete", delete)
    monkeypatch.setattr(Location, "write_atomic", write_atomic)
    with pytest.raises(OSError, match="crash"):
        fill(table, 8, first=8)
    monkeypatch.undo()
    committed = len(HudiTable(str(root)).commits())
    reader = HudiTable(str(root))
    assert len(reader.commits()) == committed
    assert rollup_sums(reader) == (committed * 10, committed * 10 * 1.5)
    assert read(root).num_rows == committed * 10
    table.close()
    table = small_table(root)  # the next writer finishes the work
    fill(table, 8, first=committed)
    assert len(table.commits()) == committed + 8
    assert read(root).num_rows == (committed + 8) * 10
    assert rollup_sums(table) == ((committed + 8) * 10, (committed + 8) * 10 * 1.5)
    assert len(timeline_commits(root)) <= 5


def test_merged_rollups_are_merged_again_in_tiers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hudi_archive, "FANOUT", 2)
    root = tmp_path / "t"
    table = small_table(root)
    fill(table, 40)
    archive = Archive.read(table.loc)
    assert archive.rollups is not None
    for name in ROLLUPS:
        levels = [hudi_archive._level(p) for p in archive.rollups[name]]
        assert max(levels) == hudi_archive.TOP_LEVEL  # merged twice over
        for level in range(hudi_archive.TOP_LEVEL):
            assert levels.count(level) < 2  # a full tier was merged into the next
    assert rollup_sums(table) == (400, 400 * 1.5)
    # What the tiers replaced is gone after the next archiving: few files are left on disk.
    on_disk = list((root / ROLLUP_DIR).rglob("*.parquet"))
    assert len(on_disk) < 40 * len(ROLLUPS) / 2

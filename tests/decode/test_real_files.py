"""The decoders on every real REES46 sample in ../shared, with its real defects."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.compute as pc
import pytest

from ecomwatch.sources.base import Position
from ecomwatch.sources.files import FileSource
from tests.conftest import rees46_file


def read_all(path: Path, chunk_bytes: int = 1 << 18):
    source = FileSource(path, chunk_bytes=chunk_bytes)
    events, rejects, repaired = [], [], {}
    for batch in source.read(Position()):
        events.append(batch.decoded.events)
        rejects.extend(batch.decoded.rejects.to_pylist())
        for k, v in batch.decoded.repaired.items():
            repaired[k] = repaired.get(k, 0) + v
    import pyarrow as pa

    return pa.concat_tables(events), rejects, repaired


def physical_rows(path: Path, header: bool) -> int:
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    return len(rows) - (1 if header else 0)


def test_multicat_oct_crlf_and_truncated_last_row():
    path = rees46_file("multicat_2019-Oct")
    events, rejects, _ = read_all(path)
    assert events.num_rows == 17_434
    assert len(rejects) == 1
    (bad,) = rejects
    assert bad["reason"] == "wrong_field_count"
    assert bad["line"] == 17_436  # header is line 1; the truncated row is the last line
    assert bad["raw"].endswith(",52040330")
    assert events.num_rows + len(rejects) == physical_rows(path, header=True)
    # CRLF must not leak into the last column.
    assert not pc.any(pc.match_substring(events["user_session"], "\r")).as_py()
    by_type = dict(
        zip(*pc.value_counts(events["event_type"].cast("string")).flatten(), strict=True)
    )
    assert {k.as_py(): v.as_py() for k, v in by_type.items()} == {
        "view": 17_055,
        "purchase": 214,
        "cart": 165,
    }
    # category_id above 2**53 stays exact.
    assert 2_053_013_555_631_882_655 in set(events["category_id"].to_pylist())


def test_multicat_nov_without_header():
    path = rees46_file("multicat_2019-Nov")
    events, rejects, _ = read_all(path)
    assert rejects == []
    assert events.num_rows == 683
    first = events.slice(0, 1).to_pylist()[0]
    assert first["product_id"] == 1003461
    assert first["category_id"] == 2053013555631882655
    assert first["source_pos"] == 1  # no header: the first event is line 1


@pytest.mark.parametrize("month", ["Oct", "Dec"])
def test_cosmetics_leading_index_column_is_dropped(month):
    path = rees46_file(f"cosmetics_2019-{month}")
    events, rejects, repaired = read_all(path)
    assert rejects == []
    assert repaired == {}
    expected = {"Oct": 22_283, "Dec": 20_286}[month]
    assert events.num_rows == expected
    assert events.column_names[0] == "event_time"
    # The index column (0, 1, 2, …) must not end up as the time or the product.
    assert events["event_time"][0].as_py().year == 2019


def test_cosmetics_nov_float_ids_and_empty_last_row():
    path = rees46_file("cosmetics_2019-Nov")
    events, rejects, repaired = read_all(path)
    assert len(rejects) == 1
    assert rejects[0]["reason"] == "unknown_event_type"
    assert rejects[0]["line"] == 20_078
    assert events.num_rows == 20_076
    # 5802432.0 → 5802432 exactly; 562076640.0 → 562076640.
    first = events.slice(0, 1).to_pylist()[0]
    assert first["product_id"] == 5802432
    assert first["user_id"] == 562076640
    # Float category IDs above 2**53 lost digits: nulled and counted, never guessed.
    assert repaired == {"category_id_nulled_imprecise": 20_076}
    assert events["category_id"].null_count == 20_076
    # SOURCES.md: 15 rows have no session, one of them the rejected empty last row.
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    no_session = sum(1 for r in rows if r[2] and r[-1] == "")
    assert no_session == 14
    assert events["user_session"].null_count == no_session


def test_chunk_size_does_not_change_the_result():
    path = rees46_file("multicat_2019-Oct")
    small, small_rejects, _ = read_all(path, chunk_bytes=4096)
    large, large_rejects, _ = read_all(path, chunk_bytes=1 << 24)
    assert small.equals(large.cast(small.schema)) or small.to_pylist() == large.to_pylist()
    assert small_rejects == large_rejects

"""Chunks converted while pyarrow parses them decode exactly as chunks read as bytes and
converted afterwards: the same events, the same rejects with the same text and reasons."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecomwatch.decode.chunks import iter_chunks
from ecomwatch.decode.csv_decoder import (
    _MISSES_BEFORE_BYTES,
    CsvLayout,
    TypedAttempts,
    _decode_typed,
    decode_csv_chunk,
    sniff_layout,
)
from ecomwatch.decode.validate import Decoded
from tests.conftest import REES46
from tests.decode.test_validation import GOOD, HEADER

LAYOUT = sniff_layout(HEADER.encode())
NAMES = LAYOUT.columns


def both_ways(data: bytes, layout: CsvLayout, chunk_bytes: int) -> list[tuple[Decoded, Decoded]]:
    """Each chunk decoded with a conversion attempt first, and from its bytes only."""
    pairs = []
    for chunk in iter_chunks(io.BytesIO(data), offset=0, first_line=1, chunk_bytes=chunk_bytes):
        attempted = decode_csv_chunk(chunk, layout, source_name="s", source_id="i")
        from_bytes = decode_csv_chunk(
            chunk,
            layout,
            source_name="s",
            source_id="i",
            attempts=TypedAttempts(misses=_MISSES_BEFORE_BYTES),
        )
        pairs.append((attempted, from_bytes))
    return pairs


def assert_same(pairs: list[tuple[Decoded, Decoded]]) -> None:
    for attempted, from_bytes in pairs:
        assert attempted.events.equals(from_bytes.events, check_metadata=True)
        assert attempted.rejects.equals(from_bytes.rejects)
        assert attempted.repaired == from_bytes.repaired


# Each field of GOOD, or a variant of it: valid ones the conversion takes, and defects
# (other formats, blanks, words pyarrow would read as null or as numbers) that must decode as
# they do from bytes.
VARIANTS = {
    0: [
        "2019-11-30 23:59:59 UTC",
        "2019-11-01T00:00:00Z",
        "",
        "yesterday",
        "2019-13-01 00:00:00 UTC",
    ],
    1: ["cart", "purchase", "remove_from_cart", "", "click", "NULL"],
    2: ["5", "", "NULL", "5.0", "+5", " 5", "nan", "99999999999999999999"],
    3: ["", "NULL", "N/A", "1.4875800092865987e+18", "-1", "cat"],
    4: ["", "NULL", "a,b", "électronique"],
    5: ["", "nan", "NULL", "x\udce9"],
    6: ["0", "1e3", ".5", "5.", "", "NaN", "inf", "-1.00", " 2.5", "+0.5", "1,5", "0x10"],
    7: ["1", "", "NULL", "1.5", "-3"],
    8: ["", "NULL", "N/A", "nan"],
}
GOOD_FIELDS = GOOD.split(",")


def _field(i: int) -> st.SearchStrategy[str]:
    return st.one_of(st.just(GOOD_FIELDS[i]), st.sampled_from(VARIANTS[i]))


def _quoted(value: str) -> str:
    return f'"{value}"' if "," in value else value


row = st.tuples(*[_field(i) for i in range(len(GOOD_FIELDS))]).map(
    lambda fields: ",".join(_quoted(f) for f in fields)
)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.one_of(st.just(GOOD), st.just(GOOD), row), min_size=1, max_size=30),
    chunk=st.integers(200, 4096),
)
def test_conversion_while_parsing_decodes_as_from_bytes(rows, chunk):
    data = "\n".join(rows).encode("utf-8", "surrogateescape") + b"\n"
    assert_same(both_ways(data, LAYOUT, chunk))


def _chunk(text: str):
    (chunk,) = iter_chunks(io.BytesIO(text.encode()), offset=0, first_line=1, chunk_bytes=1 << 16)
    return chunk


def test_a_clean_chunk_is_converted_while_parsed_and_a_defect_sends_it_to_bytes():
    clean = _chunk("\n".join([GOOD] * 3) + "\n")
    decoded = _decode_typed(clean, NAMES, LAYOUT, source_name="s", source_id="i")
    assert decoded is not None and decoded.events.num_rows == 3
    for defect in (
        GOOD.replace("489.07", "-1.00"),  # converts, but is rejected: its text is kept
        GOOD.replace("1003461", "1003461.0"),  # an ID as a float: repaired from bytes
        GOOD.replace("xiaomi", "xiaomi,extra"),  # a wrong field count
        GOOD.replace("2053013555631882655", "NULL"),  # pyarrow's null word: a bad ID here
    ):
        chunk = _chunk("\n".join([GOOD, defect, GOOD]) + "\n")
        assert _decode_typed(chunk, NAMES, LAYOUT, source_name="s", source_id="i") is None
        assert decode_csv_chunk(chunk, LAYOUT, source_name="s", source_id="i").read == 3


def test_a_file_goes_straight_to_bytes_after_three_chunks_in_a_row_that_did_not_convert():
    floats = _chunk(GOOD.replace("1003461", "1003461.0") + "\n")
    clean = _chunk(GOOD + "\n")
    attempts = TypedAttempts()
    for _ in range(_MISSES_BEFORE_BYTES - 1):
        decode_csv_chunk(floats, LAYOUT, source_name="s", source_id="i", attempts=attempts)
    decode_csv_chunk(clean, LAYOUT, source_name="s", source_id="i", attempts=attempts)
    assert attempts.worth_trying()  # a chunk that converted starts the count again
    for _ in range(_MISSES_BEFORE_BYTES):
        decode_csv_chunk(floats, LAYOUT, source_name="s", source_id="i", attempts=attempts)
    assert not attempts.worth_trying()
    decoded = decode_csv_chunk(clean, LAYOUT, source_name="s", source_id="i", attempts=attempts)
    assert decoded.events.num_rows == 1 and attempts.misses == _MISSES_BEFORE_BYTES


@pytest.mark.skipif(not REES46.is_dir(), reason=f"real REES46 samples not found at {REES46}")
@pytest.mark.parametrize("path", sorted(REES46.glob("*.csv*")), ids=lambda p: p.name[:20])
def test_real_samples_decode_the_same_both_ways(path):
    data = path.read_bytes()
    first, _, rest = data.partition(b"\n")
    layout = sniff_layout(first + b"\n")
    body = rest if layout.has_header else data
    assert_same(both_ways(body, layout, 1 << 16))


def test_a_blank_label_is_null_and_leaves_the_dictionary():
    rows = [GOOD.replace("xiaomi", b) for b in ("xiaomi", "", "apple", "", "xiaomi")]
    decoded = _decode_typed(
        _chunk("\n".join(rows) + "\n"), NAMES, LAYOUT, source_name="s", source_id="i"
    )
    assert decoded is not None
    brand = decoded.events["brand"].combine_chunks()
    assert brand.to_pylist() == ["xiaomi", None, "apple", None, "xiaomi"]
    assert brand.dictionary.to_pylist() == ["xiaomi", "apple"]

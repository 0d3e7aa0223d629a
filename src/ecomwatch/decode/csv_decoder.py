"""REES46 CSV: header sniffing and chunk decoding with pyarrow's CSV parser."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.rejects import RejectReason, rejects_table
from ecomwatch.decode.validate import Decoded, validate
from ecomwatch.decode.values import TIME_FORMATS
from ecomwatch.schema import (
    EVENT_SCHEMA,
    EXTRA_COLUMNS,
    INPUT_COLUMNS,
    LABEL_TYPE,
    REES46_COLUMNS,
    REQUIRED_COLUMNS,
)

_INDEX_NAMES = {"", "unnamed: 0", "index", "_c0"}


class LayoutError(ValueError):
    """The file's columns cannot be mapped to the REES46 schema."""


@dataclass(frozen=True)
class CsvLayout:
    """How the fields of a file map to schema columns (None: a field to drop)."""

    fields: tuple[str | None, ...]
    has_header: bool

    @property
    def columns(self) -> list[str]:
        return [f for f in self.fields if f is not None]


def _looks_like_time(text: str) -> bool:
    return len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-" and text[:4].isdigit()


def sniff_layout(first_line: bytes) -> CsvLayout:
    """Decide from the first line whether there is a header, and which field is which.

    A header names the columns (a leading unnamed pandas index column is dropped; unknown
    columns are ignored). Without a header the standard REES46 order is assumed, optionally
    after an index column and followed by ip, user_agent, event_id.
    """
    text = first_line.decode("utf-8", "replace").rstrip("\r\n")
    names = [f.strip().strip('"').strip().lower() for f in text.split(",")]
    if "event_time" in names and "event_type" in names:
        fields = tuple(
            None if (i == 0 and n in _INDEX_NAMES) or n not in INPUT_COLUMNS else n
            for i, n in enumerate(names)
        )
        missing = [c for c in REQUIRED_COLUMNS if c not in fields]
        if missing:
            raise LayoutError(f"the header lacks required columns: {', '.join(missing)}")
        return CsvLayout(fields, has_header=True)
    lead: tuple[str | None, ...]
    if _looks_like_time(names[0]):
        lead = ()
    elif len(names) > 1 and _looks_like_time(names[1]):
        lead = (None,)
    else:
        raise LayoutError(
            "no header and the first field is not an event_time; expected the REES46 columns "
            + ",".join(REES46_COLUMNS)
        )
    extra = len(names) - len(lead) - len(REES46_COLUMNS)
    if extra < 0 or extra > len(EXTRA_COLUMNS):
        raise LayoutError(
            f"no header and {len(names)} fields; expected {len(REES46_COLUMNS)} "
            f"to {len(REES46_COLUMNS) + len(EXTRA_COLUMNS)} (REES46 order, then ip, user_agent)"
        )
    return CsvLayout((*lead, *REES46_COLUMNS, *EXTRA_COLUMNS[:extra]), has_header=False)


@dataclass(frozen=True)
class Delimited:
    """A chunk read by pyarrow's CSV reader: the rows it parsed with each one's physical line,
    and the lines it could not (a wrong number of fields): line, text, fields found."""

    table: pa.Table
    lines: np.ndarray
    invalid: list[tuple[int, str, int]]


def read_delimited(
    chunk: TextChunk,
    names: list[str],
    *,
    include: list[str],
    parse_options: pacsv.ParseOptions | None = None,
    column_types: dict[str, pa.DataType] | None = None,
    convert_options: pacsv.ConvertOptions | None = None,
) -> Delimited:
    """Parse a chunk's lines as delimited fields named `names`, keeping `include` as binary,
    or converted to `column_types` with `-` as null, or as `convert_options` say
    (pa.ArrowInvalid when a value does not convert)."""
    invalid: list[tuple[int, str, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.text, row.actual_columns))
        return "skip"

    options = parse_options or pacsv.ParseOptions()
    options.invalid_row_handler = on_invalid
    table = pacsv.read_csv(
        io.BytesIO(chunk.data),
        read_options=pacsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 26),
        parse_options=options,
        convert_options=convert_options or _convert_options(include, column_types),
    )
    # pyarrow numbers rows without counting blank lines: map its numbers back to lines.
    lines = np.arange(chunk.line_count, dtype=np.int64)
    if table.num_rows + len(invalid) != len(lines):  # only then are there blank lines to find
        lines = np.delete(lines, chunk.blank_lines())
    invalid_index = [number - 1 for number, _, _ in invalid]
    invalid_lines = lines[invalid_index] + chunk.first_line
    relative = np.delete(lines, invalid_index) if invalid else lines
    if len(relative) != table.num_rows:
        raise LayoutError(
            f"lines {chunk.first_line}-{chunk.next_line - 1}: could not line up parsed rows with "
            "lines (a quoted field spanning lines is not supported)"
        )
    found = [
        (int(line), text, actual)
        for line, (_, text, actual) in zip(invalid_lines.tolist(), invalid, strict=True)
    ]
    return Delimited(table, relative + chunk.first_line, found)


def _convert_options(
    include: list[str], column_types: dict[str, pa.DataType] | None
) -> pacsv.ConvertOptions:
    if column_types is None:
        return pacsv.ConvertOptions(
            include_columns=include, column_types={c: pa.binary() for c in include}
        )
    return pacsv.ConvertOptions(
        include_columns=include,
        column_types=column_types,
        null_values=["-"],
        strings_can_be_null=True,
    )


# The REES46 columns that are not text, in the types pyarrow's reader can convert them to while
# it parses: about a tenth of a chunk's decoding less than reading every field as bytes and
# converting them afterwards. Only an empty field is null, as when they are converted later.
_TYPED_COLUMNS = {
    "event_time": pa.timestamp("us"),  # UTC, as the format's suffix says
    "product_id": pa.int64(),
    "category_id": pa.int64(),
    "user_id": pa.int64(),
    "price": pa.float64(),
}


def _text_type(column: str) -> pa.DataType:
    """Label columns are dictionary-encoded by the reader as it parses (cheaper than after)."""
    return LABEL_TYPE if EVENT_SCHEMA.field(column).type == LABEL_TYPE else pa.string()


def _typed_options(include: list[str]) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        include_columns=include,
        column_types={c: _TYPED_COLUMNS.get(c, _text_type(c)) for c in include},
        null_values=[""],
        strings_can_be_null=False,
        timestamp_parsers=[TIME_FORMATS[0]],
    )


def _decode_typed(
    chunk: TextChunk, names: list[str], layout: CsvLayout, *, source_name: str, source_id: str
) -> Decoded | None:
    """The chunk decoded with its columns converted as they are parsed, when every value
    converts and no row is rejected; else None. A chunk with any defect is decoded again from
    its bytes, so that rejected rows keep their text exactly and every defect its reason."""
    try:
        parsed = read_delimited(
            chunk, names, include=layout.columns, convert_options=_typed_options(layout.columns)
        )
    except pa.ArrowInvalid:  # a value in another format, or not valid UTF-8
        return None
    if parsed.invalid:
        return None
    decoded = validate(parsed.table, parsed.lines, source_name=source_name, source_id=source_id)
    return decoded if decoded.rejects.num_rows == 0 and not decoded.repaired else None


@dataclass
class TypedAttempts:
    """Whether a file's chunks are still worth converting as they are parsed. After a few
    chunks in a row that had to be decoded again from their bytes (a file whose IDs are written
    as floats, say), the file's other chunks go straight to bytes. Shared by a file's decode
    threads: a race between them costs at most an attempt."""

    misses: int = 0

    def worth_trying(self) -> bool:
        return self.misses < _MISSES_BEFORE_BYTES

    def record(self, converted: bool) -> None:
        self.misses = 0 if converted else self.misses + 1


_MISSES_BEFORE_BYTES = 3


def decode_csv_chunk(
    chunk: TextChunk,
    layout: CsvLayout,
    *,
    source_name: str,
    source_id: str,
    attempts: TypedAttempts | None = None,
) -> Decoded:
    """Parse and validate one chunk; every non-blank line ends up accepted or rejected.
    `attempts` (one per file) says whether to try converting while parsing first."""
    names = [f if f is not None else f"_drop{i}" for i, f in enumerate(layout.fields)]
    if attempts is None or attempts.worth_trying():
        typed = _decode_typed(chunk, names, layout, source_name=source_name, source_id=source_id)
        if attempts is not None:
            attempts.record(typed is not None)
        if typed is not None:
            return typed
    parsed = read_delimited(chunk, names, include=layout.columns)
    decoded = validate(parsed.table, parsed.lines, source_name=source_name, source_id=source_id)
    if not parsed.invalid:
        return decoded
    expected = len(layout.fields)
    wrong = rejects_table(
        source_name,
        [line for line, _, _ in parsed.invalid],
        [RejectReason.WRONG_FIELD_COUNT.value] * len(parsed.invalid),
        [f"{actual} fields where {expected} were expected" for _, _, actual in parsed.invalid],
        [text for _, text, _ in parsed.invalid],
    )
    rejects = pa.concat_tables([decoded.rejects, wrong]).sort_by("line")
    return Decoded(decoded.events, rejects, decoded.repaired)

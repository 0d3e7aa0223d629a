"""Text columns to typed values, column-at-a-time with pyarrow compute: times, integer IDs
and numbers, blanks as null. Python touches only values a vectorized pass could not read
(normally none). Used by `validate`, which decides what a value that does not parse means."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.schema import TIME_TYPE

# Formats tried in order, vectorized; what none of them parses goes to datetime.fromisoformat.
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%z",
)
_INT_TEXT = re.compile(r"[+-]?\d{1,19}")
NUMBER_TEXT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# Largest integer a float64 holds exactly: an ID written as a float beyond it has lost digits.
EXACT_FLOAT_LIMIT = 2**53


def mask_to_numpy(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean column as a NumPy mask, null as False."""
    filled = pc.fill_null(mask, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return filled.to_numpy(zero_copy_only=False)


def blank_to_null(text: pa.Array) -> pa.Array:
    """Empty text means 'no value'."""
    text = text.cast(pa.string())
    empty = pc.equal(pc.binary_length(text), 0)
    if not pc.any(empty).as_py():  # the usual case: no copy of the strings
        return text
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def text_or_labels(column: pa.Array) -> pa.Array:
    """A text column with empty text as null: dictionary-encoded labels stay encoded."""
    if pa.types.is_dictionary(column.type):
        return _blank_labels_to_null(column)
    return blank_to_null(column)


def _blank_labels_to_null(labels: pa.DictionaryArray) -> pa.DictionaryArray:
    """Labels whose dictionary holds empty text: those rows null, the entry dropped (features
    work per dictionary entry). A reader's dictionary holds each value once."""
    blank = np.flatnonzero(mask_to_numpy(pc.equal(pc.binary_length(labels.dictionary), 0)))
    if not len(blank):
        return labels
    at, indices = int(blank[0]), labels.indices
    shifted = pc.subtract(indices, pc.cast(pc.greater(indices, at), indices.type))
    remapped = pc.if_else(pc.equal(indices, at), pa.scalar(None, indices.type), shifted)
    dictionary = pc.filter(
        labels.dictionary, pc.not_equal(pa.array(range(len(labels.dictionary))), at)
    )
    return pa.DictionaryArray.from_arrays(remapped, dictionary)


def parse_time(col: pa.Array) -> pa.Array:
    """Text or timestamps to TIME_TYPE; unparseable values become null."""
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return col.cast(TIME_TYPE)
    text = blank_to_null(col)
    result = pc.strptime(text, format=TIME_FORMATS[0], unit="us", error_is_null=True)
    for fmt in TIME_FORMATS[1:]:
        missing = pc.and_(pc.is_null(result), pc.is_valid(text))
        if not pc.any(missing).as_py():
            break
        retry = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
        result = pc.if_else(missing, retry.cast(TIME_TYPE), result.cast(TIME_TYPE))
    result = result.cast(TIME_TYPE)
    missing = pc.and_(pc.is_null(result), pc.is_valid(text))
    if pc.any(missing).as_py():
        values = result.to_pylist()
        texts = text.to_pylist()
        for i in np.flatnonzero(mask_to_numpy(missing)):
            values[i] = _parse_iso(texts[i])
        result = pa.array(values, TIME_TYPE)
    return result


def _parse_iso(text: str) -> datetime | None:
    candidate = text.strip()
    if candidate.endswith(" UTC"):
        candidate = candidate[:-4]
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class Ids:
    values: pa.Array  # int64, null where missing or invalid
    invalid: np.ndarray  # text present but not an exact integer
    imprecise: np.ndarray  # written as a float beyond 2**53: the digits are gone


def parse_ids(col: pa.Array) -> Ids:
    """Integer IDs from text, accepting integral floats like `5859742.0` when exact."""
    n = len(col)
    if pa.types.is_integer(col.type):
        return Ids(col.cast(pa.int64()), np.zeros(n, bool), np.zeros(n, bool))
    if pa.types.is_floating(col.type):
        return _ids_from_floats(col.cast(pa.float64()), np.ones(n, bool))
    text = blank_to_null(col)
    try:
        return Ids(text.cast(pa.int64()), np.zeros(n, bool), np.zeros(n, bool))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pc.utf8_trim_whitespace(text)  # the patterns below and Arrow's casts agree on it
    is_int = mask_to_numpy(pc.match_substring_regex(text, r"^-?\d{1,18}$"))
    ints = pc.if_else(pa.array(is_int), text, pa.scalar(None, pa.string())).cast(pa.int64())
    is_number = mask_to_numpy(pc.match_substring_regex(text, NUMBER_TEXT)) & ~is_int
    floats = pc.if_else(pa.array(is_number), text, pa.scalar(None, pa.string())).cast(pa.float64())
    from_floats = _ids_from_floats(floats, is_number)
    values = pc.if_else(pa.array(is_int), ints, from_floats.values)
    # Long integers the fast regex skipped (19 digits) are checked one by one.
    present = mask_to_numpy(pc.is_valid(text))
    leftover = present & ~is_int & ~is_number
    if leftover.any():
        vals = values.to_pylist()
        texts = text.to_pylist()
        for i in np.flatnonzero(leftover):
            if _INT_TEXT.fullmatch(texts[i].strip()):
                parsed = int(texts[i])
                if -(2**63) <= parsed < 2**63:
                    vals[i] = parsed
                    leftover[i] = False
        values = pa.array(vals, pa.int64())
    return Ids(values, leftover | from_floats.invalid, from_floats.imprecise)


def _ids_from_floats(floats: pa.Array, considered: np.ndarray) -> Ids:
    array = floats.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(array)
        integral = finite & (np.floor(array) == array)
        exact = integral & (np.abs(array) <= EXACT_FLOAT_LIMIT)
    imprecise = considered & integral & ~exact
    invalid = considered & ~integral
    ints = np.where(exact, array, 0).astype(np.int64)
    return Ids(pa.array(ints, mask=~exact), invalid, imprecise)

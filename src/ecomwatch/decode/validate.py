"""Vectorized validation: raw columns in, `EVENT_SCHEMA` rows and rejected rows out.

Every decoder (CSV, JSON Lines, Parquet) hands its raw columns here, as text or already typed,
with the physical position of each row. Checks run column-at-a-time with pyarrow compute; Python
loops only over rows that already failed a vectorized check (normally none), so clean input never
pays for them. Each row gets the first reason it fails; `read = accepted + rejected` by
construction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.rejects import RejectReason, empty_rejects, rejects_table
from ecomwatch.decode.web_events import request_kind
from ecomwatch.schema import (
    COMMERCE_TYPES,
    EVENT_SCHEMA,
    INPUT_COLUMNS,
    REQUIRED_COLUMNS,
    TIME_TYPE,
    WEB_COLUMNS,
    EventType,
    conform,
    constant,
    one_array,
)

# Formats tried in order, vectorized; what none of them parses goes to datetime.fromisoformat.
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%d %H:%M:%S%z",
)
_INT_TEXT = re.compile(r"[+-]?\d{1,19}")
_NUMBER_TEXT = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
# Largest integer a float64 holds exactly: an ID written as a float beyond it has lost digits.
EXACT_FLOAT_LIMIT = 2**53
_TEXT_COLUMNS = ("category_code", "brand", "user_session", "ip", "user_agent", "event_id")


@dataclass(frozen=True)
class Decoded:
    """The outcome of decoding one chunk of one source."""

    events: pa.Table
    rejects: pa.Table
    # Values repaired rather than rejected, by kind (e.g. category IDs that lost precision).
    repaired: dict[str, int] = field(default_factory=dict)

    # Rows seen: accepted + rejected.
    @property
    def read(self) -> int:
        return self.events.num_rows + self.rejects.num_rows


def empty_decoded() -> Decoded:
    return Decoded(EVENT_SCHEMA.empty_table(), empty_rejects())


def merge_decoded(parts: Sequence[Decoded]) -> Decoded:
    """Several decoded parts as one (in order); their repair counts added up."""
    if not parts:
        return empty_decoded()
    if len(parts) == 1:
        return parts[0]
    return Decoded(
        pa.concat_tables([p.events for p in parts]),
        pa.concat_tables([p.rejects for p in parts]),
        repairs_of(parts),
    )


def repairs_of(parts: Sequence[Decoded]) -> dict[str, int]:
    """The parts' repair counts, added up by kind."""
    repaired: dict[str, int] = {}
    for part in parts:
        for kind, count in part.repaired.items():
            repaired[kind] = repaired.get(kind, 0) + count
    return repaired


@dataclass
class _Checks:
    """Per-row first failure, as an index into REASONS (0 = accepted)."""

    n: int
    codes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.codes = np.zeros(self.n, dtype=np.int8)

    def fail(self, mask: pa.Array | np.ndarray, reason: RejectReason) -> None:
        arr = mask if isinstance(mask, np.ndarray) else _mask_to_numpy(mask)
        self.codes[arr & (self.codes == 0)] = REASONS.index(reason)


REASONS: tuple[RejectReason | None, ...] = (None, *RejectReason)


def _mask_to_numpy(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    filled = pc.fill_null(mask, False)
    if isinstance(filled, pa.ChunkedArray):
        filled = filled.combine_chunks()
    return filled.to_numpy(zero_copy_only=False)


def _blank_to_null(text: pa.Array) -> pa.Array:
    """Empty text means 'no value'."""
    text = text.cast(pa.string())
    empty = pc.equal(pc.binary_length(text), 0)
    if not pc.any(empty).as_py():  # the usual case: no copy of the strings
        return text
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def _text_or_labels(column: pa.Array) -> pa.Array:
    """A text column with empty text as null: dictionary-encoded labels stay encoded."""
    if pa.types.is_dictionary(column.type):
        return _blank_labels_to_null(column)
    return _blank_to_null(column.cast(pa.string()))


def _blank_labels_to_null(labels: pa.DictionaryArray) -> pa.DictionaryArray:
    """Labels whose dictionary holds empty text: those rows null, the entry dropped (features
    work per dictionary entry). A reader's dictionary holds each value once."""
    blank = np.flatnonzero(_mask_to_numpy(pc.equal(pc.binary_length(labels.dictionary), 0)))
    if not len(blank):
        return labels
    at, indices = int(blank[0]), labels.indices
    shifted = pc.subtract(indices, pc.cast(pc.greater(indices, at), indices.type))
    remapped = pc.if_else(pc.equal(indices, at), pa.scalar(None, indices.type), shifted)
    dictionary = pc.filter(
        labels.dictionary, pc.not_equal(pa.array(range(len(labels.dictionary))), at)
    )
    return pa.DictionaryArray.from_arrays(remapped, dictionary)


def _to_text(col: pa.Array, checks: _Checks) -> pa.Array:
    """Binary or string to valid UTF-8 text; rows with invalid bytes are rejected and nulled."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    if not pa.types.is_binary(col.type) and not pa.types.is_large_binary(col.type):
        return col.cast(pa.string())
    try:
        return col.cast(pa.string())
    except pa.ArrowInvalid:
        bad = np.zeros(len(col), dtype=bool)
        for i, value in enumerate(col.to_pylist()):
            if value is not None:
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    bad[i] = True
        checks.fail(bad, RejectReason.INVALID_UTF8)
        cleaned = pc.if_else(pa.array(bad), pa.scalar(None, col.type), col)
        return cleaned.cast(pa.string())


def _parse_time(col: pa.Array) -> pa.Array:
    """Text or timestamps to TIME_TYPE; unparseable values become null."""
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return col.cast(TIME_TYPE)
    text = _blank_to_null(col)
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
        for i in np.flatnonzero(_mask_to_numpy(missing)):
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
class _Ids:
    values: pa.Array  # int64, null where missing or invalid
    invalid: np.ndarray  # text present but not an exact integer
    imprecise: np.ndarray  # written as a float beyond 2**53: the digits are gone


def _parse_ids(col: pa.Array) -> _Ids:
    """Integer IDs from text, accepting integral floats like `5859742.0` when exact."""
    n = len(col)
    if pa.types.is_integer(col.type):
        return _Ids(col.cast(pa.int64()), np.zeros(n, bool), np.zeros(n, bool))
    if pa.types.is_floating(col.type):
        return _ids_from_floats(col.cast(pa.float64()), np.ones(n, bool))
    text = _blank_to_null(col)
    try:
        return _Ids(text.cast(pa.int64()), np.zeros(n, bool), np.zeros(n, bool))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    text = pc.utf8_trim_whitespace(text)  # the patterns below and Arrow's casts agree on it
    is_int = _mask_to_numpy(pc.match_substring_regex(text, r"^-?\d{1,18}$"))
    ints = pc.if_else(pa.array(is_int), text, pa.scalar(None, pa.string())).cast(pa.int64())
    is_number = _mask_to_numpy(pc.match_substring_regex(text, _NUMBER_TEXT)) & ~is_int
    floats = pc.if_else(pa.array(is_number), text, pa.scalar(None, pa.string())).cast(pa.float64())
    from_floats = _ids_from_floats(floats, is_number)
    values = pc.if_else(pa.array(is_int), ints, from_floats.values)
    # Long integers the fast regex skipped (19 digits) are checked one by one.
    present = _mask_to_numpy(pc.is_valid(text))
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
    return _Ids(values, leftover | from_floats.invalid, from_floats.imprecise)


def _ids_from_floats(floats: pa.Array, considered: np.ndarray) -> _Ids:
    array = floats.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(array)
        integral = finite & (np.floor(array) == array)
        exact = integral & (np.abs(array) <= EXACT_FLOAT_LIMIT)
    imprecise = considered & integral & ~exact
    invalid = considered & ~integral
    ints = np.where(exact, array, 0).astype(np.int64)
    return _Ids(pa.array(ints, mask=~exact), invalid, imprecise)


def _parse_price(col: pa.Array, checks: _Checks, *, may_lack: np.ndarray) -> pa.Array:
    """Prices; missing or not finite is rejected, except missing where `may_lack`."""
    if (
        pa.types.is_floating(col.type)
        or pa.types.is_integer(col.type)
        or pa.types.is_decimal(col.type)
    ):
        values = col.cast(pa.float64())
    else:
        text = pc.utf8_trim_whitespace(_blank_to_null(col))  # Arrow's cast does not trim
        numeric = pc.match_substring_regex(text, _NUMBER_TEXT)
        values = pc.if_else(numeric, text, pa.scalar(None, pa.string())).cast(pa.float64())
    array = values.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(array)
        excused = may_lack & _mask_to_numpy(pc.is_null(col)) if may_lack.any() else may_lack
        checks.fail(~finite & ~excused, RejectReason.BAD_PRICE)
        checks.fail(finite & (array < 0), RejectReason.NEGATIVE_PRICE)
    return values


def validate(
    raw: pa.Table,
    positions: np.ndarray,
    *,
    source_name: str,
    source_id: str,
    render_raw: Callable[[int], str] | None = None,
) -> Decoded:
    """Check and convert one chunk of raw columns.

    `positions` holds each row's physical position (a line number for text files, a row number
    for Parquet). `render_raw(i)` rebuilds the raw text of row i for the dead letter; by default
    the row's fields are joined with commas.
    """
    n = raw.num_rows
    if n == 0:
        return Decoded(EVENT_SCHEMA.empty_table(), empty_rejects())
    checks = _Checks(n)
    columns = {name: one_array(raw.column(name)) for name in raw.column_names}
    originals = dict(columns)
    text_cols: dict[str, pa.Array] = {}
    for name in INPUT_COLUMNS:
        if name in columns and not _is_typed(columns[name]):
            text_cols[name] = _to_text(columns[name], checks)
        elif name in columns:
            text_cols[name] = columns[name]
    missing = [c for c in REQUIRED_COLUMNS if c not in text_cols]
    if missing:
        raise ValueError(f"missing required columns: {', '.join(missing)}")

    event_time = _parse_time(text_cols["event_time"])
    checks.fail(pc.is_null(event_time), RejectReason.BAD_EVENT_TIME)

    event_type = _text_or_labels(text_cols["event_type"])
    # A web log's events sent on as JSON (a request, or a view a URL map found) have a status
    # and need no product, user or price.
    web = _web_fields(text_cols, n)
    commerce = _mask_to_numpy(pc.is_in(event_type, pa.array(COMMERCE_TYPES)))
    request = np.zeros(n, dtype=bool)
    may_lack = request
    if web is not None:
        request = _mask_to_numpy(pc.equal(event_type, EventType.REQUEST.value))
        may_lack = request | ~web.absent
    checks.fail(~(commerce | request), RejectReason.UNKNOWN_EVENT_TYPE)

    product = _parse_ids(text_cols["product_id"])
    checks.fail(_missing_or_invalid(product, may_lack), RejectReason.BAD_PRODUCT_ID)

    category = _parse_ids(text_cols["category_id"])
    checks.fail(category.invalid, RejectReason.BAD_CATEGORY_ID)

    user = _parse_ids(text_cols["user_id"])
    checks.fail(_missing_or_invalid(user, may_lack), RejectReason.BAD_USER_ID)

    price = _parse_price(text_cols["price"], checks, may_lack=may_lack)
    if web is not None:  # a request needs a status; any row that has one, a valid one
        checks.fail(web.bad & (request | ~web.absent), RejectReason.BAD_WEB_FIELD)

    accepted = checks.codes == 0
    repaired: dict[str, int] = {}
    imprecise = int((category.imprecise & accepted).sum())
    if imprecise:
        repaired["category_id_nulled_imprecise"] = imprecise

    n_ok = int(accepted.sum())
    keep = pa.array(accepted)

    def kept(values: pa.Array) -> pa.Array:
        return values if n_ok == n else pc.filter(values, keep)  # usually every row: no copy

    out: dict[str, pa.Array] = {
        "event_time": kept(event_time),
        "event_type": kept(event_type).dictionary_encode(),
        "product_id": kept(product.values),
        "category_id": kept(category.values),
        "price": kept(price),
        "user_id": kept(user.values),
    }
    for name in _TEXT_COLUMNS:
        if name in text_cols:
            value = kept(_text_or_labels(text_cols[name]))
        else:
            value = pa.nulls(n_ok, pa.string())
        out[name] = value
    if web is not None:
        out |= {name: kept(values) for name, values in web.columns.items()}
    out["source"] = constant(source_id, n_ok)
    out["source_pos"] = pa.array(positions[accepted], pa.int64())
    events = pa.table(
        [conform(out[f.name], f.type) if f.name in out else pa.nulls(n_ok, f.type)
         for f in EVENT_SCHEMA],
        schema=EVENT_SCHEMA,
    )  # fmt: skip
    rejects = _rejects(checks, positions, originals, source_name, render_raw=render_raw)
    return Decoded(events, rejects, repaired)


def _missing_or_invalid(ids: _Ids, may_lack: np.ndarray) -> np.ndarray:
    """Rows whose ID is missing (unless `may_lack`) or not an exact integer."""
    missing = _mask_to_numpy(pc.is_null(ids.values))
    return missing & ~may_lack | (ids.invalid & may_lack) if may_lack.any() else missing


@dataclass(frozen=True)
class _WebFields:
    columns: dict[str, pa.Array]  # the web columns, typed (status int16, bytes int64)
    bad: np.ndarray  # status missing or out of range, or bytes not a count
    absent: np.ndarray  # no status given (a shop's own event, not a web request)


def _web_fields(text_cols: dict[str, pa.Array], n: int) -> _WebFields | None:
    """The web columns of rows that have any (None when no row has a status: REES46 input
    pays nothing)."""
    given = text_cols.get("status")
    if given is None or given.null_count == n:
        return None
    status, status_ok = _web_number(given, 100, 999)
    size_text = text_cols.get("bytes")
    size, size_ok = (
        (pa.nulls(n, pa.int64()), np.ones(n, bool))
        if size_text is None else _web_number(size_text, 0, 2**62)
    )  # fmt: skip
    if size_text is not None:
        size_ok |= _mask_to_numpy(pc.is_null(size_text))  # a size is optional
    columns: dict[str, pa.Array] = {"status": status, "bytes": size}
    for name in WEB_COLUMNS:
        if name in text_cols and name not in columns:
            columns[name] = _blank_to_null(text_cols[name].cast(pa.string()))
    absent = pc.is_null(given)
    if "request_kind" not in columns or columns["request_kind"].null_count == n:
        nothing = pa.nulls(n, pa.string())
        kind = request_kind(columns.get("method", nothing), columns.get("path", nothing))
        columns["request_kind"] = pc.if_else(absent, nothing, kind)
    return _WebFields(columns, ~status_ok | ~size_ok, _mask_to_numpy(absent))


def _web_number(values: pa.Array, low: int, high: int) -> tuple[pa.Array, np.ndarray]:
    """Whole numbers in [low, high] (null where absent or not one) and where they are."""
    ids = _parse_ids(values)
    number = ids.values
    inside = pc.and_(pc.greater_equal(number, low), pc.less_equal(number, high))
    ok = _mask_to_numpy(pc.fill_null(inside, False)) & ~ids.invalid
    return pc.if_else(pa.array(ok), number, pa.scalar(None, pa.int64())), ok


def _is_typed(col: pa.Array) -> bool:
    t = col.type
    return not (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_null(t)
    )


_DETAIL = {
    RejectReason.INVALID_UTF8: "the row holds bytes that are not UTF-8",
    RejectReason.BAD_EVENT_TIME: "event_time is missing or not a time",
    RejectReason.UNKNOWN_EVENT_TYPE: "event_type is not view, cart, remove_from_cart or purchase",
    RejectReason.BAD_PRODUCT_ID: "product_id is missing or not an exact integer",
    RejectReason.BAD_CATEGORY_ID: "category_id is not an integer",
    RejectReason.BAD_USER_ID: "user_id is missing or not an exact integer",
    RejectReason.BAD_PRICE: "price is missing or not a finite number",
    RejectReason.NEGATIVE_PRICE: "price is negative",
    RejectReason.BAD_WEB_FIELD: "a request's status is missing or not an HTTP status (100-999), "
    "or its bytes not a count",
}
_FIELD_OF = {
    RejectReason.BAD_EVENT_TIME: "event_time",
    RejectReason.UNKNOWN_EVENT_TYPE: "event_type",
    RejectReason.BAD_PRODUCT_ID: "product_id",
    RejectReason.BAD_CATEGORY_ID: "category_id",
    RejectReason.BAD_USER_ID: "user_id",
    RejectReason.BAD_PRICE: "price",
    RejectReason.NEGATIVE_PRICE: "price",
    RejectReason.BAD_WEB_FIELD: "status",
}


def _rejects(
    checks: _Checks,
    positions: np.ndarray,
    originals: dict[str, pa.Array],
    source_name: str,
    *,
    render_raw: Callable[[int], str] | None,
) -> pa.Table:
    bad = np.flatnonzero(checks.codes)
    if len(bad) == 0:
        return empty_rejects()
    taken = {name: col.take(pa.array(bad)).to_pylist() for name, col in originals.items()}
    lines, reasons, details, raws = [], [], [], []
    for j, i in enumerate(bad):
        reason = REASONS[checks.codes[i]]
        assert reason is not None
        lines.append(int(positions[i]))
        reasons.append(reason.value)
        column = _FIELD_OF.get(reason)
        detail = _DETAIL[reason]
        if column is not None and column in taken:
            detail = f"{detail}: {_show(taken[column][j])}"
        details.append(detail)
        if render_raw is not None:
            raws.append(render_raw(int(i)))
        else:
            raws.append(",".join(_show_raw(taken[name][j]) for name in originals))
    return rejects_table(source_name, lines, reasons, details, raws)


def _show(value: object) -> str:
    if value is None:
        return "(empty)"
    if isinstance(value, bytes):
        return repr(value.decode("utf-8", "backslashreplace"))
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return repr(str(value))


def _show_raw(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)

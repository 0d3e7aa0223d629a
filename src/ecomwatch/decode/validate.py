"""Vectorized validation: raw columns in, `EVENT_SCHEMA` rows and rejected rows out.

Every decoder (CSV, JSON Lines, Parquet) hands its raw columns here, as text or already typed,
with the physical position of each row. Checks run column-at-a-time with pyarrow compute; Python
loops only over rows that already failed a vectorized check (normally none), so clean input never
pays for them. Each row gets the first reason it fails; `read = accepted + rejected` by
construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.rejects import RejectReason, empty_rejects, rejects_table
from ecomwatch.decode.values import (
    NUMBER_TEXT,
    Ids,
    blank_to_null,
    mask_to_numpy,
    parse_ids,
    parse_time,
    text_or_labels,
)
from ecomwatch.decode.web_events import request_kind
from ecomwatch.schema import (
    COMMERCE_TYPES,
    EVENT_SCHEMA,
    INPUT_COLUMNS,
    REQUIRED_COLUMNS,
    WEB_COLUMNS,
    EventType,
    conform,
    constant,
    one_array,
)

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
        arr = mask if isinstance(mask, np.ndarray) else mask_to_numpy(mask)
        self.codes[arr & (self.codes == 0)] = REASONS.index(reason)


REASONS: tuple[RejectReason | None, ...] = (None, *RejectReason)


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


def _parse_price(col: pa.Array, checks: _Checks, *, may_lack: np.ndarray) -> pa.Array:
    """Prices; missing or not finite is rejected, except missing where `may_lack`."""
    if (
        pa.types.is_floating(col.type)
        or pa.types.is_integer(col.type)
        or pa.types.is_decimal(col.type)
    ):
        values = col.cast(pa.float64())
    else:
        text = pc.utf8_trim_whitespace(blank_to_null(col))  # Arrow's cast does not trim
        numeric = pc.match_substring_regex(text, NUMBER_TEXT)
        values = pc.if_else(numeric, text, pa.scalar(None, pa.string())).cast(pa.float64())
    array = values.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(array)
        excused = may_lack & mask_to_numpy(pc.is_null(col)) if may_lack.any() else may_lack
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

    event_time = parse_time(text_cols["event_time"])
    checks.fail(pc.is_null(event_time), RejectReason.BAD_EVENT_TIME)

    event_type = text_or_labels(text_cols["event_type"])
    # A web log's events sent on as JSON (a request, or a view a URL map found) have a status
    # and need no product, user or price.
    web = _web_fields(text_cols, n)
    commerce = mask_to_numpy(pc.is_in(event_type, pa.array(COMMERCE_TYPES)))
    request = np.zeros(n, dtype=bool)
    may_lack = request
    if web is not None:
        request = mask_to_numpy(pc.equal(event_type, EventType.REQUEST.value))
        may_lack = request | ~web.absent
    checks.fail(~(commerce | request), RejectReason.UNKNOWN_EVENT_TYPE)

    product = parse_ids(text_cols["product_id"])
    checks.fail(_missing_or_invalid(product, may_lack), RejectReason.BAD_PRODUCT_ID)

    category = parse_ids(text_cols["category_id"])
    checks.fail(category.invalid, RejectReason.BAD_CATEGORY_ID)

    user = parse_ids(text_cols["user_id"])
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
            value = kept(text_or_labels(text_cols[name]))
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


def _missing_or_invalid(ids: Ids, may_lack: np.ndarray) -> np.ndarray:
    """Rows whose ID is missing (unless `may_lack`) or not an exact integer."""
    missing = mask_to_numpy(pc.is_null(ids.values))
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
        size_ok |= mask_to_numpy(pc.is_null(size_text))  # a size is optional
    columns: dict[str, pa.Array] = {"status": status, "bytes": size}
    for name in WEB_COLUMNS:
        if name in text_cols and name not in columns:
            columns[name] = blank_to_null(text_cols[name])
    absent = pc.is_null(given)
    if "request_kind" not in columns or columns["request_kind"].null_count == n:
        nothing = pa.nulls(n, pa.string())
        kind = request_kind(columns.get("method", nothing), columns.get("path", nothing))
        columns["request_kind"] = pc.if_else(absent, nothing, kind)
    return _WebFields(columns, ~status_ok | ~size_ok, mask_to_numpy(absent))


def _web_number(values: pa.Array, low: int, high: int) -> tuple[pa.Array, np.ndarray]:
    """Whole numbers in [low, high] (null where absent or not one) and where they are."""
    ids = parse_ids(values)
    number = ids.values
    inside = pc.and_(pc.greater_equal(number, low), pc.less_equal(number, high))
    ok = mask_to_numpy(pc.fill_null(inside, False)) & ~ids.invalid
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

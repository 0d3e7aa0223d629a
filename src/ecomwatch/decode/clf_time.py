"""The time of an NCSA (common/combined) log line, `10/Oct/2000:13:55:36 -0700`, as UTC.

A well-formed stamp has a fixed width, so its digits sit at fixed places: the column is read
as one byte matrix (a row a stamp) and converted with integer arithmetic in numpy, with no
Python and no string parsing per value. A time must be a real one (no 31 June; a leap second
`:60` is the next minute) between 1900 and 2199. A stamp of another width (nginx and Apache
write none) goes through Arrow's strptime.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.schema import TIME_TYPE

TIME_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
_WIDTH = len("10/Oct/2000:13:55:36 -0700")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_CODES = np.array([int.from_bytes(name.encode(), "big") for name in _MONTHS])
_MONTH_ORDER = np.argsort(_MONTH_CODES)
_SEPARATORS = {2: "/", 6: "/", 11: ":", 14: ":", 17: ":"}  # in `dd/Mon/yyyy:HH:MM:SS`
_DIGITS = (0, 1, 7, 8, 9, 10, 12, 13, 15, 16, 18, 19)


def parse_clf_times(stamps: pa.Array) -> pa.Array:
    """Stamps (text, `dd/Mon/yyyy:HH:MM:SS ±hhmm`) as UTC timestamps; null where one is not
    such a time."""
    lengths = pc.fill_null(pc.equal(pc.binary_length(stamps), _WIDTH), False)
    fixed = np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=bool)
    micros = np.zeros(len(stamps), dtype=np.int64)
    valid = np.zeros(len(stamps), dtype=bool)
    if fixed.any():
        subset = stamps if fixed.all() else stamps.filter(pa.array(fixed))
        micros[fixed], valid[fixed] = _fixed_width_micros(_byte_matrix(subset))
    if not fixed.all():
        others = np.flatnonzero(~fixed)
        parsed = pc.strptime(stamps.take(pa.array(others)), format=TIME_FORMAT, unit="us",
                             error_is_null=True).cast(pa.int64())  # fmt: skip
        micros[others] = pc.fill_null(parsed, 0).to_numpy()
        valid[others] = np.asarray(pc.is_valid(parsed).to_numpy(zero_copy_only=False))
    return pa.array(micros, pa.int64(), mask=~valid).cast(TIME_TYPE)


def parse_clf_time_fields(time: pa.Array, zone: pa.Array) -> pa.Array:
    """`parse_clf_times` of a line split on spaces: the text fields `[dd/Mon/yyyy:HH:MM:SS` and
    `±hhmm]`, their first and last character dropped; read in place (no joined copy) when
    every value has those widths."""
    if (
        time.null_count == 0
        and zone.null_count == 0
        and _all_of_width(time, _WIDTH - 5)
        and _all_of_width(zone, 6)
    ):
        seconds, valid = _local_seconds(_byte_matrix(time, _WIDTH - 5)[:, 1:])
        zones = _byte_matrix(zone, 6)
        offsets, zone_ok = _zone_seconds(zones[:, :5])
        valid &= zone_ok & (zones[:, 5] == ord("]"))
        micros = np.where(valid, (seconds - offsets) * 1_000_000, 0)
        return pa.array(micros, pa.int64(), mask=~valid).cast(TIME_TYPE)
    stamps = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(time, 1), pc.utf8_rtrim(zone, characters="]"), " "
    )
    return parse_clf_times(stamps)


def _all_of_width(values: pa.Array, width: int) -> bool:
    return bool(pc.all(pc.equal(pc.binary_length(values), width)).as_py())


def _byte_matrix(values: pa.Array, width: int = _WIDTH) -> np.ndarray:
    """The bytes of text values that all have `width` bytes, one row each (no copy)."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    start = int(offsets[values.offset])
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    return data[start : start + width * len(values)].reshape(len(values), width)


def _fixed_width_micros(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch (UTC) of each row of stamp bytes, and whether it is one."""
    seconds, ok = _local_seconds(text[:, :20])
    offsets, zone_ok = _zone_seconds(text[:, 21:])
    ok &= zone_ok & (text[:, 20] == ord(" "))
    return np.where(ok, (seconds - offsets) * 1_000_000, 0), ok


def _local_seconds(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds since the epoch of each row's `dd/Mon/yyyy:HH:MM:SS` as if in UTC, and whether
    it is a real time."""
    columns = np.ascontiguousarray(text.T)  # one row per character position
    digits = columns[list(_DIGITS)] - np.uint8(ord("0"))  # wraps: a non-digit is above 9
    ok = (digits <= 9).all(axis=0)
    for at, char in _SEPARATORS.items():
        ok &= columns[at] == ord(char)
    day, year, hour = _number(digits, 0, 2), _number(digits, 2, 6), _number(digits, 6, 8)
    minute, second = _number(digits, 8, 10), _number(digits, 10, 12)
    letters = columns[3:6].astype(np.int64) | 0x20  # month names in any case
    code = (letters[0] << 16) | (letters[1] << 8) | letters[2]
    found = np.minimum(np.searchsorted(_MONTH_CODES[_MONTH_ORDER], code), len(_MONTHS) - 1)
    month = _MONTH_ORDER[found] + 1
    ok &= _MONTH_CODES[month - 1] == code
    ok &= (year >= _FIRST_YEAR) & (year < _FIRST_YEAR + _YEARS)
    at = np.clip((year - _FIRST_YEAR) * 12 + month - 1, 0, len(_MONTH_START) - 1)
    ok &= (day >= 1) & (day <= _MONTH_LENGTH[at]) & (hour <= 23) & (minute <= 59) & (second <= 60)
    return (_MONTH_START[at] + day - 1) * 86400 + hour * 3600 + minute * 60 + second, ok


def _zone_seconds(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `±hhmm` in seconds east of UTC, and whether it is one."""
    columns = np.ascontiguousarray(text.T)
    digits = columns[1:] - np.uint8(ord("0"))
    sign = columns[0]
    ok = (digits <= 9).all(axis=0) & ((sign == ord("+")) | (sign == ord("-")))
    hours, minutes = _number(digits, 0, 2), _number(digits, 2, 4)
    ok &= (hours <= 18) & (minutes <= 59)
    return np.where(sign == ord("-"), -1, 1) * (hours * 3600 + minutes * 60), ok


def _number(digits: np.ndarray, first: int, last: int) -> np.ndarray:
    """The decimal number in rows `first` to `last` of a digit matrix (a row a position)."""
    value = digits[first].astype(np.int64)
    for row in range(first + 1, last):
        value = value * 10 + digits[row]
    return value


def _month_starts() -> tuple[np.ndarray, np.ndarray]:
    """Days from 1970-01-01 to the first of each month of the years covered, and each month's
    length in days."""
    first, after = np.datetime64(f"{_FIRST_YEAR}-01"), np.datetime64(f"{_FIRST_YEAR + _YEARS}-02")
    months = np.arange(first, after, dtype="M8[M]")
    days = months.astype("M8[D]").astype(np.int64)
    return days[:-1], np.diff(days)


_FIRST_YEAR, _YEARS = 1900, 300  # the years a log's time may have: 1900 to 2199
_MONTH_START, _MONTH_LENGTH = _month_starts()

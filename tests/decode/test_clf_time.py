"""The fixed-width reading of NCSA log times agrees with Arrow's strptime on real dates."""

from __future__ import annotations

import calendar
import random

import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.decode.clf_time import TIME_FORMAT, parse_clf_times
from ecomwatch.schema import TIME_TYPE

MONTHS = [calendar.month_abbr[m] for m in range(1, 13)]


def _strptime(stamps: list[str | None]) -> list[object]:
    parsed = pc.strptime(pa.array(stamps, pa.string()), format=TIME_FORMAT, unit="us",
                         error_is_null=True)  # fmt: skip
    return parsed.cast(TIME_TYPE).to_pylist()


def _random_stamp(rng: random.Random) -> str:
    year, month = rng.randint(1900, 2199), rng.randint(1, 12)
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    clock = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    zone = f"{rng.choice('+-')}{rng.randint(0, 14):02d}{rng.choice([0, 30, 45]):02d}"
    return f"{day:02d}/{MONTHS[month - 1]}/{year}:{clock} {zone}"


def test_real_dates_match_strptime() -> None:
    rng = random.Random(7)
    stamps = [_random_stamp(rng) for _ in range(20_000)]
    got = parse_clf_times(pa.array(stamps, pa.string())).to_pylist()
    assert got == _strptime(stamps)


def test_impossible_or_malformed_times_are_null() -> None:
    stamps = [
        "31/Jun/2024:10:00:00 +0000",  # no 31 June
        "29/Feb/2023:10:00:00 +0000",  # not a leap year
        "10/Foo/2024:10:00:00 +0000",
        "10/Oct/2024:24:00:00 +0000",
        "10/Oct/2024:10:00:00 +0099",
        "10/Oct/2024 10:00:00 +0000",
        "1x/Oct/2024:10:00:00 +0000",
        "10/Oct/1899:10:00:00 +0000",  # outside 1900-2199
        "10/Oct/2024:10:00:00 *0000",
    ]
    assert parse_clf_times(pa.array(stamps, pa.string())).null_count == len(stamps)


def test_leap_day_any_case_and_other_widths() -> None:
    stamps = [
        "29/Feb/2024:23:59:59 -0100",
        "01/oct/2000:13:55:36 -0700",
        "1/Oct/2000:13:55:36 -0700",  # another width: strptime decides
        None,
        "",
    ]
    got = parse_clf_times(pa.array(stamps, pa.string())).to_pylist()
    expected = _strptime(["01/Mar/2024:00:59:59 +0000", "01/Oct/2000:20:55:36 +0000"])
    assert got[:2] == expected
    assert got[2] == _strptime(["1/Oct/2000:13:55:36 -0700"])[0]
    assert got[3:] == [None, None]


def test_a_sliced_column_reads_its_own_rows() -> None:
    stamps = pa.array(["01/Jan/2001:00:00:00 +0000", "02/Jan/2001:00:00:00 +0000"] * 3)
    assert parse_clf_times(stamps.slice(3, 2)).to_pylist() == _strptime(
        ["02/Jan/2001:00:00:00 +0000", "01/Jan/2001:00:00:00 +0000"]
    )

"""Record keys and sequence numbers are built as text without Python strings per row: the
same text Python's own formatting gives."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ecomwatch.lake.hudi_rows import prefixed_numbers


@given(
    prefix=st.text(alphabet="abcdef0123456789:_", max_size=20),
    numbers=st.lists(st.integers(0, 10**18 - 1), max_size=50),
    width=st.integers(1, 20),
)
def test_a_prefixed_number_is_the_prefix_and_the_last_width_digits(prefix, numbers, width):
    built = prefixed_numbers(prefix, np.array(numbers, dtype=np.int64), width)
    expected = [prefix + f"{n:0{width}d}"[-width:] for n in numbers]
    assert built.to_pylist() == expected

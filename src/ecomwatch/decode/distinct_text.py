"""A text column seen as its distinct values: what is computed of each distinct value (an RE2
match, a looked-up number) is given to every row that holds it, so that a batch's work is per
distinct value (a log repeats its paths, user agents and queries), vectorized."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.schema import one_array


def mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean column as numpy, null as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


class DistinctText:
    """A text column encoded once: what is known of each distinct value, given per row."""

    def __init__(self, column: pa.ChunkedArray | pa.Array) -> None:
        array = one_array(column)
        if not pa.types.is_dictionary(array.type):
            array = pc.dictionary_encode(array)
        self.values = array.dictionary.cast(pa.string())
        indices = array.indices
        self.valid = mask(pc.is_valid(indices))
        self.indices = np.asarray(pc.fill_null(indices, 0).to_numpy(zero_copy_only=False))

    def matches(self, pattern: str) -> np.ndarray:
        """Per row: whether its value matches the RE2 pattern (False without a value)."""
        if not len(self.values):
            return np.zeros(len(self.indices), dtype=bool)
        return self.valid & mask(pc.match_substring_regex(self.values, pattern))[self.indices]

    def is_one_of(self, *texts: str) -> np.ndarray:
        """Per row: whether its value is one of `texts` (tested once per distinct value)."""
        return self.per_row(mask(pc.is_in(self.values, value_set=pa.array(texts))))

    def per_row(self, per_value: np.ndarray) -> np.ndarray:
        """Each row's entry of `per_value` (one per distinct value; 0 for a row without one)."""
        if not len(self.values):
            return np.zeros(len(self.indices), dtype=per_value.dtype)
        return np.where(self.valid, per_value[self.indices], 0).astype(per_value.dtype)

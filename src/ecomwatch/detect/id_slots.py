"""Dense slots for integer ids, kept across batches: id → its slot (0, 1, 2… in the order met).

Product popularity keeps a weight per product in an array indexed by slot, so each batch maps
its product ids to slots. Arrow's `index_in` builds a hash table of every id known on each call:
with tens of thousands of products and batches of some 30,000 rows, building it cost several
times the lookups. This table is built once and grows: open addressing (linear probing) in
NumPy arrays, each probe step one vectorized pass over the values still looking.
"""

from __future__ import annotations

import numpy as np

EMPTY = np.iinfo(np.int64).min  # a free cell (no id is this)
MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: 2^64 / golden ratio
MIN_BITS = 10
MAX_LOAD = 0.5  # cells used at most: probe runs stay short


class IdSlots:
    def __init__(self) -> None:
        self.ids = np.empty(0, np.int64)  # slot → id
        self._bits = MIN_BITS
        self._keys = np.full(1 << MIN_BITS, EMPTY, np.int64)
        self._slots = np.zeros(1 << MIN_BITS, np.int64)

    @classmethod
    def of(cls, ids: np.ndarray) -> IdSlots:
        """A table whose slots are `ids`' positions (distinct ids)."""
        table = cls()
        table.slots(np.asarray(ids, np.int64))
        return table

    def slots(self, values: np.ndarray) -> np.ndarray:
        """The slot of each id; ids not met before get the next slots, in order of first
        appearance."""
        values = np.asarray(values, np.int64)
        marker = values == EMPTY
        if marker.any():  # the one id a cell cannot hold: looked up beside the table
            return self._with_marker(values, marker)
        cells = self._cells(values)
        found = self._keys[cells] == values
        if not found.all():
            self._add(_first_appearances(values[~found]))
            cells = self._cells(values)
        return self._slots[cells]

    def _with_marker(self, values: np.ndarray, marker: np.ndarray) -> np.ndarray:
        """`slots` of values holding the free-cell marker (int64's least value)."""
        known = np.flatnonzero(self.ids == EMPTY)
        out = np.empty(len(values), np.int64)
        first = int(np.argmax(marker))
        out[:first] = self.slots(values[:first])
        if not len(known):
            self.ids = np.append(self.ids, EMPTY)
            known = np.array([len(self.ids) - 1])
        out[first] = known[0]
        out[first + 1 :] = self.slots(values[first + 1 :])
        return out

    def _cells(self, values: np.ndarray) -> np.ndarray:
        """The cell of each value: where it is, or the free cell that ends its probe run."""
        mask = (1 << self._bits) - 1
        cells = (values.view(np.uint64) * MULTIPLIER >> np.uint64(64 - self._bits)).astype(np.int64)
        looking = np.arange(len(values))
        while len(looking):
            keys = self._keys[cells[looking]]
            settled = (keys == values[looking]) | (keys == EMPTY)
            looking = looking[~settled]
            cells[looking] = (cells[looking] + 1) & mask
        return cells

    def _add(self, new: np.ndarray) -> None:
        """Give distinct ids not in the table the next slots."""
        first = len(self.ids)
        self.ids = np.concatenate([self.ids, new])
        if len(self.ids) > MAX_LOAD * len(self._keys):
            while len(self.ids) > MAX_LOAD * (1 << self._bits):
                self._bits += 1
            self._keys = np.full(1 << self._bits, EMPTY, np.int64)
            self._slots = np.zeros(1 << self._bits, np.int64)
            self._insert(self.ids, np.arange(len(self.ids)))
        else:
            self._insert(new, np.arange(first, len(self.ids)))

    def _insert(self, ids: np.ndarray, slots: np.ndarray) -> None:
        """Place distinct ids not in the table: each round, of the ids whose probe ends at the
        same free cell, the first takes it and the others probe on."""
        while len(ids):
            cells = self._cells(ids)
            _, winners = np.unique(cells, return_index=True)
            self._keys[cells[winners]] = ids[winners]
            self._slots[cells[winners]] = slots[winners]
            rest = np.ones(len(ids), bool)
            rest[winners] = False
            ids, slots = ids[rest], slots[rest]


def _first_appearances(values: np.ndarray) -> np.ndarray:
    """The distinct values in order of first appearance."""
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)]

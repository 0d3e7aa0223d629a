"""Dense slots for integer ids (product popularity's lookup): the slot of an id never changes,
new ids take the next slots in order of first appearance, whatever the batching and growth."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ecomwatch.detect.product_popularity import IdSlots


def reference(batches: list[list[int]]) -> list[list[int]]:
    """The slots a dict gives: the next number to each id not seen before."""
    seen: dict[int, int] = {}
    return [[seen.setdefault(value, len(seen)) for value in batch] for batch in batches]


ids = st.one_of(
    st.integers(-(2**63), 2**63 - 1),  # any int64, the free-cell marker too
    st.integers(0, 50),  # and many repeats
    st.just(-(2**63)),
)


@given(st.lists(st.lists(ids, max_size=300), max_size=8))
def test_slots_are_those_of_first_appearance_across_batches(batches):
    table = IdSlots()
    got = [table.slots(np.array(batch, np.int64)).tolist() for batch in batches]
    assert got == reference(batches)
    assert table.ids.tolist() == list(dict.fromkeys(v for batch in batches for v in batch))


def test_the_table_grows_past_its_load_and_keeps_every_slot():
    rng = np.random.default_rng(7)
    product_ids = rng.choice(10**9, size=50_000, replace=False).astype(np.int64)
    table = IdSlots()
    for start in range(0, len(product_ids), 4_096):  # growing through several resizes
        table.slots(product_ids[start : start + 4_096])
    shuffled = rng.permutation(product_ids)
    assert (table.ids[table.slots(shuffled)] == shuffled).all()
    assert (table.slots(product_ids) == np.arange(len(product_ids))).all()
    assert len(table.ids) == len(product_ids)


def test_a_table_of_known_ids_gives_their_positions_and_numbers_new_ones_after():
    table = IdSlots.of(np.array([30, 10, 20], np.int64))
    assert table.slots(np.array([20, 40, 10, 40, 50], np.int64)).tolist() == [2, 3, 1, 3, 4]

"""`cart-abuse` flags loops on the same products and piles on a few, not shoppers who fill and
empty a cart with many different products — as real shoppers of REES46's cosmetics shop do."""

from __future__ import annotations

import pytest

from ecomwatch.config import load_config
from ecomwatch.detect.rules import load_rules
from ecomwatch.detect.run import detect
from ecomwatch.testing import MemorySource, rees46_csv
from tests.conftest import rees46_file
from tests.detect.test_detector import CHROME, event

CONFIG = load_config(environ={})


def cart_abuse_alerts(text: str) -> list:
    summary, alerts = detect([MemorySource(text)], load_rules(), config=CONFIG)
    assert summary.rejected == 0
    return [a for a in alerts if a.rule == "cart-abuse"]


def session(products: list[int], name: str) -> list[dict]:
    """A cart and then a remove of each product in turn, 10 s apart, never bought."""
    rows = []
    for i, product in enumerate(products):
        rows.append(event(20 * i, "cart", product, 8, name, "198.51.100.9", CHROME))
        rows.append(
            event(20 * i + 10, "remove_from_cart", product, 8, name, "198.51.100.9", CHROME)
        )
    return rows


@pytest.mark.parametrize(
    ("products", "flagged"),
    [
        ([5, 6] * 8, True),  # 16 carts on 2 products: a loop
        ([5, 6, 7, 8] * 4, True),  # 4 carts a product
        (list(range(100, 116)), False),  # 16 different products, each carted once
        ([100 + i // 2 for i in range(16)], False),  # 8 products, twice each
    ],
)
def test_a_loop_is_the_same_products_again_and_again(products, flagged):
    alerts = cart_abuse_alerts(rees46_csv(session(products, "s-cart")))
    assert bool(alerts) is flagged
    if flagged:
        assert alerts[0].entity == "s-cart"
        assert alerts[0].evidence["carts"] >= 3 * alerts[0].evidence["carted_products"]


def test_real_shoppers_of_a_cosmetics_shop_are_rarely_flagged():
    """REES46's cosmetics shop, three months' first 20,000 events and a tail each (no labels):
    its shoppers cart and remove a lot. Before loops had to repeat products, the rule flagged
    26 sessions in these 62,646 rows; a shop's month of 67.5 M would have had thousands of
    high alerts. Fewer than one per 10,000 events now."""
    events = flagged = 0
    for month in ("Oct", "Nov", "Dec"):
        text = rees46_file(f"cosmetics_2019-{month}").read_text()
        summary, alerts = detect([MemorySource(text)], load_rules(), config=CONFIG)
        events += summary.accepted
        flagged += sum(a.rule == "cart-abuse" for a in alerts)
    assert events > 60_000
    assert flagged < events / 10_000

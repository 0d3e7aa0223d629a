"""URL maps: the presets map their platform's URLs, custom maps are validated strictly, and a
map applies to a real shop's log."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ecomwatch.decode.chunks import TextChunk
from ecomwatch.decode.url_map import (
    UrlMap,
    UrlMapError,
    load_url_map,
    preset_names,
    slug_number,
)
from ecomwatch.decode.validate import Decoded
from ecomwatch.decode.web_logs import WebLogOptions, decode_web_chunk, sniff_web_log
from ecomwatch.schema import EVENT_SCHEMA
from ecomwatch.sources.base import Position
from ecomwatch.sources.files import FileSource

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "accesslogs"
ZANBIL = SHARED / "zanbil_ecommerce_2019_head__pcamarillor_O2024_ESI3914O_access.log"


def _line(method: str, target: str, status: int = 200) -> bytes:
    return (
        f'203.0.113.9 - - [10/Oct/2025:13:55:36 +0000] "{method} {target} HTTP/1.1" {status} 512 '
        '"-" "Mozilla/5.0 (X11; Linux x86_64)"'
    ).encode()


def _decoded(data: bytes, url_map: UrlMap) -> Decoded:
    return decode_web_chunk(
        TextChunk(data, 0, 1), sniff_web_log(data), WebLogOptions(url_map=url_map),
        source_name="t", source_id="s",
    )  # fmt: skip


def _mapped(preset: str, requests: list[tuple[str, str]]) -> list[tuple[str, int | None]]:
    data = b"\n".join(_line(m, t) for m, t in requests) + b"\n"
    decoded = _decoded(data, load_url_map(preset))
    assert decoded.rejects.num_rows == 0
    rows = decoded.events.select(["event_type", "product_id"]).to_pylist()
    return [(r["event_type"], r["product_id"]) for r in rows]


SLUG = -1  # a slug's stable number (checked against slug_number below)
PRESET_CASES = {
    "magento2": [
        ("GET", "/catalog/product/view/id/1234/s/blue-shirt/category/7/", "view", 1234),
        ("POST", "/checkout/cart/add/uenc/aHR0cHM6Ly9leA,,/product/1234/", "cart", 1234),
        ("POST", "/rest/default/V1/guest-carts/abc123/items", "cart", None),
        ("POST", "/checkout/sidebar/removeItem/", "remove_from_cart", None),
        ("DELETE", "/rest/V1/carts/mine/items/77", "remove_from_cart", None),
        ("GET", "/checkout/onepage/success/", "purchase", None),
        ("GET", "/catalog/product/view/id/abc", "request", None),
        ("GET", "/customer/account/login/", "request", None),
    ],
    "woocommerce": [
        ("GET", "/product/blue-shirt/", "view", SLUG),
        ("GET", "/shop/?add-to-cart=42&quantity=1", "cart", 42),
        ("POST", "/?wc-ajax=add_to_cart", "cart", None),
        ("POST", "/wp-json/wc/store/v1/cart/add-item", "cart", None),
        ("GET", "/cart/?remove_item=9f61408e3afb&_wpnonce=1", "remove_from_cart", None),
        ("GET", "/checkout/order-received/991/?key=wc_order_x", "purchase", None),
        ("GET", "/product/blue-shirt/style.css", "request", None),
        ("GET", "/wp-login.php", "request", None),
    ],
    "shopify": [
        ("GET", "/products/blue-shirt", "view", SLUG),
        ("GET", "/collections/summer/products/blue-shirt", "view", SLUG),
        ("GET", "/products/blue-shirt.js", "request", None),
        ("POST", "/cart/add.js", "cart", None),
        ("GET", "/cart/change?id=1234:abc&quantity=0", "remove_from_cart", None),
        ("GET", "/cart/change?id=1234:abc&quantity=2", "request", None),
        ("GET", "/12345/checkouts/c1f2/thank_you", "purchase", None),
    ],
    "prestashop": [
        ("GET", "/en/men/1-1-hummingbird-printed-t-shirt.html", "view", 1),
        ("GET", "/index.php?id_product=7&controller=product", "view", 7),
        ("GET", "/index.php?controller=product&id_product=8", "view", 8),
        ("GET", "/cart?add=1&id_product=5&token=x", "cart", 5),
        (
            "GET",
            "/cart?delete=1&id_product=5&id_product_attribute=0&token=x",
            "remove_from_cart",
            5,
        ),
        ("POST", "/en/cart", "cart", None),
        ("GET", "/en/order-confirmation?id_cart=3&id_order=2&key=k", "purchase", None),
        ("GET", "/3-clothes", "request", None),
    ],
}


def test_every_preset_has_cases() -> None:
    assert sorted(PRESET_CASES) == preset_names()


@pytest.mark.parametrize("preset", sorted(PRESET_CASES))
def test_a_preset_maps_its_platforms_urls(preset: str) -> None:
    cases = PRESET_CASES[preset]
    got = _mapped(preset, [(method, target) for method, target, _, _ in cases])
    for (method, target, kind, product), (got_kind, got_product) in zip(cases, got, strict=True):
        assert got_kind == kind, f"{method} {target}"
        if product == SLUG:
            slug = target.rstrip("/").rsplit("/", 1)[1]
            assert got_product == slug_number(slug), target
        else:
            assert got_product == product, f"{method} {target}"


def test_failed_and_static_requests_are_not_commerce_events(tmp_path: Path) -> None:
    custom = tmp_path / "map.toml"
    custom.write_text(
        'name = "mine"\n[[event]]\ntype = "view"\npath = \'^/p/(?P<product_id>\\d+)\'\n'
        '[[event]]\ntype = "purchase"\npath = "^/thanks$"\nstatus = "any"\n'
    )
    lines = [_line("GET", "/p/5"), _line("GET", "/p/6", 404), _line("GET", "/p/7.png"),
             _line("POST", "/thanks", 500)]  # fmt: skip
    data = b"\n".join(lines) + b"\n"
    decoded = _decoded(data, load_url_map(custom))
    rows = decoded.events.select(["event_type", "product_id"]).to_pylist()
    assert [(r["event_type"], r["product_id"]) for r in rows] == [
        ("view", 5), ("request", None), ("request", None), ("purchase", None),
    ]  # fmt: skip
    assert decoded.events.schema == EVENT_SCHEMA  # mapped columns keep the schema's fields


def test_a_slugs_number_is_stable_and_distinct() -> None:
    assert slug_number("blue-shirt") == slug_number("blue-shirt")
    assert slug_number("blue-shirt") != slug_number("red-shirt")
    assert 0 <= slug_number("x") < 2**63


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('name = "m"\n[[event]]\ntype = "view"\npath = "(?<=x)a"\n', "#1: field path"),
        ('name = "m"\n[[event]]\ntype = "view"\n', "give a path or a query"),
        ('name = "m"\n[[event]]\ntype = "visit"\npath = "^/"\n', "#1: field type"),
        ('name = "m"\n[[event]]\ntype = "view"\npath = "^/"\nmethod = "get"\n', "HTTP method"),
        ('name = "m"\n[[event]]\ntype = "view"\npath = "^/"\nprice = 3\n', "field price"),
        ('name = "m"\nevent = []\n', "field event"),
        (
            'name = "m"\n[[event]]\ntype = "view"\npath = "^/(?P<product>\\\\w+)"\n'
            'query = "id=(?P<product_id>\\\\d+)"\n',
            "name the product once",
        ),
        ('name = "m"\n[[event]\n', "not valid TOML"),
    ],
)
def test_a_bad_map_is_refused_naming_file_and_field(
    tmp_path: Path, body: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(UrlMapError, match=re.escape(message)) as caught:
        load_url_map(path)
    assert str(path) in str(caught.value)


def test_an_unknown_preset_names_the_presets() -> None:
    with pytest.raises(UrlMapError, match="presets: magento2, prestashop, shopify, woocommerce"):
        load_url_map("magento")


@pytest.mark.skipif(not ZANBIL.is_file(), reason="../shared/data/accesslogs is not on this machine")
def test_a_custom_map_on_a_real_shops_log(tmp_path: Path) -> None:
    custom = tmp_path / "zanbil.toml"
    custom.write_text(
        'name = "zanbil"\n[[event]]\ntype = "view"\nmethod = "GET"\n'
        "path = '^/(?:m/)?product/(?P<product_id>\\d+)/'\n"
    )
    source = FileSource(ZANBIL, web=WebLogOptions(url_map=load_url_map(custom)))
    rows = [
        row
        for batch in source.read(Position())
        for row in batch.decoded.events.select(["event_type", "product_id"]).to_pylist()
    ]
    # What the same pattern finds in the file read line by line, with Python's own re.
    expected = []
    for line in ZANBIL.read_text(errors="replace").splitlines():
        found = re.search(r'"GET /(?:m/)?product/(\d+)/\S* HTTP/[\d.]+" ([23]\d\d) ', line)
        if found:
            expected.append(int(found.group(1)))
    views = [r["product_id"] for r in rows if r["event_type"] == "view"]
    assert views == expected and len(views) >= 5
    assert {r["event_type"] for r in rows} == {"view", "request"}

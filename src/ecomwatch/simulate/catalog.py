"""A synthetic shop: categories, brands, products, shoppers, their IP blocks and browsers.

Shapes follow the public REES46 data: category IDs above 2**53, about a third of products
without a category code and a tenth without a brand, log-normal prices that depend on the
category, heavy-tailed (Zipf) product popularity, and carrier IP blocks shared by many users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TAXONOMY = {
    "electronics": [
        "smartphone",
        "audio.headphone",
        "video.tv",
        "clocks",
        "tablet",
        "camera.photo",
    ],
    "appliances": [
        "kitchen.washer",
        "kitchen.refrigerators",
        "environment.vacuum",
        "kitchen.microwave",
        "environment.water_heater",
        "personal.massager",
        "iron",
    ],
    "computers": ["notebook", "desktop", "peripherals.mouse", "components.videocards", "ebooks"],
    "apparel": ["shoes", "shoes.keds", "costume", "jeans", "trousers", "shirt"],
    "furniture": ["living_room.sofa", "bedroom.bed", "kitchen.table", "universal.light"],
    "construction": ["tools.drill", "tools.saw", "components.faucet", "tools.light"],
    "kids": ["toys", "carriage", "skates", "dolls"],
    "auto": ["accessories.player", "accessories.videoregister", "accessories.compressor"],
    "sport": ["bicycle", "tennis", "ski", "trainer"],
    "accessories": ["bag", "wallet", "umbrella"],
    "beauty": ["skincare", "fragrance", "makeup"],
    "country_yard": ["lawn_mower", "cultivator"],
    "medicine": ["tools.tonometer"],
    "stationery": ["cartrige"],
}
# Typical price (median, in USD) per top-level category.
_PRICE = {
    "electronics": 250,
    "appliances": 150,
    "computers": 400,
    "apparel": 60,
    "furniture": 180,
    "construction": 90,
    "kids": 40,
    "auto": 70,
    "sport": 120,
    "accessories": 35,
    "beauty": 15,
    "country_yard": 200,
    "medicine": 45,
    "stationery": 20,
}
_BRANDS = [
    "samsung",
    "apple",
    "xiaomi",
    "huawei",
    "lenovo",
    "lg",
    "sony",
    "bosch",
    "philips",
    "acer",
    "asus",
    "hp",
    "oppo",
    "artel",
    "indesit",
    "beko",
    "haier",
    "redmond",
    "tefal",
    "polaris",
    "vitek",
    "elenberg",
    "janome",
    "canon",
    "nikon",
    "jbl",
    "garmin",
    "casio",
    "respect",
    "nika",
    "karcher",
    "makita",
    "dewalt",
    "stels",
    "nike",
    "adidas",
    "puma",
    "lego",
    "mattel",
    "hasbro",
    "runail",
    "irisk",
    "kapous",
    "estel",
    "masura",
    "grattol",
    "ingarden",
    "cnd",
    "shiseido",
    "creed",
    "luminarc",
    "tarkett",
    "baden",
    "skad",
    "aqua",
]
_SYLLABLES = [
    "ka",
    "ro",
    "mi",
    "te",
    "lu",
    "no",
    "va",
    "si",
    "de",
    "po",
    "ra",
    "ze",
    "bi",
    "tu",
    "lo",
    "ne",
    "fa",
    "gri",
    "mon",
    "tal",
    "ver",
    "sol",
]

USER_AGENTS: tuple[str, ...] = tuple(
    f"Mozilla/5.0 ({platform}) {engine}"
    for platform in (
        "Windows NT 10.0; Win64; x64",
        "Macintosh; Intel Mac OS X 10_15_7",
        "X11; Linux x86_64",
        "Linux; Android 13; SM-A536B",
        "Linux; Android 12; Redmi Note 11",
        "iPhone; CPU iPhone OS 17_1 like Mac OS X",
    )
    for engine in (
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.117 Safari/537.36",
        "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        "Gecko/20100101 Firefox/119.0",
        "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.0.0",
    )
)


def zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities ∝ 1/rank^exponent, assigned to items in a random order."""
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(weights)
    return weights / weights.sum()


@dataclass(frozen=True)
class Catalog:
    product_id: np.ndarray  # int64, sorted by category so neighbours share a category
    category_id: np.ndarray  # int64 per product
    category_code: pa.Array  # string per product (nullable)
    brand: pa.Array  # string per product (nullable)
    price_cents: np.ndarray  # int64 per product
    popularity: np.ndarray  # probabilities per product

    @property
    def size(self) -> int:
        return len(self.product_id)


def make_catalog(n_products: int, rng: np.random.Generator) -> Catalog:
    codes = [f"{top}.{sub}" for top, subs in _TAXONOMY.items() for sub in subs]
    n_cat = len(codes) * 3  # several category IDs share a code, as in REES46
    # REES46 category IDs are 19-digit numbers: above 2**53, so a float would lose them.
    cat_ids = np.sort(2_053_013_552_000_000_000 + rng.integers(0, 10**17, n_cat, dtype=np.int64))
    cat_code = np.array([codes[i % len(codes)] for i in range(n_cat)], dtype=object)
    no_code = rng.random(n_cat) < 0.33
    cat_code[no_code] = None
    top = [codes[i % len(codes)].split(".")[0] for i in range(n_cat)]
    median = np.array([_PRICE[t] for t in top], dtype=float)

    product_cat = np.sort(rng.choice(n_cat, n_products, p=zipf_weights(n_cat, 0.9, rng)))
    product_id = 1_000_000 + rng.choice(99_000_000, n_products, replace=False)
    invented = ["".join(rng.choice(_SYLLABLES, 2 + int(rng.integers(0, 2)))) for _ in range(400)]
    brands = np.array(_BRANDS + invented, dtype=object)
    brand_of = brands[rng.choice(len(brands), n_products, p=zipf_weights(len(brands), 1.0, rng))]
    brand_of[rng.random(n_products) < 0.12] = None
    price = np.exp(rng.normal(np.log(median[product_cat]), 0.7))
    price_cents = np.clip(np.round(price * 100), 50, 5_000_000).astype(np.int64)
    return Catalog(
        product_id=product_id.astype(np.int64),
        category_id=cat_ids[product_cat].astype(np.int64),
        category_code=pa.array(cat_code[product_cat], pa.string()),
        brand=pa.array(brand_of, pa.string()),
        price_cents=price_cents,
        popularity=zipf_weights(n_products, 1.1, rng),
    )


@dataclass(frozen=True)
class Population:
    user_id: np.ndarray  # int64 per user
    ip: pa.Array  # string per user
    user_agent: pa.Array  # string per user
    activity: np.ndarray  # probability that a session belongs to each user


def make_population(n_users: int, rng: np.random.Generator) -> Population:
    user_id = 400_000_000 + rng.choice(250_000_000, n_users, replace=False)
    # Carrier and office blocks: a few /24s hold many users, most hold a handful.
    n_blocks = max(8, n_users // 40)
    block = rng.choice(n_blocks, n_users, p=zipf_weights(n_blocks, 1.0, rng))
    first = rng.choice(np.array([31, 46, 77, 85, 91, 93, 95, 176, 178, 188, 212]), n_blocks)
    second = rng.integers(0, 256, n_blocks)
    third = rng.integers(0, 256, n_blocks)
    host = rng.integers(1, 255, n_users)
    octets = [pa.array(x[block]) for x in (first, second, third)]
    ip = pc.binary_join_element_wise(
        *[pc.cast(o, pa.string()) for o in octets], pc.cast(pa.array(host), pa.string()), "."
    )
    agents = np.array(USER_AGENTS, dtype=object)
    agent = agents[rng.choice(len(agents), n_users, p=zipf_weights(len(agents), 0.8, rng))]
    return Population(
        user_id=user_id.astype(np.int64),
        ip=ip,
        user_agent=pa.array(agent, pa.string()),
        activity=zipf_weights(n_users, 0.6, rng),
    )

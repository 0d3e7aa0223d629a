"""Writes examples/rules/groups.csv.gz and examples/rules/sale.csv.gz (run from the repository
root with .venv/bin/python): an hour and a half of an ordinary shop, in the first with a
declared bot, a botnet on one /24 sharing one user agent and a flood of new addresses hammering
a few products, in the second with a flash sale whose crowd buys, which must raise no alarm."""

import csv
import gzip
import io
import random
from datetime import UTC, datetime, timedelta

from ecomwatch.schema import REES46_COLUMNS

rng = random.Random(23)
T0 = datetime(2019, 11, 1, 8, 0, 0, tzinfo=UTC)
PRODUCTS = 300  # ids 1_000_000 + n; ten categories of 30 products
rows = []


def category(product):
    return 2_053_013_555_000_000_000 + (product - 1_000_000) // 30


def agent(i):
    return (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{100 + i % 30}.0.0.0 Safari/537.36"
    )


def ev(s, kind, product, user, session, ip, ua):
    at = T0 + timedelta(seconds=s)
    rows.append(
        [
            at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            kind,
            product,
            category(product),
            "",
            "",
            "19.99",
            user,
            session,
            ip,
            ua,
        ]
    )


def write(path):
    rows.sort(key=lambda r: r[0])
    with gzip.GzipFile(path, "wb", mtime=0) as packed:  # same bytes each run
        out = io.TextIOWrapper(packed, newline="")
        writer = csv.writer(out)
        writer.writerow([*REES46_COLUMNS, "ip", "user_agent"])
        writer.writerows(rows)
        out.flush()
    rows.clear()


def shop():
    """1,500 regular visitors, 40 sessions a minute over 90 minutes, each a few views of one
    category's products, one session in five carts and one in ten buys."""
    for number in range(3_600):
        t = rng.uniform(0, 5_400)
        visitor = rng.randrange(1_500)
        ip = f"10.{visitor // 250}.{visitor % 250}.7"
        product = 1_000_000 + rng.randrange(PRODUCTS)
        for step in range(rng.randint(2, 6)):
            ev(t, "view", product, 10_000 + visitor, f"shop-{number}", ip, agent(visitor))
            if step == 1 and rng.random() < 0.2:
                ev(t + 20, "cart", product, 10_000 + visitor, f"shop-{number}", ip, agent(visitor))
                if rng.random() < 0.5:
                    ev(
                        t + 60,
                        "purchase",
                        product,
                        10_000 + visitor,
                        f"shop-{number}",
                        ip,
                        agent(visitor),
                    )
            t += rng.uniform(15, 90)
            low = 1_000_000 + (product - 1_000_000) // 30 * 30
            product = min(max(product + rng.randint(-3, 3), low), low + 29)


# The attacks: the shop, and
shop()

# declared-bot: a script that says what it is, 80 product views in ten minutes from minute 20
for k in range(80):
    ev(
        1_200 + 7.5 * k,
        "view",
        1_000_000 + k,
        50_000,
        "bot-1",
        "192.0.2.50",
        "python-requests/2.31.0",
    )

# botnet-subnet and botnet-user-agent: 12 new addresses of one /24, one headless browser, each
# ten views within a minute and a half, all within five minutes from minute 35
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)
for i in range(12):
    t = 2_100 + rng.uniform(0, 200)
    for k in range(10):
        ev(
            t,
            "view",
            1_000_000 + rng.randrange(PRODUCTS),
            60_000 + i,
            f"bn-{i}-{k}",
            f"203.0.113.{10 + i}",
            HEADLESS,
        )
        t += rng.uniform(3, 9)

# flood: from minute 75, 300 new addresses on unrelated networks, each twenty requests for one
# of three products within a minute, a new session every request, no cart
for i in range(300):
    t = 4_500 + rng.uniform(0, 60)
    network = rng.choice([45, 77, 91, 185])
    home = f"{network}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    ip = "198.18.0.1" if i == 0 else home
    for k in range(20):
        ev(t, "view", 1_000_000 + rng.randrange(3), 70_000 + i, f"fl-{i}-{k}", ip, agent(i + 5))
        t += rng.uniform(1, 3)

write("examples/rules/groups.csv.gz")

# The sale: the same shop; at minute 50, 1,000 of its regular visitors come within a minute for
# product 1_000_150, most cart it and half of those buy it (a traffic-surge notice, not a flood)
shop()
for i in range(1_000):
    visitor = i
    ip = f"10.{visitor // 250}.{visitor % 250}.7"
    t = 3_000 + rng.uniform(0, 60)
    ev(t, "view", 1_000_150, 10_000 + visitor, f"sale-{i}", ip, agent(visitor))
    if i % 5:
        ev(t + 10, "cart", 1_000_150, 10_000 + visitor, f"sale-{i}", ip, agent(visitor))
        if i % 2:
            ev(t + 30, "purchase", 1_000_150, 10_000 + visitor, f"sale-{i}", ip, agent(visitor))

write("examples/rules/sale.csv.gz")

"""Writes examples/rules/evasive.csv (run from the repository root): one actor per rule for
attackers who hide the usual telltales, and look-alikes that must stay quiet."""

import csv
import random
from datetime import UTC, datetime, timedelta

from ecomwatch.schema import REES46_COLUMNS

rng = random.Random(18)
T0 = datetime(2019, 11, 1, 9, 0, 0, tzinfo=UTC)
CATEGORY = 2053013555631882655
rows = []


def agent(i):
    os_ = ["Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7", "X11; Linux x86_64"][
        i % 3
    ]
    return (
        f"Mozilla/5.0 ({os_}) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{100 + i % 30}.0.0.0 Safari/537.36"
    )


def ev(s, kind, product, user, session, ip, ua, price="19.99", category=CATEGORY):
    at = T0 + timedelta(seconds=s)
    rows.append(
        [
            at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            kind,
            product,
            category,
            "electronics.audio",
            "acme",
            price,
            user,
            session,
            ip,
            ua,
        ]
    )


# rotating-scraper: one IP, a new user agent and session every 3 requests, 0.5 views a second
for i in range(400):
    ev(
        2 * i,
        "view",
        3_000_000 + rng.randrange(500_000),
        900 + i // 3,
        f"rot-{i // 3}",
        "203.0.113.40",
        agent(i // 3),
    )

# catalogue-walk: random (Poisson) gaps, product ids in order, an hour, no cart
t = 0.0
for i in range(70):
    t += rng.expovariate(1 / 45)
    ev(t, "view", 5_000_000 + 7 * i, 501, "slow-walker", "192.0.2.90", agent(1))

# ipv6-rotation: an IPv6 /64 rotated through, a new address every 2 requests
for i in range(300):
    ip = f"2a00:1450:4001:82a::{(i // 2) + 16:x}"
    ev(i, "view", 6_000_000 + rng.randrange(900_000), 700 + i // 2, f"v6-{i // 2}", ip, agent(7))

# card-testing: cheap purchases under new users, hardly a view, one IP
for i in range(12):
    s = 60 * i
    if i % 3 == 0:
        ev(s, "view", 7_000_001, 800 + i, f"card-{i}", "198.51.100.61", agent(i), price="0.99")
    ev(s + 5, "purchase", 7_000_001, 800 + i, f"card-{i}", "198.51.100.61", agent(i), price="0.99")

# distributed-hoarding: 20 sessions on unrelated IPs cart one product, none buys
for i in range(20):
    s = 60 * i + rng.randrange(30)
    ip = (
        f"{rng.choice([24, 67, 73, 98])}.{rng.randrange(256)}."
        f"{rng.randrange(256)}.{rng.randrange(1, 255)}"
    )
    ev(s, "view", 8_000_008, 1000 + i, f"hoard-{i}", ip, agent(i))
    ev(s + 8, "cart", 8_000_008, 1000 + i, f"hoard-{i}", ip, agent(i))

# quiet: a returning customer checking the same three products every hour for five hours
for hour in range(5):
    for k in range(4):
        ev(
            3600 * hour + 40 * k,
            "view",
            9_000_000 + k % 3,
            1201,
            f"back-{hour}",
            "198.51.100.80",
            agent(2),
        )

# quiet: Googlebot from Google's own address, a view a second for 15 minutes
for i in range(900):
    ev(
        i,
        "view",
        4_000_000 + i,
        1300,
        f"gb-{i}",
        "66.249.66.1",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    )

# quiet: a shopper who buys after looking (several purchases, more views than purchases)
for i in range(5):
    s = 600 * i
    for k in range(3):
        ev(s + 30 * k, "view", 2_100_000 + i * 10 + k, 1400, f"buy-{i}", "198.51.100.90", agent(4))
    ev(s + 100, "cart", 2_100_000 + i * 10, 1400, f"buy-{i}", "198.51.100.90", agent(4))
    ev(s + 160, "purchase", 2_100_000 + i * 10, 1400, f"buy-{i}", "198.51.100.90", agent(4))

# card-testing: a view before every card and a cart before every other one, a new user each
for i in range(8):
    s = 90 * i
    card = (7_000_002, 1500 + i, f"card2-{i}", "198.51.100.62", agent(i))
    ev(s, "view", *card, price="1.49")
    if i % 2:
        ev(s + 10, "cart", *card, price="1.49")
    ev(s + 20, "purchase", *card, price="1.49")

# quiet: three people behind one carrier address, each buying once after a look and a cart
for i in range(3):
    s = 400 * i
    ev(s, "view", 2_200_000 + i, 1600 + i, f"home-{i}", "198.51.100.63", agent(i))
    ev(s + 40, "cart", 2_200_000 + i, 1600 + i, f"home-{i}", "198.51.100.63", agent(i))
    ev(s + 90, "purchase", 2_200_000 + i, 1600 + i, f"home-{i}", "198.51.100.63", agent(i))

rows.sort(key=lambda r: r[0])
with open("examples/rules/evasive.csv", "w", newline="") as out:
    writer = csv.writer(out)
    writer.writerow([*REES46_COLUMNS, "ip", "user_agent"])
    writer.writerows(rows)

"""The evasive scenario: attackers who rotate identities, spread out or look human, and traps
that look like attacks (`simulate --attacks --scenario evasive`).

The classic scenario (`attacks.py`) has attackers with one telltale each (machine-regular
timing, a shared user agent or /24, dropped cookies). Here each kind hides that telltale, and
every parameter is drawn per seed from a wide range:

- rotating scrapers: one IP, a new user agent and session every few requests;
- human-timed slow scrapers: random (Poisson) gaps, hours of an ordered catalogue walk;
- IPv6 rotators: a new address of one /64 (or /56) every request or few;
- card testers: bursts of cheap purchases, a new user and session every purchase or two, from
  a handful of IPs;
- distributed hoarders: many sessions on unrelated IPs each carting a limited product once or
  twice, never buying;
- residential botnets: hundreds of IPs on unrelated networks, each its own mainstream browser,
  a few requests each, all on one category or on long-tail products;
- a low-rate flood: thousands of IPs, each far below any per-IP limit, keeping a session;
- spoofed crawlers: a Googlebot user agent from an address outside Google's ranges.

The traps must stay quiet: a carrier-grade NAT, a marketing spike (thousands of new mobile
visitors who hardly buy), a verified crawler, uptime monitors, returning customers who check
the same few products every hour, a flash sale and heavy shoppers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ecomwatch.simulate.attacks import (
    AttackPlan,
    Injected,
    assemble,
    attack_ip,
    flash_sale,
    heavy_shoppers,
    human_gaps,
    iso_time,
    nat_behind_one_ip,
    new_session_id,
    new_user_id,
    plain_table,
)
from ecomwatch.simulate.catalog import USER_AGENTS, Catalog
from ecomwatch.simulate.traffic import TrafficSpec, generate, make_world, view_shares

EVASIVE_ATTACK_KINDS = (
    "rotating_scraper",
    "human_slow_scraper",
    "ipv6_rotator",
    "card_tester",
    "distributed_hoarder",
    "residential_botnet",
    "low_rate_flood",
    "spoofed_crawler",
)
EVASIVE_LEGIT_KINDS = (
    "cgnat",
    "marketing_spike",
    "verified_crawler",
    "uptime_monitor",
    "returning_customer",
    "flash_sale",
    "heavy_shopper",
)
# Kinds whose actors act together: all IPs of one such group are one campaign.
EVASIVE_GROUP_KINDS = (
    "distributed_hoarder",
    "residential_botnet",
    "low_rate_flood",
    "marketing_spike",
    "flash_sale",
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
# Googlebot's own addresses (in Google's published list shipped with ecomwatch).
GOOGLEBOT_ADDRESSES = ("66.249.66.1", "66.249.66.20", "66.249.66.45", "66.249.66.71")
MONITOR_AGENTS = (
    "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Mozilla/5.0 (compatible; StatusCake)",
)
MOBILE_AGENTS = tuple(agent for agent in USER_AGENTS if "Android" in agent or "iPhone" in agent)
# Home networks and mobile carriers: neither the simulated shoppers' blocks nor the
# attackers' hosting ranges, so an address says nothing about who is behind it.
RESIDENTIAL_FIRST_OCTETS = np.array([2, 24, 37, 67, 73, 79, 82, 86, 98, 108, 109, 151, 174, 217])


def residential_ip(rng: np.random.Generator) -> str:
    first = int(rng.choice(RESIDENTIAL_FIRST_OCTETS))
    rest = rng.integers(0, 256, 3)
    return f"{first}.{rest[0]}.{rest[1]}.{max(1, int(rest[2]))}"


def ipv6_in(prefix: int, bits: int, rng: np.random.Generator) -> str:
    """A random address of the IPv6 network `prefix`/`bits` (prefix: the network's number)."""
    host = int.from_bytes(rng.bytes(16), "big") & ((1 << (128 - bits)) - 1)
    return str(ipaddress.IPv6Address(prefix | host))


def browser_agent(rng: np.random.Generator) -> str:
    """A mainstream browser's user agent, with a version drawn wide (each IP its own)."""
    base = str(rng.choice(USER_AGENTS))
    return base.replace("Chrome/119.0.0.0", f"Chrome/{int(rng.integers(100, 131))}.0.0.0")


def rotating_scrapers(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int
) -> Injected:
    out = Injected()
    for _ in range(n):
        rate = rng.uniform(0.3, 4.0)
        lasting = rng.uniform(600, 2400)
        count = int(rate * lasting)
        times = plan.at(rng, lasting) + np.cumsum(rng.exponential(1 / rate, count))
        if rng.random() < 0.5:
            products = rng.integers(0, catalog.size, count)
        else:
            products = (int(rng.integers(0, catalog.size)) + np.arange(count)) % catalog.size
        every = int(rng.integers(2, 9))  # a new identity every few requests
        identities = count // every + 1
        agents = [browser_agent(rng) for _ in range(identities)]
        sessions = [new_session_id(rng) for _ in range(identities)]
        ip = attack_ip(rng)
        out.add(
            times, np.zeros(count), products,
            user=np.repeat([new_user_id(rng) for _ in range(identities)], every)[:count],
            session=[sessions[i // every] for i in range(count)],
            ip=ip,
            agent=[agents[i // every] for i in range(count)],
        )  # fmt: skip
        out.labels[ip] = "rotating_scraper"
    return out


def human_slow_scrapers(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int
) -> Injected:
    out = Injected()
    for _ in range(n):
        mean_gap = rng.uniform(20, 120)
        lasting = min(rng.uniform(5400, 4 * 3600), plan.duration_s * 0.9)
        count = int(lasting / mean_gap)
        times = plan.at(rng, lasting) + np.cumsum(rng.exponential(mean_gap, count))
        first = int(rng.integers(0, catalog.size))
        walk = (first + np.arange(count)) % catalog.size
        # catalogue (category) order, or product-ID order
        products = walk if rng.random() < 0.5 else np.argsort(catalog.product_id)[walk]
        per_session = int(rng.integers(20, 60)) if rng.random() < 0.5 else count
        sessions = [new_session_id(rng) for _ in range(count // per_session + 1)]
        ip = attack_ip(rng)
        out.add(
            times, np.zeros(count), products, user=new_user_id(rng),
            session=[sessions[i // per_session] for i in range(count)],
            ip=ip, agent=browser_agent(rng),
        )  # fmt: skip
        out.labels[ip] = "human_slow_scraper"
    return out


def ipv6_rotators(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int) -> Injected:
    out = Injected()
    for _ in range(n):
        # A server's /64 or a household's /56 (a /48 needs `[detect] ipv6_prefix = 48`).
        bits = 64 if rng.random() < 0.6 else 56
        top = (0x2A00 + int(rng.integers(0, 0x100))) << 112
        prefix = (top | int.from_bytes(rng.bytes(14), "big")) >> (128 - bits) << (128 - bits)
        rate = rng.uniform(0.5, 3.0)
        lasting = rng.uniform(300, 1200)
        count = int(rate * lasting)
        times = plan.at(rng, lasting) + np.cumsum(rng.exponential(1 / rate, count))
        every = int(rng.integers(1, 6))
        ips = [ipv6_in(prefix, bits, rng) for _ in range(count // every + 1)]
        agent = browser_agent(rng)
        session = [new_session_id(rng) for _ in range(len(ips))]
        out.add(
            times, np.zeros(count), rng.integers(0, catalog.size, count),
            user=new_user_id(rng),
            session=[session[i // every] for i in range(count)],
            ip=[ips[i // every] for i in range(count)], agent=agent,
        )  # fmt: skip
        out.labels.update(dict.fromkeys(ips, "ipv6_rotator"))
        out.campaigns.update(dict.fromkeys(ips, f"ipv6_rotator:{ips[0]}"))
    return out


def card_testers(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int) -> Injected:
    """Purchases of the cheapest products, a new user and session every one or two."""
    out = Injected()
    cheap = np.argsort(catalog.price_cents)[: max(5, catalog.size // 20)]
    for _ in range(n):
        ips = [attack_ip(rng) for _ in range(int(rng.integers(1, 5)))]
        purchases = int(rng.integers(10, 60))
        lasting = rng.uniform(300, 1800)
        begin = plan.at(rng, lasting)
        per_identity = int(rng.integers(1, 3))
        for at in range(0, purchases, per_identity):
            kinds = [0] * int(rng.integers(0, 2)) + [1] * int(rng.random() < 0.5)
            kinds += [3] * min(per_identity, purchases - at)
            product = int(rng.choice(cheap))
            times = begin + rng.uniform(0, lasting) + np.cumsum(rng.uniform(2, 20, len(kinds)))
            out.add(
                times, np.array(kinds), np.full(len(kinds), product), user=new_user_id(rng),
                session=new_session_id(rng), ip=str(rng.choice(ips)), agent=browser_agent(rng),
            )  # fmt: skip
        out.labels.update(dict.fromkeys(ips, "card_tester"))
        out.campaigns.update(dict.fromkeys(ips, f"card_tester:{ips[0]}"))
    return out


def distributed_hoarders(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog) -> Injected:
    """One campaign: sessions on many unrelated IPs each cart a limited product and leave."""
    out = Injected()
    limited = rng.choice(catalog.size, int(rng.integers(1, 4)), replace=False)
    lasting = rng.uniform(300, 1800)
    begin = plan.at(rng, lasting)
    for _ in range(int(rng.integers(30, 150))):
        kinds = [0] * int(rng.integers(0, 3)) + [1] * int(rng.integers(1, 3))
        times = begin + rng.uniform(0, lasting) + np.cumsum(rng.uniform(2, 30, len(kinds)))
        ip = residential_ip(rng)
        out.add(
            times, np.array(kinds), np.full(len(kinds), int(rng.choice(limited))),
            user=new_user_id(rng), session=new_session_id(rng), ip=ip, agent=browser_agent(rng),
        )  # fmt: skip
        out.labels[ip] = "distributed_hoarder"
    return out


def residential_botnet(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog) -> Injected:
    """Hundreds of IPs on unrelated networks, each its own browser, a few views each, all on
    one category or on the long tail, arriving together."""
    out = Injected()
    if rng.random() < 0.5:  # one category
        category = catalog.category_id[int(rng.integers(0, catalog.size))]
        targets = np.flatnonzero(catalog.category_id == category)
    else:  # the long tail: the least popular fifth
        targets = np.argsort(view_shares(catalog))[: max(10, catalog.size // 5)]
    lasting = rng.uniform(600, 1800)
    begin = plan.at(rng, lasting)
    for _ in range(int(rng.integers(150, 500))):
        count = int(rng.integers(3, 13))
        times = begin + rng.uniform(0, lasting) + np.cumsum(rng.exponential(4.0, count))
        ip = residential_ip(rng)
        out.add(
            times, np.zeros(count), rng.choice(targets, count), user=new_user_id(rng),
            session=new_session_id(rng), ip=ip, agent=browser_agent(rng),
        )  # fmt: skip
        out.labels[ip] = "residential_botnet"
    return out


def low_rate_flood(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, normal_rate: float
) -> tuple[Injected, float]:
    """Thousands of IPs, each far below a per-IP limit and keeping its session, multiplying
    the traffic for minutes; returns (events, onset)."""
    out = Injected()
    sources = int(rng.integers(1000, 3000))
    lasting = rng.uniform(300, 900)
    onset = plan.at(rng, lasting + 600) + 300
    total_rate = normal_rate * rng.uniform(3, 8)
    unpopular = np.argsort(view_shares(catalog))[: max(10, catalog.size // 2)]
    for _ in range(sources):
        count = max(3, int(rng.poisson(total_rate / sources * lasting)))
        times = onset + np.sort(rng.uniform(0, lasting, count))
        ip = residential_ip(rng)
        out.add(
            times, np.zeros(count), rng.choice(unpopular, count), user=new_user_id(rng),
            session=new_session_id(rng), ip=ip, agent=browser_agent(rng),
        )  # fmt: skip
        out.labels[ip] = "low_rate_flood"
    return out, onset


def crawlers(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int, *, spoofed: bool
) -> Injected:
    """Googlebot at work, from Google's addresses (verified) or from anyone's (spoofed)."""
    out = Injected()
    for number in range(n):
        ip = attack_ip(rng) if spoofed else GOOGLEBOT_ADDRESSES[number % len(GOOGLEBOT_ADDRESSES)]
        rate = rng.uniform(0.1, 2.0)
        lasting = rng.uniform(600, 3600)
        count = int(rate * lasting)
        times = plan.at(rng, lasting) + np.cumsum(rng.exponential(1 / rate, count))
        out.add(
            times, np.zeros(count), rng.integers(0, catalog.size, count), user=new_user_id(rng),
            session=[new_session_id(rng) for _ in range(count)], ip=ip, agent=GOOGLEBOT,
        )  # fmt: skip
        out.labels[ip] = "spoofed_crawler" if spoofed else "verified_crawler"
    return out


def uptime_monitors(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog) -> Injected:
    """Declared tools that fetch one page every half minute to five minutes, all day."""
    out = Injected()
    for agent in MONITOR_AGENTS[: int(rng.integers(1, len(MONITOR_AGENTS) + 1))]:
        period = rng.uniform(30, 300)
        times = plan.start_s + np.arange(rng.uniform(0, period), plan.duration_s, period)
        ip = attack_ip(rng)
        out.add(
            times, np.zeros(len(times)), np.full(len(times), int(rng.integers(0, catalog.size))),
            user=new_user_id(rng), session=[new_session_id(rng) for _ in times], ip=ip,
            agent=agent,
        )  # fmt: skip
        out.labels[ip] = "uptime_monitor"
    return out


def returning_customers(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int
) -> Injected:
    """People who look at the same few products again every hour or so (a price watch)."""
    out = Injected()
    for _ in range(n):
        watched = rng.choice(catalog.size, int(rng.integers(2, 6)), replace=False)
        ip, user, agent = residential_ip(rng), new_user_id(rng), browser_agent(rng)
        visit = plan.start_s + rng.uniform(0, 3600)
        while visit < plan.start_s + plan.duration_s:
            count = int(rng.integers(1, len(watched) + 2))
            times = visit + np.cumsum(human_gaps(rng, count, 20))
            out.add(
                times, np.zeros(count), rng.choice(watched, count), user=user,
                session=new_session_id(rng), ip=ip, agent=agent,
            )  # fmt: skip
            visit += rng.uniform(2400, 5400)
        out.labels[ip] = "returning_customer"
    return out


def marketing_spike(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, normal_rate: float
) -> tuple[Injected, float]:
    """A TV ad or a newsletter: thousands of new mobile visitors within minutes, human
    timing, a few views each on popular products, very few carts; returns (events, start)."""
    out = Injected()
    lasting = rng.uniform(600, 1800)
    begin = plan.at(rng, lasting + 900)
    visitors = int(normal_rate * lasting * rng.uniform(2.0, 6.0) / 3.0)
    popular = np.argsort(view_shares(catalog))[-max(20, catalog.size // 50) :]
    for _ in range(visitors):
        kinds = [0] * int(rng.integers(1, 6))
        if rng.random() < 0.03:  # very low conversion: a few carts, a third of them bought
            kinds.append(1)
            if rng.random() < 0.35:
                kinds.append(3)
        times = begin + rng.exponential(lasting / 3) + np.cumsum(human_gaps(rng, len(kinds), 15))
        ip = residential_ip(rng)
        first = int(rng.choice(popular))
        steps = np.clip(first + np.cumsum(rng.integers(-3, 4, len(kinds))), 0, catalog.size - 1)
        out.add(
            times, np.array(kinds), steps, user=new_user_id(rng), session=new_session_id(rng),
            ip=ip, agent=str(rng.choice(MOBILE_AGENTS)),
        )  # fmt: skip
        out.labels[ip] = "marketing_spike"
    return out, begin


@dataclass(frozen=True)
class EvasiveScenario:
    """Normal traffic plus the evasive attacks and the traps; `labels` says who is who."""

    spec: TrafficSpec
    scale: float = 1.0  # multiplies the number of attackers of each kind

    def build(self) -> tuple[pa.Table, dict[str, Any]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.spec.seed, 0xE7A51E]))
        catalog, _ = make_world(self.spec)
        plan = AttackPlan(int(self.spec.start.timestamp()), self.spec.duration_s)
        normal = plain_table(pa.concat_tables(list(generate(self.spec))))
        normal_rate = self.spec.events / self.spec.duration_s

        def count(low: int, high: int) -> int:
            return max(1, round(int(rng.integers(low, high + 1)) * self.scale))

        groups = [
            rotating_scrapers(rng, plan, catalog, count(3, 8)),
            human_slow_scrapers(rng, plan, catalog, count(3, 8)),
            ipv6_rotators(rng, plan, catalog, count(2, 4)),
            card_testers(rng, plan, catalog, count(2, 5)),
            distributed_hoarders(rng, plan, catalog),
            residential_botnet(rng, plan, catalog),
            crawlers(rng, plan, catalog, count(2, 4), spoofed=True),
            crawlers(rng, plan, catalog, 2, spoofed=False),
            uptime_monitors(rng, plan, catalog),
            returning_customers(rng, plan, catalog, count(5, 15)),
            heavy_shoppers(rng, plan, catalog, count(3, 8)),
        ]
        flooding, onset = low_rate_flood(rng, plan, catalog, normal_rate)
        spike, spike_start = marketing_spike(rng, plan, catalog, normal_rate)
        sale, sale_start = flash_sale(rng, plan, catalog, normal_rate)
        groups += [flooding, spike, sale]
        cgnat, cgnat_ip = nat_behind_one_ip(
            self.spec, rng, (100, 250), seed_offset=2_000, catalog=catalog
        )

        events, labels, campaigns = assemble(
            normal,
            (cgnat, cgnat_ip, "cgnat"),
            groups,
            catalog,
            EVASIVE_GROUP_KINDS,
            EVASIVE_LEGIT_KINDS,
        )
        return events, {
            "scenario": "evasive",
            "ips": labels,
            "campaigns": campaigns,
            "kinds": {
                "attack": list(EVASIVE_ATTACK_KINDS),
                "legitimate": list(EVASIVE_LEGIT_KINDS),
            },
            "flood_onset": iso_time(onset),
            "flood_end": iso_time(flooding.last_s()),
            "flash_sale_start": iso_time(sale_start),
            "flash_sale_end": iso_time(sale.last_s()),
            "marketing_spike_start": iso_time(spike_start),
            "marketing_spike_end": iso_time(spike.last_s()),
            "events": events.num_rows,
            "normal_events": normal.num_rows,
        }

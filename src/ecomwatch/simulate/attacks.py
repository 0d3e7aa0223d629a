"""Labelled attacks and look-alike legitimate crowds, injected into simulated shop traffic.

`simulate --attacks` writes normal traffic plus, at random times and with parameters drawn from
wide ranges (so that rules are tuned for the kind, not for one generator):

- fast scrapers: one IP each, 1 to 6 views a second for minutes, broad catalogue walks, no funnel;
- low-and-slow scrapers: one view every 15 to 90 s with little jitter for one to three hours, an
  exhaustive walk in catalogue or ID order, a browser user agent;
- rotating botnets: dozens to hundreds of IPs, each alive a minute or two and bursty, sharing a
  fingerprint (a rare user agent, or a few hosting /24 subnets);
- cart abusers: add/remove loops or piles of carts on a few hot products, never bought;
- a flood: hundreds of new IPs multiplying the shop's traffic for minutes, views only;

and the traps that must not be alarmed on: an office NAT (many real shoppers behind one IP), a
flash sale (a surge of new shoppers onto one product, with a good funnel) and heavy shoppers.
Every injected IP is labelled with its kind in the labels file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ecomwatch.simulate.catalog import USER_AGENTS, Catalog
from ecomwatch.simulate.traffic import TrafficSpec, generate, make_world

ATTACK_KINDS = ("fast_scraper", "low_and_slow", "botnet", "cart_abuser", "flood")
LEGIT_KINDS = ("nat_office", "flash_sale", "heavy_shopper")
# Kinds whose actors act together: all IPs of one such group are one campaign.
GROUP_KINDS = ("botnet", "flood", "flash_sale")

TOOL_AGENTS = (
    "python-requests/2.31.0",
    "curl/8.4.0",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/119.0.0.0 Safari/537.36",
    "Go-http-client/1.1",
)
RARE_AGENTS = (
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/49.0.2623.112 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:91.0) Gecko/20100101 Firefox/91.0",
    "Mozilla/5.0 (Linux; Android 8.0.0; SM-G960F) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/62.0.3202.84 Mobile Safari/537.36",
)
# Attackers come from address space the simulated shoppers never use.
ATTACK_FIRST_OCTETS = np.array([5, 23, 45, 89, 103, 139, 141, 154, 185, 194, 198])


@dataclass
class Injected:
    """Events of one injected actor group, as plain columns, plus the IPs' labels."""

    times_us: list[np.ndarray] = field(default_factory=list)
    kinds: list[np.ndarray] = field(default_factory=list)  # 0 view, 1 cart, 2 remove, 3 purchase
    products: list[np.ndarray] = field(default_factory=list)  # catalogue indices
    users: list[np.ndarray] = field(default_factory=list)
    sessions: list[list[str]] = field(default_factory=list)
    ips: list[list[str]] = field(default_factory=list)
    agents: list[list[str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)  # IP → its actor, if of many IPs

    def add_actor(
        self,
        rng: np.random.Generator,
        label: str,
        times_s: np.ndarray,
        kinds: np.ndarray,
        products: np.ndarray,
    ) -> None:
        """One new actor: a fresh IP, user and session, a common browser user agent."""
        ip = attack_ip(rng)
        self.add(
            times_s,
            kinds,
            products,
            user=new_user_id(rng),
            session=new_session_id(rng),
            ip=ip,
            agent=str(rng.choice(USER_AGENTS)),
        )
        self.labels[ip] = label

    def last_s(self) -> float:
        return max(int(t.max()) for t in self.times_us) / 1e6

    def add(
        self,
        times_s: np.ndarray,
        kinds: np.ndarray,
        products: np.ndarray,
        *,
        user: int | np.ndarray,
        session: str | list[str],
        ip: str | list[str],
        agent: str | list[str],
    ) -> None:
        n = len(times_s)
        # REES46 times have one-second resolution.
        self.times_us.append(np.floor(np.asarray(times_s)).astype(np.int64) * 1_000_000)
        self.kinds.append(np.asarray(kinds, dtype=np.int8))
        self.products.append(np.asarray(products, dtype=np.int64))
        self.users.append(np.broadcast_to(np.asarray(user, dtype=np.int64), (n,)).copy())
        self.sessions.append([session] * n if isinstance(session, str) else list(session))
        self.ips.append([ip] * n if isinstance(ip, str) else list(ip))
        self.agents.append([agent] * n if isinstance(agent, str) else list(agent))


@dataclass(frozen=True)
class AttackPlan:
    """When the scenario's period starts and how long it lasts, in epoch seconds."""

    start_s: int
    duration_s: int

    def at(self, rng: np.random.Generator, lasting_s: float) -> float:
        """A start time such that something lasting `lasting_s` ends inside the period."""
        return self.start_s + rng.uniform(0, max(1.0, self.duration_s - lasting_s))


def new_session_id(rng: np.random.Generator) -> str:
    raw = rng.integers(0, 2**63, 2)
    text = f"{int(raw[0]):016x}{int(raw[1]):016x}"[:32]
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:32]}"


def new_user_id(rng: np.random.Generator) -> int:
    return int(700_000_000 + rng.integers(0, 100_000_000))


def attack_ip(rng: np.random.Generator, subnet: str | None = None) -> str:
    if subnet is not None:
        return f"{subnet}.{int(rng.integers(1, 255))}"
    first = int(rng.choice(ATTACK_FIRST_OCTETS))
    rest = rng.integers(0, 256, 3)
    return f"{first}.{rest[0]}.{rest[1]}.{max(1, int(rest[2]))}"


def human_gaps(rng: np.random.Generator, n: int, median_s: float = 25.0) -> np.ndarray:
    return np.clip(rng.lognormal(np.log(median_s), 0.9, n), 2, 900)


def fast_scrapers(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int) -> Injected:
    out = Injected()
    for _ in range(n):
        rate = rng.uniform(1.0, 6.0)  # views per second
        lasting = rng.uniform(180, 900)
        count = int(rate * lasting)
        start = plan.at(rng, lasting)
        times = start + np.cumsum(rng.exponential(1 / rate, count))
        if rng.random() < 0.5:  # a broad random walk
            products = rng.integers(0, catalog.size, count)
        else:  # a sweep in catalogue order from a random place
            products = (int(rng.integers(0, catalog.size)) + np.arange(count)) % catalog.size
        agent = str(rng.choice(USER_AGENTS + TOOL_AGENTS))
        ip = attack_ip(rng)
        # Some keep a cookie, some start a new session every few dozen requests.
        per_session = count if rng.random() < 0.5 else int(rng.integers(10, 60))
        sessions = [new_session_id(rng) for _ in range(count // per_session + 1)]
        out.add(
            times,
            np.zeros(count),
            products,
            user=new_user_id(rng),
            session=[sessions[i // per_session] for i in range(count)],
            ip=ip,
            agent=agent,
        )
        out.labels[ip] = "fast_scraper"
    return out


def low_and_slow(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int) -> Injected:
    out = Injected()
    for _ in range(n):
        period = rng.uniform(15, 90)
        jitter = rng.uniform(0.0, 0.3)  # ± share of the period, uniform
        lasting = min(rng.uniform(3900, 3 * 3600), plan.duration_s * 0.9)
        count = int(lasting / period)
        start = plan.at(rng, lasting)
        times = start + np.cumsum(period * (1 + rng.uniform(-jitter, jitter, count)))
        if rng.random() < 0.5:  # catalogue (category) order
            products = (int(rng.integers(0, catalog.size)) + np.arange(count)) % catalog.size
        else:  # product-ID order
            by_id = np.argsort(catalog.product_id)
            first = int(rng.integers(0, catalog.size))
            products = by_id[(first + np.arange(count)) % catalog.size]
        out.add_actor(rng, "low_and_slow", times, np.zeros(count), products)
    return out


def botnet(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, members: int) -> Injected:
    """One campaign; its members share either a rare user agent or a few /24 subnets."""
    out = Injected()
    campaign = rng.uniform(900, 2400)
    begin = plan.at(rng, campaign + 300)
    shared_agent = str(rng.choice(RARE_AGENTS)) if rng.random() < 0.5 else None
    subnets = [
        f"{int(rng.choice(ATTACK_FIRST_OCTETS))}.{int(rng.integers(0, 256))}."
        f"{int(rng.integers(0, 256))}"
        for _ in range(int(rng.integers(2, 5)))
    ]
    for _ in range(members):
        ip = attack_ip(rng, None if shared_agent else str(rng.choice(subnets)))
        count = int(rng.integers(8, 40))
        mean_gap = rng.uniform(1.0, 6.0)
        times = begin + rng.uniform(0, campaign) + np.cumsum(rng.exponential(mean_gap, count))
        out.add(
            times,
            np.zeros(count),
            rng.integers(0, catalog.size, count),
            user=new_user_id(rng),
            session=new_session_id(rng),
            ip=ip,
            agent=shared_agent or str(rng.choice(USER_AGENTS)),
        )
        out.labels[ip] = "botnet"
    return out


def cart_abusers(rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int) -> Injected:
    out = Injected()
    hot = np.argsort(catalog.popularity)[-20:]
    for _ in range(n):
        loops = int(rng.integers(15, 45))
        targets = rng.choice(hot, int(rng.integers(1, 4)), replace=False)
        products = np.repeat(rng.choice(targets, loops), 2)
        kinds = np.tile([1, 2], loops).astype(np.int8)  # add, remove, add, remove…
        if rng.random() < 0.5:  # hoarding: carts only, never removed or bought
            kinds[:] = 1
        times = plan.at(rng, 1200) + np.cumsum(rng.uniform(3, 15, len(kinds)))
        out.add_actor(rng, "cart_abuser", times, kinds, products)
    return out


def flood(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, normal_rate: float
) -> tuple[Injected, float]:
    """Hundreds of new IPs multiplying the traffic for minutes; returns (events, onset)."""
    out = Injected()
    sources = int(rng.integers(100, 400))
    lasting = rng.uniform(180, 480)
    onset = plan.at(rng, lasting + 600) + 300
    total_rate = normal_rate * rng.uniform(6, 15)
    targets = rng.integers(0, catalog.size, int(rng.integers(1, 6)))
    fresh_sessions = rng.random() < 0.5
    for _ in range(sources):
        rate = total_rate / sources
        count = max(5, int(rng.poisson(rate * lasting)))
        times = onset + np.sort(rng.uniform(0, lasting, count))
        ip = attack_ip(rng)
        sessions = (
            [new_session_id(rng) for _ in range(count)] if fresh_sessions else new_session_id(rng)
        )
        out.add(
            times,
            np.zeros(count),
            rng.choice(targets, count),
            user=new_user_id(rng),
            session=sessions,
            ip=ip,
            agent=str(rng.choice(USER_AGENTS + TOOL_AGENTS)),
        )
        out.labels[ip] = "flood"
    return out, onset


def flash_sale(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, normal_rate: float
) -> tuple[Injected, float]:
    """New shoppers rush one product: view it, many cart it, many of those buy it."""
    out = Injected()
    lasting = rng.uniform(600, 1200)
    begin = plan.at(rng, lasting + 600)
    product = int(rng.integers(0, catalog.size))
    shoppers = int(normal_rate * lasting * rng.uniform(1.5, 4.0) / 3.5)
    for _ in range(shoppers):
        kinds = [0] * int(rng.integers(1, 4))
        if rng.random() < 0.6:
            kinds.append(1)
            if rng.random() < 0.7:
                kinds.append(3)
        times = begin + rng.exponential(lasting / 4) + np.cumsum(human_gaps(rng, len(kinds), 15))
        out.add_actor(rng, "flash_sale", times, np.array(kinds), np.full(len(kinds), product))
    return out, begin


def heavy_shoppers(
    rng: np.random.Generator, plan: AttackPlan, catalog: Catalog, n: int
) -> Injected:
    """Keen people: many long sessions with human timing, carts and purchases."""
    out = Injected()
    for _ in range(n):
        ip, user, agent = attack_ip(rng), new_user_id(rng), str(rng.choice(USER_AGENTS))
        for _ in range(int(rng.integers(4, 10))):
            count = int(rng.integers(15, 60))
            roll = rng.random(count)
            kinds = np.where(roll < 0.12, 1, np.where(roll < 0.16, 3, 0))
            start = int(rng.integers(0, catalog.size))
            products = np.clip(start + np.cumsum(rng.integers(-5, 6, count)), 0, catalog.size - 1)
            times = plan.at(rng, 3600) + np.cumsum(human_gaps(rng, count))
            out.add(
                times, kinds, products, user=user, session=new_session_id(rng), ip=ip, agent=agent
            )
        out.labels[ip] = "heavy_shopper"
    return out


def nat_behind_one_ip(
    spec: TrafficSpec,
    rng: np.random.Generator,
    per_minute: tuple[float, float] = (30, 80),
    *,
    seed_offset: int = 1_000,
    catalog: Catalog | None = None,
) -> tuple[pa.Table, str]:
    """Real-looking shoppers (the normal generator's) all behind one IP: an office NAT at the
    default 30 to 80 events a minute (a few hundred people, over any rate rule's per-IP
    limit), a carrier-grade NAT at more. `catalog`: the shop's (default: a catalogue of
    their own, as the classic scenario has always drawn them)."""
    ip = attack_ip(rng)
    office = TrafficSpec(
        events=int(spec.duration_s / 60 * rng.uniform(*per_minute)),
        seed=spec.seed + seed_offset,
        start=spec.start,
        days=spec.duration_s / 86_400,
    )
    table = pa.concat_tables(list(generate(office, threads=1, catalog=catalog)))
    table = table.set_column(
        table.column_names.index("ip"), "ip", pa.array([ip] * table.num_rows, pa.string())
    )
    return plain_table(table), ip


def plain_table(table: pa.Table) -> pa.Table:
    """Dictionary columns decoded to plain strings, so tables of any origin concatenate."""
    return pa.table(
        {
            name: col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col
            for name, col in zip(table.column_names, table.columns, strict=True)
        }
    )


def as_table(group: Injected, catalog: Catalog) -> pa.Table:
    from ecomwatch.schema import EVENT_TYPES

    products = np.concatenate(group.products)
    kinds = np.concatenate(group.kinds)
    return pa.table(
        {
            "event_time": pa.array(np.concatenate(group.times_us)).cast(
                pa.timestamp("us", tz="UTC")
            ),
            "event_type": pa.array(np.array(EVENT_TYPES, dtype=object)[kinds], pa.string()),
            "product_id": pa.array(catalog.product_id[products]),
            "category_id": pa.array(catalog.category_id[products]),
            "category_code": catalog.category_code.take(pa.array(products)),
            "brand": catalog.brand.take(pa.array(products)),
            "price_cents": pa.array(catalog.price_cents[products]),
            "user_id": pa.array(np.concatenate(group.users)),
            "user_session": pa.array([s for part in group.sessions for s in part], pa.string()),
            "ip": pa.array([s for part in group.ips for s in part], pa.string()),
            "user_agent": pa.array([s for part in group.agents for s in part], pa.string()),
        }
    )


def assemble(
    normal: pa.Table,
    nat: tuple[pa.Table, str, str],
    groups: list[Injected],
    catalog: Catalog,
    group_kinds: tuple[str, ...],
    legit_kinds: tuple[str, ...] = (),
) -> tuple[pa.Table, dict[str, str], dict[str, str]]:
    """A scenario's events in time order (normal traffic, the NAT's `(events, ip, kind)`, the
    injected groups), each injected IP's kind, and its campaign: the IPs of one group of a
    group kind (a botnet, a flood, a sale) are one campaign, so are the IPs of one actor of
    many; every other actor is a campaign of its own (scoring incident grouping).

    An address drawn twice (two home addresses of thousands can meet) keeps the kind of the
    attacker behind it over one of `legit_kinds`: it did attack."""
    nat_events, nat_ip, nat_kind = nat
    labels = {nat_ip: nat_kind}
    campaigns = {nat_ip: f"{nat_kind}:{nat_ip}"}
    for number, group in enumerate(groups):
        for ip, kind in group.labels.items():
            if kind in legit_kinds and labels.get(ip, kind) not in legit_kinds:
                continue
            labels[ip] = kind
            alone = group.campaigns.get(ip, f"{kind}:{ip}")
            campaigns[ip] = f"{kind}#{number}" if kind in group_kinds else alone
    tables = [normal, nat_events] + [as_table(g, catalog).cast(normal.schema) for g in groups]
    events = pa.concat_tables(tables).sort_by([("event_time", "ascending")])
    return events, labels, campaigns


@dataclass(frozen=True)
class AttackScenario:
    """Normal traffic plus labelled attacks and traps; `labels` says who is who."""

    spec: TrafficSpec
    scale: float = 1.0  # multiplies the number of attackers of each kind

    def build(self) -> tuple[pa.Table, dict[str, Any]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.spec.seed, 0xA77AC]))
        catalog, _ = make_world(self.spec)
        plan = AttackPlan(int(self.spec.start.timestamp()), self.spec.duration_s)
        normal = plain_table(pa.concat_tables(list(generate(self.spec))))
        normal_rate = self.spec.events / self.spec.duration_s

        def count(low: int, high: int) -> int:
            return max(1, round(int(rng.integers(low, high + 1)) * self.scale))

        groups = [
            fast_scrapers(rng, plan, catalog, count(3, 8)),
            low_and_slow(rng, plan, catalog, count(3, 8)),
            cart_abusers(rng, plan, catalog, count(3, 8)),
            heavy_shoppers(rng, plan, catalog, count(3, 8)),
        ]
        groups += [botnet(rng, plan, catalog, count(40, 150)) for _ in range(2)]
        flooding, onset = flood(rng, plan, catalog, normal_rate)
        sale, sale_start = flash_sale(rng, plan, catalog, normal_rate)
        groups += [flooding, sale]
        office, office_ip = nat_behind_one_ip(self.spec, rng)

        events, labels, campaigns = assemble(
            normal, (office, office_ip, "nat_office"), groups, catalog, GROUP_KINDS
        )
        return events, {
            "ips": labels,
            "campaigns": campaigns,
            "kinds": {"attack": list(ATTACK_KINDS), "legitimate": list(LEGIT_KINDS)},
            "flood_onset": iso_time(onset),
            "flood_end": iso_time(flooding.last_s()),
            "flash_sale_start": iso_time(sale_start),
            "flash_sale_end": iso_time(sale.last_s()),
            "events": events.num_rows,
            "normal_events": normal.num_rows,
        }


def iso_time(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(int(epoch_s), UTC)
    return moment.isoformat().replace("+00:00", "Z")


def write_labels(labels: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")


def in_chunks(table: pa.Table, rows: int = 500_000) -> Iterator[pa.Table]:
    for offset in range(0, table.num_rows, rows):
        yield table.slice(offset, rows)


def labels_path_for(out: Path) -> Path:
    """`traffic.csv` → `traffic.labels.json`."""
    name = out.name
    for suffix in (".csv.gz", ".csv", ".jsonl", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + ".labels.json")

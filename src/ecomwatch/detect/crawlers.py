"""Verified crawlers: a user agent that claims to be Googlebot is believed only from Google's
addresses.

Crawler operators publish the address ranges their crawlers use (JSON: `creationTime` and
`prefixes` of `ipv4Prefix` / `ipv6Prefix`). Dated snapshots ship in `crawler_ranges/`;
`ecomwatch crawlers update FILE...` installs newer ones (in `$ECOMWATCH_CRAWLERS_DIR`, by
default `~/.local/share/ecomwatch/crawlers`), which win over the shipped ones when newer.

A request whose user agent claims an operator's crawler is *verified* when its address is in
that operator's ranges, a *spoof* when it is not; an operator with no list installed verifies
nothing and accuses no one. Only the few addresses that claim a crawler are looked up, once
per distinct address in a batch.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ecomwatch.decode.distinct_text import DistinctText

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What each operator's crawler says in its user agent (RE2 and Python alike).
CLAIMS: dict[str, str] = {
    "googlebot": r"(?i)googlebot",
    "bingbot": r"(?i)bingbot|msnbot|adidxbot|bingpreview",
    "applebot": r"(?i)applebot",
    "gptbot": r"(?i)gptbot",
}


# Address blocks the operators own outright. A claim from inside one but outside the current
# list (an older log: Googlebot crawled from all of 66.249.64.0/19 for years; a list that
# lags) is neither verified nor called a spoof.
OWNED: dict[str, tuple[str, ...]] = {
    "googlebot": ("66.249.64.0/19",),
    "applebot": ("17.0.0.0/8",),  # Apple's own /8
}


class CrawlerListError(ValueError):
    """A crawler list file is not an operator's published list."""


@dataclass(frozen=True)
class CrawlerList:
    operator: str
    created: str  # the list's own creationTime
    networks: tuple[Network, ...]
    origin: str  # "shipped" or the installed file's path

    def contains(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.networks)


def parse_list(text: str, *, operator: str, origin: str) -> CrawlerList:
    """A published list, checked: JSON with a non-empty `prefixes` of valid networks."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CrawlerListError(f"{origin}: not JSON ({exc.msg})") from None
    prefixes = data.get("prefixes") if isinstance(data, dict) else None
    if not isinstance(prefixes, list) or not prefixes:
        raise CrawlerListError(
            f"{origin}: no `prefixes` in it: not a crawler range list (an address that moved "
            "can answer 200 with an empty page; download the list from its current address)"
        )
    networks: list[Network] = []
    for entry in prefixes:
        value = entry.get("ipv4Prefix") or entry.get("ipv6Prefix") if isinstance(entry, dict) \
            else None  # fmt: skip
        try:
            networks.append(ipaddress.ip_network(str(value)))
        except ValueError:
            raise CrawlerListError(f"{origin}: {value!r} is not an address range") from None
    return CrawlerList(operator, str(data.get("creationTime", "")), tuple(networks), origin)


def installed_dir() -> Path:
    default = Path.home() / ".local" / "share" / "ecomwatch" / "crawlers"
    return Path(os.environ.get("ECOMWATCH_CRAWLERS_DIR", default))


def operator_of(path: Path) -> str:
    """The operator a list file is for, from its name (`googlebot.json`, `bingbot (1).json`)."""
    for operator in CLAIMS:
        if path.name.lower().startswith(operator):
            return operator
    raise CrawlerListError(
        f"{path}: cannot tell whose list this is from its name; name it "
        f"{' or '.join(o + '.json' for o in CLAIMS)}"
    )


def load_lists() -> dict[str, CrawlerList]:
    """Each operator's newest list: the shipped snapshot or an installed one."""
    lists: dict[str, CrawlerList] = {}
    shipped = resources.files("ecomwatch.detect").joinpath("crawler_ranges")
    for operator in CLAIMS:
        item = shipped.joinpath(f"{operator}.json")
        if item.is_file():
            lists[operator] = parse_list(item.read_text(), operator=operator, origin="shipped")
    folder = installed_dir()
    for operator in CLAIMS:
        path = folder / f"{operator}.json"
        if path.is_file():
            mine = parse_list(path.read_text(), operator=operator, origin=str(path))
            if operator not in lists or mine.created >= lists[operator].created:
                lists[operator] = mine
    return lists


def install(path: Path) -> CrawlerList:
    """Check a downloaded list and install it; the installed list it replaces is overwritten."""
    operator = operator_of(path)
    checked = parse_list(path.read_text(), operator=operator, origin=str(path))
    folder = installed_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{operator}.json"
    target.write_text(path.read_text())
    return CrawlerList(operator, checked.created, checked.networks, str(target))


@dataclass(frozen=True)
class CrawlerFlags:
    claimed: np.ndarray  # the user agent claims a crawler of an operator
    verified: np.ndarray  # ...and the address is in that operator's ranges
    spoofed: np.ndarray  # ...and it is not, though the operator's ranges are known


class CrawlerVerifier:
    def __init__(self, lists: dict[str, CrawlerList] | None = None) -> None:
        self.lists = load_lists() if lists is None else lists
        self._cache: dict[tuple[str, str], tuple[bool, bool]] = {}
        self._owned_networks = {
            operator: tuple(ipaddress.ip_network(block) for block in blocks)
            for operator, blocks in OWNED.items()
        }

    def flags(self, agents: pa.ChunkedArray, ips: pa.ChunkedArray) -> CrawlerFlags:
        """Per row: whether it claims a crawler, is verified, is a spoof."""
        n = len(agents)
        claimed = np.zeros(n, dtype=bool)
        verified = np.zeros(n, dtype=bool)
        spoofed = np.zeros(n, dtype=bool)
        agent = DistinctText(agents)  # each distinct user agent matched once
        for operator, pattern in CLAIMS.items():
            claims = agent.matches(pattern) & ~claimed  # one operator per request
            if not claims.any():
                continue
            claimed |= claims
            ranges = self.lists.get(operator)
            if ranges is None:
                continue
            rows = np.flatnonzero(claims)
            addresses = _strings(ips).take(pa.array(rows)).to_pylist()
            judged = np.array([self._judge(ranges, ip) for ip in addresses], bool).reshape(-1, 2)
            inside, owned = judged[:, 0], judged[:, 1]
            verified[rows[inside]] = True
            spoofed[rows[~inside & ~owned]] = True
        return CrawlerFlags(claimed, verified, spoofed)

    def _judge(self, ranges: CrawlerList, ip: str | None) -> tuple[bool, bool]:
        """(in the operator's list, in a block the operator owns) for one address, cached."""
        if ip is None:
            return False, False
        key = (ranges.operator, ip)
        found = self._cache.get(key)
        if found is None:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                found = (False, False)
            else:
                blocks = self._owned_networks.get(ranges.operator, ())
                found = (ranges.contains(address), any(address in b for b in blocks))
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key] = found
        return found


def _strings(column: pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks().cast(pa.string())

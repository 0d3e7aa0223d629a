"""One request's crawler claim, judged: no claim, a claim neither verified nor refuted, a
verified crawler or a spoof — by the rules of `crawlers` (the first operator whose pattern the
user agent matches; its published ranges verify; outside them and outside the blocks the
operator owns outright, a spoof; no list, no verdict).

Standard library only, one request at a time: the Flink job ships this file and its UDF runs
it. The embedded detector applies the same rules to whole batches (`CrawlerVerifier`); the
parity tests hold the two to the same answers.
"""

from __future__ import annotations

import ipaddress
import re

NO_CLAIM, CLAIMED, VERIFIED, SPOOFED = 0, 1, 2, 3
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClaimJudge:
    def __init__(
        self,
        claims: dict[str, str],
        ranges: dict[str, list[str]],
        owned: dict[str, list[str]],
    ) -> None:
        """`claims`: operator → user-agent pattern; `ranges`: operator → its published
        networks (operators without a list are absent); `owned`: operator → its own blocks."""
        self.claims = [(operator, re.compile(pattern)) for operator, pattern in claims.items()]
        self.ranges = {op: [ipaddress.ip_network(n) for n in nets] for op, nets in ranges.items()}
        self.owned = {op: [ipaddress.ip_network(n) for n in nets] for op, nets in owned.items()}
        self._known: dict[tuple[str, str], int] = {}

    def classify(self, agent: str | None, ip: str | None) -> int:
        if not agent:
            return NO_CLAIM
        operator = next((op for op, pattern in self.claims if pattern.search(agent)), None)
        if operator is None:
            return NO_CLAIM
        networks = self.ranges.get(operator)
        if networks is None:
            return CLAIMED
        if ip is None:
            return SPOOFED  # a claim from no address at all is not the operator's
        key = (operator, ip)
        found = self._known.get(key)
        if found is None:
            found = self._judge(operator, networks, ip)
            if len(self._known) > 100_000:
                self._known.clear()
            self._known[key] = found
        return found

    def _judge(self, operator: str, networks: list[Network], ip: str) -> int:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return SPOOFED
        if any(address in network for network in networks):
            return VERIFIED
        if any(address in block for block in self.owned.get(operator, ())):
            return CLAIMED
        return SPOOFED

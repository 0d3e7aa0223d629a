"""An IPv6 address's subnet: its prefix of a configurable length, as text (`2a00:1:2::/56`).

Standard library only: the Flink job ships this file (its subnet UDF runs it), so both engines
name a subnet alike.
"""

from __future__ import annotations

import ipaddress

IPV6_PREFIX = 56  # bits of an IPv6 address that make its subnet, by default


def ipv6_prefix(address: str, bits: int = IPV6_PREFIX) -> str | None:
    """The IPv6 prefix of `bits` bits an address is in, as text (`2a00:1:2::/56`); None
    for text that is not an IPv6 address."""
    try:
        network = ipaddress.IPv6Network(f"{address}/{bits}", strict=False)
    except ValueError:
        return None
    return str(network)

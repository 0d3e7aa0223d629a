"""Integer keys for IP addresses, subnets and user agents, which rules group events by.

DuckDB groups integers far faster than strings, and the keys are computed once per distinct
value of a batch's dictionary, not per event. An IPv4 address "a.b.c.d" becomes the number
a·10⁹ + b·10⁶ + c·10³ + d and its subnet (the /24) a·10⁶ + b·10³ + c (exact, no collision);
any other address and every user agent get the first 8 bytes of their BLAKE2b digest with the
top bit set, so they never meet an IPv4 number. An IPv6 address's subnet is its prefix of
`ipv6_prefix` bits (/56 by default: one household's or one server's allocation, whose
addresses an attacker can rotate through at will), keyed by the prefix's text; text that is
not an address is its own subnet. Keys are derived from the text alone, so a value has the
same key in every process (a detector restored from a checkpoint keeps grouping its old
events with the new).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecomwatch.detect.ip_prefix import IPV6_PREFIX, ipv6_prefix
from ecomwatch.schema import dictionary_chunks

__all__ = ["IPV6_PREFIX", "address_keys", "agent_keys", "ipv6_prefix", "text_key"]

IPV4 = r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$"
MAX_CACHED_AGENTS = 100_000


def text_key(text: str) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") | (1 << 63)


def _text_keys(values: list[str | None]) -> np.ndarray:
    return np.array([text_key(v) if v is not None else 0 for v in values], dtype=np.uint64)


def _per_row(chunk: pa.DictionaryArray, keys: np.ndarray) -> pa.Array:
    return pa.array(keys, pa.uint64()).take(chunk.indices)


def _subnet_keys(values: list[str | None], bits: int) -> np.ndarray:
    """Subnet keys of addresses that are not IPv4: an IPv6 address's prefix, else itself."""
    keys = []
    for value in values:
        prefix = ipv6_prefix(value, bits) if value is not None else None
        keys.append(text_key(prefix or value) if value is not None else 0)
    return np.array(keys, dtype=np.uint64)


def address_keys(
    ips: pa.ChunkedArray, ipv6_prefix_bits: int = IPV6_PREFIX
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(ip key, subnet key) per row; null where the IP is null."""
    ip_chunks, subnet_chunks = [], []
    for chunk in dictionary_chunks(ips):
        values = chunk.dictionary.cast(pa.string())
        is_v4 = pc.fill_null(pc.match_substring_regex(values, IPV4), False)
        v4 = np.asarray(is_v4.to_numpy(zero_copy_only=False), dtype=bool)
        ip_keys = np.zeros(len(values), dtype=np.uint64)
        subnet_keys = np.zeros(len(values), dtype=np.uint64)
        if v4.any():
            parts = pc.split_pattern(values.filter(is_v4), ".").flatten()
            octets = parts.cast(pa.uint64()).to_numpy().reshape(-1, 4)
            subnet = (octets[:, 0] * 1000 + octets[:, 1]) * 1000 + octets[:, 2]
            ip_keys[v4] = subnet * 1000 + octets[:, 3]
            subnet_keys[v4] = subnet
        if not v4.all():
            others = values.filter(pc.invert(is_v4)).to_pylist()
            ip_keys[~v4] = _text_keys(others)
            subnet_keys[~v4] = _subnet_keys(others, ipv6_prefix_bits)
        ip_chunks.append(_per_row(chunk, ip_keys))
        subnet_chunks.append(_per_row(chunk, subnet_keys))
    return (
        pa.chunked_array(ip_chunks, pa.uint64()),
        pa.chunked_array(subnet_chunks, pa.uint64()),
    )


def agent_keys(agents: pa.ChunkedArray, cache: dict[str, int]) -> pa.ChunkedArray:
    """A key per row for the user agent (`cache` keeps each agent's key across batches)."""
    chunks = []
    for chunk in dictionary_chunks(agents):
        values = chunk.dictionary.cast(pa.string()).to_pylist()
        keys = np.zeros(len(values), dtype=np.uint64)
        for i, value in enumerate(values):
            if value is not None:
                key = cache.get(value)
                if key is None:
                    if len(cache) >= MAX_CACHED_AGENTS:
                        cache.clear()
                    key = cache[value] = text_key(value)
                keys[i] = key
        chunks.append(_per_row(chunk, keys))
    return pa.chunked_array(chunks, pa.uint64())

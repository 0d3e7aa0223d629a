"""Integer keys of addresses and user agents: equal exactly when the texts (or /24s) are."""

from __future__ import annotations

import pyarrow as pa

from ecomwatch.detect.entity_keys import address_keys, agent_keys


def test_addresses_get_exact_keys_and_ipv4_subnets_share_theirs():
    ips = pa.chunked_array(
        [
            pa.array(["10.0.0.1", "10.0.0.2", "10.0.1.1", None, "2001:db8::1"]).dictionary_encode(),
            pa.array(["2001:db8::1", "10.0.0.1", "not an ip"]).dictionary_encode(),
        ]
    )
    ip_keys, subnet_keys = address_keys(ips)
    ip, subnet = ip_keys.to_pylist(), subnet_keys.to_pylist()
    assert ip[0] == 10_000_000_001 and subnet[0] == 10_000_000
    assert ip[0] == ip[6] and ip[4] == ip[5]  # same text, same key, across chunks
    assert len({ip[0], ip[1], ip[2], ip[4], ip[7]}) == 5
    assert subnet[0] == subnet[1] != subnet[2]
    assert ip[3] is None and subnet[3] is None
    assert ip[4] >= 1 << 63 and subnet[4] == ip[4]  # not IPv4: its own subnet, never a v4 key


def test_user_agents_get_stable_keys():
    agents = pa.chunked_array([pa.array(["curl/8.0", "Mozilla/5.0", "curl/8.0"])])
    first = agent_keys(agents, {}).to_pylist()
    again = agent_keys(agents, {}).to_pylist()  # a fresh cache: the key is from the text
    assert first == again and first[0] == first[2] != first[1]

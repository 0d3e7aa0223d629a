"""Integer keys of addresses and user agents: equal exactly when the texts (or /24s) are."""

from __future__ import annotations

import pyarrow as pa

from ecomwatch.detect.entity_keys import address_keys, agent_keys, ipv6_prefix


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
    assert ip[4] >= 1 << 63 and subnet[4] >= 1 << 63  # not IPv4: never a v4 key
    assert subnet[7] == ip[7]  # text that is no address is its own subnet


def test_ipv6_addresses_share_their_prefix_as_subnet():
    ips = pa.chunked_array(
        [pa.array(["2a00:1:2:3::1", "2a00:1:2:3:ffff::9", "2a00:1:2:ff::1", "2a00:1:3::1"])]
    )
    _, at_56 = address_keys(ips)
    one_56 = at_56.to_pylist()
    assert one_56[0] == one_56[1] == one_56[2] != one_56[3]  # the /56 holds 2a00:1:2:0-ff::
    _, at_64 = address_keys(ips, 64)
    one_64 = at_64.to_pylist()
    assert one_64[0] == one_64[1] != one_64[2]
    assert ipv6_prefix("2a00:1:2:3::1") == "2a00:1:2::/56"
    assert ipv6_prefix("10.0.0.1") is None and ipv6_prefix("not an ip") is None


def test_user_agents_get_stable_keys():
    agents = pa.chunked_array([pa.array(["curl/8.0", "Mozilla/5.0", "curl/8.0"])])
    first = agent_keys(agents, {}).to_pylist()
    again = agent_keys(agents, {}).to_pylist()  # a fresh cache: the key is from the text
    assert first == again and first[0] == first[2] != first[1]

from __future__ import annotations

import ipaddress

from stillwatch.gateway.clientip import ClientIpResolver, subnet_of


def resolver(*nets: str) -> ClientIpResolver:
    return ClientIpResolver([ipaddress.ip_network(n) for n in nets])


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    r = resolver("10.0.0.0/8")
    assert r.resolve("203.0.113.5", b"1.2.3.4") == "203.0.113.5"
    assert r.resolve("10.1.1.1", b"1.2.3.4") == "1.2.3.4"
    # a client cannot forge the chain: the rightmost untrusted hop is the client
    assert r.resolve("10.1.1.1", b"6.6.6.6, 1.2.3.4, 10.2.2.2") == "1.2.3.4"
    assert r.resolve("10.1.1.1", b"garbage") == "10.1.1.1"
    assert r.resolve("10.1.1.1", None) == "10.1.1.1"
    assert resolver().resolve("10.1.1.1", b"1.2.3.4") == "10.1.1.1"


def test_subnets() -> None:
    assert subnet_of("203.0.113.77") == "203.0.113.0/24"
    assert subnet_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"

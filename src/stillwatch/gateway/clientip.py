"""The client's address: the connection's peer, or the forwarded address a trusted proxy names."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from stillwatch.policy import Network


class NetworkSet:
    """Membership of an address in a list of networks, remembered per address."""

    def __init__(self, networks: list[Network]) -> None:
        self._networks = list(networks)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, addr: str | None) -> bool:
        if addr is None or not self._networks:
            return False
        hit = self._cache.get(addr)
        if hit is None:
            try:
                ip = ipaddress.ip_address(addr)
                hit = any(ip in net for net in self._networks)
            except ValueError:
                hit = False
            if len(self._cache) < 100_000:
                self._cache[addr] = hit
        return hit


class ClientIpResolver:
    def __init__(self, trusted: list[Network]) -> None:
        self._trusted = NetworkSet(trusted)

    def is_trusted(self, addr: str | None) -> bool:
        return addr in self._trusted

    def resolve(self, peer: str | None, forwarded_for: bytes | None) -> str:
        """The rightmost address in X-Forwarded-For that is not a trusted proxy, if the peer
        itself is trusted; otherwise the peer."""
        if peer is None:
            peer = "0.0.0.0"
        if forwarded_for is None or not self.is_trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.decode("latin-1").split(",") if h.strip()]
        for hop in reversed(hops):
            if not _valid(hop):
                return peer
            if not self.is_trusted(hop):
                return hop
        return hops[0] if hops and _valid(hops[0]) else peer


def _valid(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
        return True
    except ValueError:
        return False


@lru_cache(maxsize=65_536)
def subnet_of(addr: str) -> str:
    """The /24 of an IPv4 address or the /64 of an IPv6 address, as a CIDR string."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))

"""IP networks and who the client is: the one place the gateway decides a request's address.

A request's client address is its socket peer, unless that peer is one of the gateway's
trusted proxies (``hybridmesh gateway --trusted-proxy CIDR``): then it is the right-most
``X-Forwarded-For`` entry that is not itself a trusted proxy. Entries further left were
written by whoever called the first trusted proxy, so they are never believed; this is
the "right-most untrusted" reading that nginx's ``real_ip_recursive`` and Envoy's
``xff_trusted_cidrs`` use. When every entry is a trusted proxy, the left-most one is the
client; an entry that is not an address ends the walk at the last address believed.

Rate limits by client, sticky splits by ``client_ip`` and ``ip_restriction`` all read the
address :func:`client_ip` gives.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(value: str) -> IPNetwork:
    """``value`` as a network: a CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or one address
    (a /32 or /128). Raises :class:`ValueError` with a message fit for a user."""
    text = value.strip()
    if not text:
        raise ValueError("an empty string is not an IP address or CIDR")
    try:
        return ipaddress.ip_network(text)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"{value[:60]!r} is not an IP address or CIDR (such as 10.0.0.0/8 or 2001:db8::/32)"
        ) from None
    raise ValueError(f"{value[:60]!r} has host bits set: the network is {loose}")


def parse_address(value: str) -> IPAddress | None:
    """``value`` as an address (IPv4-mapped IPv6 addresses as IPv4), None when it is not
    one. Takes what ``X-Forwarded-For`` entries look like: ``1.2.3.4``, ``1.2.3.4:5678``,
    ``2001:db8::1`` and ``[2001:db8::1]:443``."""
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class NetworkSet:
    """Networks, merged into sorted ranges, so testing an address is a binary search."""

    __slots__ = ("_ends", "_starts", "networks")

    def __init__(self, networks: Iterable[IPNetwork]) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(networks)
        ranges: dict[int, list[tuple[int, int]]] = {}
        for version in (4, 6):
            same: list[Any] = [n for n in self.networks if n.version == version]
            ranges[version] = [
                (int(n.network_address), int(n.broadcast_address))
                for n in ipaddress.collapse_addresses(same)
            ]
        self._starts = {v: [start for start, _ in r] for v, r in ranges.items()}
        self._ends = {v: [end for _, end in r] for v, r in ranges.items()}

    @classmethod
    def parse(cls, values: Iterable[str]) -> NetworkSet:
        return cls(parse_network(v) for v in values)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        starts = self._starts[address.version]
        if not starts:
            return False
        value = int(address)
        index = bisect_right(starts, value) - 1
        return index >= 0 and value <= self._ends[address.version][index]


def client_ip(peer: str, forwarded_for: Sequence[str], trusted: NetworkSet) -> str:
    """The client's address: ``peer`` (the socket's), or, when ``peer`` is in ``trusted``,
    the right-most entry of the ``X-Forwarded-For`` values (``forwarded_for``, in the order
    they came) that is not in ``trusted``."""
    if not trusted or not forwarded_for:
        return peer
    address = parse_address(peer)
    if address is None or address not in trusted:
        return peer
    believed = peer
    for value in reversed(forwarded_for):
        for entry in reversed(value.split(",")):
            hop = parse_address(entry)
            if hop is None:
                if not entry.strip():
                    continue  # "a, , b" or a trailing comma: nothing written there
                return believed
            believed = str(hop)
            if hop not in trusted:
                return believed
    return believed


__all__ = ["IPAddress", "IPNetwork", "NetworkSet", "client_ip", "parse_address", "parse_network"]

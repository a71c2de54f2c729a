"""Who the client is: the socket peer, or behind trusted proxies the right-most
X-Forwarded-For address that is not one of them."""

from __future__ import annotations

import ipaddress

import pytest

from hybridmesh.gateway.addresses import NetworkSet, client_ip, parse_address, parse_network

TRUSTED = NetworkSet.parse(["127.0.0.2/32", "172.16.0.0/12", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Not behind a trusted proxy: X-Forwarded-For is the client's own word, ignored.
        ("127.0.0.3", ["10.1.1.1"], "127.0.0.3"),
        ("127.0.0.2", [], "127.0.0.2"),
        ("127.0.0.2", ["10.1.1.1"], "10.1.1.1"),
        # What the client wrote on the left is never believed.
        ("127.0.0.2", ["10.1.1.1, 192.0.2.9"], "192.0.2.9"),
        ("127.0.0.2", ["10.1.1.1", "192.0.2.9"], "192.0.2.9"),
        # Trusted hops are skipped, as many as there are.
        ("127.0.0.2", ["10.1.1.1, 172.16.0.5, 172.20.1.1"], "10.1.1.1"),
        ("127.0.0.2", ["2001:db8::7, fd00::1"], "2001:db8::7"),
        ("127.0.0.2", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("127.0.0.2", ["10.1.1.1:5555"], "10.1.1.1"),
        ("127.0.0.2", ["::ffff:10.1.1.1"], "10.1.1.1"),
        ("::ffff:127.0.0.2", ["10.1.1.1"], "10.1.1.1"),
        # Every hop trusted: the farthest one.
        ("127.0.0.2", ["172.16.0.9, 172.16.0.5"], "172.16.0.9"),
        # Garbage ends the walk at the last address believed.
        ("127.0.0.2", ["10.1.1.1, unknown, 172.16.0.5"], "172.16.0.5"),
        ("127.0.0.2", ["unknown"], "127.0.0.2"),
        ("127.0.0.2", ["10.1.1.1, "], "10.1.1.1"),
    ],
)
def test_client_ip(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_ip(peer, forwarded, TRUSTED) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_ip("127.0.0.2", ["10.1.1.1"], NetworkSet([])) == "127.0.0.2"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10.0.0.1/8", "'10.0.0.1/8' has host bits set: the network is 10.0.0.0/8"),
        ("2001:db8::1/32", "has host bits set: the network is 2001:db8::/32"),
        ("10.0.0.0/33", "is not an IP address or CIDR"),
        ("example.com", "is not an IP address or CIDR"),
        ("", "empty"),
    ],
)
def test_bad_networks_are_named(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_network(value)


def test_a_network_set_matches_what_the_networks_hold() -> None:
    networks = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.7", "2001:db8::/32", "::1"]
    found = NetworkSet.parse(networks)
    parsed = [ipaddress.ip_network(n) for n in networks]
    for text in [
        "10.0.0.0",
        "10.255.255.255",
        "11.0.0.0",
        "9.255.255.255",
        "192.0.2.6",
        "192.0.2.7",
        "192.0.2.8",
        "2001:db8::",
        "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db9::",
        "::1",
        "::2",
    ]:
        address = parse_address(text)
        assert address is not None
        assert (address in found) == any(address in n for n in parsed), text
    assert "10.0.0.1" not in found  # a string is not an address

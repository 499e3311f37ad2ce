"""Which network addresses a user-supplied URL may reach (no SSRF): public unicast only, unless an operator trusts more."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 prefixes whose last 32 bits are an IPv4 address a packet may be delivered to (a dual-stack socket, a
# NAT64 gateway, SIIT): that IPv4 address is the one to judge, not the IPv6 wrapper, which looks global.
IPV4_IN_LAST_32_BITS = {
    ipaddress.IPv6Network("::ffff:0:0/96"): "IPv4-mapped",  # RFC 4291
    ipaddress.IPv6Network("::ffff:0:0:0/96"): "IPv4-translated",  # RFC 2765 (SIIT)
    ipaddress.IPv6Network("64:ff9b::/96"): "NAT64",  # RFC 6052, the well-known prefix
    ipaddress.IPv6Network("::/96"): "IPv4-compatible",  # RFC 4291, deprecated
}
# RFC 8215: each network chooses where its local NAT64 prefix puts the IPv4 address, and it translates into
# that network itself, so nothing under it can be unwrapped with confidence.
LOCAL_USE_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Networks from their spellings ("10.0.0.0/8"), as PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS lists them."""
    return [ipaddress.ip_network(value) for value in values]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and a packet to it may reach: the last 32 bits under the
    prefixes above, the gateway of a 6to4 address (2002::/16), a Teredo address's server and client (2001::/32)."""
    if address in (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")):
        return []  # unspecified and loopback, not IPv4-compatible spellings of 0.0.0.0 and 0.0.0.1
    for network in IPV4_IN_LAST_32_BITS:
        if address in network:
            return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def address_problem(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why we refuse to connect to `address`, or None when it is a public unicast address or in `allowed`
    (extra networks an operator trusts, e.g. an intranet image library)."""
    if any(address in network for network in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address in LOCAL_USE_NAT64:
            return "points at a local-use NAT64 prefix (a translator into a private network)"
        embedded = embedded_ipv4(address)
        for ipv4 in embedded:
            problem = address_problem(ipv4, allowed)
            if problem:
                return problem
        if embedded and address in IPV4_COMPATIBLE:
            return "is an IPv4-compatible IPv6 address (deprecated; no public server answers there)"
        if embedded:
            return None  # a transition wrapper around public IPv4 addresses: the IPv4 side decides
    if address.is_loopback:
        return "points at this server (loopback)"
    if address.is_link_local:
        return "points at a link-local address (such as a cloud metadata service)"
    if address.is_multicast:
        return "points at a multicast address"
    if address.is_private or not address.is_global:
        return "points at a private or reserved network address"
    return None

"""Which network addresses a user-supplied URL may reach (no SSRF): public unicast only, unless an operator trusts more."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """Networks from their spellings ("10.0.0.0/8"), as PIXELMILL_URL_IMPORT_ALLOWED_NETWORKS lists them."""
    return [ipaddress.ip_network(value) for value in values]


def address_problem(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why we refuse to connect to `address`, or None when it is a public unicast address or in `allowed`
    (extra networks an operator trusts, e.g. an intranet image library)."""
    if any(address in network for network in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None:
            return address_problem(embedded, allowed)
    if address.is_loopback:
        return "points at this server (loopback)"
    if address.is_link_local:
        return "points at a link-local address (such as a cloud metadata service)"
    if address.is_multicast:
        return "points at a multicast address"
    if address.is_private or not address.is_global:
        return "points at a private or reserved network address"
    return None

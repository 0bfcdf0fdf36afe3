"""The client's address, also behind a reverse proxy (`server.trusted_proxies`).

Behind nginx or HAProxy every client has the proxy's address, so the failed-login throttle
(per address) locked a whole team out after one person's typos, and logs named only the
proxy. For a peer in `server.trusted_proxies`, the client is the rightmost hop of
`X-Forwarded-For` that is not itself a trusted proxy: the address the outermost trusted
proxy saw. Hops further left were written by the client and prove nothing. Any other peer
is its own address and its `X-Forwarded-For` is ignored, so a client cannot choose the
address it is throttled and logged under.

Example:
    >>> addresses = ClientAddresses(["10.0.0.0/8"])
    >>> addresses.of(("10.0.0.5", 443), ["198.51.100.9, 203.0.113.7"])
    '203.0.113.7'
    >>> addresses.of(("192.0.2.1", 443), ["203.0.113.7"])
    '192.0.2.1'
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Sequence

__all__ = ["ClientAddresses"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse(text: str) -> Address | None:
    """An IP address (an IPv4-mapped IPv6 one as its IPv4 address), or None."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _in(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


class ClientAddresses:
    """Who a connection's client is, from its peer and (when the peer is trusted) the
    handshake's `X-Forwarded-For` headers."""

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._trusted = [ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies]

    def of(self, peer: Any, forwarded_for: Sequence[str]) -> str:
        """The client's address as text ("unknown" without a peer).

        Args:
            peer: the socket's remote address (host, port, ...).
            forwarded_for: every `X-Forwarded-For` header of the handshake, in order.
        """
        if not peer:
            return "unknown"
        address = str(peer[0])
        if not self._trusted or not forwarded_for:
            return address
        parsed = _parse(address)
        if parsed is None or not _in(parsed, self._trusted):
            return address
        hops = [hop for header in forwarded_for for hop in header.split(",")]
        for hop in reversed(hops):
            parsed = _parse(hop)
            if parsed is None:
                return address   # not an address: the hop to its right is the last one known
            address = str(parsed)
            if not _in(parsed, self._trusted):
                return address
        return address   # every hop a trusted proxy: the leftmost

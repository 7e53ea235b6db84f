"""The SSRF guard: which addresses a source may connect to.

A request is refused when the address it would connect to is not a public unicast
address: loopback, private, link-local, CGNAT, multicast, unspecified, broadcast,
reserved, documentation or benchmarking ranges (the IANA special-purpose address
registries, RFC 6890 and successors), and IPv6 forms that carry such an IPv4
address (IPv4-mapped, IPv4-compatible, 6to4, Teredo, NAT64). The tables below are
explicit, rather than ``ipaddress``' ``is_private``/``is_global``, whose answers
change between Python releases.

The check runs where the connection is made, never before: ``GuardedResolver``
filters the answers of the DNS lookup aiohttp's connector is about to connect to
(so a second lookup cannot answer differently), and ``guarded_socket_factory`` checks
the address of every socket the connector opens (literal IP hosts skip DNS). Every
redirect hop goes through the same connector, so through the same checks.

An operator opts in with ``allow_private_network``: ``true`` allows every address,
a list of networks (``["10.1.0.0/16"]``) allows non-public addresses inside them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp.abc import AbstractResolver, ResolveResult
from pydantic import PlainValidator

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# What ``allow_private_network`` holds: a switch, or the networks it opens.
AllowPrivateNetwork = bool | tuple[IPNetwork, ...]


def parse_allow_private_network(value: Any) -> AllowPrivateNetwork:
    """``true``/``false``, or a list of networks (``["10.1.0.0/16", "fd00::/8"]``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        try:
            return tuple(ipaddress.ip_network(v) for v in value)
        except ValueError as exc:
            raise ValueError(f"not a network: {exc}") from None
    raise ValueError('expected true, false or a list of networks such as ["10.1.0.0/16"]')


# The config key, validated by ``parse_allow_private_network``.
AllowPrivateNetworkOption = Annotated[
    AllowPrivateNetwork, PlainValidator(parse_allow_private_network)
]


def _table(*rows: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), reason) for net, reason in rows)


# IANA IPv4 Special-Purpose Address Registry; order matters (first match names it).
IPV4_REFUSED = _table(
    ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "CGNAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # cloud metadata services live here
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
)

# IANA IPv6 Special-Purpose Address Registry, after the IPv4-carrying forms.
IPV6_REFUSED = _table(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),  # NAT64 local-use prefix (RFC 8215)
    ("100::/64", "reserved"),  # discard-only
    ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo is handled before)
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "reserved"),  # SRv6 SIDs
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # deprecated site-local
    ("ff00::/8", "multicast"),
)
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and the form that carries it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    if address.teredo is not None:
        return address.teredo[1], "Teredo"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "IPv4-compatible"
    return None


def classify(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or ``None`` when it is."""
    if isinstance(address, ipaddress.IPv4Address):
        return _first(address, IPV4_REFUSED)
    carried = embedded_ipv4(address)
    if carried is not None:
        inner, form = carried
        reason = classify(inner)
        return f"{form} {reason}" if reason else None
    reason = _first(address, IPV6_REFUSED)
    if reason is None and address not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return reason


def _first(address: IPAddress, table: Sequence[tuple[IPNetwork, str]]) -> str | None:
    for network, reason in table:
        if address.version == network.version and address in network:
            return reason
    return None


def parse_address(text: str) -> IPAddress:
    """An address as sockets and resolvers write it (IPv6 may carry ``%scope``)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Where one source may connect: public addresses, plus what it opted in to."""

    allow: AllowPrivateNetwork = False

    def refusal(self, text: str) -> str | None:
        """Why connecting to the address ``text`` is refused, or ``None``."""
        if self.allow is True:
            return None
        address = parse_address(text)
        reason = classify(address)
        if reason is None or (self.allow and self._opened(address)):
            return None
        return reason

    def _opened(self, address: IPAddress) -> bool:
        assert not isinstance(self.allow, bool)
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and (carried := embedded_ipv4(address)):
            candidates.append(carried[0])
        return any(a.version == net.version and a in net for a in candidates for net in self.allow)


class Refused(OSError):
    """Raised inside the connector when the guard refuses an address; ``HttpClient``
    turns it into ``alerts.errors.AddressRefused`` with the request's host."""

    def __init__(self, host: str | None, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        super().__init__(f"refused to connect to {host or address} ({address}, {reason})")


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` and keeps only the answers ``policy`` allows; none left
    raises ``Refused``. The connector connects to exactly these answers."""

    def __init__(self, inner: AbstractResolver, policy: NetworkPolicy) -> None:
        self._inner = inner
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if self._policy.refusal(a["host"]) is None]
        if not allowed and answers:
            first = answers[0]["host"]
            raise Refused(host, first, self._policy.refusal(first) or "refused")
        return allowed

    async def close(self) -> None:
        """The inner resolver is shared and closed by its owner."""


SocketFactory = Callable[[Any], socket.socket]


def guarded_socket_factory(policy: NetworkPolicy) -> SocketFactory:
    """A connector ``socket_factory`` that refuses to open a socket towards an
    address ``policy`` refuses: the last check, right before ``connect``."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        reason = policy.refusal(str(sockaddr[0]))
        if reason is not None:
            raise Refused(None, str(sockaddr[0]), reason)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory

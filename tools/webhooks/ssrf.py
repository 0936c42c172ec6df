"""SSRF defence for outbound webhooks: vet every address a URL resolves to, then connect
only to those addresses.

:func:`vet_url` resolves the host (all addresses, via ``getaddrinfo`` or an injected
resolver) and refuses the URL if ANY address is internal: loopback, private, link-local,
multicast, unspecified, reserved, CGNAT, documentation ranges, cloud metadata endpoints,
and IPv6 forms that embed such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64,
6to4, Teredo). Numeric host spellings that ``inet_aton`` accepts (``2130706433``,
``0x7f000001``, ``0177.0.0.1``, ``127.1``) are treated as the address they denote,
because that is where a socket would go.

:class:`PinnedResolver` then hands aiohttp exactly the vetted addresses, so there is no
second DNS lookup that a rebinding attacker could answer differently. The URL keeps its
host name, so the ``Host`` header, TLS SNI and certificate verification use it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from tools.errors import ToolFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: (host, port) -> every address the host resolves to.
Resolve = Callable[[str, int], Awaitable[list[str]]]

TOOL = "webhooks.deliver"

#: Metadata endpoints of cloud providers: never reachable through a broad allowlist
#: entry, only through one naming exactly that address.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)

_BLOCKED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "unspecified / this-network"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique local (ULA)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPAT = ipaddress.ip_network("::/96")


class WebhookBlocked(ToolFailed):
    """The URL is refused: bad scheme, or an address it resolves to is internal."""

    def __init__(self, message: str) -> None:
        super().__init__(message, tool=TOOL)


def parse_ip(host: str) -> IPAddress | None:
    """The address a numeric host denotes, in any spelling a socket accepts, or None."""
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if ":" in bare or not bare or not all(c.isalnum() or c == "." for c in bare):
        return None
    try:
        # inet_aton accepts the legacy forms: decimal, hex, octal, 127.1 shorthands.
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except OSError:
        return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> list[tuple[ipaddress.IPv4Address, str]]:
    found: list[tuple[ipaddress.IPv4Address, str]] = []
    if ip.ipv4_mapped is not None:
        found.append((ip.ipv4_mapped, "IPv4-mapped"))
    if ip in _NAT64:
        found.append((ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"))
    if ip in _V4_COMPAT and int(ip) > 1:
        found.append((ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "IPv4-compatible"))
    if ip.sixtofour is not None:
        found.append((ip.sixtofour, "6to4"))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [(server, "Teredo server"), (client, "Teredo client")]
    return found


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is internal (``None`` if it is a public unicast address)."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata endpoint"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        for inner, form in _embedded_v4(ip):
            reason = blocked_reason(inner)
            if reason is not None:
                return f"{form} {reason}"
    for net, reason in _BLOCKED:
        if ip.version == net.version and ip in net:
            return reason
    if not ip.is_global:
        return "not globally routable"
    return None


def check_address(ip: IPAddress, allowed: Sequence[IPNetwork] = ()) -> None:
    """Raise :class:`WebhookBlocked` unless ``ip`` is public or explicitly allowed.

    An allowed range lifts every refusal except for metadata endpoints, which need an
    allowlist entry of exactly that one address.
    """
    reason = blocked_reason(ip)
    if reason is None:
        return
    for net in allowed:
        if ip.version != net.version or ip not in net:
            continue
        if ip in METADATA_ADDRESSES and net.num_addresses != 1:
            continue
        return
    raise WebhookBlocked(f"refusing to connect to {ip}: {reason}")


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` returns for ``host`` (TCP), deduplicated in order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class VettedTarget:
    """A URL whose host resolved only to permitted addresses."""

    url: URL
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$")


def parse_target(url: str | URL) -> URL:
    """``url`` parsed exactly as delivery will use it; :class:`WebhookBlocked` (naming
    no credential) unless it is an http(s) URL with a well-formed host and port.

    The configuration loader calls this too, so that a URL the delivery path would
    refuse is refused when the configuration is loaded, not when an event arrives.
    """
    try:
        target = URL(url) if isinstance(url, str) else url
        host, port, scheme = target.host, target.port, target.scheme
    except (ValueError, TypeError) as exc:
        # yarl's message quotes the offending part, which may be a credential.
        reason = str(exc).split(":", 1)[-1].strip() if "backslash" in str(exc) else "malformed"
        raise WebhookBlocked(f"not a valid URL ({reason[:120]})") from None
    if scheme not in ("http", "https"):
        raise WebhookBlocked(f"scheme {scheme!r} is not allowed; use http or https")
    if not host or port is None:
        raise WebhookBlocked("the URL has no host")
    if parse_ip(host) is None and not _HOSTNAME.match(target.raw_host or ""):
        raise WebhookBlocked("the URL's host is not a valid host name or address")
    if not 0 < port < 65536:
        raise WebhookBlocked(f"port {port} is out of range")
    return target


async def vet_url(
    url: str | URL,
    allowed: Sequence[IPNetwork] = (),
    *,
    resolve: Resolve = system_resolve,
) -> VettedTarget:
    """Resolve and vet ``url``; raises :class:`WebhookBlocked` (permanent) for refused
    URLs and ``OSError`` (transient) when the name does not resolve."""
    target = parse_target(url)
    host = target.host
    assert host is not None and target.port is not None  # checked by parse_target
    literal = parse_ip(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        answers = await resolve(host.rstrip("."), target.port)
        if not answers:
            raise OSError(f"{host} resolved to no address")
        addresses = []
        for answer in answers:
            parsed = parse_ip(answer)
            if parsed is None:
                raise WebhookBlocked(f"resolver returned a non-address {answer!r} for {host}")
            addresses.append(parsed)
    # Refuse if ANY address is internal: a client might pick any of them.
    for address in addresses:
        check_address(address, allowed)
    return VettedTarget(target, host, target.port, tuple(dict.fromkeys(addresses)))


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that answers only for the vetted host, with its vetted
    addresses; any other name (or a second host via redirect) is refused."""

    def __init__(self, target: VettedTarget) -> None:
        self._target = target

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        """The vetted addresses of the pinned host."""
        if host.rstrip(".").lower() != self._target.host.rstrip(".").lower():
            raise OSError(f"{host} is not the vetted host {self._target.host}")
        results: list[ResolveResult] = []
        for ip in self._target.addresses:
            fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            if family not in (socket.AF_UNSPEC, fam):
                continue
            results.append(
                {
                    "hostname": host,
                    "host": str(ip),
                    "port": port,
                    "family": fam,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            raise OSError(f"no vetted address of family {family!r} for {host}")
        return results

    async def close(self) -> None:
        """Nothing to release."""


def pinned_request_url(target: VettedTarget) -> URL:
    """The URL to request: for numeric hosts in legacy spellings, the canonical address
    (aiohttp refuses those spellings); otherwise the original URL."""
    literal = parse_ip(target.host)
    if literal is None or literal.version == 6 or str(literal) == target.host:
        return target.url
    return target.url.with_host(str(literal))

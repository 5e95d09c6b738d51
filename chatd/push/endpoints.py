"""Which push endpoints a subscription may name.

A subscription makes the node send HTTP requests to a URL a user chose, so the URL must not
turn the node into a request forger against its own network: https only (http with
--push-allow-http, for tests), and a host whose every address is public (private, loopback,
link-local and reserved ones with --push-allow-private, for tests). The name is resolved
again before pushes (an answer is used for RESOLVE_TTL seconds) and every request goes to an
address that was checked, so a name that resolves elsewhere later (DNS rebinding) cannot
reach what the first check refused.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThread

MAX_ENDPOINT = 2048
RESOLVE_TTL = 10.0  # seconds an answer of the resolver is used for pushes
MAX_NAMES = 10_000  # names remembered before the memory starts again


class EndpointRefused(Exception):
    """The endpoint may not be used; the text says why (for the log)."""


@dataclass(frozen=True)
class EndpointPolicy:
    allow_http: bool = False
    allow_private: bool = False


@dataclass(frozen=True)
class Target:
    """A checked endpoint: the URL's parts and the address the request goes to."""
    scheme: str
    host: str
    port: int
    address: str


def parse(url: str, policy: EndpointPolicy) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL; EndpointRefused otherwise."""
    if len(url) > MAX_ENDPOINT:
        raise EndpointRefused("endpoint too long")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise EndpointRefused(f"not a URL: {e}") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise EndpointRefused(f"scheme {parts.scheme!r} not allowed")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise EndpointRefused("no host, or credentials in the URL")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def allowed_address(address: str, policy: EndpointPolicy) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return policy.allow_private or (ip.is_global and not ip.is_multicast)


def _resolve(host: str, port: int) -> list[str]:
    """Blocking getaddrinfo: called on a thread."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise EndpointRefused(f"host {host!r} does not resolve: {e}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Resolver:
    """Names resolved off the reactor thread, each answer kept for `ttl` seconds: a push
    service's host is looked up once per few seconds, not once per push."""

    def __init__(self, clock: IReactorTime, ttl: float = RESOLVE_TTL) -> None:
        self.clock = clock
        self.ttl = ttl
        self._answers: dict[tuple[str, int], tuple[list[str], float]] = {}

    async def resolve(self, host: str, port: int) -> list[str]:
        now = self.clock.seconds()
        known = self._answers.get((host, port))
        if known is not None and known[1] > now:
            return known[0]
        addresses = await deferToThread(_resolve, host, port)
        if len(self._answers) >= MAX_NAMES:
            self._answers.clear()
        self._answers[(host, port)] = (addresses, now + self.ttl)
        return addresses


async def check(url: str, policy: EndpointPolicy, resolver: Resolver | None = None) -> Target:
    """Resolve the URL's host off the reactor thread and check every address it has; the
    target is the first one. EndpointRefused when any address, or the URL, is not allowed."""
    scheme, host, port = parse(url, policy)
    if resolver is None:
        addresses = await deferToThread(_resolve, host, port)
    else:
        addresses = await resolver.resolve(host, port)
    refused = [a for a in addresses if not allowed_address(a, policy)]
    if refused or not addresses:
        raise EndpointRefused(f"host {host!r} resolves to non-public addresses {refused}")
    return Target(scheme, host, port, addresses[0])

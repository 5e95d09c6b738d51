"""One POST to a checked endpoint with Twisted's HTTP client (never a blocking call on the
reactor), connecting to the address that was checked rather than resolving the name again."""

import ipaddress
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import optionsForClientTLS
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from chatd.push.endpoints import Target

DEFAULT_TIMEOUT = 10.0  # seconds for connecting, and for the whole answer
MAX_ANSWER = 65536  # bytes of an answer's body that are read


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Headers
    body: bytes


@implementer(IAgentEndpointFactory)
class _Pinned:
    """Endpoints to the checked address; TLS verifies the URL's host name."""

    def __init__(self, reactor: Any, target: Target, timeout: float) -> None:
        self.reactor, self.target, self.timeout = reactor, target, timeout

    def endpointForURI(self, uri: Any) -> Any:
        t = self.target
        kind = (TCP6ClientEndpoint if ipaddress.ip_address(t.address).version == 6
                else TCP4ClientEndpoint)
        endpoint = kind(self.reactor, t.address, t.port, timeout=self.timeout)
        if t.scheme == "https":
            return wrapClientTLS(optionsForClientTLS(t.host), endpoint)
        return endpoint


class Poster:
    """POSTs with a shared connection pool (connections to a push service are reused)."""

    def __init__(self, reactor: Any, timeout: float = DEFAULT_TIMEOUT,
                 connections: int = 8) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = connections  # as many as pushes in flight
        self._inflight: set[Deferred[Any]] = set()

    async def post(self, target: Target, url: str, headers: dict[str, str],
                   body: bytes) -> Answer:
        """The answer, or an exception (connection refused, timed out, TLS)."""
        agent = Agent.usingEndpointFactory(self.reactor, _Pinned(self.reactor, target,
                                                                 self.timeout), self.pool)
        request = agent.request(
            b"POST", url.encode(), Headers({k.encode(): [v.encode()] for k, v in headers.items()}),
            FileBodyProducer(BytesIO(body)))
        response = await self._bounded(request)
        data = await self._bounded(readBody(response))
        return Answer(response.code, response.headers, data[:MAX_ANSWER])

    async def _bounded(self, d: Deferred[Any]) -> Any:
        """`d` within the timeout, and cancelled if the node stops meanwhile."""
        d.addTimeout(self.timeout, self.reactor)
        self._inflight.add(d)
        try:
            return await d
        finally:
            self._inflight.discard(d)

    async def close(self) -> None:
        """Abort the requests in flight and close the idle connections."""
        for d in list(self._inflight):
            d.cancel()
        await self.pool.closeCachedConnections()

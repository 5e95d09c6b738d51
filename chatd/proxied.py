"""Nodes behind nginx's `proxy_protocol on;`: a listener string `haproxy:ENDPOINT` reads the
PROXY header before the chat protocol starts, so that per-address limits and logs see the
client's address, not nginx's.

Twisted's own `haproxy:` endpoint starts the wrapped protocol when the TCP connection opens,
before the header has arrived, when `getPeer()` still names nginx; this wrapper starts it
once the header has been read.
"""

from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.haproxy._wrapper import HAProxyProtocolWrapper, HAProxyWrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from chatd.sendnow import write_now

PREFIX = "haproxy:"


class _Early(Protocol):
    """Keeps the bytes that followed the header in the same read."""

    def __init__(self) -> None:
        self.data = b""

    def dataReceived(self, data: bytes) -> None:
        self.data += data


class HeaderFirst(HAProxyProtocolWrapper):
    """The PROXY protocol wrapper that connects the wrapped protocol after the header."""

    started = False

    def makeConnection(self, transport: Any) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    def dataReceived(self, data: bytes) -> None:
        if self.started:
            self.wrappedProtocol.dataReceived(data)
            return
        wrapped, early = self.wrappedProtocol, _Early()
        self.wrappedProtocol = early
        super().dataReceived(data)
        self.wrappedProtocol = wrapped
        if self._proxyInfo is not None:
            self.started = True
            wrapped.makeConnection(self)
            if early.data:
                wrapped.dataReceived(early.data)

    def send_now(self, data: bytes) -> None:
        """Straight to the socket when it can take it, as on a listener without the header
        (chatd/sendnow.py)."""
        write_now(self.transport, data)

    def connectionLost(self, reason: Failure) -> None:
        if self.started:
            super().connectionLost(reason)
        else:
            self.factory.unregisterProtocol(self)


class HeaderFirstFactory(HAProxyWrappingFactory):
    protocol = HeaderFirst

    def buildProtocol(self, addr: Any) -> HeaderFirst | None:
        """None when the wrapped factory refuses the connection at accept."""
        wrapped = self.wrappedFactory.buildProtocol(addr)
        return None if wrapped is None else self.protocol(self, wrapped)


def listening(reactor: Any, description: str, factory: Factory
              ) -> tuple[IStreamServerEndpoint, Factory]:
    """The endpoint and factory for a listener string, unwrapping `haproxy:`."""
    if description.startswith(PREFIX):
        return (serverFromString(reactor, description[len(PREFIX):]),
                HeaderFirstFactory(factory))
    return serverFromString(reactor, description), factory

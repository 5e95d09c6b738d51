"""One connection to the --web listener: twisted.web's HTTPChannel held to the chat port's
standard. It is counted in the node's Connections from the moment it opens to the moment it
closes, a WebSocket upgrade included (one connection, one count), under the client's
address (the one a trusted proxy names, behind nginx); its headers must be complete within
--web-header-timeout, a request body must keep up a floor rate, and the request line, the
headers and the bodies in flight per address are bounded. Past a limit the connection gets
a short plain-text answer (408, 414, 429, 431 or 503) and is closed.
"""

from dataclasses import dataclass
from http import HTTPStatus

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress, IDelayedCall, IProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request

from chatd.connections import WEB, host

log = Logger()

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 60.0
# A phone on a bad 2G link still sends a few kilobytes a second; a slow-POST attacker sends
# a byte now and then to keep a connection and an upload slot.
DEFAULT_BODY_RATE = 500
DEFAULT_BODY_WINDOW = 20.0
DEFAULT_MAX_REQUEST_LINE = 8192
DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_HEADER_SIZE = 16384
DEFAULT_MAX_UPLOADS_PER_ADDRESS = 20

# No inline script or style, nothing from another site, no framing: a message that slips
# through as HTML still runs nothing.
HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                b"img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
}


@dataclass(frozen=True)
class WebLimits:
    """The --web-* limits of one listener (docs/security.md)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    body_rate: int = DEFAULT_BODY_RATE
    body_window: float = DEFAULT_BODY_WINDOW
    max_request_line: int = DEFAULT_MAX_REQUEST_LINE
    max_headers: int = DEFAULT_MAX_HEADERS
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    max_uploads_per_address: int = DEFAULT_MAX_UPLOADS_PER_ADDRESS


class WebChannel(HTTPChannel):
    """HTTP/1.1 on one connection of the web listener (`site` is a chatd.web.site.WebSite).

    The idle timeout of a keep-alive connection is twisted.web's own (`timeOut`, restarted
    by every byte); the header deadline is not restarted by bytes, so that a header line a
    byte at a time cannot hold the connection. Twisted answers a header section over
    `totalHeadersSize` or `maxHeaders` with 400 itself."""

    client: IAddress  # the browser's address: the peer's, or the one a trusted proxy named
    address: str | None = None  # what per_address counts this connection under
    upload: str | None = None  # the address whose upload slot this request's body holds
    _proxied = False
    _refused = False
    _refused_at_open = False
    _between = False  # a request was answered; the next one's deadline starts with a byte
    _head_timer: IDelayedCall | None = None
    _body_timer: IDelayedCall | None = None
    _body_bytes = 0
    _upgraded: IProtocol | None = None

    def connectionMade(self) -> None:
        site = self.site
        limits: WebLimits = site.limits
        self.MAX_LENGTH = limits.max_request_line
        self.maxHeaders = limits.max_headers
        self.totalHeadersSize = limits.max_header_size
        super().connectionMade()
        self.client = self.transport.getPeer()
        peer = host(self.client)
        connections = site.connections
        room = connections.opened(WEB)
        self._proxied = peer in site.trusted_proxies
        welcome = True
        if not self._proxied:  # behind a proxy the client is known once its headers came
            self.address = peer
            welcome = connections.per_address.admit(peer)
        if not room:
            self.refuse(503, "node_full", "the node is full, retry later", at_open=True)
        elif not welcome:
            self.refuse(429, "per_address", "too many connections from this address",
                        at_open=True)
        else:
            self._head_timer = self.callLater(limits.header_timeout, self._head_too_slow)

    def refuse(self, code: int, reason: str, text: str, at_open: bool = False,
               content_type: bytes = b"text/plain; charset=utf-8") -> None:
        """Answer `code` with `text` and close: a defence stopped this connection (counted
        under `reason` for /metrics; `at_open`: as it opened). Nothing the client sends
        after it is read."""
        if self._refused:
            return
        self._refused = True
        self._refused_at_open = at_open
        self._stop_timers()
        self.site.connections.refuse(WEB, reason, at_open)
        log.info("web: {code} to {addr} ({reason})", code=code,
                 addr=self.address or host(self.client), reason=reason)
        body = text.encode() + b"\n"
        head = [f"HTTP/1.1 {code} {HTTPStatus(code).phrase}".encode(),
                b"Content-Type: " + content_type,
                b"Content-Length: %d" % len(body), b"Connection: close",
                *(name + b": " + value for name, value in HEADERS.items())]
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        self.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._between:
            self._between = False
            self._head_timer = self.callLater(self.site.limits.header_timeout,
                                              self._head_too_slow)
        super().dataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line past --web-max-request-line: the request line (no request yet: the ones
        before it on this connection are answered and gone) or one header line."""
        if not self.requests:
            self.refuse(414, "too_long", "request line too long")
        else:
            self.refuse(431, "too_long", "header line too long")

    def allHeadersReceived(self) -> None:
        self._cancel("_head_timer")
        self._between = False
        request = self.requests[-1]
        if self._proxied and not self._name_client(request):
            return
        if self.length != 0 and not self._start_body():
            return
        super().allHeadersReceived()

    def _name_client(self, request: Request) -> bool:
        """A trusted proxy (nginx) names the browser in X-Real-IP: from this request on the
        connection counts under that address (a proxy may carry another browser's request
        next on the same connection); without the header, under the proxy's."""
        named = request.getHeader("x-real-ip")
        if named:
            self.client = IPv4Address("TCP", named.strip(), 0)
        address = host(self.client)
        if address == self.address:
            return True
        per_address = self.site.connections.per_address
        if self.address is not None:
            per_address.release(self.address)
        self.address = address
        if per_address.admit(address):
            return True
        self.refuse(429, "per_address", "too many connections from this address")
        return False

    def _start_body(self) -> bool:
        """A request with a body takes one of its address's upload slots until the body is
        in, and must bring body_rate x body_window bytes in every window."""
        self.upload = self.address
        if not self.site.uploads.admit(self.upload):
            self.refuse(429, "uploads", "too many uploads from this address")
            return False
        self._body_bytes = 0
        self._body_timer = self.callLater(self.site.limits.body_window, self._check_body)
        return True

    def rawDataReceived(self, data: bytes) -> None:
        if self._body_timer is not None:
            self._body_bytes += len(data)
        super().rawDataReceived(data)

    def _check_body(self) -> None:
        limits: WebLimits = self.site.limits
        self._body_timer = None
        if self._body_bytes < limits.body_rate * limits.body_window:
            self.refuse(408, "slow_body",
                        f"request body slower than {limits.body_rate} bytes a second")
            return
        self._body_bytes = 0
        self._body_timer = self.callLater(limits.body_window, self._check_body)

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._cancel("_body_timer")
        self._end_upload()
        super().allContentReceived()

    def _end_upload(self) -> None:
        if self.upload is not None:
            self.site.uploads.release(self.upload)
            self.upload = None

    def requestDone(self, request: Request) -> None:
        self._between = True
        super().requestDone(request)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        self.refuse(408, "header_timeout", "request headers took too long")

    def upgrade(self, protocol: IProtocol) -> None:
        """Hand the connection to `protocol` (a WebSocket session): its bytes go straight
        to it from now on, and it stays counted under its address until it closes."""
        self.dataReceived = protocol.dataReceived  # type: ignore[method-assign]
        self._upgraded = protocol
        protocol.makeConnection(self.transport)

    def connectionLost(self, reason: Failure) -> None:
        self._stop_timers()
        connections = self.site.connections
        connections.closed(WEB, self._refused_at_open)
        if self.address is not None:
            connections.per_address.release(self.address)
        self._end_upload()
        if self._upgraded is not None:
            self._upgraded.connectionLost(reason)
        super().connectionLost(reason)

    def _stop_timers(self) -> None:
        self._cancel("_head_timer")
        self._cancel("_body_timer")

    def _cancel(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            if timer.active():
                timer.cancel()
            setattr(self, name, None)

"""The twisted.web tree of `--web`: the web client's static files at /, the wire table they
import at /wire.js (chatd.web.wiretable) and the chat WebSocket at /ws, with security headers
on every response; each connection is a chatd.web.channel.WebChannel."""

import os
from urllib.parse import urlsplit

from twisted.internet.interfaces import IAddress
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.static import File
from wsproto import ConnectionType
from wsproto.events import AcceptConnection
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError

from chatd.connections import WEB, AddressCount, Connections, host
from chatd.handlers.media import Media
from chatd.protocol import ChatFactory
from chatd.web import wiretable
from chatd.web.channel import HEADERS, WebChannel, WebLimits
from chatd.web.export import Exporter, ExportResource
from chatd.web.media import DownloadResource, MediaRequest
from chatd.web.pacing import MediaPacer
from chatd.web.socket import ChatSocket

STATIC = os.path.join(os.path.dirname(__file__), "static")


class ChatSocketResource(Resource):
    """/ws. The Origin is checked before the upgrade, so another site cannot open a session
    with a user's browser. A client that sends no Origin is no browser and carries no one
    else's credentials: it may connect.

    The upgrade is wsproto's handshake, as in twisted.web.websocket.WebSocketResource; the
    frames after it are read by ChatSocket, not by wsproto (see chatd.web.frames)."""

    def __init__(self, factory: ChatFactory, origins: frozenset[str]) -> None:
        super().__init__()
        self.chat_factory = factory
        self.origins = origins

    def render_GET(self, request: Request) -> bytes | int:
        origin = request.getHeader("origin")
        if origin is not None and not self.allowed(origin, request):
            request.setResponseCode(403)
            request.setHeader("content-type", "text/plain; charset=utf-8")
            return b"origin not allowed\n"
        return self.upgrade(request)

    def upgrade(self, request: Request) -> bytes | int:
        """wsproto's handshake answers the upgrade (or 400); then the connection's bytes go
        to a ChatSocket."""
        handshake = H11Handshake(ConnectionType.SERVER)
        headers = [(name, value) for name, values in request.requestHeaders.getAllRawHeaders()
                   for value in values]
        try:
            handshake.initiate_upgrade_connection(headers, request.path)
        except RemoteProtocolError:
            request.setResponseCode(400)
            request.setHeader("content-type", "text/plain")
            return b"websocket protocol negotiation error"
        channel: WebChannel = request.channel
        channel.transport.write(handshake.send(AcceptConnection()))
        channel.upgrade(ChatSocket(self.chat_factory, channel.client))
        return NOT_DONE_YET

    def allowed(self, origin: str, request: Request) -> bool:
        """In --web-origin, or (without it) the site's own host."""
        origin = origin.lower().rstrip("/")
        if self.origins:
            return origin in self.origins
        return urlsplit(origin).netloc == (request.getHeader("host") or "").lower()


class StaticFiles(File):
    """The web client: files only, no directory listings, JavaScript served as modules need."""

    contentTypes = {**File.contentTypes, ".js": "text/javascript; charset=utf-8",
                    ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8"}

    def directoryListing(self) -> Resource:
        return self.childNotFound


class ServiceWorker(Resource):
    """/sw.js, the web client's service worker (notifications.js registers it for the scope
    /): served fresh each time, so that a new version replaces the old one at once."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        with open(os.path.join(STATIC, "sw.js"), "rb") as f:  # once, before the reactor runs
            self.script = f.read()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader("content-type", "text/javascript; charset=utf-8")
        request.setHeader("service-worker-allowed", "/")
        request.setHeader("cache-control", "no-cache")
        return self.script


class WebSite(Site):
    """Sets the security headers on every response, errors included; its channels count
    their connections in the chat port's Connections (one count per address for both) and
    its upload slots per address in `uploads`."""

    protocol = WebChannel

    def __init__(self, root: Resource, connections: Connections,
                 trusted_proxies: frozenset[str], limits: WebLimits, pacer: MediaPacer,
                 media: Media | None = None) -> None:
        super().__init__(root, timeout=limits.idle_timeout, requestFactory=MediaRequest)
        self.media = media  # uploads and downloads at /media (chatd/web/media.py)
        self.pacer = pacer  # their bytes per reactor turn (chatd/web/pacing.py)
        self.connections = connections
        self.trusted_proxies = trusted_proxies
        self.limits = limits
        self.uploads = AddressCount(limits.max_uploads_per_address)

    def buildProtocol(self, addr: IAddress) -> WebChannel | None:
        """None (closed at accept, unanswered) in a flood of connections to refuse; behind
        a trusted proxy the client's address is not known yet."""
        peer = host(addr)
        if self.connections.drop(WEB, None if peer in self.trusted_proxies else peer):
            return None
        return super().buildProtocol(addr)

    def getResourceFor(self, request: Request) -> Resource:
        for name, value in HEADERS.items():
            request.setHeader(name, value)
        return super().getResourceFor(request)


def web_factory(chat: ChatFactory, origins: frozenset[str],
                trusted_proxies: frozenset[str] = frozenset(),
                limits: WebLimits | None = None, media: Media | None = None,
                export: Exporter | None = None) -> WebSite:
    """The factory for the --web listener; `origins` empty means the site's own origin;
    `trusted_proxies` are the addresses whose X-Real-IP header names the client; `limits`
    the --web-* limits (their defaults when None); `media` the node's attachments;
    `export` serves /export."""
    pacer = MediaPacer(chat.clock, chat.stats)
    root = StaticFiles(STATIC)
    root.putChild(wiretable.PATH, wiretable.WireModule())
    root.putChild(b"ws", ChatSocketResource(chat, origins))
    if media is not None:
        root.putChild(b"media", DownloadResource(media, pacer))
    if export is not None:
        root.putChild(b"export", ExportResource(export))
    root.putChild(b"sw.js", ServiceWorker())
    return WebSite(root, chat.connections, trusted_proxies, limits or WebLimits(), pacer, media)


def parse_origins(value: str) -> frozenset[str]:
    """--web-origin: comma-separated scheme://host[:port] origins; ValueError names a bad one."""
    origins = set()
    for item in filter(None, (part.strip() for part in value.split(","))):
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
            raise ValueError(f"not an origin (scheme://host[:port]): {item!r}")
        origins.add(item.lower().rstrip("/"))
    return frozenset(origins)

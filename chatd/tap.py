"""`twistd chatd`: command-line options and the service tree of one node."""

import os
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.python import usage

from chatd.bus import open_bus
from chatd.bus.redis import parse_redis_url
from chatd.conversations import Conversations
from chatd.history import DEFAULT_DAYS, HistoryWriter
from chatd.mids import MAX_NODE, MidGenerator
from chatd.passwords import DEFAULT_COST, MAX_COST, PasswordHasher
from chatd.protocol import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_FRAME, ChatFactory
from chatd.relations import Relations
from chatd.router import DEFAULT_ACK_TIMEOUT, Router
from chatd.service import ChatService
from chatd.store import Store, StoreUnavailable, open_store
from chatd.tokens import DEFAULT_LIFETIME
from chatd.web.site import parse_origins, web_factory

DEFAULT_DB = "sqlite:chatd.sqlite3"
# Twisted's default listen backlog of 50 makes a storm of thousands of (re)connecting clients
# wait for SYN retransmits (seconds each); the kernel caps this by net.core.somaxconn.
DEFAULT_BACKLOG = 1024


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run one chatd node: a WeChat-like chat server speaking JSON frames over TCP "
        "(docs/protocol.md). With no options it listens on tcp:6000 and keeps its data in the "
        "SQLite file chatd.sqlite3. Several nodes sharing one MySQL database and one Redis "
        "form a cluster.")
    optParameters = [
        ["listen", "l", "tcp:6000",
         "Twisted server endpoint to listen on, e.g. tcp:6000, "
         "tcp:6000:interface=127.0.0.1, ssl:6001:privateKey=key.pem, unix:/run/chatd.sock. "
         f"tcp, ssl and unix listeners get backlog={DEFAULT_BACKLOG} unless the string sets "
         "its own backlog."],
        ["db", None, None,
         "Database URL: sqlite:PATH or mysql://user:password@host:port/database "
         f"[env CHATD_DB; default {DEFAULT_DB}]. Missing tables are created at start."],
        ["redis", None, None,
         "Redis URL joining a cluster, e.g. redis://127.0.0.1:6379/0 (redis://:password@host"
         ":port/db with a password); empty runs the node alone [env CHATD_REDIS]. Every node "
         "of a cluster needs the same --db and --redis and its own --node-id."],
        ["node-id", None, 0, f"This node's number in the cluster, 0-{MAX_NODE}.", int],
        ["max-frame", None, DEFAULT_MAX_FRAME,
         "Largest accepted frame in bytes (1024-16777216); a longer one closes the connection.",
         int],
        ["password-cost", None, DEFAULT_COST,
         f"scrypt work factor as log2(n), 1-{MAX_COST}; each step doubles the time and memory of a "
         "login. Lower it only for tests and benchmarks.", int],
        ["idle-timeout", None, DEFAULT_IDLE_TIMEOUT,
         "Seconds of silence after which a proto-2 session is closed (5-3600).", float],
        ["token-lifetime", None, DEFAULT_LIFETIME,
         "Seconds a resume token is valid after it was issued (60-31536000); a proto-2 client "
         "logs in again with it without the password hash.", float],
        ["ack-timeout", None, DEFAULT_ACK_TIMEOUT,
         "Seconds a proto-2 client has to acknowledge a message before it is stored "
         "offline (1-600).", float],
        ["web", None, "",
         "Twisted server endpoint for the web client and its WebSocket (/ws), e.g. tcp:8080 or "
         "ssl:8443:privateKey=key.pem; empty (the default) serves no web."],
        ["web-origin", None, "",
         "Comma-separated origins (scheme://host[:port]) whose pages may open the WebSocket; "
         "empty (the default) allows only the site's own origin."],
        ["history-days", None, DEFAULT_DAYS,
         "Days every chat message is kept for HISTORY and SYNC (0-3650); 0 keeps none.", int],
    ]

    def postOptions(self) -> None:
        self["db"] = self["db"] or os.environ.get("CHATD_DB") or DEFAULT_DB
        self["redis"] = self["redis"] or os.environ.get("CHATD_REDIS") or ""
        if self["redis"]:
            try:
                parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        try:
            self["web-origin"] = parse_origins(self["web-origin"])
        except ValueError as e:
            raise usage.UsageError(f"--web-origin: {e}") from None
        _check_range("node-id", self["node-id"], 0, MAX_NODE)
        _check_range("max-frame", self["max-frame"], 1024, 16 * 1024 * 1024)
        _check_range("password-cost", self["password-cost"], 1, MAX_COST)
        _check_range("idle-timeout", self["idle-timeout"], 5, 3600)
        _check_range("ack-timeout", self["ack-timeout"], 1, 600)
        _check_range("token-lifetime", self["token-lifetime"], 60, 365 * 24 * 3600)
        _check_range("history-days", self["history-days"], 0, 3650)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise usage.UsageError(f"--{name} must be between {low} and {high}, not {value}")


class ChatNode(MultiService):
    """Starts the worker pools before listening and, on stop, ends every session (storing
    what was in flight) before the database pool closes."""

    def __init__(self, store: Store, hasher: PasswordHasher, router: Router,
                 history: HistoryWriter, factory: ChatFactory) -> None:
        super().__init__()
        self.store, self.hasher, self.router, self.factory = store, hasher, router, factory
        self.history = history

    def startService(self) -> None:
        self.hasher.start()
        self.router.start()
        self.history.start()
        super().startService()

    async def _stop(self) -> None:
        await super().stopService()
        for session in list(self.factory.sessions):
            self.factory.service.end(session)
            session.transport.loseConnection()
        await self.router.stop()
        await self.history.stop()
        self.hasher.stop()
        self.store.close()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())


class Listener(StreamServerEndpointService):
    """The listening port; failing to listen is one clear line and exit status 1."""

    _raiseSynchronously = True

    def __init__(self, description: str, factory: Factory, reactor: Any) -> None:
        super().__init__(serverFromString(reactor, with_backlog(description)), factory)
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(f"chatd: cannot listen on {self.description}: {e.socketError}"
                             ) from None


def with_backlog(description: str) -> str:
    """The endpoint string with DEFAULT_BACKLOG added where it takes one and sets none
    (haproxy: wraps another endpoint string, which gets it)."""
    kind = description.removeprefix("haproxy:").split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


def build_node(options: Options, reactor: Any) -> ChatNode:
    """The node without its listener; raises StoreUnavailable or ValueError for a bad --db."""
    store = open_store(options["db"])
    hasher = PasswordHasher(reactor, options["password-cost"])
    bus = open_bus(options["redis"], options["node-id"], reactor)
    router = Router(bus, store, reactor, options["ack-timeout"])
    history = HistoryWriter(store, reactor, options["history-days"])
    service = ChatService(store, router, hasher, MidGenerator(options["node-id"]), reactor,
                          history, options["token-lifetime"])
    more = {**Conversations(service).handlers(), **Relations(service).handlers()}
    factory = ChatFactory(service, reactor, options["max-frame"], options["idle-timeout"], more)
    return ChatNode(store, hasher, router, history, factory)


def makeService(options: Options) -> IService:
    """Build the node and its listener; exits with one clear line when --db is unusable."""
    from twisted.internet import reactor

    try:
        node = build_node(options, reactor)
    except (StoreUnavailable, ValueError) as e:
        raise SystemExit(f"chatd: {e}") from None
    try:
        Listener(options["listen"], node.factory, reactor).setServiceParent(node)
    except ValueError as e:
        raise SystemExit(f"chatd: bad --listen {options['listen']!r}: {e}") from None
    if options["web"]:
        site = web_factory(node.factory, options["web-origin"])
        try:
            Listener(options["web"], site, reactor).setServiceParent(node)
        except ValueError as e:
            raise SystemExit(f"chatd: bad --web {options['web']!r}: {e}") from None
    return node

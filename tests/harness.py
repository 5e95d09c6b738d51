"""Integration harness: a real chatd node in this process on a loopback port, and a wire client
that speaks to it over real TCP or over a real WebSocket."""

from dataclasses import replace
from typing import Any

import ujson
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater as _later
from twisted.trial.unittest import TestCase
from twisted.web.websocket import WebSocketClientEndpoint, WebSocketTransport

from chatd.messages import MsgId
from chatd.tap import ChatNode, Options, build_node, web_limits
from chatd.web.site import web_factory

WAIT = 5.0


class Node:
    """A started node; `port` is where clients connect."""

    def __init__(self, node: ChatNode, listener: Any, options: Options) -> None:
        self.node = node
        self.listener = listener
        self.options = options
        self.port: int = listener.getHost().port

    @property
    def context(self) -> Any:
        return self.node.context

    async def stop(self) -> None:
        await self.listener.stopListening()
        await self.node.stopService()


async def start_node(case: TestCase, db: str | None = None, *args: str) -> Node:
    """Start a node on SQLite in the test's temp dir (or on `db`), stopped at cleanup."""
    options = Options()
    options.parseOptions(["--db", db or f"sqlite:{case.mktemp()}.sqlite3",
                          "--password-cost", "1", *args])
    chat = build_node(options, reactor)
    chat.startService()
    listener = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(chat.factory)
    node = Node(chat, listener, options)
    case.addCleanup(node.stop)
    return node


class WebNode:
    """A node's --web listener: `connect` gives WebSocket clients for it."""

    def __init__(self, node: Node, listener: Any) -> None:
        self.node = node
        self.listener = listener
        self.port: int = listener.getHost().port
        self.url = f"http://127.0.0.1:{self.port}/"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    @property
    def context(self) -> Any:
        return self.node.context


async def serve_web(case: TestCase, node: Node, origins: frozenset[str] = frozenset(),
                    trusted_proxies: frozenset[str] = frozenset()) -> WebNode:
    """Add a web listener (static client, /ws and /media) to a started node, with the
    --web-* limits of its options; attachments' links point at it."""
    media = node.node.media
    listener = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        web_factory(node.node.factory, origins, trusted_proxies, web_limits(node.options),
                    media, node.context.account_data.export_by_token))
    case.addCleanup(listener.stopListening)
    web = WebNode(node, listener)
    media.limits = replace(media.limits, base_url=web.url.rstrip("/"))
    return web


class Client(Protocol):
    """A test client: sends frames, and waits for the frames a user would see."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.raw = b""
        self.closed: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[Any, defer.Deferred[dict[str, Any]]]] = []
        self.user_id: int | None = None
        self.auto_ack = False

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        *lines, self.raw = self.raw.split(b"\n")
        for line in lines:
            frame = ujson.loads(line)
            self.frames.append(frame)
            if self.auto_ack and frame.get("msgid") in (MsgId.ONE_CHAT, MsgId.GROUP_CHAT):
                self.send({"msgid": MsgId.RECV_ACK, "mid": frame["mid"]})
            elif self.auto_ack and frame.get("msgid") in (MsgId.RECALLED, MsgId.EDITED):
                self.send({"msgid": MsgId.RECV_ACK, "mid": frame["ack"]})
        self._match()

    def connectionLost(self, reason: Any) -> None:
        self.connected = False
        self.closed.callback(None)
        for _, d in self._waiting:
            d.errback(AssertionError(f"connection closed; frames so far: {self.frames}"))
        self._waiting = []

    def _match(self) -> None:
        for want, d in list(self._waiting):
            for i, frame in enumerate(self.frames):
                if want(frame):
                    del self.frames[i]
                    self._waiting.remove((want, d))
                    d.callback(frame)
                    break

    def send(self, frame: dict[str, Any] | bytes, end: bytes = b"\n") -> None:
        data = frame if isinstance(frame, bytes) else ujson.dumps(frame).encode() + end
        self.transport.write(data)

    def recv(self, msgid: int | None = None, timeout: float = WAIT,
             **fields: Any) -> defer.Deferred[dict[str, Any]]:
        """The next frame with this msgid (and these field values); fails after `timeout`."""
        def want(frame: dict[str, Any]) -> bool:
            return ((msgid is None or frame.get("msgid") == msgid)
                    and all(frame.get(k) == v for k, v in fields.items()))
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._waiting.append((want, d))
        self._match()
        if not d.called:
            d.addTimeout(timeout, reactor, onTimeoutCancel=lambda *_: self._timed_out(
                want, msgid, fields, timeout))
        return d

    def _timed_out(self, want: Any, msgid: Any, fields: Any, timeout: float) -> None:
        self._waiting = [(w, d) for w, d in self._waiting if w is not want]
        raise AssertionError(f"no frame msgid={msgid} {fields} within {timeout}s; "
                             f"got {self.frames}")

    async def request(self, frame: dict[str, Any], reply: int, **fields: Any) -> dict[str, Any]:
        self.send(frame)
        return await self.recv(reply, **fields)

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything that arrived within `seconds` and was not claimed."""
        await deferLater(seconds)
        frames, self.frames = self.frames, []
        return frames


class WebSocketClient(Client):
    """The same test client over a WebSocket: one frame per text message. Bytes that are
    UTF-8 go as a text message without their terminator, others as a binary message."""

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self.transport = transport

    def negotiationFinished(self) -> None:
        self.connected = True

    def textMessageReceived(self, message: str) -> None:
        self.dataReceived(message.encode() + b"\n")

    def bytesMessageReceived(self, data: bytes) -> None:
        raise AssertionError(f"the server sent a binary message: {data!r}")

    def pongReceived(self, payload: bytes) -> None:
        pass

    def send(self, frame: dict[str, Any] | bytes, end: bytes = b"\n") -> None:
        if not isinstance(frame, bytes):
            return self.transport.sendTextMessage(ujson.dumps(frame))
        for terminator in (b"\r\n", b"\n", b"\0"):
            if frame.endswith(terminator):
                frame = frame[:-len(terminator)]
                break
        try:
            self.transport.sendTextMessage(frame.decode())
        except UnicodeDecodeError:
            self.transport.sendBytesMessage(frame)

    def buildProtocol(self, url: str) -> "WebSocketClient":
        return self


class Raw(Protocol):
    """Bytes as they come, for the HTTP answers a WebSocket client does not show; `closed`
    fires when the connection ends."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any) -> None:
        self.connected = False
        self.closed.callback(None)


async def connect_raw(case: TestCase, port: int, source: str | None = None) -> Raw:
    """A plain TCP connection to a loopback port (from `source`, see `connect`), closed at
    the test's end."""
    bind = (source, 0) if source else None
    raw = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port,
                                                   bindAddress=bind), Raw())
    case.addCleanup(raw.transport.loseConnection)
    return raw


def deferLater(seconds: float) -> defer.Deferred[None]:
    return _later(reactor, seconds, lambda: None)


async def connect(case: TestCase, node: Any, source: str | None = None) -> Client:
    """A client connected to anything with a `port` on loopback (node, nginx); a WebSocket
    client for anything with a `ws_url`. `source`: another loopback address to connect
    from (127.0.0.2 ...), another client for the per-address limits."""
    client: Client
    bind = (source, 0) if source else None
    if hasattr(node, "ws_url"):
        client = await WebSocketClientEndpoint.new(reactor, node.ws_url, bindAddress=bind
                                                   ).connect(WebSocketClient())
    else:
        client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", node.port,
                                                          bindAddress=bind), Client())
    case.addCleanup(_disconnect, client)
    return client


async def _disconnect(client: Client) -> None:
    if client.connected:
        client.transport.loseConnection()
        await client.closed


async def register(client: Client, name: str, password: str = "secret") -> int:
    ack = await client.request({"msgid": MsgId.REG, "name": name, "password": password},
                               MsgId.REG_ACK)
    assert ack["errno"] == 0, ack
    return ack["id"]


async def login(client: Client, user_id: int, password: str = "secret",
                proto: int | None = 2) -> dict[str, Any]:
    frame: dict[str, Any] = {"msgid": MsgId.LOGIN, "id": user_id, "password": password}
    if proto is not None:
        frame["proto"] = proto
    ack = await client.request(frame, MsgId.LOGIN_ACK)
    if ack["errno"] == 0:
        client.user_id = user_id
    return ack


async def device(case: TestCase, node: Any, user_id: int, name: str | None, proto: int = 2
                 ) -> tuple[Client, dict[str, Any]]:
    """A new connection logging in as `user_id` on device `name` (None: no `device` field),
    acknowledging what it gets; (client, login reply)."""
    client = await connect(case, node)
    client.auto_ack = True
    frame: dict[str, Any] = {"msgid": MsgId.LOGIN, "id": user_id, "password": "secret",
                             "proto": proto}
    if name is not None:
        frame["device"] = name
    reply = await client.request(frame, MsgId.LOGIN_ACK)
    if reply["errno"] == 0:
        client.user_id = user_id
    return client, reply


async def user(case: TestCase, node: Any, name: str, proto: int | None = 2,
               source: str | None = None) -> Client:
    """A connected, registered, logged-in client (from `source`, see `connect`)."""
    client = await connect(case, node, source)
    user_id = await register(client, name)
    ack = await login(client, user_id, proto=proto)
    assert ack["errno"] == 0, ack
    return client


class NodePerTest:
    """Mixed into a TestCase: every test starts its own node, on SQLite unless a subclass's
    `database()` names another store; `users` registers and logs in acknowledging clients."""

    def database(self) -> str | None:
        return None

    async def node(self, *args: str):
        return await start_node(self, self.database(), *args)

    async def users(self, node, *names: str):
        clients = [await user(self, node, name) for name in names]
        for c in clients:
            c.auto_ack = True
        return clients

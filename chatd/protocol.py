"""Bytes to requests and replies to bytes: framing, limits, JSON, validation, dispatch.

No business rules live here: a valid request goes to the handler of its msgid (the dispatch
table that `build_node` gathers from chatd/handlers/).
"""

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.codec import decode, encode
from chatd.connections import CHAT, Connections, host
from chatd.delivery.inbox import Inbox
from chatd.delivery.session import Session
from chatd.messages import (
    LOGIN,
    REPLY,
    ChatError,
    Errno,
    MsgId,
    ServiceUnavailable,
    error_frame,
)
from chatd.metrics import Stats
from chatd.requests import validate
from chatd.sendnow import Gathered, share_transport_attributes, takes_direct_send, write_now

log = Logger()

DEFAULT_MAX_FRAME = 65536
DEFAULT_IDLE_TIMEOUT = 90.0
DEFAULT_MAX_SEND_BUFFER = 1 << 20
CLOSE_GRACE = 30.0  # seconds a connection closed for its send buffer has to drain
RELEASE_WAIT = 2.0  # seconds an ended session waits for its claim's release to close
# Seconds of silence before login; long enough for a person at the original client's menu,
# which connects before showing it.
DEFAULT_LOGIN_TIMEOUT = 300.0
RATE = 2000.0
BURST = 4000.0

PRELOGIN = frozenset({MsgId.REG, MsgId.LOGIN, MsgId.HEARTBEAT})

# Fields a refusal in a request's own reply (messages.REPLY) carries, so that the original
# client, which reads the reply only, finds them.
REFUSAL_FIELDS: dict[int, dict[str, Any]] = {
    MsgId.REG: {"id": 0},
    MsgId.CREATE_GROUP: {"groupid": 0},
    MsgId.HISTORY: {"messages": [], "more": False},
    MsgId.SYNC: {"messages": [], "more": False},
    MsgId.DEVICES: {"devices": []},
}

# Fields of a request repeated in its refusal, so that the client knows what was refused.
ECHOED = ("peer", "groupid", "friendid", "userid", "block")

# A handler answers at once (None) or returns a coroutine that the protocol runs.
Handler = Callable[[Any, dict[str, Any]], Coroutine[Any, Any, None] | None]


def _peer(transport: Any) -> str:
    """The client's address as host:port (the unix socket path, or "?" when unknown)."""
    peer = transport.getPeer()
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is not None:
        return f"{host}:{port}"
    return str(getattr(peer, "name", None) or "?")


def _classify(line: bytes) -> Errno:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return Errno.BAD_UTF8
    return Errno.BAD_JSON


class ChatProtocol(Protocol):
    """One client connection; also the Session the handlers talk to.

    It is a streaming producer of its transport, which pauses it when the client reads
    slower than the node writes: bytes written (or, for an inbox, held back) while paused are
    counted, and past `--max-send-buffer` the session ends: what the client had not received
    is stored offline by the ordinary disconnect path.
    """

    # One per connection, so its own attributes are slots (Twisted's `transport` and
    # `connected` stay in the base class's __dict__): 0.7 KiB less per session than a dict.
    __slots__ = ("factory", "user_id", "name", "proto", "device", "since", "inbox", "address",
                 "paused", "last_seen", "_abort", "_seconds", "_dispatch", "_max_frame",
                 "_stats", "_frames", "_max_send", "_buffer", "_tokens", "_queued", "_gathered",
                 "_gathers", "_out", "_sent_turn")

    def __init__(self, factory: "ChatFactory") -> None:
        self.factory = factory
        self.user_id: int | None = None
        self.name = ""
        self.proto = 1
        self.device = ""
        self.since = 0
        self.inbox: Inbox | None = None
        self.address = ""
        self.paused = False
        self._abort: IDelayedCall | None = None
        self._seconds = factory.clock.seconds
        self._dispatch = factory.dispatch
        self._max_frame = factory.max_frame
        self._stats = factory.stats
        self._frames = factory.stats.frames_in
        self._max_send = factory.max_send_buffer
        self._buffer = b""
        self._tokens = BURST
        self._queued = 0
        self._gathered = factory.gathered
        self._gathers = False  # set at connectionMade: does the transport gain by it?
        self._out: list[bytes] | None = None  # this turn's frames, sent at its end
        self._sent_turn = -1  # the last turn whose first frame went out at once
        self.last_seen = factory.clock.seconds()

    # Session

    def login(self, user_id: int, name: str, proto: int) -> None:
        self.user_id, self.name, self.proto = user_id, name, proto

    def logout(self) -> None:
        self.user_id, self.name, self.proto = None, "", 1

    def write(self, data: bytes) -> None:
        if self.paused:
            self.hold(len(data))
            if not self.connected:
                return
        out = self._out
        if out is not None:
            out.append(data)
        elif self._gathers:
            gathered = self._gathered
            if self._sent_turn != gathered.turn:  # the turn's first: no waiting for its end
                self._sent_turn = gathered.turn
                gathered.touch()
                write_now(self.transport, data)
            else:
                self._out = [data]
                gathered.add(self)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Send the frames gathered in this turn, joined: called when the turn ends, and
        before anything that closes the connection, so that they leave first."""
        out = self._out
        if out is not None:
            self._out = None
            write_now(self.transport, out[0] if len(out) == 1 else b"".join(out))

    def send(self, frame: dict[str, Any]) -> None:
        if self.connected:
            self.send_data(encode(frame))

    def send_data(self, data: bytes) -> None:
        if self.connected:
            self._stats.bytes_out += len(data)
            self.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.loseConnection()

    def end(self) -> None:
        # A Deferred of its own to time out: the timeout must not cancel the release itself.
        waited: Deferred[None] = Deferred()
        self.factory.end(self).addBoth(waited.callback)
        waited.addTimeout(RELEASE_WAIT, self.factory.clock)
        waited.addBoth(lambda _: self.close())

    def abort(self) -> None:
        """Close at once: like what Twisted still holds, what this turn gathered is
        dropped."""
        self._out = None
        self.transport.abortConnection()

    def hold(self, size: int) -> None:
        """Count bytes queued for a client that is not reading; past the limit the session
        ends at once (what it had not received is stored offline) and the connection gets
        CLOSE_GRACE seconds to take what the transport still holds."""
        self._queued += size
        if self._queued > self._max_send and self.connected:
            log.warn("closing connection of user {uid} from {addr}: over {limit} bytes queued "
                     "for a client that does not read", uid=self.user_id, addr=self.address,
                     limit=self._max_send)
            self.connected = False
            self.factory.end(self)
            self.close()
            self._abort = self.factory.clock.callLater(CLOSE_GRACE, self.abort)

    # Twisted

    def connectionMade(self) -> None:
        for option in ("setTcpNoDelay", "setTcpKeepAlive"):
            setter = getattr(self.transport, option, None)
            if setter is not None:
                setter(True)
        self.address = host(self.transport.getPeer())
        self._gathers = takes_direct_send(self.transport)
        self.factory.sessions.add(self)
        log.info("connection from {client}", client=_peer(self.transport))
        self.transport.registerProducer(self, True)

    def connectionLost(self, reason: Failure) -> None:
        self.connected = False  # Twisted leaves it set; a login still in flight checks it
        self._out = None
        log.info("connection from {client} closed (user {uid})", client=_peer(self.transport),
                 uid=self.user_id)
        self.factory.sessions.discard(self)
        self.factory.end(self)
        if self._abort is not None and self._abort.active():
            self._abort.cancel()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        """The client caught up: release what its inbox held back."""
        self.paused = False
        self._queued = 0
        if self.inbox is not None:
            self.inbox.resume()

    def stopProducing(self) -> None:
        """Connection loss does the clean-up."""

    def dataReceived(self, data: bytes) -> None:
        self._stats.bytes_in += len(data)
        now = self._seconds()
        tokens = self._tokens + (now - self.last_seen) * RATE
        self._tokens = tokens if tokens < BURST else BURST
        self.last_seen = now
        if b"\0" in data:
            data = data.replace(b"\0", b"\n")
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if self.transport.disconnecting:
                return
            if len(line) > self._max_frame and self._oversized(line):
                return self.frame_too_large()
            if line and not line.isspace():
                self.frameReceived(line)
        if len(self._buffer) > self._max_frame and self._oversized(self._buffer):
            self.frame_too_large()

    def messageReceived(self, data: bytes, text: bool = True) -> None:
        """One whole message of a transport that frames messages itself (a WebSocket): the
        same limits and error frames as a line, without the line framing. A binary message
        is refused: frames are text."""
        self._stats.bytes_in += len(data)
        now = self._seconds()  # as in dataReceived, kept there inline (hot path)
        tokens = self._tokens + (now - self.last_seen) * RATE
        self._tokens = tokens if tokens < BURST else BURST
        self.last_seen = now
        if len(data) > self._max_frame:
            return self.frame_too_large()
        if not text:
            self._tokens -= 1
            return self.error(ChatError(Errno.BINARY_MESSAGE))
        if data and not data.isspace():
            self.frameReceived(data)

    def _oversized(self, line: bytes) -> bool:
        """The limit counts the frame, not the CR of a CRLF terminator."""
        return len(line.rstrip(b"\r")) > self._max_frame

    # frames

    def frameReceived(self, line: bytes) -> None:
        self._tokens -= 1
        if self._tokens < 0:
            return self.error(ChatError(Errno.RATE_LIMITED))
        try:
            if not line.isascii():
                line.decode("utf-8")
            frame = decode(line)
        except ValueError:
            return self.error(ChatError(_classify(line)))
        if type(frame) is not dict:
            return self.error(ChatError(Errno.NOT_OBJECT))
        msgid = frame.get("msgid")
        handler = self._dispatch.get(msgid) if type(msgid) is int else None
        if handler is None:
            return self._bad_msgid(msgid)
        self._frames[msgid] += 1
        try:
            self._admit(msgid, frame)
            result = handler(self, frame)
        except ChatError as e:
            return self.refuse(msgid, frame, e)
        except Exception:
            log.failure("msgid {msgid} from user {uid}", msgid=msgid, uid=self.user_id)
            return self.refuse(msgid, frame, ChatError(Errno.INTERNAL))
        if result is not None:
            Deferred.fromCoroutine(result).addErrback(self._failed, msgid, frame)

    def _admit(self, msgid: int, frame: dict[str, Any]) -> None:
        """Login gate, field validation and identity: who may send what."""
        if self.user_id is None and msgid not in PRELOGIN:
            raise ChatError(Errno.NOT_LOGGED_IN)
        validate(msgid, frame)
        if self.user_id is not None and msgid != LOGIN:
            claimed = frame.get("id")
            if claimed is not None and claimed != self.user_id:
                raise ChatError(Errno.ID_MISMATCH)

    def _bad_msgid(self, msgid: Any) -> None:
        if msgid is None:
            self.error(ChatError(Errno.NO_MSGID))
        elif type(msgid) is not int:
            self.error(ChatError(Errno.WRONG_TYPE, "msgid"))
        else:
            self.error(ChatError(Errno.UNKNOWN_MSGID, str(msgid)), msgid)

    def error(self, err: ChatError, ref: int | None = None, cid: Any = None) -> None:
        """Send ERROR_MSG, counted under its errno."""
        self._stats.error(err.errno)
        self.send(error_frame(err, ref, cid))

    def refuse(self, msgid: int, frame: dict[str, Any], err: ChatError) -> None:
        """Business errors of a request with its own reply go in that reply (the original
        client waits for it); all else is ERROR_MSG naming the request."""
        if msgid == MsgId.LOGIN:
            self._stats.login(err.errno)
        ack = REPLY.get(msgid)
        if ack is not None and not Errno.BAD_UTF8 <= err.errno <= Errno.ALREADY_LOGGED_IN:
            defaults = REFUSAL_FIELDS.get(msgid, {})
            reply = {"msgid": ack, "errno": int(err.errno), "errmsg": err.errmsg, **defaults,
                     **err.fields}
            if msgid > MsgId.GROUP_LIST_ACK:
                reply.update((k, frame[k]) for k in ECHOED if k in frame)
            self._stats.error(err.errno)
            return self.send(reply)
        cid = frame.get("cid") if type(frame.get("cid")) is str else None
        self.error(err, msgid, cid)

    def _failed(self, failure: Failure, msgid: int, frame: dict[str, Any]) -> None:
        if failure.check(ChatError):
            err = failure.value
        elif failure.check(ServiceUnavailable):
            log.warn("msgid {msgid} from user {uid}: {error}", msgid=msgid, uid=self.user_id,
                     error=failure.value)
            err = ChatError(Errno.UNAVAILABLE)
        else:
            log.failure("msgid {msgid} from user {uid}", failure, msgid=msgid, uid=self.user_id)
            err = ChatError(Errno.INTERNAL)
        self.refuse(msgid, frame, err)

    def frame_too_large(self) -> None:
        log.info("closing connection of user {uid}: frame over {limit} bytes",
                 uid=self.user_id, limit=self._max_frame)
        self._buffer = b""
        self.error(ChatError(Errno.FRAME_TOO_LARGE))
        self.close()


class ChatConnection(ChatProtocol):
    """A session on the chat port, where the session is the connection: counted in the
    node's Connections from the moment it opens (through haproxy:, once nginx's header has
    named the client) and refused past --max-connections (errno 149) or
    --max-conns-per-address (143). A WebSocket session is counted by the web listener's
    channel, which holds its connection."""

    __slots__ = ("refused",)

    def __init__(self, factory: "ChatFactory") -> None:
        super().__init__(factory)
        self.refused = False

    def connectionMade(self) -> None:
        super().connectionMade()
        connections = self.factory.connections
        room = connections.opened(CHAT)
        welcome = connections.per_address.admit(self.address)
        if not room:
            log.warn("refusing a connection from {addr}: the node holds {limit} connections",
                     addr=self.address, limit=connections.max_connections)
            self._refuse(Errno.NODE_FULL, "node_full")
        elif not welcome:
            log.info("refusing a connection from {addr}: over {limit} connections",
                     addr=self.address, limit=connections.per_address.limit)
            self._refuse(Errno.TOO_MANY_CONNECTIONS, "per_address")

    def _refuse(self, errno: Errno, reason: str) -> None:
        self.refused = True
        self.factory.connections.refuse(CHAT, reason, at_open=True)
        self.error(ChatError(errno))
        self.close()

    def connectionLost(self, reason: Failure) -> None:
        connections = self.factory.connections
        connections.closed(CHAT, self.refused)
        connections.per_address.release(self.address)
        super().connectionLost(reason)


class ChatFactory(Factory):
    """Builds the chat port's sessions and closes the ones that went silent (WebSocket
    sessions too)."""

    def __init__(self, dispatch: dict[int, Handler], end: Callable[[Session], Deferred[None]],
                 stats: Stats, clock: IReactorTime, connections: Connections,
                 max_frame: int = DEFAULT_MAX_FRAME,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
                 login_timeout: float = DEFAULT_LOGIN_TIMEOUT) -> None:
        self.dispatch = dispatch
        self.end = end  # the session stops being its user's (disconnect, send buffer)
        self.stats = stats
        self.clock = clock
        self.connections = connections
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.max_send_buffer = max_send_buffer
        self.login_timeout = login_timeout
        self.sessions: set[ChatProtocol] = set()
        self.gathered = Gathered(clock)
        self._reaper = LoopingCall(self.close_idle)
        self._reaper.clock = clock

    def buildProtocol(self, addr: Any) -> ChatConnection | None:
        """None (closed at accept, unanswered) in a flood of connections to refuse."""
        if self.connections.drop(CHAT, host(addr)):
            return None
        return ChatConnection(self)

    def startFactory(self) -> None:
        share_transport_attributes()
        self._reaper.start(min(5.0, self.idle_timeout / 3, self.login_timeout / 3), now=False)

    def stopFactory(self) -> None:
        if self._reaper.running:
            self._reaper.stop()

    def close_idle(self) -> None:
        """Proto-2 sessions silent past the idle timeout and silent unauthenticated
        connections are closed, so a vanished client does not stay online."""
        now = self.clock.seconds()
        for session in list(self.sessions):
            if session.user_id is None:
                limit = self.login_timeout
            elif session.proto == 2:
                limit = self.idle_timeout
            else:
                continue
            if now - session.last_seen > limit:
                log.info("closing idle connection of user {uid}", uid=session.user_id)
                session.abort()

"""A chat session over a WebSocket: one proto-2 frame per text message, handed to the same
ChatProtocol a TCP connection gets, so every limit, throttle and rule applies unchanged."""

from typing import Any

from twisted.internet.interfaces import IAddress, IPushProducer, ITransport
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.websocket import WebSocketTransport
from wsproto.utilities import LocalProtocolError
from zope.interface import implementer

from chatd.protocol import ChatFactory, ChatProtocol

# Frame headers (up to 14 bytes a fragment) and the bytes of one read that may already belong
# to the next message: how far the raw count may run past --max-frame before it closes.
SLACK = 65536 + 4096
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class Meter(ProtocolWrapper):
    """Counts the bytes a WebSocket peer sends between two complete messages, and cuts a
    message that grows past the limit: Twisted gathers fragments without one."""

    socket: "ChatSocket | None" = None
    limit = 0
    pending = 0

    def dataReceived(self, data: bytes) -> None:
        if self.socket is not None:
            if self.pending > self.limit:
                return
            self.pending += len(data)
            if self.pending > self.limit:
                return self.socket.too_large()
        super().dataReceived(data)


def frame(payload: bytes, opcode: int = TEXT, masked: bool = False, final: bool = True
          ) -> bytes:
    """One frame (RFC 6455 5.2). A server's is unmasked; a client's (chatd-bench, tests) has
    the mask key 0, a value a random key may take, which leaves the payload as it is."""
    size = len(payload)
    first = (0x80 if final else 0) | opcode
    mask = 0x80 if masked else 0
    if size < 126:
        head = bytes((first, mask | size))
    elif size < 65536:
        head = bytes((first, mask | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, mask | 127)) + size.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload if masked else head + payload


@implementer(ITransport)
class FrameTransport:
    """What the ChatProtocol writes to: each LF-ended frame becomes one text message."""

    disconnecting = False

    def __init__(self, ws: WebSocketTransport, tcp: Any, peer: IAddress) -> None:
        self._ws = ws
        self._tcp = tcp
        self._peer = peer

    def write(self, data: bytes) -> None:
        """Server frames are built here, not by wsproto: a chat frame is already UTF-8 bytes,
        which wsproto would take only as text to encode again. After the
        peer's Close the TCP transport is disconnecting and drops what comes: a frame that
        is never acknowledged is stored offline by the router."""
        if not self.disconnecting:
            self._tcp.write(b"".join(frame(line) for line in data.split(b"\n") if line))

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            try:
                self._ws.loseConnection()
            except LocalProtocolError:  # the peer closed first; wsproto answered it
                self._tcp.loseConnection()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._tcp.abortConnection()

    def getPeer(self) -> IAddress:
        """The browser's address: the connection's, or the one a trusted proxy named."""
        return self._peer

    def getHost(self) -> IAddress:
        return self._tcp.getHost()

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        """On the TCP side directly (the WebSocket's attachProducer adapts its transport to
        IConsumer, which the byte counting wrapper, Meter, does not declare), in place of the
        HTTP channel that registered itself there and has nothing more to send."""
        self._tcp.unregisterProducer()
        self._tcp.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._tcp.unregisterProducer()

    def pauseProducing(self) -> None:
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self._tcp.resumeProducing()

    def stopProducing(self) -> None:
        self._tcp.stopProducing()


class ChatSocket:
    """The WebSocketProtocol of one browser session."""

    chat: ChatProtocol | None = None

    def __init__(self, factory: ChatFactory, tcp: Any, peer: IAddress) -> None:
        self._factory = factory
        self._tcp = tcp
        self._peer = peer
        self._transport: FrameTransport | None = None
        self._meter = tcp if isinstance(tcp, Meter) else None
        if self._meter is not None:
            self._meter.socket, self._meter.limit = self, factory.max_frame + SLACK

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = FrameTransport(transport, self._tcp, self._peer)

    def negotiationFinished(self) -> None:
        self.chat = self._factory.buildProtocol(self._peer)
        self.chat.makeConnection(self._transport)

    def textMessageReceived(self, message: str) -> None:
        self._received()
        self.chat.messageReceived(message.encode())

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        self._received()
        self.chat.messageReceived(bytes(data), text=False)

    def pongReceived(self, payload: bytes) -> None:
        """Browsers answer pings; chatd's liveness is the HEARTBEAT frame instead."""

    def too_large(self) -> None:
        if self.chat is not None:
            self.chat.frame_too_large()

    def connectionLost(self, reason: Failure) -> None:
        if self._transport is not None:
            self._transport.disconnecting = True
        if self.chat is not None:
            self.chat.connectionLost(reason)

    def _received(self) -> None:
        if self._meter is not None:
            self._meter.pending = 0

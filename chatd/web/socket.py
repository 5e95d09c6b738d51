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


@implementer(ITransport)
class FrameTransport:
    """What the ChatProtocol writes to: each LF-ended frame becomes one text message."""

    disconnecting = False

    def __init__(self, ws: WebSocketTransport, tcp: Any) -> None:
        self._ws = ws
        self._tcp = tcp

    def write(self, data: bytes) -> None:
        if self.disconnecting:
            return
        try:
            for frame in data.split(b"\n"):
                if frame:
                    self._ws.sendTextMessage(frame.decode())
        except LocalProtocolError:
            self._closing()

    def _closing(self) -> None:
        """The peer closed the WebSocket and the TCP connection is going: what is not
        written now is never acknowledged, so the router stores it offline."""
        self.disconnecting = True
        self._tcp.loseConnection()

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            try:
                self._ws.loseConnection()
            except LocalProtocolError:
                self._closing()

    def abortConnection(self) -> None:
        self.disconnecting = True
        self._tcp.abortConnection()

    def getPeer(self) -> IAddress:
        return self._tcp.getPeer()

    def getHost(self) -> IAddress:
        return self._tcp.getHost()

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self._ws.attachProducer(producer)

    def unregisterProducer(self) -> None:
        self._ws.detachProducer()

    def pauseProducing(self) -> None:
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self._tcp.resumeProducing()

    def stopProducing(self) -> None:
        self._tcp.stopProducing()


class ChatSocket:
    """The WebSocketProtocol of one browser session."""

    chat: ChatProtocol | None = None

    def __init__(self, factory: ChatFactory, tcp: Any) -> None:
        self._factory = factory
        self._tcp = tcp
        self._transport: FrameTransport | None = None
        self._meter = tcp if isinstance(tcp, Meter) else None
        if self._meter is not None:
            self._meter.socket, self._meter.limit = self, factory.max_frame + SLACK

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = FrameTransport(transport, self._tcp)

    def negotiationFinished(self) -> None:
        self.chat = self._factory.buildProtocol(self._tcp.getPeer())
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

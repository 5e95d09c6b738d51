"""A chat session over a WebSocket: one proto-2 frame per text message, handed to the same
ChatProtocol a TCP connection gets, so every limit, throttle and rule applies unchanged."""

from typing import Any

from twisted.internet.interfaces import IAddress, IPushProducer, ITransport
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from chatd.protocol import ChatFactory, ChatProtocol
from chatd.sendnow import write_now
from chatd.web.frames import (
    BINARY,
    CLOSE,
    NORMAL,
    PING,
    PONG,
    TEXT,
    FrameReader,
    MessageTooLarge,
    ProtocolViolation,
    close_code,
    close_frame,
    frame,
)


@implementer(ITransport)
class FrameTransport:
    """What the ChatProtocol writes to: each LF-ended frame becomes one text message."""

    disconnecting = False

    def __init__(self, tcp: Any, peer: IAddress) -> None:
        self._tcp = tcp
        self._peer = peer

    def write(self, data: bytes) -> None:
        """A chat frame is already UTF-8 bytes: each line is one text message as it is.
        After a Close (the peer's or ours) nothing more is sent: a frame that is never
        acknowledged is stored offline by the router."""
        if not self.disconnecting:
            self._tcp.write(self._frames(data))

    def send_now(self, data: bytes) -> None:
        """As write, straight to the socket when nothing is queued (chatd/sendnow.py)."""
        if not self.disconnecting:
            write_now(self._tcp, self._frames(data))

    @staticmethod
    def _frames(data: bytes) -> bytes:
        if data.find(b"\n") == len(data) - 1:  # one frame, as the ChatProtocol writes them
            return frame(data[:-1])
        return b"".join(frame(line) for line in data.split(b"\n") if line)

    def setTcpNoDelay(self, enabled: bool) -> None:
        """As on the chat port (ChatProtocol sets it): a small frame leaves at once instead of
        waiting behind Nagle's algorithm for the client's ACK of the one before."""
        self._socket_option("setTcpNoDelay", enabled)

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """As on the chat port: a browser that vanished without a FIN is noticed."""
        self._socket_option("setTcpKeepAlive", enabled)

    def _socket_option(self, name: str, enabled: bool) -> None:
        setter = getattr(self._tcp, name, None)  # none on a test's StringTransport
        if setter is not None:
            setter(enabled)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.close(NORMAL)

    def close(self, code: int | None) -> None:
        """The closing handshake (RFC 6455 7.1.2): a Close frame, then the TCP connection."""
        if not self.disconnecting:
            self.disconnecting = True
            self._tcp.write(close_frame(code))
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
        """On the TCP connection, in place of the HTTP channel that registered itself there
        and has nothing more to send."""
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


class ChatSocket(Protocol):
    """The byte protocol of one upgraded connection: the client's frames are cut by a
    FrameReader and each text message goes to the ChatProtocol as one frame."""

    chat: ChatProtocol | None = None

    def __init__(self, factory: ChatFactory, peer: IAddress) -> None:
        self._factory = factory
        self._peer = peer
        self._reader = FrameReader(factory.max_frame)
        self._out: FrameTransport | None = None

    def connectionMade(self) -> None:
        """Called once the upgrade is answered: the chat session starts here."""
        self._out = FrameTransport(self.transport, self._peer)
        self.chat = ChatProtocol(self._factory)
        self.chat.makeConnection(self._out)

    def dataReceived(self, data: bytes) -> None:
        out = self._out
        if out.disconnecting:  # after a Close: what the peer still sends is not read
            return
        try:
            for opcode, payload in self._reader.feed(data):
                if out.disconnecting:
                    return
                if opcode == TEXT:
                    self.chat.messageReceived(payload)
                elif opcode == BINARY:
                    self.chat.messageReceived(payload, text=False)
                elif opcode == PING:
                    self.chat.flush()  # the chat's frames of this turn go before the pong
                    self.transport.write(frame(payload, PONG))
                elif opcode == CLOSE:
                    self.chat.flush()
                    return out.close(close_code(payload))
        except MessageTooLarge:
            self.chat.frame_too_large()
        except ProtocolViolation as e:
            self.chat.flush()
            out.close(e.code)

    def connectionLost(self, reason: Failure) -> None:
        if self._out is not None:
            self._out.disconnecting = True
        if self.chat is not None:
            self.chat.connectionLost(reason)

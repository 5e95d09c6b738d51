"""chatd-bench --ws: a user's line protocol carried over a WebSocket, one frame per text
message (docs/protocol.md, WebSocket), so the same phases measure the web transport.

The frames are built and cut here (RFC 6455 5.2) rather than by a general library: the tool
must spend its core on the load, not on itself. Its frames carry the mask key 0 (see
chatd.web.socket.frame), and the server's frames, never masked, are cut without copying more
than each payload.
"""

import base64
import os
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from chatd.web.frames import CLOSE, PING, PONG, TEXT, frame

PATH = b"/ws"
MAX_HANDSHAKE = 16384


class WebSocketLink(Protocol):
    """The TCP protocol under one user's connection: it upgrades to a WebSocket, then is the
    inner protocol's transport (each line written is one message, each message received one
    line, a read's messages handed over together)."""

    def __init__(self, inner: Protocol, host: str) -> None:
        self.inner = inner
        self._host = host.encode()
        self._buffer = b""
        self._message = b""
        self._open = False

    def connectionMade(self) -> None:
        key = base64.b64encode(os.urandom(16))
        self.transport.write(
            b"GET %b HTTP/1.1\r\nHost: %b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %b\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (PATH, self._host, key))

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        if not self._open and not self._upgraded():
            return
        lines = self._messages()
        if lines:
            self.inner.dataReceived(b"\n".join(lines) + b"\n")

    def _upgraded(self) -> bool:
        head, end, rest = self._buffer.partition(b"\r\n\r\n")
        if not end:
            if len(self._buffer) > MAX_HANDSHAKE:
                self.transport.abortConnection()
            return False
        if not head.startswith(b"HTTP/1.1 101"):
            self.transport.abortConnection()
            return False
        self._buffer, self._open = rest, True
        self.inner.makeConnection(self)
        return True

    def _messages(self) -> list[bytes]:
        buf, pos, lines = self._buffer, 0, []
        while len(buf) - pos >= 2:
            first, size = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if size == 126:
                size, start = int.from_bytes(buf[start:start + 2], "big"), start + 2
            elif size == 127:
                size, start = int.from_bytes(buf[start:start + 8], "big"), start + 8
            if len(buf) < start + size:
                break
            pos = start + size
            opcode = first & 0x0F
            if opcode in (0, TEXT):
                self._message += buf[start:pos]
                if first & 0x80:
                    lines.append(self._message)
                    self._message = b""
            elif opcode == PING:
                self.transport.write(frame(buf[start:pos], PONG, masked=True))
            elif opcode == CLOSE:
                self.transport.loseConnection()
        self._buffer = buf[pos:]
        return lines

    def connectionLost(self, reason: Failure) -> None:
        if self._open:
            self._open = False
            self.inner.connectionLost(reason)

    # the inner protocol's transport

    def write(self, data: bytes) -> None:
        self.transport.write(b"".join(frame(line, masked=True) for line in data.split(b"\n")
                                     if line))

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self.transport.abortConnection()

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.transport.setTcpNoDelay(enabled)

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

"""One TCP connection to chatd: JSON frames on LF-ended lines, a heartbeat, a dead-link timer."""

from __future__ import annotations

import json
from typing import Any, Protocol

from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from chatd.messages import MsgId

HEARTBEAT_INTERVAL = 30.0
# The server answers every heartbeat, so this much silence means the link is dead.
SILENCE_TIMEOUT = 75.0

Frame = dict[str, Any]


class Receiver(Protocol):
    """What a connection reports to (the session)."""

    def connection_made(self, connection: ChatConnection) -> None: ...

    def frame_received(self, frame: object) -> None: ...

    def connection_lost(self, connection: ChatConnection, reason: Failure) -> None: ...


class ChatConnection(LineOnlyReceiver, TimeoutMixin):
    """Frames in and out; sends HEARTBEAT after 30 s without sending anything else, and drops
    the connection after 75 s without hearing anything, so the reconnect logic takes over."""

    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024 * 1024

    def __init__(self, receiver: Receiver, clock: IReactorTime) -> None:
        self._receiver = receiver
        self._clock = clock
        self.callLater = clock.callLater
        self._heartbeat: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.setTimeout(SILENCE_TIMEOUT)
        self._schedule_heartbeat()
        self._receiver.connection_made(self)

    def lineReceived(self, line: bytes) -> None:
        self.resetTimeout()
        line = line.strip(b"\r\0 \t")
        if not line:
            return
        try:
            frame = json.loads(line)
        except ValueError:
            frame = None
        self._receiver.frame_received(frame)

    def send_frame(self, frame: Frame) -> None:
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self.sendLine(data)
        self._schedule_heartbeat()

    def _schedule_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.reset(HEARTBEAT_INTERVAL)
        else:
            self._heartbeat = self._clock.callLater(
                HEARTBEAT_INTERVAL, self.send_frame, {"msgid": MsgId.HEARTBEAT})

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:
        self.setTimeout(None)
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.cancel()
        self._receiver.connection_lost(self, reason)


class ChatConnectionFactory(Factory):
    """Every connection the reconnecting service makes reports to the same session."""

    def __init__(self, receiver: Receiver, clock: IReactorTime) -> None:
        self._receiver = receiver
        self._clock = clock

    def buildProtocol(self, addr: IAddress) -> ChatConnection:
        return ChatConnection(self._receiver, self._clock)

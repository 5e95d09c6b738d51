"""Send each connection's frames of a reactor turn together, at the turn's end, straight to
the socket when it can take them.

Twisted's `transport.write` only queues: it registers the socket for writing (an epoll_ctl),
sends in the next reactor turn and unregisters it again (another epoll_ctl), some twenty
Python calls for every frame. Profiles of the message path (docs/performance.md, round
three) put that at a quarter of the node's CPU per message. A chat frame is small and the
socket of a reading client is almost always writable, so when nothing is queued ahead of
it the frame goes to the kernel at once; what the kernel does not take, and every frame
behind a queue, takes Twisted's path, so order and back-pressure stay Twisted's.

A connection's first frame of a reactor turn leaves at once; the others it gets in the same
turn are gathered and sent joined when the turn ends (`Gathered`): two sends at most, where
one send each made group fan-out three times slower (a busy group: dozens of messages to each
member per turn), and no `transport.write` per frame. Gathering the first frame too saved no
CPU but held every one-to-one reply until the turn's other events were handled: the 1:1 p99
went from 66-77 ms to 95-100 ms (docs/performance.md, round four). Whatever closes the
connection sends what it gathered first.
"""

from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.tcp import Server
from twisted.logger import Logger

log = Logger()

# Attributes Twisted sets on a TCP transport after making it: at its first write, producer
# and close. CPython shares one table of attribute names among a class's instances, but
# stops adding names to it once a few dozen instances exist; an instance that then gets a
# name not in the table has its attributes copied into a dict of its own (0.8 KiB). In a
# burst of connections the first write comes after that point, so every transport had one.
LATE_TRANSPORT_ATTRIBUTES = ("dataBuffer", "offset", "producer", "streamingProducer",
                             "producerPaused", "disconnecting", "disconnected",
                             "_writeDisconnecting", "_writeDisconnected", "_aborting")


def share_transport_attributes() -> None:
    """Put the late attributes' names in TCP transports' shared table while it has room, by
    setting them on one transport that is never used."""
    spare = Server.__new__(Server)
    for name in LATE_TRANSPORT_ATTRIBUTES:
        setattr(spare, name, None)


class Flushable(Protocol):
    """A connection that gathers its frames and sends them at `flush`."""

    def flush(self) -> None: ...


class Gathered:
    """Numbers the reactor's turns (`turn`) and holds the connections that gathered frames
    in this one: each is flushed once the turn ends (a `callLater(0)`, scheduled by the
    turn's first write), in the order they gathered. Only a turn in which a frame was
    written costs a call."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: list[Flushable] = []
        self.turn = 0
        self._scheduled = False

    def touch(self) -> None:
        """A frame was written in this turn: the turn ends with a flush."""
        if not self._scheduled:
            self._scheduled = True
            self._clock.callLater(0, self._flush)

    def add(self, connection: Flushable) -> None:
        """`connection` gathered its first frame of this turn."""
        self.touch()
        self._waiting.append(connection)

    def _flush(self) -> None:
        """Each connection on its own: one that fails does not keep the others' frames."""
        self.turn += 1
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            try:
                connection.flush()
            except Exception:
                log.failure("sending a connection's frames of a turn")


def takes_direct_send(transport: Any) -> bool:
    """Whether `write_now` can send on `transport` itself: a TCP one, or one that offers
    `send_now` (it then gains by gathering a turn's frames); any other is written to as
    it comes (a test's transport: its reader sees each frame at once)."""
    return type(transport) is Server or hasattr(transport, "send_now")


def write_now(transport: Any, data: bytes) -> None:
    """Write `data` to a TCP transport, sending directly when its queue is empty.

    A transport that wraps one (WebSocket frames, the PROXY header) offers `send_now`.
    Anything else, a TLS one, a queue not empty, and any error from the socket, is left to
    `transport.write`, which reports a lost connection the usual way."""
    if type(transport) is not Server:
        getattr(transport, "send_now", transport.write)(data)
        return
    if (transport.TLS or transport.disconnecting
            or transport._tempDataLen or transport.dataBuffer or not transport.connected):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])

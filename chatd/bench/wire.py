"""The client side of the wire (docs/protocol.md): one connection per user, frame formats.

The hot path is a received chat frame: it is recognised by its first bytes and its payload
(`B|<kind>|<sender>|<seq>|<send time ns>`) is cut out without decoding the JSON; the payloads
of one read go to the phase in one call. Everything else (replies, errors, acks) is decoded
with ujson and handed to the phase as a dict.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import ujson
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from chatd.messages import GROUP_CHAT, ONE_CHAT, RECV_ACK, MsgId

if TYPE_CHECKING:
    from chatd.bench.worker import Worker

ERROR = int(MsgId.ERROR)
"""As the plain ints chatd.messages has for the message path: a refusal may come per message."""

ONE_CHAT_HEAD = b'{"msgid":%d,' % ONE_CHAT
GROUP_CHAT_HEAD = b'{"msgid":%d,' % GROUP_CHAT
CHAT_HEADS = (ONE_CHAT_HEAD, GROUP_CHAT_HEAD)
"""How a chat frame from chatd starts: the bytes the hot path looks for."""
PAYLOAD = b'"msg":"B|'
MID = re.compile(rb'"mid":(\d+)')
MAX_MIDS = 1000
"""Most mids one RECV_ACK may carry (docs/protocol.md, Limits)."""
MAX_BUFFER = 16 << 20
"""A partial line longer than this is a broken server, not a slow one: drop the link."""

CHAT_FMT = ONE_CHAT_HEAD + b'"id":%d,"to":%d,"msg":"B|c|%d|%d|%d","time":"bench"}\n'
CHAT_FMT_CID = ONE_CHAT_HEAD + (b'"id":%d,"to":%d,"msg":"B|c|%d|%d|%d","time":"bench",'
                                b'"cid":"%bc%d"}\n')
GROUP_FMT = GROUP_CHAT_HEAD + b'"id":%d,"groupid":%d,"msg":"B|g|%d|%d|%d","time":"bench"}\n'
GROUP_FMT_CID = GROUP_CHAT_HEAD + (b'"id":%d,"groupid":%d,"msg":"B|g|%d|%d|%d","time":"bench",'
                                   b'"cid":"%bg%d"}\n')


def encode(frame: dict[str, Any]) -> bytes:
    return ujson.dumps(frame).encode() + b"\n"


class User:
    """One benchmark user: its index in the whole run, account and connections.

    `conn` is its first device, the one that sends and whose deliveries drive the closed
    loops; with --devices N, `extra` holds the connections of devices 1 … N-1."""

    __slots__ = ("index", "name", "uid", "conn", "online", "token", "extra")

    def __init__(self, index: int, name: str, uid: int, devices: int = 1) -> None:
        self.index = index
        self.name = name
        self.uid = uid
        self.conn: BenchConn | None = None
        self.online = False
        self.token = ""
        """The resume token of its last proto-2 login (docs/protocol.md)."""
        self.extra: list[BenchConn | None] = [None] * (devices - 1)

    def conns(self) -> list[BenchConn]:
        """Every connected device, the first one first."""
        return [c for c in (self.conn, *self.extra) if c is not None]


class BenchConn(Protocol):
    """A user's connection. Frames go to the worker's current phase: the payloads of a read
    as one list, the rest as decoded dicts. In proto 2 every received chat frame is
    acknowledged with one RECV_ACK per read, not one per frame, or with --ack-delay one
    for the reads of that many milliseconds."""

    def __init__(self, worker: Worker, user: User, device: int = 0) -> None:
        self.worker = worker
        self.user = user
        self.device = device
        """0 for the user's first device, 1 … N-1 for the others of --devices N."""
        self.seen: set[bytes] = set()
        """The payloads an extra device has received, to count its duplicates."""
        self._buffer = b""
        self._mids: list[bytes] = []
        self._acks_due: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        if self.device:
            self.user.extra[self.device - 1] = self
        else:
            self.user.conn = self
        self.worker.phase.on_connected(self)

    def connectionLost(self, reason: Failure) -> None:
        if self._acks_due is not None:
            self._acks_due.cancel()
            self._acks_due = None
        if self.device:
            self.user.extra[self.device - 1] = None
            self.worker.phase.on_device_lost(self, reason.getErrorMessage())
            return
        self.user.conn = None
        self.user.online = False
        self.worker.phase.on_lost(self.user, reason.getErrorMessage())

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        phase = self.worker.phase
        ack = self.worker.proto == 2
        payloads = []
        for line in lines:
            if line.startswith(CHAT_HEADS):
                start = line.find(PAYLOAD)
                if start >= 0:
                    start += 7
                    payloads.append(line[start:line.find(b'"', start)])
                    if ack:
                        self._collect_mid(line)
                    continue
            if line.strip(b"\r\0"):
                self._slow_path(phase, line, payloads)
        if payloads:
            if self.device:
                phase.on_device_payloads(self, payloads)
            else:
                phase.on_payloads(self, payloads)
        if self._mids and self._acks_due is None:
            delay = self.worker.ack_delay
            if delay:
                self._acks_due = self.worker.reactor.callLater(delay, self._send_acks)
            else:
                self._send_acks()
        if len(self._buffer) > MAX_BUFFER:
            self.transport.abortConnection()

    def _slow_path(self, phase: Any, line: bytes, payloads: list[bytes]) -> None:
        """A frame that is not a bench payload at the usual place: decode it; a chat frame
        whose keys come in another order is still a payload."""
        try:
            frame = ujson.loads(line)
        except ValueError:
            phase.on_garbage(self, line)
            return
        if not isinstance(frame, dict):
            phase.on_garbage(self, line)
            return
        msg = frame.get("msg")
        if frame.get("msgid") in (ONE_CHAT, GROUP_CHAT) and isinstance(msg, str) \
                and msg.startswith("B|"):
            payloads.append(msg.encode())
            if self.worker.proto == 2 and "mid" in frame:
                self._mids.append(str(frame["mid"]).encode())
        else:
            phase.on_frame(self, frame)

    def _collect_mid(self, line: bytes) -> None:
        match = MID.search(line)
        if match:
            self._mids.append(match.group(1))

    def _send_acks(self) -> None:
        self._acks_due = None
        mids, self._mids = self._mids, []
        for i in range(0, len(mids), MAX_MIDS):
            batch = b",".join(mids[i:i + MAX_MIDS])
            self.transport.write(b'{"msgid":%d,"mids":[%b]}\n' % (RECV_ACK, batch))

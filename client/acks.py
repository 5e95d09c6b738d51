"""RECV_ACKs gathered: the messages read within ACK_DELAY seconds are acknowledged in one frame
with `mids`, as the web client does. A burst (a busy group, a conversation catching up) then
costs the server one frame to read and handle instead of one a message; ACK_DELAY is far below
the server's acknowledgement timeout, so nothing is re-delivered for the wait."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatd.messages import MsgId
from client.protocol import Frame

ACK_DELAY = 0.05
MAX_MIDS_PER_ACK = 1000


def ack_frames(mids: list[int]) -> list[Frame]:
    """RECV_ACK frames for these mids: `mid` for one, `mids` lists of MAX_MIDS_PER_ACK."""
    frames = []
    for start in range(0, len(mids), MAX_MIDS_PER_ACK):
        chunk = mids[start:start + MAX_MIDS_PER_ACK]
        frames.append({"msgid": MsgId.RECV_ACK, "mid": chunk[0]} if len(chunk) == 1 else
                      {"msgid": MsgId.RECV_ACK, "mids": chunk})
    return frames


class Acks:
    """The mids read and not yet acknowledged on the current connection."""

    def __init__(self, clock: IReactorTime, send: Callable[[Frame], None]) -> None:
        self._clock = clock
        self._send = send
        self._mids: dict[int, None] = {}  # in order; a mid delivered twice is acked once
        self._timer: IDelayedCall | None = None

    def add(self, mid: int) -> None:
        """Acknowledge `mid` within ACK_DELAY, or at once when a frame's worth is waiting."""
        self._mids[mid] = None
        if len(self._mids) >= MAX_MIDS_PER_ACK:
            self.flush()
        elif self._timer is None:
            self._timer = self._clock.callLater(ACK_DELAY, self.flush)

    def flush(self) -> None:
        """Send what is waiting now: before any other frame of the session, so that the
        server has the acks first (a LOGOUT would otherwise store those messages offline)."""
        self._cancel()
        mids, self._mids = self._mids, {}
        for frame in ack_frames(list(mids)):
            self._send(frame)

    def drop(self) -> None:
        """The connection is gone: the server delivers these messages again."""
        self._cancel()
        self._mids = {}

    def _cancel(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

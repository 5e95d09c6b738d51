"""What the client does around the messages it shows: read markers, receipts, typing, and the
last mid it has seen (docs/protocol.md, Conversations).

The session owns one of these while a user is logged in and tells it what it shows and
what it receives; this module decides what to send back and what to show about it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from chatd.messages import MsgId
from client import commands, display
from client.protocol import Frame
from client.state import LastMids

TYPING_INTERVAL = 1.0
"""Seconds between two TYPING frames to one user (the server forwards at most one a second)."""
SAVE_DELAY = 1.0
"""Seconds a new last mid waits before it is written, so that a burst is one write."""
RECEIPTS_PER_PEER = 100
"""Own messages per peer remembered for read receipts."""

Show = Callable[[list[str]], None]
Lookup = Callable[[object], Frame]


class Conversations:
    """The logged-in user's read markers, receipts, typing and last mid."""

    def __init__(self, show: Show, clock: IReactorTime, send: Callable[[Frame], None],
                 state: LastMids, person: Lookup, typing_shown: Callable[[Frame], None]
                 ) -> None:
        self._show = show
        self._clock = clock
        self._send = send
        self._state = state
        self._person = person
        self._typing_shown = typing_shown
        self._key = ""
        self._me: int | None = None
        self.last_mid = 0
        self._saved_mid = 0
        self._save_call: IDelayedCall | None = None
        self._reads: dict[tuple[str, int], int] = {}
        self._read_call: IDelayedCall | None = None
        self._typed: dict[int, float] = {}
        self._own: dict[int, deque[tuple[int, str]]] = {}
        self.supported = False

    def begin(self, key: str, me: int, supported: bool) -> None:
        """A user logged in on this device (`key` names server, user and device);
        `supported` is False for a server without conversations (no `unread` in its
        LOGIN_ACK; it would refuse READ and TYPING as unknown frames)."""
        self.supported = supported
        if key != self._key:
            self.end()
            self._key, self._me = key, me
            self.last_mid = self._saved_mid = self._state.get(key)

    def end(self) -> None:
        """The user logged out or the client stops: write the last mid now."""
        self._save()
        for call in (self._save_call, self._read_call):
            if call is not None and call.active():
                call.cancel()
        self._save_call = self._read_call = None
        self._key, self._me, self.last_mid, self._saved_mid = "", None, 0, 0
        self._reads.clear()
        self._typed.clear()
        self._own.clear()

    # What the user saw and sent.

    def shown(self, frame: Frame) -> None:
        """A chat message was shown: it is read (unless it is the user's own), and it may
        be the newest one this device has."""
        mid = frame.get("mid")
        if not isinstance(mid, int):
            return
        self._seen_mid(mid)
        if frame.get("id") == self._me:
            return
        key = ("groupid", frame["groupid"]) if "groupid" in frame else ("peer", frame.get("id"))
        if isinstance(key[1], int) and self.supported:
            self._reads[key] = max(mid, self._reads.get(key, 0))
            if self._read_call is None:
                self._read_call = self._clock.callLater(0, self._send_reads)

    def confirmed(self, frame: Frame, mid: object, text: str) -> None:
        """The server took the user's message (SEND_ACK): a receipt may name it later."""
        if not isinstance(mid, int):
            return
        self._seen_mid(mid)
        if frame.get("msgid") == MsgId.ONE_CHAT:
            sent = self._own.setdefault(frame["to"], deque(maxlen=RECEIPTS_PER_PEER))
            sent.append((mid, text))

    def user_typing(self, line: str) -> None:
        """The line being typed changed: a message to a friend tells them, once a second."""
        to = commands.typing_target(line)
        if to is None or self._me is None or to == self._me or not self.supported:
            return
        now = self._clock.seconds()
        if now - self._typed.get(to, -TYPING_INTERVAL) >= TYPING_INTERVAL:
            self._typed[to] = now
            self._send({"msgid": MsgId.TYPING, "to": to})

    # What the server tells.

    def read_received(self, frame: Frame) -> None:
        """A READ: from another of the user's devices nothing to show; from a peer, a
        receipt for the newest own message it covers."""
        reader, mid = frame.get("id"), frame.get("mid")
        if reader == self._me or not isinstance(reader, int) or not isinstance(mid, int):
            return
        sent = self._own.get(reader)
        covered = [text for own_mid, text in sent or () if own_mid <= mid]
        if sent is None or not covered:
            return
        while sent and sent[0][0] <= mid:
            sent.popleft()
        self._show([display.read_receipt(self._person(reader), covered[-1])])

    def typing_received(self, frame: Frame) -> None:
        if isinstance(frame.get("id"), int):
            self._typing_shown(self._person(frame["id"]))

    # Sending and saving later.

    def _send_reads(self) -> None:
        self._read_call = None
        reads, self._reads = self._reads, {}
        for (field, target), mid in reads.items():
            self._send({"msgid": MsgId.READ, field: target, "mid": mid})

    def _seen_mid(self, mid: int) -> None:
        if mid > self.last_mid and self._key:
            self.last_mid = mid
            if self._save_call is None:
                self._save_call = self._clock.callLater(SAVE_DELAY, self._save)

    def _save(self) -> None:
        self._save_call = None
        if self._key and self.last_mid > self._saved_mid:
            self._saved_mid = self.last_mid
            self._state.save(self._key, self.last_mid)
            if self._state.problem:
                self._show([display.info(f"cannot keep the last message id: "
                                         f"{self._state.problem}")])

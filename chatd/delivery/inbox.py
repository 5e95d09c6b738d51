"""One logged-in session's mailbox on this node: what it has not been sent yet, and what it
has not acknowledged yet."""

from collections import deque
from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from twisted.internet.interfaces import IReactorTime

from chatd.delivery.dialect import Dialect
from chatd.delivery.receipts import Waiter
from chatd.delivery.session import Session

# A frame a session still owes: (mid, frame with its line end, who waits for it).
Held = tuple[int, bytes, Waiter | None]

# The offline mids of every session that has none: most sessions, so they share one.
NO_MIDS: frozenset[int] = frozenset()


class Inbox:
    """A logged-in user's mailbox on this node.

    Frames are held until the login reply has been written (so it is always the session's
    first frame), then written in order. While the client does not read (its session is
    paused) frames are held here rather than written: live ones count against the session's
    send buffer, which ends the session past its limit, and what is held is stored offline
    when the session ends. A proto-2 session's frames stay in `unacked` until it acknowledges
    them; the router stores the ones left over offline. One per logged-in user, so it is kept
    small: slots, and nothing allocated until it is needed.
    """

    __slots__ = ("session", "user_id", "device", "needs_ack", "ready", "offline_mids",
                 "unacked", "catch_up", "_held", "_clock", "_dialect")

    def __init__(self, session: Session, clock: IReactorTime, dialect: Dialect) -> None:
        self.session = session
        self.user_id: int = session.user_id  # type: ignore[assignment]
        self.needs_ack = session.proto == 2
        # the device claimed on the bus: "" for the original dialect, which has none
        self.device = session.device if self.needs_ack else ""
        self.ready = False
        # mids of the offline messages in the login reply, deleted from the store once acked
        self.offline_mids: AbstractSet[int] = NO_MIDS
        # frames were stored offline while the login reply was being made: look again
        self.catch_up = False
        self.unacked: dict[int, tuple[bytes, Waiter | None, float]] = {}
        # frames waiting for the login reply or for the client to read; None when there are
        # none, as for most sessions most of the time (an empty deque is about 0.6 KiB)
        self._held: deque[Held] | None = None
        self._clock = clock
        self._dialect = dialect

    def push(self, mid: int, frame: bytes, done: Waiter | None) -> None:
        """Send a frame; `done` is told once the frame can no longer be lost."""
        if self.ready and not self.session.paused:
            self._write(mid, frame, done)
            return
        if self._held is None:
            self._held = deque()
        self._held.append((mid, frame, done))
        if self.ready:
            self.session.hold(len(frame))

    def _write(self, mid: int, frame: bytes, done: Waiter | None) -> None:
        if self.needs_ack:
            self.unacked[mid] = (frame, done, self._clock.seconds())
            self.session.write(frame)
        else:
            dialect = self._dialect  # Dialect.plain, inline: every frame of the dialect
            fields = dialect.fields
            if frame is dialect.last_plain or (
                    not frame.startswith(dialect.heads)
                    and (fields is None or fields.search(frame) is None)):
                dialect.last_plain = frame
                self.session.write(frame)
            else:
                original = self._dialect.original(frame)
                if original is not None:
                    self.session.write(original)
            if done is not None:
                done.done()

    def notify(self, frame: bytes) -> None:
        """A live-only frame (typing, receipt, notice): proto-2 sessions only, once the login
        reply is out; nothing waits for it and nothing is stored."""
        if self.ready and self.needs_ack and not self.session.paused:
            self.session.write(frame)

    def open(self) -> None:
        """The login reply is out: release what arrived meanwhile, as far as the client reads
        (the rest goes out at `resume`)."""
        self.ready = True
        held, session = self._held, self.session
        if held is None:
            return
        while held and not session.paused:
            self._write(*held.popleft())
        if not held:
            self._held = None

    def resume(self) -> None:
        """The client reads again: write what was held back."""
        if self.ready:
            self.open()

    def ack(self, mids: Iterable[int]) -> None:
        """Release acknowledged frames (mids not in flight are ignored)."""
        for mid in mids:
            entry = self.unacked.pop(mid, None)
            if entry is not None and entry[1] is not None:
                entry[1].done()

    def remember_offline(self, mids: AbstractSet[int]) -> None:
        """Set the mids of stored frames this session was sent, deleted from the store once
        acknowledged; an empty set is the shared one."""
        self.offline_mids = mids or NO_MIDS

    def expired(self, deadline: float) -> list[Held]:
        """Remove and return the frames sent before `deadline` and still unacknowledged."""
        out = []
        while self.unacked:
            mid, (frame, done, sent) = next(iter(self.unacked.items()))
            if sent >= deadline:
                break
            del self.unacked[mid]
            out.append((mid, frame, done))
        return out

    def drain(self) -> list[Held]:
        """Everything not yet safe with the client, for offline storage when it leaves."""
        out = list(self._held or ()) + [(mid, f, d) for mid, (f, d, _) in self.unacked.items()]
        self._held = None
        self.unacked.clear()
        return out

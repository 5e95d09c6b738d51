"""Where a frame for a user goes: the user's session here, another node through the bus, or
offline storage; and which frames are still in flight to each local session."""

from collections import OrderedDict
from collections.abc import Callable, Iterable

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd.bus import Bus
from chatd.session import Session
from chatd.store import Store, StoreUnavailable

log = Logger()

Done = Callable[[], None] | None

DEFAULT_ACK_TIMEOUT = 10.0
STORE_RETRY_SECONDS = (1, 2, 5, 10, 30)


class Inbox:
    """A logged-in user's mailbox on this node.

    Frames are held until the login reply has been written (so it is always the session's
    first frame), then written in order. A proto-2 session's frames stay in `unacked` until it
    acknowledges them; the router stores the ones left over offline.
    """

    def __init__(self, session: Session, clock: IReactorTime) -> None:
        self.session = session
        self.user_id: int = session.user_id  # type: ignore[assignment]
        self.needs_ack = session.proto == 2
        self.ready = False
        self.offline_mids: set[int] = set()
        self.unacked: OrderedDict[int, tuple[bytes, Done, float]] = OrderedDict()
        self._held: list[tuple[int, bytes, Done]] = []
        self._clock = clock

    def push(self, mid: int, frame: bytes, done: Done) -> None:
        """Send a frame; `done` runs once the frame can no longer be lost."""
        if not self.ready:
            self._held.append((mid, frame, done))
            return
        self.session.write(frame)
        if self.needs_ack:
            self.unacked[mid] = (frame, done, self._clock.seconds())
        elif done is not None:
            done()

    def open(self) -> None:
        """The login reply is out: release what arrived meanwhile."""
        self.ready = True
        held, self._held = self._held, []
        for mid, frame, done in held:
            self.push(mid, frame, done)

    def ack(self, mids: Iterable[int]) -> list[int]:
        """Release acknowledged frames; return the mids that were not in flight."""
        others = []
        for mid in mids:
            entry = self.unacked.pop(mid, None)
            if entry is None:
                others.append(mid)
            elif entry[1] is not None:
                entry[1]()
        return others

    def expired(self, deadline: float) -> list[tuple[int, bytes, Done]]:
        """Remove and return the frames sent before `deadline` and still unacknowledged."""
        out = []
        while self.unacked:
            mid, (frame, done, sent) = next(iter(self.unacked.items()))
            if sent >= deadline:
                break
            del self.unacked[mid]
            out.append((mid, frame, done))
        return out

    def drain(self) -> list[tuple[int, bytes, Done]]:
        """Everything not yet safe with the client, for offline storage when it leaves."""
        out = self._held + [(mid, f, d) for mid, (f, d, _) in self.unacked.items()]
        self._held = []
        self.unacked.clear()
        return out


class _Fanout:
    """Counts the copies of one message until all are safe; then fires with the missing users."""

    __slots__ = ("deferred", "missing", "_left")

    def __init__(self, copies: int) -> None:
        self.deferred: Deferred[set[int]] = Deferred()
        self.missing: set[int] = set()
        self._left = copies
        if copies == 0:
            self.deferred.callback(self.missing)

    def one_done(self) -> None:
        self._left -= 1
        if self._left == 0:
            self.deferred.callback(self.missing)

    def failed(self, failure: object) -> None:
        if not self.deferred.called:
            self.deferred.errback(failure)


class Router:
    """The online map of this node plus the bus and the offline store."""

    def __init__(self, bus: Bus, store: Store, clock: IReactorTime,
                 ack_timeout: float = DEFAULT_ACK_TIMEOUT) -> None:
        self.bus = bus
        self.store = store
        self.ack_timeout = ack_timeout
        self._clock = clock
        self._inboxes: dict[int, Inbox] = {}
        self._saving: set[Deferred[None]] = set()
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock

    def start(self) -> None:
        self._sweeper.start(1.0, now=False)

    def stop(self) -> None:
        if self._sweeper.running:
            self._sweeper.stop()

    async def flush(self) -> None:
        """Wait until the frames being stored offline are written (used at shutdown)."""
        while self._saving:
            await DeferredList(list(self._saving))

    def inbox(self, user_id: int) -> Inbox | None:
        return self._inboxes.get(user_id)

    def local_count(self) -> int:
        return len(self._inboxes)

    async def attach(self, session: Session) -> Inbox | None:
        """Make `session` the user's one session; None when the user is online already."""
        user_id = session.user_id
        if user_id in self._inboxes:
            return None
        inbox = self._inboxes[user_id] = Inbox(session, self._clock)
        try:
            held = await self.bus.subscribe(user_id)
        except Exception:
            del self._inboxes[user_id]
            raise
        if not held:
            del self._inboxes[user_id]
            return None
        return inbox

    def detach(self, inbox: Inbox) -> None:
        """The session ended: release the user and store what it had not acknowledged."""
        if self._inboxes.get(inbox.user_id) is inbox:
            del self._inboxes[inbox.user_id]
            self.bus.unsubscribe(inbox.user_id)
        self._keep(inbox.user_id, inbox.drain())

    async def online(self, user_ids: list[int]) -> set[int]:
        """Live presence: held by this node or, through the bus, by another."""
        here = {u for u in user_ids if u in self._inboxes}
        elsewhere = [u for u in user_ids if u not in here]
        if elsewhere:
            here |= await self.bus.online(elsewhere)
        return here

    def deliver(self, user_ids: list[int], mid: int, frame: bytes) -> Deferred[set[int]]:
        """Send one message to each user; fires, once every copy is safe, with the set of
        users that do not exist (only known for copies that had to be stored)."""
        fan = _Fanout(len(user_ids))
        for user_id in user_ids:
            inbox = self._inboxes.get(user_id)
            if inbox is not None:
                inbox.push(mid, frame, fan.one_done)
            else:
                d = self.bus.publish(user_id, frame)
                d.addCallback(self._published, user_id, mid, frame, fan)
                d.addErrback(fan.failed)
        return fan.deferred

    def _published(self, receivers: int, user_id: int, mid: int, frame: bytes,
                   fan: _Fanout) -> Deferred[None] | None:
        if receivers:
            fan.one_done()
            return None
        d = Deferred.fromCoroutine(self.store.save_offline([(user_id, mid, frame[:-1].decode())]))

        def stored(count: int) -> None:
            if count == 0:
                fan.missing.add(user_id)
            fan.one_done()
        return d.addCallback(stored)

    def _sweep(self) -> None:
        deadline = self._clock.seconds() - self.ack_timeout
        for inbox in list(self._inboxes.values()):
            if inbox.unacked:
                late = inbox.expired(deadline)
                if late:
                    log.info("user {uid}: {n} frames not acknowledged in time, stored offline",
                             uid=inbox.user_id, n=len(late))
                    self._keep(inbox.user_id, late)

    def _keep(self, user_id: int, frames: list[tuple[int, bytes, Done]], attempt: int = 0
              ) -> None:
        """Store frames nobody else holds; retried with back-off while the store is down."""
        if not frames:
            return
        rows = [(user_id, mid, frame[:-1].decode()) for mid, frame, _ in frames]
        d = Deferred.fromCoroutine(self.store.save_offline(rows))

        def stored(_: int) -> None:
            for _mid, _frame, done in frames:
                if done is not None:
                    done()

        def retry(failure):  # type: ignore[no-untyped-def]
            failure.trap(StoreUnavailable)
            delay = STORE_RETRY_SECONDS[min(attempt, len(STORE_RETRY_SECONDS) - 1)]
            log.warn("user {uid}: cannot store {n} frames ({error}), retrying in {delay}s",
                     uid=user_id, n=len(frames), error=failure.value, delay=delay)
            self._clock.callLater(delay, self._keep, user_id, frames, attempt + 1)

        d.addCallbacks(stored, retry)
        d.addErrback(lambda f: log.failure("storing offline frames", f))
        self._saving.add(d)
        d.addBoth(self._saved, d)

    def _saved(self, result: object, d: Deferred[None]) -> object:
        self._saving.discard(d)
        return result


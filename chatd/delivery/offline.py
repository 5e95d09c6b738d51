"""The one place that stores what could not be delivered, and forgets what was.

Two kinds of frames are stored: a new message for users who are offline (`store_new`,
within their --offline-quota), and frames a session still owed when it ended or did not
acknowledge in time (`keep`; they were accepted for that user already, so no quota applies).
Both are idempotent writes (one row per user and mid), so a write may be repeated safely.
Stored frames that a client has received are deleted (`forget`).

While the store is down a write is retried with back-off (RETRY_SECONDS, about a minute in
all) and its frames wait in memory, at most --offline-buffer of them across the node. When
the node gives up, because the retries are spent or the buffer is full, whoever waits for
each copy is told it failed: the sender gets errno 130 (send it again, same cid) instead of
silence. `flush` waits for every write still owed, retries included, so that a node stopping
during an outage does not close the store under them. An outage is logged once when it
starts and once when it ends, not once per write.
"""

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.delivery.inbox import Held
from chatd.delivery.receipts import Fanout, Waiter
from chatd.delivery.signals import Signal
from chatd.messages import ServiceUnavailable
from chatd.metrics import OFFLINE, Stats
from chatd.store import Store

log = Logger()

DEFAULT_OFFLINE_QUOTA = 10_000
DEFAULT_OFFLINE_BUFFER = 100_000
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0)

T = TypeVar("T")
Rows = Sequence[tuple[int, int, str]]  # (user id, mid, frame without its line end)


class GaveUp(ServiceUnavailable):
    """The store stayed unreachable for every retry, or the buffer of waiting frames was full."""


class Offline:
    """Writes frames to the offline store for this node; see the module docstring."""

    def __init__(self, store: Store, clock: IReactorTime, stats: Stats,
                 quota: int = DEFAULT_OFFLINE_QUOTA, buffer: int = DEFAULT_OFFLINE_BUFFER,
                 retry_seconds: Sequence[float] = RETRY_SECONDS) -> None:
        self.store = store
        self.quota = quota
        self.buffer = buffer
        self.stats = stats
        # the users for whom frames were stored (a login may have read the store before)
        self.stored: Signal[[list[int]]] = Signal()
        # a new message (its frame as text) was stored for users with no device online
        self.stored_new: Signal[[list[int], str]] = Signal()
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._writes: set[Deferred[None]] = set()
        self._unsaved = 0  # frames not yet written, retries included
        self._waiting = 0  # of those, frames held since a failed write (the buffer)
        self._outage = False

    def pending(self) -> int:
        """Frames waiting to be stored (a metric)."""
        return self._unsaved

    def store_new(self, user_ids: list[int], mid: int, frame: bytes, fan: Fanout) -> None:
        """Store a new message for users who are offline, within their quota; `fan` learns
        which users do not exist or are full, and is told once the copies are stored."""
        self.stats.routes[OFFLINE] += len(user_ids)
        rows = [(u, mid, frame[:-1].decode()) for u in user_ids]
        self._start(self._store_new(rows, fan), len(rows))

    def keep(self, user_id: int, frames: list[Held], announce: bool = False) -> None:
        """Store frames a session owed (no quota: they were accepted for this user);
        `announce`: the session left, and a new one may be logging in meanwhile."""
        if frames:
            rows = [(user_id, mid, frame[:-1].decode()) for mid, frame, _ in frames]
            self._start(self._keep(rows, [w for _, _, w in frames], announce), len(rows))

    def forget(self, user_id: int, mids: list[int]) -> None:
        """The user's client has these stored frames (acknowledged, or written to an
        original-dialect session): delete them. A failed delete only means they are sent
        again at the next login, where the client drops what it has."""
        d = Deferred.fromCoroutine(self.store.delete_offline(user_id, mids))
        d.addErrback(lambda f: log.warn(
            "user {uid}: could not delete {n} delivered offline messages ({error}); "
            "they will be sent again", uid=user_id, n=len(mids), error=f.value))

    def withdraw(self, user_ids: list[int], mid: int) -> Deferred[None]:
        """A message was recalled: delete the copies still waiting for these users, so that
        its text is gone from storage (a copy stored later is shown as recalled at login)."""
        return self._revision(self.store.withdraw_offline(user_ids, mid), "withdraw", mid)

    def revise(self, user_ids: list[int], mid: int, frame: str) -> Deferred[None]:
        """A message was edited: the copies still waiting for these users read `frame`."""
        return self._revision(self.store.revise_offline(user_ids, mid, frame), "revise", mid)

    @staticmethod
    def _revision(work: Coroutine[Any, Any, None], what: str, mid: int) -> Deferred[None]:
        d = Deferred.fromCoroutine(work)
        d.addErrback(lambda f: log.warn("offline: cannot {what} copies of message {mid}: "
                                        "{error}", what=what, mid=mid, error=f.value))
        return d

    async def flush(self) -> None:
        """Wait until every write is done: stored, or given up after its retries."""
        while self._writes:
            await DeferredList(list(self._writes))

    def _start(self, work: Coroutine[Any, Any, None], frames: int) -> None:
        self._unsaved += frames
        d = Deferred.fromCoroutine(work)
        self._writes.add(d)
        d.addErrback(lambda f: log.failure("offline store", f))
        d.addBoth(lambda _: self._finished(d, frames))

    def _finished(self, d: Deferred[None], frames: int) -> None:
        self._writes.discard(d)
        self._unsaved -= frames

    async def _store_new(self, rows: Rows, fan: Fanout) -> None:
        try:
            stored, full = await self._with_retries(
                lambda: self.store.save_new_offline(rows, self.quota), len(rows))
        except Exception:
            self._lost(rows)
            fan.failed(Failure())
            return
        user_ids = [row[0] for row in rows]
        if full:
            log.warn("offline mailbox full (--offline-quota {quota}): message {mid} not stored "
                     "for users {users}", quota=self.quota, mid=rows[0][1], users=sorted(full))
            fan.full = fan.full | full
        elif stored == 0 and len(rows) == 1:
            fan.missing = {user_ids[0]}
        fan.done(len(rows))
        kept = [u for u in user_ids if u not in full]
        self.stored(kept)
        self.stored_new(kept, rows[0][2])

    async def _keep(self, rows: Rows, waiters: list[Waiter | None], announce: bool) -> None:
        try:
            await self._with_retries(lambda: self.store.save_offline(rows), len(rows))
        except Exception:
            self._lost(rows)
            failure = Failure()
            for waiter in waiters:
                if waiter is not None:
                    waiter.failed(failure)
            return
        for waiter in waiters:
            if waiter is not None:
                waiter.done()
        if announce:
            self.stored([rows[0][0]])

    def _lost(self, rows: Rows) -> None:
        """Frames the node gave up on: whoever waits for them is told (errno 130)."""
        failure = Failure()
        if failure.check(GaveUp):
            log.error("{n} frames for users {users} could not be stored offline ({error}); "
                      "their senders are told to send again", n=len(rows),
                      users=sorted({row[0] for row in rows}), error=failure.value)
        else:
            log.failure("storing {n} frames offline", failure, n=len(rows))

    async def _with_retries(self, write: Callable[[], Awaitable[T]], frames: int) -> T:
        """Run `write` until it succeeds; raise GaveUp after the retries or when the buffer
        of waiting frames is full. Errors other than an unreachable store are not retried.

        Frames count against the buffer from their first failure until they are stored or
        given up, retries included: counted only while they slept between retries, a burst
        got more frames in than the buffer holds whenever others were retrying."""
        try:
            result = await write()
        except ServiceUnavailable as e:
            if self._waiting + frames > self.buffer:
                raise GaveUp(f"--offline-buffer of {self.buffer} frames is full") from e
            self._down(e)
            error = e
        else:
            self._up()
            return result
        self._waiting += frames
        try:
            return await self._retry(write, error)
        finally:
            self._waiting -= frames

    async def _retry(self, write: Callable[[], Awaitable[T]], error: Exception) -> T:
        """`write` again after each of the retry delays; GaveUp when the last fails too."""
        for delay in self._retry_seconds:
            await deferLater(self._clock, delay, lambda: None)
            try:
                result = await write()
            except ServiceUnavailable as e:
                self._down(e)
                error = e
            else:
                self._up()
                return result
        raise GaveUp(f"store unreachable for {sum(self._retry_seconds):.0f} s: {error}"
                     ) from error

    def _down(self, error: Exception) -> None:
        if not self._outage:
            self._outage = True
            log.warn("offline store unreachable ({error}); holding frames and retrying",
                     error=error)

    def _up(self) -> None:
        if self._outage:
            self._outage = False
            log.info("offline store reachable again")

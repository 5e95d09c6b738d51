"""Keeping every accepted chat message without a database round trip on the message path.

Rows are gathered on the reactor and written together: one interaction with one multi-row
INSERT per FLUSH_SECONDS or per FLUSH_ROWS, whichever comes first. A write that fails is
retried a second later with what came meanwhile (up to MAX_PENDING rows are held; past that
the oldest are dropped with a warning: history is a record, delivery does not depend on it).
Messages older than `--history-days` are deleted in the background, EXPIRE_BATCH at a time.
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd.messages import ServiceUnavailable
from chatd.mids import mid_floor
from chatd.store import Store
from chatd.store.history import HistoryRow

log = Logger()

DEFAULT_DAYS = 90
FLUSH_SECONDS = 0.25
# A batch is a burst of the database's work (7-10 us a row in MariaDB) on cores it may share
# with the node: 2,000 rows put the 1:1 p99 at 1.2-1.7 x the bare relay's, 500 at 1.05-1.26
# for the same rate (docs/performance.md, round seven).
FLUSH_ROWS = 500
RETRY_SECONDS = 1.0
MAX_PENDING = 200_000
EXPIRE_SECONDS = 60.0
EXPIRE_BATCH = 1000


class HistoryWriter:
    """One per node. `record` is called once per accepted message, on the hot path."""

    def __init__(self, store: Store, clock: IReactorTime, days: int = DEFAULT_DAYS) -> None:
        self.store = store
        self.days = days
        self.enabled = days > 0
        self._clock = clock
        self._rows: list[HistoryRow] = []  # frames with their line end
        self._timer: Any = None
        self._writing: Deferred[None] | None = None
        self._failed = False  # the last write failed: the next waits RETRY_SECONDS
        self._expirer = LoopingCall(self.expire)
        self._expirer.clock = clock

    def start(self) -> None:
        if self.enabled:
            self._expirer.start(EXPIRE_SECONDS, now=True)

    async def stop(self) -> None:
        """Write everything gathered (called at shutdown, before the store closes)."""
        if self._expirer.running:
            self._expirer.stop()
        await self.flush()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def record(self, mid: int, sender: int, frame: dict[str, Any], data: bytes) -> None:
        """Keep one message: `data` is its encoded frame as delivered."""
        if not self.enabled:
            return
        group_id = frame.get("groupid")
        if group_id is None:
            to = frame["to"]
            row = (mid, min(sender, to), max(sender, to), sender, data)
        else:
            row = (mid, 0, group_id, sender, data)
        rows = self._rows
        rows.append(row)
        if self._writing is not None:
            return  # the running write's end starts the next
        if self._timer is None or (len(rows) == FLUSH_ROWS and not self._failed):
            self._write_soon(self._next_delay())

    def forget(self, mid: int) -> None:
        """A message was refused after it was recorded (its recipient does not exist)."""
        kept = len(self._rows)
        self._rows = [r for r in self._rows if r[0] != mid]
        if len(self._rows) == kept:
            d = Deferred.fromCoroutine(self.store.forget_history(mid))
            d.addErrback(lambda f: log.warn("history: cannot forget mid {mid}: {error}",
                                            mid=mid, error=f.value))

    def _write_soon(self, delay: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._write)

    def _write(self) -> None:
        """Start one write unless one is running (its end starts the next)."""
        self._timer = None
        if self._writing is None and self._rows:
            self._writing = Deferred.fromCoroutine(self._write_batch())

    async def _write_batch(self) -> None:
        rows, self._rows = self._rows, []
        failed = False
        try:
            await self.store.save_history([(mid, lo, hi, sender, data[:-1])
                                           for mid, lo, hi, sender, data in rows])
        except ServiceUnavailable as e:
            self._keep_for_retry(rows, e)
            failed = True
        except Exception:
            log.failure("history: writing {n} messages", n=len(rows))
        finally:
            self._writing = None
        self._failed = failed
        if self._rows:
            self._write_soon(self._next_delay())

    def _next_delay(self) -> float:
        """When to write what is gathered: a full batch at once, after a failure not before
        RETRY_SECONDS, otherwise FLUSH_SECONDS from now."""
        if self._failed:
            return RETRY_SECONDS
        return 0 if len(self._rows) >= FLUSH_ROWS else FLUSH_SECONDS

    def _keep_for_retry(self, rows: list[Any], error: Exception) -> None:
        self._rows = rows + self._rows
        dropped = len(self._rows) - MAX_PENDING
        if dropped > 0:
            del self._rows[:dropped]
        log.warn("history: cannot write {n} messages ({error}); retrying, {dropped} dropped",
                 n=len(rows), error=error, dropped=max(dropped, 0))

    async def flush(self) -> None:
        """Write what is gathered now, one attempt (rows of a failed write wait for the
        timer): HISTORY and SYNC call it so that they see what this node accepted."""
        if self._writing is not None:
            await self._writing
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._write()
        if self._writing is not None:
            await self._writing

    def expire(self) -> Deferred[None]:
        """Delete kept messages older than `days`, a batch per transaction, until none is
        left (another tick carries on if the store is away)."""
        return Deferred.fromCoroutine(self._expire())

    async def _expire(self) -> None:
        before = mid_floor(self._clock.seconds() - self.days * 86400)
        try:
            while await self.store.expire_history(before, EXPIRE_BATCH) == EXPIRE_BATCH:
                pass
            await self.store.expire_actions(before)  # what message actions left on them
        except ServiceUnavailable as e:
            log.warn("history: expiry postponed ({error})", error=e)


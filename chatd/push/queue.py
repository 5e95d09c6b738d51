"""The bounded queue of pushes: a slow or hanging push service fills it and later pushes are
dropped (counted), never slowing chat. A few pushes run at once; one the push service asks to
repeat (429, 5xx, no answer) is tried again after a back-off, a bounded number of times."""

from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from enum import Enum
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

DEFAULT_QUEUE = 10_000
DEFAULT_CONCURRENCY = 32
DEFAULT_RETRIES = 3
BACKOFF_SECONDS = 2.0  # the first retry's wait; doubles each time
MAX_RETRY_AFTER = 300.0  # the longest Retry-After a push service may ask for


class Outcome(Enum):
    SENT = "sent"
    GONE = "gone"  # 404/410: the subscription was removed
    RETRY = "retry"
    FAILED = "failed"


# One push: returns its outcome and, for RETRY, the seconds the service asked to wait (0: ours)
Job = Callable[[], Awaitable[tuple[Outcome, float]]]


class PushStats:
    """Counters in chatd/metrics.py's manner: plain numbers, families at scrape time."""

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys((o.value for o in Outcome if o is not Outcome.RETRY), 0)
        self.retries = 0
        self.dropped = 0


class PushQueue:
    """Runs jobs `concurrency` at a time; holds at most `capacity` waiting or retrying."""

    def __init__(self, clock: IReactorTime, capacity: int = DEFAULT_QUEUE,
                 concurrency: int = DEFAULT_CONCURRENCY, retries: int = DEFAULT_RETRIES) -> None:
        self.clock = clock
        self.capacity = capacity
        self.concurrency = concurrency
        self.retries = retries
        self.stats = PushStats()
        self._waiting: deque[tuple[Job, int]] = deque()
        self._retrying: set[Any] = set()  # the delayed calls of jobs waiting to retry
        self._running = 0
        self._idle: list[Deferred[None]] = []
        self._stopped = False

    def length(self) -> int:
        """Pushes waiting, running or waiting to retry (a metric)."""
        return len(self._waiting) + self._running + len(self._retrying)

    def offer(self, job: Job) -> bool:
        """Queue a push; False (counted as dropped) when the queue is full."""
        if len(self._waiting) + len(self._retrying) >= self.capacity or self._stopped:
            self.stats.dropped += 1
            return False
        self._waiting.append((job, 0))
        self._next()
        return True

    def _next(self) -> None:
        while self._waiting and self._running < self.concurrency:
            job, attempt = self._waiting.popleft()
            self._running += 1
            Deferred.fromCoroutine(self._run(job, attempt))

    async def _run(self, job: Job, attempt: int) -> None:
        try:
            outcome, wait = await job()
        except Exception:
            log.failure("push failed")
            outcome, wait = Outcome.FAILED, 0.0
        finally:
            self._running -= 1
        if outcome is Outcome.RETRY:
            self._retry(job, attempt, wait)
        else:
            self.stats.outcomes[outcome.value] += 1
        self._next()
        if not self.length():
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def _retry(self, job: Job, attempt: int, wait: float) -> None:
        if self._stopped:
            return
        if attempt >= self.retries:
            self.stats.outcomes[Outcome.FAILED.value] += 1
            return
        self.stats.retries += 1
        delay = min(wait, MAX_RETRY_AFTER) if wait > 0 else BACKOFF_SECONDS * 2 ** attempt

        def again() -> None:
            self._retrying.discard(call)
            self._waiting.append((job, attempt + 1))
            self._next()
        call = self.clock.callLater(delay, again)
        self._retrying.add(call)

    def stop(self) -> None:
        """Forget the pushes waiting or waiting to retry (the node is stopping)."""
        self._stopped = True
        for call in self._retrying:
            call.cancel()
        self._retrying.clear()
        self._waiting.clear()

    def idle(self) -> Deferred[None]:
        """Fires when nothing is queued, running or retrying (for tests and the bench)."""
        d: Deferred[None] = Deferred()
        if self.length():
            self._idle.append(d)
        else:
            d.callback(None)
        return d


class PushCollector(Collector):
    """The push queue's metrics, registered beside the node's in tap.admin_listener."""

    def __init__(self, queue: PushQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        stats = self.queue.stats
        pushes = CounterMetricFamily("chatd_pushes", "Pushes by outcome: sent (accepted by "
                                     "the push service), gone (404/410, the subscription was "
                                     "removed), failed (refused, or retries spent)",
                                     labels=["outcome"])
        for outcome, count in sorted(stats.outcomes.items()):
            pushes.add_metric([outcome], count)
        yield pushes
        yield CounterMetricFamily("chatd_push_retries", "Pushes tried again after 429, 5xx "
                                  "or no answer", value=stats.retries)
        yield CounterMetricFamily("chatd_pushes_dropped", "Pushes dropped because the push "
                                  "queue was full (--push-queue)", value=stats.dropped)
        yield GaugeMetricFamily("chatd_push_queue", "Pushes waiting, running or waiting to "
                                "retry", value=self.queue.length())

"""Salted scrypt password hashes, computed on a thread pool so the reactor never waits."""

import base64
import hashlib
import hmac
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from chatd.messages import ChatError, Errno
from chatd.metrics import Stats

DEFAULT_COST = 14  # log2 of scrypt's n: 2^14 with r=8 takes 16 MiB and tens of milliseconds
MAX_COST = 18  # 256 MiB per hash; above that OpenSSL's memory limit is in reach
BLOCK_SIZE = 8
PARALLEL = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
# Hashing threads run this much nicer than the reactor: a login storm then uses the CPU the
# reactor leaves idle instead of taking turns with it, and chat latency stays where it was.
HASH_NICENESS = 10
# Seconds a new hash may expect to wait for a thread; beyond it LOGIN/REG are refused at once
# (errno 141). The expected wait is the queue's length times the mean time of a recent hash.
DEFAULT_HASH_WAIT = 2.0
_MEAN_WEIGHT = 0.2  # of the latest hash in the running mean
# A thread takes several queued hashes at once when they are cheap (low costs, as in tests and
# benchmarks): each trip to a thread and back costs the reactor more than such a hash. A trip
# holds hashes worth about this many seconds; at production costs that is one hash.
BATCH_SECONDS = 0.002

T = TypeVar("T")
_thread = threading.local()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, cost: int, r: int, p: int) -> bytes:
    n = 1 << cost
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
        maxmem=256 * n * r + (1 << 20), dklen=_HASH_BYTES,
    )


def hash_password(password: str, cost: int) -> str:
    """Return `scrypt$cost$r$p$salt$hash`; the parameters travel with the hash so a later
    change of `--password-cost` still verifies old accounts."""
    salt = os.urandom(_SALT_BYTES)
    digest = _scrypt(password, salt, cost, BLOCK_SIZE, PARALLEL)
    return f"scrypt${cost}${BLOCK_SIZE}${PARALLEL}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Constant-time comparison against a stored hash; a malformed record never matches."""
    try:
        scheme, cost, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(cost), int(r), int(p))
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except (ValueError, TypeError, OverflowError, MemoryError):
        return False


def _background(fn: Callable[..., T], *args: object) -> T:
    """Run `fn` on this pool thread after making the thread HASH_NICENESS nicer (once per thread;
    Linux schedules threads separately, elsewhere this is a no-op)."""
    if not getattr(_thread, "lowered", False):
        _thread.lowered = True
        tid = threading.get_native_id()
        try:
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(nice + HASH_NICENESS, 19))
        except (AttributeError, OSError):
            pass
    return fn(*args)


class Owner(Protocol):
    """Who asked for a hash: a connection, whose work is dropped once it has closed."""

    connected: bool


class PasswordHasher:
    """Hashes and checks passwords on its own thread pool, one low-priority thread per core by
    default.

    The queue in front of the pool is fair and bounded, so that one client cannot make
    everybody else's login wait. A LOGIN or REG runs inside `slot(owner)`: an owner has one
    slot (errno 140 for a second request while the first is in progress, before it costs a
    query or a hash), and no slot is given while a hash would wait more than `max_wait`
    seconds for a thread (errno 141). The work of an owner that disconnected is dropped before
    it is hashed. The bound is in time, not in hashes, so that it means the same at any cost.

    Logins of unknown users are checked against a dummy hash of the same cost, so response
    time does not tell which user ids exist.
    """

    def __init__(self, reactor: IReactorThreads, cost: int = DEFAULT_COST,
                 threads: int | None = None, max_wait: float = DEFAULT_HASH_WAIT,
                 stats: Stats | None = None) -> None:
        self.cost = cost
        self.max_wait = max_wait
        self.stats = stats or Stats()
        self._reactor = reactor
        self._threads = threads or os.cpu_count() or 1
        self._pool = ThreadPool(minthreads=0, maxthreads=self._threads, name="chatd-passwords")
        started = time.monotonic()
        self._dummy = hash_password(os.urandom(8).hex(), cost)
        self._mean = time.monotonic() - started  # seconds a hash takes, from a running mean
        self._queue: deque[tuple[Owner, Callable[..., Any], tuple[object, ...],
                                 Deferred[Any]]] = deque()
        self._owners: set[int] = set()  # id() of the owners holding their slot
        self._running = 0

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    @contextmanager
    def slot(self, owner: Owner) -> Iterator[None]:
        """The owner's one LOGIN/REG in progress; raises ChatError 140 or 141 when refused."""
        if id(owner) in self._owners:
            raise ChatError(Errno.HASH_PENDING)
        if len(self._queue) * self._mean / self._threads > self.max_wait:
            raise ChatError(Errno.BUSY)
        self._owners.add(id(owner))
        try:
            yield
        finally:
            self._owners.discard(id(owner))

    def hash(self, owner: Owner, password: str) -> Deferred[str]:
        """A new salted hash, made unless the owner has gone by the time a thread is free."""
        return self._submit(owner, hash_password, password, self.cost)

    def check(self, owner: Owner, password: str, stored: str | None) -> Deferred[bool]:
        """Whether `password` matches `stored` (None: an unknown user, never matches)."""
        if stored is None:
            return self._submit(owner, check_password, password, self._dummy).addCallback(
                lambda _: False)
        return self._submit(owner, check_password, password, stored)

    def queued(self) -> int:
        """Hashes waiting for a thread (a metric)."""
        return len(self._queue)

    def _submit(self, owner: Owner, fn: Callable[..., T], *args: object) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self._queue.append((owner, fn, args, d))
        self._next()
        return d

    def _next(self) -> None:
        """Start queued work on free threads, skipping the owners that went away."""
        while self._running < self._threads and self._queue:
            jobs = self._take()
            if not jobs:
                continue
            self._running += 1
            work = deferToThreadPool(self._reactor, self._pool, _background, _each,
                                     [(fn, args) for fn, args, _ in jobs])
            work.addBoth(self._finished, [d for _, _, d in jobs], time.monotonic())

    def _take(self) -> list[tuple[Callable[..., Any], tuple[object, ...], Deferred[Any]]]:
        """The next hashes for one thread: as many as BATCH_SECONDS holds, shared fairly
        with the other free threads, of owners still connected."""
        free = self._threads - self._running
        count = min(max(1, int(BATCH_SECONDS / self._mean)) if self._mean > 0 else 1,
                    math.ceil(len(self._queue) / free))
        jobs = []
        for _ in range(count):
            owner, fn, args, d = self._queue.popleft()
            if owner.connected:
                jobs.append((fn, args, d))
            else:
                d.errback(ChatError(Errno.BUSY))
        return jobs

    def _finished(self, results: list[object] | Failure, waiting: list[Deferred[Any]],
                  started: float) -> None:
        self._running -= 1
        took = (time.monotonic() - started) / len(waiting)
        for _ in waiting:
            self.stats.hash_time.observe(took)
        self._mean += _MEAN_WEIGHT * (took - self._mean)
        self._next()
        outcomes = [results] * len(waiting) if isinstance(results, Failure) else results
        for d, result in zip(waiting, outcomes, strict=True):
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


def _each(jobs: list[tuple[Callable[..., Any], tuple[object, ...]]]) -> list[object]:
    """Run hashes one after the other on this thread; each one's failure is its own."""
    results: list[object] = []
    for fn, args in jobs:
        try:
            results.append(fn(*args))
        except Exception:  # noqa: BLE001 - handed to that hash's caller
            results.append(Failure())
    return results

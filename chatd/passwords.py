"""Salted scrypt password hashes, computed on a thread pool so the reactor never waits."""

import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

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


class PasswordHasher:
    """Hashes and checks passwords on its own thread pool, one low-priority thread per core by
    default.

    Logins of unknown users are checked against a dummy hash of the same cost, so response
    time does not tell which user ids exist.
    """

    def __init__(self, reactor: IReactorThreads, cost: int = DEFAULT_COST,
                 threads: int | None = None, stats: Stats | None = None) -> None:
        self.cost = cost
        self.stats = stats or Stats()
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=0, maxthreads=threads or os.cpu_count() or 1,
                                name="chatd-passwords")
        self._dummy = hash_password(os.urandom(8).hex(), cost)

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    def hash(self, password: str) -> Deferred[str]:
        return self._run(hash_password, password, self.cost)

    def check(self, password: str, stored: str | None) -> Deferred[bool]:
        if stored is None:
            return self._run(check_password, password, self._dummy).addCallback(lambda _: False)
        return self._run(check_password, password, stored)

    def queued(self) -> int:
        """Hashes waiting for a thread (a metric)."""
        return self._pool.q.qsize()

    def _run(self, fn: Callable[..., T], *args: object) -> Deferred[T]:
        """Run on the pool; the time from here to the result, queueing included, is counted."""
        started = time.monotonic()
        d = deferToThreadPool(self._reactor, self._pool, _background, fn, *args)
        return d.addBoth(self._timed, started)

    def _timed(self, result: T, started: float) -> T:
        self.stats.hash_time.observe(time.monotonic() - started)
        return result

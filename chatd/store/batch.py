"""Store calls of one kind that arrive while one is running share the next interaction.

A login storm asks for thousands of user records and welcomes a second. Each interaction is a
hop to a pool thread and back, a Deferred chain and a commit; on a node whose reactor is the
bottleneck those hops, not the queries, were most of a login's store cost. A `Batcher` runs
at most RUNNING interactions of its kind at a time and gathers the requests that arrive
meanwhile into the next one, so the batches grow with the load and a lone request waits for nothing
but the next reactor turn. Each caller still gets its own answer, or its own error.
"""

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred

K = TypeVar("K")
R = TypeVar("R")
Cursor = Any

MAX_BATCH = 200  # requests per interaction
RUNNING = 2  # interactions of one kind at a time: one runs its queries while one is answered

# (name, txn, keys) -> Deferred of one result per key: a value, or the exception for that key
RunBatch = Callable[[str, Callable[..., list[Any]], list[Any]], Deferred[list[Any]]]


class Batcher(Generic[K, R]):
    """Runs `work(cursor, keys)` for the keys asked for since the last interaction started,
    RUNNING interactions at a time.

    `work` returns one entry per key, in order: the key's result, or an exception instance
    that becomes that caller's failure alone (see `each`).
    """

    def __init__(self, name: str, work: Callable[[Cursor, list[K]], list[R | Exception]],
                 run: RunBatch, call_later: Callable[..., Any]) -> None:
        self.name = name
        self._work = work
        self._run = run
        self._call_later = call_later
        self._waiting: list[tuple[K, Deferred[R]]] = []
        self._running = 0  # interactions running, or about to start

    def __call__(self, key: K) -> Deferred[R]:
        d: Deferred[R] = Deferred()
        self._waiting.append((key, d))
        if self._running < RUNNING:
            self._running += 1
            self._call_later(0, self._flush)
        return d

    def _flush(self) -> None:
        chunk, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
        if not chunk:
            self._running -= 1
            return
        d = self._run(self.name, self._work, [key for key, _ in chunk])
        d.addCallbacks(_answer, _fail, callbackArgs=(chunk,), errbackArgs=(chunk,))
        d.addBoth(lambda _: self._flush())


def _answer(results: list[Any], chunk: list[tuple[Any, Deferred[Any]]]) -> None:
    for (_, d), result in zip(chunk, results, strict=True):
        if isinstance(result, Exception):
            d.errback(result)
        else:
            d.callback(result)


def _fail(failure: Any, chunk: list[tuple[Any, Deferred[Any]]]) -> None:
    for _, d in chunk:
        d.errback(failure)


def marks(n: int) -> str:
    """The placeholders of an IN list of `n` values."""
    return ", ".join("?" * n)


def grouped(pairs: Iterable[tuple[K, R]]) -> dict[K, list[R]]:
    """(key, item) pairs as a list of items per key, in the order they came: the rows of a
    query for a batch of users, handed back user by user."""
    found: dict[K, list[R]] = {}
    for key, item in pairs:
        found.setdefault(key, []).append(item)
    return found

"""Counting the copies of one message until every one is safe.

A chat message becomes one copy per recipient (per device, on whichever node). Each copy is
made safe in one of three ways: its device acknowledges it (or it is written to an
original-dialect session, which has no acknowledgements), another node reports it safe, or
it is stored offline. Whoever waits for a copy holds a `Waiter`; the copies of one message
share a `Fanout`, which tells the message's `Receipt` once: all safe, or one failed.
These are plain objects with slots rather than Deferreds or closures: this runs once per
message on the hot path.
"""

from collections.abc import Set as AbstractSet
from typing import Protocol

from twisted.python.failure import Failure


class Waiter(Protocol):
    """Waits for one copy: `done` once it is safe, `failed` when it cannot be made safe."""

    def done(self) -> None: ...

    def failed(self, failure: Failure) -> None: ...


class Receipt(Protocol):
    """Who waits for the copies of one message: the sender's side, told once."""

    def delivered(self, missing: AbstractSet[int], full: AbstractSet[int]) -> None:
        """Every copy is safe; `missing`: users that do not exist, `full`: users whose
        offline mailbox is full (both only known for copies that had to be stored)."""

    def failed(self, failure: Failure) -> None:
        """A copy could not be made safe."""


NOBODY: frozenset[int] = frozenset()


class Fanout:
    """Counts the copies of one message until all are safe, then tells the receipt. The sets
    of users are shared empty ones until a stored copy needs them."""

    __slots__ = ("missing", "full", "_left", "_receipt")

    def __init__(self, copies: int, receipt: Receipt) -> None:
        self.missing: AbstractSet[int] = NOBODY
        self.full: AbstractSet[int] = NOBODY
        self._left = copies
        self._receipt: Receipt | None = receipt
        if copies == 0:
            self.done(0)

    def done(self, copies: int = 1) -> None:
        self._left -= copies
        if self._left <= 0 and self._receipt is not None:
            receipt, self._receipt = self._receipt, None
            receipt.delivered(self.missing, self.full)

    def failed(self, failure: Failure) -> None:
        if self._receipt is not None:
            receipt, self._receipt = self._receipt, None
            receipt.failed(failure)


class First:
    """One copy sent to each of a user's devices: safe once the first device has it (one
    device holding a message is what SEND_ACK promises); failed only if that is the first
    outcome."""

    __slots__ = ("_waiter",)

    def __init__(self, waiter: Waiter) -> None:
        self._waiter: Waiter | None = waiter

    def done(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.done()

    def failed(self, failure: Failure) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.failed(failure)

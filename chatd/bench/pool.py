"""The parent's side of the workers: spawn them, send commands, collect results, relay the
group phase's turn-taking, and print progress once a second."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from time import monotonic
from typing import Any

import ujson
from twisted.internet.defer import Deferred, DeferredList, FirstError
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure

STOP_GRACE = 5.0
"""Seconds a worker has to exit after its stdin is closed before it is killed."""


class WorkerFailed(Exception):
    """A worker exited, or reported an error, while the parent waited for it."""


async def gather(answers: list[Deferred[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every worker's answer, or the first worker's failure as it is."""
    try:
        results = await DeferredList(answers, fireOnOneErrback=True, consumeErrors=True)
    except FirstError as e:
        e.subFailure.raiseException()
    return [result for _, result in results]


class WorkerProcess(ProcessProtocol):
    """One worker: commands go to its stdin, events come from its stdout; its stderr is the
    parent's, so a traceback shows up as it happens."""

    def __init__(self, wid: int, on_event: Callable[[WorkerProcess, dict[str, Any]], None]
                 ) -> None:
        self.wid = wid
        self.on_event = on_event
        self.done = 0
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""
        self._waiting: Deferred[dict[str, Any]] | None = None

    def send(self, cmd: dict[str, Any]) -> None:
        self.transport.write(ujson.dumps(cmd).encode() + b"\n")

    def request(self, cmd: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """Send a command and wait for the worker's `ready` or `result` event."""
        self.done = 0
        self._waiting = Deferred()
        self.send(cmd)
        return self._waiting

    def answer(self, event: dict[str, Any]) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(event)

    def fail(self, why: str) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(WorkerFailed(f"worker {self.wid}: {why}"))

    def outReceived(self, data: bytes) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            self.on_event(self, ujson.loads(line))

    def processEnded(self, reason: Failure) -> None:
        self.fail(f"exited: {reason.getErrorMessage()}")
        self.ended.callback(None)


class Progress:
    """One line per second on stderr: phase, done/total, current rate."""

    def __init__(self, reactor: Any, workers: list[WorkerProcess]) -> None:
        self.workers = workers
        self.loop = LoopingCall(self.show)
        self.loop.clock = reactor
        self.name = ""
        self.total = 0
        self.unit = ""
        self.combine: Callable[[list[int]], int] = sum
        self._last = (0.0, 0)
        self._started = 0.0

    def start(self, name: str, total: int, unit: str,
              combine: Callable[[list[int]], int] = sum) -> None:
        """`combine` makes one figure of the workers' progress: a sum of what they have done,
        or the max of the seconds they have waited."""
        self.name, self.total, self.unit, self.combine = name, total, unit, combine
        self._started = monotonic()
        self._last = (self._started, 0)
        self.loop.start(1.0, now=False)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def show(self) -> None:
        now, done = monotonic(), self.combine([w.done for w in self.workers])
        then, before = self._last
        self._last = (now, done)
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        if self.unit.endswith("/s") and now > then:
            rate = f"{(done - before) / (now - then):,.0f} {self.unit}"
        else:
            rate = self.unit
        print(f"chatd-bench: {now - self._started:6.1f}s {self.name:<7} {done}/{self.total}"
              f"{share} {rate}", file=sys.stderr, flush=True)


class GroupHub:
    """Counts, for each group message, the workers whose members all have it; when all the
    workers that hold recipients do, the sender's worker is told to go on."""

    def __init__(self, owner: dict[int, int], expected: dict[int, int],
                 send: Callable[[int, dict[str, Any]], None]) -> None:
        self.owner = owner
        self.expected = expected
        self.send = send
        self.counts: dict[tuple[int, int], int] = {}

    def done(self, items: list[list[int]]) -> None:
        ready: dict[int, list[list[int]]] = {}
        for sender, seq in items:
            key = (sender, seq)
            count = self.counts.pop(key, 0) + 1
            if count < self.expected[sender]:
                self.counts[key] = count
            else:
                ready.setdefault(self.owner[sender], []).append([sender, seq])
        for wid, ready_items in ready.items():
            self.send(wid, {"cmd": "gnext", "items": ready_items})


class WorkerPool:
    """The worker processes and the one command each is working on."""

    def __init__(self, reactor: Any, count: int) -> None:
        self.reactor = reactor
        self.workers = [WorkerProcess(w, self._event) for w in range(count)]
        self.progress = Progress(reactor, self.workers)
        self.hub: GroupHub | None = None
        self._fins: set[int] = set()
        self._wanted: set[int] = set()
        self._all_fin: Deferred[None] | None = None

    def spawn(self) -> None:
        argv = [sys.executable, "-m", "chatd.bench.worker"]
        for worker in self.workers:
            self.reactor.spawnProcess(worker, sys.executable, argv, env=dict(os.environ),
                                      childFDs={0: "w", 1: "r", 2: 2})

    async def run(self, args: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """Send each listed worker its command; the answers, by worker."""
        wids = sorted(args)
        return dict(zip(wids, await gather([self.workers[w].request(args[w]) for w in wids]),
                        strict=True))

    async def run_phase(self, name: str, args: dict[int, dict[str, Any]], total: int,
                        unit: str, combine: Callable[[list[int]], int] = sum
                        ) -> dict[int, dict[str, Any]]:
        self.progress.start(name, total, unit, combine)
        try:
            return await self.run(args)
        finally:
            self.progress.stop()

    async def run_group(self, args: dict[int, dict[str, Any]], hub: GroupHub, total: int
                        ) -> dict[int, dict[str, Any]]:
        """The group phase ends when every worker's senders are through (`gfin`)."""
        all_fin: Deferred[None] = Deferred()
        self.hub, self._fins, self._wanted, self._all_fin = hub, set(), set(args), all_fin
        self.progress.start("group", total, "deliveries/s")

        def abort(failure: Failure) -> Failure | None:
            """A worker failed: before the end, that is the end; after it, the answer."""
            if all_fin.called:
                return failure
            all_fin.errback(failure)
            return None

        wids = sorted(args)
        try:
            answers = Deferred.fromCoroutine(
                gather([self.workers[w].request(args[w]) for w in wids]))
            answers.addErrback(abort)
            await all_fin
            for w in wids:
                self.workers[w].send({"cmd": "group_stop"})
            results = await answers
        finally:
            self.progress.stop()
            self.hub = None
        return dict(zip(wids, results, strict=True))

    def _event(self, worker: WorkerProcess, event: dict[str, Any]) -> None:
        kind = event["ev"]
        if kind in ("ready", "result"):
            worker.answer(event)
        elif kind == "prog":
            worker.done = event["done"]
        elif kind == "gdone" and self.hub is not None:
            self.hub.done(event["items"])
        elif kind == "gfin":
            self._fin(worker.wid)
        elif kind == "error":
            worker.fail(event["error"])

    def _fin(self, wid: int) -> None:
        self._fins.add(wid)
        if self._all_fin is not None and self._fins >= self._wanted and not self._all_fin.called:
            self._all_fin.callback(None)

    def send(self, wid: int, cmd: dict[str, Any]) -> None:
        self.workers[wid].send(cmd)

    async def close(self) -> None:
        """Close every worker's stdin (they exit on it); kill those that linger."""
        for worker in self.workers:
            if not worker.ended.called:
                worker.transport.closeStdin()
        deadline = monotonic() + STOP_GRACE
        while monotonic() < deadline and not all(w.ended.called for w in self.workers):
            await deferLater(self.reactor, 0.05)
        for worker in self.workers:
            if not worker.ended.called:
                try:
                    worker.transport.signalProcess("KILL")
                except ProcessExitedAlready:
                    pass

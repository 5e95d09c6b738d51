"""The shape of a worker's phase: it gets every event of the worker's connections until it
finishes, then its result goes to the parent."""

from __future__ import annotations

from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from chatd.bench.stats import PhaseResult
from chatd.bench.wire import ERROR, BenchConn, User
from chatd.messages import SEND_ACK

if TYPE_CHECKING:
    from chatd.bench.worker import Worker


class Phase:
    """The default behaviour: count what is unexpected, ignore the rest.

    Subclasses override the events they care about and call `finish` once; `expire` is
    called instead when the run's deadline (--max-time) comes first.
    """

    name = "between"
    unit = ""

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        self.worker = worker
        self.result = PhaseResult(self.name, self.unit)
        self.deadline: int = cmd.get("deadline", 0)
        self.timeout_ns = int(worker.config.get("timeout", 5.0) * 1e9)
        self.finished = False
        self.data: dict[str, Any] = {}

    def start(self) -> None:
        """Begin the phase's work."""

    def progress(self) -> int:
        return self.result.ok + self.result.fail + self.result.lost

    def tick(self, now: int) -> None:
        """Called every 100 ms: time-outs are checked here, not with a timer per request."""

    def expire(self) -> None:
        self.finish()

    def finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.result.t1 = self.result.t1 or monotonic_ns()
            self.worker.phase_done(self)

    def on_connected(self, conn: BenchConn) -> None:
        """A connection attempt of an earlier phase that completed late: keep it."""

    def on_connect_failed(self, user: User, why: str) -> None:
        """A connection attempt of an earlier phase that failed late."""

    def on_lost(self, user: User, why: str) -> None:
        self.result.extra["disconnects"] = self.result.extra.get("disconnects", 0) + 1

    def on_device_lost(self, conn: BenchConn, why: str) -> None:
        """One of a user's other devices (--devices) lost its connection."""
        extra = self.result.extra
        extra["device_disconnects"] = extra.get("device_disconnects", 0) + 1

    def on_device_payloads(self, conn: BenchConn, payloads: list[bytes]) -> None:
        """Bench payloads that reached one of a user's other devices (--devices)."""
        for _ in payloads:
            self.stray()

    def on_payloads(self, conn: BenchConn, payloads: list[bytes]) -> None:
        """The bench payloads (`B|<kind>|<sender>|<seq>|<send time ns>`) of one read."""
        for _ in payloads:
            self.stray()

    def stray(self) -> None:
        """A bench payload no one waits for (a late one from an earlier phase)."""
        self.result.extra["stray"] = self.result.extra.get("stray", 0) + 1

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        msgid = frame.get("msgid")
        if msgid == ERROR:
            self.result.error(f"ERROR_MSG {frame}")
        elif msgid == SEND_ACK:
            self.result.extra["send_acks"] = self.result.extra.get("send_acks", 0) + 1

    def on_garbage(self, conn: BenchConn, line: bytes) -> None:
        self.result.error(f"not a JSON object: {line[:100]!r}")


class ClosedLoop(Phase):
    """Senders with one message out at a time, for chat and group.

    With --devices N the loops run on the users' first devices; the others' deliveries are
    counted apart (`devices`), and the phase also waits for them at the end.

    The phase's work is through when the last sender is; in proto 2 it then waits (up to
    --timeout) for the SEND_ACKs of what it sent, so that they are counted here and do not
    spill into the next phase. The rate is taken at the first moment, not the second.
    """

    def __init__(self, worker: Worker, cmd: dict[str, Any], senders: int) -> None:
        super().__init__(worker, cmd)
        self.active = senders
        self.through_at = 0
        self.devices = PhaseResult(f"{self.name}.dev", self.unit)
        """What the users' other devices received (--devices): each should have every
        message to the user and a copy of every message the user sent."""

    def start(self) -> None:
        loops = self.loops()
        if not loops:
            self.all_through()
        for loop in loops:
            self.send(loop)

    def progress(self) -> int:
        return self.result.ok

    def loops(self) -> list[Any]:
        """The senders of this worker, each with its one message out at a time."""
        raise NotImplementedError

    def send(self, loop: Any) -> None:
        """Send a loop's next message."""
        raise NotImplementedError

    def sender_closed(self) -> None:
        self.active -= 1
        if not self.active:
            self.all_through()

    def all_through(self) -> None:
        self.result.t1 = self.through_at = monotonic_ns()
        self.check_acks()

    def acks_missing(self) -> int:
        if self.worker.proto != 2:
            return 0
        return max(0, self.result.sent - self.result.extra.get("send_acks", 0))

    def device_copies_expected(self) -> int:
        """How many payloads this worker's other devices should get in all."""
        return 0

    def check_acks(self) -> None:
        if self.through_at and not self.acks_missing() and \
                self.devices.ok >= self.device_copies_expected():
            self.done()

    def on_device_payloads(self, conn: BenchConn, payloads: list[bytes]) -> None:
        """Counted, once per device, with their latency; they do not move the loops on."""
        now = monotonic_ns()
        devices, seen, kind = self.devices, conn.seen, self.kind
        latencies: list[int] = []
        for payload in payloads:
            if payload[2:3] != kind:
                self.stray()
            elif payload in seen:
                devices.dup += 1
            else:
                seen.add(payload)
                try:
                    latencies.append((now - int(payload.rsplit(b"|", 1)[1])) // 1000)
                except ValueError:
                    self.on_garbage(conn, payload)
        devices.ok += len(latencies)
        devices.hist.add_many(latencies)
        key = f"device{conn.device}_ok"
        devices.extra[key] = devices.extra.get(key, 0) + len(latencies)
        if self.through_at:
            self.check_acks()

    def finish(self) -> None:
        """The other devices' result travels with the phase's (the parent adds them up)."""
        if self.worker.devices > 1:
            self.devices.t0, self.devices.t1 = self.result.t0, monotonic_ns()
            self.data["devices"] = self.devices.to_wire()
        super().finish()

    def done(self) -> None:
        """Everything sent is through (and acknowledged)."""
        raise NotImplementedError

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        super().on_frame(conn, frame)
        if frame.get("msgid") == SEND_ACK:
            self.check_acks()

    kind = b"?"
    """The payload kind of the phase's messages: b"c" or b"g"."""

    def tick(self, now: int) -> None:
        if self.through_at and now - self.through_at > self.timeout_ns:
            self.result.extra["send_acks_missing"] = self.acks_missing()
            self.done()

"""One load process: its share of the users, on its own epoll reactor.

Run by the parent as `python -m chatd.bench.worker`. Commands arrive on stdin and events
leave on stdout, one JSON object per line (docs/bench.md, "How it works"); end of stdin
means the parent is gone, and the worker closes its connections and exits.
"""

from __future__ import annotations

from time import monotonic_ns, time_ns
from typing import Any

import ujson
from twisted.internet import epollreactor
from twisted.internet.task import LoopingCall
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from chatd.bench.accounts import ConnectPhase, LoginPhase, RegPhase, ResumePhase
from chatd.bench.chat import ChatPhase
from chatd.bench.group import CreateGroupPhase, GroupPhase, JoinGroupPhase
from chatd.bench.history import HistoryCheck, HistoryPhase
from chatd.bench.idle import IdlePhase
from chatd.bench.logs import log_problems_to_stderr
from chatd.bench.phase import Phase
from chatd.bench.plan import resume_target, target_of
from chatd.bench.wire import User, encode
from chatd.connections import raise_file_limit
from chatd.messages import MsgId

PHASES: dict[str, type[Phase]] = {
    "connect": ConnectPhase, "reg": RegPhase, "login": LoginPhase, "chat": ChatPhase,
    "group_create": CreateGroupPhase, "group_join": JoinGroupPhase, "group": GroupPhase,
    "idle": IdlePhase, "resume": ResumePhase, "history": HistoryPhase,
}
TICK = 0.1
PROGRESS_EVERY = 5
"""Ticks between progress events (half a second)."""
HEARTBEAT_INTERVAL = 30.0
"""Proto 2 sessions silent for --idle-timeout (90 s) are closed by the server."""


class Worker:
    """The users of this process, the phase they are in, and the link to the parent."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.control: Control | None = None
        self.config: dict[str, Any] = {}
        self.users: list[User] = []
        self._by_index: dict[int, User] = {}
        self.targets: list[tuple[str, int]] = []
        self.proto = 1
        self.devices = 1
        """Devices each user logs in (--devices)."""
        self.history_checks: dict[User, list[HistoryCheck]] = {}
        """What the history phase verifies: the conversations the loops filled."""
        self.ws = False
        self.ack_delay = 0.0
        """Seconds a received mid may wait to share a RECV_ACK with later ones (--ack-delay)."""
        self.password = ""
        self.cid_prefix = b"%x" % time_ns()
        """Proto 2 cids are this, the phase's letter and the sequence number: the server
        drops a repeated (sender, cid) for ten minutes, across phases and runs."""
        self.phase = Phase(self, {})
        self._ticks = 0
        self._expired = False

    def user(self, index: int) -> User:
        return self._by_index[index]

    def has_user(self, index: int) -> bool:
        return index in self._by_index

    def target_of(self, user: User) -> tuple[str, int]:
        return self.targets[target_of(user.index, len(self.targets))]

    def resume_target_of(self, user: User) -> tuple[str, int]:
        return self.targets[resume_target(user.index, len(self.targets))]

    def expect_history(self, user: User, target: dict[str, int], sent: dict[int, int]
                       ) -> None:
        """`user`'s HISTORY of `target` ({"peer": uid} or {"groupid": gid}) must hold the
        first `sent[i]` messages of each sender index i."""
        self.history_checks.setdefault(user, []).append(HistoryCheck(target, sent))

    def emit(self, event: dict[str, Any]) -> None:
        if self.control is not None:
            self.control.transport.write(ujson.dumps(event).encode() + b"\n")

    def command(self, cmd: dict[str, Any]) -> None:
        kind = cmd["cmd"]
        if kind == "setup":
            self.setup(cmd)
        elif kind == "gnext" and isinstance(self.phase, GroupPhase):
            self.phase.advance(cmd["items"])
        elif kind == "group_stop":
            if isinstance(self.phase, GroupPhase):
                self.phase.stop()
            else:
                self.emit({"ev": "error", "error": "group_stop outside the group phase"})
        elif kind in PHASES:
            self.start_phase(PHASES[kind](self, cmd))

    def setup(self, cmd: dict[str, Any]) -> None:
        """Take this worker's users and settings (targets come as addresses, resolved)."""
        self.config = cmd
        self.proto = cmd["proto"]
        self.devices = cmd.get("devices", 1)
        self.ack_delay = cmd.get("ack_delay", 0.0) / 1000
        self.ws = cmd["ws"]
        self.password = cmd["password"]
        self.targets = [(host, port) for host, port in cmd["targets"]]
        self.users = [User(index, name, uid, self.devices) for index, name, uid in cmd["users"]]
        self._by_index = {u.index: u for u in self.users}
        ticker = LoopingCall(self.tick)
        ticker.clock = self.reactor
        ticker.start(TICK, now=False)
        if self.proto == 2:
            heartbeat = LoopingCall(self.heartbeat)
            heartbeat.clock = self.reactor
            heartbeat.start(HEARTBEAT_INTERVAL, now=False)
        self.emit({"ev": "ready"})

    def start_phase(self, phase: Phase) -> None:
        self.phase = phase
        self._expired = False
        phase.result.t0 = monotonic_ns()
        phase.start()

    def phase_done(self, phase: Phase) -> None:
        self.emit({"ev": "result", "result": phase.result.to_wire(), "data": phase.data})
        if self.phase is phase:
            self.phase = Phase(self, {})

    def tick(self) -> None:
        """Time-outs, the run's deadline, and progress every half second."""
        now = monotonic_ns()
        phase = self.phase
        if phase.deadline and now > phase.deadline and not self._expired:
            self._expired = True
            phase.expire()
        else:
            phase.tick(now)
        self._ticks += 1
        if self._ticks % PROGRESS_EVERY == 0 and type(self.phase) is not Phase:
            self.emit({"ev": "prog", "done": self.phase.progress()})

    def heartbeat(self) -> None:
        frame = encode({"msgid": MsgId.HEARTBEAT})
        for user in self.users:
            for conn in user.conns():
                conn.send(frame)

    def shutdown(self) -> None:
        """The parent is gone: exit; the kernel closes the connections."""
        self.control = None
        if self.reactor.running:
            self.reactor.stop()


class Control(LineOnlyReceiver):
    """The parent's commands on stdin."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 28

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def connectionMade(self) -> None:
        self.worker.control = self

    def lineReceived(self, line: bytes) -> None:
        self.worker.command(ujson.loads(line))

    def connectionLost(self, reason: Failure) -> None:
        self.worker.shutdown()


def main() -> None:
    epollreactor.install()
    from twisted.internet import reactor, stdio

    raise_file_limit()  # thousands of connections need more than the usual 1,024 files
    log_problems_to_stderr()
    stdio.StandardIO(Control(Worker(reactor)), reactor=reactor)
    reactor.run()


if __name__ == "__main__":
    main()

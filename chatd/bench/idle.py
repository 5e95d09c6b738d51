"""The idle phase: hold logged-in connections open, doing nothing, for a set time.

The parent samples the server's RSS (--pid) before the run and at the end of this phase, so
the figure per idle connection includes everything a logged-in session costs the server.
Connections beyond --idle are closed first, so that only the held ones are counted.
"""

from __future__ import annotations

from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from chatd.bench.phase import Phase
from chatd.bench.wire import BenchConn, User

if TYPE_CHECKING:
    from chatd.bench.worker import Worker


class IdlePhase(Phase):
    name = "idle"
    unit = "held"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        self.keep = {worker.user(i) for i in cmd["keep"]}
        self.hold_ns = int(cmd["seconds"] * 1e9)
        self.started = 0

    def start(self) -> None:
        self.started = monotonic_ns()
        for user in self.worker.users:
            if user not in self.keep:
                for conn in user.conns():
                    conn.transport.loseConnection()

    def progress(self) -> int:
        return (monotonic_ns() - self.started) // 1_000_000_000

    def on_lost(self, user: User, why: str) -> None:
        if user in self.keep:
            self.result.error(f"held connection lost: {why}")

    def on_device_lost(self, conn: BenchConn, why: str) -> None:
        self.on_lost(conn.user, why)

    def tick(self, now: int) -> None:
        if now - self.started >= self.hold_ns:
            self.finish()

    def finish(self) -> None:
        self.result.ok = sum(1 for u in self.keep if u.online)
        super().finish()

"""The history phase (--history): every user pages back through the conversations the chat
and group phases filled and checks that every message sent is stored.

Each user reads its checks one after the other, one HISTORY request out at a time, and at
most `window` users of the worker read at once. `ok` counts the messages found, `lost` those
sent but missing; the latency is per HISTORY request.
"""

from __future__ import annotations

from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from chatd.bench.accounts import WindowPhase
from chatd.bench.wire import ERROR, BenchConn, User, encode
from chatd.messages import MsgId

if TYPE_CHECKING:
    from chatd.bench.worker import Worker

PAGE = 100
"""The server's largest HISTORY `limit`."""


class HistoryCheck:
    """One conversation to read: `target` is {"peer": uid} or {"groupid": gid}; it must
    hold the first `sent[i]` messages of each sender index i."""

    __slots__ = ("target", "found", "missing")

    def __init__(self, target: dict[str, int], sent: dict[int, int]) -> None:
        self.target = target
        self.found = {sender: bytearray(count) for sender, count in sent.items()}
        self.missing = sum(sent.values())

    def take(self, messages: list[Any], kind: bytes) -> int:
        """Mark the bench messages of a page as found; how many were new."""
        new = 0
        for message in messages:
            text = message.get("msg") if isinstance(message, dict) else None
            parts = text.split("|") if isinstance(text, str) else []
            if len(parts) != 5 or parts[1] != kind.decode():
                continue
            try:
                seen, seq = self.found.get(int(parts[2])), int(parts[3])
            except ValueError:
                continue
            if seen is not None and seq < len(seen) and not seen[seq]:
                seen[seq] = 1
                new += 1
        self.missing -= new
        return new


class HistoryPhase(WindowPhase):
    name = "history"
    unit = "msgs/s"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        self.checks = {user: list(checks) for user, checks in worker.history_checks.items()}
        self.queue.clear()
        self.queue.extend(user for user in worker.users if user in self.checks)
        self.asked_at: dict[User, int] = {}

    def begin(self, user: User) -> None:
        if user.conn is None:
            self.give_up(user, "not connected")
        else:
            self.ask(user, {})

    def ask(self, user: User, before: dict[str, int]) -> None:
        assert user.conn is not None
        check = self.checks[user][0]
        self.asked_at[user] = self.pending[user] = monotonic_ns()
        user.conn.send(encode({"msgid": MsgId.HISTORY, **check.target, **before, "limit": PAGE}))

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        user, msgid = conn.user, frame.get("msgid")
        refused = msgid == ERROR and frame.get("ref") == MsgId.HISTORY
        if user not in self.pending or conn.device or not (msgid == MsgId.HISTORY_ACK or refused):
            super().on_frame(conn, frame)
            return
        self.result.extra["pages"] = self.result.extra.get("pages", 0) + 1
        self.result.hist.add((monotonic_ns() - self.asked_at[user]) // 1000)
        if frame.get("errno"):
            self.give_up(user, f"HISTORY: {frame}")
            return
        check = self.checks[user][0]
        kind = b"g" if "groupid" in check.target else b"c"
        messages = frame.get("messages") or []
        self.result.ok += check.take(messages, kind)
        if check.missing and frame.get("more") and messages:
            self.ask(user, {"before": messages[0]["mid"]})
        else:
            self.next_check(user)

    def next_check(self, user: User) -> None:
        """The user's current check is over: what it did not find is lost."""
        check = self.checks[user].pop(0)
        self.result.lost += check.missing
        if self.checks[user]:
            self.ask(user, {})
        else:
            del self.pending[user]
            self.fill()

    def give_up(self, user: User, why: str) -> None:
        """The user cannot read on: the messages of its checks count as lost."""
        self.result.error(why)
        self.result.lost += sum(check.missing for check in self.checks[user])
        self.checks[user] = []
        self.pending.pop(user, None)
        self.fill()

    def on_lost(self, user: User, why: str) -> None:
        super().on_lost(user, why)
        if user in self.pending:
            self.give_up(user, f"connection lost: {why}")

    def tick(self, now: int) -> None:
        for user in [u for u, asked in self.pending.items() if now - asked > self.timeout_ns]:
            self.give_up(user, "HISTORY not answered in time")

    def expire(self) -> None:
        for user in list(self.pending):
            self.give_up(user, "--max-time reached")
        for user in self.queue:
            self.result.lost += sum(check.missing for check in self.checks[user])
        self.queue.clear()
        self.finish()

"""The one-to-one phase: closed-loop pairs, both ends in this worker.

Each pair's sender sends message k+1 as soon as its partner has received message k (or k
has timed out), so the offered load adapts to the server and the latency measured is the
server's, not a queue's. The payload carries the sender's index, the sequence number and the
send time from time.monotonic_ns, which is one clock for all processes of the machine.
"""

from __future__ import annotations

from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from chatd.bench.phase import ClosedLoop
from chatd.bench.plan import pair_up
from chatd.bench.wire import CHAT_FMT, CHAT_FMT_CID, ERROR, BenchConn, User
from chatd.messages import ONE_CHAT

if TYPE_CHECKING:
    from chatd.bench.worker import Worker


class Pair:
    __slots__ = ("sender", "receiver", "seq", "sent_at", "got", "done")

    def __init__(self, sender: User, receiver: User, messages: int) -> None:
        self.sender = sender
        self.receiver = receiver
        self.seq = 0
        self.sent_at = 0
        self.got = bytearray(messages)
        self.done = False


class ChatPhase(ClosedLoop):
    name = "chat"
    unit = "msgs/s"
    kind = b"c"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        online = [u.index for u in worker.users if u.online]
        chosen = pair_up(online)[:cmd["pairs"]]
        super().__init__(worker, cmd, len(chosen))
        self.messages: int = cmd["messages"]
        self.pairs = [Pair(worker.user(s), worker.user(r), self.messages) for s, r in chosen]
        self.by_sender = {p.sender.index: p for p in self.pairs}
        self.cid = worker.proto == 2

    def loops(self) -> list[Pair]:
        return self.pairs

    def send(self, pair: Pair) -> None:
        conn = pair.sender.conn
        if conn is None:
            self.drop(pair, "sender not connected", pair.seq)
            return
        pair.sent_at = now = monotonic_ns()
        sender = pair.sender
        if self.cid:
            conn.send(CHAT_FMT_CID % (sender.uid, pair.receiver.uid, sender.index, pair.seq, now,
                                      self.worker.cid_prefix, pair.seq))
        else:
            conn.send(CHAT_FMT % (sender.uid, pair.receiver.uid, sender.index, pair.seq, now))
        self.result.sent += 1

    def advance(self, pair: Pair) -> None:
        """The outstanding message arrived, failed or timed out: on to the next one."""
        pair.seq += 1
        if pair.seq < self.messages:
            self.send(pair)
        else:
            self.close(pair)

    def close(self, pair: Pair) -> None:
        if not pair.done:
            pair.done = True
            self.sender_closed()

    def done(self) -> None:
        self.finish()

    def drop(self, pair: Pair, why: str, first_unsent: int) -> None:
        """A pair that cannot go on: the messages it will not send count as failed."""
        if not pair.done:
            self.result.error(why, self.messages - first_unsent)
            pair.seq = self.messages
            self.close(pair)

    def on_payloads(self, conn: BenchConn, payloads: list[bytes]) -> None:
        """Messages that reached `conn`; the one a sender waits for moves it on, once they
        are all counted (moving on may end the phase)."""
        now = monotonic_ns()
        result = self.result
        latencies: list[int] = []
        ready: list[Pair] = []
        for payload in payloads:
            try:
                _, kind, sender, seq_text, sent = payload.split(b"|")
                seq, sent_at = int(seq_text), int(sent)
                pair = self.by_sender.get(int(sender)) if kind == b"c" else None
            except ValueError:
                self.on_garbage(conn, payload)
                continue
            if pair is None or pair.receiver is not conn.user or not 0 <= seq < self.messages:
                self.stray()
            elif pair.got[seq]:
                result.dup += 1
            else:
                pair.got[seq] = 1
                latencies.append((now - sent_at) // 1000)
                if seq == pair.seq and not pair.done:
                    ready.append(pair)
        result.ok += len(latencies)
        result.hist.add_many(latencies)
        for pair in ready:
            self.advance(pair)

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        """A refused message is a failure, not a loss, and its sender goes on at once."""
        super().on_frame(conn, frame)
        pair = self.by_sender.get(conn.user.index)
        if frame.get("msgid") == ERROR and frame.get("ref") == ONE_CHAT and pair is not None:
            if not pair.done:
                self.result.sent -= 1
                self.advance(pair)

    def on_lost(self, user: User, why: str) -> None:
        super().on_lost(user, why)
        for pair in self.pairs:
            if user is pair.sender or user is pair.receiver:
                self.drop(pair, f"connection lost: {why}", pair.seq + 1)

    def tick(self, now: int) -> None:
        for pair in self.pairs:
            if not pair.done and now - pair.sent_at > self.timeout_ns:
                self.advance(pair)
        super().tick(now)

    def device_copies_expected(self) -> int:
        """Every other device of the receiver gets each message, and so does every other
        device of the sender (the copy of what it sent)."""
        return 2 * self.result.sent * (self.worker.devices - 1)

    def finish(self) -> None:
        self.result.lost = self.result.sent - self.result.ok
        for pair in self.pairs:
            sent = {pair.sender.index: pair.seq}
            self.worker.expect_history(pair.sender, {"peer": pair.receiver.uid}, sent)
            self.worker.expect_history(pair.receiver, {"peer": pair.sender.uid}, sent)
        super().finish()

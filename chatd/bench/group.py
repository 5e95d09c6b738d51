"""The group phase: create a group, join its members, then fan-out in turns.

As in chatload each member has one message out at a time and sends its next one only when
every other member has received it. The members live in one worker when one has enough
users online (plan.pick_members), and that worker runs the loop alone. A larger group is
spread over the workers: each tells the parent when all of *its* members have a message
(`gdone`), and the parent tells the sender's worker once every worker has (`gnext`).
Reports are batched per reactor turn: a few pipe lines per message, not one per delivery.
"""

from __future__ import annotations

from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from chatd.bench.phase import ClosedLoop, Phase
from chatd.bench.wire import ERROR, GROUP_FMT, GROUP_FMT_CID, BenchConn, User, encode
from chatd.messages import GROUP_CHAT, MsgId

if TYPE_CHECKING:
    from chatd.bench.worker import Worker

SETTLE_NS = 500_000_000
"""Proto 1: how long the joins may go unanswered before the phase goes on without acks.
The bare relay never answers ADD_GROUP; chatload waits the same half second."""


class CreateGroupPhase(Phase):
    """The creator sends CREATE_GROUP. Any reply carrying `groupid` is taken (msgid 13 from
    chatd, 8 from the bare relay)."""

    name = "group_create"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        self.creator = worker.user(cmd["creator"])
        self.group_name: str = cmd["group_name"]
        self.sent_at = 0

    def start(self) -> None:
        if self.creator.conn is None:
            self.result.error("group creator not connected")
            self.finish()
            return
        self.sent_at = monotonic_ns()
        self.creator.conn.send(encode({"msgid": MsgId.CREATE_GROUP, "id": self.creator.uid,
                                       "groupname": self.group_name, "groupdesc": "bench"}))

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        refused = frame.get("msgid") == ERROR and frame.get("ref") == MsgId.CREATE_GROUP
        if conn.user is not self.creator or not ("groupid" in frame or refused):
            super().on_frame(conn, frame)
            return
        if frame.get("errno", 0) == 0 and frame.get("groupid"):
            self.data["gid"] = frame["groupid"]
            self.result.ok = 1
            self.result.hist.add((monotonic_ns() - self.sent_at) // 1000)
        else:
            self.result.error(f"CREATE_GROUP: {frame}")
        self.finish()

    def tick(self, now: int) -> None:
        if now - self.sent_at > self.timeout_ns:
            self.result.lost = 1
            self.finish()


class JoinGroupPhase(Phase):
    """This worker's members (but the creator) send ADD_GROUP and wait for the acks.

    Proto 2 waits for every ack up to --timeout. Proto 1 also goes on once no ack has come
    for half a second, and counts an unanswered join as done, which is what chatload
    assumes of a server that does not answer.
    """

    name = "group_join"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        self.gid: int = cmd["gid"]
        self.pending = {worker.user(i) for i in cmd["members"]}
        self.joined: list[int] = []
        self.started = self.last_ack = 0

    def start(self) -> None:
        self.started = self.last_ack = monotonic_ns()
        for user in list(self.pending):
            if user.conn is None:
                self.pending.discard(user)
                self.result.error("member not connected")
            else:
                user.conn.send(encode({"msgid": MsgId.ADD_GROUP, "id": user.uid,
                                       "groupid": self.gid}))
        self.check()

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        msgid = frame.get("msgid")
        if conn.user not in self.pending or msgid not in (MsgId.ADD_GROUP_ACK, ERROR):
            super().on_frame(conn, frame)
            return
        self.pending.discard(conn.user)
        self.last_ack = now = monotonic_ns()
        if msgid == MsgId.ADD_GROUP_ACK and frame.get("errno") == 0:
            self.joined.append(conn.user.index)
            self.result.ok += 1
            self.result.hist.add((now - self.started) // 1000)
        else:
            self.result.error(f"ADD_GROUP: {frame}")
        self.check()

    def tick(self, now: int) -> None:
        if now - self.started > self.timeout_ns or (
                self.worker.proto == 1 and now - self.last_ack > SETTLE_NS):
            self.expire()

    def expire(self) -> None:
        if self.worker.proto == 1:
            self.joined += [u.index for u in self.pending]
            self.result.extra["unanswered"] = len(self.pending)
        else:
            self.result.lost += len(self.pending)
        self.pending.clear()
        self.check()

    def check(self) -> None:
        if not self.pending:
            self.data["joined"] = sorted(self.joined)
            self.finish()


class Sender:
    __slots__ = ("user", "seq", "sent_at", "done")

    def __init__(self, user: User) -> None:
        self.user = user
        self.seq = 0
        self.sent_at = 0
        self.done = False


class GroupPhase(ClosedLoop):
    """Fan-out in turns among `members` (all of them, across workers).

    `gnext` from the parent (through `advance`) moves a sender on; `stop` ends the phase once
    the parent has seen every worker's `gfin`.
    """

    name = "group"
    unit = "deliveries/s"
    kind = b"g"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        local = [i for i in cmd["members"] if worker.has_user(i)]
        super().__init__(worker, cmd, len(local))
        self.gid: int = cmd["gid"]
        self.messages: int = cmd["messages"]
        self.senders = {i: Sender(worker.user(i)) for i in local}
        self.need = {i: len(local) - (i in self.senders) for i in cmd["members"]}
        self.last_seq: dict[int, dict[int, int]] = {i: {} for i in local}
        self.counts: dict[int, int] = {}
        self.batch: list[list[int]] = []
        self.alone = len(local) == len(cmd["members"])
        self.fin_sent = False
        self.cid = worker.proto == 2
        self.members: list[int] = cmd["members"]

    def loops(self) -> list[Sender]:
        return list(self.senders.values())

    def send(self, sender: Sender) -> None:
        conn = sender.user.conn
        if conn is None:
            self.drop(sender, "member not connected", sender.seq)
            return
        sender.sent_at = now = monotonic_ns()
        user = sender.user
        if self.cid:
            conn.send(GROUP_FMT_CID % (user.uid, self.gid, user.index, sender.seq, now,
                                       self.worker.cid_prefix, sender.seq))
        else:
            conn.send(GROUP_FMT % (user.uid, self.gid, user.index, sender.seq, now))
        self.result.sent += 1

    def on_payloads(self, conn: BenchConn, payloads: list[bytes]) -> None:
        """Deliveries to one member: the hottest code of the tool, size - 1 calls' worth per
        group message, hence the local names."""
        now = monotonic_ns()
        recipient = conn.user.index
        last = self.last_seq.get(recipient)
        if last is None:
            for _ in payloads:
                self.stray()
            return
        result, need, counts, messages = self.result, self.need, self.counts, self.messages
        latencies: list[int] = []
        for payload in payloads:
            try:
                _, kind, sender_text, seq_text, sent = payload.split(b"|")
                sender, seq, sent_at = int(sender_text), int(seq_text), int(sent)
            except ValueError:
                self.on_garbage(conn, payload)
                continue
            wanted = need.get(sender)
            if kind != b"g" or wanted is None or sender == recipient or seq >= messages:
                self.stray()
            elif seq <= last.get(sender, -1):
                result.dup += 1
            else:
                last[sender] = seq
                latencies.append((now - sent_at) // 1000)
                key = sender * messages + seq
                count = counts.pop(key, 0) + 1
                if count < wanted:
                    counts[key] = count
                else:
                    self.report(sender, seq)
        result.ok += len(latencies)
        result.hist.add_many(latencies)

    def report(self, sender: int, seq: int) -> None:
        """All of this worker's members have (sender, seq): when they are the whole group
        the sender goes on at once, otherwise the parent is told, once per reactor turn."""
        if self.alone:
            self.advance([[sender, seq]])
            return
        if not self.batch:
            self.worker.reactor.callLater(0, self.flush)
        self.batch.append([sender, seq])

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        self.worker.emit({"ev": "gdone", "items": batch})

    def advance(self, items: list[list[int]]) -> None:
        """Every member has these messages: their senders go on."""
        for index, seq in items:
            sender = self.senders.get(index)
            if sender is not None and sender.seq == seq and not sender.done:
                self.next(sender)

    def next(self, sender: Sender) -> None:
        sender.seq += 1
        if sender.seq < self.messages:
            self.send(sender)
        else:
            self.close(sender)

    def close(self, sender: Sender) -> None:
        if not sender.done:
            sender.done = True
            self.sender_closed()

    def drop(self, sender: Sender, why: str, first_unsent: int) -> None:
        if not sender.done:
            self.result.error(why, self.messages - first_unsent)
            sender.seq = self.messages
            self.close(sender)

    def done(self) -> None:
        """Tell the parent, once, that this worker's senders are all through."""
        if not self.fin_sent:
            self.fin_sent = True
            self.worker.emit({"ev": "gfin"})

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        """A refused message is a failure, not size - 1 losses, and its sender goes on."""
        super().on_frame(conn, frame)
        sender = self.senders.get(conn.user.index)
        if frame.get("msgid") == ERROR and frame.get("ref") == GROUP_CHAT and sender:
            if not sender.done:
                self.result.sent -= 1
                self.next(sender)

    def on_lost(self, user: User, why: str) -> None:
        super().on_lost(user, why)
        sender = self.senders.get(user.index)
        if sender is not None:
            self.drop(sender, f"connection lost: {why}", sender.seq + 1)

    def tick(self, now: int) -> None:
        for sender in self.senders.values():
            if not sender.done and now - sender.sent_at > self.timeout_ns:
                self.next(sender)
        super().tick(now)

    def expire(self) -> None:
        for sender in self.senders.values():
            self.close(sender)

    def device_copies_expected(self) -> int:
        """Every other device of each local member gets every message of the group (its
        own ones as copies); the members of other workers are taken to send them all."""
        sent = self.result.sent if self.alone else len(self.members) * self.messages
        return sent * len(self.senders) * (self.worker.devices - 1)

    def stop(self) -> None:
        if self.batch:
            self.flush()
        creator = self.members[0]
        if creator in self.senders:
            self.worker.expect_history(self.worker.user(creator), {"groupid": self.gid},
                                       {m: self.messages for m in self.members})
        self.finish()

"""Where a frame for a user goes: the user's session here, another node through the bus, or
offline storage; and which frames are still in flight, here and to other nodes.

Between nodes a frame travels in an envelope whose first line says how to report back:
    U <mid> <report-to> <token>\\n<frame>         on a user's channel (one recipient)
    N\\n<frame>                                     on a user's channel: live only, no report
    O                                             on a user's channel: stored offline, look
    S <node>\\n<frame>                              on a user's channel: a live copy for the
                                                  user's devices on other nodes than <node>
    K <node> <device>\\n                            on a user's channel: <node> took the device
    D\\n                                            on a user's channel: the user's devices
                                                  are on several nodes now
    G <mid> <report-to> <token> <uid,...>\\n<frame> on a node's channel (group fan-out)
    A <token> [<token> ...]                       the report: these copies are safe
    C <groupid>                                   on the control channel: membership changed
    B <blocker> <blocked> <0|1>                   on the control channel: a block changed
Other kinds on the control channel and on a node's channel (operator actions, cluster-wide
queries) go to `on_control` and `on_node_message` (chatd/operator.py).
The receiving node reports once its copies are acknowledged, written to an original-dialect
session, or stored; the sending node stores them itself if no report comes in time. Reports
for one node are gathered for a reactor turn and go in one message.
"""

from collections import deque
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from itertools import count
from typing import Any, Protocol

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.delivery import devices
from chatd.cluster import CLAIMED, FULL, SEVERAL, Bus
from chatd.cluster.cids import Remembered
from chatd.delivery.devices import DEFAULT_MAX_DEVICES, Devices
from chatd.messages import ChatError, Errno, ServiceUnavailable
from chatd.metrics import LOCAL, OFFLINE, REMOTE, Stats
from chatd.delivery.session import Session
from chatd.store import Store

log = Logger()

Done = Callable[[], None] | None

DEFAULT_ACK_TIMEOUT = 10.0
DEFAULT_OFFLINE_QUOTA = 10_000
STORE_RETRY_SECONDS = (1, 2, 5, 10, 30)


class Inbox:
    """A logged-in user's mailbox on this node.

    Frames are held until the login reply has been written (so it is always the session's
    first frame), then written in order. While the client does not read (its session is
    paused) frames are held here rather than written: live ones count against the session's
    send buffer, which ends the session past its limit, and what is held is stored offline
    when the session ends. A proto-2 session's frames stay in `unacked` until it acknowledges
    them; the router stores the ones left over offline. One per logged-in user, so it is kept
    small: slots, and nothing allocated until it is needed.
    """

    __slots__ = ("session", "user_id", "device", "needs_ack", "ready", "offline_mids",
                 "unacked", "catch_up", "_held", "_clock")

    def __init__(self, session: Session, clock: IReactorTime) -> None:
        self.session = session
        self.user_id: int = session.user_id  # type: ignore[assignment]
        self.needs_ack = session.proto == 2
        # the device claimed on the bus: "" for the original dialect, which has none
        self.device = session.device if self.needs_ack else ""
        self.ready = False
        # mids of the offline messages in the login reply, deleted from the store once acked
        self.offline_mids: AbstractSet[int] = frozenset()
        # frames were stored offline while the login reply was being made: look again
        self.catch_up = False
        self.unacked: dict[int, tuple[bytes, Done, float]] = {}
        self._held: deque[tuple[int, bytes, Done]] = deque()
        self._clock = clock

    def push(self, mid: int, frame: bytes, done: Done) -> None:
        """Send a frame; `done` runs once the frame can no longer be lost."""
        if self.ready and not self.session.paused:
            self._write(mid, frame, done)
            return
        self._held.append((mid, frame, done))
        if self.ready:
            self.session.hold(len(frame))

    def _write(self, mid: int, frame: bytes, done: Done) -> None:
        if self.needs_ack:
            self.unacked[mid] = (frame, done, self._clock.seconds())
            self.session.write(frame)
        else:
            self.session.write(frame)
            if done is not None:
                done()

    def notify(self, frame: bytes) -> None:
        """A live-only frame (typing, receipt, notice): proto-2 sessions only, once the login
        reply is out; nothing waits for it and nothing is stored."""
        if self.ready and self.needs_ack and not self.session.paused:
            self.session.write(frame)

    def open(self) -> None:
        """The login reply is out: release what arrived meanwhile, as far as the client reads
        (the rest goes out at `resume`)."""
        self.ready = True
        held, session = self._held, self.session
        while held and not session.paused:
            self._write(*held.popleft())

    def resume(self) -> None:
        """The client reads again: write what was held back."""
        if self.ready:
            self.open()

    def ack(self, mids: Iterable[int]) -> None:
        """Release acknowledged frames (mids not in flight are ignored)."""
        for mid in mids:
            entry = self.unacked.pop(mid, None)
            if entry is not None and entry[1] is not None:
                entry[1]()

    def expired(self, deadline: float) -> list[tuple[int, bytes, Done]]:
        """Remove and return the frames sent before `deadline` and still unacknowledged."""
        out = []
        while self.unacked:
            mid, (frame, done, sent) = next(iter(self.unacked.items()))
            if sent >= deadline:
                break
            del self.unacked[mid]
            out.append((mid, frame, done))
        return out

    def drain(self) -> list[tuple[int, bytes, Done]]:
        """Everything not yet safe with the client, for offline storage when it leaves."""
        out = list(self._held) + [(mid, f, d) for mid, (f, d, _) in self.unacked.items()]
        self._held.clear()
        self.unacked.clear()
        return out


class Receipt(Protocol):
    """Who waits for the copies of one message: the sender's side, told once."""

    def delivered(self, missing: AbstractSet[int], full: AbstractSet[int]) -> None:
        """Every copy is safe; `missing`: users that do not exist, `full`: users whose
        offline mailbox is full (both only known for copies that had to be stored)."""

    def failed(self, failure: Failure) -> None:
        """A copy could not be made safe."""


NOBODY: frozenset[int] = frozenset()


class _Fanout:
    """Counts the copies of one message until all are safe, then tells the receipt. Plain
    calls, not a Deferred or closures: this runs once per message on the hot path, so the
    sets of users are shared empty ones until a stored copy needs them."""

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


class _Remote:
    """Copies handed to another node, waiting for its report."""

    __slots__ = ("fan", "user_ids", "mid", "frame", "deadline")

    def __init__(self, fan: _Fanout, user_ids: list[int], mid: int, frame: bytes,
                 deadline: float) -> None:
        self.fan, self.user_ids, self.mid, self.frame, self.deadline = (
            fan, user_ids, mid, frame, deadline)


class _Report:
    """The receipt of copies from another node: once they are safe, report to it (whether
    or not the users exist there; the sending node answers its sender)."""

    __slots__ = ("router", "report_to", "token")

    def __init__(self, router: "Router", report_to: bytes, token: bytes) -> None:
        self.router, self.report_to, self.token = router, report_to, token

    def delivered(self, missing: AbstractSet[int], full: AbstractSet[int]) -> None:
        self.router.report(self.report_to, self.token)

    def failed(self, failure: Failure) -> None:
        """Not reported: the sending node stores the copies itself when no report comes."""


def _header(line: bytes) -> list[bytes]:
    return line.split(b" ")


class Router:
    """The online map of this node plus the bus and the offline store."""

    def __init__(self, bus: Bus, store: Store, clock: IReactorTime,
                 ack_timeout: float = DEFAULT_ACK_TIMEOUT,
                 offline_quota: int = DEFAULT_OFFLINE_QUOTA, stats: Stats | None = None,
                 max_devices: int = DEFAULT_MAX_DEVICES) -> None:
        self.bus = bus
        self.stats = stats or Stats()
        self.store = store
        self.ack_timeout = ack_timeout
        self.offline_quota = offline_quota
        self.max_devices = max_devices
        self.report_timeout = 2 * ack_timeout + 2
        # called with a group id, or with None for "any group" after the bus was away
        self.on_group_changed: Callable[[int | None], None] = lambda group_id: None
        # called with (blocker, blocked, block) for a block changed on any node
        self.on_block_changed: Callable[[int, int, bool], None] = lambda a, b, block: None
        # called with a user id logged in here when frames were stored offline for them
        self.on_offline_stored: Callable[[int], None] = lambda user_id: None
        # called with the users logged in here after the bus came back (changes announced
        # meanwhile were missed)
        self.on_bus_back: Callable[[list[int]], None] = lambda user_ids: None
        # called with a session whose device another login took (here or on another node)
        self.on_taken_over: Callable[[Session], None] = lambda session: None
        # other message kinds, for the operator's actions and queries
        self.on_control: Callable[[bytes], None] = lambda payload: None
        self.on_node_message: Callable[[bytes], None] = lambda payload: None
        self._clock = clock
        self._inboxes: dict[int, Inbox | Devices] = {}
        self._spread: set[int] = set()  # users with devices here and on other nodes
        self._pending: dict[int, _Remote] = {}
        self._tokens = count(1)
        self._reports: dict[bytes, list[bytes]] = {}  # node -> tokens to report this turn
        self._saving: set[Deferred[None]] = set()
        self._unsaved = 0  # frames being written to the offline store, retries included
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        bus.listener = self

    def start(self) -> None:
        self.bus.start()
        self._sweeper.start(1.0, now=False)

    async def stop(self) -> None:
        """Store what other nodes never confirmed, then leave the bus."""
        if self._sweeper.running:
            self._sweeper.stop()
        for token in list(self._pending):
            self._give_up(token)
        self._send_reports()
        await self.flush()
        await self.bus.stop()

    async def flush(self) -> None:
        """Wait until the frames being stored offline are written (used at shutdown)."""
        while self._saving:
            await DeferredList(list(self._saving))

    def online_here(self, user_id: int) -> bool:
        return user_id in self._inboxes

    def user_inboxes(self, user_id: int) -> list[Inbox]:
        """The user's sessions on this node (one per device)."""
        return devices.inboxes(self._inboxes.get(user_id))

    def session(self, user_id: int, device: str) -> Session | None:
        """The user's session of this device on this node, if any."""
        entry = self._inboxes.get(user_id)
        if type(entry) is Devices:
            inbox = entry.inboxes.get(device)
            return inbox.session if inbox is not None else None
        if entry is None or entry.device not in ("", device):
            return None
        return entry.session

    def inboxes(self) -> list[Inbox]:
        """The sessions of this node (a user's devices each)."""
        return [i for entry in self._inboxes.values() for i in devices.inboxes(entry)]

    def sessions_by_proto(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for inbox in self.inboxes():
            proto = inbox.session.proto
            counts[proto] = counts.get(proto, 0) + 1
        return counts

    def reports_pending(self) -> int:
        return len(self._pending)

    def offline_pending(self) -> int:
        """Frames waiting to be stored offline (a metric)."""
        return self._unsaved

    # sessions

    async def attach(self, session: Session, takeover: bool = False) -> Inbox:
        """Make `session` one of the user's sessions in the cluster: the only one for the
        original dialect, one of up to `max_devices` devices for proto 2 (`takeover`: the
        login named its device, and takes it from a session holding it). Raises errno 2 or
        166 when it may not. Frames arriving meanwhile wait in the new inbox."""
        user_id = session.user_id
        old = devices.admit(self._inboxes.get(user_id), session, takeover, self.max_devices)
        if old is not None:
            self.on_taken_over(old.session)
        inbox = Inbox(session, self._clock)
        self._inboxes[user_id] = devices.add(self._inboxes.get(user_id), inbox)
        try:
            claim = await self.bus.subscribe(user_id, inbox.device, session.since,
                                             self.max_devices, takeover)
        except BaseException:
            self._remove(inbox)
            raise
        if claim.result != CLAIMED or inbox not in self.user_inboxes(user_id):
            self._remove(inbox)
            raise ChatError(Errno.TOO_MANY_DEVICES if claim.result == FULL
                            else Errno.ALREADY_ONLINE)
        if claim.taken_from:
            payload = b"K %s %s\n" % (self.bus.incarnation, session.device.encode())
            self.bus.publish(user_id, payload).addErrback(lambda f: None)
        if claim.spread:
            self._spread.add(user_id)
            self.bus.publish(user_id, b"D\n").addErrback(lambda f: None)
        return inbox

    def _remove(self, inbox: Inbox) -> None:
        """Take `inbox` out of the user's entry."""
        user_id = inbox.user_id
        entry = self._inboxes.get(user_id)
        if entry is None:
            return
        rest = devices.remove(entry, inbox)
        if rest is None:
            del self._inboxes[user_id]
            self._spread.discard(user_id)
        else:
            self._inboxes[user_id] = rest

    def detach(self, inbox: Inbox) -> None:
        """The session ended: release its claim and store what it had not acknowledged."""
        if inbox in self.user_inboxes(inbox.user_id):
            self._remove(inbox)
            self.bus.unsubscribe(inbox.user_id, inbox.device)
        self._keep(inbox.user_id, inbox.drain(), announce=True)

    async def devices_of(self, user_id: int) -> dict[str, int]:
        """The user's online devices cluster-wide, device -> login time (ms); while the bus
        is down, the ones on this node."""
        here = {i.session.device: i.session.since for i in self.user_inboxes(user_id)}
        try:
            return {**await self.bus.devices(user_id), **here}
        except ServiceUnavailable:
            return here

    async def online(self, user_ids: list[int]) -> set[int]:
        """Live presence: held by this node or, through the bus, by another. While the bus
        is down only this node's users are known to be online."""
        here = {u for u in user_ids if u in self._inboxes}
        elsewhere = [u for u in user_ids if u not in here]
        if elsewhere:
            try:
                here |= await self.bus.online(elsewhere)
            except ServiceUnavailable:
                pass
        return here

    def group_changed(self, group_id: int) -> None:
        """Tell every node (this one too) that a group's members changed."""
        self.on_group_changed(group_id)
        self.bus.publish_control(b"C %d" % group_id).addErrback(lambda f: None)

    def block_changed(self, blocker: int, blocked: int, block: bool) -> None:
        """Tell every node (this one too) that `blocker` blocked or unblocked `blocked`."""
        self.on_block_changed(blocker, blocked, block)
        payload = b"B %d %d %d" % (blocker, blocked, block)
        self.bus.publish_control(payload).addErrback(lambda f: None)

    # sending

    def to_other_devices(self, user_id: int, device: str, frame: bytes) -> None:
        """A copy of what the user sent from `device`, live only, for the user's other
        devices here and on other nodes (history has it for the ones that are away)."""
        entry = self._inboxes.get(user_id)
        if type(entry) is Devices:
            for name, inbox in list(entry.inboxes.items()):
                if name != device:
                    inbox.notify(frame)
        if user_id in self._spread:
            self._copy_elsewhere(user_id, frame)

    def _copy_elsewhere(self, user_id: int, frame: bytes) -> None:
        """A live copy for the user's devices on other nodes: this node's devices had theirs,
        and the copy that must be safe is safe with them (or stored)."""
        payload = b"S %s\n" % self.bus.incarnation + frame
        self.bus.publish(user_id, payload).addErrback(lambda f: None)

    def notify(self, user_id: int, frame: bytes) -> None:
        """A live-only frame for the user's session, here or on another node; dropped when
        the user is offline."""
        inbox = self._inboxes.get(user_id)
        if inbox is not None:
            inbox.notify(frame)
        else:
            self.bus.publish(user_id, b"N\n" + frame).addErrback(lambda f: None)

    def remember(self, sender: int, cid: str, mid: int, then: Remembered) -> None:
        """Record the mid of (sender, cid) cluster-wide; `then` gets an earlier (mid, safe)."""
        self.bus.remember(sender, cid, mid, then)

    def settle(self, sender: int, cid: str, mid: int) -> None:
        """(sender, cid) is safe: a repeat only needs its SEND_ACK again."""
        self.bus.settle(sender, cid, mid)

    def deliver(self, user_ids: list[int], mid: int, frame: bytes, receipt: Receipt) -> None:
        """Send one message to each user; once every copy is safe (a full mailbox does not
        take its copy), tell `receipt`."""
        fan = _Fanout(len(user_ids), receipt)
        remote = []
        inboxes, spread, done = self._inboxes, self._spread, fan.done  # once, not per member
        for user_id in user_ids:
            inbox = inboxes.get(user_id)
            if inbox is not None:
                inbox.push(mid, frame, done)
                if user_id in spread:
                    self._copy_elsewhere(user_id, frame)
            else:
                remote.append(user_id)
        local = len(user_ids) - len(remote)
        self.stats.routes[LOCAL] += local
        self.stats.bytes_out += len(frame) * local
        if len(remote) == 1:
            self._to_user(remote[0], mid, frame, fan)
        elif remote:
            self.bus.locate(remote).addCallbacks(
                self._to_nodes, lambda f: self._store(remote, mid, frame, fan),
                callbackArgs=(remote, mid, frame, fan))

    def _expect_report(self, fan: _Fanout, user_ids: list[int], mid: int, frame: bytes) -> int:
        token = next(self._tokens)
        deadline = self._clock.seconds() + self.report_timeout
        self._pending[token] = _Remote(fan, user_ids, mid, frame, deadline)
        return token

    def _to_user(self, user_id: int, mid: int, frame: bytes, fan: _Fanout) -> None:
        token = self._expect_report(fan, [user_id], mid, frame)
        payload = b"U %d %s %d\n" % (mid, self.bus.incarnation, token) + frame
        self.bus.carry(user_id, payload, self._answered, token)

    def _to_nodes(self, where: dict[int, bytes], user_ids: list[int], mid: int, frame: bytes,
                  fan: _Fanout) -> None:
        by_node: dict[bytes, list[int]] = {}
        nowhere = []
        for user_id in user_ids:
            node = where.get(user_id)
            if node is None or node == self.bus.incarnation:
                nowhere.append(user_id)
            elif node == SEVERAL:
                self._to_user(user_id, mid, frame, fan)
            else:
                by_node.setdefault(node, []).append(user_id)
        if nowhere:
            self._store(nowhere, mid, frame, fan)
        for node, users in by_node.items():
            token = self._expect_report(fan, users, mid, frame)
            ids = b",".join(b"%d" % u for u in users)
            payload = b"G %d %s %d %s\n" % (mid, self.bus.incarnation, token, ids) + frame
            self.bus.carry_node(node, payload, self._answered, token)

    def _answered(self, receivers: int, token: int) -> None:
        """The bus says how many nodes got copy `token`: none (or the bus is down) means
        nobody will report it, so it is stored here."""
        if not receivers:
            self._give_up(token)
            return
        remote = self._pending.get(token)
        if remote is not None:
            self.stats.routes[REMOTE] += len(remote.user_ids)

    def _give_up(self, token: int) -> None:
        """No node took the copies (or none reported in time): store them here."""
        remote = self._pending.pop(token, None)
        if remote is not None:
            self._store(remote.user_ids, remote.mid, remote.frame, remote.fan)

    def _store(self, user_ids: list[int], mid: int, frame: bytes, fan: _Fanout) -> None:
        """Store a new message for users who are offline, within their --offline-quota."""
        self.stats.routes[OFFLINE] += len(user_ids)
        self._unsaved += len(user_ids)
        text = frame[:-1].decode()
        d = Deferred.fromCoroutine(self.store.save_new_offline(
            [(u, mid, text) for u in user_ids], self.offline_quota))
        d.addCallbacks(self._stored, self._not_stored, (user_ids, mid, fan), None,
                       (user_ids, fan))

    def _stored(self, result: tuple[int, set[int]], user_ids: list[int], mid: int,
                fan: _Fanout) -> None:
        self._unsaved -= len(user_ids)
        rows, full = result
        if full:
            log.warn("offline mailbox full (--offline-quota {quota}): message {mid} not stored "
                     "for users {users}", quota=self.offline_quota, mid=mid, users=sorted(full))
        elif rows == 0 and len(user_ids) == 1:
            fan.missing = {user_ids[0]}
        if full:
            fan.full = fan.full | full
        fan.done(len(user_ids))
        self._announce_stored([u for u in user_ids if u not in full])

    def _announce_stored(self, user_ids: list[int]) -> None:
        """Frames were stored offline for these users: one who is logging in meanwhile (here
        or on another node) may have read the offline store before they were there."""
        for user_id in user_ids:
            if user_id in self._inboxes:
                self.on_offline_stored(user_id)
            else:
                self.bus.publish(user_id, b"O\n").addErrback(lambda f: None)

    def _not_stored(self, failure: Failure, user_ids: list[int], fan: _Fanout) -> None:
        self._unsaved -= len(user_ids)
        fan.failed(failure)

    # receiving from other nodes

    def from_user_channel(self, user_id: int, payload: bytes) -> None:
        line, frame = payload.split(b"\n", 1)
        if line == b"N":
            inbox = self._inboxes.get(user_id)
            if inbox is not None:
                inbox.notify(frame)
            return
        if line == b"O":
            if user_id in self._inboxes:
                self.on_offline_stored(user_id)
            return
        fields = _header(line)
        if fields[0] == b"U":
            _, mid, report_to, token = fields
            self._receive([user_id], int(mid), frame, _Report(self, report_to, token))
        else:
            self._from_other_device(user_id, fields, frame)

    def _from_other_device(self, user_id: int, fields: list[bytes], frame: bytes) -> None:
        """Another node's news about the user's devices: a copy of what they sent there (S),
        a device taken over there (K), devices spread over several nodes (D)."""
        here = self.user_inboxes(user_id)
        if not here or (fields[0] != b"D" and fields[1] == self.bus.incarnation):
            return
        if fields[0] == b"S":
            for inbox in here:
                inbox.notify(frame)
        elif fields[0] == b"K":
            device = b" ".join(fields[2:]).decode()  # a device name may hold blanks
            for inbox in here:
                if inbox.device == device:
                    self.on_taken_over(inbox.session)
        elif fields[0] == b"D":
            self._spread.add(user_id)

    def from_node_channel(self, payload: bytes) -> None:
        line, frame = payload.split(b"\n", 1) if b"\n" in payload else (payload, b"")
        fields = _header(line)
        if fields[0] == b"A":
            for token in fields[1:]:
                remote = self._pending.pop(int(token), None)
                if remote is not None:
                    remote.fan.done(len(remote.user_ids))
        elif fields[0] == b"G":
            _, mid, report_to, token, ids = fields
            user_ids = [int(u) for u in ids.split(b",")]
            self._receive(user_ids, int(mid), frame, _Report(self, report_to, token))
        else:
            self.on_node_message(payload)

    def from_control(self, payload: bytes) -> None:
        fields = _header(payload)
        if fields[0] == b"C":
            self.on_group_changed(int(fields[1]))
        elif fields[0] == b"B":
            self.on_block_changed(int(fields[1]), int(fields[2]), fields[3] == b"1")
        else:
            self.on_control(payload)

    def report(self, report_to: bytes, token: bytes) -> None:
        """Copies from the node `report_to` are safe: tell it, with this turn's others."""
        if not self._reports:
            self._clock.callLater(0, self._send_reports)
        self._reports.setdefault(report_to, []).append(token)

    def _send_reports(self) -> None:
        """One PUBLISH per node for all the reports of this reactor turn: under load that
        halves the bus traffic of cross-node chat."""
        reports, self._reports = self._reports, {}
        for node, tokens in reports.items():
            self.bus.publish_node(node, b"A " + b" ".join(tokens)).addErrback(lambda f: None)

    def _receive(self, user_ids: list[int], mid: int, frame: bytes,
                 report: _Report) -> None:
        """Copies from another node: push to local sessions, store for users who left."""
        fan = _Fanout(len(user_ids), report)
        gone = []
        for user_id in user_ids:
            inbox = self._inboxes.get(user_id)
            if inbox is not None:
                inbox.push(mid, frame, fan.done)
            else:
                gone.append(user_id)
        self.stats.bytes_out += len(frame) * (len(user_ids) - len(gone))
        if gone:
            self._store(gone, mid, frame, fan)

    def bus_reconnected(self) -> None:
        """Claim every local user again; a user another node took meanwhile is closed here.
        Group and block changes announced while the bus was away were missed: forget every
        group, reload the blocks."""
        self.on_group_changed(None)
        self.on_bus_back(list(self._inboxes))
        held = [(i.user_id, i.device, i.session.since)
                for user_id in self._inboxes for i in self.user_inboxes(user_id)]
        d = Deferred.fromCoroutine(self.bus.reclaim(held, self.max_devices))

        def close(lost: list[tuple[int, str]]) -> None:
            for user_id, device in lost:
                for inbox in self.user_inboxes(user_id):
                    if inbox.device == device:
                        log.warn("user {uid} (device {device!r}) logged in elsewhere while "
                                 "redis was away; closing this session", uid=user_id,
                                 device=device)
                        inbox.session.close()
        d.addCallbacks(close, lambda f: log.warn("reclaiming sessions failed: {e}", e=f.value))

    # time-outs and storage

    def _sweep(self) -> None:
        now = self._clock.seconds()
        deadline = now - self.ack_timeout
        for inbox in self.inboxes():
            if inbox.unacked:
                late = inbox.expired(deadline)
                if late:
                    log.info("user {uid}: {n} frames not acknowledged in time, stored offline",
                             uid=inbox.user_id, n=len(late))
                    self._keep(inbox.user_id, late)
        for token in [t for t, r in self._pending.items() if r.deadline < now]:
            self._give_up(token)

    def _keep(self, user_id: int, frames: list[tuple[int, bytes, Done]], attempt: int = 0,
              announce: bool = False) -> None:
        """Store frames nobody else holds; retried with back-off while the store is down.
        `announce`: the session left, and a new one may be logging in meanwhile."""
        if not frames:
            return
        if attempt == 0:
            self._unsaved += len(frames)
        rows = [(user_id, mid, frame[:-1].decode()) for mid, frame, _ in frames]
        d = Deferred.fromCoroutine(self.store.save_offline(rows))

        def stored(_: int) -> None:
            self._unsaved -= len(frames)
            for _mid, _frame, done in frames:
                if done is not None:
                    done()
            if announce:
                self._announce_stored([user_id])

        def retry(failure: Any) -> None:
            failure.trap(ServiceUnavailable)
            delay = STORE_RETRY_SECONDS[min(attempt, len(STORE_RETRY_SECONDS) - 1)]
            log.warn("user {uid}: cannot store {n} frames ({error}), retrying in {delay}s",
                     uid=user_id, n=len(frames), error=failure.value, delay=delay)
            self._clock.callLater(delay, self._keep, user_id, frames, attempt + 1, announce)

        def lost(failure: Failure) -> None:
            self._unsaved -= len(frames)
            log.failure("storing offline frames", failure)

        d.addCallbacks(stored, retry)
        d.addErrback(lost)
        self._saving.add(d)
        d.addBoth(self._saved, d)

    def _saved(self, result: object, d: Deferred[None]) -> object:
        self._saving.discard(d)
        return result

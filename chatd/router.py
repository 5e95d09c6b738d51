"""Where a frame for a user goes: the user's session here, another node through the bus, or
offline storage; and which frames are still in flight, here and to other nodes.

Between nodes a frame travels in an envelope whose first line says how to report back:
    U <mid> <report-to> <token>\\n<frame>         on a user's channel (one recipient)
    N\\n<frame>                                     on a user's channel: live only, no report
    O                                             on a user's channel: stored offline, look
    G <mid> <report-to> <token> <uid,...>\\n<frame> on a node's channel (group fan-out)
    A <token> [<token> ...]                       the report: these copies are safe
    C <groupid>                                   on the control channel: membership changed
    B <blocker> <blocked> <0|1>                   on the control channel: a block changed
The receiving node reports once its copies are acknowledged, written to an original-dialect
session, or stored; the sending node stores them itself if no report comes in time. Reports
for one node are gathered for a reactor turn and go in one message.
"""

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from itertools import count
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.bus import Bus
from chatd.messages import ServiceUnavailable
from chatd.session import Session
from chatd.store import Store

log = Logger()

Done = Callable[[], None] | None

DEFAULT_ACK_TIMEOUT = 10.0
STORE_RETRY_SECONDS = (1, 2, 5, 10, 30)


class Inbox:
    """A logged-in user's mailbox on this node.

    Frames are held until the login reply has been written (so it is always the session's
    first frame), then written in order. A proto-2 session's frames stay in `unacked` until it
    acknowledges them; the router stores the ones left over offline. One per logged-in user,
    so it is kept small: slots, and nothing allocated until it is needed.
    """

    __slots__ = ("session", "user_id", "needs_ack", "ready", "offline_mids", "unacked",
                 "catch_up", "_held", "_clock")

    def __init__(self, session: Session, clock: IReactorTime) -> None:
        self.session = session
        self.user_id: int = session.user_id  # type: ignore[assignment]
        self.needs_ack = session.proto == 2
        self.ready = False
        # mids of the offline messages in the login reply, deleted from the store once acked
        self.offline_mids: AbstractSet[int] = frozenset()
        # frames were stored offline while the login reply was being made: look again
        self.catch_up = False
        self.unacked: dict[int, tuple[bytes, Done, float]] = {}
        self._held: list[tuple[int, bytes, Done]] = []
        self._clock = clock

    def push(self, mid: int, frame: bytes, done: Done) -> None:
        """Send a frame; `done` runs once the frame can no longer be lost."""
        if not self.ready:
            self._held.append((mid, frame, done))
            return
        self.session.write(frame)
        if self.needs_ack:
            self.unacked[mid] = (frame, done, self._clock.seconds())
        elif done is not None:
            done()

    def notify(self, frame: bytes) -> None:
        """A live-only frame (typing, receipt, notice): proto-2 sessions only, once the login
        reply is out; nothing waits for it and nothing is stored."""
        if self.ready and self.needs_ack:
            self.session.write(frame)

    def open(self) -> None:
        """The login reply is out: release what arrived meanwhile."""
        self.ready = True
        held, self._held = self._held, []
        for mid, frame, done in held:
            self.push(mid, frame, done)

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
        out = self._held + [(mid, f, d) for mid, (f, d, _) in self.unacked.items()]
        self._held = []
        self.unacked.clear()
        return out


class _Fanout:
    """Counts the copies of one message until all are safe, then calls `then` with the users
    that do not exist; `failed` instead if a copy could not be made safe. Plain callbacks, not
    a Deferred: this runs once per message on the hot path."""

    __slots__ = ("missing", "_left", "_then", "_failed")

    def __init__(self, copies: int, then: Callable[[set[int]], None],
                 failed: Callable[[Failure], None]) -> None:
        self.missing: set[int] = set()
        self._left = copies
        self._then: Callable[[set[int]], None] | None = then
        self._failed = failed
        if copies == 0:
            self.done(0)

    def done(self, copies: int = 1) -> None:
        self._left -= copies
        if self._left <= 0 and self._then is not None:
            then, self._then = self._then, None
            then(self.missing)

    def failed(self, failure: Failure) -> None:
        if self._then is not None:
            self._then = None
            self._failed(failure)


class _Remote:
    """Copies handed to another node, waiting for its report."""

    __slots__ = ("fan", "user_ids", "mid", "frame", "deadline")

    def __init__(self, fan: _Fanout, user_ids: list[int], mid: int, frame: bytes,
                 deadline: float) -> None:
        self.fan, self.user_ids, self.mid, self.frame, self.deadline = (
            fan, user_ids, mid, frame, deadline)


def _header(line: bytes) -> list[bytes]:
    return line.split(b" ")


class Router:
    """The online map of this node plus the bus and the offline store."""

    def __init__(self, bus: Bus, store: Store, clock: IReactorTime,
                 ack_timeout: float = DEFAULT_ACK_TIMEOUT) -> None:
        self.bus = bus
        self.store = store
        self.ack_timeout = ack_timeout
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
        self._clock = clock
        self._inboxes: dict[int, Inbox] = {}
        self._pending: dict[int, _Remote] = {}
        self._tokens = count(1)
        self._reports: dict[bytes, list[bytes]] = {}  # node -> tokens to report this turn
        self._saving: set[Deferred[None]] = set()
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

    def inbox(self, user_id: int) -> Inbox | None:
        return self._inboxes.get(user_id)

    # sessions

    async def attach(self, session: Session) -> Inbox | None:
        """Make `session` the user's one session in the cluster; None when the user is
        online already. Frames arriving meanwhile wait in the new inbox."""
        user_id = session.user_id
        if user_id in self._inboxes:
            return None
        inbox = self._inboxes[user_id] = Inbox(session, self._clock)
        try:
            held = await self.bus.subscribe(user_id)
        except BaseException:
            del self._inboxes[user_id]
            raise
        if not held:
            del self._inboxes[user_id]
            return None
        return inbox

    def detach(self, inbox: Inbox) -> None:
        """The session ended: release the user and store what it had not acknowledged."""
        if self._inboxes.get(inbox.user_id) is inbox:
            del self._inboxes[inbox.user_id]
            self.bus.unsubscribe(inbox.user_id)
        self._keep(inbox.user_id, inbox.drain(), announce=True)

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

    def notify(self, user_id: int, frame: bytes) -> None:
        """A live-only frame for the user's session, here or on another node; dropped when
        the user is offline."""
        inbox = self._inboxes.get(user_id)
        if inbox is not None:
            inbox.notify(frame)
        else:
            self.bus.publish(user_id, b"N\n" + frame).addErrback(lambda f: None)

    def remember(self, sender: int, cid: str, mid: int) -> Deferred[tuple[int, bool] | None]:
        """Record the mid of (sender, cid) cluster-wide; fires with an earlier (mid, safe)."""
        return self.bus.remember(sender, cid, mid)

    def settle(self, sender: int, cid: str, mid: int) -> None:
        """(sender, cid) is safe: a repeat only needs its SEND_ACK again."""
        self.bus.settle(sender, cid, mid)

    def deliver(self, user_ids: list[int], mid: int, frame: bytes,
                then: Callable[[set[int]], None], failed: Callable[[Failure], None]) -> None:
        """Send one message to each user; once every copy is safe, call `then` with the set of
        users that do not exist (only known for copies that had to be stored)."""
        fan = _Fanout(len(user_ids), then, failed)
        remote = []
        for user_id in user_ids:
            inbox = self._inboxes.get(user_id)
            if inbox is not None:
                inbox.push(mid, frame, fan.done)
            else:
                remote.append(user_id)
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
        d = self.bus.publish(user_id, payload)
        d.addCallbacks(self._published, self._publish_failed, (token,), None, (token,))

    def _to_nodes(self, where: dict[int, bytes], user_ids: list[int], mid: int, frame: bytes,
                  fan: _Fanout) -> None:
        by_node: dict[bytes, list[int]] = {}
        nowhere = []
        for user_id in user_ids:
            node = where.get(user_id)
            if node is None or node == self.bus.incarnation:
                nowhere.append(user_id)
            else:
                by_node.setdefault(node, []).append(user_id)
        if nowhere:
            self._store(nowhere, mid, frame, fan)
        for node, users in by_node.items():
            token = self._expect_report(fan, users, mid, frame)
            ids = b",".join(b"%d" % u for u in users)
            payload = b"G %d %s %d %s\n" % (mid, self.bus.incarnation, token, ids) + frame
            d = self.bus.publish_node(node, payload)
            d.addCallbacks(self._published, self._publish_failed, (token,), None, (token,))

    def _published(self, receivers: int, token: int) -> None:
        if not receivers:
            self._give_up(token)

    def _publish_failed(self, failure: Any, token: int) -> None:
        if not failure.check(ServiceUnavailable):
            log.warn("publish failed: {error}", error=failure.value)
        self._give_up(token)

    def _give_up(self, token: int) -> None:
        """No node took the copies (or none reported in time): store them here."""
        remote = self._pending.pop(token, None)
        if remote is not None:
            self._store(remote.user_ids, remote.mid, remote.frame, remote.fan)

    def _store(self, user_ids: list[int], mid: int, frame: bytes, fan: _Fanout) -> None:
        text = frame[:-1].decode()
        d = Deferred.fromCoroutine(self.store.save_offline([(u, mid, text) for u in user_ids]))

        def stored(rows: int) -> None:
            if rows == 0 and len(user_ids) == 1:
                fan.missing.add(user_ids[0])
            fan.done(len(user_ids))
            self._announce_stored(user_ids)
        d.addCallbacks(stored, fan.failed)

    def _announce_stored(self, user_ids: list[int]) -> None:
        """Frames were stored offline for these users: one who is logging in meanwhile (here
        or on another node) may have read the offline store before they were there."""
        for user_id in user_ids:
            if user_id in self._inboxes:
                self.on_offline_stored(user_id)
            else:
                self.bus.publish(user_id, b"O\n").addErrback(lambda f: None)

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
        _, mid, report_to, token = _header(line)
        self._receive([user_id], int(mid), frame, self._reporter(report_to, token))

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
            self._receive(user_ids, int(mid), frame, self._reporter(report_to, token))

    def from_control(self, payload: bytes) -> None:
        fields = _header(payload)
        if fields[0] == b"C":
            self.on_group_changed(int(fields[1]))
        elif fields[0] == b"B":
            self.on_block_changed(int(fields[1]), int(fields[2]), fields[3] == b"1")

    def _reporter(self, report_to: bytes, token: bytes) -> Callable[[], None]:
        def report() -> None:
            if not self._reports:
                self._clock.callLater(0, self._send_reports)
            self._reports.setdefault(report_to, []).append(token)
        return report

    def _send_reports(self) -> None:
        """One PUBLISH per node for all the reports of this reactor turn: under load that
        halves the bus traffic of cross-node chat."""
        reports, self._reports = self._reports, {}
        for node, tokens in reports.items():
            self.bus.publish_node(node, b"A " + b" ".join(tokens)).addErrback(lambda f: None)

    def _receive(self, user_ids: list[int], mid: int, frame: bytes,
                 report: Callable[[], None]) -> None:
        """Copies from another node: push to local sessions, store for users who left."""
        fan = _Fanout(len(user_ids), lambda missing: report(), lambda failure: None)
        gone = []
        for user_id in user_ids:
            inbox = self._inboxes.get(user_id)
            if inbox is not None:
                inbox.push(mid, frame, fan.done)
            else:
                gone.append(user_id)
        if gone:
            self._store(gone, mid, frame, fan)

    def bus_reconnected(self) -> None:
        """Claim every local user again; a user another node took meanwhile is closed here.
        Group and block changes announced while the bus was away were missed: forget every
        group, reload the blocks."""
        self.on_group_changed(None)
        self.on_bus_back(list(self._inboxes))
        d = Deferred.fromCoroutine(self.bus.reclaim(list(self._inboxes)))

        def close(lost: list[int]) -> None:
            for user_id in lost:
                inbox = self._inboxes.get(user_id)
                if inbox is not None:
                    log.warn("user {uid} logged in elsewhere while redis was away; closing "
                             "this session", uid=user_id)
                    inbox.session.close()
        d.addCallbacks(close, lambda f: log.warn("reclaiming sessions failed: {e}", e=f.value))

    # time-outs and storage

    def _sweep(self) -> None:
        now = self._clock.seconds()
        deadline = now - self.ack_timeout
        for inbox in list(self._inboxes.values()):
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
        rows = [(user_id, mid, frame[:-1].decode()) for mid, frame, _ in frames]
        d = Deferred.fromCoroutine(self.store.save_offline(rows))

        def stored(_: int) -> None:
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

        d.addCallbacks(stored, retry)
        d.addErrback(lambda f: log.failure("storing offline frames", f))
        self._saving.add(d)
        d.addBoth(self._saved, d)

    def _saved(self, result: object, d: Deferred[None]) -> object:
        self._saving.discard(d)
        return result

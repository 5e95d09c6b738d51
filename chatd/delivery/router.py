"""The online map of this node, and where each copy of a message goes.

A user logged in here has an entry: one Inbox, or a `Devices` holding one per device. A
message for a user goes to that entry (every device), to the node(s) holding the user
through the relay, or to offline storage; live-only frames (typing, receipts, notices) reach
every device of the user on every node and are never stored. A user whose devices are on
several nodes is "spread": what reaches this node's devices is copied to the others.
"""

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from chatd.cluster import CLAIMED, FULL, Bus
from chatd.cluster.cids import Remembered
from chatd.cluster.envelope import (
    BlockChanged,
    GroupChanged,
    Spread,
    Stored,
    TakenOver,
    encode_device_copy,
    encode_live,
)
from chatd.delivery import devices
from chatd.delivery.devices import DEFAULT_MAX_DEVICES, Devices
from chatd.delivery.dialect import Dialect
from chatd.delivery.inbox import Inbox
from chatd.delivery.offline import Offline
from chatd.delivery.receipts import Fanout, Receipt
from chatd.delivery.relay import Relay
from chatd.delivery.session import Session
from chatd.delivery.signals import Signal
from chatd.messages import ChatError, Errno, ServiceUnavailable
from chatd.metrics import LOCAL, Stats

log = Logger()

DEFAULT_ACK_TIMEOUT = 10.0
# How long this node remembers that it stored frames offline for a user of another node, to
# say so again after a reconnect: the word may have gone to a Redis server that the user's
# node had already left (a failover reaches the nodes a moment apart). While the bus is down
# nothing is forgotten.
STORED_MEMORY_SECONDS = 10.0


def _ignore(failure: object) -> None:
    """A live-only letter that did not go out: nobody waits for it."""


class RouterEvents:
    """What the router tells the handlers; listeners are connected in `build_node`."""

    __slots__ = ("group_changed", "block_changed", "offline_stored", "bus_back",
                 "taken_over", "unacknowledged")

    def __init__(self) -> None:
        # a group's members changed on some node (None: any group may have, the bus was away)
        self.group_changed: Signal[[int | None]] = Signal()
        # (blocker, blocked, block) changed on some node
        self.block_changed: Signal[[int, int, bool]] = Signal()
        # frames were stored offline for a user logged in here
        self.offline_stored: Signal[[int]] = Signal()
        # the bus came back: changes announced meanwhile were missed for these users
        self.bus_back: Signal[[list[int]]] = Signal()
        # a login here or on another node took this session's device
        self.taken_over: Signal[[Session]] = Signal()
        # (user, device, frames): an online device did not acknowledge these in time
        self.unacknowledged: Signal[[int, str, list[bytes]]] = Signal()


class Router:
    """This node's sessions, and the fan-out of every frame to them or elsewhere."""

    def __init__(self, bus: Bus, clock: IReactorTime, offline: Offline, stats: Stats,
                 ack_timeout: float = DEFAULT_ACK_TIMEOUT,
                 max_devices: int = DEFAULT_MAX_DEVICES) -> None:
        self.bus = bus
        self.stats = stats
        self.offline = offline
        self.ack_timeout = ack_timeout
        self.max_devices = max_devices
        self.relay = Relay(bus, clock, offline, stats, 2 * ack_timeout + 2)
        self.on = RouterEvents()
        self.dialect = Dialect()
        self._clock = clock
        self._inboxes: dict[int, Inbox | Devices] = {}
        self._spread: set[int] = set()  # users with devices here and on other nodes
        self._stored_lately: dict[int, float] = {}  # user elsewhere -> when stored offline
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        offline.stored.connect(self._announce_stored)

    def start(self) -> None:
        self.bus.start()
        self._sweeper.start(1.0, now=False)

    async def stop(self) -> None:
        """Store what other nodes never confirmed and what is still owed, then leave the bus."""
        if self._sweeper.running:
            self._sweeper.stop()
        self.relay.stop()
        await self.offline.flush()
        await self.bus.stop()

    # the online map

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

    async def attach(self, session: Session, takeover: bool = False) -> Inbox:
        """Make `session` one of the user's sessions in the cluster: the only one for the
        original dialect, one of up to `max_devices` devices for proto 2 (`takeover`: the
        login named its device, and takes it from a session holding it). Raises errno 2 or
        166 when it may not. Frames arriving meanwhile wait in the new inbox; when it may
        not, they are stored offline (and the user's node told) for the user's session
        elsewhere to find them."""
        user_id = session.user_id
        old = devices.admit(self._inboxes.get(user_id), session, takeover, self.max_devices)
        if old is not None:
            self.on.taken_over(old.session)
        inbox = Inbox(session, self._clock, self.dialect)
        self._inboxes[user_id] = devices.add(self._inboxes.get(user_id), inbox)
        try:
            claim = await self.bus.subscribe(user_id, inbox.device, session.since,
                                             self.max_devices, takeover)
        except BaseException:
            self._refused(inbox)
            raise
        if claim.result != CLAIMED or inbox not in self.user_inboxes(user_id):
            self._refused(inbox)
            raise ChatError(Errno.TOO_MANY_DEVICES if claim.result == FULL
                            else Errno.ALREADY_ONLINE)
        if claim.taken_from:
            self._publish(user_id, TakenOver(self.bus.incarnation, session.device).encode())
        if claim.spread:
            self._spread.add(user_id)
            self._publish(user_id, Spread().encode())
        return inbox

    def _refused(self, inbox: Inbox) -> None:
        """A login that may not be: drop its inbox, and store what was pushed to it while it
        claimed (copies for the user's session on another node, lost if dropped, their
        senders waiting for SEND_ACK for ever)."""
        self._remove(inbox)
        self.offline.keep(inbox.user_id, inbox.drain(), announce=True)

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

    def detach(self, inbox: Inbox) -> Deferred[None]:
        """The session ended: release its claim and store what it had not acknowledged;
        fires once the claim is released cluster-wide."""
        released: Deferred[None] = succeed(None)
        if inbox in self.user_inboxes(inbox.user_id):
            self._remove(inbox)
            released = self.bus.unsubscribe(inbox.user_id, inbox.device)
        self.offline.keep(inbox.user_id, inbox.drain(), announce=True)
        return released

    def spread(self, user_id: int) -> None:
        """Another node says the user's devices are on several nodes now."""
        if user_id in self._inboxes:
            self._spread.add(user_id)

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

    # announcements to every node (this one too)

    def group_changed(self, group_id: int) -> None:
        """A group's members changed."""
        self.on.group_changed(group_id)
        self.bus.publish_control(GroupChanged(group_id).encode()).addErrback(_ignore)

    def block_changed(self, blocker: int, blocked: int, block: bool) -> None:
        """`blocker` blocked or unblocked `blocked`."""
        self.on.block_changed(blocker, blocked, block)
        self.bus.publish_control(BlockChanged(blocker, blocked, block).encode()
                                 ).addErrback(_ignore)

    # sending

    def _publish(self, user_id: int, letter: bytes) -> None:
        self.bus.publish(user_id, letter).addErrback(_ignore)

    def to_other_devices(self, user_id: int, device: str, frame: bytes) -> None:
        """A copy of what the user sent from `device`, live only, for the user's other
        devices here and on other nodes (history has it for the ones that are away)."""
        entry = self._inboxes.get(user_id)
        if type(entry) is Devices:
            for name, inbox in list(entry.inboxes.items()):
                if name != device:
                    inbox.notify(frame)
        if user_id in self._spread:
            self._publish(user_id, encode_device_copy(self.bus.incarnation, frame))

    def notify(self, user_id: int, frame: bytes) -> None:
        """A live-only frame for every device of the user, on this node and on others;
        dropped when the user is offline."""
        entry = self._inboxes.get(user_id)
        if entry is None:
            self._publish(user_id, encode_live(frame))
            return
        entry.notify(frame)
        if user_id in self._spread:
            self._publish(user_id, encode_device_copy(self.bus.incarnation, frame))

    def remember(self, sender: int, cid: str, mid: int, then: Remembered) -> None:
        """Record the mid of (sender, cid) cluster-wide; `then` gets an earlier (mid, safe)."""
        self.bus.remember(sender, cid, mid, then)

    def settle(self, sender: int, cid: str, mid: int) -> None:
        """(sender, cid) is safe: a repeat only needs its SEND_ACK again."""
        self.bus.settle(sender, cid, mid)

    def deliver(self, user_ids: list[int], mid: int, frame: bytes, receipt: Receipt) -> None:
        """Send one message to each user; once every copy is safe (a full mailbox does not
        take its copy), tell `receipt`."""
        fan = Fanout(len(user_ids), receipt)
        remote = []
        inboxes, spread = self._inboxes, self._spread  # once, not per member
        for user_id in user_ids:
            inbox = inboxes.get(user_id)
            if inbox is not None:
                inbox.push(mid, frame, fan)
                if user_id in spread:
                    self._publish(user_id, encode_device_copy(self.bus.incarnation, frame))
            else:
                remote.append(user_id)
        local = len(user_ids) - len(remote)
        self.stats.routes[LOCAL] += local
        self.stats.bytes_out += len(frame) * local
        if remote:
            self.relay.send(remote, mid, frame, fan)

    def receive(self, user_ids: list[int], mid: int, frame: bytes, receipt: Receipt) -> None:
        """Copies from another node: push to local sessions, store for users who left."""
        fan = Fanout(len(user_ids), receipt)
        gone = []
        for user_id in user_ids:
            inbox = self._inboxes.get(user_id)
            if inbox is not None:
                inbox.push(mid, frame, fan)
            else:
                gone.append(user_id)
        self.stats.bytes_out += len(frame) * (len(user_ids) - len(gone))
        if gone:
            self.offline.store_new(gone, mid, frame, fan)

    def _announce_stored(self, user_ids: list[int]) -> None:
        """Frames were stored offline for these users: one who is logging in meanwhile (here
        or on another node) may have read the offline store before they were there."""
        now = self._clock.seconds()
        for user_id in user_ids:
            if user_id in self._inboxes:
                self.on.offline_stored(user_id)
            else:
                self._stored_lately[user_id] = now
                self._publish(user_id, Stored().encode())

    def announce_stored_again(self) -> None:
        """The bus is back: say again that frames were stored for the users of other nodes
        (STORED_MEMORY_SECONDS)."""
        for user_id in self._stored_lately:
            self._publish(user_id, Stored().encode())

    # time-outs

    def _sweep(self) -> None:
        """Frames not acknowledged within the ack timeout are stored offline; copies whose
        report is overdue are stored by the relay."""
        now = self._clock.seconds()
        deadline = now - self.ack_timeout
        if self.bus.up and self._stored_lately:
            since = now - STORED_MEMORY_SECONDS
            self._stored_lately = {u: t for u, t in self._stored_lately.items() if t >= since}
        for inbox in self.inboxes():
            if inbox.unacked:
                late = inbox.expired(deadline)
                if late:
                    log.info("user {uid}: {n} frames not acknowledged in time, stored offline",
                             uid=inbox.user_id, n=len(late))
                    self.offline.keep(inbox.user_id, late)
                    self.on.unacknowledged(inbox.user_id, inbox.device,
                                           [frame for _, frame, _ in late])
        self.relay.expire(now)


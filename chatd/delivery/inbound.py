"""What arrives from other nodes: each letter, decoded by chatd/cluster/envelope.py, goes to
the part of this node that acts on it.

On a user's channel: copies for the user's sessions here (reported once safe), live-only
frames, word that frames were stored offline, and news of the user's devices elsewhere. On
this node's channel: group copies and reports of copies this node sent. On the control
channel: group and block changes. When the bus comes back after an outage, every session
here is claimed again. The operator's letters (ending sessions, broadcasts,
queries and their reports) go to `operator`, which the operator's handler connects to.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.cluster.envelope import (
    BlockChanged,
    Copy,
    DeviceCopy,
    GroupChanged,
    GroupCopy,
    Live,
    Reports,
    Spread,
    Stored,
    TakenOver,
    decode_control,
    decode_node,
    decode_user,
)
from chatd.delivery.relay import Report
from chatd.delivery.router import Router
from chatd.delivery.signals import Signal

log = Logger()


class Inbound:
    """The bus's listener on this node."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.relay = router.relay
        self.incarnation = router.bus.incarnation
        # letters for the operator: (the letter) from the control or this node's channel
        self.operator: Signal[[object]] = Signal()
        router.bus.listener = self

    def from_user_channel(self, user_id: int, payload: bytes) -> None:
        router = self.router
        match decode_user(payload):
            case Copy(mid, report_to, token, frame):
                router.receive([user_id], mid, frame, Report(self.relay, report_to, token))
            case Live(frame):
                for inbox in router.user_inboxes(user_id):
                    inbox.notify(frame)
            case Stored():
                if router.online_here(user_id):
                    router.on.offline_stored(user_id)
            case DeviceCopy(origin, frame) if origin != self.incarnation:
                for inbox in router.user_inboxes(user_id):
                    inbox.notify(frame)
            case TakenOver(origin, device) if origin != self.incarnation:
                for inbox in router.user_inboxes(user_id):
                    if inbox.device == device:
                        router.on.taken_over(inbox.session)
            case Spread():
                router.spread(user_id)

    def from_node_channel(self, payload: bytes) -> None:
        match decode_node(payload):
            case Reports(tokens):
                self.relay.settled(tokens)
            case GroupCopy(mid, report_to, token, user_ids, frame):
                self.router.receive(user_ids, mid, frame, Report(self.relay, report_to, token))
            case None:
                pass
            case letter:
                self.operator(letter)

    def from_control(self, payload: bytes) -> None:
        match decode_control(payload):
            case GroupChanged(group_id):
                self.router.on.group_changed(group_id)
            case BlockChanged(blocker, blocked, block):
                self.router.on.block_changed(blocker, blocked, block)
            case None:
                pass
            case letter:
                self.operator(letter)

    def bus_reconnected(self) -> None:
        """Claim every local session again; one that another node took meanwhile is closed
        here. Group and block changes announced while the bus was away were missed, and so
        was word of frames stored offline for users here (other nodes store what they
        cannot hand over): each session looks in the offline store, and this node says
        again what it stored lately for users elsewhere."""
        router = self.router
        router.on.group_changed(None)
        users = sorted({i.user_id for i in router.inboxes()})
        router.on.bus_back(users)
        for user_id in users:
            router.on.offline_stored(user_id)
        router.announce_stored_again()
        held = [(i.user_id, i.device, i.session.since) for i in router.inboxes()]
        d = Deferred.fromCoroutine(router.bus.reclaim(held, router.max_devices))
        d.addCallbacks(self._lost, lambda f: log.warn("reclaiming sessions failed: {e}",
                                                      e=f.value))

    def _lost(self, lost: list[tuple[int, str]]) -> None:
        for user_id, device in lost:
            for inbox in self.router.user_inboxes(user_id):
                if inbox.device == device:
                    log.warn("user {uid} (device {device!r}) logged in elsewhere while redis "
                             "was away; closing this session", uid=user_id, device=device)
                    inbox.session.close()

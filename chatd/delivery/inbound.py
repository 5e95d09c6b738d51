"""What arrives from other nodes: each letter, decoded by chatd/cluster/envelope.py, goes to
the part of this node that acts on it.

On a user's channel: copies for the user's sessions here (reported once safe), live-only
frames, word that frames were stored offline, and news of the user's devices elsewhere. On
this node's channel: group copies and reports of copies this node sent. On the control
channel: group and block changes. The operator's letters (ending sessions, broadcasts,
queries and their reports) go to `operator`, which the operator's handler connects to.
"""

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
        self.router.bus_reconnected()

"""Several sessions of one account on this node: the proto-2 devices of a user.

The router keeps one entry per user. A user with two or more sessions here gets a `Devices`
in place of the single Inbox; it has the Inbox's `push` and `notify`, so a message to a user
with one device costs exactly what it did before devices existed. Which device may log in
where is decided by `admit` here and, across the cluster, by the bus's claim.
"""

from chatd.delivery.inbox import Inbox
from chatd.delivery.receipts import First, Waiter
from chatd.delivery.session import Session
from chatd.messages import ChatError, Errno

DEFAULT_MAX_DEVICES = 5


class Devices:
    """Two or more sessions (devices) of one user on this node."""

    __slots__ = ("user_id", "inboxes")

    def __init__(self, inboxes: list[Inbox]) -> None:
        self.user_id = inboxes[0].user_id
        self.inboxes = {inbox.device: inbox for inbox in inboxes}

    def push(self, mid: int, frame: bytes, done: Waiter | None) -> None:
        """Every device gets the frame; the copy is safe once the first of them has it."""
        first = First(done) if done is not None else None
        for inbox in list(self.inboxes.values()):
            inbox.push(mid, frame, first)

    def notify(self, frame: bytes) -> None:
        for inbox in list(self.inboxes.values()):
            inbox.notify(frame)


def inboxes(entry: Inbox | Devices | None) -> list[Inbox]:
    """The inboxes of a router entry (none, one, or one per device)."""
    if entry is None:
        return []
    if type(entry) is Devices:
        return list(entry.inboxes.values())
    return [entry]  # type: ignore[list-item]


def admit(entry: Inbox | Devices | None, session: Session, takeover: bool,
          max_devices: int) -> Inbox | None:
    """May `session` log in beside the user's sessions on this node? Returns the session of
    the same device that it takes over, if any; raises errno 2 when a session of the other
    dialect is here (or the device is, and the login did not name it), 166 when
    `max_devices` devices are here."""
    here = inboxes(entry)
    if not here:
        return None
    if session.proto != 2 or not here[0].needs_ack:
        raise ChatError(Errno.ALREADY_ONLINE)
    same = next((i for i in here if i.device == session.device), None)
    if same is not None:
        if not takeover:
            raise ChatError(Errno.ALREADY_ONLINE)
        return same
    if len(here) >= max_devices:
        raise ChatError(Errno.TOO_MANY_DEVICES)
    return None


def add(entry: Inbox | Devices | None, inbox: Inbox) -> Inbox | Devices:
    """The router entry with `inbox` added."""
    if entry is None:
        return inbox
    if type(entry) is Devices:
        entry.inboxes[inbox.device] = inbox
        return entry
    return Devices([entry, inbox])  # type: ignore[list-item]


def remove(entry: Inbox | Devices, inbox: Inbox) -> Inbox | Devices | None:
    """The router entry without `inbox` (None when it was the last; unchanged when `inbox`
    was not in it, e.g. a session already taken over)."""
    if type(entry) is not Devices:
        return None if entry is inbox else entry
    if entry.inboxes.get(inbox.device) is inbox:
        del entry.inboxes[inbox.device]
    if len(entry.inboxes) == 1:
        return next(iter(entry.inboxes.values()))
    return entry

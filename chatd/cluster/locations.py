"""Where every user's session is, as this node hears it from the session claims of all nodes.

Group fan-out needs the node of each member for each message; asking Redis (MGET of the
session keys) costs a round trip before the copies can leave. Instead the claim and release
scripts announce every change of a session key on one channel that every node subscribes to
(`<user> <node incarnation>`, an empty incarnation when no node holds the user), and each
node keeps the latest value it heard. A user not heard of is looked up with MGET; the answer
is kept only if no change of that user was heard meanwhile and the channel was listened to
all along (the `epoch` did not move), since a change in between could be older than the
answer but arrive after it.

A location may still be stale by the time a copy arrives (the user logged out or moved a
moment ago); the router's reports cover that as they covered the race between MGET and a
logout: the node that no longer holds the user stores the copy offline and announces it, a
node that is gone makes the sender store it.
"""

from collections.abc import Iterable


class Locations:
    """user id -> node incarnation (b"" for none), while the announcements are heard."""

    def __init__(self) -> None:
        self._where: dict[int, bytes] = {}
        self._nodes: dict[bytes, bytes] = {b"": b""}  # one bytes object per incarnation
        self.listening = False  # subscribed to the announcements since `epoch` began
        self.epoch = 0

    def listen(self) -> None:
        """The subscription to the announcements is confirmed: from now on none is missed
        (an MGET asked before may have read a value whose change was missed)."""
        self.listening = True
        self.epoch += 1

    def forget(self) -> None:
        """The subscriber connection went away: announcements will be missed until it is
        back, so nothing heard so far can be trusted."""
        self._where.clear()
        self.listening = False
        self.epoch += 1

    def heard(self, announcement: bytes) -> None:
        """`<user> <incarnation>` from the announcements channel."""
        user, _, node = announcement.partition(b" ")
        self._where[int(user)] = self._nodes.setdefault(node, node)

    def split(self, user_ids: Iterable[int]) -> tuple[dict[int, bytes], list[int]]:
        """The known nodes of these users (users known to be held by none left out), and the
        users not heard of."""
        where, unknown = {}, []
        known = self._where if self.listening else {}
        for user_id in user_ids:
            node = known.get(user_id)
            if node is None:
                unknown.append(user_id)
            elif node:
                where[user_id] = node
        return where, unknown

    def learned(self, epoch: int, user_ids: list[int], nodes: list[bytes | None]) -> None:
        """Keep MGET's answer for users still not heard of, if nothing was missed since it
        was asked in `epoch`."""
        if epoch != self.epoch or not self.listening:
            return
        where = self._where
        for user_id, node in zip(user_ids, nodes, strict=True):
            if user_id not in where:
                node = node or b""
                where[user_id] = self._nodes.setdefault(node, node)

"""Queries of notifications: push subscriptions per device, muted conversations, and what the
push of one message needs to know about its recipients.

A mixin of Store (it uses Store's `_run` and dialect). A subscription is keyed by (user,
device, kind): a device has at most one Web Push and one FCM subscription, a new one replaces
it. A mute is keyed like a read marker: (user, groupid, peer), 0 for the side not used.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from chatd.store.batch import Batcher, grouped, marks

Cursor = Any
FOREVER = -1
CHUNK = 500  # user ids in one IN (...) list


@dataclass(frozen=True)
class Subscription:
    """Where to push: a Web Push endpoint with its keys, or an FCM token (in `endpoint`)."""
    user_id: int
    device: str
    kind: str  # "webpush" or "fcm"
    endpoint: str
    p256dh: str = ""
    auth: str = ""


@dataclass
class PushTarget:
    """One recipient of a push: its subscriptions, until when the conversation is muted
    (0 not muted, -1 for ever), and how many messages wait for it."""
    subscriptions: list[Subscription] = field(default_factory=list)
    muted_until: int = 0
    unread: int = 0


class PushQueries:

    dialect: Any
    _mute_lists: Batcher[tuple[int, int], list[tuple[int, int, int]]]

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _prepare_push(self) -> None:
        q = self.dialect.sql
        self._q_count_subscriptions = q(
            "SELECT COUNT(*) FROM PushSubscription WHERE userid = ?"
            " AND NOT (device = ? AND kind = ?)")
        self._q_unsubscribe = q(
            "DELETE FROM PushSubscription WHERE userid = ? AND device = ? AND kind = ?")
        self._q_subscribe = q(
            "INSERT INTO PushSubscription (userid, device, kind, endpoint, p256dh, auth)"
            " VALUES (?, ?, ?, ?, ?, ?)")
        self._q_unsubscribe_device = q(
            "DELETE FROM PushSubscription WHERE userid = ? AND device = ?")
        self._q_unsubscribe_user = q("DELETE FROM PushSubscription WHERE userid = ?")
        self._q_gone = q(
            "DELETE FROM PushSubscription WHERE userid = ? AND device = ? AND kind = ?"
            " AND endpoint = ?")
        self._q_unmute = q("DELETE FROM Mute WHERE userid = ? AND groupid = ? AND peer = ?")
        self._q_mute_conversation = q(
            "INSERT INTO Mute (userid, groupid, peer, mutedto) VALUES (?, ?, ?, ?)")
        self._q_mutes_of = (
            "SELECT userid, groupid, peer, mutedto FROM Mute WHERE userid IN ({})"
            " AND (mutedto = -1 OR mutedto > ?)"
            " ORDER BY userid, groupid, peer")
        self._q_group_role = q("SELECT grouprole FROM GroupUser WHERE groupid = ? AND userid = ?")

    async def subscribe(self, subscription: Subscription, most: int) -> bool:
        """Register (or replace) the device's subscription of its kind; False when the user
        holds `most` subscriptions on other devices or kinds."""
        s = subscription
        key = (s.user_id, s.device, s.kind)

        def txn(c: Cursor) -> bool:
            c.execute(self._q_count_subscriptions, key)
            if int(c.fetchone()[0]) >= most:
                return False
            c.execute(self._q_unsubscribe, key)
            c.execute(self._q_subscribe, (*key, s.endpoint, s.p256dh, s.auth))
            return True
        return await self._run("subscribe", txn)

    async def unsubscribe(self, user_id: int, device: str | None = None,
                          kind: str | None = None) -> None:
        """Remove a device's subscription of one kind, all of a device's (kind None), or all
        of the user's (device None)."""
        def txn(c: Cursor) -> None:
            if device is None:
                c.execute(self._q_unsubscribe_user, (user_id,))
            elif kind is None:
                c.execute(self._q_unsubscribe_device, (user_id, device))
            else:
                c.execute(self._q_unsubscribe, (user_id, device, kind))
        await self._run("unsubscribe", txn)

    async def subscription_gone(self, subscription: Subscription) -> None:
        """The push service says this subscription no longer exists (404/410): remove it,
        unless the device has replaced it meanwhile."""
        s = subscription

        def txn(c: Cursor) -> None:
            c.execute(self._q_gone, (s.user_id, s.device, s.kind, s.endpoint))
        await self._run("subscription_gone", txn)

    async def mute(self, user_id: int, group_id: int, peer: int, until: int) -> None:
        """Mute a conversation until `until` (ms since the epoch, -1 for ever); 0 unmutes."""
        key = (user_id, group_id, peer)

        def txn(c: Cursor) -> None:
            c.execute(self._q_unmute, key)
            if until != 0:
                c.execute(self._q_mute_conversation, (*key, until))
        await self._run("mute", txn)

    async def mutes(self, user_id: int, now_ms: int) -> list[tuple[int, int, int]]:
        """The user's mutes still in force at `now_ms`: (groupid, peer, until). Every proto-2
        login asks: the lookups of one reactor turn are one query."""
        return await self._mute_lists((user_id, now_ms))

    def _mutes_all(self, c: Cursor, asked: list[tuple[int, int]]
                   ) -> list[list[tuple[int, int, int]]]:
        """`mutes` of a batch: one query from the earliest moment asked, then each user's
        own moment."""
        user_ids = [user_id for user_id, _ in asked]
        c.execute(self.dialect.sql(self._q_mutes_of.format(marks(len(user_ids)))),
                  (*user_ids, min(now_ms for _, now_ms in asked)))
        found = grouped((int(r[0]), (int(r[1]), int(r[2]), int(r[3]))) for r in c.fetchall())
        return [[m for m in found.get(user_id, []) if m[2] == FOREVER or m[2] > now_ms]
                for user_id, now_ms in asked]

    async def group_role(self, group_id: int, user_id: int) -> str | None:
        """The user's role in the group; None when not a member."""
        def txn(c: Cursor) -> str | None:
            c.execute(self._q_group_role, (group_id, user_id))
            row = c.fetchone()
            return None if row is None else str(row[0])
        return await self._run("group_role", txn)

    async def push_targets(self, user_ids: Sequence[int], group_id: int,
                           peers: dict[int, int]) -> dict[int, PushTarget]:
        """The recipients of a message that have a subscription, with their mute of its
        conversation (the group, or for a 1:1 message `peers[user]`, the sender) and their
        count of stored messages; one interaction, the users in chunks."""
        def txn(c: Cursor) -> dict[int, PushTarget]:
            targets: dict[int, PushTarget] = {}
            for start in range(0, len(user_ids), CHUNK):
                self._subscriptions_of(c, user_ids[start:start + CHUNK], targets)
            if targets:
                self._mutes_and_counts(c, list(targets), group_id, peers, targets)
            return targets
        return await self._run("push_targets", txn)

    def _subscriptions_of(self, c: Cursor, user_ids: Sequence[int],
                          targets: dict[int, PushTarget]) -> None:
        c.execute(self.dialect.sql(
            "SELECT userid, device, kind, endpoint, p256dh, auth FROM PushSubscription"
            f" WHERE userid IN ({', '.join('?' * len(user_ids))})"), list(user_ids))
        for row in c.fetchall():
            subscription = Subscription(int(row[0]), row[1], row[2], row[3], row[4], row[5])
            targets.setdefault(subscription.user_id, PushTarget()).subscriptions.append(
                subscription)

    def _mutes_and_counts(self, c: Cursor, user_ids: list[int], group_id: int,
                          peers: dict[int, int], targets: dict[int, PushTarget]) -> None:
        marks = ", ".join("?" * len(user_ids))
        if group_id:
            c.execute(self.dialect.sql(
                f"SELECT userid, mutedto FROM Mute WHERE userid IN ({marks}) AND groupid = ?"
                " AND peer = 0"), [*user_ids, group_id])
            found = c.fetchall()
        else:
            found = []
            for user_id in user_ids:
                c.execute(self.dialect.sql(
                    "SELECT userid, mutedto FROM Mute WHERE userid = ? AND groupid = 0"
                    " AND peer = ?"), (user_id, peers[user_id]))
                found += c.fetchall()
        for user_id, until in found:
            targets[int(user_id)].muted_until = int(until)
        c.execute(self.dialect.sql(
            f"SELECT userid, COUNT(*) FROM OfflineMessage WHERE userid IN ({marks})"
            " GROUP BY userid"), user_ids)
        for user_id, count in c.fetchall():
            targets[int(user_id)].unread = int(count)

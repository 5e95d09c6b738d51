"""Queries of the account's owner: settings and friend requests.

A mixin of Store (it uses Store's `_run` and dialect). A friend request is one row from the
asker to the target; it is deleted when answered, and ignored (then deleted) once older than
the expiry the caller passes.
"""

import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from chatd.store.batch import grouped, marks

Cursor = Any
REQUEST_LIFETIME_MS = 30 * 24 * 3600 * 1000  # a friend request expires after 30 days


def request_cutoff(now_ms: int | None = None) -> int:
    """Requests made before this time (ms) have expired."""
    return (int(time.time() * 1000) if now_ms is None else now_ms) - REQUEST_LIFETIME_MS


@dataclass(frozen=True)
class StoredSettings:
    """A user's choices; None where the user never chose (the node's default applies)."""
    friend_requests: str | None
    discoverable: bool | None


@dataclass(frozen=True)
class FriendRequestRecord:
    id: int  # who asked
    name: str
    time: int  # ms since the epoch


@dataclass(frozen=True)
class Profile:
    id: int
    name: str
    bio: str
    avatar: str = ""  # the id of an uploaded image, "" for none


class RequestOutcome(Enum):
    """What a friend request came to."""
    SENT = "sent"
    REPEATED = "already pending"
    MUTUAL = "the target had asked too: now friends"
    FRIENDS = "already friends"
    TOO_MANY = "too many pending"


class AccountQueries:

    dialect: Any

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _prepare_accounts(self) -> None:
        q = self.dialect.sql
        ignore = self.dialect.insert_ignore
        self._q_look_alikes = q("SELECT name FROM User WHERE namekey = ? AND id <> ?"
                                " AND (deleted = 0 OR deleted >= ?)")
        self._q_unkeyed = q("SELECT id, name FROM User WHERE namekey IS NULL LIMIT ?")
        self._q_set_key = q("UPDATE User SET namekey = ? WHERE id = ?")
        self._q_profile = q("SELECT id, name, bio, avatar FROM User WHERE id = ?")
        self._q_set_bio = q("UPDATE User SET bio = ? WHERE id = ?")
        self._q_set_avatar = q("UPDATE User SET avatar = ? WHERE id = ?")
        self._q_set_name = q("UPDATE User SET name = ?, namekey = ? WHERE id = ?")
        self._q_find = q(
            "SELECT u.id, u.name, u.avatar FROM User u LEFT JOIN UserSetting s ON s.userid = u.id"
            " WHERE u.namekey = ? AND u.deleted = 0 AND COALESCE(s.discoverable, ?) = 1"
            " ORDER BY u.id LIMIT 20")
        self._q_settings = q(
            "SELECT friend_requests, discoverable FROM UserSetting WHERE userid = ?")
        self._q_new_settings = q(f"{ignore} INTO UserSetting (userid) VALUES (?)")
        self._q_set_settings = q(
            "UPDATE UserSetting SET friend_requests = COALESCE(?, friend_requests),"
            " discoverable = COALESCE(?, discoverable) WHERE userid = ?")
        self._q_expire_requests = q(
            "DELETE FROM FriendRequest WHERE created < ? AND (userid = ? OR targetid = ?)")
        self._q_is_friend = q("SELECT 1 FROM Friend WHERE userid = ? AND friendid = ?")
        self._q_take_request = q(
            "DELETE FROM FriendRequest WHERE userid = ? AND targetid = ? AND created >= ?")
        self._q_has_request = q(
            "SELECT 1 FROM FriendRequest WHERE userid = ? AND targetid = ?")
        self._q_pending_count = q("SELECT COUNT(*) FROM FriendRequest WHERE userid = ?")
        self._q_new_request = q(
            "INSERT INTO FriendRequest (userid, targetid, created) VALUES (?, ?, ?)")
        self._q_befriend = q(f"{ignore} INTO Friend (userid, friendid) VALUES (?, ?)")
        self._q_requests_to_all = (
            "SELECT r.targetid, r.userid, u.name, r.created FROM FriendRequest r JOIN User u"
            " ON u.id = r.userid WHERE r.targetid IN ({}) AND r.created >= ?"
            " ORDER BY r.created")

    async def settings(self, user_id: int) -> StoredSettings:
        def txn(c: Cursor) -> StoredSettings:
            return self._settings(c, user_id)
        return await self._run("settings", txn)

    def _settings(self, c: Cursor, user_id: int) -> StoredSettings:
        c.execute(self._q_settings, (user_id,))
        row = c.fetchone()
        if row is None:
            return StoredSettings(None, None)
        return StoredSettings(row[0], None if row[1] is None else bool(row[1]))

    async def set_settings(self, user_id: int, friend_requests: str | None,
                           discoverable: bool | None) -> StoredSettings:
        """Change the settings given (None keeps one); the settings afterwards."""
        def txn(c: Cursor) -> StoredSettings:
            c.execute(self._q_new_settings, (user_id,))
            c.execute(self._q_set_settings, (
                friend_requests, None if discoverable is None else int(discoverable), user_id))
            return self._settings(c, user_id)
        return await self._run("set_settings", txn)

    async def request_friend(self, user_id: int, target: int, now_ms: int, expired_ms: int,
                             max_pending: int) -> RequestOutcome:
        """`user_id` asks `target` to be friends; requests older than `expired_ms` of
        either are forgotten first. A request of the target to the user is accepted instead."""
        def txn(c: Cursor) -> RequestOutcome:
            c.execute(self._q_expire_requests, (expired_ms, user_id, user_id))
            c.execute(self._q_expire_requests, (expired_ms, target, target))
            c.execute(self._q_is_friend, (user_id, target))
            if c.fetchone() is not None:
                return RequestOutcome.FRIENDS
            c.execute(self._q_take_request, (target, user_id, expired_ms))
            if c.rowcount > 0:
                self._befriend(c, user_id, target)
                return RequestOutcome.MUTUAL
            c.execute(self._q_has_request, (user_id, target))
            if c.fetchone() is not None:
                return RequestOutcome.REPEATED
            c.execute(self._q_pending_count, (user_id,))
            if int(c.fetchone()[0]) >= max_pending:
                return RequestOutcome.TOO_MANY
            c.execute(self._q_new_request, (user_id, target, now_ms))
            return RequestOutcome.SENT
        return await self._run("request_friend", txn)

    async def answer_request(self, user_id: int, asker: int, accept: bool,
                             expired_ms: int) -> bool:
        """`user_id` answers the pending request of `asker` (accepting makes them friends);
        False when there was none."""
        def txn(c: Cursor) -> bool:
            c.execute(self._q_take_request, (asker, user_id, expired_ms))
            if c.rowcount <= 0:
                return False
            if accept:
                self._befriend(c, user_id, asker)
            return True
        return await self._run("answer_request", txn)

    def _befriend(self, c: Cursor, user_id: int, friend_id: int) -> None:
        c.execute(self._q_befriend, (user_id, friend_id))
        c.execute(self._q_befriend, (friend_id, user_id))

    def _requests_to_all(self, c: Cursor, user_ids: list[int], expired_ms: int
                         ) -> dict[int, list[FriendRequestRecord]]:
        """The pending requests to each of the users, oldest first, in one query; users
        without any are left out."""
        c.execute(self.dialect.sql(self._q_requests_to_all.format(marks(len(user_ids)))),
                  (*user_ids, expired_ms))
        return grouped((int(r[0]), FriendRequestRecord(int(r[1]), r[2], int(r[3])))
                       for r in c.fetchall())

    async def look_alikes(self, name_key: str, user_id: int = 0, held_since: int = 0
                          ) -> list[str]:
        """The names of other users than `user_id` with this name key, counting accounts
        deleted at `held_since` (ms) or later."""
        def txn(c: Cursor) -> list[str]:
            c.execute(self._q_look_alikes, (name_key, user_id, held_since))
            return [r[0] for r in c.fetchall()]
        return await self._run("look_alikes", txn)

    async def fill_name_keys(self, make_key: Any, batch: int = 1000) -> int:
        """Give the users from before name keys theirs (`make_key(name)`); how many were
        filled. Idempotent, in batches so that no transaction grows large."""
        def txn(c: Cursor) -> int:
            c.execute(self._q_unkeyed, (batch,))
            rows = c.fetchall()
            for user_id, name in rows:
                c.execute(self._q_set_key, (make_key(name), user_id))
            return len(rows)
        filled = 0
        while True:
            done = await self._run("fill_name_keys", txn)
            filled += done
            if done < batch:
                return filled

    async def profile(self, user_id: int) -> Profile | None:
        def txn(c: Cursor) -> Profile | None:
            c.execute(self._q_profile, (user_id,))
            row = c.fetchone()
            return None if row is None else Profile(int(row[0]), row[1], row[2], row[3])
        return await self._run("profile", txn)

    async def set_profile(self, user_id: int, name: tuple[str, str] | None, bio: str | None,
                          avatar: str | None = None) -> Profile | None:
        """Change the name (name, key), the bio and/or the avatar (an upload's id); None when
        the name is taken."""
        def txn(c: Cursor) -> Profile | None:
            self.dialect.revive(c)
            if name is not None:
                try:
                    c.execute(self._q_set_name, (*name, user_id))
                except self.dialect.integrity_error:
                    return None
            if bio is not None:
                c.execute(self._q_set_bio, (bio, user_id))
            if avatar is not None:
                c.execute(self._q_set_avatar, (avatar, user_id))
            c.execute(self._q_profile, (user_id,))
            row = c.fetchone()
            return Profile(int(row[0]), row[1], row[2], row[3])
        return await self._run("set_profile", txn, retry=False)

    async def find_users(self, name_key: str, discoverable: bool
                         ) -> list[tuple[int, str, str]]:
        """Discoverable users with this name key (`discoverable`: the default of those who
        never chose)."""
        def txn(c: Cursor) -> list[tuple[int, str, str]]:
            c.execute(self._q_find, (name_key, int(discoverable)))
            return [(int(r[0]), r[1], r[2]) for r in c.fetchall()]
        return await self._run("find_users", txn)

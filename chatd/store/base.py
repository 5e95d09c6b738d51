"""The chat store: every query the service needs, written once for both SQL dialects."""

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.logger import Logger

from chatd.messages import ServiceUnavailable
from chatd.store.history import HistoryQueries, Unread
from chatd.store.relations import RelationQueries

T = TypeVar("T")
Cursor = Any

log = Logger()


class StoreUnavailable(ServiceUnavailable):
    """The database could not be reached (after one retry where a retry is safe)."""


class NameTaken(Exception):
    """A unique name (user or group) is already in use."""


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    password: str
    tokens_revoked: int = 0  # ms since the epoch up to which the user's tokens are revoked


@dataclass(frozen=True)
class Member:
    id: int
    name: str
    role: str


@dataclass
class GroupRecord:
    id: int
    name: str
    desc: str
    members: list[Member] = field(default_factory=list)


@dataclass(frozen=True)
class Welcome:
    """A user's friends (id, name), groups, first stored frames (mid, frame), the users who
    blocked them, and (when asked for) their unread conversations."""
    friends: list[tuple[int, str]]
    groups: list[GroupRecord]
    offline: list[tuple[int, str]]
    blocked_by: set[int] = field(default_factory=set)
    unread: list[Unread] = field(default_factory=list)


class Dialect(Protocol):
    """What differs between MySQL and SQLite: driver, placeholders, errors, schema."""

    name: str
    insert_ignore: str
    for_update: str
    inline_rows: bool  # bulk inserts as one statement built by the caller (see save_history)
    lost_connection: tuple[type[Exception], ...]
    integrity_error: type[Exception]

    def sql(self, text: str) -> str:
        """Turn a query written with `?` placeholders into the driver's paramstyle."""

    def make_pool(self) -> adbapi.ConnectionPool:
        """A connection pool configured for this dialect."""

    def revive(self, cursor: Cursor) -> None:
        """Reconnect a pooled connection the server dropped, before work that must not be
        retried (a retry could repeat a write that did commit)."""

    def create_schema(self) -> None:
        """Create missing tables; blocking, called once before the reactor runs."""


class Store(HistoryQueries, RelationQueries):
    """Queries over an adbapi pool. Every call is one named interaction (one transaction)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._pool = dialect.make_pool()
        q = dialect.sql
        ignore = dialect.insert_ignore
        self._q_create_user = q("INSERT INTO User (name, password) VALUES (?, ?)")
        self._q_user = q(
            "SELECT u.id, u.name, u.password, t.revoked FROM User u"
            " LEFT JOIN TokenRevocation t ON t.userid = u.id WHERE u.id = ?")
        self._q_new_secret = q(f"{ignore} INTO ServerSecret (name, secret) VALUES (?, ?)")
        self._q_secret = q("SELECT secret FROM ServerSecret WHERE name = ?")
        self._q_new_revocation = q(
            f"{ignore} INTO TokenRevocation (userid, revoked) SELECT id, 0 FROM User WHERE id = ?")
        self._q_revoke = q(
            "UPDATE TokenRevocation SET revoked = ? WHERE userid = ? AND revoked < ?")
        self._q_add_friend = q(f"{ignore} INTO Friend (userid, friendid) VALUES (?, ?)")
        self._q_friends = q(
            "SELECT u.id, u.name FROM Friend f JOIN User u ON u.id = f.friendid"
            " WHERE f.userid = ? ORDER BY u.id")
        self._q_create_group = q("INSERT INTO AllGroup (groupname, groupdesc) VALUES (?, ?)")
        self._q_join = q(f"{ignore} INTO GroupUser (groupid, userid, grouprole, joined)"
                         " VALUES (?, ?, ?, ?)")
        self._q_group = q("SELECT id, groupname, groupdesc FROM AllGroup WHERE id = ?")
        self._q_group_members = q(
            "SELECT u.id, u.name, gu.grouprole FROM GroupUser gu JOIN User u ON u.id = gu.userid"
            " WHERE gu.groupid = ? ORDER BY u.id")
        self._q_user_groups = q(
            "SELECT g.id, g.groupname, g.groupdesc, u.id, u.name, gu.grouprole"
            " FROM GroupUser mine JOIN AllGroup g ON g.id = mine.groupid"
            " JOIN GroupUser gu ON gu.groupid = g.id JOIN User u ON u.id = gu.userid"
            " WHERE mine.userid = ? ORDER BY g.id, u.id")
        self._q_member_ids = q("SELECT userid FROM GroupUser WHERE groupid = ?")
        self._q_save_offline = q(
            f"{ignore} INTO OfflineMessage (userid, mid, message) SELECT id, ?, ? FROM User"
            " WHERE id = ?")
        self._q_offline = q(
            "SELECT mid, message FROM OfflineMessage WHERE userid = ? ORDER BY mid LIMIT ?")
        self._prepare_history()
        self._prepare_relations()

    def close(self) -> None:
        self._pool.close()

    async def _run(self, name: str, fn: Callable[..., T], *args: Any, retry: bool = True) -> T:
        """Run one interaction; when `retry` says the work is idempotent, run it once more on
        a revived connection after a lost one (every pooled connection may be stale after a
        database restart, and cp_reconnect only notices on the next failure)."""
        try:
            return await self._pool.runInteraction(fn, *args)
        except self.dialect.lost_connection as e:
            log.warn("store {name}: lost connection ({error})", name=name, error=e)
            if not retry:
                raise StoreUnavailable(f"{name}: {e}") from None
        try:
            return await self._pool.runInteraction(self._revived, fn, *args)
        except self.dialect.lost_connection as e:
            raise StoreUnavailable(f"{name}: {e}") from None

    def _revived(self, cursor: Cursor, fn: Callable[..., T], *args: Any) -> T:
        self.dialect.revive(cursor)
        return fn(cursor, *args)

    async def create_user(self, name: str, password_hash: str) -> int:
        """Insert a user and return the new id; NameTaken if the name exists."""
        def txn(c: Cursor) -> int:
            self.dialect.revive(c)
            try:
                c.execute(self._q_create_user, (name, password_hash))
            except self.dialect.integrity_error as e:
                raise NameTaken(name) from e
            return int(c.lastrowid)
        return await self._run("create_user", txn, retry=False)

    async def user(self, user_id: int) -> UserRecord | None:
        def txn(c: Cursor) -> UserRecord | None:
            c.execute(self._q_user, (user_id,))
            row = c.fetchone()
            return UserRecord(int(row[0]), row[1], row[2], int(row[3] or 0)) if row else None
        return await self._run("user", txn)

    async def revoke_tokens(self, user_id: int, until_ms: int) -> None:
        """Revoke every token of the user issued up to `until_ms` (never moves back)."""
        def txn(c: Cursor) -> None:
            c.execute(self._q_new_revocation, (user_id,))
            c.execute(self._q_revoke, (until_ms, user_id, until_ms))
        await self._run("revoke_tokens", txn)

    async def secret(self, name: str) -> bytes:
        """A random secret shared by every node of the database, created on first use."""
        def txn(c: Cursor) -> bytes:
            c.execute(self._q_new_secret, (name, secrets.token_hex(32)))
            c.execute(self._q_secret, (name,))
            return bytes.fromhex(c.fetchone()[0])
        return await self._run("secret", txn)

    async def add_friend(self, user_id: int, friend_id: int) -> None:
        """Make the friendship mutual; repeating it changes nothing."""
        def txn(c: Cursor) -> None:
            c.execute(self._q_add_friend, (user_id, friend_id))
            c.execute(self._q_add_friend, (friend_id, user_id))
        await self._run("add_friend", txn)

    async def friends(self, user_id: int) -> list[tuple[int, str]]:
        return await self._run("friends", self._friends, user_id)

    def _friends(self, c: Cursor, user_id: int) -> list[tuple[int, str]]:
        c.execute(self._q_friends, (user_id,))
        return [(int(r[0]), r[1]) for r in c.fetchall()]

    async def create_group(self, name: str, desc: str, creator: int, joined: int = 0) -> int:
        """Create a group with its creator as first member; NameTaken if the name exists.
        `joined` is the mid from which the creator reads the group's history."""
        def txn(c: Cursor) -> int:
            self.dialect.revive(c)
            try:
                c.execute(self._q_create_group, (name, desc))
            except self.dialect.integrity_error as e:
                raise NameTaken(name) from e
            group_id = int(c.lastrowid)
            c.execute(self._q_join, (group_id, creator, "creator", joined))
            return group_id
        return await self._run("create_group", txn, retry=False)

    async def join_group(self, group_id: int, user_id: int, joined: int = 0
                         ) -> GroupRecord | None:
        """Add a normal member (repeating is harmless and keeps the first `joined`, the mid
        from which the member reads the group's history); None when there is no group."""
        def txn(c: Cursor) -> GroupRecord | None:
            c.execute(self._q_group, (group_id,))
            row = c.fetchone()
            if row is None:
                return None
            c.execute(self._q_join, (group_id, user_id, "normal", joined))
            c.execute(self._q_group_members, (group_id,))
            members = [Member(int(r[0]), r[1], r[2]) for r in c.fetchall()]
            return GroupRecord(int(row[0]), row[1], row[2], members)
        return await self._run("join_group", txn)

    async def user_groups(self, user_id: int) -> list[GroupRecord]:
        """The user's groups with all their members, in one query whatever their number."""
        return await self._run("user_groups", self._user_groups, user_id)

    def _user_groups(self, c: Cursor, user_id: int) -> list[GroupRecord]:
        c.execute(self._q_user_groups, (user_id,))
        groups: dict[int, GroupRecord] = {}
        for gid, gname, gdesc, uid, uname, role in c.fetchall():
            group = groups.get(gid)
            if group is None:
                group = groups[gid] = GroupRecord(int(gid), gname, gdesc)
            group.members.append(Member(int(uid), uname, role))
        return list(groups.values())

    async def member_ids(self, group_id: int) -> set[int]:
        """Ids of a group's members; empty when there is no such group."""
        def txn(c: Cursor) -> set[int]:
            c.execute(self._q_member_ids, (group_id,))
            return {int(r[0]) for r in c.fetchall()}
        return await self._run("member_ids", txn)

    async def save_offline(self, rows: Sequence[tuple[int, int, str]]) -> int:
        """Store (user id, mid, frame) rows and return how many were stored: a row for a
        user who does not exist is not. A repeated (user, mid) is stored once."""
        def txn(c: Cursor) -> int:
            stored = 0
            for user_id, mid, frame in rows:
                c.execute(self._q_save_offline, (mid, frame, user_id))
                stored += max(c.rowcount, 0)
            return stored
        return await self._run("save_offline", txn)

    async def offline(self, user_id: int, limit: int) -> list[tuple[int, str]]:
        """The user's stored frames as (mid, frame), oldest first."""
        return await self._run("offline", self._offline, user_id, limit)

    def _offline(self, c: Cursor, user_id: int, limit: int) -> list[tuple[int, str]]:
        """The user's stored frames as (mid, frame), oldest first."""
        c.execute(self._q_offline, (user_id, limit))
        return [(int(r[0]), r[1]) for r in c.fetchall()]

    async def welcome(self, user_id: int, limit: int, unread: bool = False) -> Welcome:
        """What a login reply needs, in one interaction: one thread hop and one transaction
        instead of several, which is most of a login's cost once the hash is done."""
        def txn(c: Cursor) -> Welcome:
            return Welcome(self._friends(c, user_id), self._user_groups(c, user_id),
                           self._offline(c, user_id, limit), self._blocked_by(c, user_id),
                           self._unread(c, user_id) if unread else [])
        return await self._run("welcome", txn)

    async def delete_offline(self, user_id: int, mids: Iterable[int]) -> None:
        """Forget stored frames the client has (delete on acknowledgement, not on send)."""
        mids = list(mids)
        if not mids:
            return
        marks = ", ".join("?" * len(mids))
        query = self.dialect.sql(
            f"DELETE FROM OfflineMessage WHERE userid = ? AND mid IN ({marks})")

        def txn(c: Cursor) -> None:
            c.execute(query, (user_id, *mids))
        await self._run("delete_offline", txn)

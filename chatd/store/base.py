"""The chat store: every query the handlers need, written once for both SQL dialects."""

import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.messages import ServiceUnavailable
from chatd.metrics import Stats
from chatd.store.accounts import AccountQueries, FriendRequestRecord, request_cutoff
from chatd.store.actions import ActionQueries
from chatd.store.batch import Batcher, grouped, marks
from chatd.store.deletion import DeletionQueries
from chatd.store.history import HistoryQueries, Unread
from chatd.store.media import MediaQueries
from chatd.store.push import PushQueries
from chatd.store.relations import RelationQueries
from chatd.store.roles import RoleQueries

T = TypeVar("T")
Cursor = Any

log = Logger()


class StoreUnavailable(ServiceUnavailable):
    """The database could not be reached (after one retry where a retry is safe)."""


class NameTaken(Exception):
    """A unique name (user or group) is already in use."""


class JoinRefused(Exception):
    """ADD_GROUP to a group joined by invite only."""


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    password: str
    tokens_revoked: int = 0  # ms since the epoch up to which the user's tokens are revoked
    banned: bool = False


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
    announcement: str = ""
    join: str = "open"  # who may join: "open" (anyone with the id) or "invite"


@dataclass(frozen=True)
class UserDetails:
    """What an operator sees of a user (chatd-admin user ID)."""
    id: int
    name: str
    friends: list[tuple[int, str]]
    groups: list[tuple[int, str]]
    offline: int
    ban: tuple[str, str] | None  # (reason, since) when banned


@dataclass(frozen=True)
class Welcome:
    """A user's friends (id, name), groups, first stored frames (mid, frame), the users who
    blocked them, and (when asked for) their unread conversations and friend requests."""
    friends: list[tuple[int, str]]
    groups: list[GroupRecord]
    offline: list[tuple[int, str]]
    blocked_by: set[int] = field(default_factory=set)
    unread: list[Unread] = field(default_factory=list)
    requests: list[FriendRequestRecord] = field(default_factory=list)


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


class Store(HistoryQueries, RelationQueries, AccountQueries, RoleQueries, DeletionQueries,
            MediaQueries, ActionQueries, PushQueries):
    """Queries over an adbapi pool. Every call is one named interaction (one transaction)."""

    def __init__(self, dialect: Dialect, stats: Stats | None = None,
                 call_later: Callable[..., Any] | None = None) -> None:
        self.dialect = dialect
        self.stats = stats or Stats()
        self._pool = dialect.make_pool()
        if call_later is None:
            from twisted.internet import reactor
            call_later = reactor.callLater  # type: ignore[attr-defined]
        self._users = Batcher("user", self._user_records, self._run_batch, call_later)
        self._welcomes = Batcher("welcome", self._welcome_all, self._run_batch, call_later)
        self._mute_lists = Batcher("mutes", self._mutes_all, self._run_batch, call_later)
        q = dialect.sql
        ignore = dialect.insert_ignore
        self._q_create_user = q("INSERT INTO User (name, password, namekey) VALUES (?, ?, ?)")
        self._q_users = (
            "SELECT u.id, u.name, u.password, t.revoked, b.userid FROM User u"
            " LEFT JOIN TokenRevocation t ON t.userid = u.id"
            " LEFT JOIN Ban b ON b.userid = u.id WHERE u.id IN ({})")
        self._q_user = q(self._q_users.format("?"))
        self._q_new_secret = q(f"{ignore} INTO ServerSecret (name, secret) VALUES (?, ?)")
        self._q_secret = q("SELECT secret FROM ServerSecret WHERE name = ?")
        self._q_new_revocation = q(
            f"{ignore} INTO TokenRevocation (userid, revoked) SELECT id, 0 FROM User WHERE id = ?")
        self._q_revoke = q(
            "UPDATE TokenRevocation SET revoked = ? WHERE userid = ? AND revoked < ?")
        self._q_add_friend = q(f"{ignore} INTO Friend (userid, friendid) VALUES (?, ?)")
        # templates of queries for a batch of users: {} is the IN list (marks)
        self._q_friends_of = (
            "SELECT f.userid, u.id, u.name FROM Friend f JOIN User u ON u.id = f.friendid"
            " WHERE f.userid IN ({}) ORDER BY f.userid, u.id")
        self._q_create_group = q("INSERT INTO AllGroup (groupname, groupdesc) VALUES (?, ?)")
        self._q_join = q(f"{ignore} INTO GroupUser (groupid, userid, grouprole, joined)"
                         " VALUES (?, ?, ?, ?)")
        self._q_group = q("SELECT id, groupname, groupdesc, announcement, joinmode"
                          " FROM AllGroup WHERE id = ?")
        self._q_group_members = q(
            "SELECT u.id, u.name, gu.grouprole FROM GroupUser gu JOIN User u ON u.id = gu.userid"
            " WHERE gu.groupid = ? ORDER BY u.id")
        self._q_groups_of_users = (
            "SELECT mine.userid, g.id, g.groupname, g.groupdesc, u.id, u.name, gu.grouprole,"
            " g.announcement, g.joinmode"
            " FROM GroupUser mine JOIN AllGroup g ON g.id = mine.groupid"
            " JOIN GroupUser gu ON gu.groupid = g.id JOIN User u ON u.id = gu.userid"
            " WHERE mine.userid IN ({}) ORDER BY mine.userid, g.id, u.id")
        self._q_member_ids = q("SELECT userid FROM GroupUser WHERE groupid = ?")
        self._q_groups_created = q(
            "SELECT COUNT(*) FROM GroupUser WHERE userid = ? AND grouprole = 'creator'")
        self._q_save_offline = q(
            f"{ignore} INTO OfflineMessage (userid, mid, message) SELECT id, ?, ? FROM User"
            " WHERE id = ?")
        self._q_offline = q(
            "SELECT mid, message FROM OfflineMessage WHERE userid = ? ORDER BY mid LIMIT ?")
        self._q_offline_users = "SELECT DISTINCT userid FROM OfflineMessage WHERE userid IN ({})"
        self._q_offline_count = q("SELECT COUNT(*) FROM OfflineMessage WHERE userid = ?")
        self._q_groups_of = q(
            "SELECT g.id, g.groupname FROM GroupUser gu JOIN AllGroup g ON g.id = gu.groupid"
            " WHERE gu.userid = ? ORDER BY g.id")
        self._q_ban_of = q("SELECT reason, created FROM Ban WHERE userid = ?")
        self._q_unban = q("DELETE FROM Ban WHERE userid = ?")
        self._q_unbanned = q(f"{ignore} INTO Ban (userid, reason) SELECT id, ? FROM User"
                             " WHERE id = ?")
        self._q_ban_reason = q("UPDATE Ban SET reason = ? WHERE userid = ?")
        self._q_set_password = q("UPDATE User SET password = ? WHERE id = ?")
        self._prepare_history()
        self._prepare_relations()
        self._prepare_accounts()
        self._prepare_roles()
        self._prepare_deletion()
        self._prepare_media()
        self._prepare_actions()
        self._prepare_push()

    def close(self) -> None:
        self._pool.close()

    def connections_in_use(self) -> int:
        """Pool connections running an interaction now (a metric)."""
        return len(self._pool.threadpool.working)

    async def _run(self, name: str, fn: Callable[..., T], *args: Any, retry: bool = True) -> T:
        """One interaction, timed and counted under `name`."""
        started = time.monotonic()
        failed = True
        try:
            result = await self._attempt(name, fn, *args, retry=retry)
            failed = False
            return result
        finally:
            self.stats.store_call(name, time.monotonic() - started, failed)

    async def _attempt(self, name: str, fn: Callable[..., T], *args: Any, retry: bool) -> T:
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

    def _run_batch(self, name: str, fn: Callable[..., list[Any]], keys: list[Any]
                   ) -> Deferred[list[Any]]:
        return Deferred.fromCoroutine(self._run(name, fn, keys))

    def _revived(self, cursor: Cursor, fn: Callable[..., T], *args: Any) -> T:
        self.dialect.revive(cursor)
        return fn(cursor, *args)

    async def create_user(self, name: str, password_hash: str, name_key: str | None = None
                          ) -> int:
        """Insert a user and return the new id; NameTaken if the name exists. `name_key`:
        chatd/names.py's key of the name."""
        def txn(c: Cursor) -> int:
            self.dialect.revive(c)
            try:
                c.execute(self._q_create_user, (name, password_hash, name_key))
            except self.dialect.integrity_error as e:
                raise NameTaken(name) from e
            return int(c.lastrowid)
        return await self._run("create_user", txn, retry=False)

    async def user(self, user_id: int) -> UserRecord | None:
        """The user's record (None for no such user); the lookups of one reactor turn are
        one query."""
        return await self._users(user_id)

    def _user_records(self, c: Cursor, user_ids: list[int]) -> list[UserRecord | None]:
        c.execute(self.dialect.sql(self._q_users.format(", ".join("?" * len(user_ids)))),
                  user_ids)
        found = {int(r[0]): UserRecord(int(r[0]), r[1], r[2], int(r[3] or 0), r[4] is not None)
                 for r in c.fetchall()}
        return [found.get(user_id) for user_id in user_ids]

    async def ping(self) -> None:
        """A trivial query: the health check's proof that the database answers."""
        def txn(c: Cursor) -> None:
            c.execute("SELECT 1")
            c.fetchall()
        await self._run("ping", txn)

    async def details(self, user_id: int) -> UserDetails | None:
        """A user's name, friends, groups, offline backlog and ban; None when unknown."""
        def txn(c: Cursor) -> UserDetails | None:
            c.execute(self._q_user, (user_id,))
            row = c.fetchone()
            if row is None:
                return None
            c.execute(self._q_groups_of, (user_id,))
            groups = [(int(r[0]), r[1]) for r in c.fetchall()]
            c.execute(self._q_offline_count, (user_id,))
            offline = int(c.fetchone()[0])
            c.execute(self._q_ban_of, (user_id,))
            ban = c.fetchone()
            return UserDetails(int(row[0]), row[1], self._friends(c, user_id), groups, offline,
                               (ban[0], str(ban[1])) if ban else None)
        return await self._run("details", txn)

    async def ban(self, user_id: int, reason: str) -> bool:
        """Ban the user (again: the reason is replaced); False when there is no such user."""
        def txn(c: Cursor) -> bool:
            c.execute(self._q_unbanned, (reason, user_id))
            c.execute(self._q_ban_reason, (reason, user_id))
            c.execute(self._q_ban_of, (user_id,))
            return c.fetchone() is not None
        return await self._run("ban", txn)

    async def unban(self, user_id: int) -> None:
        def txn(c: Cursor) -> None:
            c.execute(self._q_unban, (user_id,))
        await self._run("unban", txn)

    async def set_password(self, user_id: int, password_hash: str) -> bool:
        """Replace the user's password hash; False when there is no such user."""
        def txn(c: Cursor) -> bool:
            c.execute(self._q_set_password, (password_hash, user_id))
            c.execute(self._q_user, (user_id,))
            return c.fetchone() is not None
        return await self._run("set_password", txn)

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
        return self._friends_of(c, [user_id]).get(user_id, [])

    def _friends_of(self, c: Cursor, user_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
        """Each user's friends (id, name) in one query; users without any are left out."""
        c.execute(self._in(self._q_friends_of, user_ids), user_ids)
        return grouped((int(r[0]), (int(r[1]), r[2])) for r in c.fetchall())

    def _in(self, template: str, keys: Sequence[Any]) -> str:
        """A batch query with an IN list for `keys`, in the dialect's words."""
        return self.dialect.sql(template.format(marks(len(keys))))

    async def friend_counts(self, user_ids: list[int]) -> dict[int, int]:
        """How many friends each of these users has (users without any are left out)."""
        marks = ", ".join("?" * len(user_ids))
        query = self.dialect.sql(
            f"SELECT userid, COUNT(*) FROM Friend WHERE userid IN ({marks}) GROUP BY userid")

        def txn(c: Cursor) -> dict[int, int]:
            c.execute(query, tuple(user_ids))
            return {int(r[0]): int(r[1]) for r in c.fetchall()}
        return await self._run("friend_counts", txn)

    async def groups_created(self, user_id: int) -> int:
        def txn(c: Cursor) -> int:
            c.execute(self._q_groups_created, (user_id,))
            return int(c.fetchone()[0])
        return await self._run("groups_created", txn)

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

    async def join_group(self, group_id: int, user_id: int, joined: int = 0,
                         invited: bool = True) -> GroupRecord | None:
        """Add a normal member (repeating is harmless and keeps the first `joined`, the mid
        from which the member reads the group's history); None when there is no group.
        Without `invited` a group joined by invite only raises JoinRefused, unless the user
        is a member already."""
        def txn(c: Cursor) -> GroupRecord | None:
            c.execute(self._q_group, (group_id,))
            row = c.fetchone()
            if row is None:
                return None
            if not invited and row[4] == "invite":
                c.execute(self._q_role, (group_id, user_id))
                if c.fetchone() is None:
                    raise JoinRefused(group_id)
            c.execute(self._q_join, (group_id, user_id, "normal", joined))
            c.execute(self._q_group_members, (group_id,))
            members = [Member(int(r[0]), r[1], r[2]) for r in c.fetchall()]
            return GroupRecord(int(row[0]), row[1], row[2], members, row[3], row[4])
        return await self._run("join_group", txn)

    async def user_groups(self, user_id: int) -> list[GroupRecord]:
        """The user's groups with all their members, in one query whatever their number."""
        return await self._run("user_groups", self._user_groups, user_id)

    def _user_groups(self, c: Cursor, user_id: int) -> list[GroupRecord]:
        return self._groups_of_users(c, [user_id]).get(user_id, [])

    def _groups_of_users(self, c: Cursor, user_ids: list[int]) -> dict[int, list[GroupRecord]]:
        """Each user's groups with all their members, in one query; users without any are
        left out. A group two of them share is a record of each one's own."""
        c.execute(self._in(self._q_groups_of_users, user_ids), user_ids)
        found: dict[int, dict[int, GroupRecord]] = {}
        for mine, gid, gname, gdesc, uid, uname, role, announcement, join in c.fetchall():
            groups = found.setdefault(int(mine), {})
            group = groups.get(gid)
            if group is None:
                group = groups[gid] = GroupRecord(int(gid), gname, gdesc, [], announcement,
                                                  join)
            group.members.append(Member(int(uid), uname, role))
        return {user_id: list(groups.values()) for user_id, groups in found.items()}

    async def member_ids(self, group_id: int) -> set[int]:
        """Ids of a group's members; empty when there is no such group."""
        def txn(c: Cursor) -> set[int]:
            c.execute(self._q_member_ids, (group_id,))
            return {int(r[0]) for r in c.fetchall()}
        return await self._run("member_ids", txn)

    async def save_offline(self, rows: Sequence[tuple[int, int, str]]) -> int:
        """Store (user id, mid, frame) rows and return how many were stored: a row for a
        user who does not exist is not. A repeated (user, mid) is stored once."""
        return await self._run("save_offline", self._save_rows, rows)

    def _save_rows(self, c: Cursor, rows: Sequence[tuple[int, int, str]]) -> int:
        stored = 0
        for user_id, mid, frame in rows:
            c.execute(self._q_save_offline, (mid, frame, user_id))
            stored += max(c.rowcount, 0)
        return stored

    async def save_new_offline(self, rows: Sequence[tuple[int, int, str]], quota: int
                               ) -> tuple[int, set[int]]:
        """Store rows as `save_offline` does, except for users who already hold `quota`
        messages; return (rows stored, those users). Count and insert share a transaction,
        so messages stored at the same moment pass the quota only on MySQL, and only by the
        transactions running at that moment."""
        users = sorted({row[0] for row in rows})
        marks = ", ".join("?" * len(users))
        query = self.dialect.sql(
            f"SELECT userid FROM OfflineMessage WHERE userid IN ({marks})"
            " GROUP BY userid HAVING COUNT(*) >= ?")

        def txn(c: Cursor) -> tuple[int, set[int]]:
            c.execute(query, (*users, quota))
            full = {int(r[0]) for r in c.fetchall()}
            return self._save_rows(c, [row for row in rows if row[0] not in full]), full
        return await self._run("save_new_offline", txn)

    async def offline(self, user_id: int, limit: int) -> list[tuple[int, str]]:
        """The user's stored frames as (mid, frame), oldest first."""
        return await self._run("offline", self._offline, user_id, limit)

    def _offline(self, c: Cursor, user_id: int, limit: int) -> list[tuple[int, str]]:
        """The user's stored frames as (mid, frame), oldest first."""
        c.execute(self._q_offline, (user_id, limit))
        return [(int(r[0]), r[1]) for r in c.fetchall()]

    async def welcome(self, user_id: int, limit: int, unread: bool = False) -> Welcome:
        """What a login reply needs, in one interaction: one thread hop and one transaction
        instead of several, which is most of a login's cost once the hash is done; the
        welcomes asked for in one reactor turn share the interaction."""
        return await self._welcomes((user_id, limit, unread))

    def _welcome_all(self, c: Cursor, asked: list[tuple[int, int, bool]]) -> list[Welcome]:
        """The welcomes of a batch of logins with a query per kind for the whole batch, not
        per user: in a storm of logins the database's cost is round trips, not rows."""
        user_ids = [user_id for user_id, _, _ in asked]
        friends = self._friends_of(c, user_ids)
        groups = self._groups_of_users(c, user_ids)
        offline = self._offline_of(c, [(user_id, limit) for user_id, limit, _ in asked])
        blocked_by = self._blockers(c, user_ids)
        unread_ids = [user_id for user_id, _, unread in asked if unread]
        unread = self._unread_of(c, unread_ids) if unread_ids else {}
        requests = self._requests_to_all(c, user_ids, request_cutoff())
        return [Welcome(friends.get(u, []), groups.get(u, []), offline.get((u, limit), []),
                        blocked_by.get(u, set()), unread.get(u, []) if wanted else [],
                        requests.get(u, []))
                for u, limit, wanted in asked]

    def _offline_of(self, c: Cursor, asked: list[tuple[int, int]]
                    ) -> dict[tuple[int, int], list[tuple[int, str]]]:
        """The first `limit` stored frames of each (user, limit) asked: one query finds who
        has any (after a crash, hardly anyone), then one per user who has."""
        user_ids = [user_id for user_id, _ in asked]
        c.execute(self._in(self._q_offline_users, user_ids), user_ids)
        having = {int(r[0]) for r in c.fetchall()}
        return {(user_id, limit): self._offline(c, user_id, limit)
                for user_id, limit in set(asked) if user_id in having}

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

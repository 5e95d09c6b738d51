"""Queries that undo relations: removing a friend, leaving and kicking from groups, blocking.

A mixin of Store (it uses Store's `_run` and dialect). The group changes lock the group's row
first, so two members leaving at once cannot both miss that the group became empty.
"""

from enum import Enum
from typing import Any

from chatd.store.batch import marks

Cursor = Any
BLOCKERS_CHUNK = 500


class GroupChange(Enum):
    """The outcome of a leave or a kick."""
    DONE = "done"
    NO_GROUP = "no group"
    NOT_MEMBER = "not a member"        # the one leaving or kicking
    NOT_CREATOR = "not the creator"    # the one kicking
    TARGET_NOT_MEMBER = "target not a member"
    SELF = "kicking oneself"           # or changing one's own role, muting oneself
    NOT_OWNER = "not the owner"        # the one changing roles
    NOT_ADMIN = "neither owner nor admin"
    OUTRANKED = "an admin acting on the owner or an admin"
    BAD_INVITE = "no such invite"
    NAME_TAKEN = "the group name is in use"


class RelationQueries:

    dialect: Any

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _prepare_relations(self) -> None:
        q = self.dialect.sql
        ignore = self.dialect.insert_ignore
        self._q_unfriend = q(
            "DELETE FROM Friend WHERE (userid = ? AND friendid = ?)"
            " OR (userid = ? AND friendid = ?)")
        self._q_lock_group = q(f"SELECT id FROM AllGroup WHERE id = ?{self.dialect.for_update}")
        self._q_role = q("SELECT grouprole FROM GroupUser WHERE groupid = ? AND userid = ?")
        self._q_leave = q("DELETE FROM GroupUser WHERE groupid = ? AND userid = ?")
        self._q_forget_marker = q("DELETE FROM ReadMarker WHERE userid = ? AND groupid = ?")
        self._q_senior = q(
            "SELECT userid FROM GroupUser WHERE groupid = ? ORDER BY"
            " CASE grouprole WHEN 'admin' THEN 0 ELSE 1 END, joined, userid LIMIT 1")
        self._q_promote = q(
            "UPDATE GroupUser SET grouprole = 'creator' WHERE groupid = ? AND userid = ?")
        self._q_delete_group = q("DELETE FROM AllGroup WHERE id = ?")
        self._q_block = q(f"{ignore} INTO Block (userid, blockedid) VALUES (?, ?)")
        self._q_unblock = q("DELETE FROM Block WHERE userid = ? AND blockedid = ?")

    async def remove_friend(self, user_id: int, friend_id: int) -> bool:
        """End a friendship on both sides; False when there was none."""
        def txn(c: Cursor) -> bool:
            c.execute(self._q_unfriend, (user_id, friend_id, friend_id, user_id))
            return c.rowcount > 0
        return await self._run("remove_friend", txn)

    async def leave_group(self, group_id: int, user_id: int) -> GroupChange:
        """The user leaves; a leaving creator (owner) hands the group to the admin who
        joined longest ago, or without admins to the member who did; the last one out
        deletes it."""
        return await self._run("leave_group", self._leave, group_id, user_id)

    def _leave(self, c: Cursor, group_id: int, user_id: int) -> GroupChange:
        role = self._locked_role(c, group_id, user_id)
        if isinstance(role, GroupChange):
            return role
        self._remove_member(c, group_id, user_id)
        c.execute(self._q_senior, (group_id,))
        heir = c.fetchone()
        if heir is None:
            c.execute(self._q_delete_group, (group_id,))
        elif role == "creator":
            c.execute(self._q_promote, (group_id, int(heir[0])))
        return GroupChange.DONE

    async def kick_member(self, group_id: int, by: int, user_id: int) -> GroupChange:
        """The creator (owner) `by` removes `user_id` from the group; an admin removes a
        plain member."""
        def txn(c: Cursor) -> GroupChange:
            role = self._locked_role(c, group_id, by)
            if isinstance(role, GroupChange):
                return role
            if role not in ("creator", "admin"):
                return GroupChange.NOT_CREATOR
            if user_id == by:
                return GroupChange.SELF
            c.execute(self._q_role, (group_id, user_id))
            target = c.fetchone()
            if target is None:
                return GroupChange.TARGET_NOT_MEMBER
            if role == "admin" and target[0] in ("creator", "admin"):
                return GroupChange.OUTRANKED
            self._remove_member(c, group_id, user_id)
            return GroupChange.DONE
        return await self._run("kick_member", txn)

    def _locked_role(self, c: Cursor, group_id: int, user_id: int) -> str | GroupChange:
        """Lock the group's row, then the user's role in it (or why there is none)."""
        c.execute(self._q_lock_group, (group_id,))
        if c.fetchone() is None:
            return GroupChange.NO_GROUP
        c.execute(self._q_role, (group_id, user_id))
        row = c.fetchone()
        return GroupChange.NOT_MEMBER if row is None else row[0]

    def _remove_member(self, c: Cursor, group_id: int, user_id: int) -> None:
        c.execute(self._q_leave, (group_id, user_id))
        c.execute(self._q_forget_marker, (user_id, group_id))

    async def set_block(self, user_id: int, blocked_id: int, block: bool) -> None:
        """`user_id` blocks (or unblocks) `blocked_id`; repeating changes nothing."""
        def txn(c: Cursor) -> None:
            c.execute(self._q_block if block else self._q_unblock, (user_id, blocked_id))
        await self._run("set_block", txn)

    async def blockers_of(self, user_ids: list[int]) -> dict[int, set[int]]:
        """For each of these users who is blocked by anyone, who blocked them."""
        return await self._run("blockers_of", self._blockers, user_ids)

    def _blockers(self, c: Cursor, user_ids: list[int]) -> dict[int, set[int]]:
        """`blockers_of` on a cursor: a query per BLOCKERS_CHUNK users."""
        found: dict[int, set[int]] = {}
        for start in range(0, len(user_ids), BLOCKERS_CHUNK):
            chunk = user_ids[start:start + BLOCKERS_CHUNK]
            c.execute(self.dialect.sql(
                f"SELECT blockedid, userid FROM Block WHERE blockedid IN ({marks(len(chunk))})"),
                chunk)
            for blocked, blocker in c.fetchall():
                found.setdefault(int(blocked), set()).add(int(blocker))
        return found

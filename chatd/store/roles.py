"""Queries of groups with roles: SET_ROLE, UPDATE_GROUP, MUTE_MEMBER, invites, and the
owners, admins and mutes the handlers and the message path ask for.

A mixin of Store (it uses Store's `_run`, dialect and RelationQueries' `_locked_role`). Roles
are stored in GroupUser.grouprole with the words of the original server: 'creator' is the
owner, 'normal' a member, and 'admin' is new; clients see them through presence.py's words.
Every change locks the group's row first and checks the actor's role inside the same
transaction, so two admins acting at once cannot pass each other's checks.
"""

from typing import Any

from chatd.store.relations import GroupChange

Cursor = Any

OWNER, ADMIN, MEMBER = "creator", "admin", "normal"  # as stored
MODERATORS = (OWNER, ADMIN)


class RoleQueries:

    dialect: Any
    _q_role: str

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _locked_role(self, c: Cursor, group_id: int, user_id: int) -> str | GroupChange: ...

    def _prepare_roles(self) -> None:
        q = self.dialect.sql
        self._q_set_role = q("UPDATE GroupUser SET grouprole = ? WHERE groupid = ? AND userid = ?")
        self._q_mute = q("UPDATE GroupUser SET muted = ? WHERE groupid = ? AND userid = ?")
        self._q_members_mutes = q("SELECT userid, muted FROM GroupUser WHERE groupid = ?")
        self._q_moderators = q(
            "SELECT userid, grouprole FROM GroupUser WHERE groupid = ? AND grouprole IN (?, ?)")
        self._q_new_invite = q("INSERT INTO GroupInvite (code, groupid, expires) VALUES (?, ?, ?)")
        self._q_revoke_invite = q("DELETE FROM GroupInvite WHERE code = ? AND groupid = ?")
        self._q_invite = q("SELECT groupid FROM GroupInvite WHERE code = ? AND expires > ?")
        self._q_expire_invites = q("DELETE FROM GroupInvite WHERE groupid = ? AND expires <= ?")
        self._q_join_mode = q("SELECT joinmode FROM AllGroup WHERE id = ?")

    def _moderator(self, c: Cursor, group_id: int, by: int) -> str | GroupChange:
        """The role of `by`, an owner or admin, or why it may not act."""
        role = self._locked_role(c, group_id, by)
        if isinstance(role, GroupChange) or role in MODERATORS:
            return role
        return GroupChange.NOT_ADMIN

    def _target(self, c: Cursor, group_id: int, by: int, by_role: str, user_id: int
                ) -> str | GroupChange:
        """The role of a member an owner or admin acts on, or why it may not."""
        if user_id == by:
            return GroupChange.SELF
        c.execute(self._q_role, (group_id, user_id))
        row = c.fetchone()
        if row is None:
            return GroupChange.TARGET_NOT_MEMBER
        if by_role == ADMIN and row[0] in MODERATORS:
            return GroupChange.OUTRANKED
        return str(row[0])

    async def set_role(self, group_id: int, by: int, user_id: int, role: str
                       ) -> GroupChange | list[tuple[int, str]]:
        """The owner `by` gives `user_id` a stored role; OWNER hands the group over (`by`
        becomes an admin). The (member, stored role) pairs that changed, or why none did."""
        def txn(c: Cursor) -> GroupChange | list[tuple[int, str]]:
            mine = self._locked_role(c, group_id, by)
            if isinstance(mine, GroupChange):
                return mine
            if mine != OWNER:
                return GroupChange.NOT_OWNER
            target = self._target(c, group_id, by, mine, user_id)
            if isinstance(target, GroupChange):
                return target
            c.execute(self._q_set_role, (role, group_id, user_id))
            if role != OWNER:
                return [(user_id, role)]
            c.execute(self._q_set_role, (ADMIN, group_id, by))
            return [(user_id, OWNER), (by, ADMIN)]
        return await self._run("set_role", txn)

    async def update_group(self, group_id: int, by: int, fields: dict[str, str]
                           ) -> GroupChange:
        """An owner or admin changes columns of AllGroup (their names come from the caller,
        never from a client)."""
        columns = ", ".join(f"{name} = ?" for name in fields)
        query = self.dialect.sql(f"UPDATE AllGroup SET {columns} WHERE id = ?")

        def txn(c: Cursor) -> GroupChange:
            self.dialect.revive(c)
            mine = self._moderator(c, group_id, by)
            if isinstance(mine, GroupChange):
                return mine
            try:
                c.execute(query, (*fields.values(), group_id))
            except self.dialect.integrity_error:
                return GroupChange.NAME_TAKEN
            return GroupChange.DONE
        return await self._run("update_group", txn, retry=False)

    async def mute_member(self, group_id: int, by: int, user_id: int, until: int
                          ) -> GroupChange:
        def txn(c: Cursor) -> GroupChange:
            mine = self._moderator(c, group_id, by)
            if isinstance(mine, GroupChange):
                return mine
            target = self._target(c, group_id, by, mine, user_id)
            if isinstance(target, GroupChange):
                return target
            c.execute(self._q_mute, (until, group_id, user_id))
            return GroupChange.DONE
        return await self._run("mute_member", txn)

    async def members_and_mutes(self, group_id: int) -> tuple[set[int], dict[int, int]]:
        """A group's member ids, and the muted ones with the time (ms) their mute ends."""
        def txn(c: Cursor) -> tuple[set[int], dict[int, int]]:
            c.execute(self._q_members_mutes, (group_id,))
            rows = [(int(r[0]), int(r[1])) for r in c.fetchall()]
            return {uid for uid, _ in rows}, {uid: until for uid, until in rows if until}
        return await self._run("members_and_mutes", txn)

    async def moderators(self, group_id: int) -> dict[int, str]:
        """The owner and admins of a group (stored roles)."""
        def txn(c: Cursor) -> dict[int, str]:
            c.execute(self._q_moderators, (group_id, OWNER, ADMIN))
            return {int(r[0]): r[1] for r in c.fetchall()}
        return await self._run("moderators", txn)

    async def create_invite(self, group_id: int, by: int, code: str, expires: int,
                            now: int) -> GroupChange:
        def txn(c: Cursor) -> GroupChange:
            mine = self._moderator(c, group_id, by)
            if isinstance(mine, GroupChange):
                return mine
            c.execute(self._q_expire_invites, (group_id, now))
            c.execute(self._q_new_invite, (code, group_id, expires))
            return GroupChange.DONE
        return await self._run("create_invite", txn, retry=False)

    async def revoke_invite(self, group_id: int, by: int, code: str) -> GroupChange:
        def txn(c: Cursor) -> GroupChange:
            mine = self._moderator(c, group_id, by)
            if isinstance(mine, GroupChange):
                return mine
            c.execute(self._q_revoke_invite, (code, group_id))
            return GroupChange.DONE if c.rowcount > 0 else GroupChange.BAD_INVITE
        return await self._run("revoke_invite", txn)

    async def invite_group(self, code: str, now: int) -> int | None:
        """The group an unexpired invite code is for."""
        def txn(c: Cursor) -> int | None:
            c.execute(self._q_invite, (code, now))
            row = c.fetchone()
            return None if row is None else int(row[0])
        return await self._run("invite_group", txn)

    def _join_mode(self, c: Cursor, group_id: int) -> str:
        c.execute(self._q_join_mode, (group_id,))
        row = c.fetchone()
        return "open" if row is None else str(row[0])

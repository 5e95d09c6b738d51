"""Deleting an account and exporting a user's data (DELETE_ACCOUNT, chatd-admin delete and
export).

A mixin of Store. The account's row stays, renamed to a tombstone with a password no hash
matches, so that its id is never given to anyone else and its messages in other people's
histories keep a sender; everything else that is the user's goes in one transaction. The
tombstone keeps the old name's look-alike key for NAME_HOLD_MS, so that nobody takes the name
(or one like it) at once to pass for the person who left.
"""

import time
from typing import Any

from chatd.codec import decode, encode_text

Cursor = Any
DELETED_NAME = "deleted account"
NO_PASSWORD = "!"  # not a scrypt record: never matches (passwords.check_password)
NAME_HOLD_MS = 30 * 24 * 3600 * 1000  # a deleted account's name is free after 30 days


def name_hold_cutoff() -> int:
    """Accounts deleted before this time (ms) no longer hold their names."""
    return int(time.time() * 1000) - NAME_HOLD_MS
# Statements removing what is the user's, each with the user's id as often as it has `?`.
_REMOVALS = (
    "DELETE FROM Friend WHERE userid = ? OR friendid = ?",
    "DELETE FROM OfflineMessage WHERE userid = ?",
    "DELETE FROM FriendRequest WHERE userid = ? OR targetid = ?",
    "DELETE FROM UserSetting WHERE userid = ?",
    "DELETE FROM Block WHERE userid = ? OR blockedid = ?",
    "DELETE FROM ReadMarker WHERE userid = ?",
    "DELETE FROM PushSubscription WHERE userid = ?",
    "DELETE FROM Mute WHERE userid = ?",
    "DELETE FROM Hidden WHERE userid = ?",
    "DELETE FROM Reaction WHERE userid = ?",
    # the account's uploads and attachments: the media cleanup deletes their bytes next
    "UPDATE Media SET kept = 0, created = 0 WHERE owner = ?",
)


class DeletionQueries:

    dialect: Any

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _leave(self, c: Cursor, group_id: int, user_id: int) -> Any: ...

    def _prepare_deletion(self) -> None:
        q = self.dialect.sql
        self._q_removals = [(q(stmt), stmt.count("?")) for stmt in _REMOVALS]
        self._q_live_user = q("SELECT 1 FROM User WHERE id = ? AND password <> ?")
        self._q_user_group_ids = q("SELECT groupid FROM GroupUser WHERE userid = ?")
        self._q_tombstone = q(
            "UPDATE User SET name = ?, password = ?, bio = '', avatar = '', deleted = ?"
            " WHERE id = ?")
        self._q_sent = q("SELECT mid, message FROM History WHERE sender = ? ORDER BY mid")
        self._q_rewrite = q("UPDATE History SET message = ? WHERE mid = ?")
        self._q_sent_page = q(
            "SELECT message FROM History WHERE sender = ? ORDER BY mid LIMIT ?")

    async def delete_account(self, user_id: int, now_ms: int | None = None
                             ) -> list[int] | None:
        """Delete the account (at `now_ms`, default now); the groups it left, or None when
        there is no such (live) account."""
        deleted = int(time.time() * 1000) if now_ms is None else now_ms

        def txn(c: Cursor) -> list[int] | None:
            c.execute(self._q_live_user, (user_id, NO_PASSWORD))
            if c.fetchone() is None:
                return None
            c.execute(self._q_user_group_ids, (user_id,))
            groups = [int(r[0]) for r in c.fetchall()]
            for group_id in groups:
                self._leave(c, group_id, user_id)
            for stmt, marks in self._q_removals:
                c.execute(stmt, (user_id,) * marks)
            c.execute(self._q_tombstone,
                      (f"{DELETED_NAME} {user_id}", NO_PASSWORD, deleted, user_id))
            self._anonymise_sent(c, user_id)
            return groups
        return await self._run("delete_account", txn)

    def _anonymise_sent(self, c: Cursor, user_id: int) -> None:
        """The user's messages in history keep their text; their sender's name goes."""
        c.execute(self._q_sent, (user_id,))
        for mid, message in c.fetchall():
            frame = decode(message)
            frame["name"] = DELETED_NAME
            c.execute(self._q_rewrite, (encode_text(frame), mid))

    async def sent_messages(self, user_id: int, limit: int) -> list[dict[str, Any]]:
        """The frames the user sent that history keeps, oldest first (for the export)."""
        def txn(c: Cursor) -> list[dict[str, Any]]:
            c.execute(self._q_sent_page, (user_id, limit))
            return [decode(r[0]) for r in c.fetchall()]
        return await self._run("sent_messages", txn)

"""Queries of message actions: the kept message an action names, recall, edit, reactions,
messages hidden by one user, and what a page of kept frames needs to be shown again.

A mixin of Store (it uses Store's `_run` and dialect). A recall and an edit rewrite the kept
frame itself, so that the text of a recalled message is gone from storage and HISTORY reads
the latest text without a join; the Recalled table only says which mids were recalled, for
copies kept elsewhere (offline mailboxes, quotes).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Cursor = Any


@dataclass(frozen=True)
class KeptMessage:
    """One kept message as a user asking about it finds it."""
    mid: int
    userlo: int  # 0 for a group message
    userhi: int  # the group's id for a group message
    sender: int
    text: str  # the frame as kept (UTF-8 JSON without its line end)
    joined: int | None  # group message: when the asking user joined (None: not a member)
    role: str  # group message: the asking user's role in the group ("" otherwise)
    hidden: bool  # the asking user hid it


@dataclass
class PageState:
    """What the actions left on a page of kept frames, for one viewer."""
    reactions: dict[int, dict[str, list[int]]] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    recalled: dict[int, int] = field(default_factory=dict)  # mid -> by


class ActionQueries:

    dialect: Any

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _prepare_actions(self) -> None:
        q = self.dialect.sql
        ignore = self.dialect.insert_ignore
        self._q_kept = q("SELECT userlo, userhi, sender, message FROM History WHERE mid = ?")
        self._q_membership = q(
            "SELECT joined, grouprole FROM GroupUser WHERE groupid = ? AND userid = ?")
        self._q_is_hidden = q("SELECT 1 FROM Hidden WHERE userid = ? AND mid = ?")
        self._q_mark_recalled = q(f"{ignore} INTO Recalled (mid, userid) VALUES (?, ?)")
        self._q_rewrite = q("UPDATE History SET message = ? WHERE mid = ?")
        self._q_rewrite_if = q("UPDATE History SET message = ? WHERE mid = ? AND message = ?")
        self._q_drop_reactions = q("DELETE FROM Reaction WHERE mid = ?")
        self._q_has_reaction = q(
            "SELECT 1 FROM Reaction WHERE mid = ? AND userid = ? AND emoji = ?")
        self._q_emoji_used = q("SELECT 1 FROM Reaction WHERE mid = ? AND emoji = ? LIMIT 1")
        self._q_emoji_count = q("SELECT COUNT(DISTINCT emoji) FROM Reaction WHERE mid = ?")
        self._q_add_reaction = q(
            f"{ignore} INTO Reaction (mid, userid, emoji) VALUES (?, ?, ?)")
        self._q_remove_reaction = q(
            "DELETE FROM Reaction WHERE mid = ? AND userid = ? AND emoji = ?")
        self._q_hide = q(f"{ignore} INTO Hidden (userid, mid) VALUES (?, ?)")

    async def kept_message(self, mid: int, user_id: int) -> KeptMessage | None:
        """The kept message `mid` with the asking user's membership (group) and whether they
        hid it; None when no message has that mid."""
        def txn(c: Cursor) -> KeptMessage | None:
            c.execute(self._q_kept, (mid,))
            row = c.fetchone()
            if row is None:
                return None
            lo, hi, sender, text = int(row[0]), int(row[1]), int(row[2]), row[3]
            joined, role = None, ""
            if lo == 0:
                c.execute(self._q_membership, (hi, user_id))
                member = c.fetchone()
                if member is not None:
                    joined, role = int(member[0]), member[1]
            c.execute(self._q_is_hidden, (user_id, mid))
            return KeptMessage(mid, lo, hi, sender, text, joined, role, c.fetchone() is not None)
        return await self._run("kept_message", txn)

    async def recall_message(self, mid: int, by: int, tombstone: str) -> bool:
        """Replace the kept message by its tombstone and drop its reactions; False when it
        was recalled already."""
        def txn(c: Cursor) -> bool:
            self.dialect.revive(c)
            c.execute(self._q_mark_recalled, (mid, by))
            if c.rowcount != 1:
                return False
            c.execute(self._q_rewrite, (tombstone, mid))
            c.execute(self._q_drop_reactions, (mid,))
            return True
        return await self._run("recall_message", txn, retry=False)

    async def edit_message(self, mid: int, was: str, now: str) -> bool:
        """Replace the kept frame `was` by `now`; False when it changed meanwhile (another
        edit, a recall): the caller reads it again."""
        def txn(c: Cursor) -> bool:
            self.dialect.revive(c)
            c.execute(self._q_rewrite_if, (now, mid, was))
            return bool(c.rowcount == 1)
        return await self._run("edit_message", txn, retry=False)

    async def react(self, mid: int, user_id: int, emoji: str, on: bool, most: int
                    ) -> bool | None:
        """Add or remove one user's emoji on a message: True when that changed something,
        False when it was so already, None when `on` would exceed `most` different emoji.
        Count and insert share a transaction; on MySQL two new emoji added at the same moment
        may pass `most` by the transactions running at that moment."""
        def txn(c: Cursor) -> bool | None:
            if not on:
                c.execute(self._q_remove_reaction, (mid, user_id, emoji))
                return bool(c.rowcount == 1)
            c.execute(self._q_has_reaction, (mid, user_id, emoji))
            if c.fetchone() is not None:
                return False
            c.execute(self._q_emoji_used, (mid, emoji))
            if c.fetchone() is None:
                c.execute(self._q_emoji_count, (mid,))
                if int(c.fetchone()[0]) >= most:
                    return None
            c.execute(self._q_add_reaction, (mid, user_id, emoji))
            return True
        return await self._run("react", txn)

    async def hide_message(self, user_id: int, mid: int) -> None:
        """Delete for me: `mid` is left out of the user's HISTORY and SYNC."""
        def txn(c: Cursor) -> None:
            c.execute(self._q_hide, (user_id, mid))
        await self._run("hide_message", txn)

    async def page_state(self, mids: Sequence[int], quoted: Sequence[int], viewer: int
                         ) -> PageState:
        """Reactions and the viewer's hidden mids among `mids`, and which of `mids` and
        `quoted` were recalled: one interaction per page of kept frames."""
        marks = ", ".join("?" * len(mids))
        every = sorted(set(mids) | set(quoted))
        every_marks = ", ".join("?" * len(every))
        q = self.dialect.sql
        reactions = q(f"SELECT mid, emoji, userid FROM Reaction WHERE mid IN ({marks})"
                      " ORDER BY mid, emoji, userid")
        hidden = q(f"SELECT mid FROM Hidden WHERE userid = ? AND mid IN ({marks})")
        recalled = q(f"SELECT mid, userid FROM Recalled WHERE mid IN ({every_marks})")

        def txn(c: Cursor) -> PageState:
            state = PageState()
            if mids:
                c.execute(reactions, tuple(mids))
                for mid, emoji, user_id in c.fetchall():
                    state.reactions.setdefault(int(mid), {}).setdefault(emoji, []).append(
                        int(user_id))
                c.execute(hidden, (viewer, *mids))
                state.hidden = {int(r[0]) for r in c.fetchall()}
            c.execute(recalled, tuple(every))
            state.recalled = {int(r[0]): int(r[1]) for r in c.fetchall()}
            return state
        return await self._run("page_state", txn)

    async def expire_actions(self, before_mid: int) -> None:
        """Forget the reactions, hidden marks and recall marks of messages with mid <
        `before_mid` (history no longer keeps them)."""
        queries = [self.dialect.sql(f"DELETE FROM {table} WHERE mid < ?")
                   for table in ("Reaction", "Hidden", "Recalled")]

        def txn(c: Cursor) -> None:
            for query in queries:
                c.execute(query, (before_mid,))
        await self._run("expire_actions", txn)

    async def withdraw_offline(self, user_ids: Sequence[int], mid: int) -> None:
        """Delete the stored copies of one message from these users' offline mailboxes."""
        marks = ", ".join("?" * len(user_ids))
        query = self.dialect.sql(
            f"DELETE FROM OfflineMessage WHERE mid = ? AND userid IN ({marks})")

        def txn(c: Cursor) -> None:
            c.execute(query, (mid, *user_ids))
        await self._run("withdraw_offline", txn)

    async def revise_offline(self, user_ids: Sequence[int], mid: int, frame: str) -> None:
        """Replace the stored copies of one message in these users' offline mailboxes."""
        marks = ", ".join("?" * len(user_ids))
        query = self.dialect.sql(
            f"UPDATE OfflineMessage SET message = ? WHERE mid = ? AND userid IN ({marks})")

        def txn(c: Cursor) -> None:
            c.execute(query, (frame, mid, *user_ids))
        await self._run("revise_offline", txn)

"""Queries of kept messages and read markers: history pages, sync, unread counts, expiry.

A mixin of Store (it uses Store's `_run` and dialect): the queries of one job in one module.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chatd.store.batch import grouped, marks

Cursor = Any
# mid, userlo, userhi, sender, the frame as delivered (UTF-8 JSON without its line end)
HistoryRow = tuple[int, int, int, int, bytes]


@dataclass(frozen=True)
class Unread:
    """Messages from others after the user's read marker in one conversation."""
    peer: int  # 0 for a group
    group_id: int  # 0 for a 1:1 conversation
    count: int
    last_mid: int


class HistoryQueries:
    """History rows are keyed by conversation: (userlo, userhi) for 1:1, (0, groupid) for a
    group."""

    dialect: Any

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _prepare_history(self) -> None:
        q = self.dialect.sql
        ignore = self.dialect.insert_ignore
        head = f"{ignore} INTO History (mid, userlo, userhi, sender, message) VALUES "
        self._q_history_head = head
        self._q_save_history = q(head + "(?, ?, ?, ?, ?)")
        self._q_pair_page = q(
            "SELECT mid, message FROM History WHERE userlo = ? AND userhi = ? AND mid < ?"
            " ORDER BY mid DESC LIMIT ?")
        self._q_joined = q("SELECT joined FROM GroupUser WHERE groupid = ? AND userid = ?")
        self._q_group_page = q(
            "SELECT mid, message FROM History WHERE userlo = 0 AND userhi = ? AND mid >= ?"
            " AND mid < ?"
            " ORDER BY mid DESC LIMIT ?")
        self._q_sync = q(
            "SELECT mid, message FROM History WHERE userlo = ? AND mid > ?"
            " UNION ALL SELECT mid, message FROM History WHERE userhi = ? AND userlo <> 0"
            " AND userlo <> ? AND mid > ?"
            " UNION ALL SELECT h.mid, h.message FROM GroupUser gu JOIN History h"
            " ON h.userlo = 0 AND h.userhi = gu.groupid AND h.mid >= gu.joined"
            " WHERE gu.userid = ? AND h.mid > ?"
            " ORDER BY mid LIMIT ?")
        # for a batch of users: {0} is the IN list; the first column says whose row it is
        self._q_unread_of = (
            "SELECT h.userlo, h.userhi, 0, COUNT(*), MAX(h.mid) FROM History h"
            " LEFT JOIN ReadMarker r ON r.userid = h.userlo AND r.groupid = 0"
            " AND r.peer = h.userhi"
            " WHERE h.userlo IN ({0}) AND h.sender <> h.userlo AND h.mid > COALESCE(r.mid, 0)"
            " GROUP BY h.userlo, h.userhi"
            " UNION ALL SELECT h.userhi, h.userlo, 0, COUNT(*), MAX(h.mid) FROM History h"
            " LEFT JOIN ReadMarker r ON r.userid = h.userhi AND r.groupid = 0"
            " AND r.peer = h.userlo WHERE h.userhi IN ({0}) AND h.userlo <> 0"
            " AND h.userlo <> h.userhi AND h.sender <> h.userhi"
            " AND h.mid > COALESCE(r.mid, 0) GROUP BY h.userhi, h.userlo"
            " UNION ALL SELECT gu.userid, 0, gu.groupid, COUNT(*), MAX(h.mid) FROM GroupUser gu"
            " JOIN History h ON h.userlo = 0 AND h.userhi = gu.groupid AND h.mid >= gu.joined"
            " LEFT JOIN ReadMarker r ON r.userid = gu.userid AND r.groupid = gu.groupid"
            " AND r.peer = 0 WHERE gu.userid IN ({0}) AND h.sender <> gu.userid"
            " AND h.mid > COALESCE(r.mid, 0) GROUP BY gu.userid, gu.groupid")
        self._q_new_marker = q(
            f"{ignore} INTO ReadMarker (userid, groupid, peer, mid) VALUES (?, ?, ?, 0)")
        self._q_move_marker = q(
            "UPDATE ReadMarker SET mid = ? WHERE userid = ? AND groupid = ? AND peer = ?"
            " AND mid < ?")
        self._q_oldest = q("SELECT mid FROM History WHERE mid < ? ORDER BY mid LIMIT ?")
        self._q_expire = q("DELETE FROM History WHERE mid <= ?")
        self._q_forget_history = q("DELETE FROM History WHERE mid = ?")

    async def save_history(self, rows: Sequence[HistoryRow]) -> None:
        """Keep messages, one multi-row INSERT for all of them; a repeated mid is kept once.

        On MySQL the statement is built here, with the frames as hex literals (bytes.hex is
        C): PyMySQL's executemany would escape every value in Python on a pool thread, holding
        the GIL that the reactor needs for every message. SQLite binds in C anyway.
        """
        if self.dialect.inline_rows:
            statement = self._q_history_head + ",".join(
                f"({mid:d},{lo:d},{hi:d},{sender:d},X'{frame.hex()}')"
                for mid, lo, hi, sender, frame in rows)

            def txn(c: Cursor) -> None:
                c.execute(statement)
        else:
            text_rows = [(mid, lo, hi, sender, frame.decode())
                         for mid, lo, hi, sender, frame in rows]

            def txn(c: Cursor) -> None:
                c.executemany(self._q_save_history, text_rows)
        await self._run("save_history", txn)

    async def forget_history(self, mid: int) -> None:
        """Drop one kept message (it was refused after all)."""
        def txn(c: Cursor) -> None:
            c.execute(self._q_forget_history, (mid,))
        await self._run("forget_history", txn)

    async def pair_history(self, user_a: int, user_b: int, before: int, limit: int
                           ) -> list[tuple[int, str]]:
        """Up to `limit` messages between two users with mid < `before`, newest first."""
        def txn(c: Cursor) -> list[tuple[int, str]]:
            c.execute(self._q_pair_page, (min(user_a, user_b), max(user_a, user_b), before,
                                          limit))
            return [(int(r[0]), r[1]) for r in c.fetchall()]
        return await self._run("pair_history", txn)

    async def group_history(self, group_id: int, user_id: int, before: int, limit: int
                            ) -> list[tuple[int, str]] | None:
        """Like pair_history for a group, from the user's join on; None for a non-member."""
        def txn(c: Cursor) -> list[tuple[int, str]] | None:
            c.execute(self._q_joined, (group_id, user_id))
            row = c.fetchone()
            if row is None:
                return None
            c.execute(self._q_group_page, (group_id, int(row[0]), before, limit))
            return [(int(r[0]), r[1]) for r in c.fetchall()]
        return await self._run("group_history", txn)

    async def sync(self, user_id: int, after: int, limit: int) -> list[tuple[int, str]]:
        """Every message of the user's conversations with mid > `after`, oldest first."""
        def txn(c: Cursor) -> list[tuple[int, str]]:
            u = user_id
            c.execute(self._q_sync, (u, after, u, u, after, u, after, limit))
            return [(int(r[0]), r[1]) for r in c.fetchall()]
        return await self._run("sync", txn)

    def _unread_of(self, c: Cursor, user_ids: list[int]) -> dict[int, list[Unread]]:
        """Each user's unread conversations, in one query; users without any are left out."""
        c.execute(self.dialect.sql(self._q_unread_of.format(marks(len(user_ids)))),
                  user_ids * 3)
        return grouped((int(r[0]), Unread(int(r[1]), int(r[2]), int(r[3]), int(r[4])))
                       for r in c.fetchall())

    async def mark_read(self, user_id: int, group_id: int, peer: int, mid: int) -> bool:
        """Move the user's read marker of a conversation forward to `mid` (never back);
        False when the conversation is a group the user is not a member of."""
        def txn(c: Cursor) -> bool:
            if group_id:
                c.execute(self._q_joined, (group_id, user_id))
                if c.fetchone() is None:
                    return False
            c.execute(self._q_new_marker, (user_id, group_id, peer))
            c.execute(self._q_move_marker, (mid, user_id, group_id, peer, mid))
            return True
        return await self._run("mark_read", txn)

    async def expire_history(self, before_mid: int, batch: int) -> int:
        """Delete up to `batch` of the oldest messages with mid < `before_mid` (one short
        transaction, so expiry never holds locks for long); return how many went."""
        def txn(c: Cursor) -> int:
            c.execute(self._q_oldest, (before_mid, batch))
            mids = [int(r[0]) for r in c.fetchall()]
            if mids:
                c.execute(self._q_expire, (mids[-1],))
            return len(mids)
        return await self._run("expire_history", txn)

"""Queries of uploads and attachments: slots, their one use, completion, the quota, cleanup.

A mixin of Store (it uses Store's `_run` and dialect). The bytes are not here: they live in
the media store (chatd/media) under the row's id; this is what every node must agree on.
"""

from dataclasses import dataclass
from typing import Any

Cursor = Any

SLOT, ARRIVING, COMPLETE = 0, 1, 2
KEEP_FOR_EVER = (1 << 63) - 1  # `kept` of an upload no cleanup takes (an avatar)
_COLUMNS = "id, owner, name, mime, size, state, created, kept, width, height, thumb"


@dataclass(frozen=True)
class MediaRow:
    """One upload: who made it, what it is, how far it got, and when a message last named it
    (`kept`, ms since the epoch; 0 when none has)."""
    id: str
    owner: int
    name: str
    mime: str
    size: int
    state: int = SLOT
    created: int = 0
    kept: int = 0
    width: int = 0
    height: int = 0
    thumb: bool = False


def _row(r: Any) -> MediaRow:
    return MediaRow(r[0], int(r[1]), r[2], r[3], int(r[4]), int(r[5]), int(r[6]), int(r[7]),
                    int(r[8]), int(r[9]), bool(r[10]))


class MediaQueries:

    dialect: Any

    async def _run(self, name: str, fn: Any, *args: Any, retry: bool = True) -> Any: ...

    def _prepare_media(self) -> None:
        q = self.dialect.sql
        self._q_media_usage = q("SELECT COALESCE(SUM(size), 0) FROM Media WHERE owner = ?")
        self._q_new_media = q(f"INSERT INTO Media ({_COLUMNS}) VALUES"
                              " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._q_media = q(f"SELECT {_COLUMNS} FROM Media WHERE id = ?")
        self._q_claim_media = q("UPDATE Media SET state = ? WHERE id = ? AND state = ?")
        self._q_complete_media = q(
            "UPDATE Media SET state = ?, size = ?, width = ?, height = ?, thumb = ?"
            " WHERE id = ? AND state = ?")
        self._q_keep_media = q(
            "UPDATE Media SET kept = ? WHERE id = ? AND owner = ? AND state = ? AND kept < ?")
        self._q_stale_media = q(
            "SELECT id, thumb FROM Media WHERE (kept = 0 AND created < ?)"
            " OR (kept > 0 AND kept < ?) LIMIT ?")

    async def create_slot(self, row: MediaRow, quota: int) -> bool:
        """Record a new upload slot unless the owner's uploads and this one would pass
        `quota` bytes; False when they would. Count and insert share a transaction."""
        def txn(c: Cursor) -> bool:
            c.execute(self._q_media_usage, (row.owner,))
            if int(c.fetchone()[0]) + row.size > quota:
                return False
            c.execute(self._q_new_media, (row.id, row.owner, row.name, row.mime, row.size,
                                          row.state, row.created, row.kept, row.width,
                                          row.height, int(row.thumb)))
            return True
        return await self._run("create_slot", txn, retry=False)  # type: ignore[no-any-return]

    async def media(self, media_id: str) -> MediaRow | None:
        def txn(c: Cursor) -> MediaRow | None:
            c.execute(self._q_media, (media_id,))
            r = c.fetchone()
            return None if r is None else _row(r)
        return await self._run("media", txn)  # type: ignore[no-any-return]

    async def claim_slot(self, media_id: str) -> MediaRow | None:
        """Use a slot once: its row, now ARRIVING, or None when it is unknown or was used."""
        def txn(c: Cursor) -> MediaRow | None:
            c.execute(self._q_claim_media, (ARRIVING, media_id, SLOT))
            if c.rowcount != 1:
                return None
            c.execute(self._q_media, (media_id,))
            return _row(c.fetchone())
        return await self._run("claim_slot", txn, retry=False)  # type: ignore[no-any-return]

    async def complete_media(self, media_id: str, size: int, width: int, height: int,
                             thumb: bool) -> bool:
        """The bytes are in the store: the upload may be attached. False when its row went
        meanwhile (cleaned up, or recalled)."""
        def txn(c: Cursor) -> bool:
            c.execute(self._q_complete_media, (COMPLETE, size, width, height, int(thumb),
                                               media_id, ARRIVING))
            return bool(c.rowcount == 1)
        return await self._run("complete_media", txn)  # type: ignore[no-any-return]

    async def keep_media(self, media_id: str, owner: int, until: int) -> MediaRow | None:
        """A message of `owner` names the upload at `until` (ms), or an avatar keeps it for
        ever: move `kept` forward. The row as it is now (None when unknown); the caller checks
        the owner and the state."""
        def txn(c: Cursor) -> MediaRow | None:
            c.execute(self._q_keep_media, (until, media_id, owner, COMPLETE, until))
            c.execute(self._q_media, (media_id,))
            r = c.fetchone()
            return None if r is None else _row(r)
        return await self._run("keep_media", txn)  # type: ignore[no-any-return]

    async def stale_media(self, unnamed_before: int, kept_before: int, limit: int
                          ) -> list[tuple[str, bool]]:
        """Up to `limit` uploads to delete, as (id, has a thumbnail): made before
        `unnamed_before` and never named by a message, or last named before `kept_before`."""
        def txn(c: Cursor) -> list[tuple[str, bool]]:
            c.execute(self._q_stale_media, (unnamed_before, kept_before, limit))
            return [(r[0], bool(r[1])) for r in c.fetchall()]
        return await self._run("stale_media", txn)  # type: ignore[no-any-return]

    async def drop_media(self, media_ids: list[str]) -> None:
        """Forget uploads (their bytes are deleted by the caller)."""
        if not media_ids:
            return
        query = self.dialect.sql(
            f"DELETE FROM Media WHERE id IN ({', '.join('?' * len(media_ids))})")

        def txn(c: Cursor) -> None:
            c.execute(query, tuple(media_ids))
        await self._run("drop_media", txn)

"""Finding the kept message that an action or a reply names, as the asking user may see it.

History is written in batches a fraction of a second after a message is accepted, by the node
that accepted it. This node's batch is written first; a message accepted by another node a
moment ago may still be in that node's batch, so a mid younger than YOUNG_SECONDS that is not
found yet is looked up once more after WAIT_SECONDS.
"""

from dataclasses import dataclass
from typing import Any

from twisted.internet.task import deferLater

from chatd.codec import decode
from chatd.handlers.context import Context
from chatd.messages import ChatError, Errno
from chatd.mids import mid_floor
from chatd.store.actions import KeptMessage

YOUNG_SECONDS = 5.0
WAIT_SECONDS = 0.6  # more than two of another node's history batches (FLUSH_SECONDS)
TOMBSTONE_FIELDS = ("msgid", "id", "name", "to", "toid", "groupid", "time", "mid")


@dataclass(frozen=True)
class Found:
    """A kept message the asking user takes part in, decoded."""
    kept: KeptMessage
    frame: dict[str, Any]

    @property
    def group_id(self) -> int | None:
        return self.kept.userhi if self.kept.userlo == 0 else None

    def other(self, user_id: int) -> int:
        """The other user of a 1:1 conversation, as `user_id` sees it."""
        kept = self.kept
        return kept.userhi if kept.userlo == user_id else kept.userlo


class KeptMessages:
    """Looks up kept messages for the action handlers and the reply part."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.history = context.history
        self.clock = context.clock

    async def find(self, user_id: int, mid: int, refusal: dict[str, Any] | None = None
                   ) -> Found:
        """The message `mid` if `user_id` takes part in its conversation and could see it
        (a group member since before it); else errno 210 with `refusal`'s fields."""
        kept = await self._lookup(user_id, mid)
        if kept is None or not _sees(kept, user_id):
            raise ChatError(Errno.NO_SUCH_MESSAGE, **(refusal or {}))
        return Found(kept, decode(kept.text))

    async def _lookup(self, user_id: int, mid: int) -> KeptMessage | None:
        if not self.history.enabled:
            return None
        await self.history.flush()
        kept = await self.store.kept_message(mid, user_id)
        if kept is None and mid >= mid_floor(self.clock.seconds() - YOUNG_SECONDS):
            await deferLater(self.clock, WAIT_SECONDS, lambda: None)
            kept = await self.store.kept_message(mid, user_id)
        return kept


def _sees(kept: KeptMessage, user_id: int) -> bool:
    if kept.userlo == 0:
        return kept.joined is not None and kept.mid >= kept.joined
    return user_id in (kept.userlo, kept.userhi)


def tombstone(frame: dict[str, Any], by: int) -> dict[str, Any]:
    """What is kept of a recalled message: who sent it where and when, not what."""
    stone = {k: frame[k] for k in TOMBSTONE_FIELDS if k in frame}
    stone["recalled"] = True
    stone["by"] = by
    return stone

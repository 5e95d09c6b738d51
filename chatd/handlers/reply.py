"""The reply part of a chat message (`reply_to` -> `quote`), and kept frames shown again as
the message actions left them: tombstones, reactions, hidden messages, recalled quotes.

A message without `reply_to` costs the composer one dictionary lookup. Showing a page of
kept frames (HISTORY, SYNC, the offline messages of a login) costs one store interaction for
the whole page, none when it holds no chat message.
"""

from typing import Any

from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.kept import KeptMessages, tombstone
from chatd.messages import GROUP_CHAT, ONE_CHAT, ChatError, Errno
from chatd.requests import MAX_INT
from chatd.store.actions import PageState

QUOTE_CHARACTERS = 200
CHAT = (ONE_CHAT, GROUP_CHAT)


class Reply:
    """A composer part: ONE_CHAT / GROUP_CHAT `reply_to` a message of the same
    conversation; the server adds `quote`."""

    field = "reply_to"

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.history = context.history
        self.kept = KeptMessages(context)

    def add(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
            members: list[int]) -> Any:
        mid = req["reply_to"]
        if type(mid) is not int:
            raise ChatError(Errno.WRONG_TYPE, "reply_to")
        if not 1 <= mid <= MAX_INT:
            raise ChatError(Errno.OUT_OF_RANGE, "reply_to")
        return self._quote(session.user_id, mid, frame)  # type: ignore[arg-type]

    async def _quote(self, sender: int, mid: int, frame: dict[str, Any]) -> None:
        found = await self.kept.find(sender, mid)
        group_id = frame.get("groupid")
        if group_id is not None:
            same = found.group_id == group_id
        else:
            same = found.group_id is None and found.other(sender) == frame["to"]
        if not same:
            raise ChatError(Errno.OTHER_CONVERSATION)
        if found.kept.hidden:
            raise ChatError(Errno.HIDDEN)
        if found.frame.get("recalled"):
            raise ChatError(Errno.RECALLED)
        quoted = found.frame
        frame["quote"] = {"id": mid, "name": quoted.get("name", ""),
                          "msg": quoted.get("msg", "")[:QUOTE_CHARACTERS]}

    def show(self, frames: list[dict[str, Any]], viewer: int) -> Any:
        """Tombstones for recalled messages (a copy may be older than the recall),
        recalled quotes, reactions, and `hidden` on what the viewer hid (HISTORY and SYNC
        leave those out)."""
        if not self.history.enabled:
            return None
        mids = [f["mid"] for f in frames if f.get("msgid") in CHAT and "mid" in f]
        if not mids:
            return None
        quoted = [f["quote"]["id"] for f in frames if type(f.get("quote")) is dict]
        return self._show(frames, mids, quoted, viewer)

    async def _show(self, frames: list[dict[str, Any]], mids: list[int], quoted: list[int],
                    viewer: int) -> None:
        state = await self.store.page_state(mids, quoted, viewer)
        for frame in frames:
            if frame.get("msgid") in CHAT and "mid" in frame:
                _as_left(frame, state)


def _as_left(frame: dict[str, Any], state: PageState) -> None:
    """One kept chat frame as the actions left it."""
    mid = frame["mid"]
    by = state.recalled.get(mid)
    if by is not None and not frame.get("recalled"):
        stone = tombstone(frame, by)
        frame.clear()
        frame.update(stone)
    if mid in state.hidden:
        frame["hidden"] = True
    if frame.get("recalled"):
        return
    reactions = state.reactions.get(mid)
    if reactions:
        frame["reactions"] = reactions
    quote = frame.get("quote")
    if type(quote) is dict and quote.get("id") in state.recalled:
        frame["quote"] = {"id": quote["id"], "name": quote.get("name", ""), "recalled": True}

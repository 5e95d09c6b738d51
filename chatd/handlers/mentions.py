"""GROUP_CHAT `mentions`: the members a message names, or "all".

A Part (composer.py): a list of member ids costs a set lookup per id; "all" asks the store
for the sender's role, so only that message (and the sender's later ones) waits. Recipients
get `mentions` as the server checked it, and history keeps it with the frame; who is pushed
because of it is decided in chatd/push/notifier.py.
"""

from typing import Any

from chatd.delivery.session import Session
from chatd.messages import GROUP_CHAT, ChatError, Errno
from chatd.store import Store
from chatd.store.roles import MODERATORS

MAX_MENTIONS = 50


def may_mention_all(role: str | None) -> bool:
    """Who may mention everyone: the group's owner and its admins (chatd/store/roles.py)."""
    return role in MODERATORS


class Mentions:
    """The `mentions` part of GROUP_CHAT."""

    field = "mentions"

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
            members: list[int]) -> Any:
        if frame["msgid"] != GROUP_CHAT:
            return None
        mentions = req["mentions"]
        if mentions == "all":
            return self._all(session, req, frame)
        if type(mentions) is not list or not all(type(m) is int for m in mentions):
            raise ChatError(Errno.WRONG_TYPE, "mentions")
        if not 1 <= len(mentions) <= MAX_MENTIONS:
            raise ChatError(Errno.OUT_OF_RANGE, "mentions")
        others = set(members)
        if not all(m in others for m in mentions):
            raise ChatError(Errno.MENTION_NOT_MEMBER)
        frame["mentions"] = sorted(set(mentions))
        return None

    async def _all(self, session: Session, req: dict[str, Any], frame: dict[str, Any]) -> None:
        role = await self.store.group_role(req["groupid"], session.user_id)  # type: ignore
        if not may_mention_all(role):
            raise ChatError(Errno.MENTION_ALL)
        frame["mentions"] = "all"

    def show(self, frames: list[dict[str, Any]], viewer: int) -> None:
        """Kept frames keep their mentions as they were sent."""
        return None

"""Joining a group, by its id (ADD_GROUP) or by an invite (JOIN_BY_INVITE): the same checks
and the same reply either way."""

from typing import Any

from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.presence import group_view
from chatd.messages import ChatError, Errno
from chatd.store import JoinRefused


class Joiner:
    """Adds a user to a group and describes the group as the user sees it."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.quotas = context.quotas
        self.presence = context.presence
        self.mids = context.mids

    async def join(self, session: Session, group_id: int, invited: bool) -> dict[str, Any]:
        """The group's view after the session's user joined it; `invited`: the user holds
        an invite, so a group joined by invite only takes them. The member reads the group's
        history from a fresh mid, so that a message this node accepted in the same
        millisecond before the join is not counted in (mids of one node increase strictly)."""
        user_id = session.user_id
        await self.quotas.check_join(group_id, user_id)
        try:
            group = await self.store.join_group(group_id, user_id, self.mids.next(), invited)
        except JoinRefused:
            raise ChatError(Errno.INVITE_ONLY) from None
        if group is None:
            raise ChatError(Errno.NO_SUCH_GROUP)
        self.router.group_changed(group.id)
        online = await self.presence.online(user_id, [m.id for m in group.members])
        return group_view(group, online, session.proto, user_id)

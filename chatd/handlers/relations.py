"""Undoing relations: REMOVE_FRIEND, LEAVE_GROUP, KICK_MEMBER and BLOCK.

Member caches and block caches on every node follow each change through the router's
announcements.
"""

from typing import Any

from chatd.codec import encode
from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.messages import ChatError, Errno, MsgId
from chatd.store.relations import GroupChange

REFUSALS = {
    GroupChange.NO_GROUP: Errno.NO_SUCH_GROUP,
    GroupChange.NOT_MEMBER: Errno.NOT_A_MEMBER,
    GroupChange.NOT_CREATOR: Errno.NOT_CREATOR,
    GroupChange.TARGET_NOT_MEMBER: Errno.TARGET_NOT_MEMBER,
    GroupChange.SELF: Errno.KICK_SELF,
    GroupChange.OUTRANKED: Errno.OUTRANKED,
}


class Relations:
    """Handlers of msgids 29-36."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router

    def handlers(self) -> dict[int, Any]:
        return {MsgId.REMOVE_FRIEND: self.remove_friend, MsgId.LEAVE_GROUP: self.leave_group,
                MsgId.KICK_MEMBER: self.kick_member, MsgId.BLOCK: self.block}

    async def remove_friend(self, session: Session, req: dict[str, Any]) -> None:
        friend_id = req["friendid"]
        if not await self.store.remove_friend(session.user_id, friend_id):
            raise ChatError(Errno.NOT_A_FRIEND)
        session.send({"msgid": MsgId.REMOVE_FRIEND_ACK, "errno": 0, "friendid": friend_id})

    async def leave_group(self, session: Session, req: dict[str, Any]) -> None:
        group_id = req["groupid"]
        self._check(await self.store.leave_group(group_id, session.user_id))
        self.router.group_changed(group_id)
        session.send({"msgid": MsgId.LEAVE_GROUP_ACK, "errno": 0, "groupid": group_id})

    async def kick_member(self, session: Session, req: dict[str, Any]) -> None:
        group_id, user_id = req["groupid"], req["userid"]
        self._check(await self.store.kick_member(group_id, session.user_id, user_id))
        self.router.group_changed(group_id)
        self.router.notify(user_id, encode({"msgid": MsgId.NOTICE, "kind": "kicked",
                                            "groupid": group_id}))
        session.send({"msgid": MsgId.KICK_MEMBER_ACK, "errno": 0, "groupid": group_id,
                      "userid": user_id})

    async def block(self, session: Session, req: dict[str, Any]) -> None:
        user_id, block = req["userid"], req["block"]
        if user_id == session.user_id:
            raise ChatError(Errno.BLOCK_SELF)
        if await self.store.user(user_id) is None:
            raise ChatError(Errno.NO_SUCH_USER)
        await self.store.set_block(session.user_id, user_id, block)
        self.router.block_changed(session.user_id, user_id, block)
        session.send({"msgid": MsgId.BLOCK_ACK, "errno": 0, "userid": user_id, "block": block})

    @staticmethod
    def _check(change: GroupChange) -> None:
        if change is not GroupChange.DONE:
            raise ChatError(REFUSALS[change])

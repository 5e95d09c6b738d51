"""Friends and groups: ADD_FRIEND, CREATE_GROUP, ADD_GROUP and the two lists, with live
state. Undoing them (removing, leaving, kicking, blocking) is relations.py.
"""

from typing import Any

from twisted.logger import Logger

from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.joining import Joiner
from chatd.handlers.presence import friend_view, friend_views, group_views
from chatd.messages import ChatError, Errno, MsgId
from chatd.store import NameTaken

log = Logger()


class Social:
    """Handlers of msgids 7, 8, 9, 19 and 21."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.quotas = context.quotas
        self.blocks = context.blocks
        self.presence = context.presence
        self.mids = context.mids
        self.friend_requests = context.friend_requests
        self.joiner = Joiner(context)

    def handlers(self) -> dict[int, Any]:
        return {MsgId.ADD_FRIEND: self.add_friend, MsgId.CREATE_GROUP: self.create_group,
                MsgId.ADD_GROUP: self.add_group, MsgId.FRIEND_LIST: self.friend_list,
                MsgId.GROUP_LIST: self.group_list}

    async def add_friend(self, session: Session, req: dict[str, Any]) -> None:
        user_id, friend_id = session.user_id, req["friendid"]
        if friend_id == user_id:
            raise ChatError(Errno.SELF_FRIEND)
        if friend_id in self.blocks.blockers(user_id):
            raise ChatError(Errno.BLOCKED)
        friend = await self.store.user(friend_id)
        if friend is None:
            raise ChatError(Errno.NO_SUCH_USER)
        await self.quotas.check_friend(user_id, friend_id)
        await self.friend_requests.admit(session, friend_id)
        await self.store.add_friend(user_id, friend_id)
        online = await self.presence.online(user_id, [friend_id])
        session.send({"msgid": MsgId.ADD_FRIEND_ACK, "errno": 0,
                      "friend": friend_view(friend_id, friend.name, online)})

    async def create_group(self, session: Session, req: dict[str, Any]) -> None:
        await self.quotas.check_create_group(session.user_id)
        try:
            group_id = await self.store.create_group(
                req["groupname"], req.get("groupdesc") or "", session.user_id,
                self.join_mark())
        except NameTaken:
            raise ChatError(Errno.GROUP_NAME_TAKEN) from None
        self.router.group_changed(group_id)
        log.info("user {uid} created group {gid}", uid=session.user_id, gid=group_id)
        session.send({"msgid": MsgId.CREATE_GROUP_ACK, "errno": 0, "groupid": group_id})

    async def add_group(self, session: Session, req: dict[str, Any]) -> None:
        group = await self.joiner.join(session, req["groupid"], invited=False)
        session.send({"msgid": MsgId.ADD_GROUP_ACK, "errno": 0, "group": group})

    async def friend_list(self, session: Session, req: dict[str, Any]) -> None:
        user_id = session.user_id
        friends = await self.store.friends(user_id)
        online = await self.presence.online(user_id, [f[0] for f in friends])
        session.send({"msgid": MsgId.FRIEND_LIST_ACK, "errno": 0,
                      "friends": friend_views(friends, online, session.proto)})

    async def group_list(self, session: Session, req: dict[str, Any]) -> None:
        user_id = session.user_id
        groups = await self.store.user_groups(user_id)
        online = await self.presence.online(user_id,
                                            list({m.id for g in groups for m in g.members}))
        session.send({"msgid": MsgId.GROUP_LIST_ACK, "errno": 0,
                      "groups": group_views(groups, online, session.proto, user_id)})

    def join_mark(self) -> int:
        """The mid from which a member joining now reads a group's history: a fresh one, so
        that a message this node accepted in the same millisecond before the join is not
        counted in (mids of one node increase strictly)."""
        return self.mids.next()

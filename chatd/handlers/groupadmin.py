"""Running a group with roles: SET_ROLE, UPDATE_GROUP, MUTE_MEMBER, INVITE and JOIN_BY_INVITE
(docs/protocol.md, Groups with roles). Who may do what is checked in the store's
transactions; every change reaches the members' devices on every node as GROUP_CHANGED, and
the nodes' member, mute and role caches through the router's group_changed."""

import secrets
from typing import Any

from twisted.logger import Logger

from chatd.codec import encode
from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.joining import Joiner
from chatd.handlers.presence import ROLE_WORDS
from chatd.messages import ChatError, Errno, MsgId
from chatd.store.relations import GroupChange

log = Logger()

STORED_ROLES = {word: stored for stored, word in ROLE_WORDS[2].items()}
JOIN_MODES = ("open", "invite")
DEFAULT_INVITE_TTL = 7 * 24 * 3600
INVITE_URL = "/#join={}"  # a path on the web listener: the web client's join screen
# UPDATE_GROUP's fields and their columns in AllGroup.
COLUMNS = {"groupname": "groupname", "groupdesc": "groupdesc",
           "announcement": "announcement", "join": "joinmode"}
REFUSALS = {
    GroupChange.NO_GROUP: Errno.NO_SUCH_GROUP,
    GroupChange.NOT_MEMBER: Errno.NOT_A_MEMBER,
    GroupChange.NOT_OWNER: Errno.NOT_OWNER,
    GroupChange.NOT_ADMIN: Errno.NOT_ADMIN,
    GroupChange.OUTRANKED: Errno.OUTRANKED,
    GroupChange.TARGET_NOT_MEMBER: Errno.TARGET_NOT_MEMBER,
    GroupChange.SELF: Errno.OWN_ROLE,
    GroupChange.BAD_INVITE: Errno.BAD_INVITE,
    GroupChange.NAME_TAKEN: Errno.GROUP_NAME_TAKEN,
}


def _check(change: GroupChange | Any) -> None:
    if isinstance(change, GroupChange) and change is not GroupChange.DONE:
        raise ChatError(REFUSALS[change])


class GroupAdmin:
    """Handlers of msgids 71, 73, 76, 78 and 80."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.clock = context.clock
        self.joiner = Joiner(context)

    def handlers(self) -> dict[int, Any]:
        return {MsgId.SET_ROLE: self.set_role, MsgId.UPDATE_GROUP: self.update_group,
                MsgId.MUTE_MEMBER: self.mute_member, MsgId.INVITE: self.invite,
                MsgId.JOIN_BY_INVITE: self.join_by_invite}

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    async def set_role(self, session: Session, req: dict[str, Any]) -> None:
        group_id, user_id, role = req["groupid"], req["userid"], req["role"]
        if role not in STORED_ROLES:
            raise ChatError(Errno.BAD_SETTING, "role")
        changed = await self.store.set_role(group_id, session.user_id, user_id,
                                            STORED_ROLES[role])
        _check(changed)
        roles = [{"id": uid, "role": ROLE_WORDS[2][stored]} for uid, stored in changed]
        await self._changed(group_id, session.user_id, {"roles": roles})
        log.info("user {uid} made user {target} {role} of group {gid}", uid=session.user_id,
                 target=user_id, role=role, gid=group_id)
        session.send({"msgid": MsgId.SET_ROLE_ACK, "errno": 0, "groupid": group_id,
                      "userid": user_id, "role": role})

    async def update_group(self, session: Session, req: dict[str, Any]) -> None:
        group_id = req["groupid"]
        if req.get("join") is not None and req["join"] not in JOIN_MODES:
            raise ChatError(Errno.BAD_SETTING, "join")
        fields = {name: req[name] for name in COLUMNS if req.get(name) is not None}
        if fields:
            _check(await self.store.update_group(
                group_id, session.user_id, {COLUMNS[k]: v for k, v in fields.items()}))
            await self._changed(group_id, session.user_id, fields)
        session.send({"msgid": MsgId.UPDATE_GROUP_ACK, "errno": 0, "groupid": group_id})

    async def mute_member(self, session: Session, req: dict[str, Any]) -> None:
        group_id, user_id, until = req["groupid"], req["userid"], req["until"]
        _check(await self.store.mute_member(group_id, session.user_id, user_id, until))
        await self._changed(group_id, session.user_id, {"muted": {"id": user_id,
                                                                  "until": until}})
        session.send({"msgid": MsgId.MUTE_MEMBER_ACK, "errno": 0, "groupid": group_id,
                      "userid": user_id, "until": until})

    async def invite(self, session: Session, req: dict[str, Any]) -> None:
        group_id, revoke = req["groupid"], req.get("revoke")
        if revoke is not None:
            _check(await self.store.revoke_invite(group_id, session.user_id, revoke))
            session.send({"msgid": MsgId.INVITE_ACK, "errno": 0, "groupid": group_id,
                          "revoked": revoke})
            return
        now = self._now_ms()
        expires = now + 1000 * (req.get("ttl") or DEFAULT_INVITE_TTL)
        code = secrets.token_urlsafe(12)
        _check(await self.store.create_invite(group_id, session.user_id, code, expires, now))
        session.send({"msgid": MsgId.INVITE_ACK, "errno": 0, "groupid": group_id,
                      "code": code, "url": INVITE_URL.format(code), "expires": expires})

    async def join_by_invite(self, session: Session, req: dict[str, Any]) -> None:
        group_id = await self.store.invite_group(req["code"], self._now_ms())
        if group_id is None:
            raise ChatError(Errno.BAD_INVITE)
        group = await self.joiner.join(session, group_id, invited=True)
        session.send({"msgid": MsgId.JOIN_BY_INVITE_ACK, "errno": 0, "group": group})

    async def _changed(self, group_id: int, by: int, fields: dict[str, Any]) -> None:
        """Every node forgets what it cached of the group; every member's devices hear
        what changed (live: an offline member sees the group as it is at the next login)."""
        self.router.group_changed(group_id)
        frame = encode({"msgid": MsgId.GROUP_CHANGED, "groupid": group_id, "by": by, **fields})
        for member in await self.store.member_ids(group_id):
            self.router.notify(member, frame)

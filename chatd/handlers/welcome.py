"""The login reply, and the offline messages it carries or that follow it.

A login reads the user's friends, groups, blockers and stored frames in one store call and
answers with them, always as the session's first frame. Frames stored for the user while
that read was running are caught up afterwards (`offline_stored`, which the router signals).
Stored frames are deleted once the client has them: at once for the original dialect (no
acknowledgements), on RECV_ACK for proto 2 (chat.py).
"""

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from chatd.codec import decode, encode
from chatd.delivery.inbox import Inbox
from chatd.delivery.session import Session
from chatd.handlers.befriending import request_views
from chatd.handlers.context import Context
from chatd.handlers.presence import friend_views, group_views, unread_views
from chatd.messages import Errno, MsgId
from chatd.store import GroupRecord

log = Logger()

OFFLINE_IN_REPLY = 100
OFFLINE_PER_LOGIN = 10_000


class Welcome:
    """Builds the login reply of a session whose claim succeeded."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.offline = context.offline
        self.history = context.history
        self.blocks = context.blocks
        self.presence = context.presence
        self.resume = context.resume
        self.stats = context.stats
        self.composer = context.composer
        # fields other capabilities add to a proto-2 login reply (registered in build_node)
        self.reply_fields: list[Callable[[Session], Awaitable[dict[str, Any]]]] = []

    async def welcome(self, session: Session, inbox: Inbox) -> bool:
        """Send the login reply with friends, groups and offline messages, then open the
        inbox; False when the connection went away meanwhile."""
        user_id = inbox.user_id
        extra = self._reply_fields(session)
        try:
            token = await self.resume.issue(user_id) if session.proto == 2 else None
            unread = session.proto == 2 and self.history.enabled
            if unread:
                await self.history.flush()  # the unread counts include what this node accepted
            welcome = await self.store.welcome(user_id, OFFLINE_PER_LOGIN, unread)
            friends, groups, offline = welcome.friends, welcome.groups, welcome.offline
            self.blocks.load(user_id, welcome.blocked_by)
            ids = [f[0] for f in friends] + [m.id for g in groups for m in g.members]
            online = await self.presence.online(user_id, list(set(ids)))
        except BaseException:
            extra.addErrback(lambda _: None)  # the login fails with the first error
            raise
        fields = await extra
        if not session.connected:
            return False
        shown = await self._shown(session, offline)
        if not session.connected:
            return False
        reply = _login_reply(session, friends, groups, shown[:OFFLINE_IN_REPLY], online)
        if session.proto == 2:
            reply.update(token=token, unread=unread_views(welcome.unread),
                         device=session.device, requests=request_views(welcome.requests),
                         **fields)
        session.send(reply)
        self.stats.login(Errno.OK)
        after = OFFLINE_IN_REPLY
        for mid, data in self._encoded(session, offline[after:], shown[after:]):
            self.stats.bytes_out += len(data)
            inbox.push(mid, data, None)  # held: not counted as live traffic
        inbox.open()
        mids = [mid for mid, _ in offline]
        inbox.remember_offline(frozenset(mids))
        if not inbox.needs_ack and mids:
            self.offline.forget(user_id, mids)
        log.info("user {uid} logged in (proto {proto}, {n} offline messages)",
                 uid=user_id, proto=session.proto, n=len(offline))
        if inbox.catch_up:
            self.offline_stored(user_id)
        return True

    def _reply_fields(self, session: Session) -> Deferred[dict[str, Any]]:
        """The fields the capabilities add to a proto-2 reply, asked for at once, so that
        their store calls run beside the welcome's rather than after it."""
        if session.proto != 2:
            return succeed({})
        asked = [Deferred.fromCoroutine(fields(session)) for fields in self.reply_fields]
        return gatherResults(asked, consumeErrors=True).addCallbacks(
            _merged, lambda f: f.value.subFailure)

    def offline_stored(self, user_id: int) -> None:
        """Frames were stored offline for a user logged in here: a login may have read the
        store before they were in it, so send each session the ones it has not had."""
        for inbox in self.router.user_inboxes(user_id):
            if not inbox.ready:
                inbox.catch_up = True
                continue
            inbox.catch_up = False
            d = Deferred.fromCoroutine(self._catch_up(inbox))
            d.addErrback(lambda f: log.warn(
                "user {uid}: offline catch-up failed ({error}); at the next login then",
                uid=user_id, error=f.value))

    async def _catch_up(self, inbox: Inbox) -> None:
        user_id = inbox.user_id
        rows = await self.store.offline(user_id, OFFLINE_PER_LOGIN)
        if inbox not in self.router.user_inboxes(user_id):
            return
        new = [(mid, text) for mid, text in rows
               if mid not in inbox.offline_mids and mid not in inbox.unacked]
        inbox.remember_offline(inbox.offline_mids | {mid for mid, _ in new})
        for mid, data in self._encoded(inbox.session, new, await self._shown(inbox.session, new)):
            inbox.push(mid, data, None)
        if not inbox.needs_ack and new:
            self.offline.forget(user_id, [mid for mid, _ in new])

    async def _shown(self, session: Session, rows: list[tuple[int, str]]) -> list[Any]:
        """Kept frames as proto 2 sees them again (objects, adjusted by the message parts),
        else as the original dialect's strings (None for a frame it does not get)."""
        if session.proto == 2:
            frames = [decode(text) for _, text in rows]
            await self.composer.show(frames, session.user_id)  # type: ignore[arg-type]
            return frames
        original = self.router.dialect.original_text
        return [original(text) for _, text in rows]

    @staticmethod
    def _encoded(session: Session, rows: list[tuple[int, str]],
                 shown: list[Any]) -> list[tuple[int, bytes]]:
        """Kept frames to push after the login reply; the original dialect's pass through
        the inbox, which puts them in its words."""
        if session.proto == 2:
            return [(mid, encode(frame)) for (mid, _), frame in zip(rows, shown, strict=True)]
        return [(mid, text.encode() + b"\n") for mid, text in rows]


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def _login_reply(session: Session, friends: list[tuple[int, str]], groups: list[GroupRecord],
                 offline: list[Any], online: set[int]) -> dict[str, Any]:
    """Proto 2 gets plain objects; the original dialect JSON strings and no empty keys."""
    reply: dict[str, Any] = {"msgid": MsgId.LOGIN_ACK, "errno": 0,
                             "id": session.user_id, "name": session.name}
    proto = session.proto
    lists = (("offlinemsg", [item for item in offline if item is not None]),
             ("friends", friend_views(friends, online, proto)),
             ("groups", group_views(groups, online, proto, session.user_id)))
    for key, items in lists:
        if items or proto == 2:
            reply[key] = items
    return reply

"""What users do to their own account: SET_PASSWORD and SETTINGS (docs/protocol.md,
Accounts, people and groups)."""

from typing import Any

from twisted.logger import Logger

from chatd.cluster.envelope import EndSession
from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.endings import end_sessions
from chatd.handlers.settings import FRIEND_REQUESTS
from chatd.messages import ChatError, Errno, MsgId, ServiceUnavailable

log = Logger()


class OwnAccount:
    """Handlers of msgids 60 and 84."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.hasher = context.hasher
        self.throttle = context.throttle
        self.resume = context.resume
        self.stats = context.stats
        self.settings = context.settings

    def handlers(self) -> dict[int, Any]:
        return {MsgId.SET_PASSWORD: self.set_password, MsgId.SETTINGS: self.change_settings}

    async def set_password(self, session: Session, req: dict[str, Any]) -> None:
        """Check the old password as a login would (its throttle, its hash slot), store the
        new hash, then make this session the account's only one: tokens revoked, the other
        sessions ended on every node; this one gets a fresh token."""
        user_id = session.user_id
        with self.hasher.slot(session):
            await self.throttle.check_login(user_id, session.address)
            user = await self.store.user(user_id)
            if not await self.hasher.check(session, req["old"], user.password if user else None):
                await self.throttle.login_failed(user_id, session.address)
                raise ChatError(Errno.WRONG_PASSWORD)
            password_hash = await self.hasher.hash(session, req["new"])
        await self.store.set_password(user_id, password_hash)
        revoked = await self.resume.revoke(user_id)
        ended = end_sessions(self.router, self.stats, user_id, "password_changed", spare=session)
        await self._end_elsewhere(user_id)
        log.info("user {uid} changed the password; {n} other sessions here ended",
                 uid=user_id, n=ended)
        reply: dict[str, Any] = {"msgid": MsgId.SET_PASSWORD_ACK, "errno": 0}
        if session.proto == 2:
            reply["token"] = await self.resume.issue(user_id, revoked)
        session.send(reply)

    async def _end_elsewhere(self, user_id: int) -> None:
        """The other nodes end the user's sessions there (none of them is the caller's)."""
        letter = EndSession(self.router.bus.incarnation, user_id, "password_changed")
        try:
            await self.router.bus.publish_control(letter.encode())
        except ServiceUnavailable as e:
            log.warn("user {uid}: other nodes not told of the password change ({error}); "
                     "the sessions there go on", uid=user_id, error=e)

    async def change_settings(self, session: Session, req: dict[str, Any]) -> None:
        friend_requests = req.get("friend_requests")
        if friend_requests is not None and friend_requests not in FRIEND_REQUESTS:
            raise ChatError(Errno.BAD_SETTING, "friend_requests")
        discoverable = req.get("discoverable")
        if friend_requests is None and discoverable is None:
            now = await self.settings.of(session.user_id)
        else:
            now = await self.settings.change(session.user_id, friend_requests, discoverable)
        session.send({"msgid": MsgId.SETTINGS_ACK, "errno": 0, **now.view()})

"""What users do to their own account: SET_PASSWORD, SETTINGS and DELETE_ACCOUNT
(docs/protocol.md, Accounts, people and groups)."""

from typing import Any

from twisted.logger import Logger

from chatd.delivery.session import Session
from chatd.handlers.accountdata import end_everywhere
from chatd.handlers.context import Context
from chatd.handlers.settings import FRIEND_REQUESTS
from chatd.messages import ChatError, Errno, MsgId

log = Logger()


class OwnAccount:
    """Handlers of msgids 60, 82 and 84."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.hasher = context.hasher
        self.throttle = context.throttle
        self.resume = context.resume
        self.stats = context.stats
        self.settings = context.settings
        self.account_data = context.account_data

    def handlers(self) -> dict[int, Any]:
        return {MsgId.SET_PASSWORD: self.set_password, MsgId.SETTINGS: self.change_settings,
                MsgId.DELETE_ACCOUNT: self.delete_account}

    async def set_password(self, session: Session, req: dict[str, Any]) -> None:
        """Check the old password as a login would (its throttle, its hash slot), store the
        new hash, then make this session the account's only one: tokens and push
        subscriptions revoked, the other sessions ended on every node; this one gets a fresh
        token."""
        user_id = session.user_id
        with self.hasher.slot(session):
            await self._check_password(session, req["old"])
            password_hash = await self.hasher.hash(session, req["new"])
        await self.store.set_password(user_id, password_hash)
        revoked = await self.resume.revoke(user_id)
        await self.store.unsubscribe(user_id)  # pushes: the device that stays subscribes again
        await end_everywhere(self.router, self.stats, user_id, "password_changed", session)
        reply: dict[str, Any] = {"msgid": MsgId.SET_PASSWORD_ACK, "errno": 0}
        if session.proto == 2:
            reply["token"] = await self.resume.issue(user_id, revoked)
        session.send(reply)

    async def _check_password(self, session: Session, password: str) -> None:
        """As a login checks it (its throttle; the caller holds the hash slot): errno 220
        when wrong, counted as a failed login."""
        user_id = session.user_id
        await self.throttle.check_login(user_id, session.address)
        user = await self.store.user(user_id)
        if not await self.hasher.check(session, password, user.password if user else None):
            await self.throttle.login_failed(user_id, session.address)
            raise ChatError(Errno.WRONG_PASSWORD)

    async def delete_account(self, session: Session, req: dict[str, Any]) -> None:
        """Check the password, delete the account everywhere, answer, close this session."""
        with self.hasher.slot(session):
            await self._check_password(session, req["password"])
        await self.account_data.delete(session.user_id, spare=session)
        session.send({"msgid": MsgId.DELETE_ACCOUNT_ACK, "errno": 0})
        session.close()

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

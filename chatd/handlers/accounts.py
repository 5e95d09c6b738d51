"""Accounts and sessions: REG, LOGIN (password or resume token), LOGOUT, DEVICES, HEARTBEAT,
and the end of a session however it comes (logout, disconnect, a device taken over).
"""

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from chatd.delivery.session import Session
from chatd.delivery.signals import Signal
from chatd.handlers.context import Context
from chatd.handlers.welcome import Welcome
from chatd.messages import ChatError, Errno, MsgId
from chatd.store import NameTaken, UserRecord

log = Logger()

DEFAULT_DEVICE = "default"


class Accounts:
    """Handlers of msgids 1, 3, 4, 18 and 38."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.hasher = context.hasher
        self.throttle = context.throttle
        self.resume = context.resume
        self.blocks = context.blocks
        self.stats = context.stats
        self.clock = context.clock
        self.naming = context.naming
        self.welcome = Welcome(context)
        # (user, device) logged out of that device: what belongs to the device goes with it
        self.logged_out: Signal[[int, str]] = Signal()

    def handlers(self) -> dict[int, Any]:
        return {MsgId.REG: self.register, MsgId.LOGIN: self.login, MsgId.LOGOUT: self.logout,
                MsgId.HEARTBEAT: self.heartbeat, MsgId.DEVICES: self.devices}

    async def register(self, session: Session, req: dict[str, Any]) -> None:
        with self.hasher.slot(session):
            await self.throttle.check_registration(session.address)
            name, name_key = await self.naming.admit(req["name"])
            password_hash = await self.hasher.hash(session, req["password"])
            try:
                user_id = await self.store.create_user(name, password_hash, name_key)
            except NameTaken:
                raise ChatError(Errno.NAME_TAKEN) from None
        self.stats.registrations += 1
        log.info("registered user {uid} {name!r}", uid=user_id, name=name)
        session.send({"msgid": MsgId.REG_ACK, "errno": 0, "id": user_id})

    async def login(self, session: Session, req: dict[str, Any]) -> None:
        """One login at a time per connection (the hasher's slot), so that a flood of them
        costs neither queries nor hashes."""
        if session.user_id is not None:
            raise ChatError(Errno.ALREADY_LOGGED_IN)
        with self.hasher.slot(session):
            await self._login(session, req)

    async def _login(self, session: Session, req: dict[str, Any]) -> None:
        user_id = req["id"]
        await self.throttle.check_login(user_id, session.address)
        user = await self.store.user(user_id)
        if not await self._authenticated(session, req, user):
            log.info("login of user {uid} from {addr} refused: bad id, password or token",
                     uid=user_id, addr=session.address)
            await self.throttle.login_failed(user_id, session.address)
            raise ChatError(Errno.BAD_LOGIN)
        if user.banned:
            log.info("login of user {uid} refused: banned", uid=user_id)
            raise ChatError(Errno.BANNED)
        if not session.connected:
            return
        session.login(user_id, user.name, req.get("proto") or 1)
        session.device = req.get("device") or DEFAULT_DEVICE
        session.since = int(self.clock.seconds() * 1000)
        try:
            inbox = await self.router.attach(session, takeover="device" in req)
        except BaseException:
            session.logout()
            raise
        session.inbox = inbox
        try:
            if not session.connected or not await self.welcome.welcome(session, inbox):
                self.end(session)
        except BaseException:
            self.end(session)
            raise

    async def _authenticated(self, session: Session, req: dict[str, Any],
                             user: UserRecord | None) -> bool:
        """The password (always hashed, even for an unknown user) or a proto-2 resume token."""
        token = req.get("token")
        if token is None:
            return await self.hasher.check(session, req["password"],
                                           user.password if user else None)
        if user is None or req.get("proto") != 2:
            return False
        return await self.resume.valid(token, user)

    async def logout(self, session: Session, req: dict[str, Any]) -> None:
        """Revoke the user's resume tokens, then end the session; if the revocation cannot be
        stored the session goes on (errno 130) and the client may try again."""
        user_id = session.user_id
        await self.resume.revoke(user_id)
        if session.user_id == user_id:
            device = session.device
            self.end(session)
            self.logged_out(user_id, device)
            log.info("user {uid} logged out", uid=user_id)
        session.send({"msgid": MsgId.LOGOUT_ACK, "errno": 0})

    def end(self, session: Session) -> Deferred[None]:
        """The session stops being its user's (logout, disconnect, an ending); nothing in
        flight is lost. Fires once its device's claim is released cluster-wide."""
        inbox = session.inbox
        session.inbox = None
        session.logout()
        if inbox is None:
            return succeed(None)
        released = self.router.detach(inbox)
        if not self.router.online_here(inbox.user_id):
            self.blocks.drop(inbox.user_id)
        return released

    def taken_over(self, session: Session) -> None:
        """A login took this session's device (here or on another node): tell the client,
        end the session at once (the new one holds the device now), close the connection."""
        log.info("user {uid}: device {device!r} logged in elsewhere; closing this session",
                 uid=session.user_id, device=session.device)
        session.send({"msgid": MsgId.NOTICE, "kind": "logged_in_elsewhere"})
        self.end(session)
        session.close()

    async def devices(self, session: Session, req: dict[str, Any]) -> None:
        """The account's online sessions on every node."""
        found = await self.router.devices_of(session.user_id)
        session.send({"msgid": MsgId.DEVICES_ACK, "errno": 0, "devices": [
            {"device": name, "since": since} for name, since in sorted(found.items())]})

    def heartbeat(self, session: Session, req: dict[str, Any]) -> None:
        session.send({"msgid": MsgId.HEARTBEAT, "time": int(self.clock.seconds() * 1000)})

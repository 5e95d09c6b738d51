"""Profiles and finding people: SET_PROFILE, GET_PROFILE, FIND_USER (docs/protocol.md,
Profiles and finding people)."""

import math
from typing import Any

from twisted.logger import Logger

from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.media import Media, MediaRefused
from chatd.messages import ChatError, Errno, MsgId
from chatd.names import key
from chatd.store.accounts import Profile
from chatd.store.media import KEEP_FOR_EVER

log = Logger()

DEFAULT_MAX_FINDS = 20
FIND_WINDOW = 60.0


class Profiles:
    """Handlers of msgids 62, 64 and 66."""

    def __init__(self, context: Context, media: Media, max_finds: int = DEFAULT_MAX_FINDS
                 ) -> None:
        self.store = context.store
        self.media = media
        self.router = context.router
        self.presence = context.presence
        self.naming = context.naming
        self.settings = context.settings
        self.max_finds = max_finds

    def handlers(self) -> dict[int, Any]:
        return {MsgId.SET_PROFILE: self.set_profile, MsgId.GET_PROFILE: self.get_profile,
                MsgId.FIND_USER: self.find_user}

    async def set_profile(self, session: Session, req: dict[str, Any]) -> None:
        """The avatar is checked (the user's own complete image) before anything changes."""
        user_id: int = session.user_id  # type: ignore[assignment]
        avatar = None if req.get("avatar") is None else await self._avatar(user_id,
                                                                          req["avatar"])
        name = None if req.get("name") is None else await self.naming.admit(req["name"], user_id)
        profile = await self.store.set_profile(user_id, name, req.get("bio"), avatar)
        if profile is None:
            raise ChatError(Errno.NAME_TAKEN)
        if name is not None:
            for inbox in self.router.user_inboxes(user_id):
                inbox.session.name = profile.name  # what the messages sent from now carry
            log.info("user {uid} is now called {name!r}", uid=user_id, name=profile.name)
        session.send({"msgid": MsgId.SET_PROFILE_ACK, "errno": 0,
                      "profile": await self._view(user_id, profile)})

    async def _avatar(self, user_id: int, asked: Any) -> str:
        """The id of an image the user uploaded, now kept as long as the account is."""
        media_id = asked.get("id") if type(asked) is dict else None
        if type(media_id) is not str or not 1 <= len(media_id) <= 64:
            raise ChatError(Errno.WRONG_TYPE, "avatar")
        try:
            description = await self.media.attach(media_id, user_id)
        except MediaRefused as e:
            raise ChatError(e.errno) from None
        if "thumb" not in description:
            raise ChatError(Errno.BAD_AVATAR)
        await self.store.keep_media(media_id, user_id, KEEP_FOR_EVER)
        return media_id

    async def _avatar_url(self, media_id: str) -> str | None:
        return await self.media.avatar_url(media_id) if media_id else None

    async def get_profile(self, session: Session, req: dict[str, Any]) -> None:
        profile = await self.store.profile(req["userid"])
        if profile is None:
            raise ChatError(Errno.NO_SUCH_USER)
        session.send({"msgid": MsgId.GET_PROFILE_ACK, "errno": 0, "userid": profile.id,
                      "profile": await self._view(session.user_id, profile)})

    async def _view(self, viewer: int, profile: Profile) -> dict[str, Any]:
        online = await self.presence.online(viewer, [profile.id])
        return {"id": profile.id, "name": profile.name, "bio": profile.bio,
                "avatar": await self._avatar_url(profile.avatar),
                "state": "online" if profile.id in online else "offline"}

    async def find_user(self, session: Session, req: dict[str, Any]) -> None:
        """Counted per user on the bus, so a cluster's nodes share the count; while the bus
        is down searches are refused (130) rather than uncounted."""
        counter = f"find:{session.user_id}"
        bus = self.router.bus
        if await bus.incr(counter, FIND_WINDOW) > self.max_finds:
            wait = (await bus.remaining([counter]))[0]
            raise ChatError(Errno.FIND_RATE, retry_after=max(1, math.ceil(wait)))
        found = await self.store.find_users(key(req["name"]),
                                            self.settings.defaults.discoverable)
        users = [{"id": uid, "name": name, "avatar": await self._avatar_url(avatar)}
                 for uid, name, avatar in found]
        session.send({"msgid": MsgId.FIND_USER_ACK, "errno": 0, "users": users})

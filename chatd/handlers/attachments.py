"""Attachments on the chat connection: UPLOAD and MEDIA_URL, the `attachment` part of
ONE_CHAT and GROUP_CHAT, and its line for original-dialect recipients.

The bytes go over HTTP (chatd/web/media.py); here a user gets a slot for them and a message
names the finished upload. Messages without `attachment` never reach this module."""

import re
from collections.abc import Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.media import Media, MediaRefused
from chatd.messages import ChatError, Errno, MsgId

log = Logger()

FIELD = "attachment"
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
# Types a browser would run as a page or a script, even from a download link.
_ACTIVE = re.compile(r"html|xml|svg|javascript|ecmascript")


def allowed(name: str, mime: str) -> bool:
    """A file name with no path in it, and a plain type/subtype that no browser runs."""
    return (_BAD_NAME.search(name) is None and name.strip() == name
            and _MIME.fullmatch(mime) is not None and _ACTIVE.search(mime) is None)


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024 or unit == "MB":
            return f"{size} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return ""


def original_line(frame: dict[str, Any]) -> dict[str, Any]:
    """The caption and `[name, size] url` for a client that knows no attachments."""
    attachment = frame.pop(FIELD)
    line = f"[{attachment['name']}, {human_size(attachment['size'])}] {attachment['url']}"
    frame["msg"] = f"{frame['msg']}\n{line}" if frame.get("msg") else line
    return frame


class Attachments:
    """Handlers of msgids 40 and 42, and the message part `attachment` (composer.py)."""

    field = FIELD

    def __init__(self, context: Context, media: Media) -> None:
        self.media = media
        self.store = context.store
        self.members = context.members
        self.blocks = context.blocks

    def handlers(self) -> dict[int, Any]:
        return {MsgId.UPLOAD: self.upload, MsgId.MEDIA_URL: self.media_url}

    async def upload(self, session: Session, req: dict[str, Any]) -> None:
        user_id: int = session.user_id  # type: ignore[assignment]
        limits = self.media.limits
        if not limits.base_url:
            raise ChatError(Errno.NO_WEB)
        if not allowed(req["name"], req["mime"]):
            raise ChatError(Errno.MEDIA_NAME)
        if req["size"] > limits.max_upload:
            raise ChatError(Errno.UPLOAD_TOO_LARGE)
        await self._may_send(user_id, req)
        slot = await self.media.slot(user_id, req["name"], req["size"], req["mime"])
        if slot is None:
            raise ChatError(Errno.MEDIA_QUOTA)
        session.send({"msgid": MsgId.UPLOAD_ACK, "errno": 0, "upload": slot})

    async def _may_send(self, user_id: int, req: dict[str, Any]) -> None:
        """The conversation the upload is for must take the user's messages."""
        to = req.get("to")
        if to is not None:
            if to in self.blocks.blockers(user_id):
                raise ChatError(Errno.BLOCKED)
            if await self.store.user(to) is None:
                raise ChatError(Errno.NO_SUCH_USER)
            return
        members = self.members.get(req["groupid"])
        if members is None:
            members = await self.members.load(req["groupid"])
        if not members:
            raise ChatError(Errno.NO_SUCH_GROUP)
        if user_id not in members:
            raise ChatError(Errno.NOT_A_MEMBER)

    async def media_url(self, session: Session, req: dict[str, Any]) -> None:
        """Fresh URLs of a kept attachment: its id is known only to those who got it."""
        row = await self.store.media(req["media"])
        if row is None or row.kept == 0:
            raise ChatError(Errno.NO_SUCH_MEDIA)
        await self.media.secret()
        description = self.media.describe(row)
        reply = {"msgid": MsgId.MEDIA_URL_ACK, "errno": 0, "media": row.id,
                 "url": description["url"]}
        if "thumb" in description:
            reply["thumb"] = description["thumb"]
        session.send(reply)

    async def add(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
                  members: list[int]) -> None:
        """The sender's complete upload, described in full in what recipients get."""
        media_id = req[FIELD].get("id")
        if type(media_id) is not str or not 1 <= len(media_id) <= 64:
            raise ChatError(Errno.OUT_OF_RANGE, FIELD)
        try:
            frame[FIELD] = await self.media.attach(media_id, session.user_id)  # type: ignore
        except MediaRefused as e:
            raise ChatError(e.errno) from None

    def recalled(self, mid: int, frame: dict[str, Any]) -> None:
        """A recalled message takes its attachment with it (deleted in the background)."""
        attachment = frame.get(FIELD)
        if attachment is None:
            return
        Deferred.fromCoroutine(self.media.delete([attachment["id"]])).addErrback(
            lambda f: log.warn("attachment of recalled message {mid} not deleted: {error}",
                               mid=mid, error=f.value))

    def show(self, frames: list[dict[str, Any]], viewer: int) -> Coroutine[Any, Any, None] | None:
        """Kept frames carry URLs that may have expired: fresh ones."""
        kept = [frame[FIELD] for frame in frames if FIELD in frame]
        return self._refresh(kept) if kept else None

    async def _refresh(self, descriptions: list[dict[str, Any]]) -> None:
        await self.media.secret()
        for description in descriptions:
            self.media.refresh(description)

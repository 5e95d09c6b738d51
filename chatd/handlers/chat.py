"""Chat messages: ONE_CHAT, GROUP_CHAT and RECV_ACK; stamping, delivery and SEND_ACK.

This is the hot path: a message between online users touches no database. A message is
stamped with its mid when it is accepted and in the order it arrived: a group whose members
must first be loaded holds the messages behind that load (members.py), and a proto-2
message waits for the cluster's (sender, cid) registry, whose answers come in order.
"""

import time
from collections.abc import Set as AbstractSet
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.codec import encode, encode_text
from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.messages import (
    ERRMSG,
    GROUP_CHAT,
    ONE_CHAT,
    SEND_ACK,
    ChatError,
    Errno,
    MsgId,
    ServiceUnavailable,
    error_frame,
)

log = Logger()

# The bytes Session.send makes of {"msgid": SEND_ACK, "cid": cid, "mid": mid, "errno": 0}, key
# order included, for every proto-2 message: formatting them costs 5.5k instructions where
# building and encoding the dict cost 9k. The cid is validated text (UTF-8 safe), as JSON.
_SEND_ACK = b'{"msgid":%d,"cid":%%s,"mid":%%d,"errno":0}\n' % SEND_ACK


class Chat:
    """Handlers of msgids 6, 10 and 17."""

    def __init__(self, context: Context) -> None:
        self.router = context.router
        self.offline = context.offline
        self.history = context.history
        self.members = context.members
        self.mutes = context.members.mutes
        self.blocks = context.blocks
        self.mids = context.mids
        self.stats = context.stats
        self.clock = context.clock
        self.composer = context.composer
        self._holding = context.composer.holding  # sessions whose messages wait (composer.py)
        self._part_fields = context.composer.fields  # request fields that name a part

    def handlers(self) -> dict[int, Any]:
        return {MsgId.ONE_CHAT: self.one_chat, MsgId.GROUP_CHAT: self.group_chat,
                MsgId.RECV_ACK: self.recv_ack}

    def one_chat(self, session: Session, req: dict[str, Any]) -> Any:
        if self._holding and self.composer.held(session, self.one_chat, req):
            return None
        to = req["to"]
        if to in self.blocks.blockers(session.user_id):
            raise ChatError(Errno.BLOCKED)
        frame = {"msgid": ONE_CHAT, "id": session.user_id, "name": session.name,
                 "to": to, "toid": to, "msg": req["msg"]}
        if self._part_fields.isdisjoint(req):
            self._send_chat(session, req, frame, [to])
            return None
        return self._compose(session, req, frame, [to])

    def group_chat(self, session: Session, req: dict[str, Any]) -> Any:
        if self._holding and self.composer.held(session, self.group_chat, req):
            return None
        members = self.members.get(req["groupid"])
        if members is None:
            return self._group_chat_after_load(session, req)
        return self._group_chat(session, req, members)

    async def _group_chat_after_load(self, session: Session, req: dict[str, Any]) -> None:
        """After the members are loaded, and after every message that arrived before."""
        members = await self.members.load(req["groupid"])
        if not members:
            raise ChatError(Errno.NO_SUCH_GROUP)
        composing = self._group_chat(session, req, members)
        if composing is not None:
            await composing

    def _group_chat(self, session: Session, req: dict[str, Any], members: set[int]) -> Any:
        sender = session.user_id
        if sender not in members:
            raise ChatError(Errno.NOT_A_MEMBER)
        mutes = self.mutes.get(req["groupid"])
        if mutes is not None and sender in mutes:
            self._check_mute(mutes[sender])
        frame = {"msgid": GROUP_CHAT, "id": sender, "name": session.name,
                 "groupid": req["groupid"], "msg": req["msg"]}
        recipients = [m for m in members if m != sender]
        if self._part_fields.isdisjoint(req):
            self._send_chat(session, req, frame, recipients)
            return None
        return self._compose(session, req, frame, recipients)

    def _compose(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
                 recipients: list[int]) -> Any:
        """A message naming parts (composer.py): sent once they are added; a coroutine when
        one of them needs the store."""
        composing = self.composer.compose(session, req, frame, recipients)
        if composing is None:
            self._send_chat(session, req, frame, recipients)
            return None
        return self._send_composed(session, req, frame, recipients, composing)

    async def _send_composed(self, session: Session, req: dict[str, Any],
                             frame: dict[str, Any], recipients: list[int],
                             composing: Deferred[None]) -> None:
        try:
            await composing
            if session.user_id == frame["id"]:  # not logged out meanwhile
                self._send_chat(session, req, frame, recipients)
        finally:
            self.composer.release(session)

    def _check_mute(self, until: int) -> None:
        """Refuse a muted member's message until its mute ends (MUTE_MEMBER)."""
        if until > self.clock.seconds() * 1000:
            raise ChatError(Errno.MUTED, until=until)

    def _send_chat(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
                   recipients: list[int]) -> None:
        """Stamp and deliver one chat message.

        A (sender, cid) seen before, on any node, keeps its first mid: when that message is
        already safe the sender just gets its SEND_ACK again, otherwise it is delivered again
        under the same mid, which recipients drop if they have it.
        """
        frame["time"] = req.get("time") or time.strftime("%Y-%m-%d %H:%M:%S")
        cid = req.get("cid")
        sent = Sent(self, session, cid, self.mids.next(), frame["msgid"])
        if cid is None:
            self.deliver(sent, frame, recipients)
            return
        frame["cid"] = cid
        sent.arrived = self.clock.seconds()
        sent.waiting = (frame, recipients)
        self.router.remember(sent.sender, cid, sent.mid, sent.remembered)

    def deliver(self, sent: "Sent", frame: dict[str, Any], recipients: list[int]) -> None:
        """Deliver to the recipients (their every device) and copy to the sender's other
        devices."""
        mid = frame["mid"] = sent.mid
        data = encode(frame)
        self.history.record(mid, sent.sender, frame, data)
        self.router.deliver(recipients, mid, data, sent)
        self.router.to_other_devices(sent.sender, sent.device, data)

    def acknowledge(self, sent: "Sent", errno: Errno = Errno.OK) -> None:
        """SEND_ACK to the sending device's current session, wherever the message came from;
        with an errno, the message is not safe and must be sent again."""
        session = self.router.session(sent.sender, sent.device)
        if session is None or session.proto != 2:
            return
        if errno:
            session.send({"msgid": SEND_ACK, "cid": sent.cid, "mid": sent.mid,
                          "errno": int(errno), "errmsg": ERRMSG[errno]})
            return
        session.send_data(_SEND_ACK % (encode_text(sent.cid).encode(), sent.mid))
        self.stats.send_ack.observe(self.clock.seconds() - sent.arrived)

    def refuse_later(self, sent: "Sent", errno: Errno) -> None:
        """A chat message refused after it was accepted: SEND_ACK with the errno for a
        proto-2 message with a cid, ERROR_MSG naming the request otherwise."""
        session = self.router.session(sent.sender, sent.device)
        if session is None:
            return
        self.stats.error(errno)
        if sent.cid is not None and session.proto == 2:
            self.acknowledge(sent, errno)
        else:
            session.send(error_frame(ChatError(errno), sent.ref, sent.cid))

    def recv_ack(self, session: Session, req: dict[str, Any]) -> None:
        mids = req.get("mids") or [req["mid"]]
        inbox = session.inbox
        inbox.ack(mids)
        if inbox.offline_mids:  # stored frames, in the login reply or sent after it
            stored = [m for m in mids if m in inbox.offline_mids]
            if stored:
                inbox.remember_offline(inbox.offline_mids.difference(stored))
                self.offline.forget(session.user_id, stored)


class Sent:
    """One accepted chat message until every copy is safe: the router's receipt for it. One
    small object per message (not a Deferred, not closures): this is the hot path."""

    __slots__ = ("chat", "sender", "device", "cid", "mid", "ref", "arrived", "waiting")

    def __init__(self, chat: Chat, session: Session, cid: str | None, mid: int,
                 ref: int) -> None:
        self.chat = chat
        self.sender: int = session.user_id  # type: ignore[assignment]
        self.device = session.device
        self.cid = cid
        self.mid = mid
        self.ref = ref
        self.arrived = 0.0  # when it came in, for the SEND_ACK histogram (proto 2 only)
        # the frame and its recipients while the cid registry is asked
        self.waiting: tuple[dict[str, Any], list[int]] | None = None

    def remembered(self, prior: tuple[int, bool] | None) -> None:
        """The cid registry answered: a repeat keeps its first mid, and needs only its
        SEND_ACK again when that message is already safe."""
        frame, recipients = self.waiting  # type: ignore[misc]
        self.waiting = None
        if prior is not None:
            self.mid, safe = prior
            if safe:
                self.chat.acknowledge(self)
                return
        self.chat.deliver(self, frame, recipients)

    def delivered(self, missing: AbstractSet[int], full: AbstractSet[int]) -> None:
        """SEND_ACK, or the error of a one-to-one message whose recipient does not exist or
        has a full offline mailbox (a group message reached the rest)."""
        chat = self.chat
        if not missing and not (full and self.ref == ONE_CHAT):
            if self.cid is not None:
                chat.router.settle(self.sender, self.cid, self.mid)
                chat.acknowledge(self)
            return
        chat.history.forget(self.mid)
        if missing:
            session = chat.router.session(self.sender, self.device)
            if session is not None:
                chat.stats.error(Errno.NO_SUCH_USER)
                session.send(error_frame(ChatError(Errno.NO_SUCH_USER), self.ref, self.cid))
            return
        chat.refuse_later(self, Errno.OFFLINE_QUOTA)

    def failed(self, failure: Failure) -> None:
        """A copy could not be made safe: the sender must send the message again. A
        one-to-one message then reached nobody, so history does not keep it either (a resend
        keeps its mid and is kept again)."""
        if self.ref == ONE_CHAT:
            self.chat.history.forget(self.mid)
        if failure.check(ServiceUnavailable):
            log.warn("message {mid} from user {uid} not delivered: {error}; the sender is "
                     "told to send it again", mid=self.mid, uid=self.sender,
                     error=failure.value)
        else:
            log.failure("delivery from user {uid} failed", failure, uid=self.sender)
        self.chat.refuse_later(self, Errno.UNAVAILABLE)

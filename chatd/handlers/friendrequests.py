"""ANSWER_REQUEST: accepting or declining a friend request (docs/protocol.md, Friend
requests); asking is in befriending.py, part of ADD_FRIEND."""

from typing import Any

from twisted.logger import Logger

from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.handlers.presence import friend_view
from chatd.messages import ChatError, Errno, MsgId
from chatd.store.accounts import request_cutoff

log = Logger()


class Requests:
    """Handler of msgid 69."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.quotas = context.quotas
        self.presence = context.presence
        self.friend_requests = context.friend_requests

    def handlers(self) -> dict[int, Any]:
        return {MsgId.ANSWER_REQUEST: self.answer}

    async def answer(self, session: Session, req: dict[str, Any]) -> None:
        user_id, asker, accept = session.user_id, req["userid"], req["accept"]
        if accept:
            await self.quotas.check_friend(user_id, asker)
        cutoff = request_cutoff(self.friend_requests.now_ms())
        if not await self.store.answer_request(user_id, asker, accept, cutoff):
            raise ChatError(Errno.NO_SUCH_REQUEST)
        reply: dict[str, Any] = {"msgid": MsgId.ANSWER_REQUEST_ACK, "errno": 0,
                                 "userid": asker, "accept": accept}
        if accept:
            found = await self.store.user(asker)
            online = await self.presence.online(user_id, [asker])
            reply["friend"] = friend_view(asker, found.name if found else "", online)
            self.friend_requests.added(asker, user_id, session.name, online=True)
        log.info("user {uid} {how} the friend request of user {asker}", uid=user_id,
                 how="accepted" if accept else "declined", asker=asker)
        session.send(reply)

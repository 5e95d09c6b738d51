"""Asking before befriending: ADD_FRIEND to a user whose settings say "approve" stores a
friend request instead of adding (docs/protocol.md, Friend requests).

A pending request is a row in the store, so it survives the target being offline (listed in
its next login reply); the target's online devices, on any node, hear of it at once through
the router's live notifications.
"""

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.codec import encode
from chatd.delivery.router import Router
from chatd.delivery.session import Session
from chatd.handlers.presence import friend_view
from chatd.handlers.settings import APPROVE, Settings
from chatd.messages import ChatError, Errno, MsgId
from chatd.store import Store
from chatd.store.accounts import FriendRequestRecord, RequestOutcome, request_cutoff

log = Logger()

DEFAULT_MAX_PENDING = 20


def request_views(requests: list[FriendRequestRecord]) -> list[dict[str, Any]]:
    """The `requests` of a proto-2 login reply."""
    return [{"id": r.id, "name": r.name, "time": r.time} for r in requests]


class FriendRequests:
    """The part of ADD_FRIEND that asks first (used by Social.add_friend)."""

    def __init__(self, store: Store, router: Router, settings: Settings, clock: IReactorTime,
                 max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.store = store
        self.router = router
        self.settings = settings
        self.clock = clock
        self.max_pending = max_pending

    def now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    async def admit(self, session: Session, target: int) -> None:
        """Return when `session`'s user may be made a friend of `target` now (the target is
        "open", they are friends already, or the target had asked the user); otherwise store
        a request, tell the target, and raise errno 222 (or 223)."""
        if (await self.settings.of(target)).friend_requests != APPROVE:
            return
        now = self.now_ms()
        user_id = session.user_id
        outcome = await self.store.request_friend(user_id, target, now, request_cutoff(now),
                                                  self.max_pending)
        if outcome is RequestOutcome.TOO_MANY:
            raise ChatError(Errno.TOO_MANY_REQUESTS)
        if outcome is RequestOutcome.MUTUAL:
            self.added(target, user_id, session.name, online=True)
        if outcome is RequestOutcome.SENT:
            log.info("user {uid} asked user {target} to be friends", uid=user_id, target=target)
            self.router.notify(target, encode({"msgid": MsgId.FRIEND_REQUEST, "id": user_id,
                                               "name": session.name, "time": now}))
        if outcome in (RequestOutcome.SENT, RequestOutcome.REPEATED):
            raise ChatError(Errno.REQUEST_SENT)

    def added(self, user_id: int, friend_id: int, friend_name: str, online: bool) -> None:
        """Tell `user_id`'s devices that `friend_id` is a friend now."""
        self.router.notify(user_id, encode({
            "msgid": MsgId.NOTICE, "kind": "friend_added",
            "friend": friend_view(friend_id, friend_name, {friend_id} if online else set())}))

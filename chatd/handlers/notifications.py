"""Notification settings: PUSH_SUBSCRIBE and MUTE, the `vapid` and `muted` fields of a
proto-2 login reply, and a logged-out device's subscriptions going with it.

What is pushed and when is chatd/push/notifier.py's business; this module only records
where a user's devices may be reached and which conversations stay quiet.
"""

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.delivery.session import Session
from chatd.handlers.context import Context
from chatd.messages import ChatError, Errno, MsgId
from chatd.push.endpoints import EndpointPolicy, EndpointRefused, check
from chatd.push.webpush import valid_keys
from chatd.store.push import Subscription

log = Logger()

DEFAULT_MAX_SUBSCRIPTIONS = 10
KINDS = ("webpush", "fcm")


@dataclass(frozen=True)
class SubscriptionRules:
    policy: EndpointPolicy
    fcm: bool  # the node has FCM credentials
    most: int = DEFAULT_MAX_SUBSCRIPTIONS  # subscriptions of one account


class Notifications:
    """Handlers of msgids 44 and 46."""

    def __init__(self, context: Context, rules: SubscriptionRules, vapid_key: str) -> None:
        self.store = context.store
        self.members = context.members
        self.clock = context.clock
        self.rules = rules
        self.vapid_key = vapid_key

    def handlers(self) -> dict[int, Any]:
        return {MsgId.PUSH_SUBSCRIBE: self.push_subscribe, MsgId.MUTE: self.mute}

    async def push_subscribe(self, session: Session, req: dict[str, Any]) -> None:
        kind = req["kind"]
        device = req.get("device") or session.device
        user_id: int = session.user_id  # type: ignore[assignment]
        echo = {"kind": kind, "device": device}
        if kind not in KINDS or (kind == "fcm" and not self.rules.fcm):
            raise ChatError(Errno.PUSH_KIND, kind, **echo)
        subscription = await self._subscription(user_id, device, kind, req, echo)
        if subscription is None:
            await self.store.unsubscribe(user_id, device, kind)
        elif not await self.store.subscribe(subscription, self.rules.most):
            raise ChatError(Errno.PUSH_SUBSCRIPTIONS, **echo)
        log.info("user {uid} device {device!r}: {kind} push {what}", uid=user_id,
                 device=device, kind=kind, what="on" if subscription else "off")
        session.send({"msgid": MsgId.PUSH_SUBSCRIBE_ACK, "errno": 0, **echo,
                      "subscribed": subscription is not None})

    async def _subscription(self, user_id: int, device: str, kind: str, req: dict[str, Any],
                            echo: dict[str, Any]) -> Subscription | None:
        """The checked subscription the request names; None when it removes one."""
        if kind == "fcm":
            token = req.get("token")
            return None if token is None else Subscription(user_id, device, kind, token)
        given = req.get("subscription")
        if given is None:
            return None
        endpoint, p256dh, auth = _webpush_fields(given, echo)
        if not valid_keys(p256dh, auth):
            raise ChatError(Errno.PUSH_KEYS, **echo)
        try:
            await check(endpoint, self.rules.policy)
        except EndpointRefused as e:
            log.info("user {uid}: push endpoint refused: {error}", uid=user_id, error=e)
            raise ChatError(Errno.PUSH_ENDPOINT, **echo) from None
        return Subscription(user_id, device, kind, endpoint, p256dh, auth)

    async def mute(self, session: Session, req: dict[str, Any]) -> None:
        group_id, peer, until = req.get("groupid") or 0, req.get("peer") or 0, req["until"]
        user_id: int = session.user_id  # type: ignore[assignment]
        if group_id and user_id not in await self.members.load(group_id):
            raise ChatError(Errno.NOT_A_MEMBER)
        if 0 < until <= self.clock.seconds() * 1000:
            until = 0
        await self.store.mute(user_id, group_id, peer, until)
        reply: dict[str, Any] = {"msgid": MsgId.MUTE_ACK, "errno": 0, "until": until}
        reply.update({"groupid": group_id} if group_id else {"peer": peer})
        session.send(reply)

    async def login_fields(self, session: Session) -> dict[str, Any]:
        """`vapid` and `muted` of a proto-2 login reply."""
        now_ms = int(self.clock.seconds() * 1000)
        mutes = await self.store.mutes(session.user_id, now_ms)  # type: ignore[arg-type]
        return {"vapid": self.vapid_key, "muted": [
            {"groupid": g, "until": until} if g else {"peer": peer, "until": until}
            for g, peer, until in mutes]}

    def logged_out(self, user_id: int, device: str) -> None:
        """The device logged out: it is not to be pushed any more."""
        Deferred.fromCoroutine(self.store.unsubscribe(user_id, device)).addErrback(
            lambda f: log.warn("user {uid}: push subscriptions of device {device!r} not "
                               "removed ({error})", uid=user_id, device=device, error=f.value))


def _webpush_fields(given: Any, echo: dict[str, Any]) -> tuple[str, str, str]:
    """endpoint, p256dh and auth of a PushSubscription.toJSON() object."""
    keys = given.get("keys") if type(given) is dict else None
    fields = (given.get("endpoint"), *(keys.get(k) for k in ("p256dh", "auth"))
              ) if type(keys) is dict else ()
    if len(fields) != 3 or not all(type(f) is str for f in fields):
        raise ChatError(Errno.WRONG_TYPE, "subscription", **echo)
    return fields  # type: ignore[return-value]

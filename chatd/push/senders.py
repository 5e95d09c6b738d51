"""Sending one push to one subscription, Web Push or FCM, and what its answer means: 2xx
sent, 404/410 gone (the subscription is removed), 429/5xx or no answer retried, the rest
failed."""

import json
import time
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.push import fcm, webpush
from chatd.push.endpoints import EndpointPolicy, EndpointRefused, Resolver, check
from chatd.push.http import Answer, Poster
from chatd.push.queue import Outcome
from chatd.push.vapid import VapidKey
from chatd.store import Store
from chatd.store.push import Subscription

log = Logger()


@dataclass(frozen=True)
class Push:
    """What one subscription gets: the payload, the conversation's collapse key, a title."""
    subscription: Subscription
    payload: dict[str, Any]
    topic: str
    title: str


def _retry_after(answer: Answer) -> float:
    value = answer.headers.getRawHeaders(b"retry-after", [b"0"])[0]
    try:
        return max(float(value), 0.0)
    except ValueError:
        return 0.0


def _judge(answer: Answer) -> tuple[Outcome, float]:
    status = answer.status
    if 200 <= status < 300:
        return Outcome.SENT, 0.0
    if status in (404, 410):
        return Outcome.GONE, 0.0
    if status == 429 or status >= 500:
        return Outcome.RETRY, _retry_after(answer)
    return Outcome.FAILED, 0.0


class Senders:
    """Web Push always; FCM when the node has service-account credentials."""

    def __init__(self, store: Store, poster: Poster, vapid: VapidKey, policy: EndpointPolicy,
                 credentials: fcm.Credentials | None = None,
                 fcm_url: str = fcm.DEFAULT_FCM_URL) -> None:
        self.store = store
        self.poster = poster
        self.vapid = vapid
        self.policy = policy
        self.credentials = credentials
        self.fcm_url = fcm_url
        self.resolver = Resolver(poster.reactor)
        self._token = fcm.AccessToken()
        self._waiters: list[Deferred[None]] = []  # pushes waiting for a token

    async def send(self, push: Push) -> tuple[Outcome, float]:
        """One attempt; GONE has removed the subscription already."""
        subscription = push.subscription
        try:
            if subscription.kind == "fcm":
                answer = await self._fcm(push)
            else:
                answer = await self._webpush(push)
        except EndpointRefused as e:
            log.warn("push to user {uid} device {device!r} refused: {error}",
                     uid=subscription.user_id, device=subscription.device, error=e)
            return Outcome.FAILED, 0.0
        except Exception as e:
            log.info("push to user {uid}: no answer ({error}); retrying",
                     uid=subscription.user_id, error=e)
            return Outcome.RETRY, 0.0
        outcome, wait = _judge(answer)
        if outcome is Outcome.GONE or self._unregistered(subscription, answer):
            await self.store.subscription_gone(subscription)
            log.info("push subscription of user {uid} device {device!r} is gone ({status}); "
                     "removed", uid=subscription.user_id, device=subscription.device,
                     status=answer.status)
            return Outcome.GONE, 0.0
        if subscription.kind == "fcm" and answer.status == 401:
            self._token = fcm.AccessToken()
            return Outcome.RETRY, 0.0
        if outcome is Outcome.FAILED:
            log.warn("push to user {uid} refused by the push service: {status} {body!r}",
                     uid=subscription.user_id, status=answer.status, body=answer.body[:200])
        return outcome, wait

    async def _webpush(self, push: Push) -> Answer:
        s = push.subscription
        target = await check(s.endpoint, self.policy, self.resolver)
        payload = json.dumps(push.payload, separators=(",", ":")).encode()
        headers, body = webpush.request(self.vapid, s.endpoint, s.p256dh, s.auth, payload,
                                        push.topic)
        return await self.poster.post(target, s.endpoint, headers, body)

    async def _fcm(self, push: Push) -> Answer:
        credentials = self.credentials
        if credentials is None:
            raise EndpointRefused("FCM is not configured on this node")
        if not self._token.fresh():
            await self._refresh(credentials)
        url = fcm.send_url(self.fcm_url, credentials)
        data = {k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in push.payload.items()}
        body = fcm.message(push.subscription.endpoint, data, push.topic, push.title)
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {self._token.value}"}
        return await self.poster.post(await check(url, self.policy, self.resolver), url,
                                      headers, body)

    async def _refresh(self, credentials: fcm.Credentials) -> None:
        """One token request at a time; the pushes waiting for it share its answer."""
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            Deferred.fromCoroutine(self._fetch_token(credentials)).addBoth(self._refreshed)
        await waiter

    def _refreshed(self, result: Any) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(None)

    async def _fetch_token(self, credentials: fcm.Credentials) -> None:
        now = time.time()
        headers, body = fcm.token_request(credentials, now)
        target = await check(credentials.token_uri, self.policy, self.resolver)
        answer = await self.poster.post(target, credentials.token_uri, headers, body)
        if answer.status != 200:
            raise RuntimeError(f"FCM token request: {answer.status} {answer.body[:200]!r}")
        self._token.update(json.loads(answer.body), now)

    @staticmethod
    def _unregistered(subscription: Subscription, answer: Answer) -> bool:
        """FCM says a token is no longer valid with 400/403 and UNREGISTERED or
        SENDER_ID_MISMATCH in its error details (404 is handled as for Web Push)."""
        return (subscription.kind == "fcm" and answer.status in (400, 403)
                and (b"UNREGISTERED" in answer.body or b"SENDER_ID_MISMATCH" in answer.body))

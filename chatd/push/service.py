"""The push machinery of one node, built from its options: key, senders, queue, notifier."""

from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from chatd.push import fcm
from chatd.push.endpoints import EndpointPolicy
from chatd.push.http import Poster
from chatd.push.notifier import Notifier, PushOptions
from chatd.push.queue import PushQueue
from chatd.push.senders import Senders
from chatd.push.vapid import VapidKey
from chatd.store import Store


@dataclass(frozen=True)
class PushSettings:
    """The --push-* options."""
    vapid_key: str
    subject: str
    policy: EndpointPolicy
    fcm_credentials: str = ""
    fcm_url: str = fcm.DEFAULT_FCM_URL
    options: PushOptions = PushOptions()
    queue: int = 10_000
    concurrency: int = 32
    retries: int = 3
    timeout: float = 10.0


class PushService(Service):
    """Owns the queue and the HTTP connection pool; stopping forgets pending retries and
    closes the pool's connections."""

    def __init__(self, store: Store, reactor: Any, settings: PushSettings) -> None:
        self.vapid = VapidKey(settings.vapid_key, settings.subject)
        credentials = (fcm.Credentials(settings.fcm_credentials)
                       if settings.fcm_credentials else None)
        self.poster = Poster(reactor, settings.timeout, settings.concurrency)
        self.senders = Senders(store, self.poster, self.vapid, settings.policy, credentials,
                               settings.fcm_url)
        self.queue = PushQueue(reactor, settings.queue, settings.concurrency, settings.retries)
        self.notifier = Notifier(store, reactor, self.queue, self.senders, settings.options)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.queue.stop()
        return Deferred.fromCoroutine(self.poster.close())

"""When a chat message is pushed, to which subscriptions, and what the push says.

Two moments: a message was stored offline for recipients with no device online (the node
that stores it decides, so in a cluster each message is considered once), and a device that
is online did not acknowledge a message within the ack timeout (its own subscriptions only).
Both come from delivery's signals, connected in build_node; only then is the store asked,
once per message, for the recipients' subscriptions, mutes and unread counts. A muted
conversation is not pushed unless the recipient is mentioned; one push per user and
conversation per `interval` seconds (from this node), the rest of a burst being collapsed.
A READ of a conversation this node pushed sends a "read" push that closes the notification
on the user's other devices.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.codec import decode
from chatd.messages import GROUP_CHAT, ONE_CHAT
from chatd.push.queue import PushQueue
from chatd.push.senders import Push, Senders
from chatd.store import Store
from chatd.store.push import FOREVER, PushTarget

log = Logger()

DEFAULT_INTERVAL = 5.0
PREVIEW_CHARS = 80
PRUNE_EVERY = 10_000  # collapse marks kept before the expired ones are swept
SHOWN_SECONDS = 24 * 3600  # how long a pushed conversation may show a notification (TTL)


@dataclass(frozen=True)
class PushOptions:
    interval: float = DEFAULT_INTERVAL
    preview: bool = False


def mentioned(frame: dict[str, Any], user_id: int) -> bool:
    mentions = frame.get("mentions")
    return mentions == "all" or (type(mentions) is list and user_id in mentions)


def is_muted(until: int, now_ms: int) -> bool:
    return until == FOREVER or until > now_ms


class Notifier:
    """Listens to delivery's signals and queues the pushes a message deserves."""

    def __init__(self, store: Store, clock: IReactorTime, queue: PushQueue, senders: Senders,
                 options: PushOptions = PushOptions(),
                 wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.queue = queue
        self.senders = senders
        self.options = options
        self._wall = wall
        self._marks: dict[tuple[int, str], float] = {}  # (user, topic) -> last push
        self._shown: dict[tuple[int, str], float] = {}  # pushed, not read since

    def stored_new(self, user_ids: list[int], text: str) -> None:
        """Offline's signal: a new message was stored for these users (none online)."""
        self._consider(user_ids, text, None)

    def unacknowledged(self, user_id: int, device: str, frames: list[bytes]) -> None:
        """The router's signal: this device did not acknowledge these frames in time."""
        for data in frames:
            self._consider([user_id], data, device)

    def read(self, user_id: int, device: str, group_id: int, peer: int) -> None:
        """A READ was stored: if this node pushed that conversation to the user since, a
        "read" push with the same Topic tells the user's other devices to close the
        notification (and replaces the message push where it is still undelivered)."""
        topic = f"g{group_id}" if group_id else f"p{peer}"
        if self._shown.pop((user_id, topic), None) is None:
            return
        payload: dict[str, Any] = {"kind": "read", "title": "",
                                   **({"groupid": group_id} if group_id else {"peer": peer})}
        d = Deferred.fromCoroutine(self._push_read(user_id, device, payload, topic))
        d.addErrback(lambda f: log.warn("no read push for user {uid}: {error}",
                                        uid=user_id, error=f.value))

    async def _push_read(self, user_id: int, device: str, payload: dict[str, Any],
                         topic: str) -> None:
        targets = await self.store.push_targets([user_id], 0, {user_id: 0})
        for target in targets.values():
            for subscription in target.subscriptions:
                if subscription.device != device:
                    push = Push(subscription, payload, topic, "")
                    self.queue.offer(lambda push=push: self.senders.send(push))

    def _remember_shown(self, user_id: int, topic: str) -> None:
        now = self.clock.seconds()
        if len(self._shown) > PRUNE_EVERY:
            self._shown = {k: t for k, t in self._shown.items() if t > now - SHOWN_SECONDS}
        self._shown[(user_id, topic)] = now

    def _consider(self, user_ids: list[int], data: str | bytes, device: str | None) -> None:
        frame = decode(data)
        if type(frame) is not dict or frame.get("msgid") not in (ONE_CHAT, GROUP_CHAT):
            return
        topic = f"g{frame['groupid']}" if frame["msgid"] == GROUP_CHAT else f"p{frame['id']}"
        due = [u for u in user_ids if u != frame["id"] and self._due(u, topic, frame)]
        if due:
            d = Deferred.fromCoroutine(self._push(due, frame, topic, device))
            d.addErrback(lambda f: log.warn("no push for message {mid}: {error}",
                                            mid=frame.get("mid"), error=f.value))

    def _due(self, user_id: int, topic: str, frame: dict[str, Any]) -> bool:
        """Not pushed for this conversation within the interval (a mention counts apart);
        marks it pushed now."""
        key = (user_id, topic + "@" if mentioned(frame, user_id) else topic)
        now = self.clock.seconds()
        last = self._marks.get(key)
        if last is not None and now - last < self.options.interval:
            return False
        self._marks[key] = now
        if len(self._marks) > PRUNE_EVERY:
            since = now - self.options.interval
            self._marks = {k: t for k, t in self._marks.items() if t >= since}
        return True

    async def _push(self, user_ids: list[int], frame: dict[str, Any], topic: str,
                    device: str | None) -> None:
        group_id = frame.get("groupid", 0) if frame["msgid"] == GROUP_CHAT else 0
        targets = await self.store.push_targets(user_ids, group_id,
                                                dict.fromkeys(user_ids, frame["id"]))
        now_ms = int(self._wall() * 1000)
        for user_id, target in targets.items():
            mention = mentioned(frame, user_id)
            if is_muted(target.muted_until, now_ms) and not mention:
                continue
            self._queue(target, self._payload(frame, target, mention), topic, device)
            self._remember_shown(user_id, topic)

    def _payload(self, frame: dict[str, Any], target: PushTarget,
                 mention: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "kind": "message", "title": f"New message from {frame['name']}",
            "id": frame["id"], "name": frame["name"], "mid": frame.get("mid"),
            "unread": target.unread, "mention": mention}
        if frame["msgid"] == GROUP_CHAT:
            payload["groupid"] = frame["groupid"]
        else:
            payload["peer"] = frame["id"]
        if self.options.preview:
            payload["preview"] = str(frame.get("msg", ""))[:PREVIEW_CHARS]
        return payload

    def _queue(self, target: PushTarget, payload: dict[str, Any], topic: str,
               device: str | None) -> None:
        for subscription in target.subscriptions:
            if device is not None and subscription.device != device:
                continue
            push = Push(subscription, payload, topic, payload["title"])
            self.queue.offer(lambda push=push: self.senders.send(push))

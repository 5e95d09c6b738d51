"""The bus of a node that runs alone: nobody else is listening."""

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

CID_SECONDS = 600.0
CID_LIMIT = 100_000


class LocalBus:
    """No other nodes: publishing reaches no one, holding a channel always succeeds, and the
    (sender, cid) registry is a dictionary that forgets entries after ten minutes."""

    incarnation = b"local"
    up = True
    publishes = 0

    def __init__(self, clock: IReactorTime) -> None:
        self.listener: Any = None
        self._clock = clock
        self._cids: OrderedDict[tuple[int, str], tuple[int, bool, float]] = OrderedDict()

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def ping(self) -> Deferred[None]:
        return succeed(None)

    def publish(self, user_id: int, payload: bytes) -> Deferred[int]:
        return succeed(0)

    def publish_node(self, incarnation: bytes, payload: bytes) -> Deferred[int]:
        return succeed(0)

    def publish_control(self, payload: bytes) -> Deferred[int]:
        return succeed(0)

    async def subscribe(self, user_id: int) -> bool:
        return True

    def unsubscribe(self, user_id: int) -> None:
        return None

    async def reclaim(self, user_ids: Iterable[int]) -> list[int]:
        return []

    def online(self, user_ids: list[int]) -> Deferred[set[int]]:
        return succeed(set())

    def locate(self, user_ids: list[int]) -> Deferred[dict[int, bytes]]:
        return succeed({})

    def remember(self, sender: int, cid: str, mid: int) -> Deferred[tuple[int, bool] | None]:
        now = self._clock.seconds()
        cids = self._cids
        while cids and (len(cids) >= CID_LIMIT
                        or next(iter(cids.values()))[2] < now - CID_SECONDS):
            cids.popitem(last=False)
        prior = cids.get((sender, cid))
        if prior is not None:
            return succeed(prior[:2])
        cids[(sender, cid)] = (mid, False, now)
        return succeed(None)

    def settle(self, sender: int, cid: str, mid: int) -> None:
        entry = self._cids.get((sender, cid))
        if entry is not None:
            self._cids[(sender, cid)] = (mid, True, entry[2])

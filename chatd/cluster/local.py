"""The bus of a node that runs alone: nobody else is listening."""

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from chatd.cluster.cids import Remembered
from chatd.cluster.claim import CLAIMED, Claim

CID_SECONDS = 600.0
CID_LIMIT = 100_000
COUNTERS_SWEEP = 10_000


class LocalBus:
    """No other nodes: publishing reaches no one, holding a channel always succeeds, and the
    (sender, cid) registry is a dictionary that forgets entries after ten minutes."""

    incarnation = b"local"
    up = True
    publishes = 0
    reconnects = 0
    agreement = None

    def __init__(self, clock: IReactorTime) -> None:
        self.listener: Any = None
        self._clock = clock
        self._cids: OrderedDict[tuple[int, str], tuple[int, bool, float]] = OrderedDict()
        self._expire_at = 0.0  # when the oldest (sender, cid) entry is due to be forgotten
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, expires at)
        self._sweep_at = COUNTERS_SWEEP

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

    def carry(self, user_id: int, payload: bytes, answered: Callable[[int, int], None],
              token: int) -> None:
        answered(0, token)

    def carry_node(self, incarnation: bytes, payload: bytes,
                   answered: Callable[[int, int], None], token: int) -> None:
        answered(0, token)

    async def subscribe(self, user_id: int, device: str, since: int, max_devices: int,
                        takeover: bool) -> Claim:
        """The router's own rules for its sessions are all there is."""
        return Claim(CLAIMED)

    def unsubscribe(self, user_id: int, device: str) -> Deferred[None]:
        return succeed(None)

    async def reclaim(self, held: list[tuple[int, str, int]], max_devices: int
                      ) -> list[tuple[int, str]]:
        return []

    def devices(self, user_id: int) -> Deferred[dict[str, int]]:
        return succeed({})

    def online(self, user_ids: list[int]) -> Deferred[set[int]]:
        return succeed(set())

    def locate(self, user_ids: list[int]) -> Deferred[dict[int, bytes]]:
        return succeed({})

    def remember(self, sender: int, cid: str, mid: int, then: Remembered) -> None:
        now = self._clock.seconds()
        cids = self._cids
        if now > self._expire_at or len(cids) >= CID_LIMIT:
            self._expire(now)
        prior = cids.get((sender, cid))
        if prior is not None:
            then(prior[:2])
            return
        cids[(sender, cid)] = (mid, False, now)
        then(None)

    def _expire(self, now: float) -> None:
        """Forget the entries older than CID_SECONDS, and the oldest past CID_LIMIT; then
        nothing is due until the oldest left is CID_SECONDS old, so that a message does not
        pay for a look at the oldest entry (entries are in the order they were made)."""
        cids = self._cids
        while cids:
            made = next(iter(cids.values()))[2]
            if made >= now - CID_SECONDS and len(cids) < CID_LIMIT:
                self._expire_at = made + CID_SECONDS
                return
            cids.popitem(last=False)
        self._expire_at = now + CID_SECONDS

    def settle(self, sender: int, cid: str, mid: int) -> None:
        entry = self._cids.get((sender, cid))
        if entry is not None:
            self._cids[(sender, cid)] = (mid, True, entry[2])

    def incr(self, key: str, ttl: float) -> Deferred[int]:
        now = self._clock.seconds()
        value, expires = self._counters.get(key, (0, 0.0))
        if expires <= now:
            value, expires = 0, now + ttl
        self._counters[key] = (value + 1, expires)
        if len(self._counters) >= self._sweep_at:
            self._sweep(now)
        return succeed(value + 1)

    def expire(self, key: str, ttl: float) -> Deferred[None]:
        entry = self._counters.get(key)
        if entry is not None:
            self._counters[key] = (entry[0], self._clock.seconds() + ttl)
        return succeed(None)

    def remaining(self, keys: list[str]) -> Deferred[list[float]]:
        now = self._clock.seconds()
        return succeed([max(0.0, self._counters.get(k, (0, now))[1] - now) for k in keys])

    def _sweep(self, now: float) -> None:
        """Forget expired counters, so memory follows the live ones, not all ever made."""
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._sweep_at = max(COUNTERS_SWEEP, 2 * len(self._counters))

"""The link between nodes: publish a letter on a user's or a node's channel, hold the
channels of this node's users, claim their sessions cluster-wide. `Bus` is what the delivery
layer needs from it; `open_bus` picks one.

    redis.py      the bus of a cluster: Redis publish/subscribe, claims, presence, counters
    sentinel.py   where the master is when Redis Sentinel runs it, and word when it moves
    local.py      the bus of a node alone: nobody else listens
    envelope.py   every letter between nodes, typed, encoded and decoded in one place
    agreement.py  the settings every node must share, compared on the bus
    claim.py      what a login's claim gets
    cids.py       what the registry of proto-2 cids answers
    locations.py  which node holds each user, as every node hears it
"""

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from chatd.cluster.agreement import Agreement
from chatd.cluster.cids import Remembered
from chatd.cluster.claim import CLAIMED, FULL, HELD, SEVERAL, Claim
from chatd.cluster.envelope import Setting
from chatd.cluster.local import LocalBus

__all__ = ["CLAIMED", "FULL", "HELD", "SEVERAL", "Bus", "Claim", "LocalBus", "open_bus"]


class Bus(Protocol):
    """What the delivery layer needs from the link between nodes."""

    incarnation: bytes
    listener: Any
    up: bool
    publishes: int
    reconnects: int  # times the bus came back after losing Redis
    agreement: Agreement | None  # None for a node alone: nobody to agree with

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def ping(self) -> Deferred[Any]:
        """Fires when the link answers (fails when it is down)."""

    def publish(self, user_id: int, payload: bytes) -> Deferred[int]:
        """Send to the node holding `user_id`; fires with the number of receivers."""

    def publish_node(self, incarnation: bytes, payload: bytes) -> Deferred[int]:
        """Send to one node (group fan-out, delivery reports)."""

    def publish_control(self, payload: bytes) -> Deferred[int]:
        """Send to every node."""

    def carry(self, user_id: int, payload: bytes, answered: Callable[[int, int], None],
              token: int) -> None:
        """Send a copy to the node holding `user_id`; `answered(receivers, token)` runs with
        the number of nodes that got it, 0 when none did or the bus is down. A plain callback
        rather than a Deferred: this runs for every copy that crosses nodes."""

    def carry_node(self, incarnation: bytes, payload: bytes,
                   answered: Callable[[int, int], None], token: int) -> None:
        """The same on one node's channel (group fan-out)."""

    async def subscribe(self, user_id: int, device: str, since: int, max_devices: int,
                        takeover: bool) -> Claim:
        """Hold the user's channel here and claim a session: the account's only one when
        `device` is "" (original dialect), else one of up to `max_devices` devices
        (`takeover`: even when another node holds this device)."""

    def unsubscribe(self, user_id: int, device: str) -> Deferred[None]:
        """Release the session's claim, and the user's channel with the last one here; fires
        once the release is done (at once when there is nothing to release), never fails."""

    async def reclaim(self, held: list[tuple[int, str, int]], max_devices: int
                      ) -> list[tuple[int, str]]:
        """Claim (user, device, since) again after a reconnect; return the (user, device)
        that another node took meanwhile."""

    def devices(self, user_id: int) -> Deferred[dict[str, int]]:
        """The user's devices held by any node, device -> login time (ms)."""

    def online(self, user_ids: list[int]) -> Deferred[set[int]]:
        """Which of these users some node holds (one round trip for all of them)."""

    def remember(self, sender: int, cid: str, mid: int, then: Remembered) -> None:
        """Keep (sender, cid) -> mid for ten minutes; call `then` with an earlier (mid, safe),
        or None (also when the bus cannot be asked: the message counts as new). A callback,
        not a Deferred: a node alone answers at once, for every proto-2 message."""

    def settle(self, sender: int, cid: str, mid: int) -> None:
        """Mark (sender, cid) safe."""

    def locate(self, user_ids: list[int]) -> Deferred[dict[int, bytes]]:
        """The node incarnation holding each user; users held by none are left out."""

    def incr(self, key: str, ttl: float) -> Deferred[int]:
        """Add one to a cluster-wide counter that expires `ttl` seconds after it was created;
        fire with the new value (counters of the throttles)."""

    def expire(self, key: str, ttl: float) -> Deferred[None]:
        """Make an existing counter expire `ttl` seconds from now."""

    def remaining(self, keys: list[str]) -> Deferred[list[float]]:
        """Seconds until each counter expires; 0 for one that does not exist."""


def open_bus(redis_url: str, node_id: int, reactor: Any, settings: dict[str, Setting]) -> Bus:
    """RedisBus for a cluster, LocalBus for a node alone (empty URL). `settings`: the
    options every node of a cluster must share (chatd/cluster/agreement.py)."""
    if not redis_url:
        return LocalBus(reactor)
    from chatd.cluster.redis import RedisBus
    return RedisBus(redis_url, node_id, reactor, settings)

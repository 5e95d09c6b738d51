"""Delivery between nodes: publish a frame on a user's channel, hold the channels of local users."""

from collections.abc import Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred

from chatd.bus.local import LocalBus

__all__ = ["Bus", "LocalBus", "open_bus"]


class Bus(Protocol):
    """What the router needs from the link between nodes."""

    incarnation: bytes
    listener: Any

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, user_id: int, payload: bytes) -> Deferred[int]:
        """Send to the node holding `user_id`; fires with the number of receivers."""

    def publish_node(self, incarnation: bytes, payload: bytes) -> Deferred[int]:
        """Send to one node (group fan-out, delivery reports)."""

    def publish_control(self, payload: bytes) -> Deferred[int]:
        """Send to every node."""

    async def subscribe(self, user_id: int) -> bool:
        """Hold the user's channel and session here; False when another node holds them."""

    def unsubscribe(self, user_id: int) -> None:
        """Release the user's channel and session."""

    async def reclaim(self, user_ids: Iterable[int]) -> list[int]:
        """Claim again after a reconnect; return the users another node took meanwhile."""

    def online(self, user_ids: list[int]) -> Deferred[set[int]]:
        """Which of these users some node holds (one round trip for all of them)."""

    def remember(self, sender: int, cid: str, mid: int) -> Deferred[tuple[int, bool] | None]:
        """Keep (sender, cid) -> mid for ten minutes; fire with an earlier (mid, safe) if any."""

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


def open_bus(redis_url: str, node_id: int, reactor: Any) -> Bus:
    """RedisBus for a cluster, LocalBus for a node alone (empty URL)."""
    if not redis_url:
        return LocalBus(reactor)
    from chatd.bus.redis import RedisBus
    return RedisBus(redis_url, node_id, reactor)

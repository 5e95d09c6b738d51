"""Delivery between nodes: publish a frame on a user's channel, hold the channels of local users."""

from typing import Protocol

from twisted.internet.defer import Deferred

from chatd.bus.local import LocalBus

__all__ = ["Bus", "LocalBus"]


class Bus(Protocol):
    """What the router needs from the link between nodes."""

    def publish(self, user_id: int, frame: bytes) -> Deferred[int]:
        """Send `frame` to the node holding `user_id`; fires with the number of receivers."""

    def subscribe(self, user_id: int) -> Deferred[bool]:
        """Hold the user's channel on this node; False when another node holds it."""

    def unsubscribe(self, user_id: int) -> None:
        """Release the user's channel."""

    def online(self, user_ids: list[int]) -> Deferred[set[int]]:
        """Which of these users some other node holds (one round trip for all of them)."""

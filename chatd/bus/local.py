"""The bus of a node that runs alone: nobody else is listening."""

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, succeed


class LocalBus:
    """No other nodes: publishing reaches no one, holding a channel always succeeds."""

    incarnation = b"local"

    def __init__(self) -> None:
        self.listener: Any = None

    def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

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

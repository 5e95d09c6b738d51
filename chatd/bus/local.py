"""The bus of a node that runs alone: nobody else is listening."""

from twisted.internet.defer import Deferred, succeed


class LocalBus:
    """No other nodes: publishing reaches no one, holding a channel always succeeds."""

    def publish(self, user_id: int, frame: bytes) -> Deferred[int]:
        return succeed(0)

    def subscribe(self, user_id: int) -> Deferred[bool]:
        return succeed(True)

    def unsubscribe(self, user_id: int) -> None:
        return None

    def online(self, user_ids: list[int]) -> Deferred[set[int]]:
        return succeed(set())

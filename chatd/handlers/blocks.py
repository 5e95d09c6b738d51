"""Who has blocked whom, kept in memory for the users logged in here.

The message path asks "did the recipient block the sender?" for every 1:1 message, so the
answer must not cost a database round trip: a user's blockers are loaded with the login
reply and follow BLOCK requests on any node through the bus's control channel.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.delivery.router import Router
from chatd.store import Store

log = Logger()

EMPTY: frozenset[int] = frozenset()


class Blocks:
    """For each user logged in on this node, the set of users who blocked them."""

    def __init__(self) -> None:
        self._blockers: dict[int, set[int]] = {}

    def blockers(self, user_id: int) -> set[int] | frozenset[int]:
        """The users who blocked `user_id` (a user logged in here)."""
        return self._blockers.get(user_id, EMPTY)

    def load(self, user_id: int, blockers: set[int]) -> None:
        """The user logged in: their blockers as the database has them."""
        if blockers:
            self._blockers[user_id] = set(blockers)
        else:
            self._blockers.pop(user_id, None)

    def drop(self, user_id: int) -> None:
        """The user is no longer logged in here."""
        self._blockers.pop(user_id, None)

    def changed(self, blocker: int, blocked: int, block: bool) -> None:
        """`blocker` blocked or unblocked `blocked` (announced on the bus by any node)."""
        if block:
            self._blockers.setdefault(blocked, set()).add(blocker)
            return
        blockers = self._blockers.get(blocked)
        if blockers is not None:
            blockers.discard(blocker)
            if not blockers:
                del self._blockers[blocked]


class BlockFollower:
    """Keeps this node's Blocks true: a change announced by any node, and a reload of the
    users logged in here after the bus was away (the changes meanwhile were missed)."""

    def __init__(self, blocks: Blocks, store: Store, router: Router) -> None:
        self.blocks = blocks
        self.store = store
        self.router = router

    def changed(self, blocker: int, blocked: int, block: bool) -> None:
        if self.router.online_here(blocked):
            self.blocks.changed(blocker, blocked, block)

    def reload(self, user_ids: list[int]) -> None:
        d = Deferred.fromCoroutine(self.store.blockers_of(user_ids))
        d.addCallbacks(self._reloaded, lambda f: log.warn("reloading blocks failed: {error}",
                                                          error=f.value), (user_ids,))

    def _reloaded(self, blockers: dict[int, set[int]], user_ids: list[int]) -> None:
        for user_id in user_ids:
            if self.router.online_here(user_id):
                self.blocks.load(user_id, blockers.get(user_id, set()))

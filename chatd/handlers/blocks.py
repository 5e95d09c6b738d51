"""Who has blocked whom, kept in memory for the users logged in here.

The message path asks "did the recipient block the sender?" for every 1:1 message, so the
answer must not cost a database round trip: a user's blockers are loaded with the login
reply and follow BLOCK requests on any node through the bus's control channel.
"""

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

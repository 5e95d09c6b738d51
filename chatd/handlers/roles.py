"""Who moderates a group: its owner and admins, cached per group for the features that ask
(recall, mentioning everyone, the group admin requests), forgotten whenever the group
changes on any node (the router's group_changed, which every role change announces).

The one public question is `Roles.can_moderate(groupid, userid)`; the rules that change
roles are checked in the store's transactions (chatd/store/roles.py), not here.
"""

from chatd.store import Store
from chatd.store.roles import MODERATORS


class Roles:
    """group id -> {user id: stored role} of its owner and admins."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cached: dict[int, dict[int, str]] = {}
        self._changes = 0

    async def can_moderate(self, group_id: int, user_id: int) -> bool:
        """True when the user is the group's owner or one of its admins (False for no such
        group or member)."""
        moderators = self._cached.get(group_id)
        if moderators is None:
            changes = self._changes
            moderators = await self.store.moderators(group_id)
            if changes == self._changes:
                self._cached[group_id] = moderators
        return moderators.get(user_id) in MODERATORS

    def forget(self, group_id: int | None) -> None:
        """A group changed (None: any may have, the bus was away): ask the store again."""
        if group_id is None:
            self._cached.clear()
        else:
            self._cached.pop(group_id, None)
        self._changes += 1

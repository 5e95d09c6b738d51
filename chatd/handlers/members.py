"""The members of groups, cached for the message path and loaded in arrival order.

A group message needs its group's members before it can be stamped with its mid. A group
that is not cached (a new one, or right after a membership change on any node) is loaded
from the store. The store's pool answers concurrent queries in any order, so one load per
group is in flight at a time and the messages arriving meanwhile wait behind it, released
in the order they arrived: one sender's messages keep their order. A load's result is
cached only when no membership changed while it ran (a join committed meanwhile may be
missing from it). The same load brings the group's muted members (MUTE_MEMBER), which the
message path checks from `mutes` without a query.
"""

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from chatd.store import Store


class GroupMembers:
    """group id -> member ids, for the groups whose messages passed through this node."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cached: dict[int, set[int]] = {}
        self.mutes: dict[int, dict[int, int]] = {}  # group -> muted member -> until (ms)
        self._loading: dict[int, list[Deferred[set[int]]]] = {}
        self._changes = 0

    def cached(self) -> int:
        """How many groups' members are cached (a metric)."""
        return len(self._cached)

    def get(self, group_id: int) -> set[int] | None:
        """The members when they are cached and no load is queued before them, else None
        (then `load` them)."""
        if group_id in self._loading:
            return None
        return self._cached.get(group_id)

    def load(self, group_id: int) -> Deferred[set[int]]:
        """The members, after every load asked for earlier for this group (empty for a
        group that does not exist)."""
        waiting: Deferred[set[int]] = Deferred()
        queue = self._loading.get(group_id)
        if queue is not None:
            queue.append(waiting)
            return waiting
        self._loading[group_id] = [waiting]
        changes = self._changes
        d = Deferred.fromCoroutine(self.store.members_and_mutes(group_id))
        d.addCallbacks(self._loaded, self._failed, (group_id, changes), None, (group_id,))
        return waiting

    def _loaded(self, loaded: tuple[set[int], dict[int, int]], group_id: int, changes: int
                ) -> None:
        members, mutes = loaded
        if members and changes == self._changes:
            self._cached[group_id] = members
        if mutes:
            self.mutes[group_id] = mutes
        else:
            self.mutes.pop(group_id, None)
        for waiting in self._loading.pop(group_id):
            waiting.callback(members)

    def _failed(self, failure: Failure, group_id: int) -> None:
        for waiting in self._loading.pop(group_id):
            waiting.errback(failure)

    def forget(self, group_id: int | None) -> None:
        """Members changed (maybe on another node; None: any group may have): load them
        again at the next message."""
        if group_id is None:
            self._cached.clear()
        else:
            self._cached.pop(group_id, None)
        self._changes += 1

"""Per-user and per-group size limits on what the database keeps: friends per user, groups
created per user, members per group. Checked before the change (a soft limit: two changes at
the same moment may both pass)."""

from dataclasses import dataclass

from chatd.messages import ChatError, Errno
from chatd.store import Store

DEFAULT_MAX_FRIENDS = 1000
DEFAULT_MAX_GROUPS_CREATED = 100
DEFAULT_MAX_GROUP_MEMBERS = 2000


@dataclass(frozen=True)
class QuotaLimits:
    """The limits; each is a `twistd chatd` option."""

    friends: int = DEFAULT_MAX_FRIENDS
    groups_created: int = DEFAULT_MAX_GROUPS_CREATED
    group_members: int = DEFAULT_MAX_GROUP_MEMBERS


class Quotas:
    """Raises the errno of a limit that a change would pass."""

    def __init__(self, store: Store, limits: QuotaLimits = QuotaLimits()) -> None:
        self._store = store
        self.limits = limits

    async def check_friend(self, user_id: int, friend_id: int) -> None:
        """Friendship is mutual: both lists must have room (errno 148)."""
        counts = await self._store.friend_counts([user_id, friend_id])
        if max(counts.values(), default=0) >= self.limits.friends:
            raise ChatError(Errno.TOO_MANY_FRIENDS)

    async def check_create_group(self, user_id: int) -> None:
        if await self._store.groups_created(user_id) >= self.limits.groups_created:
            raise ChatError(Errno.TOO_MANY_GROUPS)

    async def check_join(self, group_id: int, user_id: int) -> None:
        """A member joining again changes nothing and is never refused."""
        members = await self._store.member_ids(group_id)
        if user_id not in members and len(members) >= self.limits.group_members:
            raise ChatError(Errno.GROUP_FULL)

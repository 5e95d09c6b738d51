"""Friends and groups as a user sees them: with live state, in the user's dialect.

Live state comes from the router (this node, then the cluster); a user who blocked the
viewer is shown to the viewer as offline. The original dialect nests JSON-encoded strings
where proto 2 has objects (docs/protocol.md, Login reply).
"""

from typing import Any

from chatd.codec import encode_text
from chatd.delivery.router import Router
from chatd.handlers.blocks import Blocks
from chatd.store import GroupRecord, Unread


def _state(online: bool) -> str:
    return "online" if online else "offline"


def friend_view(friend_id: int, name: str, online: set[int]) -> dict[str, Any]:
    return {"id": friend_id, "name": name, "state": _state(friend_id in online)}


# Roles as stored (the original server's words, plus "admin"), as each dialect shows them.
ROLE_WORDS = {1: {"creator": "creator", "admin": "normal", "normal": "normal"},
              2: {"creator": "owner", "admin": "admin", "normal": "member"}}


def group_view(group: GroupRecord, online: set[int], proto: int = 2,
               viewer: int | None = None) -> dict[str, Any]:
    """A group with its members; proto 2 adds the viewer's own `role`, the announcement and
    who may join."""
    words = ROLE_WORDS[proto]
    view: dict[str, Any] = {
        "groupid": group.id, "groupname": group.name, "groupdesc": group.desc,
        "users": [{"id": m.id, "name": m.name, "state": _state(m.id in online),
                   "role": words.get(m.role, m.role)} for m in group.members]}
    if proto == 2:
        mine = next((m.role for m in group.members if m.id == viewer), "normal")
        view.update(role=words[mine], announcement=group.announcement, join=group.join)
    return view


def friend_views(friends: list[tuple[int, str]], online: set[int], proto: int) -> list[Any]:
    """Friends with live state; JSON strings for the original dialect."""
    views = [friend_view(fid, name, online) for fid, name in friends]
    return views if proto == 2 else [encode_text(v) for v in views]


def group_views(groups: list[GroupRecord], online: set[int], proto: int,
                viewer: int | None = None) -> list[Any]:
    """Groups with members; the original dialect nests JSON strings and repeats the id as
    `id`, the key its client reads."""
    views = [group_view(g, online, proto, viewer) for g in groups]
    if proto == 2:
        return views
    for view in views:
        view["id"] = view["groupid"]
        view["users"] = [encode_text(u) for u in view["users"]]
    return [encode_text(v) for v in views]


def unread_views(unread: list[Unread]) -> list[dict[str, int]]:
    return [{"groupid" if u.group_id else "peer": u.group_id or u.peer, "count": u.count,
             "last_mid": u.last_mid} for u in unread]


class Presence:
    """Who is online, as one user may see it."""

    def __init__(self, router: Router, blocks: Blocks) -> None:
        self.router = router
        self.blocks = blocks

    async def online(self, viewer: int, user_ids: list[int]) -> set[int]:
        """Which of `user_ids` are online; those who blocked `viewer` are not."""
        online = await self.router.online(user_ids)
        return online - self.blocks.blockers(viewer)

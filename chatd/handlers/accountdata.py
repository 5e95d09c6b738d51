"""An account's data as a whole: deleting it (DELETE_ACCOUNT, chatd-admin delete) and
exporting it (chatd-admin export). A part of the node context, so that the user's request
and the operator's share one way of doing it."""

from typing import Any

from twisted.logger import Logger

from chatd.cluster.envelope import EndSession
from chatd.delivery.history import HistoryWriter
from chatd.delivery.router import Router
from chatd.delivery.session import Session
from chatd.handlers.endings import end_sessions
from chatd.handlers.presence import ROLE_WORDS
from chatd.handlers.resume import ResumeTokens
from chatd.handlers.settings import Settings
from chatd.messages import ServiceUnavailable
from chatd.metrics import Stats
from chatd.store import Store

log = Logger()

EXPORT_MESSAGES = 100_000  # the newest history keeps; a larger export is for the operator


async def end_everywhere(router: Router, stats: Stats, user_id: int, kind: str,
                         spare: Session | None = None) -> None:
    """End the user's sessions here (but `spare`) and, through the control channel, on the
    other nodes; while the bus is down only this node's end."""
    ended = end_sessions(router, stats, user_id, kind, spare)
    try:
        await router.bus.publish_control(
            EndSession(router.bus.incarnation, user_id, kind).encode())
    except ServiceUnavailable as e:
        log.warn("user {uid}: other nodes not told ({kind}: {error}); the sessions there go on",
                 uid=user_id, kind=kind, error=e)
    log.info("user {uid}: {kind}; {n} sessions here ended", uid=user_id, kind=kind, n=ended)


class AccountData:
    """Delete or export one account."""

    def __init__(self, store: Store, router: Router, resume: ResumeTokens, settings: Settings,
                 stats: Stats, history: HistoryWriter) -> None:
        self.store = store
        self.history = history
        self.router = router
        self.resume = resume
        self.settings = settings
        self.stats = stats

    async def delete(self, user_id: int, spare: Session | None = None) -> bool:
        """Delete the account and end its sessions everywhere (but `spare`, the one that
        asked, which its handler closes after the reply); False when there is none."""
        await self.history.flush()  # this node's last messages of the user, named too
        groups = await self.store.delete_account(user_id)
        if groups is None:
            return False
        await self.resume.revoke(user_id)
        for group_id in groups:
            self.router.group_changed(group_id)
        await end_everywhere(self.router, self.stats, user_id, "account_deleted", spare)
        log.info("deleted the account of user {uid}", uid=user_id)
        return True

    async def export(self, user_id: int) -> dict[str, Any] | None:
        """Profile, settings, friends, groups and the messages the user sent, as JSON."""
        await self.history.flush()
        profile = await self.store.profile(user_id)
        if profile is None:
            return None
        settings = await self.settings.of(user_id)
        friends = await self.store.friends(user_id)
        groups = await self.store.user_groups(user_id)
        roles = ROLE_WORDS[2]
        return {
            "profile": {"id": profile.id, "name": profile.name, "bio": profile.bio},
            "settings": settings.view(),
            "friends": [{"id": fid, "name": name} for fid, name in friends],
            "groups": [{"groupid": g.id, "groupname": g.name, "groupdesc": g.desc,
                        "role": next(roles[m.role] for m in g.members if m.id == user_id)}
                       for g in groups],
            "messages": await self.store.sent_messages(user_id, EXPORT_MESSAGES)}

    async def export_by_token(self, token: str) -> dict[str, Any] | None:
        """The export of the user a valid resume token names (the web listener's "Download
        my data"); None for anything else."""
        user_id = token.split(".", 1)[0]
        if not (user_id.isascii() and user_id.isdigit()) or len(user_id) > 19:
            return None
        user = await self.store.user(int(user_id))
        if user is None or not await self.resume.valid(token, user):
            return None
        return await self.export(user.id)

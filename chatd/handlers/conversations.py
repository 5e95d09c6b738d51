"""Reading conversations: HISTORY, SYNC, read markers (READ) and TYPING.

These requests read what the history writer kept and send live-only frames; none of them is
on the path of a chat message.
"""

from typing import Any

from chatd.codec import decode, encode
from chatd.delivery.session import Session
from chatd.delivery.signals import Signal
from chatd.handlers.context import Context
from chatd.messages import ChatError, Errno, MsgId

HISTORY_PAGE = 50
SYNC_PAGE = 500
TYPING_SECONDS = 1.0
TYPING_REMEMBERED = 10_000
NEWEST = (1 << 63) - 1  # above every mid: "before" when the newest page is asked for


class Conversations:
    """Handlers of msgids 23-28."""

    def __init__(self, context: Context) -> None:
        self.store = context.store
        self.router = context.router
        self.history_writer = context.history
        self.blocks = context.blocks
        self.clock = context.clock
        self.composer = context.composer
        self._typing: dict[tuple[int, int], float] = {}
        # (user, device, groupid, peer): a read marker was stored (0 for the side not used)
        self.marked_read: Signal[[int, str, int, int]] = Signal()

    def handlers(self) -> dict[int, Any]:
        return {MsgId.HISTORY: self.history, MsgId.SYNC: self.sync, MsgId.READ: self.read,
                MsgId.TYPING: self.typing}

    async def history(self, session: Session, req: dict[str, Any]) -> None:
        """One page of a conversation, newest messages before `before`, sent oldest first."""
        user_id = session.user_id
        before = req.get("before") or NEWEST
        limit = req.get("limit") or HISTORY_PAGE
        await self.history_writer.flush()
        peer = req.get("peer")
        if peer is not None:
            rows = await self.store.pair_history(user_id, peer, before, limit + 1)
            reply: dict[str, Any] = {"msgid": MsgId.HISTORY_ACK, "errno": 0, "peer": peer}
        else:
            group_id = req["groupid"]
            found = await self.store.group_history(group_id, user_id, before, limit + 1)
            if found is None:
                raise ChatError(Errno.NOT_A_MEMBER)
            rows = found
            reply = {"msgid": MsgId.HISTORY_ACK, "errno": 0, "groupid": group_id}
        if not self.history_writer.enabled:
            rows = []  # what an earlier run with history on kept is not shown either
        reply["more"] = len(rows) > limit
        newest_last = list(reversed(rows[:limit]))
        reply["messages"] = await self._shown(newest_last, user_id)  # type: ignore[arg-type]
        session.send(reply)

    async def sync(self, session: Session, req: dict[str, Any]) -> None:
        """Everything of the user's conversations after a mid, oldest first."""
        limit = req.get("limit") or SYNC_PAGE
        rows: list[tuple[int, str]] = []
        if self.history_writer.enabled:
            await self.history_writer.flush()
            rows = await self.store.sync(session.user_id, req["after"], limit + 1)
        messages = await self._shown(rows[:limit], session.user_id)  # type: ignore[arg-type]
        session.send({"msgid": MsgId.SYNC_ACK, "errno": 0, "more": len(rows) > limit,
                      "messages": messages})

    async def _shown(self, rows: list[tuple[int, str]], viewer: int) -> list[dict[str, Any]]:
        """Kept frames as `viewer` sees them again: through the message parts, without the
        ones the viewer hid (HIDE)."""
        frames = [decode(text) for _, text in rows]
        await self.composer.show(frames, viewer)
        return [frame for frame in frames if "hidden" not in frame]

    async def read(self, session: Session, req: dict[str, Any]) -> None:
        """Store the read marker; the reader's other devices get the READ, and for a 1:1
        conversation it is a receipt for the peer's devices."""
        user_id = session.user_id
        peer, group_id, mid = req.get("peer"), req.get("groupid"), req["mid"]
        if not await self.store.mark_read(user_id, group_id or 0, peer or 0, mid):
            raise ChatError(Errno.NOT_A_MEMBER)
        self.marked_read(user_id, session.device, group_id or 0, peer or 0)
        receipt = encode({"msgid": MsgId.READ, **({"peer": peer} if peer is not None else
                                                  {"groupid": group_id}),
                          "mid": mid, "id": user_id})
        self.router.to_other_devices(user_id, session.device, receipt)
        if peer is not None and peer != user_id:
            self.router.notify(peer, receipt)

    def typing(self, session: Session, req: dict[str, Any]) -> None:
        """Live only, at most one a second per sender and recipient; refused to a blocker."""
        user_id, to = session.user_id, req["to"]
        if to in self.blocks.blockers(user_id):
            raise ChatError(Errno.BLOCKED)
        now = self.clock.seconds()
        key = (user_id, to)
        if now - self._typing.get(key, -TYPING_SECONDS) < TYPING_SECONDS:
            return
        if len(self._typing) >= TYPING_REMEMBERED:
            self._typing = {k: t for k, t in self._typing.items() if now - t < TYPING_SECONDS}
        self._typing[key] = now
        self.router.notify(to, encode({"msgid": MsgId.TYPING, "id": user_id, "to": to}))

"""Message actions: RECALL, EDIT, REACT and HIDE (msgids 50-59, docs/protocol.md).

None of them is on the path of a chat message: each reads the kept message it names. RECALLED
and EDITED go to the participants the way chat messages go (router.deliver: every device on
any node, the offline mailbox for the rest), under a mid of their own that the client
acknowledges as `ack`; in each session they queue behind the message they name, which went
the same way earlier. REACTION and HIDE are live only: HISTORY and SYNC show their effect.
"""

import time
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.codec import encode
from chatd.delivery.session import Session
from chatd.delivery.signals import Signal
from chatd.handlers.context import Context
from chatd.handlers.emoji import is_one_emoji
from chatd.handlers.kept import Found, KeptMessages, tombstone
from chatd.messages import GROUP_CHAT, ONE_CHAT, ChatError, Errno, MsgId
from chatd.mids import mid_floor
from chatd.store.roles import MODERATORS

log = Logger()

DEFAULT_RECALL_WINDOW = 120
DEFAULT_EDIT_WINDOW = 24 * 3600
DEFAULT_MAX_REACTIONS = 20


@dataclass(frozen=True)
class ActionLimits:
    recall_window: int = DEFAULT_RECALL_WINDOW  # seconds; 0: senders cannot recall
    edit_window: int = DEFAULT_EDIT_WINDOW  # seconds; 0: nobody can edit
    max_reactions: int = DEFAULT_MAX_REACTIONS  # different emoji on one message


def may_moderate(found: Found) -> bool:
    """May the asking user recall anyone's message of this group at any time? Its owner and
    its admins may (chatd/store/roles.py)."""
    return found.group_id is not None and found.kept.role in MODERATORS


class Told:
    """The receipt of a RECALLED or EDITED: nobody waits for it; a copy that could not be
    stored is logged (the kept message shows the change anyway)."""

    def delivered(self, missing: Any, full: Any) -> None:
        """Every copy is safe, or was refused by a full mailbox: nothing to do."""

    def failed(self, failure: Failure) -> None:
        log.warn("a message action could not be stored for every participant: {error}",
                 error=failure.value)


TOLD = Told()


class Actions:
    """Handlers of msgids 50, 53, 56 and 59."""

    def __init__(self, context: Context, limits: ActionLimits) -> None:
        self.store = context.store
        self.router = context.router
        self.offline = context.offline
        self.members = context.members
        self.blocks = context.blocks
        self.mids = context.mids
        self.clock = context.clock
        self.limits = limits
        self.kept = KeptMessages(context)
        # a message was recalled: (its mid, its frame as it was); attachments delete theirs
        self.on_recalled: Signal[[int, dict[str, Any]]] = Signal()

    def handlers(self) -> dict[int, Any]:
        return {MsgId.RECALL: self.recall, MsgId.EDIT: self.edit, MsgId.REACT: self.react,
                MsgId.HIDE: self.hide}

    async def recall(self, session: Session, req: dict[str, Any]) -> None:
        user_id, mid = _me(session), req["mid"]
        found = await self.kept.find(user_id, mid, {"mid": mid})
        self._check_recall(found, user_id, mid)
        stone = encode(tombstone(found.frame, user_id))[:-1].decode()
        if not await self.store.recall_message(mid, user_id, stone):
            raise ChatError(Errno.RECALLED, mid=mid)
        others = await self._others(found, user_id)
        self.offline.withdraw(others, mid)
        session.send({"msgid": MsgId.RECALL_ACK, "errno": 0, "mid": mid})
        self._tell(session, found, others, {"msgid": MsgId.RECALLED, "mid": mid,
                                            "by": user_id, "name": session.name})
        log.info("user {uid} recalled message {mid}", uid=user_id, mid=mid)
        self.on_recalled(mid, found.frame)

    def _check_recall(self, found: Found, user_id: int, mid: int) -> None:
        if found.frame.get("recalled"):
            raise ChatError(Errno.RECALLED, mid=mid)
        if may_moderate(found):
            return
        if found.kept.sender != user_id:
            raise ChatError(Errno.NOT_YOUR_MESSAGE, mid=mid)
        self._check_window(self.limits.recall_window, Errno.RECALL_TOO_LATE, mid)

    def _check_window(self, window: int, late: Errno, mid: int) -> None:
        if window == 0:
            raise ChatError(Errno.ACTION_OFF, mid=mid)
        if mid < mid_floor(self.clock.seconds() - window):
            raise ChatError(late, mid=mid)

    async def edit(self, session: Session, req: dict[str, Any]) -> None:
        user_id, mid, text = _me(session), req["mid"], req["msg"]
        for _ in range(3):  # another edit or a recall may come between reading and writing
            found = await self.kept.find(user_id, mid, {"mid": mid})
            self._check_edit(found, user_id, mid)
            edited = int(self.clock.seconds() * 1000)
            now = encode({**found.frame, "msg": text, "edited": edited})[:-1].decode()
            if await self.store.edit_message(mid, found.kept.text, now):
                break
        else:
            raise ChatError(Errno.UNAVAILABLE, mid=mid)
        others = await self._others(found, user_id)
        self.offline.revise(others, mid, now)
        session.send({"msgid": MsgId.EDIT_ACK, "errno": 0, "mid": mid, "edited": edited})
        self._tell(session, found, others, {"msgid": MsgId.EDITED, "mid": mid, "msg": text,
                                            "edited": edited, "id": user_id,
                                            "name": session.name})

    def _check_edit(self, found: Found, user_id: int, mid: int) -> None:
        if found.frame.get("recalled"):
            raise ChatError(Errno.RECALLED, mid=mid)
        if found.kept.sender != user_id:
            raise ChatError(Errno.NOT_YOUR_MESSAGE, mid=mid)
        self._check_blocked(found, user_id, mid=mid)
        self._check_window(self.limits.edit_window, Errno.EDIT_TOO_LATE, mid)

    def _check_blocked(self, found: Found, user_id: int, **refusal: Any) -> None:
        if found.group_id is None and found.other(user_id) in self.blocks.blockers(user_id):
            raise ChatError(Errno.BLOCKED, **refusal)

    async def react(self, session: Session, req: dict[str, Any]) -> None:
        user_id, mid, emoji, on = _me(session), req["mid"], req["emoji"], req.get("on", True)
        echo = {"mid": mid, "emoji": emoji, "on": on}
        if not is_one_emoji(emoji):
            raise ChatError(Errno.NOT_AN_EMOJI, **echo)
        found = await self.kept.find(user_id, mid, echo)
        if found.frame.get("recalled"):
            raise ChatError(Errno.RECALLED, **echo)
        self._check_blocked(found, user_id, **echo)
        changed = await self.store.react(mid, user_id, emoji, on, self.limits.max_reactions)
        if changed is None:
            raise ChatError(Errno.TOO_MANY_REACTIONS, **echo)
        session.send({"msgid": MsgId.REACT_ACK, "errno": 0, **echo})
        if changed:
            await self._notify(session, found, {"msgid": MsgId.REACTION, "mid": mid,
                                                 "id": user_id, "emoji": emoji, "on": on})

    async def hide(self, session: Session, req: dict[str, Any]) -> None:
        user_id, mid = _me(session), req["mid"]
        await self.kept.find(user_id, mid, {"mid": mid})
        await self.store.hide_message(user_id, mid)
        session.send({"msgid": MsgId.HIDE, "errno": 0, "mid": mid})
        self.router.to_other_devices(user_id, session.device,
                                     encode({"msgid": MsgId.HIDE, "mid": mid}))

    async def _others(self, found: Found, user_id: int) -> list[int]:
        """The participants of the message's conversation but the acting user."""
        group_id = found.group_id
        if group_id is None:
            other = found.other(user_id)
            return [other] if other != user_id else []
        members = self.members.get(group_id)
        if members is None:
            members = await self.members.load(group_id)
        return [m for m in members if m != user_id]

    def _tell(self, session: Session, found: Found, others: list[int],
              frame: dict[str, Any]) -> None:
        """RECALLED or EDITED: stored frames for the participants, under a mid of their own
        (`ack`), and a live copy for the acting user's other devices."""
        ack = self.mids.next()
        frame["ack"] = ack
        user_id = _me(session)
        theirs, mine = _conversation_views(found, user_id, frame)
        if others:
            self.router.deliver(others, ack, encode(theirs), TOLD)
        self.router.to_other_devices(user_id, session.device, encode(mine))

    async def _notify(self, session: Session, found: Found, frame: dict[str, Any]) -> None:
        """A live-only frame for the participants and the acting user's other devices."""
        user_id = _me(session)
        theirs, mine = _conversation_views(found, user_id, frame)
        data = encode(theirs)
        for other in await self._others(found, user_id):
            self.router.notify(other, data)
        self.router.to_other_devices(user_id, session.device, encode(mine))


def _me(session: Session) -> int:
    """The logged-in user of a session (handlers run after login only)."""
    return session.user_id  # type: ignore[return-value]


def _conversation_views(found: Found, user_id: int, frame: dict[str, Any]
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The frame as the participants see it and as the acting user's devices do: `groupid`
    for both, or `peer` naming the other side of a 1:1 conversation."""
    group_id = found.group_id
    if group_id is not None:
        view = {**frame, "groupid": group_id}
        return view, view
    return {**frame, "peer": user_id}, {**frame, "peer": found.other(user_id)}


def recalled_line(frame: dict[str, Any]) -> dict[str, Any]:
    """RECALLED as the original dialect reads it: a chat line."""
    return _line(frame, frame["by"], f"{frame['name']} recalled a message")


def edited_line(frame: dict[str, Any]) -> dict[str, Any]:
    """EDITED as the original dialect reads it: a chat line with the new text."""
    return _line(frame, frame["id"], f"edited: {frame['msg']}")


def _line(frame: dict[str, Any], sender: int, text: str) -> dict[str, Any]:
    """A chat line of `sender` (the original client shows `time`, `id`, `name` and `msg`)."""
    line = {"msgid": ONE_CHAT, "id": sender, "name": frame["name"], "msg": text,
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    group_id = frame.get("groupid")
    if group_id is not None:
        line.update(msgid=GROUP_CHAT, groupid=group_id)
    return line

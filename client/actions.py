"""chat-client's message actions: `recall:MID`, `edit:MID:text`, `reply:MID:text`,
`react:MID:emoji` (and `unreact:MID:emoji`), the lines of received RECALLED, EDITED, REACTION
and HIDE, and how kept messages read in a history (mid, quote, edited, recalled, reactions).

A reply goes to the conversation of the message it answers: the client remembers the
conversation of the last REMEMBERED mids it has shown (live, synced or in a history).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from chatd.messages import MsgId
from client import display
from client.commands import CommandError, parse_id
from client.protocol import Frame

REMEMBERED = 10_000

USAGE: dict[str, str] = {
    "recall": "recall:mid",
    "edit": "edit:mid:message",
    "reply": "reply:mid:message",
    "react": "react:mid:emoji",
    "unreact": "unreact:mid:emoji",
}
HELP: dict[str, str] = {
    "recall": "take back your message (within 2 minutes) / 撤回消息",
    "edit": "change the text of your message / 编辑消息",
    "reply": "answer a message, quoting it / 引用回复",
    "react": "react to a message with one emoji / 表情回应",
    "unreact": "take your reaction back / 取消回应",
}
# The received frames this module shows.
RECEIVED = frozenset({MsgId.RECALLED, MsgId.EDITED, MsgId.REACTION, MsgId.HIDE})


@dataclass(frozen=True)
class Recall:
    mid: int

    def __str__(self) -> str:
        return f"recall:{self.mid}"


@dataclass(frozen=True)
class Edit:
    mid: int
    msg: str

    def __str__(self) -> str:
        return f"edit:{self.mid}:{self.msg}"


@dataclass(frozen=True)
class Reply:
    mid: int
    msg: str

    def __str__(self) -> str:
        return f"reply:{self.mid}:{self.msg}"


@dataclass(frozen=True)
class React:
    mid: int
    emoji: str
    on: bool = True

    def __str__(self) -> str:
        return f"{'react' if self.on else 'unreact'}:{self.mid}:{self.emoji}"


ActionCommand = Recall | Edit | Reply | React


def parse(line: str) -> ActionCommand | None:
    """The action a line names, or None when it names none (another command)."""
    name, colon, rest = line.partition(":")
    name = name.strip().lower()
    if name not in USAGE:
        return None
    target, colon2, text = rest.partition(":")
    try:
        mid = parse_id(target if colon else None, "mid")
        if name == "recall":
            return Recall(mid)
        if not colon2 or not text:
            raise CommandError("missing " + ("emoji" if "react" in name else "message"))
        if name in ("react", "unreact"):
            return React(mid, text.strip(), name == "react")
        return Edit(mid, text) if name == "edit" else Reply(mid, text)
    except CommandError as error:
        raise CommandError(f"{error}; usage: {USAGE[name]}") from None


def help_lines() -> list[str]:
    width = max(map(len, USAGE.values()))
    return [f"{USAGE[name]:<{width}}  {text}" for name, text in HELP.items()]


def request(command: Recall | Edit | React) -> Frame:
    """The request frame of an action (a reply is a chat message: see `reply_frame`)."""
    if isinstance(command, Recall):
        return {"msgid": MsgId.RECALL, "mid": command.mid}
    if isinstance(command, Edit):
        return {"msgid": MsgId.EDIT, "mid": command.mid, "msg": command.msg}
    return {"msgid": MsgId.REACT, "mid": command.mid, "emoji": command.emoji,
            "on": command.on}


def done(command: Recall | Edit | React) -> str:
    """What the user sees once the server did it."""
    if isinstance(command, Recall):
        return f"recalled: #{command.mid}"
    if isinstance(command, Edit):
        return f"edited: #{command.mid}: {display.clean(command.msg)}"
    verb = "reacted" if command.on else "unreacted"
    return f"{verb}: #{command.mid} {display.clean(command.emoji)}"


class Places:
    """The conversation of each mid shown lately: {"peer": user} or {"groupid": group}."""

    def __init__(self, me: Callable[[], object]) -> None:
        self._me = me
        self._places: OrderedDict[int, Frame] = OrderedDict()

    def seen(self, frame: Frame) -> None:
        mid = frame.get("mid")
        if not isinstance(mid, int):
            return
        if frame.get("msgid") == MsgId.GROUP_CHAT:
            self._places[mid] = {"groupid": frame.get("groupid")}
        else:
            mine = frame.get("id", self._me()) == self._me()  # what I sent has no `id`
            self._places[mid] = {"peer": frame.get("to") if mine else frame.get("id")}
        while len(self._places) > REMEMBERED:
            self._places.popitem(last=False)

    def reply_frame(self, command: Reply) -> Frame:
        """The chat message answering `command.mid`, in that message's conversation."""
        place = self._places.get(command.mid)
        if place is None:
            raise CommandError(f"message #{command.mid} is not known here; show it with "
                               "history first")
        if "groupid" in place:
            return {"msgid": MsgId.GROUP_CHAT, "groupid": place["groupid"], "msg": command.msg,
                    "reply_to": command.mid}
        return {"msgid": MsgId.ONE_CHAT, "to": place["peer"], "msg": command.msg,
                "reply_to": command.mid}


def received(frame: Frame, person: Callable[[object], Frame]) -> str:
    """One line for RECALLED, EDITED, REACTION or HIDE."""
    msgid, mid = frame.get("msgid"), display.clean(frame.get("mid"))
    where = f" in group [{display.clean(frame['groupid'])}]" if "groupid" in frame else ""
    if msgid == MsgId.RECALLED:
        return f"recalled: {display.clean(frame.get('name'))} recalled a message " \
               f"(#{mid}){where}"
    if msgid == MsgId.EDITED:
        return f"edited: {display.user(frame)} edited #{mid}{where}: " \
               f"{display.clean(frame.get('msg'))}"
    if msgid == MsgId.REACTION:
        verb = "reacted" if frame.get("on") else "took back"
        return f"reaction: {display.user(person(frame.get('id')))} {verb} " \
               f"{display.clean(frame.get('emoji'))} on #{mid}{where}"
    return f"deleted for you: #{mid}"


def readable(frame: Frame) -> Frame:
    """A chat frame with what the actions left on it written into `msg`: "(recalled)", the
    quote it answers, "(edited)", reaction counts."""
    if frame.get("recalled"):
        return {**frame, "msg": "(recalled)"}
    quote, reactions = frame.get("quote"), frame.get("reactions")
    if not (isinstance(quote, dict) or frame.get("edited") or reactions):
        return frame
    text = str(frame.get("msg", ""))
    if isinstance(quote, dict):
        excerpt = "(recalled)" if quote.get("recalled") else quote.get("msg", "")
        text = f"> {quote.get('name', '')}: {excerpt} | {text}"
    if frame.get("edited"):
        text += " (edited)"
    if isinstance(reactions, dict) and reactions:
        text += " [" + " ".join(f"{emoji}{len(who)}" for emoji, who in reactions.items()
                                if isinstance(who, list)) + "]"
    return {**frame, "msg": text}


def kept(frame: Frame, line: Callable[[Frame], str]) -> str:
    """A kept message (history) as its line, `line(frame)`, after its mid, so that it can be
    named in an action."""
    return f"#{display.clean(frame.get('mid'))} {line(frame)}"

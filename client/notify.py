"""Notifications in the terminal: `@name` in a group message becomes the frame's `mentions`,
a message that mentions the user rings the terminal's bell, and MUTE's request and answer."""

from __future__ import annotations

import re
import time
from typing import Any

from chatd.messages import MsgId
from client import commands, display
from client.protocol import Frame

BELL = "\a"
MENTION = re.compile(r"(?<![\w@])@([^\s@:,.!?]+)")


def mentions_in(msg: str, group: Frame | None, me: object) -> list[int] | str | None:
    """The `mentions` of a group message: the members named `@name` (not the user), "all"
    for `@all`, None when it names nobody the client knows."""
    names = MENTION.findall(msg)
    if not names:
        return None
    if "all" in names:
        return "all"
    members = {str(u.get("name")): u.get("id") for u in (group or {}).get("users") or []
               if isinstance(u, dict) and u.get("id") != me}
    found = sorted({members[n] for n in names if isinstance(members.get(n), int)})
    return found or None


def mentioned(frame: Frame, me: object) -> bool:
    mentions = frame.get("mentions")
    return frame.get("msgid") == MsgId.GROUP_CHAT and frame.get("id") != me and (
        mentions == "all" or (isinstance(mentions, list) and me in mentions))


def shown(line: str, frame: Frame, me: object) -> str:
    """A chat line as shown: a mention of the user is marked and rings the bell."""
    return f"{BELL}@ {line}" if mentioned(frame, me) else line


def mute_request(command: commands.Mute, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    until = -1 if command.minutes is None else (
        0 if command.minutes == 0 else int((now + command.minutes * 60) * 1000))
    return {"msgid": MsgId.MUTE, "groupid" if command.group else "peer": command.target,
            "until": until}


def muted_line(reply: Frame, name: str) -> str:
    until = reply.get("until")
    if until == 0:
        return f"unmuted: {name}"
    if until == -1:
        return f"muted: {name}"
    return f"muted: {name} until {time.strftime('%Y-%m-%d %H:%M', time.localtime(until / 1000))}"


def mute_name(command: commands.Mute, session: Any) -> str:
    if command.group:
        return f"group [{command.target}]"
    return display.user(session.person(command.target))

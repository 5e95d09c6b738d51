"""The lines the client shows: the original client's formats, one event per line, safe to print."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterable

from chatd.messages import MsgId
from client.commands import USAGE
from client.protocol import Frame

WIDTH = 54
ERROR_PREFIX = "error: "

_HELP: dict[str, str] = {
    "help": "show this list / 显示所有支持的命令",
    "chat": "one-to-one chat / 一对一聊天",
    "addfriend": "add a friend / 添加好友",
    "creategroup": "create a group / 创建群组",
    "addgroup": "join a group / 加入群组",
    "groupchat": "group chat / 群聊",
    "loginout": "log out / 注销",
    "friends": "show the friend list / 好友列表",
    "groups": "show the groups and their members / 群组列表",
    "history": "the last messages with a user (default 20) / 聊天记录",
    "ghistory": "the last messages of a group (default 20) / 群聊记录",
    "removefriend": "end a friendship, on both sides / 删除好友",
    "leavegroup": "leave a group / 退出群组",
    "kick": "remove a member from your group (creator only) / 踢出群成员",
    "block": "refuse a user's messages, typing and friend requests / 屏蔽用户",
    "unblock": "stop blocking a user / 取消屏蔽",
    "devices": "list your devices that are online / 在线设备",
    "sendfile": "send a photo or file to a user / 发送文件",
    "sendgroupfile": "send a photo or file to a group / 发送群文件",
    "getfile": "save the attachment of a message / 保存文件",
    "mute": "no notifications from a user (for ever, or minutes; 0 unmutes) / 免打扰",
    "mutegroup": "no notifications from a group, except @mentions / 群免打扰",
    "quit": "leave the client / 退出",
}
NOTICES: dict[str, str] = {
    "logged_in_elsewhere": "another login took over this device; you are logged out",
    "banned": "your account has been banned",
    "password_changed": "your password was changed on another device; you are logged out",
    "account_deleted": "your account was deleted; you are logged out",
    "friend_added": "a friend request was accepted",
}


def clean(value: object) -> str:
    """Text from the network with control characters escaped, so one event stays one line
    and a peer cannot send escape sequences to the user's terminal."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in str(value))


def rule(title: str = "", fill: str = "=") -> str:
    """The original's section lines, e.g. 22 `-`, `friend list`, 21 `-`."""
    return (fill * ((WIDTH - len(title) + 1) // 2) + title).ljust(WIDTH, fill)


def menu() -> list[str]:
    return [rule(fill="="), "1. login", "2. register", "3. quit", rule(fill="=")]


def help_lines() -> list[str]:
    width = max(map(len, USAGE.values()))
    return [f"{USAGE[name]:<{width}}  {text}" for name, text in _HELP.items()]


def info(text: str) -> str:
    return f"info: {text}"


def error(text: str) -> str:
    return f"{ERROR_PREFIX}{text}"


def unconfirmed(text: str) -> str:
    return error(f"{clean(text)} was not confirmed by the server; it may not have been delivered")


def registered(user_id: object, name: str) -> str:
    return (f"registered: [{clean(user_id)}]{clean(name)}; "
            f"your user id is {clean(user_id)}, do not forget it!")


def reply_error(reply: Frame, context: str) -> str:
    """An error frame or a failed reply, with what the user was doing when it came."""
    return error(f"{context}: {clean(reply.get('errmsg', 'unknown error'))} "
                 f"(errno {clean(reply.get('errno'))})")


def user(person: Frame) -> str:
    return f"[{clean(person.get('id'))}]{clean(person.get('name', ''))}"


def message(frame: Frame, received_at: str, to: Frame | None = None) -> str:
    """`2026-11-26 10:00:01 [12]alice said: hello`, group messages prefixed `群消息[gid]:`.
    The user's own one-to-one messages (from another device, a sync or a history) name
    the peer `to`: `[1]me said to [12]alice: hi`."""
    when = clean(frame.get("time") or received_at)
    said = f"said to {user(to)}" if to is not None else "said"
    text = clean(frame.get("msg"))
    if isinstance(frame.get("attachment"), dict):
        text += (" " if text else "") + (f"{attachment(frame['attachment'])} "
                                         f"(getfile:{clean(frame.get('mid'))})")
    line = f"{when} {user(frame)} {said}: {text}"
    if frame.get("msgid") == MsgId.GROUP_CHAT:
        return f"群消息[{clean(frame.get('groupid'))}]:{line}"
    return line


def size_text(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:.1f} KB" if size < 1 << 20 else f"{size / (1 << 20):.1f} MB"


def attachment(description: Frame) -> str:
    """`[cat.jpg, 47.1 KB] URL`: a received photo or file."""
    size = description.get("size")
    return (f"[{clean(description.get('name'))}, "
            f"{size_text(size if isinstance(size, int) else 0)}] {clean(description.get('url'))}")


def unread(entry: Frame, name: Frame) -> str:
    """`unread: 3 from [2]bob` or `unread: 1 in group [7]dev`, from LOGIN_ACK's `unread`;
    `name` is the user or the group."""
    count = clean(entry.get("count"))
    if "groupid" in entry:
        return f"unread: {count} in group {group_title({**name, 'groupdesc': ''})}"
    return f"unread: {count} from {user(name)}"


def read_receipt(reader: Frame, text: str) -> str:
    """`read: [2]bob read chat:2:hello`: the peer has read the user's message up to that one."""
    return f"read: {user(reader)} read {clean(text)}"


def typing(person: Frame) -> str:
    return f"typing: {user(person)}"


def notice(frame: Frame, group: Frame) -> str:
    """A NOTICE frame as one `notice:` line; `group` names the group of a "kicked" one."""
    kind = frame.get("kind")
    if kind == "kicked":
        return f"notice: you were removed from group {group_title({**group, 'groupdesc': ''})}"
    if kind == "broadcast":
        return f"notice: broadcast: {clean(frame.get('msg'))}"
    text = NOTICES.get(str(kind), clean(kind))
    return f"notice: {text}" + (f": {clean(frame['msg'])}" if frame.get("msg") else "")


def devices(entries: Iterable[Frame], mine: str) -> list[str]:
    """`device: laptop since 2026-11-29 10:00:00 (this one)`, one line per online session."""
    lines = []
    for entry in entries:
        since = entry.get("since")
        when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since / 1000))
                if isinstance(since, int) and since >= 0 else clean(since))
        this = " (this one)" if entry.get("device") == mine else ""
        lines.append(f"device: {clean(entry.get('device'))} since {when}{this}")
    return lines


def history(title: str, lines: list[str], more: bool) -> list[str]:
    """The messages of a history command between a rule and a line that counts them."""
    tail = f"history: {len(lines)} message(s) {title}" + (
        ", older ones exist" if more else "")
    return [rule(f"history {title}", "-"), *lines, tail]


def presence(person: Frame) -> str:
    return f"{user(person)} {clean(person.get('state'))}"


def group_title(group: Frame) -> str:
    desc = group.get("groupdesc")
    named = f"[{clean(group.get('groupid'))}]{clean(group.get('groupname'))}"
    return f"{named} ({clean(desc)})" if desc else named


def members(group: Frame) -> list[str]:
    gid = clean(group.get("groupid"))
    return [f"member: [{gid}] {presence(member)} {clean(member.get('role'))}"
            for member in group.get("users", [])]


def friend_list(friends: Iterable[Frame]) -> list[str]:
    return [rule("friend list", "-"), *(f"friend: {presence(person)}" for person in friends)]


def group_list(groups: Iterable[Frame]) -> list[str]:
    lines = [rule("group list", "-")]
    for group in groups:
        lines += [f"group: {group_title(group)}", *members(group)]
    return lines


def login_summary(me: Frame, friends: Iterable[Frame], groups: Iterable[Frame]) -> list[str]:
    """What the original client shows after login: who you are, friends, groups."""
    return [rule("login user"),
            f"current login user => id:{clean(me.get('id'))} name:{clean(me.get('name'))}",
            *friend_list(friends), *group_list(groups), rule()]

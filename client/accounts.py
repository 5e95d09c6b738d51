"""The chat-client's account, people and group-admin commands (docs/client.md): passwd,
profile, setname, find, requests, accept, decline, role, announce, invite, join and
deleteaccount, and how their server events (friend requests, group changes) are shown."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatd.messages import MsgId
from client import display
from client.commands import CommandError, parse_id
from client.protocol import Frame

if TYPE_CHECKING:
    from client.session import Session

ROLES = ("owner", "admin", "member")


@dataclass(frozen=True)
class Passwd:
    def __str__(self) -> str:
        return "passwd"


@dataclass(frozen=True)
class Profile:
    user_id: int | None = None  # None: one's own

    def __str__(self) -> str:
        return "profile" if self.user_id is None else f"profile:{self.user_id}"


@dataclass(frozen=True)
class SetName:
    name: str

    def __str__(self) -> str:
        return f"setname:{self.name}"


@dataclass(frozen=True)
class Find:
    name: str

    def __str__(self) -> str:
        return f"find:{self.name}"


@dataclass(frozen=True)
class Requests:
    def __str__(self) -> str:
        return "requests"


@dataclass(frozen=True)
class Answer:
    user_id: int
    accept: bool

    def __str__(self) -> str:
        return f"{'accept' if self.accept else 'decline'}:{self.user_id}"


@dataclass(frozen=True)
class Role:
    group_id: int
    user_id: int
    role: str

    def __str__(self) -> str:
        return f"role:{self.group_id}:{self.user_id}:{self.role}"


@dataclass(frozen=True)
class Announce:
    group_id: int
    text: str

    def __str__(self) -> str:
        return f"announce:{self.group_id}:{self.text}"


@dataclass(frozen=True)
class Invite:
    group_id: int

    def __str__(self) -> str:
        return f"invite:{self.group_id}"


@dataclass(frozen=True)
class Join:
    code: str

    def __str__(self) -> str:
        return f"join:{self.code}"


@dataclass(frozen=True)
class FriendRequests:
    """Who may befriend the user: "open" (anyone) or "approve" (they ask first)."""

    mode: str

    def __str__(self) -> str:
        return f"friendrequests:{self.mode}"


@dataclass(frozen=True)
class DeleteAccount:
    def __str__(self) -> str:
        return "deleteaccount"


AccountCommand = (Passwd | Profile | SetName | Find | Requests | Answer | Role | Announce
                  | Invite | Join | FriendRequests | DeleteAccount)

USAGE: dict[str, str] = {
    "passwd": "passwd", "profile": "profile[:userid]", "setname": "setname:name",
    "find": "find:name", "requests": "requests", "accept": "accept:userid",
    "decline": "decline:userid", "role": "role:groupid:userid:owner|admin|member",
    "announce": "announce:groupid:text", "invite": "invite:groupid", "join": "join:code",
    "friendrequests": "friendrequests:open|approve", "deleteaccount": "deleteaccount"}
HELP: dict[str, str] = {
    "passwd": "change your password (signs out your other devices)",
    "profile": "show your profile, or someone's",
    "setname": "change your display name",
    "find": "find people by their exact name",
    "requests": "friend requests waiting for your answer",
    "accept": "accept a friend request", "decline": "decline a friend request",
    "role": "make a member owner, admin or member of your group",
    "announce": "set your group's announcement",
    "invite": "make an invite code for your group", "join": "join a group with an invite code",
    "friendrequests": "open: anyone may add you; approve: they send you a request",
    "deleteaccount": "delete your account (asks for your password)"}


def _text(what: str) -> Callable[[str], str]:
    def parse(rest: str) -> str:
        if not rest.strip():
            raise CommandError(f"{what} must not be empty")
        return rest.strip()
    return parse


def _no_argument(command: AccountCommand) -> Callable[[str], AccountCommand]:
    def parse(rest: str) -> AccountCommand:
        if rest.strip():
            raise CommandError(f"{command} takes no argument")
        return command
    return parse


def _role(rest: str) -> Role:
    group, _, rest = rest.partition(":")
    user, colon, role = rest.partition(":")
    if not colon or role.strip().lower() not in ROLES:
        raise CommandError("role must be owner, admin or member")
    return Role(parse_id(group, "groupid"), parse_id(user, "userid"), role.strip().lower())


def _friend_requests(rest: str) -> FriendRequests:
    mode = rest.strip().lower()
    if mode not in ("open", "approve"):
        raise CommandError("say open or approve")
    return FriendRequests(mode)


def _announce(rest: str) -> Announce:
    group, colon, text = rest.partition(":")
    if not colon:
        raise CommandError("missing text")
    return Announce(parse_id(group, "groupid"), text)


_PARSERS: dict[str, Callable[[str], AccountCommand]] = {
    "passwd": _no_argument(Passwd()),
    "profile": lambda rest: Profile(parse_id(rest, "userid") if rest.strip() else None),
    "setname": lambda rest: SetName(_text("name")(rest)),
    "find": lambda rest: Find(_text("name")(rest)),
    "requests": _no_argument(Requests()),
    "accept": lambda rest: Answer(parse_id(rest, "userid"), True),
    "decline": lambda rest: Answer(parse_id(rest, "userid"), False),
    "role": _role,
    "announce": _announce,
    "invite": lambda rest: Invite(parse_id(rest, "groupid")),
    "join": lambda rest: Join(_text("code")(rest)),
    "friendrequests": _friend_requests,
    "deleteaccount": _no_argument(DeleteAccount()),
}


def parse_command(line: str) -> AccountCommand | None:
    """One of these commands, or None when the line names another command."""
    name, _, rest = line.partition(":")
    name = name.strip().lower()
    parser = _PARSERS.get(name)
    if parser is None:
        return None
    try:
        return parser(rest)
    except CommandError as error:
        raise CommandError(f"{error}; usage: {USAGE[name]}") from None


def describe_event(frame: Frame) -> str | None:
    """A FRIEND_REQUEST or GROUP_CHANGED as one line; None for other frames."""
    msgid = frame.get("msgid")
    if msgid == MsgId.FRIEND_REQUEST:
        return (f"friend request: {display.user(frame)} asks to be your friend "
                f"(accept:{display.clean(frame.get('id'))} or "
                f"decline:{display.clean(frame.get('id'))})")
    if msgid != MsgId.GROUP_CHANGED:
        return None
    changes = [f"{key}={display.clean(value if isinstance(value, str) else json.dumps(value))}"
               for key, value in frame.items() if key not in ("msgid", "groupid", "by")]
    return (f"group [{display.clean(frame.get('groupid'))}] changed by "
            f"[{display.clean(frame.get('by'))}]: {' '.join(changes)}")


def help_lines() -> list[str]:
    width = max(map(len, USAGE.values()))
    return [f"{USAGE[name]:<{width}}  {text}" for name, text in HELP.items()]


def profile_lines(profile: Frame) -> list[str]:
    return [f"profile: {display.user(profile)} {display.clean(profile.get('state'))}",
            f"bio: {display.clean(profile.get('bio'))}"]


Ask = Callable[[str, Coroutine[Any, Any, Frame]], Awaitable[Frame | None]]
Read = Callable[..., Awaitable[str]]


class AccountCommands:
    """Runs the commands above on a session; `ask` sends a request and shows a refusal,
    `read` asks the user for a line (passwords hidden)."""

    def __init__(self, session: Session, show: Callable[[list[str]], None], ask: Ask,
                 read: Read) -> None:
        self.session, self.show, self.ask, self.read = session, show, ask, read

    def _request(self, frame: Frame) -> Coroutine[Any, Any, Frame]:
        return self.session.request(frame)

    async def run(self, command: AccountCommand) -> None:
        ask, show, request = self.ask, self.show, self._request
        failed = f"{command} failed"
        match command:
            case Passwd() | DeleteAccount():
                await self._with_password(command)
            case Profile(user_id):
                who = self.session.me.get("id") if user_id is None else user_id
                if reply := await ask(failed, request({"msgid": MsgId.GET_PROFILE,
                                                       "userid": who})):
                    show(profile_lines(reply.get("profile") or {}))
            case SetName(name):
                if reply := await ask(failed, request({"msgid": MsgId.SET_PROFILE,
                                                       "name": name})):
                    self.session.me["name"] = (reply.get("profile") or {}).get("name", name)
                    show([f"name changed: {display.user(self.session.me)}"])
            case Find(name):
                if reply := await ask(failed, request({"msgid": MsgId.FIND_USER, "name": name})):
                    found = reply.get("users") or []
                    show([f"found: {display.user(u)}" for u in found] or ["found: nobody"])
            case Requests():
                pending = self.session.requests
                show([f"request: {display.user(r)}" for r in pending] or ["requests: none"])
            case FriendRequests(mode):
                if await ask(failed, request({"msgid": MsgId.SETTINGS,
                                              "friend_requests": mode})):
                    show([f"friend requests: {mode}"])
            case Answer(user_id, accept):
                if await ask(failed, request({"msgid": MsgId.ANSWER_REQUEST, "userid": user_id,
                                              "accept": accept})):
                    self.session.requests = [r for r in self.session.requests
                                             if r.get("id") != user_id]
                    show([f"{'accepted' if accept else 'declined'}: [{user_id}]"])
            case _:
                await self._group(command)

    async def _group(self, command: AccountCommand) -> None:
        ask, show, request, failed = self.ask, self.show, self._request, f"{command} failed"
        match command:
            case Role(group_id, user_id, role):
                if await ask(failed, request({"msgid": MsgId.SET_ROLE, "groupid": group_id,
                                              "userid": user_id, "role": role})):
                    show([f"role set: [{group_id}] [{user_id}] {role}"])
            case Announce(group_id, text):
                if await ask(failed, request({"msgid": MsgId.UPDATE_GROUP, "groupid": group_id,
                                              "announcement": text})):
                    show([f"announcement set: [{group_id}]"])
            case Invite(group_id):
                if reply := await ask(failed, request({"msgid": MsgId.INVITE,
                                                       "groupid": group_id})):
                    show([f"invite: [{group_id}] code {display.clean(reply.get('code'))} "
                          f"(join:{display.clean(reply.get('code'))})"])
            case Join(code):
                if reply := await ask(failed, request({"msgid": MsgId.JOIN_BY_INVITE,
                                                       "code": code})):
                    group = reply.get("group") or {}
                    show([f"group joined: {display.group_title(group)}",
                          *display.members(group)])

    async def _with_password(self, command: Passwd | DeleteAccount) -> None:
        password = await self.read("password:", password=True)
        if isinstance(command, DeleteAccount):
            frame: Frame = {"msgid": MsgId.DELETE_ACCOUNT, "password": password}
        else:
            new = await self.read("new password:", password=True)
            frame = {"msgid": MsgId.SET_PASSWORD, "old": password, "new": new}
        reply = await self.ask(f"{command} failed", self._request(frame))
        if reply is None:
            return
        if isinstance(command, DeleteAccount):
            self.show([display.info("account deleted")])
        else:
            self.session.password_changed(frame["new"], reply.get("token") or "")
            self.show([display.info("password changed; your other devices are signed out")])

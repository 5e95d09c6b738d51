"""What the user types, parsed: the start menu and the original client's `name:args` commands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_HISTORY = 20
MAX_HISTORY = 1000
"""Most messages one history command shows (the client asks for them page by page)."""
MAX_MUTE_MINUTES = 10 * 365 * 24 * 60


class CommandError(ValueError):
    """The line is not a valid command; the message says what to type instead."""


@dataclass(frozen=True)
class Help:
    def __str__(self) -> str:
        return "help"


@dataclass(frozen=True)
class Chat:
    to: int
    msg: str

    def __str__(self) -> str:
        return f"chat:{self.to}:{self.msg}"


@dataclass(frozen=True)
class AddFriend:
    friend_id: int

    def __str__(self) -> str:
        return f"addfriend:{self.friend_id}"


@dataclass(frozen=True)
class CreateGroup:
    name: str
    desc: str

    def __str__(self) -> str:
        return f"creategroup:{self.name}:{self.desc}"


@dataclass(frozen=True)
class AddGroup:
    group_id: int

    def __str__(self) -> str:
        return f"addgroup:{self.group_id}"


@dataclass(frozen=True)
class GroupChat:
    group_id: int
    msg: str

    def __str__(self) -> str:
        return f"groupchat:{self.group_id}:{self.msg}"


@dataclass(frozen=True)
class Loginout:
    def __str__(self) -> str:
        return "loginout"


@dataclass(frozen=True)
class Friends:
    def __str__(self) -> str:
        return "friends"


@dataclass(frozen=True)
class Groups:
    def __str__(self) -> str:
        return "groups"


@dataclass(frozen=True)
class History:
    """The last `count` messages with a user (`history:`) or in a group (`ghistory:`)."""

    target: int
    count: int = DEFAULT_HISTORY
    group: bool = False

    def __str__(self) -> str:
        return f"{'ghistory' if self.group else 'history'}:{self.target}" + (
            f":{self.count}" if self.count != DEFAULT_HISTORY else "")


@dataclass(frozen=True)
class RemoveFriend:
    friend_id: int

    def __str__(self) -> str:
        return f"removefriend:{self.friend_id}"


@dataclass(frozen=True)
class LeaveGroup:
    group_id: int

    def __str__(self) -> str:
        return f"leavegroup:{self.group_id}"


@dataclass(frozen=True)
class Kick:
    group_id: int
    user_id: int

    def __str__(self) -> str:
        return f"kick:{self.group_id}:{self.user_id}"


@dataclass(frozen=True)
class Block:
    user_id: int
    block: bool = True

    def __str__(self) -> str:
        return f"{'block' if self.block else 'unblock'}:{self.user_id}"


@dataclass(frozen=True)
class Devices:
    def __str__(self) -> str:
        return "devices"


@dataclass(frozen=True)
class SendFile:
    """`sendfile:ID:PATH` to a user, `sendgroupfile:GROUPID:PATH` to a group."""

    target: int
    path: str
    group: bool = False

    def __str__(self) -> str:
        return f"{'sendgroupfile' if self.group else 'sendfile'}:{self.target}:{self.path}"


@dataclass(frozen=True)
class GetFile:
    """`getfile:MID[:PATH]`: save the attachment of a message shown."""

    mid: int
    path: str = ""

    def __str__(self) -> str:
        return f"getfile:{self.mid}" + (f":{self.path}" if self.path else "")


@dataclass(frozen=True)
class Mute:
    """`mute:userid[:minutes]` or `mutegroup:groupid[:minutes]`: no pushes for a while (no
    minutes: for ever; 0 minutes: unmute)."""

    target: int
    minutes: int | None = None
    group: bool = False

    def __str__(self) -> str:
        return f"{'mutegroup' if self.group else 'mute'}:{self.target}" + (
            f":{self.minutes}" if self.minutes is not None else "")


@dataclass(frozen=True)
class Quit:
    def __str__(self) -> str:
        return "quit"


@dataclass(frozen=True)
class Login:
    """Menu choice 1 with its answers, or `login:userid:password` in one line."""

    user_id: int
    password: str = field(repr=False)

    def __str__(self) -> str:
        return f"login:{self.user_id}"


@dataclass(frozen=True)
class Register:
    """Menu choice 2 with its answers, or `register:username:password` in one line."""

    name: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return f"register:{self.name}"


@dataclass(frozen=True)
class AskLogin:
    """Menu choice 1 alone: the user id and password are asked for next."""


@dataclass(frozen=True)
class AskRegister:
    """Menu choice 2 alone: the user name and password are asked for next."""


Command = (Help | Chat | AddFriend | CreateGroup | AddGroup | GroupChat | Loginout | Friends
           | Groups | History | RemoveFriend | LeaveGroup | Kick | Block | Devices | SendFile
           | GetFile | Mute | Quit)
MenuChoice = Login | Register | AskLogin | AskRegister | Quit

USAGE: dict[str, str] = {
    "help": "help",
    "chat": "chat:friendid:message",
    "addfriend": "addfriend:friendid",
    "creategroup": "creategroup:groupname:groupdesc",
    "addgroup": "addgroup:groupid",
    "groupchat": "groupchat:groupid:message",
    "loginout": "loginout",
    "friends": "friends",
    "groups": "groups",
    "history": "history:friendid[:count]",
    "ghistory": "ghistory:groupid[:count]",
    "removefriend": "removefriend:friendid",
    "leavegroup": "leavegroup:groupid",
    "kick": "kick:groupid:userid",
    "block": "block:userid",
    "unblock": "unblock:userid",
    "devices": "devices",
    "sendfile": "sendfile:friendid:path",
    "sendgroupfile": "sendgroupfile:groupid:path",
    "getfile": "getfile:mid[:path]",
    "mute": "mute:friendid[:minutes]",
    "mutegroup": "mutegroup:groupid[:minutes]",
    "quit": "quit",
}


MENU_HELP = ("invalid input! choose 1 (login), 2 (register) or 3 (quit), "
             "or type login:userid:password or register:username:password")


def parse_command(line: str) -> Command:
    """Parse a command typed after login; text after the last needed colon is kept verbatim."""
    name, colon, rest = line.partition(":")
    name = name.strip().lower()
    parser = _PARSERS.get(name)
    if parser is None:
        raise CommandError(f'unknown command "{name}"; type help for the list of commands')
    try:
        return parser(rest if colon else None)
    except CommandError as error:
        raise CommandError(f"{error}; usage: {USAGE[name]}") from None


def parse_menu(line: str) -> MenuChoice:
    """Parse a start-menu answer: 1, 2, 3, quit, or a one-line login or register."""
    choice = {"1": AskLogin(), "2": AskRegister(), "3": Quit(), "quit": Quit()}.get(
        line.strip().lower())
    if choice is not None:
        return choice
    name, colon, rest = line.partition(":")
    name = name.strip().lower()
    if colon and name == "login":
        user_id, _, password = rest.partition(":")
        return Login(parse_id(user_id, "userid"), parse_password(password))
    if colon and name == "register":
        user_name, _, password = rest.partition(":")
        return Register(parse_name(user_name), parse_password(password))
    raise CommandError(MENU_HELP)


def parse_id(text: str | None, what: str) -> int:
    """A user or group id: a positive decimal number."""
    text = (text or "").strip()
    if not text.isdecimal() or int(text) < 1:
        raise CommandError(f"{what} must be a positive number")
    return int(text)


def parse_name(text: str) -> str:
    """A user name as typed at the `username:` prompt; surrounding blanks are dropped."""
    name = text.strip()
    if not name:
        raise CommandError("username must not be empty")
    return name


def parse_password(text: str) -> str:
    """A password is taken exactly as typed, but may not be empty."""
    if not text:
        raise CommandError("password must not be empty")
    return text


def typing_target(line: str) -> int | None:
    """The friend a half-typed `chat:friendid:message` line is a message to, once the
    message has begun; None for anything else."""
    name, _, rest = line.partition(":")
    target, colon, msg = rest.partition(":")
    if name.strip().lower() != "chat" or not colon or not msg:
        return None
    try:
        return parse_id(target, "friendid")
    except CommandError:
        return None


def _no_argument(command: Command) -> Callable[[str | None], Command]:
    def parse(rest: str | None) -> Command:
        if rest is not None and rest.strip():
            raise CommandError(f"{command} takes no argument")
        return command
    return parse


def _id_and_message(rest: str | None, what: str) -> tuple[int, str]:
    target, colon, msg = (rest or "").partition(":")
    if not colon:
        raise CommandError("missing message")
    if not msg:
        raise CommandError("message must not be empty")
    return parse_id(target, what), msg


def _chat(rest: str | None) -> Chat:
    return Chat(*_id_and_message(rest, "friendid"))


def _group_chat(rest: str | None) -> GroupChat:
    return GroupChat(*_id_and_message(rest, "groupid"))


def _create_group(rest: str | None) -> CreateGroup:
    name, _, desc = (rest or "").partition(":")
    if not name.strip():
        raise CommandError("groupname must not be empty")
    return CreateGroup(name.strip(), desc)


def _history(group: bool) -> Callable[[str | None], History]:
    def parse(rest: str | None) -> History:
        target, colon, count = (rest or "").partition(":")
        target_id = parse_id(target, "groupid" if group else "friendid")
        if not colon:
            return History(target_id, group=group)
        if not count.strip().isdecimal() or not 1 <= int(count) <= MAX_HISTORY:
            raise CommandError(f"count must be a number from 1 to {MAX_HISTORY}")
        return History(target_id, int(count), group)
    return parse


def _send_file(group: bool) -> Callable[[str | None], SendFile]:
    def parse(rest: str | None) -> SendFile:
        target, colon, path = (rest or "").partition(":")
        if not path:
            raise CommandError("missing path")
        return SendFile(parse_id(target, "groupid" if group else "friendid"), path, group)
    return parse


def _get_file(rest: str | None) -> GetFile:
    mid, _, path = (rest or "").partition(":")
    return GetFile(parse_id(mid, "mid"), path)


def _mute(group: bool) -> Callable[[str | None], Mute]:
    def parse(rest: str | None) -> Mute:
        target, colon, minutes = (rest or "").partition(":")
        target_id = parse_id(target, "groupid" if group else "friendid")
        if not colon:
            return Mute(target_id, group=group)
        if not minutes.strip().isdecimal() or int(minutes) > MAX_MUTE_MINUTES:
            raise CommandError(f"minutes must be a number from 0 to {MAX_MUTE_MINUTES}")
        return Mute(target_id, int(minutes), group)
    return parse


def _kick(rest: str | None) -> Kick:
    group, colon, user = (rest or "").partition(":")
    if not colon:
        raise CommandError("missing userid")
    return Kick(parse_id(group, "groupid"), parse_id(user, "userid"))


_PARSERS: dict[str, Callable[[str | None], Command]] = {
    "help": _no_argument(Help()),
    "chat": _chat,
    "addfriend": lambda rest: AddFriend(parse_id(rest, "friendid")),
    "creategroup": _create_group,
    "addgroup": lambda rest: AddGroup(parse_id(rest, "groupid")),
    "groupchat": _group_chat,
    "loginout": _no_argument(Loginout()),
    "friends": _no_argument(Friends()),
    "groups": _no_argument(Groups()),
    "history": _history(group=False),
    "ghistory": _history(group=True),
    "removefriend": lambda rest: RemoveFriend(parse_id(rest, "friendid")),
    "leavegroup": lambda rest: LeaveGroup(parse_id(rest, "groupid")),
    "kick": _kick,
    "block": lambda rest: Block(parse_id(rest, "userid")),
    "unblock": lambda rest: Block(parse_id(rest, "userid"), block=False),
    "devices": _no_argument(Devices()),
    "sendfile": _send_file(group=False),
    "sendgroupfile": _send_file(group=True),
    "getfile": _get_file,
    "mute": _mute(group=False),
    "mutegroup": _mute(group=True),
    "quit": _no_argument(Quit()),
}

"""Validation of decoded client frames against the limits of docs/protocol.md."""

import unicodedata
from typing import Any

from chatd.messages import LOGIN, ONE_CHAT, RECV_ACK, ChatError, Errno, MsgId

MAX_INT = (1 << 63) - 1
MAX_ACK_MIDS = 1000
MAX_HISTORY_PAGE = 100
MAX_SYNC_PAGE = 500


class Field:
    """One field of a request: its name, its type (`kind`), whether it must be present, and
    bounds on its value (ints) or its length (text, lists). Plain data: `validate` checks them
    inline, because a method call per field was a tenth of a chat message's handling."""

    __slots__ = ("name", "low", "high", "required")
    kind: type = int
    plain = False  # a name shown to other users: see NameField

    def __init__(self, name: str, low: int, high: int, required: bool = True):
        self.name, self.low, self.high, self.required = name, low, high, required


class IntField(Field):
    __slots__ = ()


class StrField(Field):
    """Text; `low` and `high` bound its length in characters."""

    __slots__ = ()
    kind = str


class NameField(StrField):
    """A name shown to other users: no control characters, no blank around it (MySQL would
    compare "alice " equal to "alice", SQLite would not)."""

    __slots__ = ()
    plain = True


class IntListField(Field):
    """A list of ints; `low` and `high` bound its length."""

    __slots__ = ()
    kind = list


class BoolField(Field):
    __slots__ = ()
    kind = bool


def _check_unicode(field: str, value: str) -> None:
    """JSON may escape a lone surrogate (\\ud800); such text cannot be sent on as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError(Errno.BAD_UTF8, field) from None


def _check_plain(field: str, value: str) -> None:
    if value != value.strip() or any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ChatError(Errno.OUT_OF_RANGE, field)


def _check_text(field: str, value: str, plain: bool) -> None:
    """What text that is not plain ASCII, and names, must pass besides their length."""
    if not value.isascii():
        _check_unicode(field, value)
    if plain:
        _check_plain(field, value)


def _int(name: str, required: bool = True, low: int = 1, high: int = MAX_INT) -> Field:
    return IntField(name, low, high, required)


USER_ID = _int("id", required=False)
PASSWORD = StrField("password", 1, 128)
MSG = StrField("msg", 1, 32768)
TIME = StrField("time", 0, 64, required=False)
CID = StrField("cid", 1, 64, required=False)

SCHEMA: dict[int, tuple[Field, ...]] = {
    MsgId.LOGIN: (_int("id"), StrField("password", 1, 128, required=False),
                  StrField("token", 1, 200, required=False),
                  _int("proto", required=False, high=2),
                  NameField("device", 1, 64, required=False)),
    MsgId.LOGOUT: (USER_ID,),
    MsgId.REG: (NameField("name", 1, 50), PASSWORD),
    MsgId.ONE_CHAT: (USER_ID, _int("to"), MSG, TIME, CID),
    MsgId.ADD_FRIEND: (USER_ID, _int("friendid")),
    MsgId.CREATE_GROUP: (USER_ID, NameField("groupname", 1, 50),
                         StrField("groupdesc", 0, 200, required=False)),
    MsgId.ADD_GROUP: (USER_ID, _int("groupid")),
    MsgId.GROUP_CHAT: (USER_ID, _int("groupid"), MSG, TIME, CID),
    MsgId.RECV_ACK: (_int("mid", required=False),
                     IntListField("mids", 1, MAX_ACK_MIDS, required=False)),
    MsgId.HEARTBEAT: (),
    MsgId.FRIEND_LIST: (USER_ID,),
    MsgId.GROUP_LIST: (USER_ID,),
    MsgId.HISTORY: (USER_ID, _int("peer", required=False), _int("groupid", required=False),
                    _int("before", required=False),
                    _int("limit", required=False, high=MAX_HISTORY_PAGE)),
    MsgId.SYNC: (USER_ID, _int("after", low=0), _int("limit", required=False, high=MAX_SYNC_PAGE)),
    MsgId.READ: (USER_ID, _int("peer", required=False), _int("groupid", required=False),
                 _int("mid")),
    MsgId.TYPING: (USER_ID, _int("to")),
    MsgId.REMOVE_FRIEND: (USER_ID, _int("friendid")),
    MsgId.LEAVE_GROUP: (USER_ID, _int("groupid")),
    MsgId.KICK_MEMBER: (USER_ID, _int("groupid"), _int("userid")),
    MsgId.BLOCK: (USER_ID, _int("userid"), BoolField("block", 0, 0)),
    MsgId.DEVICES: (USER_ID,),
    MsgId.PUSH_SUBSCRIBE: (USER_ID, StrField("kind", 1, 16),
                           StrField("token", 1, 4096, required=False),
                           NameField("device", 1, 64, required=False)),
    MsgId.MUTE: (USER_ID, _int("peer", required=False), _int("groupid", required=False),
                 _int("until", low=-1)),
}

# Requests naming a conversation by exactly one of `peer` and `groupid`.
ONE_CONVERSATION = frozenset({MsgId.HISTORY, MsgId.READ, MsgId.MUTE})


# SCHEMA as plain tuples: validate runs for every frame, and attribute lookups add up.
_CHECKS = {msgid: tuple((f.name, f.kind, f.low, f.high, f.required, f.plain) for f in fields)
           for msgid, fields in SCHEMA.items()}


def _login(frame: dict[str, Any]) -> None:
    if frame.get("password") is None and frame.get("token") is None:
        raise ChatError(Errno.MISSING_FIELD, "password")


def _one_conversation(frame: dict[str, Any]) -> None:
    peer, group_id = frame.get("peer"), frame.get("groupid")
    if peer is not None and group_id is not None:
        raise ChatError(Errno.PEER_AND_GROUP)
    if peer is None and group_id is None:
        raise ChatError(Errno.MISSING_FIELD, "peer")


def _recv_ack(frame: dict[str, Any]) -> None:
    mids = frame.get("mids")
    if mids is None and frame.get("mid") is None:
        raise ChatError(Errno.MISSING_FIELD, "mid")
    if mids is not None and not all(1 <= m <= MAX_INT for m in mids):
        raise ChatError(Errno.OUT_OF_RANGE, "mids")


# Rules across fields, by msgid: a dictionary lookup instead of a comparison per rule.
_ACROSS = {LOGIN: _login, RECV_ACK: _recv_ack,
           **dict.fromkeys(ONE_CONVERSATION, _one_conversation)}


def validate(msgid: int, frame: dict[str, Any]) -> None:
    """Raise ChatError for the first field that breaks the contract; normalise `toid` to `to`."""
    if msgid == ONE_CHAT and "to" not in frame and "toid" in frame:
        frame["to"] = frame["toid"]
    for name, kind, low, high, required, plain in _CHECKS[msgid]:
        value = frame.get(name)
        if value is None:
            if required:
                raise ChatError(Errno.MISSING_FIELD, name)
            continue
        if type(value) is not kind:
            raise ChatError(Errno.WRONG_TYPE, name)
        if kind is int:
            if not low <= value <= high:
                raise ChatError(Errno.OUT_OF_RANGE, name)
            continue
        if kind is bool:
            continue
        if kind is list and not all(type(v) is int for v in value):
            raise ChatError(Errno.WRONG_TYPE, name)
        if not low <= len(value) <= high:
            raise ChatError(Errno.OUT_OF_RANGE, name)
        if kind is str and (plain or not value.isascii()):
            _check_text(name, value, plain)
    across = _ACROSS.get(msgid)
    if across is not None:
        across(frame)

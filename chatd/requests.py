"""Validation of decoded client frames against the limits of docs/protocol.md."""

import unicodedata
from typing import Any

from chatd.messages import GROUP_CHAT, LOGIN, ONE_CHAT, RECV_ACK, ChatError, Errno, MsgId

MAX_INT = (1 << 63) - 1
MAX_ACK_MIDS = 1000
MAX_HISTORY_PAGE = 100
MAX_SYNC_PAGE = 500
MAX_INVITE_TTL = 30 * 24 * 3600


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
    """A list of ids (ints from 1 to MAX_INT); `low` and `high` bound its length."""

    __slots__ = ()
    kind = list


class BoolField(Field):
    __slots__ = ()
    kind = bool


class DictField(Field):
    """A JSON object; `low` and `high` bound its number of keys (its part checks the rest)."""

    __slots__ = ()
    kind = dict


def _check_unicode(field: str, value: str) -> None:
    """JSON may escape a lone surrogate (\\ud800); such text cannot be sent on as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError(Errno.BAD_UTF8, field) from None


def _check_ids(field: str, values: list[Any]) -> None:
    """Raise the error of a list of ids that broke its contract: a wrong type comes before
    a value out of range, wherever the two are in the list."""
    if not all(type(v) is int for v in values):
        raise ChatError(Errno.WRONG_TYPE, field)
    raise ChatError(Errno.OUT_OF_RANGE, field)


def _check_plain(field: str, value: str) -> None:
    if value != value.strip() or any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ChatError(Errno.OUT_OF_RANGE, field)


def check_name(field: str, value: str, high: int) -> None:
    """The rules of a NameField, for a name that changed after validation (normalised)."""
    if not 1 <= len(value) <= high:
        raise ChatError(Errno.OUT_OF_RANGE, field)
    _check_plain(field, value)


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
MSG = StrField("msg", 0, 32768)  # "" only with an attachment (_chat)
ATTACHMENT = DictField("attachment", 1, 8, required=False)
TIME = StrField("time", 0, 64, required=False)
CID = StrField("cid", 1, 64, required=False)

SCHEMA: dict[int, tuple[Field, ...]] = {
    MsgId.LOGIN: (_int("id"), StrField("password", 1, 128, required=False),
                  StrField("token", 1, 200, required=False),
                  _int("proto", required=False, high=2),
                  NameField("device", 1, 64, required=False)),
    MsgId.LOGOUT: (USER_ID,),
    MsgId.REG: (NameField("name", 1, 50), PASSWORD),
    MsgId.ONE_CHAT: (USER_ID, _int("to"), MSG, TIME, CID, ATTACHMENT),
    MsgId.ADD_FRIEND: (USER_ID, _int("friendid")),
    MsgId.CREATE_GROUP: (USER_ID, NameField("groupname", 1, 50),
                         StrField("groupdesc", 0, 200, required=False)),
    MsgId.ADD_GROUP: (USER_ID, _int("groupid")),
    MsgId.GROUP_CHAT: (USER_ID, _int("groupid"), MSG, TIME, CID, ATTACHMENT),
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
    MsgId.SET_PASSWORD: (USER_ID, StrField("old", 1, 128), StrField("new", 1, 128)),
    MsgId.ANSWER_REQUEST: (USER_ID, _int("userid"), BoolField("accept", 0, 0)),
    MsgId.SETTINGS: (USER_ID, StrField("friend_requests", 1, 16, required=False),
                     BoolField("discoverable", 0, 0, required=False)),
    MsgId.SET_ROLE: (USER_ID, _int("groupid"), _int("userid"), StrField("role", 1, 16)),
    MsgId.UPDATE_GROUP: (USER_ID, _int("groupid"),
                         NameField("groupname", 1, 50, required=False),
                         StrField("groupdesc", 0, 200, required=False),
                         StrField("announcement", 0, 1000, required=False),
                         StrField("join", 1, 16, required=False)),
    MsgId.MUTE_MEMBER: (USER_ID, _int("groupid"), _int("userid"), _int("until", low=0)),
    MsgId.INVITE: (USER_ID, _int("groupid"), _int("ttl", required=False, low=60,
                                                  high=MAX_INVITE_TTL),
                   StrField("revoke", 1, 64, required=False)),
    MsgId.JOIN_BY_INVITE: (USER_ID, StrField("code", 1, 64)),
    MsgId.SET_PROFILE: (USER_ID, NameField("name", 1, 50, required=False),
                        StrField("bio", 0, 500, required=False)),
    MsgId.GET_PROFILE: (USER_ID, _int("userid")),
    MsgId.FIND_USER: (USER_ID, NameField("name", 1, 50)),
    MsgId.DELETE_ACCOUNT: (USER_ID, PASSWORD),
    MsgId.UPLOAD: (USER_ID, StrField("name", 1, 255), _int("size"), StrField("mime", 3, 127),
                   _int("to", required=False), _int("groupid", required=False)),
    MsgId.MEDIA_URL: (USER_ID, StrField("media", 1, 64)),
    MsgId.RECALL: (USER_ID, _int("mid")),
    MsgId.EDIT: (USER_ID, _int("mid"), MSG),
    MsgId.REACT: (USER_ID, _int("mid"), StrField("emoji", 1, 32), BoolField("on", 0, 0, False)),
    MsgId.HIDE: (USER_ID, _int("mid")),
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


def _chat(frame: dict[str, Any]) -> None:
    if not frame["msg"] and "attachment" not in frame:
        raise ChatError(Errno.OUT_OF_RANGE, "msg")


def _one_target(frame: dict[str, Any]) -> None:
    to, group_id = frame.get("to"), frame.get("groupid")
    if to is not None and group_id is not None:
        raise ChatError(Errno.OUT_OF_RANGE, "groupid")
    if to is None and group_id is None:
        raise ChatError(Errno.MISSING_FIELD, "to")


def _recv_ack(frame: dict[str, Any]) -> None:
    if frame.get("mids") is None and frame.get("mid") is None:
        raise ChatError(Errno.MISSING_FIELD, "mid")


# Rules across fields, by msgid: a dictionary lookup instead of a comparison per rule.
_ACROSS = {LOGIN: _login, RECV_ACK: _recv_ack, ONE_CHAT: _chat, GROUP_CHAT: _chat,
           MsgId.UPLOAD: _one_target,
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
        if kind is list:  # one pass over the ids, as a RECV_ACK carries them
            for v in value:
                if type(v) is not int or not 0 < v <= MAX_INT:
                    _check_ids(name, value)
        if not low <= len(value) <= high:
            raise ChatError(Errno.OUT_OF_RANGE, name)
        if kind is str and (plain or not value.isascii()):
            _check_text(name, value, plain)
    across = _ACROSS.get(msgid)
    if across is not None:
        across(frame)

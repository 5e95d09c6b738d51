"""Message ids and error codes of the wire protocol (docs/protocol.md is the contract)."""

from enum import IntEnum
from typing import Any


class MsgId(IntEnum):
    """msgid numbers: 1-10 as in the original C++ server, the rest added by chatd."""

    LOGIN = 1
    LOGIN_ACK = 2
    LOGOUT = 3
    REG = 4
    REG_ACK = 5
    ONE_CHAT = 6
    ADD_FRIEND = 7
    CREATE_GROUP = 8
    ADD_GROUP = 9
    GROUP_CHAT = 10
    ERROR = 11
    ADD_FRIEND_ACK = 12
    CREATE_GROUP_ACK = 13
    ADD_GROUP_ACK = 14
    LOGOUT_ACK = 15
    SEND_ACK = 16
    RECV_ACK = 17
    HEARTBEAT = 18
    FRIEND_LIST = 19
    FRIEND_LIST_ACK = 20
    GROUP_LIST = 21
    GROUP_LIST_ACK = 22
    HISTORY = 23
    HISTORY_ACK = 24
    SYNC = 25
    SYNC_ACK = 26
    READ = 27
    TYPING = 28
    REMOVE_FRIEND = 29
    REMOVE_FRIEND_ACK = 30
    LEAVE_GROUP = 31
    LEAVE_GROUP_ACK = 32
    KICK_MEMBER = 33
    KICK_MEMBER_ACK = 34
    BLOCK = 35
    BLOCK_ACK = 36
    NOTICE = 37
    DEVICES = 38
    DEVICES_ACK = 39
    SET_PASSWORD = 60
    SET_PASSWORD_ACK = 61
    SET_PROFILE = 62
    SET_PROFILE_ACK = 63
    GET_PROFILE = 64
    GET_PROFILE_ACK = 65
    FIND_USER = 66
    FIND_USER_ACK = 67
    FRIEND_REQUEST = 68
    ANSWER_REQUEST = 69
    ANSWER_REQUEST_ACK = 70
    SET_ROLE = 71
    SET_ROLE_ACK = 72
    UPDATE_GROUP = 73
    UPDATE_GROUP_ACK = 74
    GROUP_CHANGED = 75
    MUTE_MEMBER = 76
    MUTE_MEMBER_ACK = 77
    INVITE = 78
    INVITE_ACK = 79
    JOIN_BY_INVITE = 80
    JOIN_BY_INVITE_ACK = 81
    DELETE_ACCOUNT = 82
    DELETE_ACCOUNT_ACK = 83
    SETTINGS = 84
    SETTINGS_ACK = 85
    UPLOAD = 40
    UPLOAD_ACK = 41
    MEDIA_URL = 42
    MEDIA_URL_ACK = 43
    RECALL = 50
    RECALL_ACK = 51
    RECALLED = 52
    EDIT = 53
    EDIT_ACK = 54
    EDITED = 55
    REACT = 56
    REACT_ACK = 57
    REACTION = 58
    HIDE = 59
    PUSH_SUBSCRIBE = 44
    PUSH_SUBSCRIBE_ACK = 45
    MUTE = 46
    MUTE_ACK = 47


# The reply of each request that has one of its own; the request's refusals come in it too
# (with its errno), except frame-level errors, which are ERROR_MSG naming the request.
REPLY: dict[MsgId, MsgId] = {
    MsgId.LOGIN: MsgId.LOGIN_ACK, MsgId.LOGOUT: MsgId.LOGOUT_ACK, MsgId.REG: MsgId.REG_ACK,
    MsgId.ADD_FRIEND: MsgId.ADD_FRIEND_ACK, MsgId.CREATE_GROUP: MsgId.CREATE_GROUP_ACK,
    MsgId.ADD_GROUP: MsgId.ADD_GROUP_ACK, MsgId.FRIEND_LIST: MsgId.FRIEND_LIST_ACK,
    MsgId.GROUP_LIST: MsgId.GROUP_LIST_ACK, MsgId.HISTORY: MsgId.HISTORY_ACK,
    MsgId.SYNC: MsgId.SYNC_ACK, MsgId.REMOVE_FRIEND: MsgId.REMOVE_FRIEND_ACK,
    MsgId.LEAVE_GROUP: MsgId.LEAVE_GROUP_ACK, MsgId.KICK_MEMBER: MsgId.KICK_MEMBER_ACK,
    MsgId.BLOCK: MsgId.BLOCK_ACK, MsgId.DEVICES: MsgId.DEVICES_ACK,
    MsgId.SET_PASSWORD: MsgId.SET_PASSWORD_ACK, MsgId.ANSWER_REQUEST: MsgId.ANSWER_REQUEST_ACK,
    MsgId.SETTINGS: MsgId.SETTINGS_ACK, MsgId.SET_ROLE: MsgId.SET_ROLE_ACK,
    MsgId.UPDATE_GROUP: MsgId.UPDATE_GROUP_ACK, MsgId.MUTE_MEMBER: MsgId.MUTE_MEMBER_ACK,
    MsgId.INVITE: MsgId.INVITE_ACK, MsgId.JOIN_BY_INVITE: MsgId.JOIN_BY_INVITE_ACK,
    MsgId.SET_PROFILE: MsgId.SET_PROFILE_ACK, MsgId.GET_PROFILE: MsgId.GET_PROFILE_ACK,
    MsgId.FIND_USER: MsgId.FIND_USER_ACK, MsgId.DELETE_ACCOUNT: MsgId.DELETE_ACCOUNT_ACK,
    MsgId.UPLOAD: MsgId.UPLOAD_ACK, MsgId.MEDIA_URL: MsgId.MEDIA_URL_ACK,
    MsgId.RECALL: MsgId.RECALL_ACK, MsgId.EDIT: MsgId.EDIT_ACK, MsgId.REACT: MsgId.REACT_ACK,
    MsgId.HIDE: MsgId.HIDE,
    MsgId.PUSH_SUBSCRIBE: MsgId.PUSH_SUBSCRIBE_ACK, MsgId.MUTE: MsgId.MUTE_ACK}

# The msgids of the message path as plain ints: reading an IntEnum member off its class costs
# about 0.14 µs (the enum metaclass), as much as a dict lookup and a call, every message.
LOGIN, ONE_CHAT, GROUP_CHAT, SEND_ACK, RECV_ACK = (
    int(MsgId.LOGIN), int(MsgId.ONE_CHAT), int(MsgId.GROUP_CHAT), int(MsgId.SEND_ACK),
    int(MsgId.RECV_ACK))


class Errno(IntEnum):
    """Published error codes; a code never changes meaning once released."""

    OK = 0
    BAD_LOGIN = 1
    ALREADY_ONLINE = 2
    NAME_TAKEN = 3
    BAD_UTF8 = 100
    BAD_JSON = 101
    NOT_OBJECT = 102
    NO_MSGID = 103
    UNKNOWN_MSGID = 104
    MISSING_FIELD = 105
    WRONG_TYPE = 106
    OUT_OF_RANGE = 107
    FRAME_TOO_LARGE = 108
    RATE_LIMITED = 109
    NOT_LOGGED_IN = 110
    ID_MISMATCH = 111
    ALREADY_LOGGED_IN = 112
    NO_SUCH_USER = 120
    SELF_FRIEND = 121
    NO_SUCH_GROUP = 122
    GROUP_NAME_TAKEN = 123
    NOT_A_MEMBER = 124
    UNAVAILABLE = 130
    INTERNAL = 131
    HASH_PENDING = 140
    BUSY = 141
    THROTTLED = 142
    TOO_MANY_CONNECTIONS = 143
    REGISTRATION_RATE = 144
    OFFLINE_QUOTA = 145
    GROUP_FULL = 146
    TOO_MANY_GROUPS = 147
    TOO_MANY_FRIENDS = 148
    NODE_FULL = 149
    BANNED = 150
    KICKED = 151
    OPERATOR_NOTICE = 152
    NOT_A_FRIEND = 160
    BLOCKED = 161
    NOT_CREATOR = 162
    TARGET_NOT_MEMBER = 163
    KICK_SELF = 164
    BLOCK_SELF = 165
    TOO_MANY_DEVICES = 166
    PEER_AND_GROUP = 167
    BINARY_MESSAGE = 180
    WRONG_PASSWORD = 220
    PASSWORD_CHANGED = 221
    REQUEST_SENT = 222
    TOO_MANY_REQUESTS = 223
    NO_SUCH_REQUEST = 224
    BAD_SETTING = 225
    NOT_OWNER = 226
    NOT_ADMIN = 227
    OUTRANKED = 228
    OWN_ROLE = 229
    MUTED = 230
    INVITE_ONLY = 231
    BAD_INVITE = 232
    NAME_LOOKALIKE = 233
    BAD_AVATAR = 234
    FIND_RATE = 235
    ACCOUNT_DELETED = 236
    UPLOAD_TOO_LARGE = 190
    MEDIA_QUOTA = 191
    MEDIA_NAME = 192
    NO_WEB = 193
    NO_SUCH_MEDIA = 194
    MEDIA_INCOMPLETE = 195
    BAD_SLOT = 196
    MEDIA_MISMATCH = 197
    BAD_IMAGE = 198
    TOO_MANY_UPLOADS = 199
    NO_SUCH_MESSAGE = 210
    NOT_YOUR_MESSAGE = 211
    RECALL_TOO_LATE = 212
    EDIT_TOO_LATE = 213
    RECALLED = 214
    NOT_AN_EMOJI = 215
    TOO_MANY_REACTIONS = 216
    HIDDEN = 217
    OTHER_CONVERSATION = 218
    ACTION_OFF = 219
    PUSH_ENDPOINT = 200
    PUSH_KEYS = 201
    PUSH_KIND = 202
    MENTION_NOT_MEMBER = 203
    MENTION_ALL = 204
    PUSH_SUBSCRIPTIONS = 205


ERRMSG: dict[Errno, str] = {
    Errno.BAD_LOGIN: "id or password is invalid",
    Errno.ALREADY_ONLINE: "this account is using, input another!",
    Errno.NAME_TAKEN: "name is already taken",
    Errno.BAD_UTF8: "frame is not valid UTF-8",
    Errno.BAD_JSON: "frame is not valid JSON",
    Errno.NOT_OBJECT: "frame is not a JSON object",
    Errno.NO_MSGID: "missing msgid",
    Errno.UNKNOWN_MSGID: "unknown msgid",
    Errno.MISSING_FIELD: "missing field",
    Errno.WRONG_TYPE: "field has the wrong type",
    Errno.OUT_OF_RANGE: "field is out of range",
    Errno.FRAME_TOO_LARGE: "frame too large",
    Errno.RATE_LIMITED: "too many requests",
    Errno.NOT_LOGGED_IN: "not logged in",
    Errno.ID_MISMATCH: "id does not match the logged-in user",
    Errno.ALREADY_LOGGED_IN: "already logged in",
    Errno.NO_SUCH_USER: "no such user",
    Errno.SELF_FRIEND: "cannot add yourself",
    Errno.NO_SUCH_GROUP: "no such group",
    Errno.GROUP_NAME_TAKEN: "group name is already taken",
    Errno.NOT_A_MEMBER: "not a member of this group",
    Errno.UNAVAILABLE: "service temporarily unavailable, try again",
    Errno.INTERNAL: "internal error",
    Errno.HASH_PENDING: "a login or registration is already in progress on this connection",
    Errno.BUSY: "server busy, retry",
    Errno.THROTTLED: "too many failed logins, retry later",
    Errno.TOO_MANY_CONNECTIONS: "too many connections from this address",
    Errno.REGISTRATION_RATE: "too many registrations from this address, retry later",
    Errno.OFFLINE_QUOTA: "the recipient's offline mailbox is full",
    Errno.GROUP_FULL: "the group is full",
    Errno.TOO_MANY_GROUPS: "too many groups created",
    Errno.TOO_MANY_FRIENDS: "too many friends",
    Errno.NODE_FULL: "the node is full, retry later or on another node",
    Errno.BANNED: "this account is banned",
    Errno.KICKED: "disconnected by the operator",
    Errno.OPERATOR_NOTICE: "notice from the operator",
    Errno.NOT_A_FRIEND: "not a friend",
    Errno.BLOCKED: "this user has blocked you",
    Errno.NOT_CREATOR: "only the group's creator may do this",
    Errno.TARGET_NOT_MEMBER: "that user is not a member of this group",
    Errno.KICK_SELF: "cannot kick yourself, leave the group instead",
    Errno.BLOCK_SELF: "cannot block yourself",
    Errno.TOO_MANY_DEVICES: "too many devices online",
    Errno.PEER_AND_GROUP: "give peer or groupid, not both",
    Errno.BINARY_MESSAGE: "binary message: send each frame as one text message",
    Errno.WRONG_PASSWORD: "the password is wrong",
    Errno.PASSWORD_CHANGED: "the password was changed",
    Errno.REQUEST_SENT: "friend request sent: the user must accept it",
    Errno.TOO_MANY_REQUESTS: "too many pending friend requests",
    Errno.NO_SUCH_REQUEST: "no such friend request",
    Errno.BAD_SETTING: "setting has an unknown value",
    Errno.NOT_OWNER: "only the group's owner may do this",
    Errno.NOT_ADMIN: "only the group's owner or an admin may do this",
    Errno.OUTRANKED: "an admin cannot act on the owner or another admin",
    Errno.OWN_ROLE: "the owner changes role only by making another member owner",
    Errno.MUTED: "you are muted in this group",
    Errno.INVITE_ONLY: "this group is joined by invite only",
    Errno.BAD_INVITE: "the invite is unknown, expired or revoked",
    Errno.NAME_LOOKALIKE: "name is too much like an existing one",
    Errno.BAD_AVATAR: "the avatar must be an image you uploaded",
    Errno.FIND_RATE: "too many searches, retry later",
    Errno.ACCOUNT_DELETED: "the account was deleted",
    Errno.UPLOAD_TOO_LARGE: "the file is larger than the upload limit",
    Errno.MEDIA_QUOTA: "media quota exceeded",
    Errno.MEDIA_NAME: "file name or type not allowed",
    Errno.NO_WEB: "uploads need the node's web listener",
    Errno.NO_SUCH_MEDIA: "no such attachment",
    Errno.MEDIA_INCOMPLETE: "the upload is not complete",
    Errno.BAD_SLOT: "upload slot is not valid",
    Errno.MEDIA_MISMATCH: "the file does not match its upload slot",
    Errno.BAD_IMAGE: "the image is corrupt or too large",
    Errno.TOO_MANY_UPLOADS: "too many uploads at once",
    Errno.NO_SUCH_MESSAGE: "no such message",
    Errno.NOT_YOUR_MESSAGE: "not your message",
    Errno.RECALL_TOO_LATE: "too late to recall this message",
    Errno.EDIT_TOO_LATE: "too late to edit this message",
    Errno.RECALLED: "the message was recalled",
    Errno.NOT_AN_EMOJI: "not one emoji",
    Errno.TOO_MANY_REACTIONS: "too many different reactions on this message",
    Errno.HIDDEN: "you deleted this message",
    Errno.OTHER_CONVERSATION: "reply_to names a message of another conversation",
    Errno.ACTION_OFF: "this action is turned off on this server",
    Errno.PUSH_ENDPOINT: "push endpoint refused",
    Errno.PUSH_KEYS: "push subscription keys are invalid",
    Errno.PUSH_KIND: "this kind of push is not configured on this server",
    Errno.MENTION_NOT_MEMBER: "mentioned user is not a member of this group",
    Errno.MENTION_ALL: "only the group's owner may mention all",
    Errno.PUSH_SUBSCRIPTIONS: "too many push subscriptions",
}


class ServiceUnavailable(Exception):
    """A collaborator (database, Redis) cannot be reached; the request may be retried."""


class ChatError(Exception):
    """A request refused with a published errno; `detail` names the field when there is one."""

    def __init__(self, errno: Errno, detail: str = "", **fields: Any) -> None:
        super().__init__(errno, detail)
        self.errno = errno
        self.detail = detail
        self.fields = fields  # extra reply fields, e.g. `retry_after`

    @property
    def errmsg(self) -> str:
        text = ERRMSG[self.errno]
        return f"{text}: {self.detail}" if self.detail else text


def error_frame(err: ChatError, ref: int | None = None, cid: Any = None) -> dict[str, Any]:
    """ERROR_MSG for a refused frame; `ref` and `cid` say which request it answers."""
    frame: dict[str, Any] = {"msgid": MsgId.ERROR, "errno": int(err.errno), "errmsg": err.errmsg,
                             **err.fields}
    if ref is not None:
        frame["ref"] = ref
    if cid is not None:
        frame["cid"] = cid
    return frame

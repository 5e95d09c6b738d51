"""The proto-2 session that outlives connections: login state, requests, reliable chat.

Every chat carries a `cid` and stays in the outbox until SEND_ACK; after a reconnect the session
logs in again by itself (with the resume token of its last login, or the password when the
token is refused) and re-sends the outbox. Every chat received is acknowledged with RECV_ACK
(those read within 50 ms in one frame, client/acks.py) and shown once, however often the server
delivers it (dedupe by `mid` and by sender + `cid`). Each login names this client's device and
catches up with SYNC from the last mid the device has seen (client/conversations.py keeps it).
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from chatd.messages import REPLY, Errno, MsgId
from client import actions, display, notify
from client.accounts import describe_event
from client.acks import Acks, ack_frames
from client.conversations import Conversations
from client.files import Files
from client.history import HistoryFailed, fetch_history, sync_pages
from client.protocol import ChatConnection, Frame
from client.state import LastMids

CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 15.0
REMEMBERED_MESSAGES = 10_000
REMEMBERED_NAMES = 10_000

Show = Callable[[list[str]], None]


@dataclass
class _Credentials:
    """What logs the user in again after a reconnect: the resume token of the last login
    (docs/protocol.md) while it works, the password when it does not."""

    user_id: int
    password: str
    device: str
    token: str = ""

    def login_frame(self) -> Frame:
        secret = {"token": self.token} if self.token else {"password": self.password}
        return {"msgid": MsgId.LOGIN, "id": self.user_id, **secret, "proto": 2,
                "device": self.device}


class RequestFailed(Exception):
    """A request got no answer: not connected, connection lost, or no reply in time."""


@dataclass
class Outgoing:
    """A chat the server has not yet taken responsibility for (no SEND_ACK)."""

    frame: Frame
    text: str


class _Recent:
    """The last N keys seen, to drop messages the server delivers again."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def add(self, keys: Iterable[Hashable]) -> bool:
        """Remember the keys; True when none of them was seen before."""
        keys = list(keys)
        new = not any(key in self._keys for key in keys)
        for key in keys:
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return new


class _Waiters:
    """Deferreds waiting for a condition, each fired with True, or False after its timeout."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: list[Deferred[bool]] = []

    def wait(self, timeout: float) -> Deferred[bool]:
        waiter: Deferred[bool] = Deferred(self._waiting.remove)
        self._waiting.append(waiter)
        waiter.addTimeout(timeout, self._clock, onTimeoutCancel=lambda *_: False)
        return waiter

    def fire(self) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(True)


@dataclass
class _Request:
    frame: Frame
    reply: Deferred[Frame]

    def answered_by(self, frame: Frame) -> bool:
        msgid = self.frame["msgid"]
        return frame.get("msgid") == REPLY[msgid] or (
            frame.get("msgid") == MsgId.ERROR and frame.get("ref") == msgid)


class Session:
    """The user's session with chatd across any number of connections."""

    def __init__(self, show: Show, clock: IReactorTime, device: str = "default",
                 state: LastMids | None = None,
                 typing_shown: Callable[[Frame], None] | None = None) -> None:
        self._show = show
        self._clock = clock
        self.device = device
        self._connection: ChatConnection | None = None
        self._online = False
        self._credentials: _Credentials | None = None
        self._request: _Request | None = None
        self._one_at_a_time = DeferredLock()
        self._missed_after = 0
        """The last mid this device had seen when it logged in: SYNC starts after it."""
        self._names: OrderedDict[int, str] = OrderedDict()
        self.conversations = Conversations(
            show, clock, self._send, state or LastMids(None), self.person,
            typing_shown or (lambda person: show([display.typing(person)])))
        self._outbox: dict[str, Outgoing] = {}
        self._seen = _Recent(REMEMBERED_MESSAGES)
        self._acks = Acks(clock, self._send_now)
        self._cids = (f"{secrets.token_hex(6)}.{n}" for n in itertools.count(1))
        self.places = actions.Places(lambda: (self.me or {}).get("id"))
        self._until_online = _Waiters(clock)
        self._until_sent = _Waiters(clock)
        self.closing = False
        self.me: Frame | None = None
        self.friends: list[Frame] = []
        self.groups: list[Frame] = []
        self.requests: list[Frame] = []  # friend requests waiting for the user's answer
        self.files = Files(self.request, self.send_attachment, show)

    @property
    def logged_in(self) -> bool:
        return self._credentials is not None

    # Requests with a reply of their own.

    async def register(self, name: str, password: str) -> Frame:
        return await self.request({"msgid": MsgId.REG, "name": name, "password": password})

    async def login(self, user_id: int, password: str) -> Frame:
        """Log in; on success the summary, the unread counts, the offline messages and what
        this device missed (SYNC) are shown before this returns."""
        reply = await self.request({"msgid": MsgId.LOGIN, "id": user_id, "password": password,
                                    "proto": 2, "device": self.device})
        if not reply.get("errno"):
            await self._catch_up()
        return reply

    async def logout(self) -> Frame:
        reply = await self.request({"msgid": MsgId.LOGOUT})
        if not reply.get("errno"):
            self._forget_user()
        return reply

    async def add_friend(self, friend_id: int) -> Frame:
        reply = await self.request({"msgid": MsgId.ADD_FRIEND, "friendid": friend_id})
        if not reply.get("errno") and "friend" in reply:
            self.friends = _replace(self.friends, "id", reply["friend"])
        return reply

    async def create_group(self, name: str, desc: str) -> Frame:
        """The reply, on success with `group` filled in the way ADD_GROUP_MSG_ACK has it."""
        reply = await self.request(
            {"msgid": MsgId.CREATE_GROUP, "groupname": name, "groupdesc": desc})
        if not reply.get("errno"):
            creator = {**(self.me or {}), "state": "online", "role": "owner"}
            reply["group"] = {"groupid": reply.get("groupid"), "groupname": name,
                              "groupdesc": desc, "users": [creator], "role": "owner"}
            self.groups = _replace(self.groups, "groupid", reply["group"])
        return reply

    async def add_group(self, group_id: int) -> Frame:
        reply = await self.request({"msgid": MsgId.ADD_GROUP, "groupid": group_id})
        if not reply.get("errno") and "group" in reply:
            self.groups = _replace(self.groups, "groupid", reply["group"])
        return reply

    async def remove_friend(self, friend_id: int) -> Frame:
        reply = await self.request({"msgid": MsgId.REMOVE_FRIEND, "friendid": friend_id})
        if not reply.get("errno"):
            self._remember([self.person(friend_id)])
            self.friends = [f for f in self.friends if f.get("id") != friend_id]
        return reply

    async def leave_group(self, group_id: int) -> Frame:
        reply = await self.request({"msgid": MsgId.LEAVE_GROUP, "groupid": group_id})
        if not reply.get("errno"):
            self.groups = [g for g in self.groups if g.get("groupid") != group_id]
        return reply

    async def kick(self, group_id: int, user_id: int) -> Frame:
        return await self.request({"msgid": MsgId.KICK_MEMBER, "groupid": group_id,
                                   "userid": user_id})

    async def block(self, user_id: int, block: bool) -> Frame:
        return await self.request({"msgid": MsgId.BLOCK, "userid": user_id, "block": block})

    async def devices(self) -> Frame:
        return await self.request({"msgid": MsgId.DEVICES})

    async def history(self, target: Frame, count: int) -> tuple[list[Frame], bool]:
        """The last `count` messages of a conversation, oldest first, and whether there are
        older ones; what is shown is marked read. Raises HistoryFailed when refused."""
        messages, more = await fetch_history(self.request, target, count)
        self._remember(messages)
        for frame in messages:
            self.conversations.shown(frame)
        return messages, more

    async def friend_list(self) -> Frame:
        """The server's current friend list: others' presence and friendships change after
        login without the session hearing of it."""
        reply = await self.request({"msgid": MsgId.FRIEND_LIST})
        if not reply.get("errno"):
            self.friends = list(reply.get("friends") or [])
        return reply

    async def group_list(self) -> Frame:
        """The server's current groups: others join and log out without the session hearing
        of it."""
        reply = await self.request({"msgid": MsgId.GROUP_LIST})
        if not reply.get("errno"):
            self.groups = list(reply.get("groups") or [])
        return reply

    async def request(self, frame: Frame, wait: bool = True) -> Frame:
        """Send a request and return its reply or its ERROR_MSG; both carry `errno`."""
        if wait and not self._online and not await self._until_online.wait(CONNECT_TIMEOUT):
            raise RequestFailed("not connected to the server (still trying); try again")
        async with self._one_at_a_time:
            if self._connection is None:
                raise RequestFailed("not connected to the server")
            reply: Deferred[Frame] = Deferred(lambda _: setattr(self, "_request", None))
            reply.addTimeout(REPLY_TIMEOUT, self._clock, onTimeoutCancel=_no_reply)
            self._request = _Request(frame, reply)
            self._write(frame)
            return await reply

    # Chat: fire and forget for the caller; the outbox makes it reliable.

    def chat(self, to: int, msg: str, text: str) -> None:
        self._send_chat({"msgid": MsgId.ONE_CHAT, "to": to, "msg": msg}, text)

    def group_chat(self, group_id: int, msg: str, text: str) -> None:
        fields: Frame = {"msgid": MsgId.GROUP_CHAT, "groupid": group_id, "msg": msg}
        group = next((g for g in self.groups if g.get("groupid") == group_id), None)
        mentions = notify.mentions_in(msg, group, (self.me or {}).get("id"))
        if mentions is not None:
            fields["mentions"] = mentions
        self._send_chat(fields, text)

    def send_attachment(self, target: Frame, media_id: str, text: str) -> None:
        """A chat message to `target` ({"to": id} or {"groupid": id}) carrying an upload."""
        msgid = MsgId.ONE_CHAT if "to" in target else MsgId.GROUP_CHAT
        self._send_chat({"msgid": msgid, **target, "msg": "", "attachment": {"id": media_id}},
                        text)

    def reply(self, command: actions.Reply) -> None:
        """A chat message quoting `command.mid`, in that message's conversation; raises
        CommandError when the client has not seen that message."""
        self._send_chat(self.places.reply_frame(command), str(command))

    def _send_chat(self, fields: Frame, text: str) -> None:
        cid = next(self._cids)
        frame = {**fields, "time": self._now(), "cid": cid}
        self._outbox[cid] = Outgoing(frame, text)
        if self._online and self._connection is not None:
            self._write(frame)
        else:
            self._show([display.info(f"not connected; {text} will be sent after reconnecting")])

    @property
    def unconfirmed(self) -> list[Outgoing]:
        """Chats sent or queued that have no SEND_ACK yet, oldest first."""
        return list(self._outbox.values())

    async def drain(self, timeout: float) -> list[Outgoing]:
        """Wait until the server has taken every chat sent; return those it has not."""
        if self._outbox:
            await self._until_sent.wait(timeout)
        return self.unconfirmed

    # Events from the connection.

    def connection_made(self, connection: ChatConnection) -> None:
        self._connection = connection
        self._show([display.info("connected")])
        if self._credentials is None:
            self._go_online()
        else:
            Deferred.fromCoroutine(self._login_again(self._credentials))

    def connection_lost(self, connection: ChatConnection, reason: Failure) -> None:
        if connection is not self._connection:
            return
        self._connection = None
        self._online = False
        self._acks.drop()
        if self._request is not None:
            request, self._request = self._request, None
            request.reply.errback(RequestFailed("connection lost before the server answered"))
        if not self.closing:
            self._show([display.info(f"connection lost: {reason.getErrorMessage()}")])

    def frame_received(self, frame: object) -> None:
        if not isinstance(frame, dict):
            self._show([display.error("the server sent a frame that is not a JSON object")])
            return
        msgid = frame.get("msgid")
        if msgid in (MsgId.ONE_CHAT, MsgId.GROUP_CHAT) or (
                msgid in actions.RECEIVED and "errno" not in frame):
            self._chat_received(frame)
        elif msgid == MsgId.READ:
            self.conversations.read_received(frame)
        elif msgid == MsgId.TYPING:
            self.conversations.typing_received(frame)
        elif msgid == MsgId.NOTICE:
            self._notice(frame)
        elif msgid == MsgId.SEND_ACK:
            self._send_acked(frame)
        elif msgid == MsgId.ERROR and frame.get("cid") in self._outbox:
            out = self._outbox.pop(frame["cid"])
            self._show([display.reply_error(frame, f"{out.text} not sent")])
            self._check_sent()
        elif self._request is not None and self._request.answered_by(frame):
            self._answer(self._request, frame)
        elif msgid == MsgId.ERROR:
            self._show([display.reply_error(frame, "server")])
        elif (event := describe_event(frame)) is not None:
            if msgid == MsgId.FRIEND_REQUEST:
                self.requests.append(frame)
            self._show([event])

    def _answer(self, request: _Request, reply: Frame) -> None:
        self._request = None
        if request.frame["msgid"] == MsgId.LOGIN and reply.get("msgid") == MsgId.LOGIN_ACK \
                and not reply.get("errno"):
            self._logged_in(request.frame, reply)
        request.reply.callback(reply)

    def _logged_in(self, request: Frame, reply: Frame) -> None:
        """Runs before any frame that follows the reply, so the summary and the offline
        messages come before live ones."""
        again = self._credentials is not None
        password = request.get("password") or (self._credentials and self._credentials.password)
        self._credentials = _Credentials(request["id"], password or "", self.device,
                                         reply.get("token") or "")
        self.me = {"id": reply.get("id"), "name": reply.get("name")}
        self.friends = list(reply.get("friends") or [])
        self.groups = list(reply.get("groups") or [])
        self.requests = list(reply.get("requests") or [])
        self.conversations.begin(f"{request['id']} {self.device}", request["id"],
                                 "unread" in reply)
        self._missed_after = self.conversations.last_mid
        if again:
            self._show([display.info(f"logged in again as {display.user(self.me)}")])
        else:
            self._show(display.login_summary(self.me, self.friends, self.groups))
            self._show([display.unread(entry, self._named(entry))
                        for entry in reply.get("unread") or [] if isinstance(entry, dict)])
        mids = [self._kept(frame) for frame in reply.get("offlinemsg") or []]
        for ack in ack_frames([mid for mid in mids if mid is not None]):
            self._send_now(ack)
        self._go_online()

    async def _login_again(self, credentials: _Credentials) -> None:
        who = display.user(self.me or {"id": credentials.user_id})
        self._show([display.info(f"logging in again as {who}")])
        try:
            reply = await self.request(credentials.login_frame(), wait=False)
        except RequestFailed:
            return
        if not reply.get("errno"):
            await self._catch_up()
            return
        if reply.get("errno") == Errno.BAD_LOGIN and credentials.token:
            self._show([display.info("the resume token was refused; using the password")])
            credentials.token = ""
            await self._login_again(credentials)
            return
        self._show([display.reply_error(reply, "could not log in again")])
        if reply.get("errno") in (Errno.ALREADY_ONLINE, Errno.UNAVAILABLE) and self._connection:
            self._show([display.info("will try again after reconnecting")])
            self._connection.transport.loseConnection()
        else:
            self._forget_user()
            self._go_online()

    def _go_online(self) -> None:
        self._online = True
        if self._outbox and self._connection is not None:
            self._show([display.info(
                f"re-sending {len(self._outbox)} message(s) not yet confirmed by the server")])
            for out in self._outbox.values():
                self._write(out.frame)
        self._until_online.fire()

    def _forget_user(self) -> None:
        self._show([display.unconfirmed(out.text) for out in self._outbox.values()])
        self._outbox.clear()
        self._check_sent()
        self.conversations.end()
        self._credentials = self.me = None
        self.friends, self.groups = [], []

    async def _catch_up(self) -> None:
        """Show what this device missed while it was away: every message after the last
        mid it has seen (none on its first login: the unread counts tell)."""
        if not self._missed_after or not self.conversations.supported:
            return
        try:
            async for page in sync_pages(self.request, self._missed_after):
                for frame in page:
                    self._show_once(frame)
        except RequestFailed as failure:
            if not self.closing:
                self._show([display.info(f"catching up stopped: {failure}; it goes on after "
                                         "logging in again")])
        except HistoryFailed as failure:
            self._show([display.reply_error(failure.args[0], "catching up failed")])

    def _notice(self, frame: Frame) -> None:
        """A NOTICE: shown; a kick takes the group off the list, and a login elsewhere on
        this device logs the user out here (logging in again would take the device back)."""
        group_id = frame.get("groupid")
        self._show([display.notice(frame, self._named({"groupid": group_id}))])
        if frame.get("kind") == "kicked":
            self.groups = [g for g in self.groups if g.get("groupid") != group_id]
        elif frame.get("kind") == "logged_in_elsewhere" and self._credentials is not None:
            self._forget_user()

    def password_changed(self, password: str, token: str) -> None:
        """SET_PASSWORD succeeded: log in again (after a reconnect) with these."""
        if self._credentials is not None:
            self._credentials = _Credentials(self._credentials.user_id, password,
                                             self.device, token)

    def describe(self, frame: Frame) -> str:
        """A chat frame's line; the user's own one-to-one messages to others name the peer."""
        me = (self.me or {}).get("id")
        to_other = frame.get("msgid") == MsgId.ONE_CHAT and frame.get("to") != me
        to = self.person(frame.get("to")) if frame.get("id") == me and to_other else None
        return display.message(actions.readable(frame), self._now(), to)

    def person(self, user_id: object) -> Frame:
        """A user with the name this session knows (me, a friend, a group member)."""
        people = [self.me or {}, *self.friends,
                  *(member for group in self.groups for member in group.get("users") or [])]
        known = next((p for p in people if p.get("id") == user_id), None)
        if known is None and user_id in self._names:
            return {"id": user_id, "name": self._names[user_id]}
        return known or {"id": user_id}

    def _remember(self, people: Iterable[Frame]) -> None:
        """Names seen on chat frames and of friends removed, for `person`."""
        for person in people:
            if isinstance(person.get("id"), int) and isinstance(person.get("name"), str):
                self._names[person["id"]] = person["name"]
                self._names.move_to_end(person["id"])
        while len(self._names) > REMEMBERED_NAMES:
            self._names.popitem(last=False)

    def _named(self, entry: Frame) -> Frame:
        """The user (`peer`) or the group (`groupid`) an entry is about, named if known."""
        if "groupid" in entry:
            return next((g for g in self.groups if g.get("groupid") == entry["groupid"]),
                        {"groupid": entry["groupid"]})
        return self.person(entry.get("peer"))

    def user_typing(self, line: str) -> None:
        """The line being typed changed (interactive console)."""
        if self._credentials is not None:
            self.conversations.user_typing(line)

    def close(self) -> None:
        """The client is leaving: no more reconnect news; the last mid is written."""
        self.closing = True
        self._acks.flush()
        self.conversations.end()

    def _send(self, frame: Frame) -> None:
        """Send a frame that is worth nothing later (READ, TYPING) if connected now."""
        if self._online and self._connection is not None:
            self._write(frame)

    def _write(self, frame: Frame) -> None:
        """Send a frame on the current connection, after the acks waiting: the server has
        those first."""
        self._acks.flush()
        self._send_now(frame)

    def _send_now(self, frame: Frame) -> None:
        """Send a frame on the current connection as it comes: the acks, and `_write` after them."""
        if self._connection is not None:
            self._connection.send_frame(frame)

    def _chat_received(self, frame: Frame) -> None:
        mid = self._kept(frame)
        if mid is not None:
            self._acks.add(mid)

    def _kept(self, frame: Frame) -> int | None:
        """Show a chat message or a message action once; the id to acknowledge (a stored
        action's `ack`; a message the user hid is acknowledged unseen)."""
        if frame.get("msgid") in actions.RECEIVED:
            self._show([actions.received(frame, self.person)])
            return frame.get("ack")
        if frame.get("hidden"):
            return frame.get("mid")
        return self._show_once(frame)

    def _show_once(self, frame: Frame) -> int | None:
        """Show a chat unless it was shown before; return its mid, to acknowledge."""
        keys: list[Hashable] = []
        if frame.get("mid") is not None:
            keys.append(("mid", frame["mid"]))
        if frame.get("cid") is not None:
            keys.append(("cid", frame.get("id"), frame["cid"]))
        if self._seen.add(keys):
            self._remember([frame])
            self.files.seen(frame)
            self.places.seen(frame)
            self._show([notify.shown(self.describe(frame), frame, (self.me or {}).get("id"))])
            self.conversations.shown(frame)
        return frame.get("mid")

    def _send_acked(self, frame: Frame) -> None:
        out = self._outbox.pop(frame.get("cid"), None)
        if out is None:
            return
        if frame.get("errno"):
            self._show([display.reply_error(frame, f"{out.text} not sent")])
        else:
            self._show([f"sent: {display.clean(out.text)}"])
            if frame.get("mid") is not None:
                self._seen.add([("mid", frame["mid"])])
                self.places.seen({**out.frame, "mid": frame["mid"]})
            self.conversations.confirmed(out.frame, frame.get("mid"), out.text)
        self._check_sent()

    def _check_sent(self) -> None:
        if not self._outbox:
            self._until_sent.fire()

    def _now(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._clock.seconds()))


def _replace(items: list[Frame], key: str, item: Frame) -> list[Frame]:
    """The list with `item` in place of the entry with the same `key`, or added at the end."""
    return [other for other in items if other.get(key) != item.get(key)] + [item]


def _no_reply(result: Any, timeout: float) -> Frame:
    raise RequestFailed(f"the server did not answer within {timeout:.0f} s")

"""The business rules of chat: accounts, friends, groups, one-to-one and group messages.

Transport-agnostic: it sees a Session, never a socket. Handlers take the session and a
validated request; they either finish at once (returning None) or return a coroutine that
the protocol runs. A refusal is a ChatError; the protocol turns it into the right reply.
"""

import time
from collections.abc import Coroutine
from collections.abc import Set as AbstractSet
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from chatd.handlers.blocks import Blocks
from chatd.codec import decode, encode, encode_text
from chatd.delivery.history import HistoryWriter
from chatd.messages import (
    ERRMSG,
    GROUP_CHAT,
    ONE_CHAT,
    SEND_ACK,
    ChatError,
    Errno,
    MsgId,
    error_frame,
)
from chatd.metrics import Stats
from chatd.mids import MidGenerator
from chatd.handlers.passwords import PasswordHasher
from chatd.handlers.quotas import Quotas
from chatd.delivery.router import Inbox, Router
from chatd.delivery.session import Session
from chatd.store import GroupRecord, NameTaken, Store, Unread, UserRecord
from chatd.handlers.throttle import Throttle
from chatd.tokens import DEFAULT_LIFETIME, TokenSigner

log = Logger()

Handled = Coroutine[Any, Any, None] | None

DEFAULT_DEVICE = "default"
OFFLINE_IN_REPLY = 100
OFFLINE_PER_LOGIN = 10_000


def _state(online: bool) -> str:
    return "online" if online else "offline"


def group_view(group: GroupRecord, online: set[int]) -> dict[str, Any]:
    return {"groupid": group.id, "groupname": group.name, "groupdesc": group.desc,
            "users": [{"id": m.id, "name": m.name, "state": _state(m.id in online),
                       "role": m.role} for m in group.members]}


def friend_views(friends: list[tuple[int, str]], online: set[int], proto: int) -> list[Any]:
    """Friends with live state; JSON strings for the original dialect."""
    views = [{"id": fid, "name": name, "state": _state(fid in online)} for fid, name in friends]
    return views if proto == 2 else [encode_text(v) for v in views]


def group_views(groups: list[GroupRecord], online: set[int], proto: int) -> list[Any]:
    """Groups with members; the original dialect nests JSON strings and repeats the id as
    `id`, the key its client reads."""
    views = [group_view(g, online) for g in groups]
    if proto == 2:
        return views
    for view in views:
        view["id"] = view["groupid"]
        view["users"] = [encode_text(u) for u in view["users"]]
    return [encode_text(v) for v in views]


def unread_views(unread: list[Unread]) -> list[dict[str, int]]:
    return [{"groupid" if u.group_id else "peer": u.group_id or u.peer, "count": u.count,
             "last_mid": u.last_mid} for u in unread]


class ChatService:
    """One per node; holds no per-connection state except the caches of group members and
    of the blockers of the users logged in here."""

    def __init__(self, store: Store, router: Router, hasher: PasswordHasher,
                 mids: MidGenerator, clock: IReactorTime, throttle: Throttle, quotas: Quotas,
                 history: HistoryWriter,
                 token_lifetime: float = DEFAULT_LIFETIME, stats: Stats | None = None) -> None:
        self.store = store
        self.stats = stats or Stats()
        self.router = router
        self.hasher = hasher
        self.throttle = throttle
        self.quotas = quotas
        self.mids = mids
        self.history = history
        self.blocks = Blocks()
        self.clock = clock
        self._members: dict[int, set[int]] = {}
        self._membership_changes = 0
        self._token_lifetime = token_lifetime
        self._signer: TokenSigner | None = None
        router.on_group_changed = self._forget_group
        router.on_block_changed = self._block_changed
        router.on_offline_stored = self._offline_stored
        router.on_bus_back = self._reload_blocks
        router.on_taken_over = self._taken_over

    # accounts

    async def register(self, session: Session, req: dict[str, Any]) -> None:
        with self.hasher.slot(session):
            await self.throttle.check_registration(session.address)
            password_hash = await self.hasher.hash(session, req["password"])
            try:
                user_id = await self.store.create_user(req["name"], password_hash)
            except NameTaken:
                raise ChatError(Errno.NAME_TAKEN) from None
        self.stats.registrations += 1
        log.info("registered user {uid} {name!r}", uid=user_id, name=req["name"])
        session.send({"msgid": MsgId.REG_ACK, "errno": 0, "id": user_id})

    async def login(self, session: Session, req: dict[str, Any]) -> None:
        """One login at a time per connection (the hasher's slot), so that a flood of them
        costs neither queries nor hashes."""
        if session.user_id is not None:
            raise ChatError(Errno.ALREADY_LOGGED_IN)
        with self.hasher.slot(session):
            await self._login(session, req)

    async def _login(self, session: Session, req: dict[str, Any]) -> None:
        user_id = req["id"]
        await self.throttle.check_login(user_id, session.address)
        user = await self.store.user(user_id)
        if not await self._authenticated(session, req, user):
            log.info("login of user {uid} from {addr} refused: bad id, password or token",
                     uid=user_id, addr=session.address)
            await self.throttle.login_failed(user_id, session.address)
            raise ChatError(Errno.BAD_LOGIN)
        if user.banned:
            log.info("login of user {uid} refused: banned", uid=user_id)
            raise ChatError(Errno.BANNED)
        if not session.connected:
            return
        session.login(user_id, user.name, req.get("proto") or 1)
        session.device = req.get("device") or DEFAULT_DEVICE
        session.since = int(self.clock.seconds() * 1000)
        try:
            inbox = await self.router.attach(session, takeover="device" in req)
        except BaseException:
            session.logout()
            raise
        session.inbox = inbox
        if not session.connected:
            self.end(session)
            return
        try:
            await self._welcome(session, user_id)
        except BaseException:
            self.end(session)
            raise

    async def _authenticated(self, session: Session, req: dict[str, Any],
                             user: UserRecord | None) -> bool:
        """The password (always hashed, even for an unknown user) or a proto-2 resume token."""
        token = req.get("token")
        if token is None:
            return await self.hasher.check(session, req["password"],
                                           user.password if user else None)
        if user is None or req.get("proto") != 2:
            return False
        return (await self._tokens()).valid(token, user.id, user.tokens_revoked)

    async def _tokens(self) -> TokenSigner:
        """The cluster's token signer; its secret is read from the database on first use."""
        if self._signer is None:
            secret = await self.store.secret("token")
            self._signer = TokenSigner(secret, self._token_lifetime, self.clock.seconds)
        return self._signer

    async def _welcome(self, session: Session, user_id: int) -> None:
        """Send the login reply with friends, groups and offline messages, then open the inbox."""
        token = (await self._tokens()).issue(user_id) if session.proto == 2 else None
        unread = session.proto == 2 and self.history.enabled
        if unread:
            await self.history.flush()  # the unread counts include what this node accepted
        welcome = await self.store.welcome(user_id, OFFLINE_PER_LOGIN, unread)
        friends, groups, offline = welcome.friends, welcome.groups, welcome.offline
        self.blocks.load(user_id, welcome.blocked_by)
        ids = [f[0] for f in friends] + [m.id for g in groups for m in g.members]
        online = await self.online(session, list(set(ids)))
        if not session.connected:
            self.end(session)
            return
        inbox = session.inbox
        reply = self._login_reply(session, friends, groups, offline[:OFFLINE_IN_REPLY], online)
        if session.proto == 2:
            reply["token"] = token
            reply["unread"] = unread_views(welcome.unread)
            reply["device"] = session.device
        session.send(reply)
        self.stats.login(Errno.OK)
        for mid, frame in offline[OFFLINE_IN_REPLY:]:
            data = frame.encode() + b"\n"
            self.stats.bytes_out += len(data)
            inbox.push(mid, data, None)  # held: not counted as live traffic
        inbox.open()
        mids = [mid for mid, _ in offline]
        inbox.offline_mids = set(mids)
        if not inbox.needs_ack and mids:
            self._forget_offline(user_id, mids)
        log.info("user {uid} logged in (proto {proto}, {n} offline messages)",
                 uid=user_id, proto=session.proto, n=len(offline))
        if inbox.catch_up:
            self._offline_stored(user_id)

    def _offline_stored(self, user_id: int) -> None:
        """Frames were stored offline for a user logged in here: a login may have read the
        store before they were in it, so send each session the ones it has not had."""
        for inbox in self.router.user_inboxes(user_id):
            if not inbox.ready:
                inbox.catch_up = True
                continue
            inbox.catch_up = False
            d = Deferred.fromCoroutine(self._catch_up(inbox))
            d.addErrback(lambda f: log.warn(
                "user {uid}: offline catch-up failed ({error}); at the next login then",
                uid=user_id, error=f.value))

    async def _catch_up(self, inbox: Inbox) -> None:
        user_id = inbox.user_id
        rows = await self.store.offline(user_id, OFFLINE_PER_LOGIN)
        if inbox not in self.router.user_inboxes(user_id):
            return
        new = [(mid, text) for mid, text in rows
               if mid not in inbox.offline_mids and mid not in inbox.unacked]
        inbox.offline_mids = set(inbox.offline_mids).union(mid for mid, _ in new)
        for mid, text in new:
            inbox.push(mid, text.encode() + b"\n", None)
        if not inbox.needs_ack and new:
            self._forget_offline(user_id, [mid for mid, _ in new])

    def _login_reply(self, session: Session, friends: list[tuple[int, str]],
                     groups: list[GroupRecord], offline: list[tuple[int, str]],
                     online: set[int]) -> dict[str, Any]:
        """Proto 2 gets plain objects; the original dialect JSON strings and no empty keys."""
        reply: dict[str, Any] = {"msgid": MsgId.LOGIN_ACK, "errno": 0,
                                 "id": session.user_id, "name": session.name}
        proto = session.proto
        lists = (("offlinemsg", [decode(text) if proto == 2 else text for _, text in offline]),
                 ("friends", friend_views(friends, online, proto)),
                 ("groups", group_views(groups, online, proto)))
        for key, items in lists:
            if items or proto == 2:
                reply[key] = items
        return reply

    async def logout(self, session: Session, req: dict[str, Any]) -> None:
        """Revoke the user's resume tokens, then end the session; if the revocation cannot be
        stored the session goes on (errno 130) and the client may try again."""
        user_id = session.user_id
        await self.revoke_tokens(user_id)
        if session.user_id == user_id:
            self.end(session)
            log.info("user {uid} logged out", uid=user_id)
        session.send({"msgid": MsgId.LOGOUT_ACK, "errno": 0})

    async def revoke_tokens(self, user_id: int) -> None:
        """Every resume token issued to the user so far stops working, on every node."""
        tokens = await self._tokens()
        await self.store.revoke_tokens(user_id, tokens.revocation_ms())

    def end(self, session: Session) -> None:
        """The session stops being its user's (logout or disconnect); nothing in flight is lost."""
        inbox = session.inbox
        session.inbox = None
        session.logout()
        if inbox is not None:
            self.router.detach(inbox)
            if not self.router.online_here(inbox.user_id):
                self.blocks.drop(inbox.user_id)

    def _taken_over(self, session: Session) -> None:
        """A login took this session's device (here or on another node): tell the client,
        end the session at once (the new one holds the device now), close the connection."""
        log.info("user {uid}: device {device!r} logged in elsewhere; closing this session",
                 uid=session.user_id, device=session.device)
        session.send({"msgid": MsgId.NOTICE, "kind": "logged_in_elsewhere"})
        self.end(session)
        session.close()

    async def devices(self, session: Session, req: dict[str, Any]) -> None:
        """The account's online sessions on every node."""
        found = await self.router.devices_of(session.user_id)
        session.send({"msgid": MsgId.DEVICES_ACK, "errno": 0, "devices": [
            {"device": name, "since": since} for name, since in sorted(found.items())]})

    async def online(self, session: Session, user_ids: list[int]) -> set[int]:
        """Live presence as this session's user may see it: who blocked them is offline."""
        online = await self.router.online(user_ids)
        return online - self.blocks.blockers(session.user_id)

    # friends and groups

    async def add_friend(self, session: Session, req: dict[str, Any]) -> None:
        friend_id = req["friendid"]
        if friend_id == session.user_id:
            raise ChatError(Errno.SELF_FRIEND)
        if friend_id in self.blocks.blockers(session.user_id):
            raise ChatError(Errno.BLOCKED)
        friend = await self.store.user(friend_id)
        if friend is None:
            raise ChatError(Errno.NO_SUCH_USER)
        await self.quotas.check_friend(session.user_id, friend_id)
        await self.store.add_friend(session.user_id, friend_id)
        online = await self.online(session, [friend_id])
        session.send({"msgid": MsgId.ADD_FRIEND_ACK, "errno": 0,
                      "friend": {"id": friend_id, "name": friend.name,
                                 "state": _state(friend_id in online)}})

    async def create_group(self, session: Session, req: dict[str, Any]) -> None:
        await self.quotas.check_create_group(session.user_id)
        try:
            group_id = await self.store.create_group(
                req["groupname"], req.get("groupdesc") or "", session.user_id, self.join_mark())
        except NameTaken:
            raise ChatError(Errno.GROUP_NAME_TAKEN) from None
        self.router.group_changed(group_id)
        log.info("user {uid} created group {gid}", uid=session.user_id, gid=group_id)
        session.send({"msgid": MsgId.CREATE_GROUP_ACK, "errno": 0, "groupid": group_id})

    async def add_group(self, session: Session, req: dict[str, Any]) -> None:
        await self.quotas.check_join(req["groupid"], session.user_id)
        group = await self.store.join_group(req["groupid"], session.user_id, self.join_mark())
        if group is None:
            raise ChatError(Errno.NO_SUCH_GROUP)
        self.router.group_changed(group.id)
        online = await self.online(session, [m.id for m in group.members])
        session.send({"msgid": MsgId.ADD_GROUP_ACK, "errno": 0,
                      "group": group_view(group, online)})

    async def friend_list(self, session: Session, req: dict[str, Any]) -> None:
        friends = await self.store.friends(session.user_id)
        online = await self.online(session, [f[0] for f in friends])
        session.send({"msgid": MsgId.FRIEND_LIST_ACK, "errno": 0,
                      "friends": friend_views(friends, online, session.proto)})

    async def group_list(self, session: Session, req: dict[str, Any]) -> None:
        groups = await self.store.user_groups(session.user_id)
        online = await self.online(session, list({m.id for g in groups for m in g.members}))
        session.send({"msgid": MsgId.GROUP_LIST_ACK, "errno": 0,
                      "groups": group_views(groups, online, session.proto)})

    def cached_groups(self) -> int:
        """How many groups' members are cached (a metric)."""
        return len(self._members)

    def join_mark(self) -> int:
        """The mid from which a member joining now reads a group's history: a fresh one, so
        that a message this node accepted in the same millisecond before the join is not
        counted in (mids of one node increase strictly)."""
        return self.mids.next()

    def _block_changed(self, blocker: int, blocked: int, block: bool) -> None:
        if self.router.online_here(blocked):
            self.blocks.changed(blocker, blocked, block)

    def _reload_blocks(self, user_ids: list[int]) -> None:
        """Blocks changed while the bus was away were not announced: read them again."""
        d = Deferred.fromCoroutine(self.store.blockers_of(user_ids))

        def reload(blockers: dict[int, set[int]]) -> None:
            for user_id in user_ids:
                if self.router.online_here(user_id):
                    self.blocks.load(user_id, blockers.get(user_id, set()))
        d.addCallbacks(reload, lambda f: log.warn("reloading blocks failed: {error}",
                                                  error=f.value))

    def _forget_group(self, group_id: int | None) -> None:
        """Members changed (maybe on another node; None: any group may have): reload them at
        the next group message."""
        if group_id is None:
            self._members.clear()
        else:
            self._members.pop(group_id, None)
        self._membership_changes += 1

    # messages

    def one_chat(self, session: Session, req: dict[str, Any]) -> Handled:
        to = req["to"]
        if to in self.blocks.blockers(session.user_id):
            raise ChatError(Errno.BLOCKED)
        frame = {"msgid": ONE_CHAT, "id": session.user_id, "name": session.name,
                 "to": to, "toid": to}
        self._send_chat(session, req, frame, [to])
        return None

    def group_chat(self, session: Session, req: dict[str, Any]) -> Handled:
        members = self._members.get(req["groupid"])
        if members is None:
            return self._group_chat_after_load(session, req)
        self._group_chat(session, req, members)
        return None

    async def _group_chat_after_load(self, session: Session, req: dict[str, Any]) -> None:
        """Load the members, and cache them only when no membership changed meanwhile: a join
        that committed while the query ran may be missing from its result."""
        group_id = req["groupid"]
        changes = self._membership_changes
        members = await self.store.member_ids(group_id)
        if not members:
            raise ChatError(Errno.NO_SUCH_GROUP)
        if changes == self._membership_changes:
            self._members[group_id] = members
        self._group_chat(session, req, members)

    def _group_chat(self, session: Session, req: dict[str, Any], members: set[int]) -> None:
        sender = session.user_id
        if sender not in members:
            raise ChatError(Errno.NOT_A_MEMBER)
        frame = {"msgid": GROUP_CHAT, "id": sender, "name": session.name,
                 "groupid": req["groupid"]}
        self._send_chat(session, req, frame, [m for m in members if m != sender])

    def _send_chat(self, session: Session, req: dict[str, Any], frame: dict[str, Any],
                   recipients: list[int]) -> None:
        """Stamp and deliver one chat message.

        A (sender, cid) seen before, on any node, keeps its first mid: when that message is
        already safe the sender just gets its SEND_ACK again, otherwise it is delivered again
        under the same mid, which recipients drop if they have it.
        """
        frame["msg"] = req["msg"]
        frame["time"] = req.get("time") or time.strftime("%Y-%m-%d %H:%M:%S")
        cid = req.get("cid")
        sent = Sent(self, session, cid, self.mids.next(), frame["msgid"])
        if cid is None:
            self._deliver(sent, frame, recipients)
            return
        frame["cid"] = cid
        sent.arrived = self.clock.seconds()
        sent.waiting = (frame, recipients)
        self.router.remember(sent.sender, cid, sent.mid, sent.remembered)

    def _deliver(self, sent: "Sent", frame: dict[str, Any], recipients: list[int]) -> None:
        """Deliver to the recipients (their every device) and copy to the sender's other
        devices."""
        mid = frame["mid"] = sent.mid
        data = encode(frame)
        self.history.record(mid, sent.sender, frame, data)
        self.router.deliver(recipients, mid, data, sent)
        self.router.to_other_devices(sent.sender, sent.device, data)

    def acknowledge(self, sent: "Sent") -> None:
        """SEND_ACK to the sending device's current session, wherever the message came from."""
        session = self.router.session(sent.sender, sent.device)
        if session is not None and session.proto == 2:
            session.send({"msgid": SEND_ACK, "cid": sent.cid, "mid": sent.mid,
                          "errno": 0})
            self.stats.send_ack.observe(self.clock.seconds() - sent.arrived)

    def refuse_later(self, sent: "Sent", err: ChatError) -> None:
        """ERROR_MSG for a chat message whose delivery failed after it was accepted."""
        session = self.router.session(sent.sender, sent.device)
        if session is not None:
            self.stats.error(err.errno)
            session.send(error_frame(err, sent.ref, sent.cid))

    def recv_ack(self, session: Session, req: dict[str, Any]) -> Handled:
        mids = req.get("mids") or [req["mid"]]
        inbox = session.inbox
        inbox.ack(mids)
        if inbox.offline_mids:  # stored frames, in the login reply or sent after it
            stored = [m for m in mids if m in inbox.offline_mids]
            if stored:
                inbox.offline_mids = inbox.offline_mids.difference(stored)
                self._forget_offline(session.user_id, stored)
        return None

    def _forget_offline(self, user_id: int, mids: list[int]) -> None:
        d = Deferred.fromCoroutine(self.store.delete_offline(user_id, mids))
        d.addErrback(lambda f: log.warn(
            "user {uid}: could not delete {n} delivered offline messages ({error}); "
            "they will be sent again", uid=user_id, n=len(mids), error=f.value))

    def heartbeat(self, session: Session, req: dict[str, Any]) -> Handled:
        session.send({"msgid": MsgId.HEARTBEAT, "time": int(self.clock.seconds() * 1000)})
        return None



class Sent:
    """One accepted chat message until every copy is safe: the router's receipt for it. One
    small object per message (not a Deferred, not closures): this is the hot path."""

    __slots__ = ("service", "sender", "device", "cid", "mid", "ref", "arrived", "waiting")

    def __init__(self, service: ChatService, session: Session, cid: str | None, mid: int,
                 ref: int) -> None:
        self.service = service
        self.sender: int = session.user_id  # type: ignore[assignment]
        self.device = session.device
        self.cid = cid
        self.mid = mid
        self.ref = ref
        self.arrived = 0.0  # when it came in, for the SEND_ACK histogram (proto 2 only)
        # the frame and its recipients while the cid registry is asked
        self.waiting: tuple[dict[str, Any], list[int]] | None = None

    def remembered(self, prior: tuple[int, bool] | None) -> None:
        """The cid registry answered: a repeat keeps its first mid, and needs only its
        SEND_ACK again when that message is already safe."""
        frame, recipients = self.waiting  # type: ignore[misc]
        self.waiting = None
        if prior is not None:
            self.mid, safe = prior
            if safe:
                self.service.acknowledge(self)
                return
        self.service._deliver(self, frame, recipients)

    def delivered(self, missing: AbstractSet[int], full: AbstractSet[int]) -> None:
        """SEND_ACK, or the error of a one-to-one message whose recipient does not exist or
        has a full offline mailbox (a group message reached the rest)."""
        if not missing and not (full and self.ref == ONE_CHAT):
            if self.cid is not None:
                self.service.router.settle(self.sender, self.cid, self.mid)
                self.service.acknowledge(self)
            return
        service = self.service
        service.history.forget(self.mid)
        session = service.router.session(self.sender, self.device)
        if session is None:
            return
        errno = Errno.NO_SUCH_USER if missing else Errno.OFFLINE_QUOTA
        service.stats.error(errno)
        if not missing and self.cid is not None and session.proto == 2:
            session.send({"msgid": SEND_ACK, "cid": self.cid, "mid": self.mid,
                          "errno": int(errno), "errmsg": ERRMSG[errno]})
        else:
            session.send(error_frame(ChatError(errno), self.ref, self.cid))

    def failed(self, failure: Failure) -> None:
        log.failure("delivery from user {uid} failed", failure, uid=self.sender)
        self.service.refuse_later(self, ChatError(Errno.UNAVAILABLE))

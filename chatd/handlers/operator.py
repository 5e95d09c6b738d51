"""What an operator can do to a running cluster, whichever node is asked: see the nodes and
who is online where, look at a user, end a user's session, ban and unban, set a password,
send a notice to everyone.

Actions reach every node through the bus's control channel; a query gathers one report from
each node on the asking node's channel. The asking node acts on its own sessions directly
and ignores the copy of its own control message.

    K <origin> <uid> <kind>     control: end the user's session (kind: kicked | banned)
    N <origin> <text>           control: a notice for every session
    Q <origin> <query-id>       control: report your sessions to <origin>'s channel
    R <query-id> <json>         node channel: one node's report
"""

from itertools import count
from typing import Any

import ujson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from chatd.messages import ChatError, Errno, MsgId, ServiceUnavailable, error_frame
from chatd.handlers.service import ChatService
from chatd.delivery.session import Session

log = Logger()

QUERY_TIMEOUT = 2.0
KINDS = {b"kicked": Errno.KICKED, b"banned": Errno.BANNED}


class _Owner:
    """Who the hash queue works for when the operator sets a password: never goes away."""

    connected = True


_OPERATOR = _Owner()


class _Query:
    """Reports gathered for one question to every node; `done` fires with them once the
    expected number came in, or at the time-out with those that did."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.expected: int | None = None
        self.done: Deferred[list[dict[str, Any]]] = Deferred()

    def check(self) -> None:
        if (self.expected is not None and len(self.reports) >= self.expected
                and not self.done.called):
            self.done.callback(self.reports)


class Operator:
    """The operator's actions and queries on top of the service and router of one node."""

    def __init__(self, service: ChatService, node_id: int, clock: IReactorTime) -> None:
        self.service = service
        self.router = service.router
        self.store = service.store
        self.bus = service.router.bus
        self.node_id = node_id
        self._clock = clock
        self._queries: dict[int, _Query] = {}
        self._ids = count(1)
        self.router.on_control = self._control
        self.router.on_node_message = self._node_message

    # queries

    def report(self) -> dict[str, Any]:
        """This node's sessions: [user id, name, proto] each."""
        return {"node": self.bus.incarnation.decode(), "node_id": self.node_id,
                "sessions": [[i.user_id, i.session.name, i.session.proto]
                             for i in self.router.inboxes()]}

    async def reports(self) -> list[dict[str, Any]]:
        """Every live node's report (only this node's while it is alone or the bus is down),
        ordered by node id."""
        query_id = next(self._ids)
        query = self._queries[query_id] = _Query()
        try:
            receivers = await self.bus.publish_control(
                b"Q %s %d" % (self.bus.incarnation, query_id))
        except ServiceUnavailable:
            receivers = 0
        if receivers == 0:
            del self._queries[query_id]
            return [self.report()]
        query.expected = receivers
        timer = self._clock.callLater(QUERY_TIMEOUT, self._give_up, query_id)
        query.check()
        reports = await query.done
        if timer.active():
            timer.cancel()
        self._queries.pop(query_id, None)
        return sorted(reports, key=lambda r: (r["node_id"], r["node"]))

    def _give_up(self, query_id: int) -> None:
        query = self._queries.pop(query_id, None)
        if query is not None and not query.done.called:
            log.warn("operator query {qid}: {n} of {m} nodes answered in time", qid=query_id,
                     n=len(query.reports), m=query.expected)
            query.done.callback(query.reports)

    async def user(self, user_id: int) -> dict[str, Any] | None:
        """What chatd-admin user shows; None when there is no such user."""
        details = await self.store.details(user_id)
        if details is None:
            return None
        where = None
        for report in await self.reports():
            for uid, _name, proto in report["sessions"]:
                if uid == user_id:
                    where = {"node": report["node"], "node_id": report["node_id"],
                             "proto": proto}
        return {"id": details.id, "name": details.name, "online": where,
                "friends": [{"id": i, "name": n} for i, n in details.friends],
                "groups": [{"groupid": i, "groupname": n} for i, n in details.groups],
                "offline": details.offline, "banned": details.ban is not None,
                "ban": ({"reason": details.ban[0], "since": details.ban[1]}
                        if details.ban else None)}

    # actions

    async def kick(self, user_id: int, kind: bytes = b"kicked") -> bool:
        """End the user's session wherever it is, and revoke the user's resume tokens so the
        client cannot come straight back; True when the user was online."""
        await self.service.revoke_tokens(user_id)
        online = bool(await self.router.online([user_id]))
        self._end(user_id, kind)
        await self._announce(b"K %s %d %s" % (self.bus.incarnation, user_id, kind))
        log.info("operator: {kind} user {uid} (online: {online})", kind=kind.decode(),
                 uid=user_id, online=online)
        return online

    async def ban(self, user_id: int, reason: str) -> bool | None:
        """Ban the user and end the session; None when there is no such user, else whether
        the user was online."""
        if not await self.store.ban(user_id, reason):
            return None
        log.info("operator: banned user {uid}, reason {reason!r}", uid=user_id, reason=reason)
        return await self.kick(user_id, b"banned")

    async def unban(self, user_id: int) -> None:
        await self.store.unban(user_id)
        log.info("operator: unbanned user {uid}", uid=user_id)

    async def set_password(self, user_id: int, password: str) -> bool:
        """Set a new password and revoke the user's resume tokens; False when no such user."""
        password_hash = await self.service.hasher.hash(_OPERATOR, password)
        if not await self.store.set_password(user_id, password_hash):
            return False
        await self.service.revoke_tokens(user_id)
        log.info("operator: set a new password for user {uid}", uid=user_id)
        return True

    async def broadcast(self, text: str) -> None:
        """A notice to every session of every node."""
        self._notify_all(text)
        await self._announce(b"N %s " % self.bus.incarnation + text.encode())
        log.info("operator: broadcast {text!r}", text=text)

    async def _announce(self, payload: bytes) -> None:
        """Tell the other nodes; while the bus is down only this node acted."""
        try:
            await self.bus.publish_control(payload)
        except ServiceUnavailable as e:
            log.warn("operator: other nodes not told ({error})", error=e)

    # on each node

    def _control(self, payload: bytes) -> None:
        kind, origin, rest = (payload.split(b" ", 2) + [b""])[:3]
        if kind == b"Q":
            report = ujson.dumps(self.report()).encode()
            self.bus.publish_node(origin, b"R %s " % rest + report).addErrback(lambda f: None)
        elif origin == self.bus.incarnation:
            return
        elif kind == b"K":
            user_id, how = rest.split(b" ")
            self._end(int(user_id), how)
        elif kind == b"N":
            self._notify_all(rest.decode())

    def _node_message(self, payload: bytes) -> None:
        kind, query_id, report = payload.split(b" ", 2)
        query = self._queries.get(int(query_id)) if kind == b"R" else None
        if query is not None:
            query.reports.append(ujson.loads(report))
            query.check()

    def _end(self, user_id: int, kind: bytes) -> None:
        """Tell the user's sessions here (each device) why, then close them."""
        for inbox in self.router.user_inboxes(user_id):
            session = inbox.session
            if session.proto == 2:
                session.send({"msgid": MsgId.NOTICE, "kind": kind.decode()})
            else:
                self._error(session, ChatError(KINDS.get(kind, Errno.KICKED)))
            session.close()

    def _notify_all(self, text: str) -> None:
        for inbox in self.router.inboxes():
            session = inbox.session
            if session.proto == 2:
                session.send({"msgid": MsgId.NOTICE, "kind": "broadcast", "msg": text})
            else:
                self._error(session, ChatError(Errno.OPERATOR_NOTICE, text))

    def _error(self, session: Session, err: ChatError) -> None:
        self.service.stats.error(err.errno)
        session.send(error_frame(err))

"""What an operator can do to a running cluster, whichever node is asked: see the nodes and
who is online where, look at a user, end a user's session, ban and unban, set a password,
send a notice to everyone.

Actions reach every node through the cluster's control channel (EndSession, Broadcast); a
query (Query) gathers one report (QueryReport) from each node on the asking node's channel.
The letters are encoded in chatd/cluster/envelope.py. The asking node acts on its own
sessions directly and ignores the copy of its own control letter.
"""

from itertools import count
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from chatd.cluster.envelope import Broadcast, EndSession, Query, QueryReport
from chatd.delivery.inbound import Inbound
from chatd.handlers.context import Context
from chatd.handlers.endings import end_sessions, send_error
from chatd.messages import ChatError, Errno, MsgId, ServiceUnavailable

log = Logger()

QUERY_TIMEOUT = 2.0


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
    """The operator's actions and queries, on this node's router and store."""

    def __init__(self, context: Context, inbound: Inbound, node_id: int) -> None:
        self.router = context.router
        self.store = context.store
        self.hasher = context.hasher
        self.resume = context.resume
        self.account_data = context.account_data
        self.stats = context.stats
        self.bus = context.router.bus
        self.node_id = node_id
        self._clock = context.clock
        self._queries: dict[int, _Query] = {}
        self._ids = count(1)
        inbound.operator.connect(self._letter)

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
                Query(self.bus.incarnation, query_id).encode())
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

    async def kick(self, user_id: int, kind: str = "kicked") -> bool:
        """End the user's session wherever it is, and revoke the user's resume tokens so the
        client cannot come straight back; True when the user was online."""
        await self.resume.revoke(user_id)
        online = bool(await self.router.online([user_id]))
        self._end(user_id, kind)
        await self._announce(EndSession(self.bus.incarnation, user_id, kind))
        log.info("operator: {kind} user {uid} (online: {online})", kind=kind,
                 uid=user_id, online=online)
        return online

    async def ban(self, user_id: int, reason: str) -> bool | None:
        """Ban the user and end the session; None when there is no such user, else whether
        the user was online."""
        if not await self.store.ban(user_id, reason):
            return None
        log.info("operator: banned user {uid}, reason {reason!r}", uid=user_id, reason=reason)
        return await self.kick(user_id, "banned")

    async def unban(self, user_id: int) -> None:
        await self.store.unban(user_id)
        log.info("operator: unbanned user {uid}", uid=user_id)

    async def set_password(self, user_id: int, password: str) -> bool:
        """Set a new password and revoke the user's resume tokens; False when no such user."""
        password_hash = await self.hasher.hash(_OPERATOR, password)
        if not await self.store.set_password(user_id, password_hash):
            return False
        await self.resume.revoke(user_id)
        log.info("operator: set a new password for user {uid}", uid=user_id)
        return True

    async def delete(self, user_id: int) -> bool:
        """Delete the account as DELETE_ACCOUNT does; False when there is no such account."""
        deleted = await self.account_data.delete(user_id)
        log.info("operator: deleted user {uid}: {deleted}", uid=user_id, deleted=deleted)
        return deleted

    async def export(self, user_id: int) -> dict[str, Any] | None:
        """The user's data (chatd-admin export); None when there is no such user."""
        return await self.account_data.export(user_id)

    async def broadcast(self, text: str) -> None:
        """A notice to every session of every node."""
        self._notify_all(text)
        await self._announce(Broadcast(self.bus.incarnation, text))
        log.info("operator: broadcast {text!r}", text=text)

    async def _announce(self, letter: EndSession | Broadcast) -> None:
        """Tell the other nodes; while the bus is down only this node acted."""
        try:
            await self.bus.publish_control(letter.encode())
        except ServiceUnavailable as e:
            log.warn("operator: other nodes not told ({error})", error=e)

    # on each node

    def _letter(self, letter: object) -> None:
        """An operator's letter from another node (or the copy of this node's own)."""
        match letter:
            case Query(origin, query_id):
                report = QueryReport(query_id, self.report()).encode()
                self.bus.publish_node(origin, report).addErrback(lambda f: None)
            case QueryReport(query_id, report):
                query = self._queries.get(query_id)
                if query is not None:
                    query.reports.append(report)
                    query.check()
            case EndSession(origin, user_id, kind) if origin != self.bus.incarnation:
                self._end(user_id, kind)
            case Broadcast(origin, text) if origin != self.bus.incarnation:
                self._notify_all(text)

    def _end(self, user_id: int, kind: str) -> None:
        end_sessions(self.router, self.stats, user_id, kind)

    def _notify_all(self, text: str) -> None:
        for inbox in self.router.inboxes():
            session = inbox.session
            if session.proto == 2:
                session.send({"msgid": MsgId.NOTICE, "kind": "broadcast", "msg": text})
            else:
                send_error(session, self.stats, ChatError(Errno.OPERATOR_NOTICE, text))

"""Soak: a few hundred users exchange a few thousand messages over three nodes while one node
is killed (SIGKILL) and restarted. Users reconnect through nginx and re-send what never got
SEND_ACK, as the bundled client does. Nothing acknowledged may be lost, and after dropping
repeated mids the application sees every message once."""

import random
import time
from typing import Any

import ujson
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.harness import connect, deferLater, login, register
from tests.test_cluster import Cluster

USERS = 240
MESSAGES_EACH = 12
SEND_INTERVAL = 0.3
RETRY = 0.2


class Stats:
    """What the application saw, across every user."""

    def __init__(self) -> None:
        self.sent: set[tuple[int, str]] = set()
        self.acked: set[tuple[int, str]] = set()
        self.delivered: set[tuple[int, str]] = set()
        self.duplicated = 0

    def table(self, seconds: float) -> str:
        rows = [("sent", len(self.sent)), ("acknowledged (SEND_ACK)", len(self.acked)),
                ("delivered", len(self.delivered)),
                ("lost (acknowledged, never delivered)", len(self.acked - self.delivered)),
                ("duplicated to the application", self.duplicated)]
        lines = [f"soak: {USERS} users on 3 nodes, one killed and restarted, {seconds:.1f} s"]
        return "\n".join(lines + [f"  {name:<40}{value:>7}" for name, value in rows])


class SoakUser:
    """A user's lasting state: messages awaiting SEND_ACK and the mids already shown."""

    def __init__(self, uid: int, stats: Stats) -> None:
        self.uid = uid
        self.stats = stats
        self.unacked: dict[str, bytes] = {}
        self.seen_mids: set[int] = set()
        self.link: Link | None = None

    def send(self, to: int, cid: str) -> None:
        payload = ujson.dumps({"msgid": 6, "to": to, "msg": cid, "cid": cid}).encode() + b"\n"
        self.unacked[cid] = payload
        self.stats.sent.add((self.uid, cid))
        if self.link is not None and self.link.ready:
            self.link.transport.write(payload)

    def arrived(self, frames: list[dict[str, Any]]) -> list[int]:
        """Show each message once (by mid); return the mids to acknowledge."""
        for f in frames:
            if f["mid"] in self.seen_mids:
                continue
            self.seen_mids.add(f["mid"])
            key = (f["id"], f["cid"])
            if key in self.stats.delivered:
                self.stats.duplicated += 1
            self.stats.delivered.add(key)
        return [f["mid"] for f in frames]

    def sent_ok(self, cid: str) -> None:
        if self.unacked.pop(cid, None) is not None:
            self.stats.acked.add((self.uid, cid))


class Link(Protocol):
    """One connection of a user: logs in, re-sends the unacknowledged, acknowledges arrivals."""

    def __init__(self, user: SoakUser) -> None:
        self.user = user
        self.ready = False
        self.login_reply: defer.Deferred[dict[str, Any] | None] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.buffer = b""

    def connectionMade(self) -> None:
        self.transport.write(ujson.dumps({"msgid": 1, "id": self.user.uid,
                                          "password": "secret", "proto": 2}).encode() + b"\n")

    def connectionLost(self, reason: Any) -> None:
        self.ready = False
        if not self.login_reply.called:
            self.login_reply.callback(None)
        self.lost.callback(None)

    def dataReceived(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            self.frame(ujson.loads(line))

    def frame(self, f: dict[str, Any]) -> None:
        msgid = f["msgid"]
        if msgid == 2:
            if f["errno"] == 0:
                self.ready = True
                self.user.link = self
                self.ack(self.user.arrived(f["offlinemsg"]))
                for payload in list(self.user.unacked.values()):
                    self.transport.write(payload)
            self.login_reply.callback(f)
        elif msgid in (6, 10):
            self.ack(self.user.arrived([f]))
        elif msgid == 16:
            self.user.sent_ok(f["cid"])

    def ack(self, mids: list[int]) -> None:
        if mids:
            self.transport.write(ujson.dumps({"msgid": 17, "mids": mids}).encode() + b"\n")


async def keep_connected(user: SoakUser, first_port: int, nginx_port: int,
                         running: list[bool]) -> None:
    """Stay logged in; after any loss, log in again through nginx."""
    port = first_port
    while running[0]:
        try:
            link = await connectProtocol(
                TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2), Link(user))
        except Exception:
            await deferLater(RETRY)
            port = nginx_port
            continue
        reply = await link.login_reply
        if reply is None or reply["errno"] != 0:
            link.transport.loseConnection()
            await link.lost
            await deferLater(RETRY)
        else:
            await link.lost
        port = nginx_port


class SoakTest(TestCase):
    timeout = 240

    async def test_soak_with_a_node_killed_and_restarted(self):
        rng = random.Random(7)
        # every soak user registers from the one test address
        cluster = await Cluster(self).start(3, "--max-registrations", str(USERS))
        stats = Stats()
        registrar = await connect(self, cluster.nodes[0])
        ids = [await register(registrar, f"soak{i}") for i in range(USERS)]
        users = [SoakUser(uid, stats) for uid in ids]
        running = [True]
        self.addCleanup(running.__setitem__, 0, False)
        loops = [defer.Deferred.fromCoroutine(keep_connected(
            u, cluster.nodes[i % 3].port, cluster.nginx.port, running))
            for i, u in enumerate(users)]
        while sum(u.link is not None for u in users) < USERS:
            await deferLater(0.1)
        started = time.monotonic()
        for round_ in range(MESSAGES_EACH):
            for user in users:
                to = rng.choice(ids)
                user.send(to if to != user.uid else ids[0], f"{user.uid}-{round_}")
            if round_ == MESSAGES_EACH // 2:
                await cluster.nodes[2].stop("KILL")
                await deferLater(1.0)
                await cluster.nodes[2].start()
            await deferLater(SEND_INTERVAL)
        deadline = time.monotonic() + 60
        while stats.sent - stats.acked and time.monotonic() < deadline:
            await deferLater(0.5)
        running[0] = False
        for user in users:
            if user.link is not None:
                user.link.transport.loseConnection()
        await defer.DeferredList(loops)
        await self.last_login(cluster, users)
        print("\n" + stats.table(time.monotonic() - started))
        self.assertEqual(stats.sent - stats.acked, set(), "every message got SEND_ACK")
        self.assertEqual(stats.acked - stats.delivered, set(), "nothing acknowledged is lost")
        self.assertEqual(stats.duplicated, 0)

    async def last_login(self, cluster: Cluster, users: list[SoakUser]) -> None:
        """Once the nodes' report deadlines have passed, each user's next login collects
        what was stored for it."""
        await deferLater(7)
        for user in users:
            client = await connect(self, cluster.nginx)
            reply = await login(client, user.uid)
            self.assertEqual(reply["errno"], 0, reply)
            user.arrived(reply["offlinemsg"])
            client.transport.loseConnection()
            await client.closed

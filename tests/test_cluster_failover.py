"""Redis behind Sentinel fails over under chat: a master, a replica and three sentinels
(down-after-milliseconds 1000), two `twistd chatd` nodes pointed at them with
`--redis sentinel://...`, and proto-2 users on both nodes chatting continuously, one-to-one
and in a group, while the master is killed (SIGKILL) or frozen (SIGSTOP). Every message that
got SEND_ACK reaches each recipient once as a client shows it (clients drop a repeated mid and
a repeated sender + cid, docs/protocol.md), the users stay logged in, no account is let in a
second time on the other node meanwhile, and presence is right again afterwards."""

import os
import signal
import time
from collections import defaultdict
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from chatd.devservers import SERVICE, Redis, RedisHA, redis_command
from chatd.messages import Errno, MsgId
from tests.harness import Client, connect, deferLater, login, register
from tests.nodeproc import Node, start_node
from tests.servers import mysql_database, start_redis, start_redis_ha
from tests.test_cluster import eventually

SEND_EVERY = 0.04  # seconds between two messages of the chat loop
BEFORE, AFTER = 1.5, 3.0  # seconds of chat before the failure and after the new master


class Person:
    """A proto-2 user logged in on one node, acknowledging what arrives."""

    def __init__(self, name: str, client: Client, token: str, node: Node) -> None:
        self.name, self.client, self.token, self.node = name, client, token, node
        self.id: int = client.user_id  # type: ignore[assignment]
        self.shown: dict[tuple[int, str], set[int]] = defaultdict(set)  # (sender, cid) -> mids
        self.arrived: dict[tuple[int, str], float] = {}  # first arrival, monotonic

    def take(self) -> None:
        """Move the chat frames that arrived into `shown`."""
        keep = []
        for frame in self.client.frames:
            if frame.get("msgid") in (MsgId.ONE_CHAT, MsgId.GROUP_CHAT):
                self.show(frame)
            else:
                keep.append(frame)
        self.client.frames[:] = keep

    def show(self, frame: dict[str, Any]) -> None:
        key = (frame["id"], frame["msg"])
        self.shown[key].add(frame["mid"])
        self.arrived.setdefault(key, time.monotonic())


class FailoverTests(TestCase):
    timeout = 240

    async def setUp(self) -> None:
        self.ha: RedisHA = start_redis_ha(down_after_ms=1000)
        self.addCleanup(self.ha.destroy)
        db = mysql_database()
        self.nodes = await gatherResults([Deferred.fromCoroutine(start_node(
            self, "--db", db, "--redis", self.ha.url(), "--node-id", str(i),
            "--ack-timeout", "2")) for i in (1, 2)])
        n1, n2 = self.nodes
        self.people = [await self.person(name, node) for name, node in
                       (("alice", n1), ("carol", n1), ("bob", n2), ("dave", n2))]
        alice, carol, bob, dave = self.people
        self.group = (await alice.client.request(
            {"msgid": MsgId.CREATE_GROUP, "groupname": "all"}, MsgId.CREATE_GROUP_ACK)
                      )["groupid"]
        for p in self.people[1:]:
            await p.client.request({"msgid": MsgId.ADD_GROUP, "groupid": self.group},
                                   MsgId.ADD_GROUP_ACK)
        for a, b in ((alice, bob), (carol, dave)):
            await a.client.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.id},
                                   MsgId.ADD_FRIEND_ACK)
        # (sender, cid) -> recipients, and when it was sent
        self.sent: dict[tuple[int, str], tuple[list[Person], float]] = {}
        self.refused_twice: list[dict[str, Any]] = []

    async def person(self, name: str, node: Node) -> Person:
        client = await connect(self, node)
        client.auto_ack = True
        reply = await login(client, await register(client, name))
        return Person(name, client, reply["token"], node)

    async def chat(self, until: Deferred[None]) -> None:
        """One message every SEND_EVERY, in turn: one-to-one across the nodes both ways, and
        to the group from each node."""
        alice, carol, bob, dave = self.people
        turns = [(alice, bob), (bob, alice), (carol, dave), (dave, carol), (alice, None),
                 (bob, None)]
        n = 0
        while not until.called:
            sender, to = turns[n % len(turns)]
            cid = f"{sender.name}-{n}"
            if to is None:
                frame = {"msgid": MsgId.GROUP_CHAT, "groupid": self.group, "msg": cid,
                         "cid": cid}
                recipients = [p for p in self.people if p is not sender]
            else:
                frame = {"msgid": MsgId.ONE_CHAT, "to": to.id, "msg": cid, "cid": cid}
                recipients = [to]
            sender.client.send(frame)
            self.sent[(sender.id, cid)] = (recipients, time.monotonic())
            n += 1
            await deferLater(SEND_EVERY)
            for person in self.people:
                person.take()

    async def second_logins(self, until: Deferred[None]) -> None:
        """Keep trying to log each user in on the other node with its token: never let in
        while the first session is online."""
        n1, n2 = self.nodes
        while not until.called:
            for person in self.people:
                other = n2 if person.node is n1 else n1
                client = await connect(self, other)
                reply = await client.request(
                    {"msgid": MsgId.LOGIN, "id": person.id, "token": person.token,
                     "proto": 2}, MsgId.LOGIN_ACK, timeout=15)
                if reply["errno"] not in (Errno.ALREADY_ONLINE, Errno.UNAVAILABLE):
                    self.refused_twice.append(reply)
                client.transport.loseConnection()
            await deferLater(0.2)

    async def fail_over(self, fail: Any, promoted_then: Any = None) -> None:
        """Chat, break the master with `fail(master)`, wait for the sentinels' new master
        (then call `promoted_then(old master)`), chat on, then check what every user has."""
        stop = Deferred()
        loops = [Deferred.fromCoroutine(self.chat(stop)),
                 Deferred.fromCoroutine(self.second_logins(stop))]
        await deferLater(BEFORE)
        old = self.ha.master()
        failed = time.monotonic()
        fail(old)
        new = await eventually(lambda: _now(self.ha.moved(old)), 30, "a new master")
        promoted = time.monotonic()
        if promoted_then is not None:
            promoted_then(old)
        await deferLater(AFTER)
        stop.callback(None)
        await gatherResults(loops)
        await self.settled()
        self.check(failed, promoted, new, old)
        await self.presence()

    async def settled(self) -> None:
        """Wait for every SEND_ACK (copies not reported in time are stored by their sender's
        node after 2 * --ack-timeout + 2 s), then take what arrived."""
        deadline = time.monotonic() + 20
        while unacked := [key for key in self.sent if self.ack(*key) is None]:
            if time.monotonic() > deadline:
                for person in self.people:
                    person.take()
                shown = {cid: [(p.name, p.shown.get((sender, cid)))
                               for p in self.sent[(sender, cid)][0]] for sender, cid in unacked}
                self.fail(f"no SEND_ACK within 20 s; who has those messages: {shown}")
            await deferLater(0.2)
        await deferLater(1)
        for person in self.people:
            person.take()

    def ack(self, sender_id: int, cid: str) -> dict[str, Any] | None:
        sender = next(p for p in self.people if p.id == sender_id)
        return next((f for f in sender.client.frames
                     if f.get("msgid") == MsgId.SEND_ACK and f.get("cid") == cid), None)

    def check(self, failed: float, promoted: float, new: Redis, old: Redis) -> None:
        acks = {key: self.ack(*key) for key in self.sent}
        self.assertEqual({k: a for k, a in acks.items() if a["errno"] != 0}, {},
                         "every message was accepted")
        missing, twice = [], []
        for (sender, cid), (recipients, _) in self.sent.items():
            for person in recipients:
                mids = person.shown.get((sender, cid))
                if not mids:
                    missing.append((person.name, cid))
                elif mids != {acks[(sender, cid)]["mid"]}:
                    twice.append((person.name, cid, sorted(mids)))
        self.assertEqual(missing, [], "every acknowledged message arrives")
        self.assertEqual(twice, [], "one message is one mid: a client shows it once")
        self.assertEqual(self.refused_twice, [], "nobody is logged in twice")
        for node in self.nodes:
            self.assertTrue(node.running, node.log())
            self.assertNotIn("Traceback", node.log())
            self.assertIn(f"connected to 127.0.0.1:{new.port}", node.log())
        back = self.first_live_after(failed)
        print(f"\n  master {old.port} failed; promoted {new.port} after "
              f"{promoted - failed:.1f} s; cross-node chat flowed again "
              f"{back - failed:.1f} s after the failure; {len(self.sent)} messages")

    def first_live_after(self, failed: float) -> float:
        """When the first message sent after the failure reached another node's user."""
        arrivals = [person.arrived[(sender, cid)]
                    for (sender, cid), (recipients, sent) in self.sent.items() if sent > failed
                    for person in recipients
                    if person.node is not self.sender_node(sender)
                    and (sender, cid) in person.arrived]
        return min(arrivals)

    def sender_node(self, sender_id: int) -> Node:
        return next(p.node for p in self.people if p.id == sender_id)

    async def presence(self) -> None:
        """Each sees the other online again; one that logs out is offline for the other."""
        alice, carol, bob, dave = self.people

        async def state(asker: Person, of: Person) -> str:
            reply = await asker.client.request(
                {"msgid": MsgId.ADD_FRIEND, "friendid": of.id}, MsgId.ADD_FRIEND_ACK)
            return reply["friend"]["state"]

        self.assertEqual((await state(alice, bob), await state(bob, alice)),
                         ("online", "online"))
        await dave.client.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        self.assertEqual(await state(carol, dave), "offline")

    async def test_killed_master(self):
        await self.fail_over(lambda master: master.stop())

    async def test_frozen_master(self):
        """The frozen master keeps the nodes' connections open without answering; once it
        wakes up after the failover it is a replica, which the nodes must not use."""
        def freeze(master: Redis) -> None:
            os.kill(master.proc.pid, signal.SIGSTOP)
            self.addCleanup(thaw, master)

        def thaw(master: Redis) -> None:
            os.kill(master.proc.pid, signal.SIGCONT)
        await self.fail_over(freeze, thaw)


class WokenMasterTests(TestCase):
    """A node that reached a frozen master (its kernel still accepts connections) waits for
    the answer to ROLE; the master, woken after a failover, answers "master" until the
    sentinels make it a replica. The node must go to the promoted server instead."""

    timeout = 120

    async def test_a_node_waiting_on_a_frozen_master_goes_to_the_promoted_one(self):
        ha = start_redis_ha(down_after_ms=60_000)  # only the forced failover below
        self.addCleanup(ha.destroy)
        old = ha.master()
        os.kill(old.proc.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, old.proc.pid, signal.SIGCONT)
        node = await start_node(self, "--db", mysql_database(), "--redis", ha.url(),
                                "--node-id", "1")
        await deferLater(1)  # the node's connections reach the frozen master and wait
        redis_command(ha.sentinels[0].port, "SENTINEL", "FAILOVER", SERVICE)
        new = await eventually(lambda: _now(ha.moved(old)), 30, "a new master")
        os.kill(old.proc.pid, signal.SIGCONT)
        await eventually(lambda: _now(f"connected to 127.0.0.1:{new.port}" in node.log()), 15,
                         "the node on the promoted master")
        await deferLater(1)
        self.assertNotIn(f"connected to 127.0.0.1:{old.port}", node.log())
        client = await connect(self, node)
        reply = await login(client, await register(client, "alice"))
        self.assertEqual(reply["errno"], 0, reply)


class LostClaimTests(TestCase):
    """A Redis server that lost the nodes' writes (a promoted replica that lacked the last
    ones; here a restarted server without persistence, which lost all) must not let a second
    login of an account in while the first session is online on a node that has not claimed
    it again yet."""

    timeout = 120

    async def test_a_node_that_reconnects_first_waits_for_the_others_claims(self):
        redis = start_redis()
        self.addCleanup(redis.destroy)
        db = mysql_database()
        first, second = [await start_node(self, "--db", db, "--redis", redis.url,
                                          "--node-id", str(i)) for i in (1, 2)]
        alice = await connect(self, first)
        alice.auto_ack = True
        token = (await login(alice, await register(alice, "alice")))["token"]
        bob = await connect(self, second)
        await login(bob, await register(bob, "bob"))
        await eventually(lambda: _now("joined the cluster: 1 other node" in second.log()), 10,
                         "the second node knows the first")
        redis.stop()
        await deferLater(0.2)  # both nodes have seen their connections go
        os.kill(first.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, first.pid, signal.SIGCONT)
        redis.start()
        await eventually(lambda: _now(second.log().count(": connected as") == 2), 15,
                         "the second node back on the new server")
        again = await connect(self, second)
        again.send({"msgid": MsgId.LOGIN, "id": alice.user_id, "token": token, "proto": 2})
        await deferLater(0.5)
        self.assertEqual([f for f in again.frames if f["msgid"] == MsgId.LOGIN_ACK], [],
                         "the login waits for the first node")
        os.kill(first.pid, signal.SIGCONT)
        reply = await again.recv(MsgId.LOGIN_ACK, timeout=10)
        self.assertEqual(reply["errno"], Errno.ALREADY_ONLINE, reply)
        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice.user_id, "msg": "still there?"})
        await alice.recv(MsgId.ONE_CHAT, msg="still there?")


async def _now(value: Any) -> Any:
    return value

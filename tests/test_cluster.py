"""A real cluster on loopback: private MariaDB and Redis, three `twistd chatd` processes, nginx
in front. Clients connect through nginx and directly to each node."""

import time

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from chatd.devservers import Nginx, Redis
from chatd.messages import Errno, MsgId
from tests.harness import Client, connect, deferLater, login, register, user
from tests.nodeproc import start_node
from tests.servers import free_port, mysql_database, private_mariadb, start_nginx, start_redis


class Cluster:
    """MariaDB database + Redis + N nodes + nginx, all torn down at the test's cleanup."""

    def __init__(self, case: TestCase) -> None:
        self.case = case
        self.db = mysql_database()
        self.redis: Redis | None = None
        self.nodes: list = []
        self.nginx: Nginx | None = None

    async def start(self, count: int = 3, *args: str, web: bool = False) -> "Cluster":
        """`web`: each node also serves --web on a port of its own, behind nginx's http."""
        self.redis = start_redis()
        self.case.addCleanup(self.redis.destroy)
        self.web_ports = [free_port() for _ in range(count)] if web else []
        self.nodes = await defer.gatherResults([
            defer.Deferred.fromCoroutine(start_node(
                self.case, "--db", self.db, "--redis", self.redis.url,
                "--node-id", str(i + 1), "--ack-timeout", "2", *args,
                *(["--web", f"tcp:{self.web_ports[i]}:interface=127.0.0.1"] if web else [])))
            for i in range(count)])
        self.nginx = start_nginx([n.port for n in self.nodes], web_ports=self.web_ports or None)
        self.case.addCleanup(self.nginx.destroy)
        return self

    async def user(self, where: object, name: str) -> Client:
        client = await user(self.case, where, name)
        client.auto_ack = True
        return client


async def eventually(check, timeout: float, what: str):
    """Poll an async check until it returns a true value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {result!r})")
        await deferLater(0.2)


class ClusterTests(TestCase):
    timeout = 120

    async def test_every_pair_of_nodes_carries_chat_and_group_chat_both_ways(self):
        cluster = await Cluster(self).start()
        places = [*cluster.nodes, cluster.nginx]
        users = [await cluster.user(p, f"user{i}") for i, p in enumerate(places)]
        gid = (await users[0].request({"msgid": MsgId.CREATE_GROUP, "groupname": "all"},
                                      MsgId.CREATE_GROUP_ACK))["groupid"]
        for u in users[1:]:
            await u.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        for i, sender in enumerate(users):
            for j, receiver in enumerate(users):
                if i == j:
                    continue
                cid = f"{i}->{j}"
                sender.send({"msgid": MsgId.ONE_CHAT, "to": receiver.user_id, "msg": cid,
                             "cid": cid})
                got = await receiver.recv(MsgId.ONE_CHAT, msg=cid)
                self.assertEqual(got["id"], sender.user_id)
                ack = await sender.recv(MsgId.SEND_ACK, cid=cid)
                self.assertEqual(ack["mid"], got["mid"])
        for i, sender in enumerate(users):
            sender.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": f"g{i}", "cid": f"g{i}"})
            for j, receiver in enumerate(users):
                if i != j:
                    got = await receiver.recv(MsgId.GROUP_CHAT, msg=f"g{i}")
                    self.assertEqual(got["name"], f"user{i}")
            await sender.recv(MsgId.SEND_ACK, cid=f"g{i}")
        for u in users:
            self.assertEqual([f for f in await u.quiet(0.2)
                              if f["msgid"] in (MsgId.ONE_CHAT, MsgId.GROUP_CHAT)], [],
                             "nobody gets a message twice or their own group message")

    async def test_presence_and_one_login_per_account_across_nodes(self):
        cluster = await Cluster(self).start()
        n1, n2, n3 = cluster.nodes
        alice = await cluster.user(n1, "alice")
        bob = await cluster.user(n2, "bob")
        friend = await alice.request({"msgid": MsgId.ADD_FRIEND, "friendid": bob.user_id},
                                     MsgId.ADD_FRIEND_ACK)
        self.assertEqual(friend["friend"]["state"], "online")
        again = await login(await connect(self, n3), bob.user_id)
        self.assertEqual(again["errno"], Errno.ALREADY_ONLINE)
        await bob.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        friend = await alice.request({"msgid": MsgId.ADD_FRIEND, "friendid": bob.user_id},
                                     MsgId.ADD_FRIEND_ACK)
        self.assertEqual(friend["friend"]["state"], "offline")
        on_n3 = await connect(self, n3)
        reply = await login(on_n3, bob.user_id)
        self.assertEqual(reply["friends"], [{"id": alice.user_id, "name": "alice",
                                             "state": "online"}])

    async def test_simultaneous_logins_on_two_nodes_exactly_one_wins(self):
        cluster = await Cluster(self).start(2)
        first = await connect(self, cluster.nodes[0])
        uid = await register(first, "carol")
        for _ in range(5):
            clients = [await connect(self, n) for n in cluster.nodes]
            for c in clients:
                c.send({"msgid": MsgId.LOGIN, "id": uid, "password": "secret", "proto": 2})
            replies = [await c.recv(MsgId.LOGIN_ACK) for c in clients]
            self.assertEqual(sorted(r["errno"] for r in replies), [0, 2], replies)
            for c in clients:
                c.transport.loseConnection()
                await c.closed
            await deferLater(0.3)

    async def test_a_login_before_the_nodes_first_redis_connection_waits_for_it(self):
        """nginx sends clients to a node as soon as it listens, which is before it has
        reached Redis: such a login used to get errno 130 (seen as a flaky test when the
        machine was loaded). It waits for the connection instead."""
        redis = start_redis()
        self.addCleanup(redis.destroy)
        args = ("--db", mysql_database(), "--redis", redis.url, "--node-id", "1")
        node = await start_node(self, *args)
        uid = await register(await connect(self, node), "carol")
        await node.stop()
        redis.stop()
        await node.start()
        early = await connect(self, node)
        early.send({"msgid": MsgId.LOGIN, "id": uid, "password": "secret", "proto": 2})
        await deferLater(0.5)
        redis.start()
        reply = await early.recv(MsgId.LOGIN_ACK, timeout=10)
        self.assertEqual(reply["errno"], 0, reply)

    async def test_killed_node_users_go_offline_and_their_messages_wait(self):
        cluster = await Cluster(self).start()
        n1, n2, n3 = cluster.nodes
        alice = await cluster.user(n1, "alice")
        carol = await connect(self, n3)
        carol.auto_ack = True
        token = (await login(carol, await register(carol, "carol")))["token"]
        await alice.request({"msgid": MsgId.ADD_FRIEND, "friendid": carol.user_id},
                            MsgId.ADD_FRIEND_ACK)
        alice.send({"msgid": MsgId.ONE_CHAT, "to": carol.user_id, "msg": "before", "cid": "b"})
        await carol.recv(MsgId.ONE_CHAT, msg="before")
        await alice.recv(MsgId.SEND_ACK, cid="b")
        await n3.stop("KILL")
        killed = time.monotonic()

        async def carol_offline():
            reply = await alice.request({"msgid": MsgId.ADD_FRIEND, "friendid": carol.user_id},
                                        MsgId.ADD_FRIEND_ACK)
            return reply["friend"]["state"] == "offline"
        await eventually(carol_offline, 5, "carol shown offline after her node died")
        self.assertLess(time.monotonic() - killed, 5)
        for i in range(5):
            alice.send({"msgid": MsgId.ONE_CHAT, "to": carol.user_id, "msg": f"m{i}",
                        "cid": f"m{i}"})
        for i in range(5):
            await alice.recv(MsgId.SEND_ACK, cid=f"m{i}")

        async def carol_back():
            c = await connect(self, n2)
            reply = await c.request(
                {"msgid": MsgId.LOGIN, "id": carol.user_id, "token": token, "proto": 2},
                                    MsgId.LOGIN_ACK)
            return reply if reply["errno"] == 0 else None
        reply = await eventually(carol_back, 5, "carol resumes with her token on another node")
        self.assertEqual([m["msg"] for m in reply["offlinemsg"]], [f"m{i}" for i in range(5)])

    async def test_redis_restart_loses_nothing_that_was_acknowledged(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        alice = await cluster.user(n1, "alice")
        bob = await cluster.user(n2, "bob")
        acked: set[str] = set()
        sent = 0

        async def burst(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                cid = f"c{sent}"
                sent += 1
                alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": cid, "cid": cid})
                await deferLater(0.01)

        gid = (await alice.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                                   MsgId.CREATE_GROUP_ACK))["groupid"]
        await alice.request({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "alone",
                             "cid": "g0"},
                            MsgId.SEND_ACK)
        await burst(30)
        cluster.redis.stop()
        await burst(30)
        await bob.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        cluster.redis.start()

        async def live_again():
            cid = f"probe{time.monotonic()}"
            alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": cid, "cid": cid})
            try:
                await bob.recv(MsgId.ONE_CHAT, msg=cid, timeout=1)
            except AssertionError:
                return False
            return True
        await eventually(live_again, 20, "delivery between nodes resumes after redis returns")

        async def both_back():  # the probe also passes through the offline store before that
            return all(node.log().count(": connected as") == 2 for node in cluster.nodes)
        await eventually(both_back, 20, "both nodes back on redis, their group caches flushed")
        alice.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "joined in the outage"})
        await bob.recv(MsgId.GROUP_CHAT, msg="joined in the outage")
        await burst(30)
        await deferLater(1)
        acked = {f["cid"] for f in alice.frames if f["msgid"] == MsgId.SEND_ACK}
        live = {f["msg"] for f in bob.frames if f["msgid"] == MsgId.ONE_CHAT}
        await bob.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        later = await login(bob, bob.user_id)
        stored = {m["msg"] for m in later["offlinemsg"]}
        wanted = {f"c{i}" for i in range(sent)}
        self.assertEqual(wanted - acked, set(), "every message got SEND_ACK")
        self.assertEqual(wanted - live - stored, set(), "every acknowledged message arrives")


class DatabaseOutageTests(TestCase):
    timeout = 120

    async def test_mariadb_restart_gives_error_frames_then_service_again(self):
        server = private_mariadb()
        self.addCleanup(server.destroy)
        node = await start_node(self, "--db", mysql_database(server.url))
        alice = await user(self, node, "alice")
        bob = await user(self, node, "bob")
        server.stop()
        refused = await (await connect(self, node)).request(
            {"msgid": MsgId.REG, "name": "carol", "password": "pw"}, MsgId.REG_ACK)
        self.assertEqual(refused["errno"], Errno.UNAVAILABLE)
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "no database needed"})
        self.assertEqual((await bob.recv(MsgId.ONE_CHAT))["msg"], "no database needed")
        logout = await bob.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        self.assertEqual(logout["errno"], Errno.UNAVAILABLE,
                         "tokens could not be revoked: still logged in")
        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice.user_id, "msg": "still here"})
        self.assertEqual((await alice.recv(MsgId.ONE_CHAT))["msg"], "still here")
        server.start()
        carol = await register(await connect(self, node), "carol")
        self.assertGreater(carol, bob.user_id)
        for _ in range(4):
            friend = await alice.request({"msgid": MsgId.ADD_FRIEND, "friendid": carol},
                                         MsgId.ADD_FRIEND_ACK)
            self.assertEqual(friend["errno"], 0, "every pooled connection was revived")

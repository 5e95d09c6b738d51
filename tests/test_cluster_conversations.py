"""Conversation features across a real cluster: two `twistd chatd` processes sharing a private
MariaDB and Redis. Receipts, typing and notices cross nodes; block and member caches on every
node follow a change made on another; history written by one node is read on the other."""

import pymysql
from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from chatd.store.mysql import parse_mysql_url
from tests.harness import connect, deferLater, login, register
from tests.test_cluster import Cluster, eventually


async def _chat_until(sender, to: int, answer: int, msg: str = "let me in") -> int:
    """Send until the answer is `answer` (ERROR or SEND_ACK); its errno. A block or unblock
    reaches the sender's node through redis after the blocker's BLOCK_ACK, so the first
    messages after it may still be answered the old way."""
    for attempt in range(50):
        cid = f"{msg}-{attempt}"
        sender.send({"msgid": MsgId.ONE_CHAT, "to": to, "msg": msg, "cid": cid})
        reply = await sender.recv(cid=cid)
        if reply["msgid"] == answer:
            return reply["errno"]
        await deferLater(0.1)
    raise AssertionError(f"no {answer} answer after 50 messages")


class ClusterConversationTests(TestCase):
    timeout = 120

    async def test_receipts_typing_and_history_cross_nodes(self):
        cluster = await Cluster(self).start(2)
        a = await cluster.user(cluster.nodes[0], "alice")
        b = await cluster.user(cluster.nodes[1], "bob")
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "hi", "cid": "1"})
        got = await b.recv(MsgId.ONE_CHAT)
        await a.recv(MsgId.SEND_ACK, cid="1")
        a.send({"msgid": MsgId.TYPING, "to": b.user_id})
        self.assertEqual(await b.recv(MsgId.TYPING), {"msgid": MsgId.TYPING, "id": a.user_id,
                                                "to": b.user_id})
        b.send({"msgid": MsgId.READ, "peer": a.user_id, "mid": got["mid"]})
        self.assertEqual(await a.recv(MsgId.READ), {"msgid": MsgId.READ, "peer": a.user_id,
                                              "mid": got["mid"], "id": b.user_id})

        async def kept():
            page = await b.request({"msgid": MsgId.HISTORY, "peer": a.user_id}, MsgId.HISTORY_ACK)
            return [m["mid"] for m in page["messages"]]
        self.assertEqual(await eventually(kept, 5, "history written by the other node"),
                         [got["mid"]])

    async def test_a_block_made_on_one_node_holds_on_the_other(self):
        cluster = await Cluster(self).start(2)
        a = await cluster.user(cluster.nodes[0], "alice")
        b = await cluster.user(cluster.nodes[1], "bob")
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        await b.request({"msgid": MsgId.BLOCK, "userid": a.user_id, "block": True}, MsgId.BLOCK_ACK)
        self.assertEqual(await _chat_until(a, b.user_id, MsgId.ERROR), 161)
        friends = (await a.request({"msgid": MsgId.FRIEND_LIST}, MsgId.FRIEND_LIST_ACK))["friends"]
        self.assertEqual(friends[0]["state"], "offline")
        await b.request({"msgid": MsgId.BLOCK, "userid": a.user_id, "block": False},
                        MsgId.BLOCK_ACK)
        await _chat_until(a, b.user_id, MsgId.SEND_ACK, "thanks")
        await b.recv(MsgId.ONE_CHAT, msg="thanks")

    async def test_member_caches_on_every_node_follow_kick_and_leave(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        a = await cluster.user(n1, "alice")
        b = await cluster.user(n2, "bob")
        c = await cluster.user(n2, "carol")
        gid = (await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                               MsgId.CREATE_GROUP_ACK))["groupid"]
        for m in (b, c):
            await m.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        for sender, others in ((a, (b, c)), (c, (a, b))):  # both nodes cache the members
            sender.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "all", "cid": "all"})
            for o in others:
                await o.recv(MsgId.GROUP_CHAT, msg="all")
            await sender.recv(MsgId.SEND_ACK, cid="all")
        await a.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid, "userid": b.user_id},
                        MsgId.KICK_MEMBER_ACK)
        self.assertEqual(await b.recv(MsgId.NOTICE), {"msgid": MsgId.NOTICE, "kind": "kicked",
                                                "groupid": gid})
        c.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "after kick", "cid": "k"})
        await a.recv(MsgId.GROUP_CHAT, msg="after kick")
        await c.recv(MsgId.SEND_ACK, cid="k")
        self.assertEqual([f for f in await b.quiet() if f["msgid"] == MsgId.GROUP_CHAT], [])
        await c.request({"msgid": MsgId.LEAVE_GROUP, "groupid": gid}, MsgId.LEAVE_GROUP_ACK)
        a.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "alone", "cid": "l"})
        await a.recv(MsgId.SEND_ACK, cid="l")
        self.assertEqual([f for f in await c.quiet() if f["msgid"] == MsgId.GROUP_CHAT], [])

    async def test_a_message_stored_on_one_node_reaches_a_login_on_the_other(self):
        """As in test_scenarios, across nodes: the store on the sender's node commits after
        the login on the other node read the offline messages; the announcement on the
        user's channel makes that node look again."""
        cluster = await Cluster(self).start(2)
        a = await cluster.user(cluster.nodes[0], "alice")
        c = await connect(self, cluster.nodes[1])
        bob = await register(c, "bob")
        lock = pymysql.connect(**parse_mysql_url(cluster.db))
        self.addCleanup(lock.close)
        with lock.cursor() as cursor:
            cursor.execute("SELECT id FROM User WHERE id = %s FOR UPDATE", (bob,))
        a.send({"msgid": MsgId.ONE_CHAT, "to": bob, "msg": "while you log in", "cid": "w"})
        await deferLater(0.3)
        self.assertEqual((await login(c, bob))["offlinemsg"], [])
        lock.commit()
        self.assertEqual((await c.recv(MsgId.ONE_CHAT))["msg"], "while you log in")

    async def test_a_block_made_while_redis_is_away_holds_once_it_is_back(self):
        cluster = await Cluster(self).start(2)
        a = await cluster.user(cluster.nodes[0], "alice")
        b = await cluster.user(cluster.nodes[1], "bob")
        cluster.redis.stop()
        await b.request({"msgid": MsgId.BLOCK, "userid": a.user_id, "block": True}, MsgId.BLOCK_ACK)
        cluster.redis.start()

        probes = iter(range(1000))

        async def refused():
            cid = f"probe{next(probes)}"
            a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "?", "cid": cid})
            try:
                return (await a.recv(cid=cid, msgid=None, timeout=2)).get("errno") == Errno.BLOCKED
            except AssertionError:  # neither refused nor acknowledged yet
                return False
        await eventually(refused, 20, "the block reaches the other node after redis returns")

"""Group fan-out across nodes, which finds the members' nodes from the session claims every
node hears (chatd/cluster/locations.py): members who log out, log in and move between nodes while
messages flow, and a node started after the others, get every message once."""

import ujson
from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.harness import connect, deferLater, login, register
from tests.nodeproc import start_node
from tests.test_cluster import Cluster


class GroupAcrossNodesTests(TestCase):
    timeout = 180

    async def _members(self, cluster: Cluster, places: list, names: list[str]) -> tuple:
        """Original-dialect members logged in at `places`, all in one group; (clients, gid)."""
        clients = []
        for place, name in zip(places, names, strict=True):
            client = await connect(self, place)
            await login(client, await register(client, name), proto=None)
            clients.append(client)
        gid = (await clients[0].request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                                        MsgId.CREATE_GROUP_ACK))["groupid"]
        for client in clients[1:]:
            await client.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        return clients, gid

    async def test_members_moving_between_nodes_get_every_message_once(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        senders, gid = await self._members(
            cluster, [n1, n2, n1, n2, n1, n2], ["s1", "s2", "m1", "m2", "m3", "m4"])
        movers = senders[2:]
        seen: dict[int, list[str]] = {m.user_id: [] for m in movers}

        def collect(mover) -> None:
            seen[mover.user_id] += [f["msg"] for f in mover.frames
                                    if f["msgid"] == MsgId.GROUP_CHAT]
            mover.frames.clear()

        sent = []
        for turn in range(8):
            for i, sender in enumerate(senders[:2]):
                text = f"t{turn}s{i}"
                sender.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": text})
                sent.append(text)
            for k, mover in enumerate(movers):
                if (turn + k) % 2:
                    continue
                await mover.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
                collect(mover)
                mover.transport.loseConnection()
                await mover.closed
                # log in again on the other node while the senders' messages are on the way
                place = n2 if (turn + k) % 4 == 0 else n1
                again = await connect(self, place)
                reply = await login(again, mover.user_id, proto=None)
                self.assertEqual(reply["errno"], 0, reply)
                # the original dialect's stored frames are JSON text
                stored = [ujson.loads(m) for m in reply.get("offlinemsg", [])]
                seen[mover.user_id] += [m["msg"] for m in stored]
                movers[k] = again
            await deferLater(0.05)
        await deferLater(2)
        for mover in movers:
            collect(mover)
        for user_id, texts in seen.items():
            self.assertEqual(sorted(texts), sorted(sent), f"user {user_id} got each once")

    async def test_a_node_started_after_the_others_delivers_both_ways(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        (a, b, c), gid = await self._members(cluster, [n1, n2, n2], ["a", "b", "c"])
        n3 = await start_node(self, "--db", cluster.db, "--redis", cluster.redis.url,
                              "--node-id", "3", "--ack-timeout", "2")
        late = await connect(self, n3)
        await login(late, await register(late, "late"), proto=None)
        await late.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        for turn in range(4):
            late.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": f"late{turn}"})
            for member in (a, b, c):
                await member.recv(MsgId.GROUP_CHAT, msg=f"late{turn}")
            a.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": f"a{turn}"})
            for member in (b, c, late):
                await member.recv(MsgId.GROUP_CHAT, msg=f"a{turn}")
            # c moves between the old nodes: the late node must follow
            await c.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
            c.transport.loseConnection()
            await c.closed
            moved = await connect(self, n1 if turn % 2 == 0 else n2)
            self.assertEqual((await login(moved, c.user_id, proto=None))["errno"], 0)
            c = moved
        for member in (a, b, c, late):
            self.assertEqual([f for f in await member.quiet(0.5) if f["msgid"] == MsgId.GROUP_CHAT],
                             [], "no copy twice")

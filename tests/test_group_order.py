"""One sender's group messages keep their order (docs/protocol.md, *Delivery*: "Messages from
one sender reach an online recipient in the order they were sent"): a burst of GROUP_CHAT
frames written at once, to a group whose members the node has not loaded yet (a new group,
or one whose members just changed), reaches every member in send order, gets `mid`s in send
order, and is listed by HISTORY in send order.

On MariaDB, whose connection pool answers concurrent queries in any order (SQLite's single
connection would hide it), with `twistd chatd` processes: one node, and two nodes with
members on both. Each test repeats its burst a few times, since a reordering is a race."""

from typing import Any

import ujson
from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.harness import Client, user
from tests.nodeproc import start_node
from tests.servers import mysql_database
from tests.test_cluster import Cluster

GROUP_CHAT, SEND_ACK = MsgId.GROUP_CHAT, MsgId.SEND_ACK
HISTORY, HISTORY_ACK = MsgId.HISTORY, MsgId.HISTORY_ACK
BURST = 50
ROUNDS = 4
ARRIVAL_WAIT = 15.0  # for each message of a burst (they come at once when all is well)


class GroupOrderTests(TestCase):
    timeout = 120

    async def _member(self, where: Any, name: str, proto: int | None) -> Client:
        """A registered, logged-in user (proto 2 acknowledges what it gets)."""
        client = await user(self, where, name, proto=proto)
        client.auto_ack = proto == 2
        return client

    async def _group(self, creator: Client, members: list[Client], name: str) -> int:
        gid = (await creator.request({"msgid": 8, "groupname": name}, 13))["groupid"]
        for member in members:
            await self._join(member, gid)
        return gid

    async def _join(self, member: Client, gid: int) -> None:
        joined = await member.request({"msgid": 9, "groupid": gid}, 14)
        self.assertEqual(joined["errno"], 0, joined)

    async def _burst(self, creator: Client, proto: int | None, gid: int, members: list[Client],
                     label: str) -> None:
        """The creator writes BURST messages "0".."49" at once (proto 2 with cids); every
        member gets them in that order with increasing mids, the proto-2 creator gets a
        SEND_ACK errno 0 for each with increasing mids, and HISTORY lists them in order."""
        sent = [str(i) for i in range(BURST)]
        cids = [f"{label}.{i + 1}" for i in range(BURST)]
        frames = []
        for text, cid in zip(sent, cids, strict=True):
            frame = {"msgid": GROUP_CHAT, "groupid": gid, "msg": text}
            if proto == 2:
                frame["cid"] = cid
            frames.append(ujson.dumps(frame).encode() + b"\n")
        creator.send(b"".join(frames))
        for member in members:
            got = [await member.recv(GROUP_CHAT, timeout=ARRIVAL_WAIT, groupid=gid)
                   for _ in sent]
            self._in_order([f["msg"] for f in got], f"{label}: member {member.user_id} got")
            self._increasing([f["mid"] for f in got], f"{label}: mids member {member.user_id} got")
        if proto == 2:
            acks = [await creator.recv(SEND_ACK, timeout=ARRIVAL_WAIT, cid=cid) for cid in cids]
            self.assertEqual([a["errno"] for a in acks], [0] * BURST, acks)
            self._increasing([a["mid"] for a in acks], f"{label}: mids of the SEND_ACKs")
        page = await creator.request({"msgid": HISTORY, "groupid": gid, "limit": 100},
                                     HISTORY_ACK)
        kept = [m["msg"] for m in page["messages"]][-BURST:]
        self._in_order(kept, f"{label}: HISTORY listed")

    def _in_order(self, texts: list[str], what: str) -> None:
        if texts != [str(i) for i in range(BURST)]:
            self.fail(f"{what} the burst sent as 0..{BURST - 1} in the order "
                      f"{','.join(texts)}")

    def _increasing(self, mids: list[int], what: str) -> None:
        """mids listed in send order must increase; else the send order they give."""
        self._in_order([str(i) for i in sorted(range(len(mids)), key=mids.__getitem__)],
                       f"{what} (sorted by mid)")

    async def _new_groups(self, creator_at: Any, member_at: list[Any], proto: int | None
                          ) -> None:
        creator = await self._member(creator_at, "creator", proto)
        members = [await self._member(where, f"member{i}", (2, None)[i % 2])
                   for i, where in enumerate(member_at)]
        for r in range(ROUNDS):
            gid = await self._group(creator, members, f"new{r}")
            await self._burst(creator, proto, gid, members, f"round {r}")

    async def _after_joins(self, creator_at: Any, member_at: list[Any], join_at: Any) -> None:
        """The node knows the members (a message went out), then someone joins (on the
        creator's node, which forgets the members at once) and the creator writes a burst
        right away, every round."""
        creator = await self._member(creator_at, "creator", 2)
        members = [await self._member(where, f"member{i}", (2, None)[i % 2])
                   for i, where in enumerate(member_at)]
        gid = await self._group(creator, members, "warm")
        creator.send({"msgid": GROUP_CHAT, "groupid": gid, "msg": "warm", "cid": "warm"})
        for member in members:
            await member.recv(GROUP_CHAT, msg="warm")
        await creator.recv(SEND_ACK, cid="warm")
        for r in range(ROUNDS):
            joiner = await self._member(join_at, f"joiner{r}", (2, None)[r % 2])
            await self._join(joiner, gid)
            members.append(joiner)
            await self._burst(creator, 2, gid, members, f"after join {r}")

    async def _one_node(self) -> Any:
        return await start_node(self, "--db", mysql_database(), "--ack-timeout", "2")

    async def test_a_new_groups_burst_keeps_its_order_on_one_node(self):
        node = await self._one_node()
        await self._new_groups(node, [node] * 3, 2)

    async def test_a_new_groups_burst_keeps_its_order_on_one_node_original_dialect(self):
        node = await self._one_node()
        await self._new_groups(node, [node] * 3, None)

    async def test_a_burst_right_after_a_join_keeps_its_order_on_one_node(self):
        node = await self._one_node()
        await self._after_joins(node, [node] * 3, node)

    async def test_a_new_groups_burst_keeps_its_order_across_two_nodes(self):
        n1, n2 = (await Cluster(self).start(2)).nodes
        await self._new_groups(n1, [n1, n2, n2], 2)

    async def test_a_new_groups_burst_keeps_its_order_across_two_nodes_original_dialect(self):
        n1, n2 = (await Cluster(self).start(2)).nodes
        await self._new_groups(n1, [n1, n2, n2], None)

    async def test_a_burst_right_after_a_join_keeps_its_order_across_two_nodes(self):
        n1, n2 = (await Cluster(self).start(2)).nodes
        await self._after_joins(n1, [n1, n2, n2], n1)

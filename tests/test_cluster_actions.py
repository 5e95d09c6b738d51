"""Message actions across a real cluster (MariaDB, Redis, `twistd chatd` processes): the
sender's devices and the participants on different nodes, an offline participant, and a
recall racing the message it names while that message is still unacknowledged on another
node."""

from typing import Any

from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.harness import connect, device, register
from tests.test_cluster import Cluster, eventually

GROUP_CHAT, ONE_CHAT = MsgId.GROUP_CHAT, MsgId.ONE_CHAT


def texts(frames: list[dict[str, Any]]) -> str:
    return str(frames)


async def arrived(client: Any, msgid: int, mid: int) -> list[int]:
    """Once a frame `msgid` about `mid` has arrived: the msgids of the frames about `mid`
    in the order they arrived (none claimed by a test yet)."""
    async def there() -> bool:
        return any(f["msgid"] == msgid and f.get("mid") == mid for f in client.frames)
    await eventually(there, 10, f"{msgid} about {mid}")
    return [f["msgid"] for f in client.frames if f.get("mid") == mid]


class ClusterActionTests(TestCase):
    timeout = 120

    async def test_group_edit_recall_react_hide_across_nodes_with_an_offline_member(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        alice_id = await register(await connect(self, n1), "alice")
        phone, _ = await device(self, n1, alice_id, "phone")
        laptop, _ = await device(self, n2, alice_id, "laptop")
        bob = await cluster.user(n2, "bob")
        carol = await cluster.user(n1, "carol")
        gid = (await phone.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                   MsgId.CREATE_GROUP_ACK))["groupid"]
        for m in (bob, carol):
            await m.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        carol.transport.loseConnection()
        await carol.closed

        phone.send({"msgid": GROUP_CHAT, "groupid": gid, "msg": "draft one", "cid": "d"})
        mid = (await laptop.recv(GROUP_CHAT, msg="draft one"))["mid"]
        edit = await laptop.request({"msgid": MsgId.EDIT, "mid": mid, "msg": "final one"},
                                    MsgId.EDIT_ACK)  # at once, from the other node
        self.assertEqual(edit["errno"], 0)
        self.assertEqual(await arrived(bob, MsgId.EDITED, mid), [GROUP_CHAT, MsgId.EDITED])
        for c in (bob, phone):
            got = await c.recv(MsgId.EDITED, mid=mid)
            self.assertEqual((got["msg"], got["groupid"], got["edited"]),
                             ("final one", gid, edit["edited"]))

        react = await bob.request({"msgid": MsgId.REACT, "mid": mid, "emoji": "🎉"},
                                  MsgId.REACT_ACK)
        self.assertEqual(react["errno"], 0)
        for c in (phone, laptop):
            got = await c.recv(MsgId.REACTION, mid=mid)
            self.assertEqual((got["id"], got["emoji"], got["on"]), (bob.user_id, "🎉", True))
        page = await phone.request({"msgid": MsgId.HISTORY, "groupid": gid},
                                   MsgId.HISTORY_ACK)
        self.assertEqual([(m["msg"], m["reactions"]) for m in page["messages"]],
                         [("final one", {"🎉": [bob.user_id]})])

        phone.send({"msgid": GROUP_CHAT, "groupid": gid, "msg": "wrong group!", "cid": "w"})
        wrong = (await bob.recv(GROUP_CHAT, msg="wrong group!"))["mid"]
        await laptop.recv(GROUP_CHAT, mid=wrong)
        recall = await laptop.request({"msgid": MsgId.RECALL, "mid": wrong}, MsgId.RECALL_ACK)
        self.assertEqual(recall["errno"], 0)
        for c in (bob, phone):
            got = await c.recv(MsgId.RECALLED, mid=wrong)
            self.assertEqual((got["by"], got["name"], got["groupid"]), (alice_id, "alice", gid))

        hide = await bob.request({"msgid": MsgId.HIDE, "mid": mid}, MsgId.HIDE)
        self.assertEqual(hide["errno"], 0)
        bobs = await bob.request({"msgid": MsgId.HISTORY, "groupid": gid}, MsgId.HISTORY_ACK)
        self.assertEqual([m["mid"] for m in bobs["messages"]], [wrong])

        back, reply = await device(self, n2, carol.user_id, "tablet")
        self.assertNotIn("wrong group!", texts(reply["offlinemsg"]))
        self.assertNotIn("draft one", texts(reply["offlinemsg"]))
        kept = {f["mid"]: f for f in reply["offlinemsg"] if f["msgid"] == GROUP_CHAT}
        self.assertEqual(kept[mid]["msg"], "final one")
        self.assertEqual([f["mid"] for f in reply["offlinemsg"] if f["msgid"] == MsgId.RECALLED],
                         [wrong])
        for frame in ({"msgid": MsgId.HISTORY, "groupid": gid}, {"msgid": MsgId.SYNC, "after": 0}):
            page = await back.request(frame, frame["msgid"] + 1)
            self.assertNotIn("wrong group!", texts(page["messages"]))
            self.assertEqual([m["mid"] for m in page["messages"]], [mid, wrong])

    async def test_a_recall_never_overtakes_its_message_still_unacknowledged_elsewhere(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        alice_id = await register(await connect(self, n1), "alice")
        phone, _ = await device(self, n1, alice_id, "phone")
        laptop, _ = await device(self, n2, alice_id, "laptop")
        bob_id = await register(await connect(self, n2), "bob")
        bob, _ = await device(self, n2, bob_id, "desk")
        bob.auto_ack = False  # the message stays in flight on bob's node

        phone.send({"msgid": ONE_CHAT, "to": bob_id, "msg": "oops", "cid": "o"})
        mid = (await laptop.recv(ONE_CHAT, msg="oops"))["mid"]
        recall = await laptop.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        self.assertEqual(recall["errno"], 0)
        self.assertEqual(await arrived(bob, MsgId.RECALLED, mid), [ONE_CHAT, MsgId.RECALLED])

        bob.transport.loseConnection()  # neither was acknowledged: both are stored
        await bob.closed
        again, reply = await device(self, n1, bob_id, "desk")
        self.assertNotIn("oops", texts(reply["offlinemsg"]))
        shown = [(f["msgid"], f["mid"], f.get("recalled")) for f in reply["offlinemsg"]]
        self.assertEqual(shown, [(ONE_CHAT, mid, True), (MsgId.RECALLED, mid, None)])

"""The account's owner across real nodes (MariaDB, Redis, `twistd chatd` processes): a
password change ends the account's sessions on the other node, and friend requests and their
answers reach users online on the other node."""

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import connect, device, login, register
from tests.test_cluster import Cluster, eventually


class ClusterAccountTests(TestCase):
    timeout = 120

    async def test_a_password_change_ends_the_devices_on_the_other_node(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        alice_id = await register(await connect(self, n1), "alice")
        phone, _ = await device(self, n1, alice_id, "phone")
        laptop, _ = await device(self, n2, alice_id, "laptop")
        tablet, _ = await device(self, n2, alice_id, "tablet")
        ack = await phone.request({"msgid": MsgId.SET_PASSWORD, "old": "secret", "new": "better"},
                                  MsgId.SET_PASSWORD_ACK)
        self.assertEqual(ack["errno"], 0)
        for other in (laptop, tablet):
            self.assertEqual(await other.recv(MsgId.NOTICE),
                             {"msgid": MsgId.NOTICE, "kind": "password_changed"})
            await other.closed
        listed = await phone.request({"msgid": MsgId.DEVICES}, MsgId.DEVICES_ACK)
        self.assertEqual([d["device"] for d in listed["devices"]], ["phone"],
                         "an ended device's connection closes only once its slot is free")
        again = await connect(self, n2)
        self.assertEqual((await login(again, alice_id, "secret"))["errno"], Errno.BAD_LOGIN)
        resumed = await again.request({"msgid": MsgId.LOGIN, "id": alice_id, "proto": 2,
                                       "token": ack["token"], "device": "laptop"},
                                      MsgId.LOGIN_ACK)
        self.assertEqual(resumed["errno"], 0, "the asking device's token works on any node")

    async def test_a_friend_request_reaches_the_other_node_and_so_does_the_answer(self):
        cluster = await Cluster(self).start(2, "--friend-requests", "approve")
        n1, n2 = cluster.nodes
        alice = await cluster.user(n1, "alice")
        bob = await cluster.user(n2, "bob")
        sent = await alice.request({"msgid": MsgId.ADD_FRIEND, "friendid": bob.user_id},
                                   MsgId.ADD_FRIEND_ACK)
        self.assertEqual(sent["errno"], Errno.REQUEST_SENT)
        asked = await bob.recv(MsgId.FRIEND_REQUEST)
        self.assertEqual((asked["id"], asked["name"]), (alice.user_id, "alice"))
        ack = await bob.request({"msgid": MsgId.ANSWER_REQUEST, "userid": alice.user_id,
                                 "accept": True}, MsgId.ANSWER_REQUEST_ACK)
        self.assertEqual(ack["friend"], {"id": alice.user_id, "name": "alice",
                                         "state": "online"})
        told = await alice.recv(MsgId.NOTICE)
        self.assertEqual(told["friend"], {"id": bob.user_id, "name": "bob", "state": "online"})
        listed = await alice.request({"msgid": MsgId.FRIEND_LIST}, MsgId.FRIEND_LIST_ACK)
        self.assertEqual([(f["id"], f["state"]) for f in listed["friends"]],
                         [(bob.user_id, "online")])

    async def test_a_role_change_and_a_mute_reach_members_on_both_nodes(self):
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        alice = await cluster.user(n1, "alice")
        bob = await cluster.user(n2, "bob")
        carol = await cluster.user(n1, "carol")
        gid = (await alice.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                   MsgId.CREATE_GROUP_ACK))["groupid"]
        for member in (bob, carol):
            await member.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        bob.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "hello", "cid": "1"})
        await bob.recv(MsgId.SEND_ACK, cid="1")
        await alice.request({"msgid": MsgId.SET_ROLE, "groupid": gid, "userid": carol.user_id,
                             "role": "admin"}, MsgId.SET_ROLE_ACK)
        for member in (alice, bob, carol):
            changed = await member.recv(MsgId.GROUP_CHANGED)
            self.assertEqual(changed["roles"], [{"id": carol.user_id, "role": "admin"}])
        listed = await bob.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK)
        self.assertEqual([(u["id"], u["role"]) for u in listed["groups"][0]["users"]],
                         [(alice.user_id, "owner"), (bob.user_id, "member"),
                          (carol.user_id, "admin")])
        await carol.request({"msgid": MsgId.MUTE_MEMBER, "groupid": gid, "userid": bob.user_id,
                             "until": 2 ** 62}, MsgId.MUTE_MEMBER_ACK)
        await bob.recv(MsgId.GROUP_CHANGED, groupid=gid, by=carol.user_id)

        tries = iter(range(1000))

        async def refused() -> bool:
            cid = f"try{next(tries)}"
            bob.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "try", "cid": cid})
            return (await bob.recv(None, cid=cid)).get("errno") == Errno.MUTED
        await eventually(refused, 5, "bob's node refuses a muted member's message")

"""Several devices of one account (proto 2), as a user sees them over real TCP against a real
node, on SQLite and on a private MariaDB: every device gets every message and a copy of what
the user sent from another, takeover, the device limit, and the original dialect holding its
account alone."""

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import connect, device, login, register, start_node, user
from tests.servers import mysql_database


class Devices:
    """Mixed into a TestCase with a `database()` method; every test starts its own node."""

    def database(self) -> str | None:
        return None

    async def node(self, *args: str):
        return await start_node(self, self.database(), *args)

    async def device(self, node, user_id: int, name: str | None, proto: int = 2):
        return await device(self, node, user_id, name, proto)

    async def test_every_device_gets_messages_and_copies_of_what_the_user_sent(self):
        node = await self.node()
        bob = await user(self, node, "bob")
        bob.auto_ack = True
        alice_id = await register(await connect(self, node), "alice")
        phone, reply = await self.device(node, alice_id, "phone")
        self.assertEqual((reply["errno"], reply["device"]), (0, "phone"))
        laptop, reply = await self.device(node, alice_id, "laptop")
        self.assertEqual((reply["errno"], reply["device"]), (0, "laptop"))
        listed = await laptop.request({"msgid": MsgId.DEVICES}, MsgId.DEVICES_ACK)
        self.assertEqual([d["device"] for d in listed["devices"]], ["laptop", "phone"])

        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice_id, "msg": "to both", "cid": "b1"})
        on_phone = await phone.recv(MsgId.ONE_CHAT, msg="to both")
        on_laptop = await laptop.recv(MsgId.ONE_CHAT, msg="to both")
        self.assertEqual(on_phone["mid"], on_laptop["mid"])
        self.assertEqual((await bob.recv(MsgId.SEND_ACK, cid="b1"))["mid"], on_phone["mid"])

        phone.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "from the phone",
                    "cid": "p1"})
        got = await bob.recv(MsgId.ONE_CHAT, msg="from the phone")
        copy = await laptop.recv(MsgId.ONE_CHAT, msg="from the phone")
        self.assertEqual((copy["mid"], copy["id"], copy["to"]), (got["mid"], alice_id,
                                                                 bob.user_id))
        self.assertEqual((await phone.recv(MsgId.SEND_ACK, cid="p1"))["mid"], got["mid"])
        gid = (await bob.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                 MsgId.CREATE_GROUP_ACK))["groupid"]
        await phone.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        laptop.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "hi team", "cid": "g1"})
        got = await bob.recv(MsgId.GROUP_CHAT, msg="hi team")
        self.assertEqual((await phone.recv(MsgId.GROUP_CHAT, msg="hi team"))["mid"], got["mid"])
        await laptop.recv(MsgId.SEND_ACK, cid="g1")
        for client in (phone, laptop):
            frames = await client.quiet(0.3)
            self.assertEqual([f for f in frames if f["msgid"] in (MsgId.ONE_CHAT,
                                                                  MsgId.GROUP_CHAT)], [],
                             "no device gets a message twice")
            self.assertNotIn("g1", [f.get("cid") for f in frames if f["msgid"] == MsgId.SEND_ACK])

    async def test_a_read_marker_reaches_the_readers_other_devices_and_the_peer(self):
        node = await self.node()
        bob = await user(self, node, "bob")
        alice_id = await register(await connect(self, node), "alice")
        phone, _ = await self.device(node, alice_id, "phone")
        laptop, _ = await self.device(node, alice_id, "laptop")
        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice_id, "msg": "read me", "cid": "r"})
        mid = (await phone.recv(MsgId.ONE_CHAT, msg="read me"))["mid"]
        phone.send({"msgid": MsgId.READ, "peer": bob.user_id, "mid": mid})
        receipt = {"msgid": MsgId.READ, "peer": bob.user_id, "mid": mid, "id": alice_id}
        self.assertEqual(await laptop.recv(MsgId.READ), receipt)
        self.assertEqual(await bob.recv(MsgId.READ), receipt)
        self.assertEqual([f for f in await phone.quiet(0.2) if f["msgid"] == MsgId.READ], [],
                         "the reading device is not told what it did")

    async def test_a_block_holds_for_the_devices_left_when_one_logs_out(self):
        node = await self.node()
        bob = await user(self, node, "bob")
        alice_id = await register(await connect(self, node), "alice")
        phone, _ = await self.device(node, alice_id, "phone")
        laptop, _ = await self.device(node, alice_id, "laptop")
        await bob.request({"msgid": MsgId.BLOCK, "userid": alice_id, "block": True},
                          MsgId.BLOCK_ACK)
        await phone.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        err = await laptop.request({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "hi"},
                                   MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.BLOCKED)

    async def test_a_message_waits_offline_only_when_no_device_is_online(self):
        node = await self.node()
        bob = await user(self, node, "bob")
        bob.auto_ack = True
        alice_id = await register(await connect(self, node), "alice")
        phone, _ = await self.device(node, alice_id, "phone")
        tablet, _ = await self.device(node, alice_id, "tablet")
        tablet.auto_ack = False
        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice_id, "msg": "one acks", "cid": "c1"})
        await tablet.recv(MsgId.ONE_CHAT, msg="one acks")
        await bob.recv(MsgId.SEND_ACK, cid="c1")
        for client in (phone, tablet):
            client.transport.loseConnection()
            await client.closed
        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice_id, "msg": "while away", "cid": "c2"})
        await bob.recv(MsgId.SEND_ACK, cid="c2")
        back, reply = await self.device(node, alice_id, "phone")
        self.assertIn("while away", [m["msg"] for m in reply["offlinemsg"]])

    async def test_naming_an_online_device_takes_it_over(self):
        node = await self.node()
        bob = await user(self, node, "bob")
        alice_id = await register(await connect(self, node), "alice")
        old, _ = await self.device(node, alice_id, "phone")
        new, reply = await self.device(node, alice_id, "phone")
        self.assertEqual(reply["errno"], 0)
        self.assertEqual(await old.recv(MsgId.NOTICE), {"msgid": MsgId.NOTICE,
                                                        "kind": "logged_in_elsewhere"})
        await old.closed
        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice_id, "msg": "to the new phone"})
        await new.recv(MsgId.ONE_CHAT, msg="to the new phone")
        listed = await new.request({"msgid": MsgId.DEVICES}, MsgId.DEVICES_ACK)
        self.assertEqual([d["device"] for d in listed["devices"]], ["phone"])

    async def test_a_login_without_device_does_not_take_the_default_one(self):
        node = await self.node()
        first = await user(self, node, "alice")
        second, reply = await self.device(node, first.user_id, None)
        self.assertEqual(reply["errno"], Errno.ALREADY_ONLINE)
        self.assertEqual(await first.quiet(0.2), [])
        named, reply = await self.device(node, first.user_id, "default")
        self.assertEqual(reply["errno"], 0)
        await first.recv(MsgId.NOTICE, kind="logged_in_elsewhere")

    async def test_one_device_more_than_max_devices_gets_166(self):
        node = await self.node("--max-devices", "3")
        alice_id = await register(await connect(self, node), "alice")
        clients = [(await self.device(node, alice_id, f"d{i}"))[0] for i in range(3)]
        _, reply = await self.device(node, alice_id, "d3")
        self.assertEqual(reply["errno"], Errno.TOO_MANY_DEVICES)
        self.assertIn("errmsg", reply)
        _, reply = await self.device(node, alice_id, "d1")
        self.assertEqual(reply["errno"], 0, "taking over a device is not one more")
        await clients[2].request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        _, reply = await self.device(node, alice_id, "d3")
        self.assertEqual(reply["errno"], 0)

    async def test_the_original_dialect_holds_its_account_alone(self):
        node = await self.node()
        alice_id = await register(await connect(self, node), "alice")
        phone, _ = await self.device(node, alice_id, "phone")
        _, reply = await self.device(node, alice_id, None, proto=1)
        self.assertEqual(reply["errno"], Errno.ALREADY_ONLINE)
        await phone.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        original = await connect(self, node)
        self.assertEqual((await login(original, alice_id, proto=None))["errno"], 0)
        _, reply = await self.device(node, alice_id, "phone")
        self.assertEqual(reply["errno"], Errno.ALREADY_ONLINE)
        _, reply = await self.device(node, alice_id, None)
        self.assertEqual(reply["errno"], Errno.ALREADY_ONLINE)
        self.assertEqual(await original.quiet(0.2), [], "the original session is undisturbed")


class SQLiteDevices(Devices, TestCase):
    """The embedded default store."""


class MySQLDevices(Devices, TestCase):
    """A private MariaDB started by the harness (or CHATD_TEST_MYSQL_URL)."""

    def database(self) -> str:
        if not hasattr(self, "_db"):
            self._db = mysql_database()
        return self._db

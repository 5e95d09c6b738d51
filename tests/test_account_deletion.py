"""Deleting an account (DELETE_ACCOUNT, chatd-admin delete) and exporting a user's data
(chatd-admin export), against a real node on SQLite and on a private MariaDB, the admin API
over real HTTP."""

import json

import ujson
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from chatd.admin_cli import _parser, export_to, request_for
from chatd.messages import Errno, MsgId
from chatd.store.deletion import NAME_HOLD_MS
from tests.harness import connect, device, login, register, serve_web, start_node, user
from tests.servers import mysql_database
from tests.test_operations import TOKEN, http, serve_admin


class Deletion:
    """Mixed into a TestCase with a `database()` method; every test starts its own node."""

    def database(self) -> str | None:
        return None

    async def node(self, *args: str):
        return await start_node(self, self.database(), *args)

    async def world(self, node):
        """alice (phone and laptop), friend of bob, owner of a group with bob and carol; one
        message each way with bob."""
        alice_id = await register(await connect(self, node), "alice")
        phone, _ = await device(self, node, alice_id, "phone")
        laptop, _ = await device(self, node, alice_id, "laptop")
        bob, carol = [await user(self, node, name) for name in ("bob", "carol")]
        for c in (bob, carol):
            c.auto_ack = True
        await phone.request({"msgid": MsgId.ADD_FRIEND, "friendid": bob.user_id},
                            MsgId.ADD_FRIEND_ACK)
        gid = (await phone.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                   MsgId.CREATE_GROUP_ACK))["groupid"]
        for c in (bob, carol):
            await c.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        phone.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "from alice", "cid": "a"})
        await phone.recv(MsgId.SEND_ACK, cid="a")
        bob.send({"msgid": MsgId.ONE_CHAT, "to": alice_id, "msg": "from bob", "cid": "b"})
        await bob.recv(MsgId.SEND_ACK, cid="b")
        return alice_id, phone, laptop, bob, carol, gid

    async def assert_deleted(self, node, alice_id, bob, carol, gid) -> None:
        """What the others see of a deleted alice."""
        friends = await bob.request({"msgid": MsgId.FRIEND_LIST}, MsgId.FRIEND_LIST_ACK)
        self.assertEqual(friends["friends"], [])
        groups = await carol.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK)
        self.assertEqual([(u["id"], u["role"]) for u in groups["groups"][0]["users"]],
                         [(bob.user_id, "owner"), (carol.user_id, "member")])
        page = await bob.request({"msgid": MsgId.HISTORY, "peer": alice_id}, MsgId.HISTORY_ACK)
        self.assertEqual([(m["name"], m["msg"]) for m in page["messages"]],
                         [("deleted account", "from alice"), ("bob", "from bob")])
        self.assertEqual((await login(await connect(self, node), alice_id))["errno"],
                         Errno.BAD_LOGIN)
        profile = await bob.request({"msgid": MsgId.GET_PROFILE, "userid": alice_id},
                                    MsgId.GET_PROFILE_ACK)
        self.assertEqual(profile["profile"]["name"], f"deleted account {alice_id}")
        for name in ("alice", "Alice"):
            again = await (await connect(self, node)).request(
                {"msgid": MsgId.REG, "name": name, "password": "x"}, MsgId.REG_ACK)
            self.assertEqual(again["errno"], Errno.NAME_LOOKALIKE, "the name is held a while")
        found = await bob.request({"msgid": MsgId.FIND_USER, "name": "alice"},
                                  MsgId.FIND_USER_ACK)
        self.assertEqual(found["users"], [])

    async def test_a_user_deletes_the_account(self):
        node = await self.node()
        alice_id, phone, laptop, bob, carol, gid = await self.world(node)
        wrong = await phone.request({"msgid": MsgId.DELETE_ACCOUNT, "password": "guess"},
                                    MsgId.DELETE_ACCOUNT_ACK)
        self.assertEqual(wrong["errno"], Errno.WRONG_PASSWORD)
        ack = await phone.request({"msgid": MsgId.DELETE_ACCOUNT, "password": "secret"},
                                  MsgId.DELETE_ACCOUNT_ACK)
        self.assertEqual(ack, {"msgid": MsgId.DELETE_ACCOUNT_ACK, "errno": 0})
        await phone.closed
        self.assertEqual(await laptop.recv(MsgId.NOTICE),
                         {"msgid": MsgId.NOTICE, "kind": "account_deleted"})
        await laptop.closed
        await self.assert_deleted(node, alice_id, bob, carol, gid)

    async def test_the_operator_exports_and_deletes_an_account(self):
        node = await self.node()
        alice_id, phone, laptop, bob, carol, gid = await self.world(node)
        await phone.request({"msgid": MsgId.SETTINGS, "discoverable": False}, MsgId.SETTINGS_ACK)
        base = await serve_admin(self, node)
        status, body = await http(f"{base}/admin/v1/users/{alice_id}/export", token=TOKEN)
        data = ujson.loads(body)
        self.assertEqual(status, 200)
        self.assertEqual(data["profile"], {"id": alice_id, "name": "alice", "bio": ""})
        self.assertEqual(data["settings"], {"friend_requests": "open", "discoverable": False})
        self.assertEqual(data["friends"], [{"id": bob.user_id, "name": "bob"}])
        self.assertEqual(data["groups"], [{"groupid": gid, "groupname": "team",
                                           "groupdesc": "", "role": "owner"}])
        self.assertEqual([m["msg"] for m in data["messages"]], ["from alice"])
        status, body = await http(f"{base}/admin/v1/users/{alice_id}/delete", b"POST",
                                  token=TOKEN, body={})
        self.assertEqual((status, ujson.loads(body)), (200, {"id": alice_id, "deleted": True}))
        for session in (phone, laptop):
            self.assertEqual((await session.recv(MsgId.NOTICE))["kind"], "account_deleted")
            await session.closed
        await self.assert_deleted(node, alice_id, bob, carol, gid)
        status, _ = await http(f"{base}/admin/v1/users/{alice_id}/delete", b"POST",
                               token=TOKEN, body={})
        self.assertEqual(status, 404, "deleted already")
        status, _ = await http(f"{base}/admin/v1/users/9999/export", token=TOKEN)
        self.assertEqual(status, 404)


    async def test_a_deleted_accounts_name_is_free_after_30_days(self):
        node = await self.node()
        carol = await user(self, node, "carol")
        store = node.context.store
        long_ago = node.context.friend_requests.now_ms() - NAME_HOLD_MS - 1000
        self.assertEqual(await store.delete_account(carol.user_id, long_ago), [])
        again = await (await connect(self, node)).request(
            {"msgid": MsgId.REG, "name": "Carol", "password": "x"}, MsgId.REG_ACK)
        self.assertEqual(again["errno"], 0)
        self.assertIsNone(await store.delete_account(carol.user_id), "deleted already")


class SQLiteDeletion(Deletion, TestCase):
    """The embedded default store."""


class MySQLDeletion(Deletion, TestCase):
    """A private MariaDB started by the harness (or CHATD_TEST_MYSQL_URL)."""

    def database(self) -> str:
        if not hasattr(self, "_db"):
            self._db = mysql_database()
        return self._db


class CommandTests(SynchronousTestCase):
    """chatd-admin delete and export."""

    def test_the_requests(self):
        def parsed(*argv: str):
            return request_for(_parser().parse_args(list(argv)), None)[:3]
        self.assertEqual(parsed("delete", "5"), ("POST", "users/5/delete", {}))
        self.assertEqual(parsed("export", "5", "out.json"), ("GET", "users/5/export", None))

    def test_export_writes_the_file(self):
        path = self.mktemp()
        data = {"profile": {"id": 5, "name": "ä"}, "friends": [], "groups": [{}],
                "messages": [{}, {}]}
        self.assertEqual(export_to(path)(data),
                         f"wrote {path} (friends 0, groups 1, messages 2)")
        with open(path, encoding="utf-8") as f:
            self.assertEqual(json.load(f), data)


class DownloadTests(TestCase):
    """GET /export on the web listener: "Download my data"."""

    async def test_a_user_downloads_their_data_with_the_resume_token(self):
        web = await serve_web(self, await start_node(self))
        alice_id = await register(await connect(self, web.node), "alice")
        _, reply = await device(self, web.node, alice_id, "phone")
        token = reply["token"]
        response = await Agent(reactor).request(
            b"GET", f"{web.url}export".encode(),
            Headers({b"authorization": [f"Bearer {token}".encode()]}))
        data = ujson.loads(await readBody(response))
        self.assertEqual((response.code, data["profile"]["name"]), (200, "alice"))
        self.assertEqual(response.headers.getRawHeaders(b"content-disposition"),
                         [f'attachment; filename="chatd-{alice_id}.json"'.encode()])
        for header in ({}, {b"authorization": [b"Bearer 1.2.nonsense"]},
                       {b"authorization": [f"Basic {token}".encode()]}):
            refused = await Agent(reactor).request(b"GET", f"{web.url}export".encode(),
                                                   Headers(header))
            body = ujson.loads(await readBody(refused))
            self.assertEqual((refused.code, body["error"]),
                             (401, "a valid resume token is required"), header)

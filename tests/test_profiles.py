"""Profiles, names that cannot impersonate, and finding people (msgids 62-67) as users see
them over real TCP against a real node, on SQLite and on a private MariaDB."""

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from chatd.names import key
from tests.harness import NodePerTest, connect
from tests.servers import mysql_database


class Profiles(NodePerTest):
    """Mixed into a TestCase with a `database()` method; every test starts its own node."""

    async def register(self, node, name: str) -> dict:
        return await (await connect(self, node)).request(
            {"msgid": MsgId.REG, "name": name, "password": "secret"}, MsgId.REG_ACK)

    def test_look_alike_keys(self):
        for other in ("Alice", "ALICE", "аlice", "ａｌｉｃｅ", "Alicé", "al\u200bice"):
            self.assertEqual(key(other), key("alice"), other)
        self.assertEqual(key("bob0"), key("BOBO"))
        self.assertNotEqual(key("alice"), key("alicia"))

    async def test_registering_a_look_alike_of_a_name_is_refused(self):
        node = await self.node()
        await self.users(node, "alice")
        for name in ("Alice", "аlice", "ALİCE", "alicé"):
            reply = await self.register(node, name)
            self.assertEqual((reply["errno"], reply["errmsg"]),
                             (Errno.NAME_LOOKALIKE, "name is too much like an existing one"),
                             name)
        for name in ("alice", "ａｌｉｃｅ"):
            self.assertEqual((await self.register(node, name))["errno"], Errno.NAME_TAKEN,
                             "the same name once normalised")
        self.assertEqual((await self.register(node, "alicia"))["errno"], 0)

    async def test_a_name_is_kept_normalised(self):
        node = await self.node()
        reply = await self.register(node, "ｂｅｎ")
        self.assertEqual(reply["errno"], 0)
        (carol,) = await self.users(node, "carol")
        profile = await carol.request({"msgid": MsgId.GET_PROFILE, "userid": reply["id"]},
                                      MsgId.GET_PROFILE_ACK)
        self.assertEqual(profile["profile"]["name"], "ben")
        padded = await carol.request({"msgid": MsgId.REG, "name": "\u00a8dan",
                                      "password": "x"}, MsgId.ERROR)
        self.assertEqual((padded["errno"], padded["ref"]), (Errno.OUT_OF_RANGE, MsgId.REG),
                         "NFKC made a blank around it")

    async def test_set_profile_reaches_friends_lists_and_new_messages(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        ack = await a.request({"msgid": MsgId.SET_PROFILE, "name": "Alice B.", "bio": "hi"},
                              MsgId.SET_PROFILE_ACK)
        self.assertEqual(ack, {"msgid": MsgId.SET_PROFILE_ACK, "errno": 0, "profile": {
            "id": a.user_id, "name": "Alice B.", "bio": "hi", "avatar": None,
            "state": "online"}})
        friends = await b.request({"msgid": MsgId.FRIEND_LIST}, MsgId.FRIEND_LIST_ACK)
        self.assertEqual(friends["friends"][0]["name"], "Alice B.")
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "renamed", "cid": "r"})
        self.assertEqual((await b.recv(MsgId.ONE_CHAT))["name"], "Alice B.")
        seen = await b.request({"msgid": MsgId.GET_PROFILE, "userid": a.user_id},
                               MsgId.GET_PROFILE_ACK)
        self.assertEqual((seen["profile"]["bio"], seen["userid"]), ("hi", a.user_id))
        bio_only = await a.request({"msgid": MsgId.SET_PROFILE, "bio": ""},
                                   MsgId.SET_PROFILE_ACK)
        self.assertEqual((bio_only["profile"]["name"], bio_only["profile"]["bio"]),
                         ("Alice B.", ""))
        same = await a.request({"msgid": MsgId.SET_PROFILE, "name": "alice b."},
                               MsgId.SET_PROFILE_ACK)
        self.assertEqual(same["errno"], 0, "one's own name in other letters is no impersonation")

    async def test_set_profile_refusals(self):
        node = await self.node()
        a, _ = await self.users(node, "alice", "bob")
        cases = [({"name": "bob"}, Errno.NAME_TAKEN), ({"name": "В0b"}, Errno.NAME_LOOKALIKE),
                 ({"avatar": {"id": "x"}}, Errno.NO_SUCH_MEDIA)]
        for fields, errno in cases:
            ack = await a.request({"msgid": MsgId.SET_PROFILE, **fields}, MsgId.SET_PROFILE_ACK)
            self.assertEqual(ack["errno"], errno, fields)
        for bad in ({"name": ""}, {"name": " x"}, {"bio": "x" * 501}, {"name": "a\nb"}):
            err = await a.request({"msgid": MsgId.SET_PROFILE, **bad}, MsgId.ERROR)
            self.assertEqual(err["errno"], Errno.OUT_OF_RANGE, bad)
        unknown = await a.request({"msgid": MsgId.GET_PROFILE, "userid": 9999},
                                  MsgId.GET_PROFILE_ACK)
        self.assertEqual(unknown["errno"], Errno.NO_SUCH_USER)
        mine = await a.request({"msgid": MsgId.GET_PROFILE, "userid": a.user_id},
                               MsgId.GET_PROFILE_ACK)
        self.assertEqual(mine["profile"]["name"], "alice", "nothing changed")

    async def test_find_user_finds_discoverable_users_only(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "Bob", "carol")
        found = await a.request({"msgid": MsgId.FIND_USER, "name": "BOB"}, MsgId.FIND_USER_ACK)
        self.assertEqual(found, {"msgid": MsgId.FIND_USER_ACK, "errno": 0, "users": [
            {"id": b.user_id, "name": "Bob", "avatar": None}]})
        await c.request({"msgid": MsgId.SETTINGS, "discoverable": False}, MsgId.SETTINGS_ACK)
        hidden = await a.request({"msgid": MsgId.FIND_USER, "name": "carol"},
                                 MsgId.FIND_USER_ACK)
        nobody = await a.request({"msgid": MsgId.FIND_USER, "name": "nobody"},
                                 MsgId.FIND_USER_ACK)
        self.assertEqual(hidden, nobody, "a hidden name looks like no name")
        self.assertEqual(hidden["users"], [])
        self.assertEqual((await a.request({"msgid": MsgId.FIND_USER, "name": "bo"},
                                          MsgId.FIND_USER_ACK))["users"], [], "exact names only")

    async def test_find_user_default_and_flood(self):
        node = await self.node("--discoverable", "no", "--max-finds", "3")
        a, b = await self.users(node, "alice", "bob")
        self.assertEqual((await a.request({"msgid": MsgId.FIND_USER, "name": "bob"},
                                          MsgId.FIND_USER_ACK))["users"], [])
        await b.request({"msgid": MsgId.SETTINGS, "discoverable": True}, MsgId.SETTINGS_ACK)
        self.assertEqual(len((await a.request({"msgid": MsgId.FIND_USER, "name": "bob"},
                                              MsgId.FIND_USER_ACK))["users"]), 1)
        await a.request({"msgid": MsgId.FIND_USER, "name": "x"}, MsgId.FIND_USER_ACK)
        flood = await a.request({"msgid": MsgId.FIND_USER, "name": "bob"}, MsgId.FIND_USER_ACK)
        self.assertEqual((flood["errno"], "users" in flood), (Errno.FIND_RATE, False))
        self.assertGreater(flood["retry_after"], 0)
        other = await b.request({"msgid": MsgId.FIND_USER, "name": "alice"},
                                MsgId.FIND_USER_ACK)
        self.assertEqual(other["errno"], 0, "counted per user")

    async def test_users_from_before_name_keys_are_found_and_protected(self):
        node = await self.node()
        store = node.context.store
        old = await store.create_user("Olga", "x")  # as a node before name keys made it
        (b,) = await self.users(node, "bob")
        self.assertEqual((await self.register(node, "olga"))["errno"], Errno.NAME_LOOKALIKE)
        found = await b.request({"msgid": MsgId.FIND_USER, "name": "OLGA"}, MsgId.FIND_USER_ACK)
        self.assertEqual([u["id"] for u in found["users"]], [old])


class SQLiteProfiles(Profiles, TestCase):
    """The embedded default store."""


class MySQLProfiles(Profiles, TestCase):
    """A private MariaDB started by the harness (or CHATD_TEST_MYSQL_URL)."""

    def database(self) -> str:
        if not hasattr(self, "_db"):
            self._db = mysql_database()
        return self._db

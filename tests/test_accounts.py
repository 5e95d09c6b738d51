"""The account's owner (msgids 60-85): changing the password, settings, friend requests — as
users see them over real TCP against a real node, on SQLite and on a private MariaDB, with
every refusal."""

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from chatd.store.accounts import REQUEST_LIFETIME_MS
from tests.harness import NodePerTest, connect, device, login, register, user
from tests.servers import mysql_database


class OwnAccount(NodePerTest):
    """Mixed into a TestCase with a `database()` method; every test starts its own node."""

    # SET_PASSWORD

    async def test_a_password_change_ends_the_other_devices_and_keeps_this_one(self):
        node = await self.node()
        alice_id = await register(await connect(self, node), "alice")
        phone, _ = await device(self, node, alice_id, "phone")
        laptop, old = await device(self, node, alice_id, "laptop")
        original, reply = await device(self, node, (await self.users(node, "bob"))[0].user_id,
                                       None, proto=1)
        ack = await phone.request({"msgid": MsgId.SET_PASSWORD, "old": "secret", "new": "better"},
                                  MsgId.SET_PASSWORD_ACK)
        self.assertEqual(ack["errno"], 0)
        self.assertEqual(await laptop.recv(MsgId.NOTICE),
                         {"msgid": MsgId.NOTICE, "kind": "password_changed"})
        await laptop.closed
        self.assertEqual([f for f in await phone.quiet(0.2) if f["msgid"] == MsgId.NOTICE], [])
        again = await connect(self, node)
        stale = await again.request({"msgid": MsgId.LOGIN, "id": alice_id, "token": old["token"],
                                     "proto": 2, "device": "laptop"}, MsgId.LOGIN_ACK)
        self.assertEqual(stale["errno"], Errno.BAD_LOGIN, "the other devices' tokens are revoked")
        self.assertEqual((await login(again, alice_id, "secret"))["errno"], Errno.BAD_LOGIN)
        fresh = await connect(self, node)
        resumed = await fresh.request({"msgid": MsgId.LOGIN, "id": alice_id, "proto": 2,
                                       "token": ack["token"], "device": "phone2"},
                                      MsgId.LOGIN_ACK)
        self.assertEqual(resumed["errno"], 0, "the asking device's new token works")
        self.assertEqual((await login(await connect(self, node), alice_id, "better",
                                      proto=None))["errno"], Errno.ALREADY_ONLINE)
        self.assertTrue(original.connected, "another account's session is untouched")

    async def test_an_original_dialect_session_changes_its_password_without_a_token(self):
        node = await self.node()
        alice_id = await register(await connect(self, node), "alice")
        old_one, _ = await device(self, node, alice_id, None, proto=1)
        ack = await old_one.request({"msgid": MsgId.SET_PASSWORD, "old": "secret",
                                     "new": "better"}, MsgId.SET_PASSWORD_ACK)
        self.assertEqual(ack, {"msgid": MsgId.SET_PASSWORD_ACK, "errno": 0})
        await old_one.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        _, reply = await device(self, node, alice_id, None, proto=1)
        self.assertEqual(reply["errno"], Errno.BAD_LOGIN, "the old password is gone")
        self.assertEqual((await login(old_one, alice_id, "better", proto=None))["errno"], 0)

    async def test_a_wrong_old_password_is_refused_and_throttled_like_a_login(self):
        node = await self.node("--login-failures", "2")
        (alice,) = await self.users(node, "alice")
        for _ in range(2):
            wrong = await alice.request({"msgid": MsgId.SET_PASSWORD, "old": "guess",
                                         "new": "mine"}, MsgId.SET_PASSWORD_ACK)
            self.assertEqual(wrong["errno"], Errno.WRONG_PASSWORD)
            self.assertEqual(wrong["errmsg"], "the password is wrong")
        locked = await alice.request({"msgid": MsgId.SET_PASSWORD, "old": "secret",
                                      "new": "mine"}, MsgId.SET_PASSWORD_ACK)
        self.assertEqual(locked["errno"], Errno.THROTTLED)
        self.assertGreater(locked["retry_after"], 0)
        self.assertEqual((await login(await connect(self, node), alice.user_id))["errno"],
                         Errno.THROTTLED, "the same lock as a login's from this address")
        for bad in ({"old": "", "new": "x"}, {"old": "secret"}, {"old": "s", "new": "x" * 129},
                    {"old": 1, "new": "x"}):
            err = await alice.request({"msgid": MsgId.SET_PASSWORD, **bad}, MsgId.ERROR)
            self.assertIn(err["errno"], (Errno.MISSING_FIELD, Errno.WRONG_TYPE,
                                         Errno.OUT_OF_RANGE), bad)
        self.assertTrue(alice.connected)

    async def test_set_password_needs_a_login(self):
        node = await self.node()
        anon = await connect(self, node)
        err = await anon.request({"msgid": MsgId.SET_PASSWORD, "old": "a", "new": "b"},
                                 MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.NOT_LOGGED_IN)

    # SETTINGS

    async def test_settings_default_from_the_options_and_change_one_at_a_time(self):
        node = await self.node("--friend-requests", "approve", "--discoverable", "no")
        (alice,) = await self.users(node, "alice")
        now = await alice.request({"msgid": MsgId.SETTINGS}, MsgId.SETTINGS_ACK)
        self.assertEqual(now, {"msgid": MsgId.SETTINGS_ACK, "errno": 0,
                               "friend_requests": "approve", "discoverable": False})
        now = await alice.request({"msgid": MsgId.SETTINGS, "discoverable": True},
                                  MsgId.SETTINGS_ACK)
        self.assertEqual((now["friend_requests"], now["discoverable"]), ("approve", True))
        now = await alice.request({"msgid": MsgId.SETTINGS, "friend_requests": "open"},
                                  MsgId.SETTINGS_ACK)
        self.assertEqual((now["friend_requests"], now["discoverable"]), ("open", True))
        bad = await alice.request({"msgid": MsgId.SETTINGS, "friend_requests": "maybe"},
                                  MsgId.SETTINGS_ACK)
        self.assertEqual(bad["errno"], Errno.BAD_SETTING)
        err = await alice.request({"msgid": MsgId.SETTINGS, "discoverable": "yes"}, MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.WRONG_TYPE)
        now = await alice.request({"msgid": MsgId.SETTINGS}, MsgId.SETTINGS_ACK)
        self.assertEqual((now["friend_requests"], now["discoverable"]), ("open", True))

    # friend requests

    async def approving(self, node, name: str):
        (target,) = await self.users(node, name)
        await target.request({"msgid": MsgId.SETTINGS, "friend_requests": "approve"},
                             MsgId.SETTINGS_ACK)
        return target

    async def test_open_is_the_default_and_adds_at_once(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        ack = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                              MsgId.ADD_FRIEND_ACK)
        self.assertEqual((ack["errno"], ack["friend"]["id"]), (0, b.user_id))

    async def test_a_request_is_accepted_and_both_are_friends(self):
        node = await self.node()
        (a,) = await self.users(node, "alice")
        b = await self.approving(node, "bob")
        sent = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                               MsgId.ADD_FRIEND_ACK)
        self.assertEqual((sent["errno"], sent["errmsg"]),
                         (Errno.REQUEST_SENT, "friend request sent: the user must accept it"))
        asked = await b.recv(MsgId.FRIEND_REQUEST)
        self.assertEqual((asked["id"], asked["name"]), (a.user_id, "alice"))
        self.assertIsInstance(asked["time"], int)
        listed = await a.request({"msgid": MsgId.FRIEND_LIST}, MsgId.FRIEND_LIST_ACK)
        self.assertEqual(listed["friends"], [], "not friends before the answer")
        again = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                                MsgId.ADD_FRIEND_ACK)
        self.assertEqual(again["errno"], Errno.REQUEST_SENT)
        self.assertEqual([f for f in await b.quiet(0.2) if f["msgid"] == MsgId.FRIEND_REQUEST],
                         [], "asking again sends no second request")
        ack = await b.request({"msgid": MsgId.ANSWER_REQUEST, "userid": a.user_id,
                               "accept": True}, MsgId.ANSWER_REQUEST_ACK)
        self.assertEqual(ack, {"msgid": MsgId.ANSWER_REQUEST_ACK, "errno": 0,
                               "userid": a.user_id, "accept": True,
                               "friend": {"id": a.user_id, "name": "alice",
                                          "state": "online"}})
        told = await a.recv(MsgId.NOTICE)
        self.assertEqual(told, {"msgid": MsgId.NOTICE, "kind": "friend_added",
                                "friend": {"id": b.user_id, "name": "bob", "state": "online"}})
        for c, other in ((a, b), (b, a)):
            listed = await c.request({"msgid": MsgId.FRIEND_LIST}, MsgId.FRIEND_LIST_ACK)
            self.assertEqual([f["id"] for f in listed["friends"]], [other.user_id])
        gone = await b.request({"msgid": MsgId.ANSWER_REQUEST, "userid": a.user_id,
                                "accept": True}, MsgId.ANSWER_REQUEST_ACK)
        self.assertEqual((gone["errno"], gone["userid"]), (Errno.NO_SUCH_REQUEST, a.user_id))

    async def test_an_offline_target_finds_the_request_at_login_and_declines(self):
        node = await self.node("--friend-requests", "approve")
        a, b = await self.users(node, "alice", "bob")
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        sent = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                               MsgId.ADD_FRIEND_ACK)
        self.assertEqual(sent["errno"], Errno.REQUEST_SENT)
        reply = await login(b, b.user_id)
        self.assertEqual([(r["id"], r["name"]) for r in reply["requests"]],
                         [(a.user_id, "alice")])
        ack = await b.request({"msgid": MsgId.ANSWER_REQUEST, "userid": a.user_id,
                               "accept": False}, MsgId.ANSWER_REQUEST_ACK)
        self.assertEqual((ack["errno"], ack["accept"], "friend" in ack), (0, False, False))
        self.assertEqual([f for f in await a.quiet(0.2) if f["msgid"] == MsgId.NOTICE], [],
                         "the asker is not told of a decline")
        relog = await login(await connect(self, node), b.user_id, proto=2)
        self.assertEqual(relog["errno"], Errno.ALREADY_ONLINE)
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        self.assertEqual((await login(b, b.user_id))["requests"], [])
        self.assertEqual((await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                                          MsgId.ADD_FRIEND_ACK))["errno"], Errno.REQUEST_SENT,
                         "after a decline a new request can be sent")

    async def test_asking_someone_who_asked_you_makes_friends_at_once(self):
        node = await self.node("--friend-requests", "approve")
        a, b = await self.users(node, "alice", "bob")
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        ack = await b.request({"msgid": MsgId.ADD_FRIEND, "friendid": a.user_id},
                              MsgId.ADD_FRIEND_ACK)
        self.assertEqual((ack["errno"], ack["friend"]["id"]), (0, a.user_id))
        self.assertEqual((await a.recv(MsgId.NOTICE))["kind"], "friend_added")
        ack = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                              MsgId.ADD_FRIEND_ACK)
        self.assertEqual(ack["errno"], 0, "friends already: as with open")

    async def test_the_original_dialect_gets_errno_222_and_no_requests_list(self):
        node = await self.node("--friend-requests", "approve")
        (b,) = await self.users(node, "bob")
        a = await user(self, node, "alice", proto=None)
        sent = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                               MsgId.ADD_FRIEND_ACK)
        self.assertEqual(sent, {"msgid": MsgId.ADD_FRIEND_ACK, "errno": Errno.REQUEST_SENT,
                                "errmsg": "friend request sent: the user must accept it"})
        await b.recv(MsgId.FRIEND_REQUEST)
        reply = await login(await connect(self, node), a.user_id, proto=None)
        self.assertNotIn("requests", reply)

    async def test_request_refusals(self):
        node = await self.node("--friend-requests", "approve", "--max-pending-requests", "2")
        a, b, c, d = await self.users(node, "alice", "bob", "carol", "dave")
        await b.request({"msgid": MsgId.BLOCK, "userid": a.user_id, "block": True},
                        MsgId.BLOCK_ACK)
        blocked = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                                  MsgId.ADD_FRIEND_ACK)
        self.assertEqual(blocked["errno"], Errno.BLOCKED)
        self.assertEqual([f for f in await b.quiet(0.2) if f["msgid"] == MsgId.FRIEND_REQUEST],
                         [])
        own = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": a.user_id},
                              MsgId.ADD_FRIEND_ACK)
        self.assertEqual(own["errno"], Errno.SELF_FRIEND)
        for target in (c, d):
            sent = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": target.user_id},
                                   MsgId.ADD_FRIEND_ACK)
            self.assertEqual(sent["errno"], Errno.REQUEST_SENT)
        (e,) = await self.users(node, "erin")
        full = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": e.user_id},
                               MsgId.ADD_FRIEND_ACK)
        self.assertEqual(full["errno"], Errno.TOO_MANY_REQUESTS)
        await c.request({"msgid": MsgId.ANSWER_REQUEST, "userid": a.user_id, "accept": False},
                        MsgId.ANSWER_REQUEST_ACK)
        sent = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": e.user_id},
                               MsgId.ADD_FRIEND_ACK)
        self.assertEqual(sent["errno"], Errno.REQUEST_SENT, "an answer frees a place")
        none = await d.request({"msgid": MsgId.ANSWER_REQUEST, "userid": c.user_id,
                                "accept": True}, MsgId.ANSWER_REQUEST_ACK)
        self.assertEqual(none["errno"], Errno.NO_SUCH_REQUEST)
        err = await d.request({"msgid": MsgId.ANSWER_REQUEST, "userid": a.user_id},
                              MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.MISSING_FIELD)

    async def test_requests_expire_after_30_days(self):
        node = await self.node("--friend-requests", "approve")
        a, b = await self.users(node, "alice", "bob")
        store = node.context.store
        now = node.context.friend_requests.now_ms()
        old = now - REQUEST_LIFETIME_MS - 1000
        await store.request_friend(a.user_id, b.user_id, old, old - REQUEST_LIFETIME_MS, 20)
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        self.assertEqual((await login(b, b.user_id))["requests"], [])
        late = await b.request({"msgid": MsgId.ANSWER_REQUEST, "userid": a.user_id,
                                "accept": True}, MsgId.ANSWER_REQUEST_ACK)
        self.assertEqual(late["errno"], Errno.NO_SUCH_REQUEST)
        sent = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                               MsgId.ADD_FRIEND_ACK)
        self.assertEqual(sent["errno"], Errno.REQUEST_SENT)
        self.assertEqual((await b.recv(MsgId.FRIEND_REQUEST))["id"], a.user_id,
                         "an expired request is asked again, not repeated")


class SQLiteOwnAccount(OwnAccount, TestCase):
    """The embedded default store."""


class MySQLOwnAccount(OwnAccount, TestCase):
    """A private MariaDB started by the harness (or CHATD_TEST_MYSQL_URL)."""

    def database(self) -> str:
        if not hasattr(self, "_db"):
            self._db = mysql_database()
        return self._db

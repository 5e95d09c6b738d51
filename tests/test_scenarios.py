"""The protocol's rules as a user sees them, over real TCP against a real node, once on SQLite
and once on a private MariaDB."""

import pymysql
import ujson
from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from chatd.store.mysql import parse_mysql_url
from tests.harness import connect, deferLater, login, register, start_node, user
from tests.servers import mysql_database


async def stored_offline_becomes_empty(case: TestCase, client, user_id: int) -> None:
    """Log in again until no offline message is left: acknowledged ones are deleted in the
    background (on MySQL maybe after the next login's read); fail after 5 s."""
    for _ in range(25):
        await client.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        left = (await login(client, user_id))["offlinemsg"]
        if not left:
            return
        await deferLater(0.2)
    case.fail(f"{len(left)} offline messages stay stored after their RECV_ACK")


class Scenarios:
    """Mixed into a TestCase with a `database()` method; every test starts its own node."""

    node_args: tuple[str, ...] = ()

    def database(self) -> str | None:
        return None

    async def node(self, *args: str):
        return await start_node(self, self.database(), *self.node_args, *args)

    # accounts

    async def test_register_gives_increasing_ids_and_refuses_taken_names(self):
        node = await self.node()
        c = await connect(self, node)
        first = await register(c, "alice")
        second = await register(c, "bob")
        self.assertGreater(second, first)
        ack = await c.request({"msgid": MsgId.REG, "name": "alice", "password": "x"}, MsgId.REG_ACK)
        self.assertEqual((ack["errno"], ack["id"]), (Errno.NAME_TAKEN, 0))

    async def test_register_limits(self):
        node = await self.node()
        c = await connect(self, node)
        for bad in ({"name": "n" * 51, "password": "pw"}, {"name": "", "password": "pw"},
                    {"name": "ok", "password": "p" * 129}, {"name": "a\x07b", "password": "p"},
                    {"name": "   ", "password": "p"}):
            err = await c.request({"msgid": MsgId.REG, **bad}, MsgId.ERROR)
            self.assertEqual((err["errno"], err["ref"]), (Errno.OUT_OF_RANGE, MsgId.REG), bad)
        self.assertGreater(await register(c, "n" * 50), 0)
        self.assertGreater(await register(c, "中文名字"), 0)

    async def test_login_refuses_wrong_password_unknown_id_and_second_login(self):
        node = await self.node()
        a = await connect(self, node)
        uid = await register(a, "alice")
        self.assertEqual((await login(a, uid, "wrong"))["errno"], Errno.BAD_LOGIN)
        self.assertEqual((await login(a, uid + 1000))["errno"], Errno.BAD_LOGIN)
        self.assertEqual((await login(a, uid))["errno"], 0)
        other = await connect(self, node)
        ack = await login(other, uid)
        self.assertEqual(ack["errno"], Errno.ALREADY_ONLINE)
        self.assertIn("errmsg", ack)
        err = await a.request({"msgid": MsgId.LOGIN, "id": uid, "password": "secret"}, MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.ALREADY_LOGGED_IN)

    async def test_requests_before_login_are_refused(self):
        node = await self.node()
        c = await connect(self, node)
        for msgid in (3, 6, 7, 8, 9, 10, 17):
            err = await c.request({"msgid": msgid, "to": 1, "msg": "x", "friendid": 1,
                                   "groupid": 1, "groupname": "g", "mid": 1}, MsgId.ERROR)
            self.assertEqual((err["errno"], err["ref"]), (Errno.NOT_LOGGED_IN, msgid))
        beat = await c.request({"msgid": MsgId.HEARTBEAT}, MsgId.HEARTBEAT)
        self.assertIsInstance(beat["time"], int)

    async def test_logout_ends_the_session_but_not_the_connection(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        ack = await b.request({"msgid": MsgId.LOGOUT, "id": b.user_id}, MsgId.LOGOUT_ACK)
        self.assertEqual(ack["errno"], 0)
        err = await b.request({"msgid": MsgId.ONE_CHAT, "to": a.user_id, "msg": "x"}, MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.NOT_LOGGED_IN)
        friend = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                                 MsgId.ADD_FRIEND_ACK)
        self.assertEqual(friend["friend"]["state"], "offline")
        self.assertEqual((await login(b, b.user_id))["errno"], 0)

    async def test_disconnect_ends_the_session(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        b.transport.loseConnection()
        await b.closed
        friend = await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                                 MsgId.ADD_FRIEND_ACK)
        self.assertEqual(friend["friend"]["state"], "offline")
        again = await connect(self, node)
        self.assertEqual((await login(again, b.user_id))["errno"], 0)

    async def test_disconnect_during_login_leaves_the_account_free(self):
        node = await self.node()
        c = await connect(self, node)
        uid = await register(c, "alice")
        c.send({"msgid": MsgId.LOGIN, "id": uid, "password": "secret", "proto": 2})
        c.transport.loseConnection()
        await c.closed
        for _ in range(20):
            again = await connect(self, node)
            ack = await login(again, uid)
            if ack["errno"] == 0:
                return
            again.transport.loseConnection()
            await again.closed
        self.fail(f"account stayed online after its connection dropped mid-login: {ack}")

    # login reply

    async def test_login_reply_carries_friends_groups_and_offline_messages(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        c = await connect(self, node)
        carol = await register(c, "carol")
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": carol}, MsgId.ADD_FRIEND_ACK)
        gid = (await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team", "groupdesc": "d"},
                               MsgId.CREATE_GROUP_ACK))["groupid"]
        await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        for text in ("one", "two"):
            a.send({"msgid": MsgId.ONE_CHAT, "to": carol, "msg": text, "cid": text})
            await a.recv(MsgId.SEND_ACK, cid=text)
        ack = await login(c, carol)
        self.assertEqual(ack["name"], "carol")
        self.assertEqual(ack["friends"], [{"id": a.user_id, "name": "alice", "state": "online"}])
        self.assertEqual([m["msg"] for m in ack["offlinemsg"]], ["one", "two"])
        self.assertEqual(ack["groups"], [])
        a_ack = await login(await connect(self, node), a.user_id)
        self.assertEqual(a_ack["errno"], Errno.ALREADY_ONLINE)
        b.transport.loseConnection()
        await b.closed
        again = await login(await connect(self, node), b.user_id)
        self.assertEqual(again["friends"], [{"id": a.user_id, "name": "alice", "state": "online"}])
        self.assertEqual(again["groups"], [{
            "groupid": gid, "groupname": "team", "groupdesc": "d", "users": [
                {"id": a.user_id, "name": "alice", "state": "online", "role": "owner"},
                {"id": b.user_id, "name": "bob", "state": "online", "role": "member"}],
            "role": "member", "announcement": "", "join": "open"}])

    async def test_original_dialect_login_reply(self):
        node = await self.node()
        a = await user(self, node, "alice")
        c = await connect(self, node)
        bob = await register(c, "bob")
        empty = await login(c, bob, proto=None)
        self.assertEqual(set(empty), {"msgid", "errno", "id", "name"})
        await c.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": bob}, MsgId.ADD_FRIEND_ACK)
        gid = (await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g", "groupdesc": "d"},
                               MsgId.CREATE_GROUP_ACK))["groupid"]
        a.send({"msgid": MsgId.ONE_CHAT, "to": bob, "msg": "hi", "cid": "1"})
        await a.recv(MsgId.SEND_ACK)
        full = await login(c, bob, proto=None)
        friend = ujson.loads(full["friends"][0])
        self.assertEqual(friend, {"id": a.user_id, "name": "alice", "state": "online"})
        self.assertEqual(ujson.loads(full["offlinemsg"][0])["msg"], "hi")
        self.assertNotIn("groups", full)
        await c.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        await c.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        full = await login(c, bob, proto=None)
        group = ujson.loads(full["groups"][0])
        self.assertEqual((group["id"], group["groupid"], group["groupname"]), (gid, gid, "g"))
        self.assertEqual([ujson.loads(u)["role"] for u in group["users"]], ["creator", "normal"])
        self.assertNotIn("offlinemsg", full, "the original dialect deletes what it wrote")

    async def test_offline_messages_past_the_login_reply_are_deleted_once_acknowledged(self):
        """The login reply holds the oldest 100; the rest follow as chat frames, and their
        RECV_ACKs delete them too (they were sent again at every login before)."""
        node = await self.node()
        a = await user(self, node, "alice")
        c = await connect(self, node)
        bob = await register(c, "bob")
        for i in range(130):
            a.send({"msgid": MsgId.ONE_CHAT, "to": bob, "msg": str(i), "cid": str(i)})
        for i in range(130):
            await a.recv(MsgId.SEND_ACK, cid=str(i))
        ack = await login(c, bob)
        later = [await c.recv(MsgId.ONE_CHAT) for _ in range(30)]
        self.assertEqual([m["msg"] for m in ack["offlinemsg"] + later],
                         [str(i) for i in range(130)])
        c.send({"msgid": MsgId.RECV_ACK, "mids": [m["mid"] for m in ack["offlinemsg"] + later]})
        await stored_offline_becomes_empty(self, c, bob)

    # friends and groups

    async def test_add_friend_rules(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        self.assertEqual((await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": 99999},
                                          MsgId.ADD_FRIEND_ACK))["errno"], Errno.NO_SUCH_USER)
        self.assertEqual((await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": a.user_id},
                                          MsgId.ADD_FRIEND_ACK))["errno"], Errno.SELF_FRIEND)
        for _ in range(2):
            ack = await a.request({"msgid": MsgId.ADD_FRIEND, "id": a.user_id,
                                   "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
            self.assertEqual(ack["friend"], {"id": b.user_id, "name": "bob", "state": "online"})
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        ack = await login(b, b.user_id)
        self.assertEqual(ack["friends"], [{"id": a.user_id, "name": "alice", "state": "online"}])

    async def test_group_rules(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        ack = await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                              MsgId.CREATE_GROUP_ACK)
        gid = ack["groupid"]
        self.assertGreater(gid, 0)
        taken = await b.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team", "groupdesc": ""},
                                MsgId.CREATE_GROUP_ACK)
        self.assertEqual((taken["errno"], taken["groupid"]), (Errno.GROUP_NAME_TAKEN, 0))
        self.assertEqual((await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid + 99},
                                          MsgId.ADD_GROUP_ACK))["errno"], Errno.NO_SUCH_GROUP)
        for _ in range(2):
            joined = await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid},
                                     MsgId.ADD_GROUP_ACK)
            self.assertEqual([(u["id"], u["role"]) for u in joined["group"]["users"]],
                             [(a.user_id, "owner"), (b.user_id, "member")])

    async def test_friend_and_group_lists_are_current(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        old = await user(self, node, "carol", proto=None)
        self.assertEqual((await a.request({"msgid": MsgId.FRIEND_LIST},
                                          MsgId.FRIEND_LIST_ACK))["friends"], [])
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        gid = (await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g", "groupdesc": "d"},
                               MsgId.CREATE_GROUP_ACK))["groupid"]
        await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        friends = await a.request({"msgid": MsgId.FRIEND_LIST, "id": a.user_id},
                                  MsgId.FRIEND_LIST_ACK)
        self.assertEqual(friends["friends"], [{"id": b.user_id, "name": "bob",
                                               "state": "offline"}])
        groups = (await a.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK))["groups"]
        self.assertEqual([(u["id"], u["state"]) for u in groups[0]["users"]],
                         [(a.user_id, "online"), (b.user_id, "offline")])
        await old.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        listed = await old.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK)
        self.assertEqual(ujson.loads(listed["groups"][0])["id"], gid)
        self.assertEqual((await old.request({"msgid": MsgId.FRIEND_LIST},
                                            MsgId.FRIEND_LIST_ACK))["friends"], [])

    # one-to-one chat

    async def test_chat_to_online_user_and_send_ack_after_recv_ack(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        a.send({"msgid": MsgId.ONE_CHAT, "id": a.user_id, "name": "mallory", "toid": b.user_id,
                "msg": "hi",
                "time": "t1", "cid": "c1"})
        got = await b.recv(MsgId.ONE_CHAT)
        self.assertEqual((got["id"], got["name"], got["msg"], got["time"], got["cid"]),
                         (a.user_id, "alice", "hi", "t1", "c1"))
        self.assertEqual(await a.quiet(), [], "no SEND_ACK before the recipient acknowledges")
        b.send({"msgid": MsgId.RECV_ACK, "mid": got["mid"]})
        ack = await a.recv(MsgId.SEND_ACK)
        self.assertEqual((ack["cid"], ack["mid"], ack["errno"]), ("c1", got["mid"], 0))

    async def test_chat_to_original_dialect_user_is_acked_when_written(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob", proto=None)
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "hi", "cid": "c1"})
        got = await b.recv(MsgId.ONE_CHAT)
        ack = await a.recv(MsgId.SEND_ACK, cid="c1")
        self.assertEqual(ack["mid"], got["mid"])
        b.send({"msgid": MsgId.ONE_CHAT, "id": b.user_id, "toid": a.user_id, "msg": "back",
                "time": "t"},
               end=b"\0")
        self.assertEqual((await a.recv(MsgId.ONE_CHAT))["msg"], "back")
        self.assertEqual(await b.quiet(), [], "no SEND_ACK for the original dialect")

    async def test_chat_to_offline_user_is_stored_until_acknowledged(self):
        node = await self.node()
        a = await user(self, node, "alice")
        c = await connect(self, node)
        bob = await register(c, "bob")
        for i in range(3):
            a.send({"msgid": MsgId.ONE_CHAT, "to": bob, "msg": f"m{i}", "cid": f"c{i}"})
        for i in range(3):
            await a.recv(MsgId.SEND_ACK, cid=f"c{i}")
        first = await login(c, bob)
        self.assertEqual([m["msg"] for m in first["offlinemsg"]], ["m0", "m1", "m2"])
        await c.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        second = await login(c, bob)
        self.assertEqual(second["offlinemsg"], first["offlinemsg"], "unacknowledged: sent again")
        c.send({"msgid": MsgId.RECV_ACK, "mids": [m["mid"] for m in second["offlinemsg"]]})
        await c.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        self.assertEqual((await login(c, bob))["offlinemsg"], [])

    async def test_chat_refusals(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        err = await a.request({"msgid": MsgId.ONE_CHAT, "to": 99999, "msg": "x", "cid": "c9"},
                              MsgId.ERROR)
        self.assertEqual((err["errno"], err["ref"], err["cid"]),
                         (Errno.NO_SUCH_USER, MsgId.ONE_CHAT, "c9"))
        err = await a.request({"msgid": MsgId.ONE_CHAT, "id": b.user_id, "to": b.user_id,
                               "msg": "x"},
                              MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.ID_MISMATCH)
        err = await a.request({"msgid": MsgId.ONE_CHAT, "to": b.user_id}, MsgId.ERROR)
        self.assertEqual((err["errno"], err["errmsg"]), (Errno.MISSING_FIELD, "missing field: msg"))
        err = await a.request({"msgid": MsgId.ONE_CHAT, "to": str(b.user_id), "msg": "x"},
                              MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.WRONG_TYPE)
        err = await a.request({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "x" * 32769},
                              MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.OUT_OF_RANGE)
        self.assertEqual(await b.quiet(), [], "refused messages reach nobody")

    async def test_repeated_cid_is_delivered_once(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "once", "cid": "same"})
        got = await b.recv(MsgId.ONE_CHAT)
        b.send({"msgid": MsgId.RECV_ACK, "mid": got["mid"]})
        first = await a.recv(MsgId.SEND_ACK)
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "once", "cid": "same"})
        second = await a.recv(MsgId.SEND_ACK)
        self.assertEqual(first["mid"], second["mid"])
        self.assertEqual(await b.quiet(), [])

    async def test_one_senders_messages_keep_their_order(self):
        node = await self.node()
        a = await user(self, node, "alice", proto=None)
        b = await user(self, node, "bob", proto=None)
        for i in range(200):
            a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": str(i)}, end=b"\0")
        got = [(await b.recv(MsgId.ONE_CHAT))["msg"] for _ in range(200)]
        self.assertEqual(got, [str(i) for i in range(200)])

    async def test_unacknowledged_messages_are_stored_when_the_recipient_leaves(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "keep me", "cid": "k"})
        got = await b.recv(MsgId.ONE_CHAT)
        b.transport.loseConnection()
        await b.closed
        await a.recv(MsgId.SEND_ACK, cid="k")
        again = await login(await connect(self, node), b.user_id)
        self.assertEqual([m["mid"] for m in again["offlinemsg"]], [got["mid"]])

    async def test_unacknowledged_messages_are_stored_after_the_ack_timeout(self):
        node = await self.node("--ack-timeout", "1")
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "slow", "cid": "s"})
        got = await b.recv(MsgId.ONE_CHAT)
        await a.recv(MsgId.SEND_ACK, cid="s", timeout=4)
        b.transport.loseConnection()
        await b.closed
        again = await login(await connect(self, node), b.user_id)
        self.assertEqual([m["mid"] for m in again["offlinemsg"]], [got["mid"]])

    async def test_dropping_the_login_reply_loses_no_offline_message(self):
        node = await self.node()
        a = await user(self, node, "alice")
        c = await connect(self, node)
        bob = await register(c, "bob")
        a.send({"msgid": MsgId.ONE_CHAT, "to": bob, "msg": "precious", "cid": "p"})
        await a.recv(MsgId.SEND_ACK)
        c.send({"msgid": MsgId.LOGIN, "id": bob, "password": "secret", "proto": 2})
        c.transport.loseConnection()
        await c.closed
        again = await login(await connect(self, node), bob)
        self.assertEqual([m["msg"] for m in again["offlinemsg"]], ["precious"])

    # resume tokens

    async def test_a_resume_token_logs_in_without_the_password_hash(self):
        node = await self.node()
        c = await connect(self, node)
        uid = await register(c, "alice")
        first = await login(c, uid)
        self.assertEqual(first["errno"], 0)
        await c.request({"msgid": MsgId.HEARTBEAT}, MsgId.HEARTBEAT)
        c.transport.loseConnection()
        await c.closed

        def no_hash(*args):
            raise AssertionError("a token login must not hash")
        self.patch(node.context.hasher, "check", no_hash)
        again = await connect(self, node)
        ack = await again.request({"msgid": MsgId.LOGIN, "id": uid, "token": first["token"],
                                   "proto": 2}, MsgId.LOGIN_ACK)
        self.assertEqual((ack["errno"], ack["name"]), (0, "alice"))
        self.assertNotEqual(ack["token"], "")

    async def test_tokens_are_refused_for_another_user_tampered_or_in_the_original_dialect(self):
        node = await self.node()
        c = await connect(self, node)
        alice, bob, carol = [await register(c, name) for name in ("alice", "bob", "carol")]
        self.assertNotIn("token", await login(c, bob, proto=None))
        other = await connect(self, node)
        fresh = (await login(other, alice))["token"]
        await other.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        tampered = fresh[:-1] + ("B" if fresh.endswith("A") else "A")
        for user_id, candidate, proto in ((carol, fresh, 2), (alice, tampered, 2),
                                          (alice, fresh, 1), (alice, "x" * 200, 2)):
            ack = await other.request({"msgid": MsgId.LOGIN, "id": user_id, "token": candidate,
                                       "proto": proto}, MsgId.LOGIN_ACK)
            self.assertEqual(ack["errno"], Errno.BAD_LOGIN, candidate)
        err = await other.request({"msgid": MsgId.LOGIN, "id": alice, "proto": 2}, MsgId.ERROR)
        self.assertEqual((err["errno"], err["ref"]), (Errno.MISSING_FIELD, MsgId.LOGIN))

    async def test_logout_revokes_the_users_tokens(self):
        node = await self.node()
        c = await connect(self, node)
        uid = await register(c, "alice")
        token = (await login(c, uid))["token"]
        ack = await c.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        self.assertEqual(ack["errno"], 0)
        refused = await c.request({"msgid": MsgId.LOGIN, "id": uid, "token": token, "proto": 2},
                                  MsgId.LOGIN_ACK)
        self.assertEqual(refused["errno"], Errno.BAD_LOGIN)
        self.assertEqual((await login(c, uid))["errno"], 0)

    # group chat

    async def test_group_chat_reaches_members_online_and_offline(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob", proto=None)
        c = await user(self, node, "carol")
        outsider = await user(self, node, "dave")
        gid = (await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                               MsgId.CREATE_GROUP_ACK))["groupid"]
        await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        await c.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        await c.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        a.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "hello all", "cid": "g1"})
        got = await b.recv(MsgId.GROUP_CHAT)
        self.assertEqual((got["id"], got["name"], got["groupid"], got["msg"]),
                         (a.user_id, "alice", gid, "hello all"))
        ack = await a.recv(MsgId.SEND_ACK, cid="g1")
        self.assertEqual(ack["mid"], got["mid"])
        self.assertEqual([f for f in await a.quiet() if f["msgid"] == MsgId.GROUP_CHAT], [])
        carol = await login(c, c.user_id)
        self.assertEqual([m["msg"] for m in carol["offlinemsg"]], ["hello all"])
        err = await outsider.request({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "x"},
                                     MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.NOT_A_MEMBER)
        err = await a.request({"msgid": MsgId.GROUP_CHAT, "groupid": gid + 50, "msg": "x"},
                              MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.NO_SUCH_GROUP)

    async def test_members_who_join_at_once_can_all_chat_at_once(self):
        """Joins committing while the members are being loaded (or in another order than their
        replies) must not leave this node with a member list that misses anyone."""
        node = await self.node()
        a = await user(self, node, "alice", proto=None)
        joiners = [await user(self, node, f"j{i}", proto=None) for i in range(12)]
        gid = (await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                               MsgId.CREATE_GROUP_ACK))["groupid"]
        for j in joiners:
            j.send({"msgid": MsgId.ADD_GROUP, "groupid": gid})
            a.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "while joining"})
        for j in joiners:
            await j.recv(MsgId.ADD_GROUP_ACK)
        members = [a, *joiners]
        for sender in members:
            sender.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid,
                         "msg": f"from {sender.user_id}"})
        for receiver in members:
            for sender in members:
                if sender is not receiver:
                    await receiver.recv(MsgId.GROUP_CHAT, msg=f"from {sender.user_id}")
        self.assertEqual([f for f in await a.quiet() if f["msgid"] == MsgId.ERROR], [])

    async def test_group_send_ack_waits_for_every_member(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        c = await user(self, node, "carol")
        gid = (await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                               MsgId.CREATE_GROUP_ACK))["groupid"]
        await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        await c.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        a.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "m", "cid": "x"})
        got_b, got_c = await b.recv(MsgId.GROUP_CHAT), await c.recv(MsgId.GROUP_CHAT)
        b.send({"msgid": MsgId.RECV_ACK, "mid": got_b["mid"]})
        self.assertEqual(await a.quiet(), [], "carol has not acknowledged yet")
        c.send({"msgid": MsgId.RECV_ACK, "mids": [got_c["mid"]]})
        await a.recv(MsgId.SEND_ACK, cid="x")

    # bad input

    async def test_bad_frames_get_errors_and_the_connection_stays(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        cases = [(b"not json\n", 101), (b"\xff\xfe\xfd\n", 100), (b"[1,2]\n", 102),
                 (b'{"a":1}\r\n', 103), (b'{"msgid":"6"}\0', 106), (b'{"msgid":77}\n', 104),
                 (b'{"msgid":2}\n', 104), (b'{"msgid":17}\n', 105),
                 (b'{"msgid":17,"mids":[1,"x"]}\n', 106), (b'{"msgid":9,"groupid":0}\n', 107),
                 (b'{"msgid":9,"groupid":1e3}\n', 106), (b'{"msgid":7,"friendid":true}\n', 106),
                 (b'{"msgid":9,"groupid":99999999999999999999999}\n', 107)]
        for data, errno in cases:
            a.send(data)
            err = await a.recv(MsgId.ERROR)
            self.assertEqual(err["errno"], errno, data)
            self.assertIn("errmsg", err)
        a.send(b"\n\r\n\0  \n")
        self.assertEqual(await a.quiet(), [], "empty frames are ignored")
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "still here"})
        self.assertEqual((await b.recv(MsgId.ONE_CHAT))["msg"], "still here")

    async def test_oversized_frame_closes_only_that_connection(self):
        node = await self.node("--max-frame", "2048")
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        a.send(b'{"msgid":6,"msg":"' + b"x" * 5000)
        err = await a.recv(MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.FRAME_TOO_LARGE)
        await a.closed
        b.send({"msgid": MsgId.HEARTBEAT})
        await b.recv(MsgId.HEARTBEAT)

    async def test_frames_split_across_packets_and_batched(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        data = ujson.dumps({"msgid": MsgId.ONE_CHAT, "to": b.user_id,
                            "msg": "split"}).encode() + b"\r\n"
        for byte in data:
            a.transport.write(bytes([byte]))
        self.assertEqual((await b.recv(MsgId.ONE_CHAT))["msg"], "split")
        batch = b"".join(ujson.dumps({"msgid": MsgId.ONE_CHAT, "to": b.user_id,
                                      "msg": str(i)}).encode()
                         + end for i, end in enumerate([b"\n", b"\0", b"\r\n"]))
        a.send(batch)
        self.assertEqual([(await b.recv(MsgId.ONE_CHAT))["msg"] for _ in range(3)], ["0", "1", "2"])


class SQLiteScenarios(Scenarios, TestCase):
    """The embedded default store."""


class MySQLScenarios(Scenarios, TestCase):
    """A private MariaDB started by the harness (or CHATD_TEST_MYSQL_URL)."""

    def database(self) -> str:
        if not hasattr(self, "_db"):
            self._db = mysql_database()
        return self._db

    async def test_a_message_stored_while_its_recipient_logs_in_reaches_that_session(self):
        """The store of a message for an offline user commits after the login read the
        offline messages (held back here by a row lock the store's INSERT ... SELECT waits
        for): the session that logged in gets it at once, not at its next login."""
        node = await self.node()
        a = await user(self, node, "alice")
        c = await connect(self, node)
        bob = await register(c, "bob")
        lock = pymysql.connect(**parse_mysql_url(self.database()))
        self.addCleanup(lock.close)
        with lock.cursor() as cursor:
            cursor.execute("SELECT id FROM User WHERE id = %s FOR UPDATE", (bob,))
        a.send({"msgid": MsgId.ONE_CHAT, "to": bob, "msg": "while you log in", "cid": "w"})
        await deferLater(0.3)
        ack = await login(c, bob)
        self.assertEqual(ack["offlinemsg"], [])
        lock.commit()
        got = await c.recv(MsgId.ONE_CHAT)
        self.assertEqual(got["msg"], "while you log in")
        c.send({"msgid": MsgId.RECV_ACK, "mid": got["mid"]})
        await a.recv(MsgId.SEND_ACK, cid="w")
        await stored_offline_becomes_empty(self, c, bob)

"""Conversation frames (msgids 23-37) as a user sees them, over real TCP against a real node,
on SQLite and on a private MariaDB: history, sync, read markers, typing, removing, leaving,
kicking and blocking, with every refusal."""

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import NodePerTest, connect, login, start_node
from tests.servers import mysql_database


class Conversations(NodePerTest):
    """Mixed into a TestCase with a `database()` method; every test starts its own node."""

    async def chat(self, sender, to: int, text: str) -> int:
        """Send one message and wait until it is safe; its mid."""
        sender.send({"msgid": MsgId.ONE_CHAT, "to": to, "msg": text, "cid": text})
        return (await sender.recv(MsgId.SEND_ACK, cid=text))["mid"]

    async def group_chat(self, sender, gid: int, text: str) -> int:
        sender.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": text, "cid": text})
        return (await sender.recv(MsgId.SEND_ACK, cid=text))["mid"]

    async def group(self, creator, *members, name: str = "team") -> int:
        gid = (await creator.request({"msgid": MsgId.CREATE_GROUP, "groupname": name},
                                     MsgId.CREATE_GROUP_ACK))["groupid"]
        for m in members:
            await m.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        return gid

    # history

    async def test_history_pages_backwards_through_a_conversation(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        mids = []
        for i in range(7):
            sender, to = (a, b) if i % 2 == 0 else (b, a)
            mids.append(await self.chat(sender, to.user_id, f"m{i}"))
        await self.chat(a, c.user_id, "other conversation")
        page = await a.request({"msgid": MsgId.HISTORY, "peer": b.user_id, "limit": 3},
                               MsgId.HISTORY_ACK)
        self.assertEqual((page["errno"], page["peer"], page["more"]), (0, b.user_id, True))
        self.assertEqual([m["msg"] for m in page["messages"]], ["m4", "m5", "m6"])
        self.assertEqual([m["mid"] for m in page["messages"]], mids[4:])
        self.assertEqual(page["messages"][0]["id"], a.user_id)
        page = await a.request({"msgid": MsgId.HISTORY, "peer": b.user_id, "limit": 3,
                                "before": mids[4]}, MsgId.HISTORY_ACK)
        self.assertEqual(([m["msg"] for m in page["messages"]], page["more"]),
                         (["m1", "m2", "m3"], True))
        page = await b.request({"msgid": MsgId.HISTORY, "peer": a.user_id, "limit": 3,
                                "before": mids[1]}, MsgId.HISTORY_ACK)
        self.assertEqual(([m["msg"] for m in page["messages"]], page["more"]), (["m0"], False))
        whole = await b.request({"msgid": MsgId.HISTORY, "peer": a.user_id}, MsgId.HISTORY_ACK)
        self.assertEqual(len(whole["messages"]), 7)
        none = await c.request({"msgid": MsgId.HISTORY, "peer": b.user_id}, MsgId.HISTORY_ACK)
        self.assertEqual((none["messages"], none["more"]), ([], False))

    async def test_group_history_starts_when_the_member_joined(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a)
        await self.group_chat(a, gid, "before bob")
        await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        await self.group_chat(a, gid, "after bob")
        await self.group_chat(b, gid, "from bob")
        seen = await b.request({"msgid": MsgId.HISTORY, "groupid": gid}, MsgId.HISTORY_ACK)
        self.assertEqual([m["msg"] for m in seen["messages"]], ["after bob", "from bob"],
                         [(m["mid"], m["msg"]) for m in seen["messages"]])
        self.assertEqual(seen["groupid"], gid)
        seen = await a.request({"msgid": MsgId.HISTORY, "groupid": gid}, MsgId.HISTORY_ACK)
        self.assertEqual([m["msg"] for m in seen["messages"]],
                         ["before bob", "after bob", "from bob"])
        refused = await c.request({"msgid": MsgId.HISTORY, "groupid": gid}, MsgId.HISTORY_ACK)
        self.assertEqual((refused["errno"], refused["groupid"], refused["messages"]),
                         (Errno.NOT_A_MEMBER, gid, []))

    async def test_history_refusals(self):
        node = await self.node()
        (a,) = await self.users(node, "alice")
        both = await a.request({"msgid": MsgId.HISTORY, "peer": 1, "groupid": 1}, MsgId.HISTORY_ACK)
        self.assertEqual(both["errno"], Errno.PEER_AND_GROUP)
        neither = await a.request({"msgid": MsgId.HISTORY}, MsgId.ERROR)
        self.assertEqual((neither["errno"], neither["ref"]), (Errno.MISSING_FIELD, MsgId.HISTORY))
        for bad in ({"limit": 0}, {"limit": 101}, {"before": 0}, {"peer": "x"}):
            err = await a.request({"msgid": MsgId.HISTORY, "peer": 1, **bad}, MsgId.ERROR)
            self.assertIn(err["errno"], (106, 107), bad)
        for bad in ({"after": -1}, {"after": 0, "limit": 501}, {}):
            err = await a.request({"msgid": MsgId.SYNC, **bad}, MsgId.ERROR)
            self.assertIn(err["errno"], (105, 107), bad)

    async def test_a_refused_message_is_not_kept(self):
        node = await self.node()
        (a,) = await self.users(node, "alice")
        a.send({"msgid": MsgId.ONE_CHAT, "to": 99999, "msg": "nobody", "cid": "x"})
        self.assertEqual((await a.recv(MsgId.ERROR, cid="x"))["errno"], Errno.NO_SUCH_USER)
        page = await a.request({"msgid": MsgId.SYNC, "after": 0}, MsgId.SYNC_ACK)
        self.assertEqual(page["messages"], [])

    async def test_sync_returns_every_conversation_after_a_mid(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(b, a)
        first = await self.chat(b, a.user_id, "one")
        await self.group_chat(b, gid, "two")
        await self.chat(a, c.user_id, "three")
        await self.chat(b, c.user_id, "not alice's")
        page = await a.request({"msgid": MsgId.SYNC, "after": 0}, MsgId.SYNC_ACK)
        self.assertEqual(([m["msg"] for m in page["messages"]], page["more"]),
                         (["one", "two", "three"], False))
        page = await a.request({"msgid": MsgId.SYNC, "after": first, "limit": 1}, MsgId.SYNC_ACK)
        self.assertEqual(([m["msg"] for m in page["messages"]], page["more"]), (["two"], True))
        after = page["messages"][-1]["mid"]
        page = await a.request({"msgid": MsgId.SYNC, "after": after}, MsgId.SYNC_ACK)
        self.assertEqual(([m["msg"] for m in page["messages"]], page["more"]), (["three"], False))

    async def test_history_days_0_keeps_nothing(self):
        node = await self.node("--history-days", "0")
        a, b = await self.users(node, "alice", "bob")
        await self.chat(a, b.user_id, "gone")
        page = await a.request({"msgid": MsgId.HISTORY, "peer": b.user_id}, MsgId.HISTORY_ACK)
        self.assertEqual((page["errno"], page["messages"]), (0, []))
        page = await a.request({"msgid": MsgId.SYNC, "after": 0}, MsgId.SYNC_ACK)
        self.assertEqual(page["messages"], [])

    async def test_turning_history_off_hides_what_was_kept(self):
        db = self.database() or f"sqlite:{self.mktemp()}.sqlite3"
        node = await start_node(self, db)
        a, b = await self.users(node, "alice", "bob")
        await self.chat(a, b.user_id, "kept")
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        off = await connect(self, await start_node(self, db, "--history-days", "0"))
        ack = await login(off, b.user_id)
        self.assertEqual((ack["errno"], ack["unread"]), (0, []))
        page = await off.request({"msgid": MsgId.HISTORY, "peer": a.user_id}, MsgId.HISTORY_ACK)
        self.assertEqual(page["messages"], [])
        page = await off.request({"msgid": MsgId.SYNC, "after": 0}, MsgId.SYNC_ACK)
        self.assertEqual(page["messages"], [])
        page = await a.request({"msgid": MsgId.HISTORY, "peer": b.user_id}, MsgId.HISTORY_ACK)
        self.assertEqual([m["msg"] for m in page["messages"]], ["kept"], "still kept")

    # read markers

    async def test_read_is_a_receipt_for_the_peer_and_sets_the_unread_counts(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        conn = await connect(self, node)
        carol = (await conn.request({"msgid": MsgId.REG, "name": "carol", "password": "secret"},
                                    MsgId.REG_ACK))["id"]
        mids = [await self.chat(a, carol, f"m{i}") for i in range(3)]
        from_bob = await self.chat(b, carol, "from bob")
        ack = await login(conn, carol)
        self.assertEqual(sorted((u["peer"], u["count"], u["last_mid"]) for u in ack["unread"]),
                         sorted([(a.user_id, 3, mids[2]), (b.user_id, 1, from_bob)]))
        conn.send({"msgid": MsgId.RECV_ACK, "mids": [m["mid"] for m in ack["offlinemsg"]]})
        conn.send({"msgid": MsgId.READ, "peer": a.user_id, "mid": mids[1]})
        receipt = await a.recv(MsgId.READ)
        self.assertEqual(receipt, {"msgid": MsgId.READ, "peer": a.user_id, "mid": mids[1],
                                   "id": carol})
        self.assertEqual(await b.quiet(), [])
        conn.send({"msgid": MsgId.READ, "peer": a.user_id, "mid": mids[0]})  # never moves back
        await a.recv(MsgId.READ)
        await conn.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        again = await login(conn, carol)
        counts = {u["peer"]: u["count"] for u in again["unread"]}
        self.assertEqual(counts, {a.user_id: 1, b.user_id: 1})

    async def test_group_read_and_unread(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        gid = await self.group(a, b)
        mid = await self.group_chat(a, gid, "hello")
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        ack = await login(b, b.user_id)
        self.assertEqual(ack["unread"], [{"groupid": gid, "count": 1, "last_mid": mid}])
        b.send({"msgid": MsgId.READ, "groupid": gid, "mid": mid})
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        self.assertEqual((await login(b, b.user_id))["unread"], [])
        self.assertEqual(await a.quiet(), [], "a group READ is no receipt")
        err = await a.request({"msgid": MsgId.READ, "groupid": gid + 1, "mid": mid}, MsgId.ERROR)
        self.assertEqual((err["errno"], err["ref"]), (Errno.NOT_A_MEMBER, MsgId.READ))
        err = await a.request({"msgid": MsgId.READ, "groupid": gid, "peer": 1, "mid": mid},
                              MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.PEER_AND_GROUP)

    # typing

    async def test_typing_reaches_the_peer_at_most_once_a_second(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        for _ in range(5):
            a.send({"msgid": MsgId.TYPING, "to": b.user_id})
        self.assertEqual(await b.recv(MsgId.TYPING), {"msgid": MsgId.TYPING, "id": a.user_id,
                                                "to": b.user_id})
        self.assertEqual(await b.quiet(0.5), [])
        self.assertEqual(await a.quiet(0), [], "typing has no reply")
        await b.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        a.send({"msgid": MsgId.TYPING, "to": b.user_id})
        await login(b, b.user_id)
        self.assertEqual([f for f in await b.quiet() if f["msgid"] == MsgId.TYPING], [],
                         "typing is never stored")

    # removing, leaving, kicking

    async def test_remove_friend_ends_the_friendship_on_both_sides(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        ack = await b.request({"msgid": MsgId.REMOVE_FRIEND, "friendid": a.user_id},
                              MsgId.REMOVE_FRIEND_ACK)
        self.assertEqual((ack["errno"], ack["friendid"]), (0, a.user_id))
        self.assertEqual((await a.request({"msgid": MsgId.FRIEND_LIST},
                                          MsgId.FRIEND_LIST_ACK))["friends"], [])
        self.assertEqual((await b.request({"msgid": MsgId.FRIEND_LIST},
                                          MsgId.FRIEND_LIST_ACK))["friends"], [])
        again = await b.request({"msgid": MsgId.REMOVE_FRIEND, "friendid": a.user_id},
                                MsgId.REMOVE_FRIEND_ACK)
        self.assertEqual((again["errno"], again["friendid"]), (Errno.NOT_A_FRIEND, a.user_id))
        await self.chat(a, b.user_id, "still possible")

    async def test_leaving_hands_the_group_on_and_the_last_one_deletes_it(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a, b, c)
        ack = await a.request({"msgid": MsgId.LEAVE_GROUP, "groupid": gid}, MsgId.LEAVE_GROUP_ACK)
        self.assertEqual((ack["errno"], ack["groupid"]), (0, gid))
        groups = (await b.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK))["groups"]
        self.assertEqual([(u["id"], u["role"]) for u in groups[0]["users"]],
                         [(b.user_id, "owner"), (c.user_id, "member")])
        c.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "left?", "cid": "l"})
        await c.recv(MsgId.SEND_ACK, cid="l")
        self.assertEqual((await b.recv(MsgId.GROUP_CHAT))["msg"], "left?")
        self.assertEqual([f for f in await a.quiet() if f["msgid"] == MsgId.GROUP_CHAT], [])
        err = await a.request({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "x"}, MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.NOT_A_MEMBER)
        self.assertEqual((await a.request({"msgid": MsgId.LEAVE_GROUP, "groupid": gid},
                                          MsgId.LEAVE_GROUP_ACK))["errno"],
                         Errno.NOT_A_MEMBER)
        await b.request({"msgid": MsgId.LEAVE_GROUP, "groupid": gid}, MsgId.LEAVE_GROUP_ACK)
        await c.request({"msgid": MsgId.LEAVE_GROUP, "groupid": gid}, MsgId.LEAVE_GROUP_ACK)
        gone = await c.request({"msgid": MsgId.LEAVE_GROUP, "groupid": gid}, MsgId.LEAVE_GROUP_ACK)
        self.assertEqual(gone["errno"], Errno.NO_SUCH_GROUP)
        self.assertGreater((await a.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                            MsgId.CREATE_GROUP_ACK))["groupid"],
                           0, "the deleted group's name is free")

    async def test_kick_member_rules(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a, b)
        by_member = await b.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid,
                                     "userid": a.user_id}, MsgId.KICK_MEMBER_ACK)
        self.assertEqual((by_member["errno"], by_member["groupid"], by_member["userid"]),
                         (Errno.NOT_CREATOR, gid, a.user_id))
        self.assertEqual((await c.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid,
                                           "userid": b.user_id}, MsgId.KICK_MEMBER_ACK))["errno"],
                         Errno.NOT_A_MEMBER)
        self.assertEqual((await a.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid,
                                           "userid": a.user_id}, MsgId.KICK_MEMBER_ACK))["errno"],
                         Errno.KICK_SELF)
        self.assertEqual((await a.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid,
                                           "userid": c.user_id}, MsgId.KICK_MEMBER_ACK))["errno"],
                         Errno.TARGET_NOT_MEMBER)
        self.assertEqual((await a.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid + 9,
                                           "userid": c.user_id}, MsgId.KICK_MEMBER_ACK))["errno"],
                         Errno.NO_SUCH_GROUP)
        ack = await a.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid, "userid": b.user_id},
                              MsgId.KICK_MEMBER_ACK)
        self.assertEqual(ack["errno"], 0)
        self.assertEqual(await b.recv(MsgId.NOTICE), {"msgid": MsgId.NOTICE, "kind": "kicked",
                                                "groupid": gid})
        err = await b.request({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "x"}, MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.NOT_A_MEMBER)
        await self.group_chat(a, gid, "alone")
        self.assertEqual([f for f in await b.quiet() if f["msgid"] == MsgId.GROUP_CHAT], [])

    # devices

    async def test_login_names_its_device_and_devices_lists_the_session(self):
        node = await self.node()
        (a,) = await self.users(node, "alice")
        listed = await a.request({"msgid": MsgId.DEVICES}, MsgId.DEVICES_ACK)
        self.assertEqual((listed["errno"], [d["device"] for d in listed["devices"]]),
                         (0, ["default"]))
        self.assertIsInstance(listed["devices"][0]["since"], int)
        await a.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        a.send({"msgid": MsgId.LOGIN, "id": a.user_id, "password": "secret", "proto": 2,
                "device": "laptop"})
        ack = await a.recv(MsgId.LOGIN_ACK)
        self.assertEqual((ack["errno"], ack["device"], ack["unread"]), (0, "laptop", []))
        listed = await a.request({"msgid": MsgId.DEVICES}, MsgId.DEVICES_ACK)
        self.assertEqual([d["device"] for d in listed["devices"]], ["laptop"])
        await a.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        err = await a.request({"msgid": MsgId.LOGIN, "id": a.user_id, "password": "secret",
                               "proto": 2,
                               "device": " x"}, MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.OUT_OF_RANGE)

    # blocking

    async def test_block_refuses_chat_typing_and_friend_requests_and_hides_presence(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        gid = await self.group(b, a)
        await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id}, MsgId.ADD_FRIEND_ACK)
        ack = await b.request({"msgid": MsgId.BLOCK, "userid": a.user_id, "block": True},
                              MsgId.BLOCK_ACK)
        self.assertEqual((ack["errno"], ack["userid"], ack["block"]), (0, a.user_id, True))
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "hi", "cid": "c1"})
        err = await a.recv(MsgId.ERROR)
        self.assertEqual((err["errno"], err["ref"], err["cid"]),
                         (Errno.BLOCKED, MsgId.ONE_CHAT, "c1"))
        err = await a.request({"msgid": MsgId.TYPING, "to": b.user_id}, MsgId.ERROR)
        self.assertEqual((err["errno"], err["ref"]), (Errno.BLOCKED, MsgId.TYPING))
        self.assertEqual((await a.request({"msgid": MsgId.ADD_FRIEND, "friendid": b.user_id},
                                          MsgId.ADD_FRIEND_ACK))["errno"],
                         Errno.BLOCKED)
        friends = (await a.request({"msgid": MsgId.FRIEND_LIST}, MsgId.FRIEND_LIST_ACK))["friends"]
        self.assertEqual(friends, [{"id": b.user_id, "name": "bob", "state": "offline"}])
        members = (await a.request({"msgid": MsgId.GROUP_LIST},
                                   MsgId.GROUP_LIST_ACK))["groups"][0]["users"]
        self.assertEqual({u["id"]: u["state"] for u in members},
                         {a.user_id: "online", b.user_id: "offline"})
        self.assertEqual((await b.request({"msgid": MsgId.FRIEND_LIST},
                                          MsgId.FRIEND_LIST_ACK))["friends"][0]["state"], "online")
        await self.group_chat(a, gid, "groups are unaffected")
        self.assertEqual((await b.recv(MsgId.GROUP_CHAT))["msg"], "groups are unaffected")
        await self.chat(b, a.user_id, "the blocker may still write")
        await a.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        relog = await login(a, a.user_id)
        self.assertEqual(relog["friends"][0]["state"], "offline")
        unblock = await b.request({"msgid": MsgId.BLOCK, "userid": a.user_id, "block": False},
                                  MsgId.BLOCK_ACK)
        self.assertEqual((unblock["errno"], unblock["block"]), (0, False))
        await self.chat(a, b.user_id, "unblocked")

    async def test_block_refusals(self):
        node = await self.node()
        (a,) = await self.users(node, "alice")
        self.assertEqual((await a.request({"msgid": MsgId.BLOCK, "userid": a.user_id,
                                           "block": True},
                                          MsgId.BLOCK_ACK))["errno"], Errno.BLOCK_SELF)
        self.assertEqual((await a.request({"msgid": MsgId.BLOCK, "userid": 99999, "block": True},
                                          MsgId.BLOCK_ACK))["errno"], Errno.NO_SUCH_USER)
        err = await a.request({"msgid": MsgId.BLOCK, "userid": 2, "block": 1}, MsgId.ERROR)
        self.assertEqual(err["errno"], Errno.WRONG_TYPE)


class SQLiteConversations(Conversations, TestCase):
    """The embedded default store."""


class MySQLConversations(Conversations, TestCase):
    """A private MariaDB started by the harness (or CHATD_TEST_MYSQL_URL)."""

    def database(self) -> str:
        if not hasattr(self, "_db"):
            self._db = mysql_database()
        return self._db

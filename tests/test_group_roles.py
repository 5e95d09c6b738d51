"""Groups with roles (msgids 71-81) as members see them over real TCP against a real node, on
SQLite and on a private MariaDB: owner, admins and members, handing a group over, kicking
and muting by the rules, updating a group, invites, and every refusal."""

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import NodePerTest, connect, login, user
from tests.servers import mysql_database


class GroupRoles(NodePerTest):
    """Mixed into a TestCase with a `database()` method; every test starts its own node."""

    async def group(self, owner, *members, name: str = "team") -> int:
        gid = (await owner.request({"msgid": MsgId.CREATE_GROUP, "groupname": name},
                                   MsgId.CREATE_GROUP_ACK))["groupid"]
        for m in members:
            await m.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        return gid

    async def set_role(self, by, gid: int, target, role: str) -> dict:
        return await by.request({"msgid": MsgId.SET_ROLE, "groupid": gid,
                                 "userid": target.user_id, "role": role}, MsgId.SET_ROLE_ACK)

    async def roles(self, c, gid: int) -> list[tuple[int, str]]:
        groups = (await c.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK))["groups"]
        group = next(g for g in groups if g["groupid"] == gid)
        return [(u["id"], u["role"]) for u in group["users"]]

    async def test_roles_in_lists_and_a_role_change_reaches_every_member(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a, b, c)
        self.assertEqual(await self.roles(b, gid), [(a.user_id, "owner"), (b.user_id, "member"),
                                                    (c.user_id, "member")])
        ack = await self.set_role(a, gid, b, "admin")
        self.assertEqual(ack, {"msgid": MsgId.SET_ROLE_ACK, "errno": 0, "groupid": gid,
                               "userid": b.user_id, "role": "admin"})
        for member in (a, b, c):
            changed = await member.recv(MsgId.GROUP_CHANGED)
            self.assertEqual(changed, {"msgid": MsgId.GROUP_CHANGED, "groupid": gid,
                                       "by": a.user_id,
                                       "roles": [{"id": b.user_id, "role": "admin"}]})
        relog = await login(await connect(self, node), c.user_id)
        self.assertEqual(relog["errno"], Errno.ALREADY_ONLINE)
        group = (await b.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK))["groups"][0]
        self.assertEqual((group["role"], group["announcement"], group["join"]),
                         ("admin", "", "open"))
        self.assertTrue(await node.context.roles.can_moderate(gid, b.user_id))
        self.assertTrue(await node.context.roles.can_moderate(gid, a.user_id))
        self.assertFalse(await node.context.roles.can_moderate(gid, c.user_id))
        self.assertFalse(await node.context.roles.can_moderate(gid + 99, a.user_id))

    async def test_the_original_dialect_keeps_creator_and_normal(self):
        node = await self.node()
        a, b = await self.users(node, "alice", "bob")
        old = await user(self, node, "carol", proto=None)
        gid = await self.group(a, b)
        await self.set_role(a, gid, b, "admin")
        joined = await old.request({"msgid": MsgId.ADD_GROUP, "groupid": gid},
                                   MsgId.ADD_GROUP_ACK)
        self.assertEqual([u["role"] for u in joined["group"]["users"]],
                         ["creator", "normal", "normal"])
        self.assertNotIn("role", joined["group"])

    async def test_handing_the_group_over(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a, b, c)
        await self.set_role(a, gid, c, "owner")
        self.assertEqual((await b.recv(MsgId.GROUP_CHANGED))["roles"],
                         [{"id": c.user_id, "role": "owner"}, {"id": a.user_id, "role": "admin"}])
        self.assertEqual(await self.roles(b, gid), [(a.user_id, "admin"), (b.user_id, "member"),
                                                    (c.user_id, "owner")])
        refused = await self.set_role(a, gid, b, "admin")
        self.assertEqual(refused["errno"], Errno.NOT_OWNER, "the former owner is an admin now")
        self.assertFalse(await node.context.roles.can_moderate(gid, b.user_id))

    async def test_set_role_refusals(self):
        node = await self.node()
        a, b, c, d = await self.users(node, "alice", "bob", "carol", "dave")
        gid = await self.group(a, b, c)
        await self.set_role(a, gid, b, "admin")
        cases = [(b, c, "admin", Errno.NOT_OWNER), (c, b, "member", Errno.NOT_OWNER),
                 (a, a, "member", Errno.OWN_ROLE), (a, d, "admin", Errno.TARGET_NOT_MEMBER),
                 (a, c, "king", Errno.BAD_SETTING), (d, c, "admin", Errno.NOT_A_MEMBER)]
        for by, target, role, errno in cases:
            ack = await self.set_role(by, gid, target, role)
            self.assertEqual((ack["errno"], ack["groupid"], ack["userid"]),
                             (errno, gid, target.user_id), (by.user_id, target.user_id, role))
        nogroup = await a.request({"msgid": MsgId.SET_ROLE, "groupid": gid + 99,
                                   "userid": b.user_id, "role": "admin"}, MsgId.SET_ROLE_ACK)
        self.assertEqual(nogroup["errno"], Errno.NO_SUCH_GROUP)
        self.assertEqual(await self.roles(a, gid), [(a.user_id, "owner"), (b.user_id, "admin"),
                                                    (c.user_id, "member")])

    async def test_kicking_follows_the_roles(self):
        node = await self.node()
        a, b, c, d, e = await self.users(node, "alice", "bob", "carol", "dave", "erin")
        gid = await self.group(a, b, c, d, e)
        await self.set_role(a, gid, b, "admin")
        await self.set_role(a, gid, c, "admin")

        async def kick(by, target):
            return (await by.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid,
                                      "userid": target.user_id}, MsgId.KICK_MEMBER_ACK))["errno"]
        self.assertEqual(await kick(b, a), Errno.OUTRANKED, "an admin cannot kick the owner")
        self.assertEqual(await kick(b, c), Errno.OUTRANKED, "nor another admin")
        self.assertEqual(await kick(d, e), Errno.NOT_CREATOR, "a member kicks nobody")
        self.assertEqual(await kick(b, d), 0)
        self.assertEqual((await d.recv(MsgId.NOTICE))["kind"], "kicked")
        self.assertEqual(await kick(a, c), 0, "the owner kicks an admin")
        self.assertEqual([uid for uid, _ in await self.roles(a, gid)],
                         [a.user_id, b.user_id, e.user_id])

    async def test_an_owner_leaving_hands_the_group_to_an_admin_first(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a, b, c)
        await self.set_role(a, gid, c, "admin")
        await a.request({"msgid": MsgId.LEAVE_GROUP, "groupid": gid}, MsgId.LEAVE_GROUP_ACK)
        self.assertEqual(await self.roles(b, gid), [(b.user_id, "member"), (c.user_id, "owner")])

    async def test_update_group_reaches_members_and_the_lists(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a, b, c)
        await self.group(c, name="taken")
        await self.set_role(a, gid, b, "admin")
        ack = await b.request({"msgid": MsgId.UPDATE_GROUP, "groupid": gid,
                               "groupname": "renamed", "announcement": "meeting at 10"},
                              MsgId.UPDATE_GROUP_ACK)
        self.assertEqual(ack, {"msgid": MsgId.UPDATE_GROUP_ACK, "errno": 0, "groupid": gid})
        changed = await c.recv(MsgId.GROUP_CHANGED, by=b.user_id, groupid=gid)
        self.assertEqual((changed["groupname"], changed["announcement"], "groupdesc" in changed),
                         ("renamed", "meeting at 10", False))
        group = (await c.request({"msgid": MsgId.GROUP_LIST}, MsgId.GROUP_LIST_ACK))["groups"]
        mine = next(g for g in group if g["groupid"] == gid)
        self.assertEqual((mine["groupname"], mine["announcement"]), ("renamed", "meeting at 10"))
        refusals = [(c, {"groupdesc": "x"}, Errno.NOT_ADMIN),
                    (a, {"groupname": "taken"}, Errno.GROUP_NAME_TAKEN),
                    (a, {"join": "closed"}, Errno.BAD_SETTING)]
        for by, fields, errno in refusals:
            ack = await by.request({"msgid": MsgId.UPDATE_GROUP, "groupid": gid, **fields},
                                   MsgId.UPDATE_GROUP_ACK)
            self.assertEqual((ack["errno"], ack["groupid"]), (errno, gid), fields)
        for bad in ({"announcement": "x" * 1001}, {"groupname": " padded"}):
            err = await a.request({"msgid": MsgId.UPDATE_GROUP, "groupid": gid, **bad},
                                  MsgId.ERROR)
            self.assertEqual(err["errno"], Errno.OUT_OF_RANGE)

    async def test_a_muted_member_cannot_write_until_unmuted(self):
        node = await self.node()
        a, b, c = await self.users(node, "alice", "bob", "carol")
        gid = await self.group(a, b, c)
        b.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "before", "cid": "1"})
        await b.recv(MsgId.SEND_ACK, cid="1")
        until = node.context.friend_requests.now_ms() + 3_600_000
        ack = await a.request({"msgid": MsgId.MUTE_MEMBER, "groupid": gid, "userid": b.user_id,
                               "until": until}, MsgId.MUTE_MEMBER_ACK)
        self.assertEqual((ack["errno"], ack["until"]), (0, until))
        self.assertEqual((await c.recv(MsgId.GROUP_CHANGED))["muted"],
                         {"id": b.user_id, "until": until})
        b.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "muted", "cid": "2"})
        err = await b.recv(MsgId.ERROR, cid="2")
        self.assertEqual((err["errno"], err["until"], err["ref"]),
                         (Errno.MUTED, until, MsgId.GROUP_CHAT))
        c.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "others may", "cid": "3"})
        await c.recv(MsgId.SEND_ACK, cid="3")
        await a.request({"msgid": MsgId.MUTE_MEMBER, "groupid": gid, "userid": b.user_id,
                         "until": 0}, MsgId.MUTE_MEMBER_ACK)
        b.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "after", "cid": "4"})
        await b.recv(MsgId.SEND_ACK, cid="4")
        self.assertEqual((await c.recv(MsgId.GROUP_CHAT, msg="after"))["id"], b.user_id)
        await self.set_role(a, gid, b, "admin")
        refusals = [(c, b, Errno.NOT_ADMIN), (b, a, Errno.OUTRANKED), (a, a, Errno.OWN_ROLE)]
        for by, target, errno in refusals:
            ack = await by.request({"msgid": MsgId.MUTE_MEMBER, "groupid": gid,
                                    "userid": target.user_id, "until": until},
                                   MsgId.MUTE_MEMBER_ACK)
            self.assertEqual(ack["errno"], errno)

    async def test_invites_join_an_invite_only_group_until_revoked(self):
        node = await self.node()
        a, b, c, d = await self.users(node, "alice", "bob", "carol", "dave")
        gid = await self.group(a, b)
        await a.request({"msgid": MsgId.UPDATE_GROUP, "groupid": gid, "join": "invite"},
                        MsgId.UPDATE_GROUP_ACK)
        refused = await c.request({"msgid": MsgId.ADD_GROUP, "groupid": gid},
                                  MsgId.ADD_GROUP_ACK)
        self.assertEqual(refused["errno"], Errno.INVITE_ONLY)
        again = await b.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        self.assertEqual(again["errno"], 0, "a member joining again is not refused")
        self.assertEqual((await b.request({"msgid": MsgId.INVITE, "groupid": gid},
                                          MsgId.INVITE_ACK))["errno"], Errno.NOT_ADMIN)
        invite = await a.request({"msgid": MsgId.INVITE, "groupid": gid, "ttl": 3600},
                                 MsgId.INVITE_ACK)
        self.assertEqual(invite["url"], f"/#join={invite['code']}")
        self.assertGreater(invite["expires"], node.context.friend_requests.now_ms())
        joined = await c.request({"msgid": MsgId.JOIN_BY_INVITE, "code": invite["code"]},
                                 MsgId.JOIN_BY_INVITE_ACK)
        self.assertEqual((joined["errno"], joined["group"]["groupid"], joined["group"]["role"],
                          joined["group"]["join"]), (0, gid, "member", "invite"))
        revoked = await a.request({"msgid": MsgId.INVITE, "groupid": gid,
                                   "revoke": invite["code"]}, MsgId.INVITE_ACK)
        self.assertEqual((revoked["errno"], revoked["revoked"]), (0, invite["code"]))
        late = await d.request({"msgid": MsgId.JOIN_BY_INVITE, "code": invite["code"]},
                               MsgId.JOIN_BY_INVITE_ACK)
        self.assertEqual(late["errno"], Errno.BAD_INVITE)
        self.assertEqual((await a.request({"msgid": MsgId.INVITE, "groupid": gid,
                                           "revoke": "nonsense"}, MsgId.INVITE_ACK))["errno"],
                         Errno.BAD_INVITE)
        for bad in ({"ttl": 59}, {"ttl": 30 * 24 * 3600 + 1}):
            err = await a.request({"msgid": MsgId.INVITE, "groupid": gid, **bad}, MsgId.ERROR)
            self.assertEqual(err["errno"], Errno.OUT_OF_RANGE)

    async def test_an_expired_invite_is_refused(self):
        node = await self.node()
        a, c = await self.users(node, "alice", "carol")
        gid = await self.group(a)
        now = node.context.friend_requests.now_ms()
        await node.context.store.create_invite(gid, a.user_id, "old-code", now - 1, now)
        late = await c.request({"msgid": MsgId.JOIN_BY_INVITE, "code": "old-code"},
                               MsgId.JOIN_BY_INVITE_ACK)
        self.assertEqual(late["errno"], Errno.BAD_INVITE)


class SQLiteGroupRoles(GroupRoles, TestCase):
    """The embedded default store."""


class MySQLGroupRoles(GroupRoles, TestCase):
    """A private MariaDB started by the harness (or CHATD_TEST_MYSQL_URL)."""

    def database(self) -> str:
        if not hasattr(self, "_db"):
            self._db = mysql_database()
        return self._db

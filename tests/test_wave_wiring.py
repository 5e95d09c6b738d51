"""Where this wave's capabilities meet (built apart, joined in build_node): a recalled photo
is deleted with its message; a group's admins moderate (recall, mention everyone); a
password change and a deleted account leave no push subscription behind."""

import io
from typing import Any

from PIL import Image
from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import deferLater, start_node, user
from tests.pushservice import PushService
from tests.test_attachments import Uploading, http, png
from tests.test_push import PUSH_ARGS, subscribe


class RecalledPhotoTests(Uploading, TestCase):

    async def test_a_recalled_photo_is_deleted_with_its_message(self):
        description = await self.upload("cat.png", png((64, 48)), "image/png")
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": "",
                         "attachment": {"id": description["id"]}, "cid": "p1"})
        got = await self.bob.recv(MsgId.ONE_CHAT)
        self.assertEqual((await http(b"GET", got["attachment"]["url"]))[0], 200)
        ack = await self.alice.request({"msgid": MsgId.RECALL, "mid": got["mid"]},
                                       MsgId.RECALL_ACK)
        self.assertEqual(ack["errno"], 0, ack)
        for _ in range(50):
            status = (await http(b"GET", got["attachment"]["url"]))[0]
            if status == 404:
                break
            await deferLater(0.1)
        self.assertEqual(status, 404, "the photo is still served after the recall")


class AvatarTests(Uploading, TestCase):

    async def test_an_uploaded_image_becomes_the_avatar_others_see(self):
        photo = await self.upload("me.png", png((400, 300)), "image/png")
        ack = await self.alice.request({"msgid": MsgId.SET_PROFILE, "avatar": {"id": photo["id"]}},
                                       MsgId.SET_PROFILE_ACK)
        self.assertEqual(ack["errno"], 0, ack)
        seen = await self.bob.request({"msgid": MsgId.GET_PROFILE, "userid": self.alice.user_id},
                                      MsgId.GET_PROFILE_ACK)
        status, _, body = await http(b"GET", seen["profile"]["avatar"])
        self.assertEqual((status, max(Image.open(io.BytesIO(body)).size)), (200, 320))

    async def test_a_file_that_is_no_image_or_not_ones_own_is_refused(self):
        text = await self.upload("notes.txt", b"plain words", "text/plain")
        ack = await self.alice.request({"msgid": MsgId.SET_PROFILE, "avatar": {"id": text["id"]}},
                                       MsgId.SET_PROFILE_ACK)
        self.assertEqual(ack["errno"], Errno.BAD_AVATAR, ack)
        photo = await self.upload("me.png", png((40, 30)), "image/png")
        theirs = await self.bob.request({"msgid": MsgId.SET_PROFILE,
                                         "avatar": {"id": photo["id"]}}, MsgId.SET_PROFILE_ACK)
        self.assertEqual(theirs["errno"], Errno.NO_SUCH_MEDIA, theirs)
        mine = await self.alice.request({"msgid": MsgId.GET_PROFILE,
                                         "userid": self.alice.user_id}, MsgId.GET_PROFILE_ACK)
        self.assertIsNone(mine["profile"]["avatar"])


class GroupAdminTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.node = await start_node(self)
        self.owner, self.admin, self.member = [
            await user(self, self.node, name) for name in ("olga", "adam", "mia")]
        for client in (self.owner, self.admin, self.member):
            client.auto_ack = True
        created = await self.owner.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                                           MsgId.CREATE_GROUP_ACK)
        self.group = created["groupid"]
        for client in (self.admin, self.member):
            joined = await client.request({"msgid": MsgId.ADD_GROUP, "groupid": self.group},
                                          MsgId.ADD_GROUP_ACK)
            self.assertEqual(joined["errno"], 0, joined)
        made = await self.owner.request({"msgid": MsgId.SET_ROLE, "groupid": self.group,
                                         "userid": self.admin.user_id, "role": "admin"},
                                        MsgId.SET_ROLE_ACK)
        self.assertEqual(made["errno"], 0, made)

    async def test_an_admin_recalls_a_members_message(self):
        self.member.send({"msgid": MsgId.GROUP_CHAT, "groupid": self.group, "msg": "spam"})
        spam = await self.admin.recv(MsgId.GROUP_CHAT, msg="spam")
        ack = await self.admin.request({"msgid": MsgId.RECALL, "mid": spam["mid"]},
                                       MsgId.RECALL_ACK)
        self.assertEqual(ack["errno"], 0, ack)
        recalled = await self.owner.recv(MsgId.RECALLED)
        self.assertEqual((recalled["mid"], recalled["by"]), (spam["mid"], self.admin.user_id))

    async def test_an_admin_mentions_everyone_and_a_member_may_not(self):
        self.admin.send({"msgid": MsgId.GROUP_CHAT, "groupid": self.group, "msg": "all",
                         "mentions": "all", "cid": "a"})
        self.assertEqual((await self.admin.recv(MsgId.SEND_ACK, cid="a"))["errno"], 0)
        self.assertEqual((await self.member.recv(MsgId.GROUP_CHAT, msg="all"))["mentions"],
                         "all")
        self.member.send({"msgid": MsgId.GROUP_CHAT, "groupid": self.group, "msg": "all",
                          "mentions": "all", "cid": "m"})
        refused = await self.member.recv(MsgId.ERROR, cid="m")
        self.assertEqual(refused["ref"], MsgId.GROUP_CHAT)


class SubscriptionsGoTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.service = await PushService.start(self)
        self.node = await start_node(self, None, *PUSH_ARGS, "--push-vapid-key",
                                     self.mktemp())
        self.alice = await user(self, self.node, "alice")
        self.bob = await user(self, self.node, "bob")
        ack = await subscribe(self.bob, self.service.subscription())
        self.assertEqual(ack["errno"], 0, ack)
        self.assertEqual(list(await self.targets()), [self.bob.user_id])

    async def targets(self) -> Any:
        return await self.node.context.store.push_targets(
            [self.bob.user_id], 0, {self.bob.user_id: self.alice.user_id})

    async def test_a_password_change_removes_the_subscriptions(self):
        ack = await self.bob.request({"msgid": MsgId.SET_PASSWORD, "old": "secret",
                                      "new": "another"}, MsgId.SET_PASSWORD_ACK)
        self.assertEqual(ack["errno"], 0, ack)
        self.assertEqual(await self.targets(), {})

    async def test_a_deleted_account_leaves_no_subscription(self):
        ack = await self.bob.request({"msgid": MsgId.DELETE_ACCOUNT, "password": "secret"},
                                     MsgId.DELETE_ACCOUNT_ACK)
        self.assertEqual(ack["errno"], 0, ack)
        self.assertEqual(await self.targets(), {})

"""Message actions on a real node (SQLite, loopback clients): recall, edit, reply with a
quote, reactions and delete-for-me, as the users on both sides see them live, in HISTORY and
SYNC, at their next login and in the original dialect; and every bad request refused with
its errno and no effect."""

from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.handlers.emoji import is_one_emoji
from chatd.messages import Errno, MsgId
from tests.harness import connect, deferLater, device, login, start_node, user

ONE_CHAT, GROUP_CHAT = MsgId.ONE_CHAT, MsgId.GROUP_CHAT


async def sent(client: Any, to: int, msg: str, **fields: Any) -> int:
    """Send a 1:1 message and return its mid (from SEND_ACK)."""
    sent.count += 1  # type: ignore[attr-defined]
    cid = f"c{sent.count}"  # type: ignore[attr-defined]
    client.send({"msgid": ONE_CHAT, "to": to, "msg": msg, "cid": cid, **fields})
    ack = await client.recv(MsgId.SEND_ACK, cid=cid)
    assert ack["errno"] == 0, ack
    return ack["mid"]


sent.count = 0  # type: ignore[attr-defined]


async def history(client: Any, **conversation: Any) -> list[dict[str, Any]]:
    page = await client.request({"msgid": MsgId.HISTORY, **conversation}, MsgId.HISTORY_ACK)
    return page["messages"]


async def synced(client: Any) -> list[dict[str, Any]]:
    page = await client.request({"msgid": MsgId.SYNC, "after": 0}, MsgId.SYNC_ACK)
    return page["messages"]


class EmojiTests(SynchronousTestCase):
    def test_one_emoji_of_each_kind(self):
        for emoji in ("👍", "❤️", "👍🏽", "👩‍👩‍👧‍👦", "🧑🏿‍🚀", "🇫🇷", "1️⃣", "#⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿",
                      "☺", "👁️‍🗨️"):
            self.assertTrue(is_one_emoji(emoji), emoji)

    def test_text_marks_and_several_emoji_are_refused(self):
        for text in ("a", "ok", "👍👍", "👍 ", "a\u0301", "\u0301" * 1000, "👍" + "\u0301",
                     "🇫", "‍👍", "👍‍", "🏽", "1", "\ufe0f", "👩‍" * 8 + "👦", ""):
            self.assertFalse(is_one_emoji(text), repr(text))


class ActionTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.node = await start_node(self, None, "--recall-window", "2")
        self.alice = await user(self, self.node, "alice")
        self.bob = await user(self, self.node, "bob")
        self.alice.auto_ack = self.bob.auto_ack = True
        self.a, self.b = self.alice.user_id, self.bob.user_id

    async def test_recall_reaches_the_peer_live_and_leaves_a_tombstone(self):
        mid = await sent(self.alice, self.b, "wrong chat")
        await self.bob.recv(ONE_CHAT, mid=mid)
        ack = await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        self.assertEqual(ack, {"msgid": MsgId.RECALL_ACK, "errno": 0, "mid": mid})
        got = await self.bob.recv(MsgId.RECALLED)
        self.assertEqual({k: got[k] for k in ("mid", "by", "name", "peer")},
                         {"mid": mid, "by": self.a, "name": "alice", "peer": self.a})
        for reader, peer in ((self.alice, self.b), (self.bob, self.a)):
            kept = await history(reader, peer=peer)
            self.assertEqual([(m["mid"], m.get("recalled"), m.get("by"), "msg" in m)
                              for m in kept], [(mid, True, self.a, False)])
        again = await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        self.assertEqual(again["errno"], Errno.RECALLED)

    async def test_recall_reaches_an_offline_peer_who_never_sees_the_text(self):
        carol = await user(self, self.node, "carol")
        c = carol.user_id
        carol.transport.loseConnection()
        await carol.closed
        mid = await sent(self.alice, c, "secret text")
        await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        back, reply = await device(self, self.node, c, "phone")
        self.assertNotIn("secret text", str(reply))
        self.assertNotIn("secret text", str(await history(back, peer=self.a)))
        self.assertNotIn("secret text", str(await synced(back)))
        recalled = [f for f in reply["offlinemsg"] if f["msgid"] == MsgId.RECALLED]
        self.assertEqual([f["mid"] for f in recalled], [mid])

    async def test_recall_after_the_window_is_refused(self):
        mid = await sent(self.alice, self.b, "too late")
        await deferLater(2.2)
        ack = await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        self.assertEqual((ack["errno"], ack["mid"]), (Errno.RECALL_TOO_LATE, mid))
        self.assertEqual([m.get("msg") for m in await history(self.bob, peer=self.a)],
                         ["too late"])

    async def test_edit_then_recall(self):
        mid = await sent(self.alice, self.b, "teh typo")
        ack = await self.alice.request({"msgid": MsgId.EDIT, "mid": mid, "msg": "the typo"},
                                       MsgId.EDIT_ACK)
        self.assertEqual(ack["errno"], 0)
        edited = await self.bob.recv(MsgId.EDITED)
        self.assertEqual((edited["mid"], edited["msg"], edited["edited"], edited["peer"]),
                         (mid, "the typo", ack["edited"], self.a))
        kept = (await history(self.bob, peer=self.a))[0]
        self.assertEqual((kept["msg"], kept["edited"]), ("the typo", ack["edited"]))
        await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        await self.bob.recv(MsgId.RECALLED)
        self.assertNotIn("typo", str(await history(self.bob, peer=self.a)))
        late = await self.alice.request({"msgid": MsgId.EDIT, "mid": mid, "msg": "again"},
                                        MsgId.EDIT_ACK)
        self.assertEqual(late["errno"], Errno.RECALLED)

    async def test_only_the_sender_edits_or_recalls(self):
        mid = await sent(self.alice, self.b, "mine")
        for msgid, reply, extra in ((MsgId.RECALL, MsgId.RECALL_ACK, {}),
                                    (MsgId.EDIT, MsgId.EDIT_ACK, {"msg": "theirs"})):
            got = await self.bob.request({"msgid": msgid, "mid": mid, **extra}, reply)
            self.assertEqual((got["errno"], got["mid"]), (Errno.NOT_YOUR_MESSAGE, mid))
        self.assertEqual([m["msg"] for m in await history(self.alice, peer=self.b)], ["mine"])

    async def test_a_message_of_another_conversation_is_no_such_message(self):
        carol = await user(self, self.node, "carol")
        mid = await sent(self.alice, self.b, "between us")
        await self.bob.recv(ONE_CHAT, mid=mid)
        for frame, reply in (({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK),
                             ({"msgid": MsgId.REACT, "mid": mid, "emoji": "👍"},
                              MsgId.REACT_ACK),
                             ({"msgid": MsgId.HIDE, "mid": mid}, MsgId.HIDE),
                             ({"msgid": MsgId.RECALL, "mid": 12345}, MsgId.RECALL_ACK)):
            got = await carol.request(frame, reply)
            self.assertEqual(got["errno"], Errno.NO_SUCH_MESSAGE, frame)
        self.assertEqual(await self.bob.quiet(), [])

    async def test_reactions_are_counted_once_per_user_and_emoji(self):
        mid = await sent(self.alice, self.b, "lunch?")
        for _ in range(2):
            ack = await self.bob.request({"msgid": MsgId.REACT, "mid": mid, "emoji": "👍"},
                                         MsgId.REACT_ACK)
            self.assertEqual(ack["errno"], 0)
        await self.alice.request({"msgid": MsgId.REACT, "mid": mid, "emoji": "👍"},
                                 MsgId.REACT_ACK)
        got = [f for f in await self.alice.quiet() if f["msgid"] == MsgId.REACTION]
        self.assertEqual([(f["id"], f["emoji"], f["on"], f["peer"]) for f in got],
                         [(self.b, "👍", True, self.b)])
        kept = (await history(self.bob, peer=self.a))[0]
        self.assertEqual(kept["reactions"], {"👍": sorted([self.a, self.b])})
        await self.bob.request({"msgid": MsgId.REACT, "mid": mid, "emoji": "👍", "on": False},
                               MsgId.REACT_ACK)
        kept = (await history(self.alice, peer=self.b))[0]
        self.assertEqual(kept["reactions"], {"👍": [self.a]})

    async def test_bad_emoji_and_too_many_are_refused(self):
        node = await start_node(self, None, "--max-reactions", "2")
        alice, bob = await user(self, node, "alice"), await user(self, node, "bob")
        bob.auto_ack = True
        mid = await sent(alice, bob.user_id, "react")
        for emoji, errno in (("\u0301" * 32, Errno.NOT_AN_EMOJI), ("no", Errno.NOT_AN_EMOJI),
                             ("😀", 0), ("😃", 0), ("😄", Errno.TOO_MANY_REACTIONS),
                             ("😀", 0)):
            got = await bob.request({"msgid": MsgId.REACT, "mid": mid, "emoji": emoji},
                                    MsgId.REACT_ACK)
            self.assertEqual((got["errno"], got["emoji"]), (errno, emoji))
        huge = await bob.request({"msgid": MsgId.REACT, "mid": mid, "emoji": "\u0301" * 1000},
                                 MsgId.ERROR)
        self.assertEqual(huge["errno"], Errno.OUT_OF_RANGE)
        kept = (await history(alice, peer=bob.user_id))[0]
        self.assertEqual(sorted(kept["reactions"]), ["😀", "😃"])

    async def test_hide_affects_only_the_caller_on_every_device(self):
        mid = await sent(self.alice, self.b, "forget me")
        laptop, _ = await device(self, self.node, self.b, "laptop")
        ack = await self.bob.request({"msgid": MsgId.HIDE, "mid": mid}, MsgId.HIDE)
        self.assertEqual(ack, {"msgid": MsgId.HIDE, "errno": 0, "mid": mid})
        self.assertEqual(await laptop.recv(MsgId.HIDE), {"msgid": MsgId.HIDE, "mid": mid})
        self.assertEqual(await history(laptop, peer=self.a), [])
        self.assertEqual(await synced(laptop), [])
        self.assertEqual([m["msg"] for m in await history(self.alice, peer=self.b)],
                         ["forget me"])

    async def test_reply_carries_a_quote_that_shows_a_later_recall(self):
        original = await sent(self.bob, self.a, "x" * 300)
        reply = await sent(self.alice, self.b, "yes", reply_to=original)
        got = await self.bob.recv(ONE_CHAT, mid=reply)
        self.assertEqual(got["quote"], {"id": original, "name": "bob", "msg": "x" * 200})
        await self.bob.request({"msgid": MsgId.RECALL, "mid": original}, MsgId.RECALL_ACK)
        kept = (await history(self.alice, peer=self.b))[-1]
        self.assertEqual(kept["quote"], {"id": original, "name": "bob", "recalled": True})

    async def test_bad_reply_to_is_refused_with_its_own_errno(self):
        carol = await user(self, self.node, "carol")
        carol.auto_ack = True
        elsewhere = await sent(self.alice, carol.user_id, "other chat")
        hidden = await sent(self.bob, self.a, "hidden")
        await self.alice.request({"msgid": MsgId.HIDE, "mid": hidden}, MsgId.HIDE)
        gone = await sent(self.bob, self.a, "gone")
        await self.bob.request({"msgid": MsgId.RECALL, "mid": gone}, MsgId.RECALL_ACK)
        for reply_to, errno in ((elsewhere, Errno.OTHER_CONVERSATION),
                                (hidden, Errno.HIDDEN), (gone, Errno.RECALLED),
                                (999, Errno.NO_SUCH_MESSAGE), ("x", Errno.WRONG_TYPE)):
            self.alice.send({"msgid": ONE_CHAT, "to": self.b, "msg": "re", "cid": str(errno),
                             "reply_to": reply_to})
            got = await self.alice.recv(MsgId.ERROR, cid=str(errno))
            self.assertEqual(got["errno"], errno)
        self.assertEqual([f for f in await self.bob.quiet() if f.get("msg") == "re"], [])

    async def test_the_original_dialect_sees_the_recall_and_edit_lines(self):
        dave = await user(self, self.node, "dave", proto=None)
        d = dave.user_id
        mid = await sent(self.alice, d, "hello dave")
        await dave.recv(ONE_CHAT, msg="hello dave")
        await self.alice.request({"msgid": MsgId.EDIT, "mid": mid, "msg": "hi dave"},
                                 MsgId.EDIT_ACK)
        edited = await dave.recv(ONE_CHAT, msg="edited: hi dave")
        self.assertEqual((edited["id"], edited["name"]), (self.a, "alice"))
        await sent(self.alice, d, "see above", reply_to=mid)
        await dave.recv(ONE_CHAT, msg="see above")  # its client shows no quote
        await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        line = await dave.recv(ONE_CHAT, msg="alice recalled a message")
        self.assertIn("time", line)
        self.assertEqual([f for f in await dave.quiet() if f["msgid"] > GROUP_CHAT
                          and f["msgid"] != MsgId.ERROR], [])
        dave.transport.loseConnection()
        await dave.closed
        mid = await sent(self.alice, d, "while away")
        await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        again = await connect(self, self.node)
        reply = await login(again, d, proto=None)
        self.assertNotIn("while away", str(reply))
        self.assertIn("alice recalled a message", str(reply["offlinemsg"]))

    async def test_group_owner_recalls_any_message_and_a_kicked_member_cannot_react(self):
        carol = await user(self, self.node, "carol")
        carol.auto_ack = True
        gid = (await self.alice.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                        MsgId.CREATE_GROUP_ACK))["groupid"]
        for m in (self.bob, carol):
            await m.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        self.bob.send({"msgid": GROUP_CHAT, "groupid": gid, "msg": "spam", "cid": "s"})
        mid = (await self.bob.recv(MsgId.SEND_ACK, cid="s"))["mid"]
        await carol.recv(GROUP_CHAT, mid=mid)
        carol_denied = await carol.request({"msgid": MsgId.RECALL, "mid": mid},
                                           MsgId.RECALL_ACK)
        self.assertEqual(carol_denied["errno"], Errno.NOT_YOUR_MESSAGE)
        await deferLater(2.2)  # past the sender's window: moderation has none
        ack = await self.alice.request({"msgid": MsgId.RECALL, "mid": mid}, MsgId.RECALL_ACK)
        self.assertEqual(ack["errno"], 0)
        for m in (self.bob, carol):
            got = await m.recv(MsgId.RECALLED)
            self.assertEqual((got["mid"], got["by"], got["groupid"]), (mid, self.a, gid))
        self.bob.send({"msgid": GROUP_CHAT, "groupid": gid, "msg": "hi", "cid": "h"})
        hi = (await self.bob.recv(MsgId.SEND_ACK, cid="h"))["mid"]
        await self.alice.request({"msgid": MsgId.KICK_MEMBER, "groupid": gid,
                                  "userid": carol.user_id}, MsgId.KICK_MEMBER_ACK)
        kicked = await carol.request({"msgid": MsgId.REACT, "mid": hi, "emoji": "👍"},
                                     MsgId.REACT_ACK)
        self.assertEqual(kicked["errno"], Errno.NO_SUCH_MESSAGE)

    async def test_what_actions_left_expires_with_the_history(self):
        mid = await sent(self.alice, self.b, "old news")
        await self.bob.request({"msgid": MsgId.REACT, "mid": mid, "emoji": "👍"}, MsgId.REACT_ACK)
        await self.bob.request({"msgid": MsgId.HIDE, "mid": mid}, MsgId.HIDE)
        store = self.node.context.store
        state = await store.page_state([mid], [], self.b)
        self.assertEqual((state.reactions, state.hidden), ({mid: {"👍": [self.b]}}, {mid}))
        await store.expire_actions(mid + 1)
        state = await store.page_state([mid], [], self.b)
        self.assertEqual((state.reactions, state.hidden), ({}, set()))

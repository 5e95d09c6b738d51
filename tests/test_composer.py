"""The seams new message parts and frames plug into (composer.py, dialect.py), with a part
made for the test on a real node (SQLite, loopback clients): a part that needs a lookup holds
its sender's later messages in order, a refusal reaches only its sender, kept frames are
shown through the parts again, and an original-dialect session gets the registered words."""

from typing import Any

import ujson
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from chatd.delivery.dialect import Dialect
from chatd.messages import ChatError, Errno, MsgId
from tests.harness import Client, connect, deferLater, login, register, start_node, user

ONE_CHAT = MsgId.ONE_CHAT


class Label:
    """A part for the test: `label` is upper-cased once the test lets its lookup finish;
    "bad" is refused. Kept frames are shown with `shown`."""

    field = "label"

    def __init__(self) -> None:
        self.lookups: list[Deferred[None]] = []

    def add(self, session: Any, req: dict[str, Any], frame: dict[str, Any],
            members: list[int]) -> Deferred[None]:
        lookup: Deferred[None] = Deferred()
        self.lookups.append(lookup)

        def looked_up(_: None) -> None:
            if req["label"] == "bad":
                raise ChatError(Errno.OUT_OF_RANGE, "label")
            frame["label"] = req["label"].upper()
        return lookup.addCallback(looked_up)

    def show(self, frames: list[dict[str, Any]], viewer: int) -> None:
        for frame in frames:
            if "label" in frame:
                frame["shown"] = viewer


def labelled_line(frame: dict[str, Any]) -> dict[str, Any]:
    frame["msg"] = f"{frame['msg']} [{frame.pop('label').lower()}]"
    return frame


class ComposerTests(TestCase):
    timeout = 30

    async def setUp(self) -> None:
        self.node = await start_node(self)
        self.part = Label()
        self.node.context.composer.register(self.part)
        self.node.context.router.dialect.field("label", labelled_line)
        self.alice = await user(self, self.node, "alice")
        self.bob = await user(self, self.node, "bob")
        self.bob.auto_ack = True

    async def lookup(self, index: int) -> Deferred[None]:
        """The part's `index`th lookup, once the node has asked for it."""
        while len(self.part.lookups) <= index:
            await deferLater(0.01)
        return self.part.lookups[index]

    def chat(self, text: str, **fields: Any) -> None:
        self.alice.send({"msgid": ONE_CHAT, "to": self.bob.user_id, "msg": text, **fields})

    async def test_later_messages_wait_behind_a_lookup_in_order(self):
        self.chat("photo", label="cat", cid="1")
        self.chat("look at this", cid="2")
        self.chat("and this", cid="3")
        self.assertEqual(await self.bob.quiet(), [])
        (await self.lookup(0)).callback(None)
        got = [await self.bob.recv(ONE_CHAT) for _ in range(3)]
        self.assertEqual([(f["msg"], f.get("label")) for f in got],
                         [("photo", "CAT"), ("look at this", None), ("and this", None)])
        self.assertEqual(sorted(f["mid"] for f in got), [f["mid"] for f in got])

    async def test_a_refused_part_answers_its_sender_and_the_rest_goes_on(self):
        self.chat("photo", label="bad", cid="1")
        self.chat("after", cid="2")
        (await self.lookup(0)).callback(None)
        refused = await self.alice.recv(MsgId.ERROR)
        self.assertEqual((refused["errno"], refused["ref"], refused["cid"]),
                         (Errno.OUT_OF_RANGE, ONE_CHAT, "1"))
        self.assertEqual((await self.bob.recv(ONE_CHAT))["msg"], "after")
        self.assertEqual([f["msg"] for f in await self.bob.quiet() if f["msgid"] == ONE_CHAT],
                         [])

    async def test_history_shows_kept_frames_through_the_parts(self):
        self.chat("photo", label="cat")
        (await self.lookup(0)).callback(None)
        await self.bob.recv(ONE_CHAT)
        page = await self.bob.request({"msgid": MsgId.HISTORY, "peer": self.alice.user_id},
                                      MsgId.HISTORY_ACK)
        self.assertEqual([(m["label"], m["shown"]) for m in page["messages"]],
                         [("CAT", self.bob.user_id)])

    async def test_the_original_dialect_gets_the_registered_words(self):
        carol = await user(self, self.node, "carol", proto=None)
        self.alice.send({"msgid": ONE_CHAT, "to": carol.user_id, "msg": "photo",
                         "label": "cat"})
        (await self.lookup(0)).callback(None)
        got = await carol.recv(ONE_CHAT)
        self.assertEqual(got["msg"], "photo [cat]")
        self.assertNotIn("label", got)

    async def test_offline_frames_are_shown_or_put_in_words_at_login(self):
        modern, original = await self._offline("dave", 2), await self._offline("erin", None)
        self.assertEqual([(m["label"], m["shown"]) for m in modern["offlinemsg"]],
                         [("CAT", modern["id"])])
        self.assertEqual([ujson.loads(m)["msg"] for m in original["offlinemsg"]],
                         ["photo [cat]"])

    async def _offline(self, name: str, proto: int | None) -> dict[str, Any]:
        """A photo to a user who is away, then the user's login reply."""
        client: Client = await connect(self, self.node)
        user_id = await register(client, name)
        self.alice.send({"msgid": ONE_CHAT, "to": user_id, "msg": "photo", "label": "cat",
                         "cid": name})
        (await self.lookup(len(self.part.lookups))).callback(None)
        await self.alice.recv(MsgId.SEND_ACK, cid=name)
        return await login(client, user_id, proto=proto)


class DialectTests(TestCase):

    def setUp(self) -> None:
        self.dialect = Dialect()

    def test_without_registrations_frames_pass_unchanged(self):
        data = b'{"msgid":6,"msg":"hi"}\n'
        self.assertIs(self.dialect.original(data), data)

    def test_a_registered_frame_is_converted_or_dropped(self):
        self.dialect.frame(52, lambda f: None)
        self.dialect.frame(55, lambda f: {"msgid": 6, "msg": "edited: " + f["msg"]})
        self.assertIsNone(self.dialect.original(b'{"msgid":52,"mid":1}\n'))
        self.assertEqual(self.dialect.original(b'{"msgid":55,"msg":"x"}\n'),
                         b'{"msgid":6,"msg":"edited: x"}\n')
        other = b'{"msgid":5,"msg":"\\"msgid\\":52,"}\n'
        self.assertIs(self.dialect.original(other), other)

    def test_a_field_in_text_is_not_the_field(self):
        self.dialect.field("label", labelled_line)
        text = b'{"msgid":6,"msg":"\\"label\\":"}\n'
        self.assertIs(self.dialect.original(text), text)

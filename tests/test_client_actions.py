"""chat-client's message actions on a memory transport and a fake clock: the commands and the
frames they send, the lines of received recalls, edits and reactions (stored ones are
acknowledged), and history lines that name mids and show what the actions left."""

from __future__ import annotations

from chatd.messages import Errno, MsgId
from client import actions
from client.acks import ACK_DELAY
from client.commands import CommandError
from tests.test_client_conversations import TIME, ConversationCase, chat, group_chat


class ParseTests(ConversationCase):
    def test_commands_and_their_usage(self) -> None:
        self.assertEqual(actions.parse("recall:5"), actions.Recall(5))
        self.assertEqual(actions.parse("edit:5:a:b"), actions.Edit(5, "a:b"))
        self.assertEqual(actions.parse("reply:5:yes"), actions.Reply(5, "yes"))
        self.assertEqual(actions.parse("react:5:👍"), actions.React(5, "👍"))
        self.assertEqual(actions.parse("unreact:5:👍"), actions.React(5, "👍", False))
        self.assertIsNone(actions.parse("chat:5:hi"))
        with self.assertRaisesRegex(CommandError, "usage: edit:mid:message"):
            actions.parse("edit:5")
        with self.assertRaisesRegex(CommandError, "usage: recall:mid"):
            actions.parse("recall:x")


class ActionCommandTests(ConversationCase):
    def test_recall_edit_react_send_their_requests_and_say_when_done(self) -> None:
        for line, frame, reply, said in (
                ("recall:7", {"msgid": MsgId.RECALL, "mid": 7},
                 {"msgid": MsgId.RECALL_ACK, "errno": 0, "mid": 7}, "recalled: #7"),
                ("edit:7:fixed", {"msgid": MsgId.EDIT, "mid": 7, "msg": "fixed"},
                 {"msgid": MsgId.EDIT_ACK, "errno": 0, "mid": 7, "edited": 1},
                 "edited: #7: fixed"),
                ("react:7:👍", {"msgid": MsgId.REACT, "mid": 7, "emoji": "👍", "on": True},
                 {"msgid": MsgId.REACT_ACK, "errno": 0, "mid": 7, "emoji": "👍", "on": True},
                 "reacted: #7 👍")):
            self.assertEqual(self.type(line), [frame])
            self.wire.receive(reply)
            self.assertEqual(self.shown(), [said])

    def test_a_refusal_is_an_error_line(self) -> None:
        self.type("recall:7")
        self.wire.receive({"msgid": MsgId.RECALL_ACK, "errno": Errno.RECALL_TOO_LATE,
                           "errmsg": "too late to recall this message", "mid": 7})
        self.assertEqual(self.shown(), ["error: recall:7 failed: too late to recall this "
                                        "message (errno 212)"])

    def test_reply_goes_to_the_conversation_of_the_message(self) -> None:
        self.wire.receive(chat(40, msg="lunch?"))
        self.wire.receive(group_chat(41))
        self.clock.advance(ACK_DELAY)
        self.wire.sent()
        [one] = self.type("reply:40:yes")
        self.assertEqual({k: one[k] for k in ("msgid", "to", "msg", "reply_to")},
                         {"msgid": MsgId.ONE_CHAT, "to": 2, "msg": "yes", "reply_to": 40})
        [group] = self.type("reply:41:ok")
        self.assertEqual((group["msgid"], group["groupid"], group["reply_to"]),
                         (MsgId.GROUP_CHAT, 3, 41))
        self.assertEqual(self.type("reply:99:who?"), [])
        self.assertEqual(self.shown(), ["error: message #99 is not known here; show it with "
                                        "history first"])

    def test_received_actions_are_readable_lines_and_stored_ones_acknowledged(self) -> None:
        self.shown()
        self.wire.sent()
        self.wire.receive({"msgid": MsgId.RECALLED, "mid": 40, "by": 2, "name": "bob",
                           "peer": 2, "ack": 90})
        self.wire.receive({"msgid": MsgId.EDITED, "mid": 41, "msg": "new", "edited": 1,
                           "id": 2, "name": "bob", "groupid": 3, "ack": 91})
        self.wire.receive({"msgid": MsgId.REACTION, "mid": 42, "id": 2, "emoji": "🎉",
                           "on": True, "peer": 2})
        self.assertEqual(self.shown()[-3:], [
            "recalled: bob recalled a message (#40)",
            "edited: [2]bob edited #41 in group [3]: new",
            "reaction: [2]bob reacted 🎉 on #42"])
        self.clock.advance(ACK_DELAY)
        acks = [f for f in self.wire.sent() if f["msgid"] == MsgId.RECV_ACK]
        self.assertEqual([f["mids"] for f in acks], [[90, 91]])

    def test_history_names_mids_and_shows_quotes_edits_recalls_reactions(self) -> None:
        self.type("history:2:4")
        self.wire.receive({"msgid": MsgId.HISTORY_ACK, "errno": 0, "peer": 2, "more": False,
                           "messages": [
                               chat(1, msg="fixed", edited=5),
                               {**chat(2), "recalled": True, "by": 2, "msg": None},
                               chat(3, msg="sure", quote={"id": 1, "name": "bob",
                                                          "msg": "fixed"}),
                               chat(4, msg="yay", reactions={"👍": [1, 2]})]})
        self.assertEqual(self.shown()[1:5], [
            f"#1 {TIME} [2]bob said: fixed (edited)",
            f"#2 {TIME} [2]bob said: (recalled)",
            f"#3 {TIME} [2]bob said: > bob: fixed | sure",
            f"#4 {TIME} [2]bob said: yay [👍2]"])


class OfflineActionTests(ConversationCase):
    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from tests.test_client_session import ScriptedConsole
        self.clock = Clock()
        self.console = ScriptedConsole()
        self.state_path = self.mktemp()

    def test_stored_actions_and_hidden_messages_at_login(self) -> None:
        self.start(offlinemsg=[
            {**chat(40), "recalled": True, "by": 2, "msg": None},
            {"msgid": MsgId.RECALLED, "mid": 40, "by": 2, "name": "bob", "peer": 2, "ack": 90},
            {**chat(41, msg="hidden one"), "hidden": True}])
        shown = "\n".join(self.console.shown)
        self.assertIn(f"{TIME} [2]bob said: (recalled)", shown)
        self.assertIn("recalled: bob recalled a message (#40)", shown)
        self.assertNotIn("hidden one", shown)
        acked = [f for f in self.wire.sent() if f["msgid"] == MsgId.RECV_ACK]
        self.assertEqual(sorted(acked[0]["mids"]), [40, 41, 90])

"""chat-client's notifications on memory transports: `mute:` and `mutegroup:` send MUTE,
`@name` in a group message becomes `mentions`, and a message mentioning the user rings the
bell."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from chatd.messages import MsgId
from client import commands, notify
from client.commands import CommandError, parse_command
from tests.test_client_session import DEV, SessionCase, login_ack


class MuteCommandTests(SynchronousTestCase):

    def test_parsed_with_optional_minutes(self) -> None:
        self.assertEqual(parse_command("mute:2"), commands.Mute(2))
        self.assertEqual(parse_command("mute:2:30"), commands.Mute(2, 30))
        self.assertEqual(parse_command("mutegroup:3:0"), commands.Mute(3, 0, group=True))
        self.assertEqual(str(commands.Mute(3, 5, group=True)), "mutegroup:3:5")
        for bad in ("mute", "mute:x", "mute:2:soon", "mute:2:-1"):
            self.assertRaises(CommandError, parse_command, bad)

    def test_requests(self) -> None:
        self.assertEqual(notify.mute_request(commands.Mute(2)),
                         {"msgid": MsgId.MUTE, "peer": 2, "until": -1})
        self.assertEqual(notify.mute_request(commands.Mute(3, 0, True)),
                         {"msgid": MsgId.MUTE, "groupid": 3, "until": 0})
        self.assertEqual(notify.mute_request(commands.Mute(2, 10), now=1000)["until"],
                         (1000 + 600) * 1000)


class MentionTests(SessionCase):

    def log_in_with_group(self) -> Any:
        wire = self.connect()
        reply = Deferred.fromCoroutine(self.session.login(1, "pw"))
        wire.sent()
        wire.receive({**login_ack(), "groups": [DEV]})
        self.successResultOf(reply)
        self.take_shown()
        return wire

    def test_at_names_become_mentions(self) -> None:
        wire = self.log_in_with_group()
        self.session.group_chat(3, "@bob look, @nobody", "groupchat:3:...")
        self.session.group_chat(3, "@all meeting", "groupchat:3:...")
        self.session.group_chat(3, "mail me at a@b.c, @alice", "groupchat:3:...")
        sent = wire.sent()
        self.assertEqual([f.get("mentions") for f in sent], [[2], "all", None])

    def test_a_mention_of_the_user_rings_the_bell(self) -> None:
        wire = self.log_in_with_group()
        frame = {"msgid": MsgId.GROUP_CHAT, "id": 2, "name": "bob", "groupid": 3,
                 "msg": "@alice hi", "time": "2026-12-05 10:00:00", "mid": 7}
        wire.receive({**frame, "mentions": [1]})
        wire.receive({**frame, "mid": 8, "msg": "not you", "mentions": [5]})
        shown = self.take_shown()
        self.assertTrue(shown[0].startswith(notify.BELL + "@ "), shown)
        self.assertNotIn(notify.BELL, shown[1])

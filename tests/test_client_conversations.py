"""chat-client's conversation features (proto 2) on memory transports and a fake clock:
devices, unread counts, catching up with SYNC, read markers and receipts, typing, notices,
history and the commands that remove, leave, kick and block."""

from __future__ import annotations

import asyncio
import io
import json
import os
from typing import Any

from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.messages import Errno, MsgId
from client.consoles import PromptConsole
from client.controller import Controller
from client.session import Session
from client.state import LastMids
from tests.test_client_session import DEV, FRIENDS, ScriptedConsole, Wire, login_ack

TIME = "2026-11-29 10:00:00"


def chat(mid: int, sender: int = 2, to: int = 1, msg: str = "hi", **more: Any
         ) -> dict[str, Any]:
    names = {1: "alice", 2: "bob", 3: "carol"}
    return {"msgid": MsgId.ONE_CHAT, "id": sender, "name": names[sender], "to": to, "msg": msg,
            "time": TIME, "mid": mid, **more}


def group_chat(mid: int, sender: int = 2, msg: str = "all") -> dict[str, Any]:
    return {"msgid": MsgId.GROUP_CHAT, "id": sender, "name": "bob", "groupid": 3, "msg": msg,
            "time": TIME,
            "mid": mid}


class ConversationCase(SynchronousTestCase):
    """A logged-in client (alice, user 1, device "laptop") under the test's control."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.console = ScriptedConsole()
        self.state_path = os.path.abspath(self.mktemp())
        self.start()

    def start(self, **ack: Any) -> None:
        self.state = LastMids(self.state_path, "127.0.0.1:6000")
        self.session = Session(self.console.show, self.clock, "laptop", self.state)
        self.wire = Wire(self.session, self.clock)
        self.done = Deferred.fromCoroutine(Controller(self.session, self.console).run())
        self.wire.sent()
        self.console.type("login:1:pw")
        [login] = self.wire.sent()
        self.assertEqual(login, {"msgid": MsgId.LOGIN, "id": 1, "password": "pw", "proto": 2,
                                 "device": "laptop"})
        reply = {**login_ack(), "groups": [DEV], "device": "laptop", "unread": [], **ack}
        self.wire.receive({key: value for key, value in reply.items() if value is not None})

    def type(self, *lines: str) -> list[dict[str, Any]]:
        """Type command lines; the frames they sent."""
        del self.console.shown[:]
        self.console.type(*lines)
        return self.wire.sent()

    def shown(self) -> list[str]:
        shown, self.console.shown[:] = list(self.console.shown), []
        return shown


class LoginTests(ConversationCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.console = ScriptedConsole()
        self.state_path = os.path.abspath(self.mktemp())

    def test_unread_counts_follow_the_summary(self) -> None:
        self.start(unread=[{"peer": 2, "count": 3, "last_mid": 9},
                           {"groupid": 3, "count": 1, "last_mid": 8},
                           {"peer": 7, "count": 1, "last_mid": 5}])
        self.assertEqual(self.console.shown[-4:], [
            "=" * 54,
            "unread: 3 from [2]bob",
            "unread: 1 in group [3]dev",
            "unread: 1 from [7]",
        ])

    def test_first_login_of_a_device_does_not_sync(self) -> None:
        self.start()
        self.assertEqual(self.wire.sent(), [])
        self.assertEqual(self.console.prompts[-1], ("[1]alice> ", False))

    def test_device_catches_up_from_the_last_mid_it_saw_in_an_earlier_run(self) -> None:
        """The first run shows mid 40 and saves it; the second run syncs after 40, shows
        every page once (not the offline message twice) and names the peer of its own
        messages sent from another device."""
        self.start()
        self.wire.receive(chat(40))
        self.clock.advance(1)
        with open(self.state_path, encoding="utf-8") as f:
            self.assertEqual(json.load(f), {"127.0.0.1:6000 1 laptop": 40})
        self.console.type(None)
        self.successResultOf(self.done)

        self.start(offlinemsg=[chat(41, msg="offline")])
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.RECV_ACK, "mid": 41},
                                            {"msgid": MsgId.SYNC, "after": 40}])
        self.wire.receive({"msgid": MsgId.SYNC_ACK, "errno": 0, "more": True,
                           "messages": [chat(41, msg="offline"),
                                        chat(42, sender=1, to=2, msg="from my phone")]})
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.SYNC, "after": 42}])
        self.wire.receive({"msgid": MsgId.SYNC_ACK, "errno": 0, "more": False,
                           "messages": [group_chat(43)]})
        self.assertEqual(self.console.shown[-3:], [
            f"{TIME} [2]bob said: offline",
            f"{TIME} [1]alice said to [2]bob: from my phone",
            f"群消息[3]:{TIME} [2]bob said: all",
        ])
        self.assertEqual(self.console.prompts[-1], ("[1]alice> ", False))
        self.console.type(None)
        self.successResultOf(self.done)
        self.assertEqual(LastMids(self.state_path, "127.0.0.1:6000").get("1 laptop"), 43)
        self.assertEqual(LastMids(self.state_path, "127.0.0.1:7000").get("1 laptop"), 0)

    def test_refused_sync_is_an_error_line_and_the_client_goes_on(self) -> None:
        LastMids(self.state_path, "127.0.0.1:6000").save("1 laptop", 40)
        self.start()
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.SYNC, "after": 40}])
        self.wire.receive({"msgid": MsgId.ERROR, "errno": Errno.UNAVAILABLE, "errmsg": "try again",
                           "ref": MsgId.SYNC})
        self.assertEqual(self.console.shown[-1],
                         "error: catching up failed: try again (errno 130)")
        self.assertEqual(self.console.prompts[-1], ("[1]alice> ", False))

    def test_unreadable_state_file_is_reported_and_ignored(self) -> None:
        with open(self.state_path, "w", encoding="utf-8") as f:
            f.write("{not json")
        state = LastMids(self.state_path, "x")
        self.assertIn("cannot read", state.problem)
        self.assertEqual(state.get("1 laptop"), 0)
        state.save("1 laptop", 5)
        self.assertEqual((state.problem, LastMids(self.state_path, "x").get("1 laptop")),
                         ("", 5))


class ReadTests(ConversationCase):
    def test_what_is_shown_is_marked_read_once_per_conversation(self) -> None:
        self.wire.receive(chat(10))
        self.wire.receive(chat(11))
        self.wire.receive(group_chat(12))
        self.wire.receive(chat(13, sender=1, to=2, msg="mine, from my phone"))
        self.assertEqual(self.wire.sent(), [])
        self.clock.advance(0)
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.RECV_ACK, "mids": [10, 11, 12, 13]},
                                            {"msgid": MsgId.READ, "peer": 2, "mid": 11},
                                            {"msgid": MsgId.READ, "groupid": 3, "mid": 12}])

    def test_a_server_without_conversations_gets_no_read_and_no_typing(self) -> None:
        self.console.type(None)
        self.successResultOf(self.done)
        LastMids(self.state_path, "127.0.0.1:6000").save("1 laptop", 40)
        self.start(device=None, unread=None)
        self.wire.sent()
        self.wire.receive(chat(50))
        self.session.user_typing("chat:2:hello")
        self.clock.advance(1)
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.RECV_ACK, "mid": 50}])

    def test_a_peer_reading_my_messages_is_a_receipt_on_the_newest_it_covers(self) -> None:
        cids = [frame["cid"] for frame in self.type("chat:2:one", "chat:2:two", "chat:2:three")]
        for mid, cid in zip((20, 21, 22), cids, strict=True):
            self.wire.receive({"msgid": MsgId.SEND_ACK, "cid": cid, "mid": mid, "errno": 0})
        self.shown()
        self.wire.receive({"msgid": MsgId.READ, "peer": 1, "mid": 21, "id": 2})
        self.wire.receive({"msgid": MsgId.READ, "peer": 1, "mid": 21, "id": 2})
        self.wire.receive({"msgid": MsgId.READ, "peer": 2, "mid": 22, "id": 1})
        self.assertEqual(self.shown(), ["read: [2]bob read chat:2:two"])
        self.wire.receive({"msgid": MsgId.READ, "peer": 1, "mid": 30, "id": 2})
        self.assertEqual(self.shown(), ["read: [2]bob read chat:2:three"])


class TypingTests(ConversationCase):
    def test_typing_of_others_is_shown(self) -> None:
        self.shown()
        self.wire.receive({"msgid": MsgId.TYPING, "id": 2, "to": 1})
        self.wire.receive({"msgid": MsgId.TYPING, "id": 9, "to": 1})
        self.assertEqual(self.shown(), ["typing: [2]bob", "typing: [9]"])

    def test_typing_a_message_tells_the_friend_at_most_once_a_second(self) -> None:
        for line in ("c", "chat:2", "chat:2:", "chat:2:h", "chat:2:he", "chat:1:x",
                     "groupchat:3:x"):
            self.session.user_typing(line)
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.TYPING, "to": 2}])
        self.clock.advance(0.9)
        self.session.user_typing("chat:2:hel")
        self.assertEqual(self.wire.sent(), [])
        self.clock.advance(0.1)
        self.session.user_typing("chat:2:hell")
        self.session.user_typing("chat:5:x")
        self.assertEqual(self.wire.sent(),
                         [{"msgid": MsgId.TYPING, "to": 2}, {"msgid": MsgId.TYPING, "to": 5}])


class NoticeTests(ConversationCase):
    def test_notices_are_shown(self) -> None:
        self.shown()
        for frame in ({"kind": "broadcast", "msg": "maintenance at 22:00"},
                      {"kind": "banned"}, {"kind": "something new"}):
            self.wire.receive({"msgid": MsgId.NOTICE, **frame})
        self.assertEqual(self.shown(), ["notice: broadcast: maintenance at 22:00",
                                        "notice: your account has been banned",
                                        "notice: something new"])

    def test_kicked_from_a_group(self) -> None:
        self.shown()
        self.wire.receive({"msgid": MsgId.NOTICE, "kind": "kicked", "groupid": 3})
        self.assertEqual(self.shown(), ["notice: you were removed from group [3]dev"])
        self.assertEqual(self.session.groups, [])

    def test_another_login_of_this_device_logs_out_for_good(self) -> None:
        self.wire.receive({"msgid": MsgId.NOTICE, "kind": "logged_in_elsewhere"})
        self.wire.lose()
        Wire(self.session, self.clock)
        self.assertIn("notice: another login took over this device; you are logged out",
                      self.console.shown)
        self.assertFalse(self.session.logged_in)
        self.console.type("friends")
        self.assertEqual(self.console.shown[-1], "error: you have been logged out; log in again")
        self.assertEqual(self.console.prompts[-1], ("choice:", False))


class CommandTests(ConversationCase):
    def test_history_pages_back_and_shows_the_conversation(self) -> None:
        self.assertEqual(self.type("history:2:150"),
                         [{"msgid": MsgId.HISTORY, "peer": 2, "limit": 100}])
        page = [chat(mid, msg=f"m{mid}") for mid in range(101, 201)]
        page[-1] = chat(200, sender=1, to=2, msg="mine")
        self.wire.receive({"msgid": MsgId.HISTORY_ACK, "errno": 0, "peer": 2, "messages": page,
                           "more": True})
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.HISTORY, "peer": 2, "before": 101,
                                             "limit": 50}])
        older = [chat(mid, msg=f"m{mid}") for mid in range(51, 101)]
        self.wire.receive({"msgid": MsgId.HISTORY_ACK, "errno": 0, "peer": 2, "messages": older,
                           "more": True})
        shown = self.shown()
        self.assertRegex(shown[0], r"^-+history with \[2\]bob-+$")
        self.assertEqual(shown[1], f"#51 {TIME} [2]bob said: m51")
        self.assertEqual(shown[-2], f"#200 {TIME} [1]alice said to [2]bob: mine")
        self.assertEqual(shown[-1], "history: 150 message(s) with [2]bob, older ones exist")
        self.assertEqual(len(shown), 152)
        self.clock.advance(0)
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.READ, "peer": 2, "mid": 199}])

    def test_group_history_and_its_refusal(self) -> None:
        self.assertEqual(self.type("ghistory:3"),
                         [{"msgid": MsgId.HISTORY, "groupid": 3, "limit": 20}])
        self.wire.receive({"msgid": MsgId.HISTORY_ACK, "errno": 0, "groupid": 3, "more": False,
                           "messages": [group_chat(5)]})
        shown = self.shown()
        self.assertRegex(shown[0], r"^-+history in group \[3\]-+$")
        self.assertEqual(shown[1:], [f"#5 群消息[3]:{TIME} [2]bob said: all",
                                     "history: 1 message(s) in group [3]"])
        self.type("ghistory:9:5")
        self.wire.receive({"msgid": MsgId.HISTORY_ACK, "errno": Errno.NOT_A_MEMBER,
                           "errmsg": "not a member of this group",
                           "groupid": 9})
        self.assertEqual(self.shown(), ["error: ghistory:9:5 failed: not a member of this "
                                        "group (errno 124)"])

    def test_remove_leave_kick_block_unblock(self) -> None:
        self.assertEqual(self.type("removefriend:2"),
                         [{"msgid": MsgId.REMOVE_FRIEND, "friendid": 2}])
        self.wire.receive({"msgid": MsgId.REMOVE_FRIEND_ACK, "errno": 0, "friendid": 2})
        self.assertEqual((self.shown(), self.session.friends), (["friend removed: [2]bob"], []))
        self.assertEqual(self.type("kick:3:2"),
                         [{"msgid": MsgId.KICK_MEMBER, "groupid": 3, "userid": 2}])
        self.wire.receive({"msgid": MsgId.KICK_MEMBER_ACK, "errno": 0, "groupid": 3, "userid": 2})
        self.assertEqual(self.shown(), ["member removed: [3] [2]bob"])
        self.assertEqual(self.type("leavegroup:3"), [{"msgid": MsgId.LEAVE_GROUP, "groupid": 3}])
        self.wire.receive({"msgid": MsgId.LEAVE_GROUP_ACK, "errno": 0, "groupid": 3})
        self.assertEqual((self.shown(), self.session.groups), (["group left: [3]"], []))
        self.assertEqual(self.type("block:2"), [{"msgid": MsgId.BLOCK, "userid": 2, "block": True}])
        self.wire.receive({"msgid": MsgId.BLOCK_ACK, "errno": 0, "userid": 2, "block": True})
        self.assertEqual(self.type("unblock:2"),
                         [{"msgid": MsgId.BLOCK, "userid": 2, "block": False}])
        self.wire.receive({"msgid": MsgId.BLOCK_ACK, "errno": 0, "userid": 2, "block": False})
        self.assertEqual(self.console.shown, ["unblocked: [2]bob"])
        self.type("kick:3:1")
        self.wire.receive({"msgid": MsgId.KICK_MEMBER_ACK, "errno": Errno.KICK_SELF,
                           "errmsg": "cannot kick yourself",
                           "groupid": 3, "userid": 1})
        self.assertEqual(self.shown(),
                         ["error: kick:3:1 failed: cannot kick yourself (errno 164)"])
        self.assertEqual(self.session.friends, [])
        self.assertNotEqual(FRIENDS, [])

    def test_devices(self) -> None:
        self.assertEqual(self.type("devices"), [{"msgid": MsgId.DEVICES}])
        self.wire.receive({"msgid": MsgId.DEVICES_ACK, "errno": 0, "devices": [
            {"device": "laptop", "since": 0}, {"device": "phone\n", "since": "?"}]})
        shown = self.shown()
        self.assertRegex(shown[0], r"^device: laptop since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
                                   r"\(this one\)$")
        self.assertEqual(shown[1], "device: phone\\n since ?")

    def test_requests_wait_for_each_other(self) -> None:
        """A command typed while a catch-up or another request is out is sent after it."""
        first = Deferred.fromCoroutine(self.session.devices())
        second = Deferred.fromCoroutine(self.session.block(2, True))
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.DEVICES}])
        self.wire.receive({"msgid": MsgId.DEVICES_ACK, "errno": 0, "devices": []})
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.BLOCK, "userid": 2, "block": True}])
        self.wire.receive({"msgid": MsgId.BLOCK_ACK, "errno": 0, "userid": 2, "block": True})
        self.assertEqual([self.successResultOf(d)["msgid"] for d in (first, second)], [39, 36])


class Terminal(Vt100_Output):
    """A terminal in memory that knows, as a real one answers, the rows below the cursor
    (prompt_toolkit draws the toolbar only then)."""

    def get_rows_below_cursor_position(self) -> int:
        return 9


class TerminalTests(SynchronousTestCase):
    """The prompt_toolkit console: typing shows under the prompt and leaves the line alone."""

    def test_typing_notice_in_the_toolbar_and_each_change_of_the_line_reported(self) -> None:
        async def scenario() -> tuple[str, list[str], str | None]:
            screen = io.StringIO()
            output = Terminal(screen, lambda: Size(rows=10, columns=60), term="xterm",
                              enable_cpr=False)
            with create_pipe_input() as keys, create_app_session(input=keys, output=output):
                console = PromptConsole()
                changes: list[str] = []
                console.watch_typing(changes.append)
                line = console.read_line("[1]alice> ").asFuture(asyncio.get_running_loop())
                keys.send_text("chat:2:h")
                await asyncio.sleep(0.05)
                console.show_typing({"id": 2, "name": "bob"})
                await asyncio.sleep(0.05)
                keys.send_text("i\r")
                return screen.getvalue(), changes, await line

        screen, changes, line = asyncio.run(scenario())
        self.assertIn("[2]bob is typing…", screen)
        self.assertEqual(line, "chat:2:hi")
        self.assertEqual(changes[-3:], ["chat:2:", "chat:2:h", "chat:2:hi"])


class StateFileTests(SynchronousTestCase):
    def test_a_state_file_that_cannot_be_written_is_reported_and_kept_in_memory(self) -> None:
        folder = os.path.abspath(self.mktemp())
        path = os.path.join(folder, "last-mids.json")
        os.makedirs(path)
        state = LastMids(path, "s")
        state.save("1 laptop", 7)
        self.assertIn(f"cannot write {path}", state.problem)
        self.assertEqual(os.listdir(folder), ["last-mids.json"], "no temporary file is left")
        self.assertEqual(state.get("1 laptop"), 7)

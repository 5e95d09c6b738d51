"""chat-client's pure parts: command parsing and display formatting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from chatd.messages import Errno, MsgId
from client import display
from client.commands import (
    AddFriend,
    AddGroup,
    AskLogin,
    AskRegister,
    Block,
    Chat,
    CommandError,
    CreateGroup,
    Devices,
    Friends,
    GroupChat,
    Groups,
    Help,
    History,
    Kick,
    LeaveGroup,
    Login,
    Loginout,
    Quit,
    Register,
    RemoveFriend,
    parse_command,
    parse_id,
    parse_menu,
    typing_target,
)

ids = st.integers(min_value=1, max_value=2**63 - 1)
messages = st.text(min_size=1).filter(lambda text: "\n" not in text)


class CommandTests(SynchronousTestCase):
    def test_original_commands(self) -> None:
        for line, command in [
            ("help", Help()),
            ("chat:12:hello", Chat(12, "hello")),
            ("addfriend:12", AddFriend(12)),
            ("creategroup:dev:chatd developers", CreateGroup("dev", "chatd developers")),
            ("addgroup:3", AddGroup(3)),
            ("groupchat:3:hi all", GroupChat(3, "hi all")),
            ("loginout", Loginout()),
        ]:
            self.assertEqual(parse_command(line), command, line)

    def test_modern_commands(self) -> None:
        self.assertEqual([parse_command(line) for line in ("friends", "groups", "quit")],
                         [Friends(), Groups(), Quit()])

    def test_conversation_commands(self) -> None:
        for line, command in [
            ("history:2", History(2, 20)),
            ("history:2:1000", History(2, 1000)),
            ("ghistory:3:5", History(3, 5, group=True)),
            ("removefriend:2", RemoveFriend(2)),
            ("leavegroup:3", LeaveGroup(3)),
            ("kick:3:4", Kick(3, 4)),
            ("block:5", Block(5)),
            ("unblock:5", Block(5, block=False)),
            ("devices", Devices()),
        ]:
            self.assertEqual(parse_command(line), command, line)
            self.assertEqual(str(command), line)

    def test_typing_target_is_the_friend_of_a_begun_chat_message(self) -> None:
        self.assertEqual([typing_target(line) for line in (
            "chat:2:h", " Chat: 2 :hello", "chat:2:", "chat:2", "chat:x:h", "groupchat:3:h",
            "help")], [2, 2, None, None, None, None, None])

    def test_message_is_the_rest_of_the_line_verbatim(self) -> None:
        self.assertEqual(parse_command("chat:2: at 10:00: lunch? "), Chat(2, " at 10:00: lunch? "))
        self.assertEqual(parse_command("groupchat:3:a:b"), GroupChat(3, "a:b"))

    def test_group_description_may_hold_colons_or_be_left_out(self) -> None:
        self.assertEqual(parse_command("creategroup:dev:a: b"), CreateGroup("dev", "a: b"))
        self.assertEqual(parse_command("creategroup:dev"), CreateGroup("dev", ""))

    def test_blanks_around_names_and_ids_are_forgiven(self) -> None:
        self.assertEqual(parse_command("  Chat: 12 :hi"), Chat(12, "hi"))
        self.assertEqual(parse_command("help "), Help())

    @given(ids, messages)
    def test_chat_text_parses_back(self, target: int, msg: str) -> None:
        for command in (Chat(target, msg), GroupChat(target, msg)):
            self.assertEqual(parse_command(str(command)), command)

    def test_malformed_commands_say_what_to_type(self) -> None:
        for line, error in [
            ("dance", 'unknown command "dance"; type help for the list of commands'),
            ("chat", "missing message; usage: chat:friendid:message"),
            ("chat:12", "missing message; usage: chat:friendid:message"),
            ("chat:12:", "message must not be empty; usage: chat:friendid:message"),
            ("chat:bob:hi", "friendid must be a positive number; usage: chat:friendid:message"),
            ("chat:0:hi", "friendid must be a positive number; usage: chat:friendid:message"),
            ("chat:-3:hi", "friendid must be a positive number; usage: chat:friendid:message"),
            ("addfriend", "friendid must be a positive number; usage: addfriend:friendid"),
            ("addgroup:x", "groupid must be a positive number; usage: addgroup:groupid"),
            ("creategroup: :x",
             "groupname must not be empty; usage: creategroup:groupname:groupdesc"),
            ("groupchat:1", "missing message; usage: groupchat:groupid:message"),
            ("loginout:now", "loginout takes no argument; usage: loginout"),
            ("history", "friendid must be a positive number; usage: history:friendid[:count]"),
            ("history:2:0", "count must be a number from 1 to 1000; "
                            "usage: history:friendid[:count]"),
            ("ghistory:3:1001", "count must be a number from 1 to 1000; "
                                "usage: ghistory:groupid[:count]"),
            ("kick:3", "missing userid; usage: kick:groupid:userid"),
            ("kick:x:3", "groupid must be a positive number; usage: kick:groupid:userid"),
            ("unblock:me", "userid must be a positive number; usage: unblock:userid"),
            ("devices:all", "devices takes no argument; usage: devices"),
        ]:
            with self.assertRaises(CommandError) as raised:
                parse_command(line)
            self.assertEqual(str(raised.exception), error, line)

    def test_empty_trailing_argument_of_plain_command_is_accepted(self) -> None:
        self.assertEqual(parse_command("help:"), Help())


class MenuTests(SynchronousTestCase):
    def test_choices_of_the_original(self) -> None:
        self.assertEqual([parse_menu(line) for line in ("1", " 2 ", "3", "quit")],
                         [AskLogin(), AskRegister(), Quit(), Quit()])

    def test_one_line_login_and_register(self) -> None:
        self.assertEqual(parse_menu("login:5:pa:ss word"), Login(5, "pa:ss word"))
        self.assertEqual(parse_menu("register:zhang san:pw"), Register("zhang san", "pw"))

    def test_bad_choices(self) -> None:
        for line in ("", "4", "chat:1:hi", "login:x:pw", "login:5:", "register::pw", "login"):
            self.assertRaises(CommandError, parse_menu, line)

    def test_password_not_in_text_or_repr(self) -> None:
        login = Login(5, "hunter2")
        self.assertNotIn("hunter2", str(login) + repr(login))

    def test_ids(self) -> None:
        self.assertEqual(parse_id(" 42 ", "userid"), 42)
        self.assertRaises(CommandError, parse_id, "4 2", "userid")
        self.assertRaises(CommandError, parse_id, None, "userid")


class DisplayTests(SynchronousTestCase):
    chat = {"msgid": MsgId.ONE_CHAT, "id": 12, "name": "alice", "to": 13, "msg": "hello",
            "time": "2026-11-26 10:00:01", "mid": 77}

    def test_chat_line_of_the_original(self) -> None:
        self.assertEqual(display.message(self.chat, "now"),
                         "2026-11-26 10:00:01 [12]alice said: hello")

    def test_group_chat_line_of_the_original(self) -> None:
        frame = {**self.chat, "msgid": MsgId.GROUP_CHAT, "groupid": 3}
        self.assertEqual(display.message(frame, "now"),
                         "群消息[3]:2026-11-26 10:00:01 [12]alice said: hello")

    def test_message_without_time_shows_when_it_arrived(self) -> None:
        frame = {**self.chat, "time": ""}
        self.assertEqual(display.message(frame, "2026-11-26 11:00:00"),
                         "2026-11-26 11:00:00 [12]alice said: hello")

    def test_one_message_stays_one_line_and_cannot_drive_the_terminal(self) -> None:
        frame = {**self.chat, "name": "a\x1b[2Jb", "msg": "two\nlines\u2028end\ttab 你好\u3000!"}
        self.assertEqual(display.message(frame, "now"),
                         "2026-11-26 10:00:01 [12]a\\x1b[2Jb said: "
                         "two\\nlines\\u2028end\\ttab 你好\u3000!")

    def test_login_summary(self) -> None:
        me = {"id": 1, "name": "alice"}
        friends = [{"id": 2, "name": "bob", "state": "online"}]
        groups = [{"groupid": 3, "groupname": "dev", "groupdesc": "chatd developers",
                   "users": [{"id": 1, "name": "alice", "state": "online", "role": "creator"},
                             {"id": 2, "name": "bob", "state": "online", "role": "normal"}]},
                  {"groupid": 4, "groupname": "quiet", "groupdesc": "", "users": []}]
        self.assertEqual(display.login_summary(me, friends, groups), [
            "======================login user======================",
            "current login user => id:1 name:alice",
            "----------------------friend list---------------------",
            "friend: [2]bob online",
            "----------------------group list----------------------",
            "group: [3]dev (chatd developers)",
            "member: [3] [1]alice online creator",
            "member: [3] [2]bob online normal",
            "group: [4]quiet",
            "======================================================",
        ])

    def test_error_frame(self) -> None:
        frame = {"msgid": MsgId.ERROR, "errno": Errno.NO_SUCH_USER, "errmsg": "no such user",
                 "ref": MsgId.ONE_CHAT, "cid": "c1"}
        self.assertEqual(display.reply_error(frame, "chat:9:hi not sent"),
                         "error: chat:9:hi not sent: no such user (errno 120)")

    def test_help_lists_every_command_with_its_syntax(self) -> None:
        lines = display.help_lines()
        for syntax in ("help", "chat:friendid:message", "addfriend:friendid",
                       "creategroup:groupname:groupdesc", "addgroup:groupid",
                       "groupchat:groupid:message", "loginout", "friends", "groups", "quit"):
            self.assertTrue(any(line.startswith(syntax + " ") for line in lines), syntax)

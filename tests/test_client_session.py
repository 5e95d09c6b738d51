"""chat-client's proto-2 logic on memory transports and a fake clock: delivery, reconnects,
heartbeat, and the menu and command flow on top of it."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from chatd.messages import Errno, MsgId
from client.acks import ACK_DELAY
from client.controller import Controller
from client.protocol import ChatConnectionFactory
from client.session import RequestFailed, Session

FRIENDS = [{"id": 2, "name": "bob", "state": "online"}]
BOB_OFFLINE = [{"id": 2, "name": "bob", "state": "offline"}]
DEV = {"groupid": 3, "groupname": "dev", "groupdesc": "chatd developers",
       "users": [{"id": 1, "name": "alice", "state": "online", "role": "creator"},
                 {"id": 2, "name": "bob", "state": "offline", "role": "normal"}]}
UNAVAILABLE = "service temporarily unavailable, try again"
MISMATCH = "id does not match the logged-in user"
OFFLINE = [{"msgid": MsgId.ONE_CHAT, "id": 2, "name": "bob", "to": 1, "msg": "while you were away",
            "time": "2026-11-26 09:00:00", "cid": "b.1", "mid": 100}]


def login_ack(offline: list[dict[str, Any]] | None = None, token: str = "t1"
              ) -> dict[str, Any]:
    return {"msgid": MsgId.LOGIN_ACK, "errno": 0, "id": 1, "name": "alice", "friends": FRIENDS,
            "groups": [], "offlinemsg": offline or [], "token": token}


class Wire:
    """One connection of the session, with the server's side in the test's hands."""

    def __init__(self, session: Session, clock: Clock) -> None:
        self.connection = ChatConnectionFactory(session, clock).buildProtocol(None)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)

    def sent(self) -> list[dict[str, Any]]:
        """The frames the client wrote since the last call."""
        data = self.transport.value()
        self.transport.clear()
        return [json.loads(line) for line in data.splitlines()]

    def receive(self, frame: dict[str, Any]) -> None:
        self.connection.dataReceived(json.dumps(frame).encode() + b"\n")

    def lose(self) -> None:
        self.connection.connectionLost(Failure(ConnectionDone()))


class SessionCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.shown: list[str] = []
        self.session = Session(self.shown.extend, self.clock)

    def connect(self) -> Wire:
        return Wire(self.session, self.clock)

    def log_in(self, offline: list[dict[str, Any]] | None = None) -> Wire:
        wire = self.connect()
        reply = Deferred.fromCoroutine(self.session.login(1, "pw"))
        self.assertEqual(wire.sent(),
                         [{"msgid": MsgId.LOGIN, "id": 1, "password": "pw", "proto": 2,
                           "device": "default"}])
        wire.receive(login_ack(offline))
        self.assertEqual(self.successResultOf(reply)["errno"], 0)
        return wire

    def take_shown(self) -> list[str]:
        shown, self.shown[:] = list(self.shown), []
        return shown


class DeliveryTests(SessionCase):
    def test_login_shows_summary_then_offline_messages_and_acknowledges_them(self) -> None:
        wire = self.log_in(OFFLINE)
        shown = self.take_shown()
        self.assertIn("current login user => id:1 name:alice", shown)
        self.assertEqual(shown[-1], "2026-11-26 09:00:00 [2]bob said: while you were away")
        self.assertEqual(wire.sent(), [{"msgid": MsgId.RECV_ACK, "mid": 100}])
        self.assertEqual(self.session.friends, FRIENDS)

    def test_many_offline_messages_are_acknowledged_in_batches(self) -> None:
        offline = [{**OFFLINE[0], "cid": f"b.{mid}", "mid": mid} for mid in range(1, 1502)]
        wire = self.log_in(offline)
        self.assertEqual([len(ack["mids"]) for ack in wire.sent()], [1000, 501])

    def test_chat_carries_cid_and_time_and_is_confirmed_by_send_ack(self) -> None:
        wire = self.log_in()
        self.take_shown()
        self.session.chat(2, "hi", "chat:2:hi")
        [frame] = wire.sent()
        self.assertEqual((frame["msgid"], frame["to"], frame["msg"]), (MsgId.ONE_CHAT, 2, "hi"))
        self.assertRegex(frame["time"], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
        self.assertEqual(self.session.unconfirmed[0].frame, frame)
        wire.receive({"msgid": MsgId.SEND_ACK, "cid": frame["cid"], "mid": 5, "errno": 0})
        self.assertEqual(self.take_shown(), ["sent: chat:2:hi"])
        self.assertEqual(self.session.unconfirmed, [])

    def test_cids_are_unique_across_clients(self) -> None:
        other = Session(self.shown.extend, self.clock)
        first, second = self.log_in(), Wire(other, self.clock)
        Deferred.fromCoroutine(other.login(1, "pw"))
        second.sent()
        second.receive(login_ack())
        self.session.chat(2, "a", "chat:2:a")
        other.chat(2, "a", "chat:2:a")
        self.assertNotEqual(first.sent()[0]["cid"], second.sent()[0]["cid"])

    def test_repeated_mid_shown_once_but_acknowledged_each_time(self) -> None:
        wire = self.log_in()
        self.take_shown()
        frame = {**OFFLINE[0], "msg": "live", "mid": 200}
        wire.receive(frame)
        wire.receive(frame)
        self.clock.advance(ACK_DELAY)
        wire.receive(frame)
        self.clock.advance(ACK_DELAY)
        self.assertEqual(self.take_shown(), ["2026-11-26 09:00:00 [2]bob said: live"])
        self.assertEqual(wire.sent(), [{"msgid": MsgId.RECV_ACK, "mid": 200}] * 2)

    def test_messages_read_within_the_ack_delay_are_acknowledged_in_one_frame(self) -> None:
        """A burst costs the server one RECV_ACK, not one a message (as the web client)."""
        wire = self.log_in()
        for mid in (200, 201, 202):
            wire.receive({**OFFLINE[0], "cid": f"b.{mid}", "mid": mid})
        self.assertEqual(wire.sent(), [])
        self.clock.advance(ACK_DELAY)
        self.assertEqual(wire.sent(), [{"msgid": MsgId.RECV_ACK, "mids": [200, 201, 202]}])
        self.clock.advance(ACK_DELAY)
        self.assertEqual(wire.sent(), [])

    def test_a_full_frame_of_acks_leaves_at_once(self) -> None:
        wire = self.log_in()
        for mid in range(1, 1001):
            wire.receive({**OFFLINE[0], "cid": f"b.{mid}", "mid": mid})
        self.assertEqual([len(ack["mids"]) for ack in wire.sent()], [1000])

    def test_waiting_acks_go_before_any_other_frame(self) -> None:
        """A LOGOUT ahead of them would have the server store those messages offline."""
        wire = self.log_in()
        wire.receive({**OFFLINE[0], "mid": 200})
        Deferred.fromCoroutine(self.session.logout())
        self.assertEqual(wire.sent(), [{"msgid": MsgId.RECV_ACK, "mid": 200},
                                       {"msgid": MsgId.LOGOUT}])

    def test_acks_waiting_on_a_lost_connection_are_not_sent_on_the_next(self) -> None:
        """The server delivers those messages again on the new connection; they are
        acknowledged there (and shown once)."""
        wire = self.log_in()
        wire.receive({**OFFLINE[0], "mid": 200})
        wire.lose()
        again = self.connect()
        self.clock.advance(ACK_DELAY)
        self.assertEqual(wire.sent() + again.sent(), [
            {"msgid": MsgId.LOGIN, "id": 1, "token": "t1", "proto": 2, "device": "default"}])

    def test_resent_message_with_new_mid_shown_once(self) -> None:
        wire = self.log_in(OFFLINE)
        self.take_shown()
        wire.receive({**OFFLINE[0], "mid": 300})
        wire.receive({**OFFLINE[0], "id": 3, "name": "carol", "mid": 301})
        self.assertEqual(self.take_shown(),
                         ["2026-11-26 09:00:00 [3]carol said: while you were away"])

    def test_refused_chat_is_reported_and_not_resent(self) -> None:
        wire = self.log_in()
        self.take_shown()
        self.session.chat(99, "hi", "chat:99:hi")
        cid = wire.sent()[0]["cid"]
        wire.receive({"msgid": MsgId.ERROR, "errno": Errno.NO_SUCH_USER, "errmsg": "no such user",
                      "ref": MsgId.ONE_CHAT, "cid": cid})
        self.assertEqual(self.take_shown(),
                         ["error: chat:99:hi not sent: no such user (errno 120)"])
        self.assertEqual(self.session.unconfirmed, [])

    def test_error_frame_answering_nothing_is_shown(self) -> None:
        wire = self.log_in()
        self.take_shown()
        wire.receive({"msgid": MsgId.ERROR, "errno": Errno.RATE_LIMITED,
                      "errmsg": "too many requests"})
        wire.connection.dataReceived(b"[1]\n")
        self.assertEqual(self.take_shown(), [
            "error: server: too many requests (errno 109)",
            "error: the server sent a frame that is not a JSON object"])

    def test_failed_reply_is_returned(self) -> None:
        wire = self.log_in()
        reply = Deferred.fromCoroutine(self.session.add_friend(1))
        self.assertEqual(wire.sent(), [{"msgid": MsgId.ADD_FRIEND, "friendid": 1}])
        wire.receive({"msgid": MsgId.ADD_FRIEND_ACK, "errno": Errno.SELF_FRIEND,
                      "errmsg": "cannot add yourself"})
        self.assertEqual(self.successResultOf(reply)["errno"], Errno.SELF_FRIEND)
        self.assertEqual(self.session.friends, FRIENDS)

    def test_error_frame_answers_the_request_it_refers_to(self) -> None:
        wire = self.connect()
        reply = Deferred.fromCoroutine(self.session.register("", "pw"))
        wire.receive({"msgid": MsgId.ERROR, "errno": Errno.OUT_OF_RANGE,
                      "errmsg": "field is out of range: name",
                      "ref": MsgId.REG})
        self.assertEqual(self.successResultOf(reply)["errno"], Errno.OUT_OF_RANGE)

    def test_lists_follow_the_replies(self) -> None:
        wire = self.log_in()
        created = Deferred.fromCoroutine(self.session.create_group("dev", "d"))
        wire.receive({"msgid": MsgId.CREATE_GROUP_ACK, "errno": 0, "groupid": 3})
        self.assertEqual(self.successResultOf(created)["group"]["groupid"], 3)
        joined = Deferred.fromCoroutine(self.session.add_group(4))
        group = {"groupid": 4, "groupname": "ops", "groupdesc": "", "users": []}
        wire.receive({"msgid": MsgId.ADD_GROUP_ACK, "errno": 0, "group": group})
        self.successResultOf(joined)
        self.assertEqual([g["groupid"] for g in self.session.groups], [3, 4])
        self.assertEqual(self.session.groups[0]["users"][0]["role"], "owner")

    def test_list_requests_replace_the_lists_with_the_replies(self) -> None:
        wire = self.log_in()
        friends = Deferred.fromCoroutine(self.session.friend_list())
        self.assertEqual(wire.sent(), [{"msgid": MsgId.FRIEND_LIST}])
        wire.receive({"msgid": MsgId.FRIEND_LIST_ACK, "errno": 0, "friends": BOB_OFFLINE})
        self.assertEqual(self.successResultOf(friends)["errno"], 0)
        self.assertEqual(self.session.friends, BOB_OFFLINE)
        groups = Deferred.fromCoroutine(self.session.group_list())
        self.assertEqual(wire.sent(), [{"msgid": MsgId.GROUP_LIST}])
        wire.receive({"msgid": MsgId.GROUP_LIST_ACK, "errno": 0, "groups": [DEV]})
        self.assertEqual(self.successResultOf(groups)["errno"], 0)
        self.assertEqual(self.session.groups, [DEV])

    def test_failed_list_request_keeps_the_lists(self) -> None:
        wire = self.log_in()
        friends = Deferred.fromCoroutine(self.session.friend_list())
        wire.receive({"msgid": MsgId.FRIEND_LIST_ACK, "errno": Errno.UNAVAILABLE,
                      "errmsg": UNAVAILABLE})
        self.assertEqual(self.successResultOf(friends)["errno"], Errno.UNAVAILABLE)
        groups = Deferred.fromCoroutine(self.session.group_list())
        wire.receive({"msgid": MsgId.ERROR, "errno": Errno.ID_MISMATCH, "errmsg": MISMATCH,
                      "ref": MsgId.GROUP_LIST})
        self.assertEqual(self.successResultOf(groups)["errno"], Errno.ID_MISMATCH)
        self.assertEqual((self.session.friends, self.session.groups), (FRIENDS, []))


class ReconnectTests(SessionCase):
    def test_logs_in_again_and_resends_what_was_not_confirmed(self) -> None:
        wire = self.log_in()
        self.session.chat(2, "first", "chat:2:first")
        first = wire.sent()[0]
        wire.lose()
        self.session.chat(2, "second", "chat:2:second")
        self.take_shown()
        again = self.connect()
        self.assertEqual(again.sent(), [{"msgid": MsgId.LOGIN, "id": 1, "token": "t1", "proto": 2,
                                         "device": "default"}])
        again.receive(login_ack())
        resent = again.sent()
        self.assertEqual(resent[0], first)
        self.assertEqual([frame["msg"] for frame in resent], ["first", "second"])
        self.assertEqual(self.take_shown(), [
            "info: connected", "info: logging in again as [1]alice",
            "info: logged in again as [1]alice",
            "info: re-sending 2 message(s) not yet confirmed by the server"])

    def test_each_login_again_uses_the_newest_token(self) -> None:
        self.log_in().lose()
        again = self.connect()
        again.sent()
        again.receive(login_ack(token="t2"))
        again.lose()
        self.assertEqual(self.connect().sent(),
                         [{"msgid": MsgId.LOGIN, "id": 1, "token": "t2", "proto": 2,
                           "device": "default"}])

    def test_a_refused_token_falls_back_to_the_password(self) -> None:
        self.log_in().lose()
        self.take_shown()
        again = self.connect()
        again.sent()
        again.receive({"msgid": MsgId.LOGIN_ACK, "errno": Errno.BAD_LOGIN,
                       "errmsg": "id or password is invalid"})
        self.assertEqual(again.sent(),
                         [{"msgid": MsgId.LOGIN, "id": 1, "password": "pw", "proto": 2,
                                         "device": "default"}])
        again.receive(login_ack(token="t3"))
        self.assertTrue(self.session.logged_in)
        self.assertIn("info: the resume token was refused; using the password",
                      self.take_shown())

    def test_chat_while_disconnected_is_queued_with_a_notice(self) -> None:
        self.log_in().lose()
        self.take_shown()
        self.session.chat(2, "hi", "chat:2:hi")
        self.assertEqual(self.take_shown(), [
            "info: not connected; chat:2:hi will be sent after reconnecting"])

    def test_refused_login_again_logs_out_and_reports_what_was_not_sent(self) -> None:
        self.log_in().lose()
        self.session.chat(2, "hi", "chat:2:hi")
        self.take_shown()
        again = self.connect()
        again.receive({"msgid": MsgId.LOGIN_ACK, "errno": Errno.BAD_LOGIN,
                       "errmsg": "id or password is invalid"})
        again.receive({"msgid": MsgId.LOGIN_ACK, "errno": Errno.BAD_LOGIN,
                       "errmsg": "id or password is invalid"})
        self.assertFalse(self.session.logged_in)
        self.assertEqual(self.take_shown()[-2:], [
            "error: could not log in again: id or password is invalid (errno 1)",
            "error: chat:2:hi was not confirmed by the server; it may not have been delivered"])

    def test_account_still_in_use_retries_through_a_new_connection(self) -> None:
        self.log_in().lose()
        again = self.connect()
        again.receive({"msgid": MsgId.LOGIN_ACK, "errno": Errno.ALREADY_ONLINE,
                       "errmsg": "this account is using, input another!"})
        self.assertTrue(again.transport.disconnecting)
        self.assertTrue(self.session.logged_in)

    def test_request_fails_when_the_connection_is_lost(self) -> None:
        wire = self.log_in()
        reply = Deferred.fromCoroutine(self.session.add_group(3))
        wire.lose()
        self.assertEqual(str(self.failureResultOf(reply, RequestFailed).value),
                         "connection lost before the server answered")

    def test_request_waits_for_a_connection_for_a_while(self) -> None:
        reply = Deferred.fromCoroutine(self.session.register("alice", "pw"))
        self.assertNoResult(reply)
        self.clock.advance(10)
        self.failureResultOf(reply, RequestFailed)
        reply = Deferred.fromCoroutine(self.session.register("alice", "pw"))
        wire = self.connect()
        self.assertEqual(wire.sent(), [{"msgid": MsgId.REG, "name": "alice", "password": "pw"}])

    def test_request_without_reply_times_out(self) -> None:
        self.connect()
        reply = Deferred.fromCoroutine(self.session.register("alice", "pw"))
        self.clock.advance(15)
        self.failureResultOf(reply, RequestFailed)

    def test_drain_waits_for_send_ack(self) -> None:
        wire = self.log_in()
        self.session.chat(2, "hi", "chat:2:hi")
        cid = wire.sent()[0]["cid"]
        drained = Deferred.fromCoroutine(self.session.drain(5))
        self.assertNoResult(drained)
        wire.receive({"msgid": MsgId.SEND_ACK, "cid": cid, "mid": 9, "errno": 0})
        self.assertEqual(self.successResultOf(drained), [])

    def test_drain_gives_up_after_the_timeout(self) -> None:
        self.log_in().lose()
        self.session.chat(2, "hi", "chat:2:hi")
        drained = Deferred.fromCoroutine(self.session.drain(5))
        self.clock.advance(5)
        self.assertEqual([out.text for out in self.successResultOf(drained)], ["chat:2:hi"])


class HeartbeatTests(SessionCase):
    def test_heartbeat_after_30_seconds_without_sending(self) -> None:
        wire = self.connect()
        self.clock.advance(29.9)
        self.assertEqual(wire.sent(), [])
        self.clock.advance(0.1)
        self.assertEqual(wire.sent(), [{"msgid": MsgId.HEARTBEAT}])
        self.clock.advance(30)
        self.assertEqual(wire.sent(), [{"msgid": MsgId.HEARTBEAT}])

    def test_sending_postpones_the_heartbeat(self) -> None:
        wire = self.log_in()
        self.clock.advance(20)
        self.session.chat(2, "hi", "chat:2:hi")
        wire.sent()
        self.clock.advance(29)
        self.assertEqual(wire.sent(), [])
        self.clock.advance(1)
        self.assertEqual(wire.sent(), [{"msgid": MsgId.HEARTBEAT}])

    def test_silent_server_is_given_up_after_75_seconds(self) -> None:
        wire = self.connect()
        self.clock.advance(60)
        wire.receive({"msgid": MsgId.HEARTBEAT, "time": 1})
        self.clock.advance(74)
        self.assertFalse(wire.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(wire.transport.disconnected)


class ScriptedConsole:
    """The user's side of the controller: lines typed on demand, everything shown kept."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.hints: list[str] = []
        self.prompts: list[tuple[str, bool]] = []
        self._typed: deque[str | None] = deque()
        self._reader: Deferred[str | None] | None = None

    def read_line(self, prompt: str, password: bool = False) -> Deferred[str | None]:
        self.prompts.append((prompt, password))
        self._reader = Deferred()
        reader = self._reader
        self._feed()
        return reader

    def type(self, *lines: str | None) -> None:
        self._typed.extend(lines)
        self._feed()

    def _feed(self) -> None:
        if self._reader is not None and self._typed:
            reader, self._reader = self._reader, None
            reader.callback(self._typed.popleft())

    def show(self, lines: list[str]) -> None:
        self.shown.extend(lines)

    def hint(self, lines: list[str]) -> None:
        self.hints.extend(lines)


class ControllerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.console = ScriptedConsole()
        self.session = Session(self.console.show, self.clock)
        self.wire = Wire(self.session, self.clock)
        self.wire.sent()
        self.done = Deferred.fromCoroutine(Controller(self.session, self.console).run())

    def test_menu_asks_like_the_original_and_hides_the_password(self) -> None:
        self.assertIn("1. login", self.console.hints)
        self.console.type("1", "1", "pw")
        self.assertEqual(self.console.prompts,
                         [("choice:", False), ("userid:", False), ("userpassword:", True)])
        self.assertEqual(self.wire.sent(),
                         [{"msgid": MsgId.LOGIN, "id": 1, "password": "pw", "proto": 2,
                           "device": "default"}])
        self.wire.receive(login_ack())
        self.assertEqual(self.console.prompts[-1], ("[1]alice> ", False))
        self.assertIn("chat:friendid:message            one-to-one chat / 一对一聊天",
                      self.console.hints)

    def test_register_shows_the_new_id(self) -> None:
        self.console.type("2", "alice", "pw")
        self.assertEqual(self.wire.sent(),
                         [{"msgid": MsgId.REG, "name": "alice", "password": "pw"}])
        self.wire.receive({"msgid": MsgId.REG_ACK, "errno": 0, "id": 7})
        self.assertEqual(self.console.shown[-1],
                         "registered: [7]alice; your user id is 7, do not forget it!")

    def test_commands_after_login_then_loginout_back_to_the_menu(self) -> None:
        self.console.type("login:1:pw")
        self.wire.sent()
        self.wire.receive(login_ack())
        self.console.type("chat:2:hi: there", "friends", "nonsense", "loginout")
        [chat, friends] = self.wire.sent()
        self.assertEqual((chat["msgid"], chat["to"], chat["msg"]), (MsgId.ONE_CHAT, 2, "hi: there"))
        self.assertEqual(friends, {"msgid": MsgId.FRIEND_LIST})
        self.wire.receive({"msgid": MsgId.FRIEND_LIST_ACK, "errno": 0, "friends": BOB_OFFLINE})
        self.clock.advance(5)
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.LOGOUT}])
        self.wire.receive({"msgid": MsgId.LOGOUT_ACK, "errno": 0})
        self.assertEqual(self.console.shown[-6:], [
            "----------------------friend list---------------------",
            "friend: [2]bob offline",
            'error: unknown command "nonsense"; type help for the list of commands',
            "info: waiting up to 5 s for the server to confirm 1 message(s)",
            "error: chat:2:hi: there was not confirmed by the server; "
            "it may not have been delivered",
            "info: logged out",
        ])
        self.assertEqual(self.console.prompts[-1], ("choice:", False))

    def test_friends_and_groups_show_the_lists_the_server_sends(self) -> None:
        self.console.type("login:1:pw")
        self.wire.receive(login_ack())
        self.wire.sent()
        del self.console.shown[:]
        self.console.type("groups", "friends")
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.GROUP_LIST}])
        self.wire.receive({"msgid": MsgId.GROUP_LIST_ACK, "errno": 0, "groups": [DEV]})
        self.assertEqual(self.wire.sent(), [{"msgid": MsgId.FRIEND_LIST}])
        self.wire.receive({"msgid": MsgId.FRIEND_LIST_ACK, "errno": 0, "friends": BOB_OFFLINE})
        self.assertEqual(self.console.shown, [
            "----------------------group list----------------------",
            "group: [3]dev (chatd developers)",
            "member: [3] [1]alice online creator",
            "member: [3] [2]bob offline normal",
            "----------------------friend list---------------------",
            "friend: [2]bob offline",
        ])

    def test_refused_list_request_is_an_error_line(self) -> None:
        self.console.type("login:1:pw")
        self.wire.receive(login_ack())
        del self.console.shown[:]
        self.console.type("friends", "groups")
        self.wire.receive({"msgid": MsgId.FRIEND_LIST_ACK, "errno": Errno.UNAVAILABLE,
                           "errmsg": UNAVAILABLE})
        self.wire.receive({"msgid": MsgId.ERROR, "errno": Errno.ID_MISMATCH, "errmsg": MISMATCH,
                           "ref": MsgId.GROUP_LIST})
        self.assertEqual(self.console.shown, [
            f"error: friends failed: {UNAVAILABLE} (errno 130)",
            f"error: groups failed: {MISMATCH} (errno 111)",
        ])

    def test_end_of_input_waits_for_confirmation_then_ends(self) -> None:
        self.console.type("login:1:pw")
        self.wire.receive(login_ack())
        self.console.type("chat:2:hi", None)
        self.assertNoResult(self.done)
        cid = [f for f in self.wire.sent() if f["msgid"] == MsgId.ONE_CHAT][0]["cid"]
        self.wire.receive({"msgid": MsgId.SEND_ACK, "cid": cid, "mid": 1, "errno": 0})
        self.successResultOf(self.done)
        self.assertEqual(self.console.shown[-1], "sent: chat:2:hi")

    def test_quit_from_the_menu(self) -> None:
        self.console.type("3")
        self.successResultOf(self.done)

"""chat-client as users run it: client subprocesses talking to real `twistd chatd` nodes.

Each client runs in non-interactive mode (stdin is a pipe); the tests type lines and wait for
the output lines a user would read, as documented in docs/client.md.
"""

from __future__ import annotations

import os
import re
import sys
from signal import SIGCONT, SIGKILL, SIGSTOP

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests import harness
from tests.nodeproc import Node, start_node
from tests.test_cluster import Cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
WAIT = 10.0


class ClientProcess(ProcessProtocol):
    """A running chat-client: `type` lines into it, `expect` lines out of it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []
        self.exit_code: int | None = None
        self.ended: Deferred[None] = Deferred()
        self._next = 0
        self._partial = b""
        self._stderr = b""
        self._waiter: Deferred[None] | None = None

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        self.lines += [line.decode("utf-8") for line in lines]
        self._wake()

    def errReceived(self, data: bytes) -> None:
        self._stderr += data

    def processEnded(self, reason: Failure) -> None:
        self.exit_code = reason.value.exitCode
        self.ended.callback(None)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.called:
            waiter.callback(None)

    def type(self, *lines: str) -> None:
        self.transport.write("".join(f"{line}\n" for line in lines).encode("utf-8"))

    async def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first output line after the last one expected that matches `pattern` whole."""
        deadline = reactor.seconds() + timeout
        while True:
            for index in range(self._next, len(self.lines)):
                if match := re.fullmatch(pattern, self.lines[index]):
                    self._next = index + 1
                    return match
            self._next = len(self.lines)
            remaining = deadline - reactor.seconds()
            if remaining <= 0 or self.ended.called:
                raise AssertionError(f"{self.name}: no line matching {pattern!r} within "
                                     f"{timeout:.0f} s; output:\n{self.output()}")
            self._waiter = Deferred()
            await self._waiter.addTimeout(remaining, reactor, onTimeoutCancel=lambda *_: None)

    async def expect_block(self, *patterns: str) -> None:
        """Lines matching `patterns`, one after the other with nothing between: a list shown
        whole, no entry missing and none extra."""
        await self.expect(patterns[0])
        for pattern in patterns[1:]:
            after = self._next
            await self.expect(pattern)
            if self._next != after + 1:
                raise AssertionError(f"{self.name}: {pattern!r} does not follow line {after}; "
                                     f"output:\n{self.output()}")

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.fullmatch(pattern, line))

    def output(self) -> str:
        return "\n".join(self.lines) + f"\n--- stderr:\n{self._stderr.decode(errors='replace')}"

    async def finish(self) -> int | None:
        """Close its input, as at the end of a script, and wait for it to exit."""
        self.transport.closeStdin()
        await self.ended
        return self.exit_code

    async def kill(self) -> None:
        if not self.ended.called:
            for signal in (SIGCONT, SIGKILL):
                try:
                    self.transport.signalProcess(signal)
                except ProcessExitedAlready:
                    break
            await self.ended


def start_client(testcase: TestCase, node: Node, name: str, *args: str,
                 state_home: str | None = None) -> ClientProcess:
    """A client with a state folder of its own, or `state_home` (a restarted client)."""
    client = ClientProcess(name)
    argv = [sys.executable, "-m", "client", "--port", str(node.port), *args]
    env = {**os.environ, "XDG_STATE_HOME": state_home or os.path.abspath(testcase.mktemp())}
    reactor.spawnProcess(client, sys.executable, argv, env=env, path=ROOT)
    testcase.addCleanup(client.kill)
    return client


def start_script(testcase: TestCase, node: Node, *lines: str) -> ClientProcess:
    """chat-client --script FILE, the file holding these lines."""
    script = os.path.abspath(testcase.mktemp())
    with open(script, "w", encoding="utf-8") as f:
        f.write("".join(f"{line}\n" for line in lines))
    return start_client(testcase, node, "script", "--script", script)


async def sign_up(client: ClientProcess, name: str, password: str = "secret") -> int:
    client.type(f"register:{name}:{password}")
    return int((await client.expect(rf"registered: \[(\d+)\]{name}; .*")).group(1))


async def log_in(client: ClientProcess, user_id: int, name: str, password: str = "secret") -> None:
    client.type(f"login:{user_id}:{password}")
    await client.expect(rf"current login user => id:{user_id} name:{name}")
    await client.expect("=" * 54)


class ChatTests(TestCase):
    """Two users chat through the client: every command, as the original client has them."""

    async def test_every_command_between_two_users(self) -> None:
        node = await start_node(self)
        alice, bob = start_client(self, node, "alice"), start_client(self, node, "bob")
        alice.type("2", "alice", "pass:word")
        a = int((await alice.expect(r"registered: \[(\d+)\]alice; .*")).group(1))
        b = await sign_up(bob, "bob")
        alice.type("1", str(a), "pass:word")
        await alice.expect(rf"current login user => id:{a} name:alice")
        await log_in(bob, b, "bob")

        alice.type(f"addfriend:{b}")
        await alice.expect(rf"friend added: \[{b}\]bob online")
        alice.type(f"chat:{b}:hello: how are you?")
        await alice.expect(rf"sent: chat:{b}:hello: how are you\?")
        await bob.expect(rf"{TIME} \[{a}\]alice said: hello: how are you\?")

        alice.type("creategroup:dev:chatd: the developers")
        gid = int((await alice.expect(r"group created: \[(\d+)\]dev \(chatd: the developers\)"))
                  .group(1))
        bob.type(f"addgroup:{gid}")
        await bob.expect(rf"group joined: \[{gid}\]dev \(chatd: the developers\)")
        await bob.expect(rf"member: \[{gid}\] \[{a}\]alice online owner")
        bob.type(f"groupchat:{gid}:hi all")
        await bob.expect(rf"sent: groupchat:{gid}:hi all")
        await alice.expect(rf"群消息\[{gid}\]:{TIME} \[{b}\]bob said: hi all")

        alice.type("friends", "help")
        await alice.expect(rf"friend: \[{b}\]bob online")
        await alice.expect(r"chat:friendid:message +one-to-one chat / 一对一聊天")
        bob.type("groups")
        await bob.expect(rf"group: \[{gid}\]dev \(chatd: the developers\)")
        await bob.expect(rf"member: \[{gid}\] \[{a}\]alice online owner")
        await bob.expect(rf"member: \[{gid}\] \[{b}\]bob online member")

        bob.type("loginout")
        await bob.expect("info: logged out")
        alice.type(f"chat:{b}:while you were away")
        await alice.expect(rf"sent: chat:{b}:while you were away")
        await log_in(bob, b, "bob")
        await bob.expect(rf"{TIME} \[{a}\]alice said: while you were away")

        alice.type("quit")
        self.assertEqual(await alice.finish(), 0, alice.output())
        self.assertEqual(await bob.finish(), 0, bob.output())
        self.assertEqual(bob.count(r".* said: hello: how are you\?"), 1)

    async def test_script_file(self) -> None:
        node = await start_node(self)
        setup = start_client(self, node, "setup")
        carol = await sign_up(setup, "carol")
        await setup.finish()
        client = start_script(self, node, f"login:{carol}:secret", f"chat:{carol}:note to self")
        await client.expect(rf"{TIME} \[{carol}\]carol said: note to self")
        await client.expect(rf"sent: chat:{carol}:note to self")
        self.assertEqual(await client.finish(), 0)

    async def test_exit_status_is_1_when_one_command_of_a_script_failed(self) -> None:
        node = await start_node(self)
        setup = start_client(self, node, "setup")
        dave = await sign_up(setup, "dave")
        self.assertEqual(await setup.finish(), 0)
        client = start_script(self, node, f"login:{dave}:secret", "addfriend:999999",
                              f"chat:{dave}:still runs")
        await client.expect(r"error: addfriend:999999 failed: no such user \(errno 120\)")
        await client.expect(rf"sent: chat:{dave}:still runs")
        self.assertEqual(await client.finish(), 1)
        wrong = start_client(self, node, "wrong password")
        wrong.type(f"login:{dave}:wrong")
        await wrong.expect(r"error: login failed: .* \(errno 1\)")
        self.assertEqual(await wrong.finish(), 1)


class ListTests(TestCase):
    """`friends` and `groups` show the server's lists as they are now, not as at login."""

    async def test_lists_show_what_others_did_since_login(self) -> None:
        node = await start_node(self)
        alice, bob = start_client(self, node, "alice"), start_client(self, node, "bob")
        a, b = await sign_up(alice, "alice"), await sign_up(bob, "bob")
        await log_in(alice, a, "alice")
        await log_in(bob, b, "bob")
        alice.type(f"addfriend:{b}", "creategroup:dev:")
        await alice.expect(rf"friend added: \[{b}\]bob online")
        gid = int((await alice.expect(r"group created: \[(\d+)\]dev")).group(1))

        bob.type(f"addgroup:{gid}")
        await bob.expect(rf"group joined: \[{gid}\]dev")
        alice.type("groups", "friends")
        await alice.expect_block(r"-+group list-+",
                                 rf"group: \[{gid}\]dev",
                                 rf"member: \[{gid}\] \[{a}\]alice online owner",
                                 rf"member: \[{gid}\] \[{b}\]bob online member",
                                 r"-+friend list-+",
                                 rf"friend: \[{b}\]bob online")

        bob.type("loginout")
        await bob.expect("info: logged out")
        alice.type("friends", "groups")
        await alice.expect_block(r"-+friend list-+",
                                 rf"friend: \[{b}\]bob offline",
                                 r"-+group list-+",
                                 rf"group: \[{gid}\]dev",
                                 rf"member: \[{gid}\] \[{a}\]alice online owner",
                                 rf"member: \[{gid}\] \[{b}\]bob offline member")
        alice.type("quit")
        self.assertEqual(await alice.finish(), 0)


class ErrorTests(TestCase):
    """Every mistake gets a clear line: bad syntax here, error frames from the server."""

    async def test_bad_commands_and_error_frames(self) -> None:
        node = await start_node(self, "--max-devices", "1")
        alice = start_client(self, node, "alice")
        alice.type("7", "1", "not-a-number")
        await alice.expect(r"error: invalid input! .*")
        await alice.expect(r"error: userid must be a positive number")
        a = await sign_up(alice, "alice")
        alice.type(f"login:{a}:wrong")
        await alice.expect(r"error: login failed: id or password is invalid \(errno 1\)")
        await log_in(alice, a, "alice")
        second = start_client(self, node, "second alice", "--device", "another")
        second.type(f"login:{a}:secret")
        await second.expect(r"error: login failed: .* \(errno 166\)")

        alice.type("chat:bob:hi", f"chat:{a}", "creategroup::x", "loginout:now", "dance")
        await alice.expect(r"error: friendid must be a positive number; "
                           r"usage: chat:friendid:message")
        await alice.expect(r"error: missing message; usage: chat:friendid:message")
        await alice.expect(r"error: groupname must not be empty; "
                           r"usage: creategroup:groupname:groupdesc")
        await alice.expect(r"error: loginout takes no argument; usage: loginout")
        await alice.expect(r'error: unknown command "dance"; type help for the list of commands')

        alice.type("addfriend:999999")
        await alice.expect(r"error: addfriend:999999 failed: no such user \(errno 120\)")
        alice.type(f"addfriend:{a}")
        await alice.expect(rf"error: addfriend:{a} failed: .* \(errno 121\)")
        alice.type("addgroup:999999")
        await alice.expect(r"error: addgroup:999999 failed: no such group \(errno 122\)")
        alice.type("chat:999999:anyone there?")
        await alice.expect(r"error: chat:999999:anyone there\? not sent: no such user "
                           r"\(errno 120\)")
        alice.type("groupchat:999999:anyone?")
        await alice.expect(r"error: groupchat:999999:anyone\? not sent: .* \(errno 12[24]\)")
        alice.type("quit")
        self.assertEqual(await alice.finish(), 1, "a script whose commands failed exits 1")


class ConversationTests(TestCase):
    """The conversation commands against a real node: history, receipts, unread counts,
    typing, and removing, leaving, kicking and blocking as both sides see them."""

    async def test_history_receipts_unread_and_typing(self) -> None:
        node = await start_node(self)
        state = os.path.abspath(self.mktemp())
        alice = start_client(self, node, "alice")
        bob = start_client(self, node, "bob", state_home=state)
        a, b = await sign_up(alice, "alice"), await sign_up(bob, "bob")
        await log_in(alice, a, "alice")
        await log_in(bob, b, "bob")
        alice.type(f"addfriend:{b}", f"chat:{b}:one", f"chat:{b}:two: with a colon")
        await alice.expect(rf"sent: chat:{b}:two: with a colon")
        await bob.expect(rf"{TIME} \[{a}\]alice said: two: with a colon")
        await alice.expect(rf"read: \[{b}\]bob read chat:{b}:two: with a colon")

        bob.type(f"history:{a}", f"history:{a}:1")
        await bob.expect_block(rf"-+history with \[{a}\]alice-+",
                               rf"#\d+ {TIME} \[{a}\]alice said: one",
                               rf"#\d+ {TIME} \[{a}\]alice said: two: with a colon",
                               rf"history: 2 message\(s\) with \[{a}\]alice")
        await bob.expect_block(rf"-+history with \[{a}\]alice-+",
                               rf"#\d+ {TIME} \[{a}\]alice said: two: with a colon",
                               rf"history: 1 message\(s\) with \[{a}\]alice, older ones exist")
        alice.type("creategroup:dev:", f"chat:{a}:note")
        gid = int((await alice.expect(r"group created: \[(\d+)\]dev")).group(1))
        bob.type(f"addgroup:{gid}", f"groupchat:{gid}:hi all")
        await bob.expect(rf"sent: groupchat:{gid}:hi all")
        bob.type(f"ghistory:{gid}")
        await bob.expect_block(rf"-+history in group \[{gid}\]-+",
                               rf"#\d+ 群消息\[{gid}\]:{TIME} \[{b}\]bob said: hi all",
                               rf"history: 1 message\(s\) in group \[{gid}\]")
        self.assertEqual(await bob.finish(), 0, bob.output())

        alice.type(f"chat:{b}:while you were away", f"groupchat:{gid}:and here")
        await alice.expect(rf"sent: groupchat:{gid}:and here")
        bob = start_client(self, node, "bob again", state_home=state)
        await log_in(bob, b, "bob")
        await bob.expect(rf"unread: 1 from \[{a}\]alice")
        await bob.expect(rf"unread: 1 in group \[{gid}\]dev")
        await bob.expect(rf"{TIME} \[{a}\]alice said: while you were away")
        await bob.expect(rf"群消息\[{gid}\]:{TIME} \[{a}\]alice said: and here")

        carol = await harness.user(self, node, "carol")
        carol.send({"msgid": MsgId.TYPING, "to": b})
        await bob.expect(r"typing: \[3\]")
        carol.send({"msgid": MsgId.ONE_CHAT, "to": b, "msg": "hello bob", "cid": "c1",
                    "time": "now"})
        read = await carol.recv(MsgId.READ)
        self.assertEqual((read["peer"], read["id"]), (3, b))
        await bob.expect(r"now \[3\]carol said: hello bob")
        alice.type("quit")
        self.assertEqual(await alice.finish(), 0, alice.output())
        self.assertEqual(await bob.finish(), 0, bob.output())
        self.assertEqual(bob.count(r".* said: while you were away"), 1, bob.output())

    async def test_remove_leave_kick_and_block(self) -> None:
        node = await start_node(self)
        alice, bob = start_client(self, node, "alice"), start_client(self, node, "bob")
        carol = start_client(self, node, "carol")
        a, b, c = (await sign_up(alice, "alice"), await sign_up(bob, "bob"),
                   await sign_up(carol, "carol"))
        for client, uid, name in ((alice, a, "alice"), (bob, b, "bob"), (carol, c, "carol")):
            await log_in(client, uid, name)
        alice.type(f"addfriend:{b}", "creategroup:team:")
        gid = int((await alice.expect(r"group created: \[(\d+)\]team")).group(1))
        bob.type(f"addgroup:{gid}")
        await bob.expect(rf"group joined: \[{gid}\]team")
        carol.type(f"addgroup:{gid}")
        await carol.expect(rf"group joined: \[{gid}\]team")

        alice.type(f"removefriend:{b}", f"kick:{gid}:{b}", "friends", "help")
        await alice.expect(rf"friend removed: \[{b}\]bob")
        await alice.expect(rf"member removed: \[{gid}\] \[{b}\]bob")
        await alice.expect_block(r"-+friend list-+", r"help +show this list.*")
        await bob.expect(rf"notice: you were removed from group \[{gid}\]team")
        bob.type(f"groupchat:{gid}:still here?")
        await bob.expect(rf"error: groupchat:{gid}:still here\? not sent: .*\(errno 124\)")
        carol.type(f"leavegroup:{gid}", f"ghistory:{gid}")
        await carol.expect(rf"group left: \[{gid}\]")
        await carol.expect(rf"error: ghistory:{gid} failed: .*\(errno 124\)")

        bob.type(f"block:{a}")
        await bob.expect(rf"blocked: \[{a}\]")
        alice.type(f"chat:{b}:hello?")
        await alice.expect(rf"error: chat:{b}:hello\? not sent: .*\(errno 161\)")
        bob.type(f"unblock:{a}")
        await bob.expect(rf"unblocked: \[{a}\]")
        alice.type(f"chat:{b}:hello again")
        await bob.expect(rf"{TIME} \[{a}\]alice said: hello again")
        alice.type(f"kick:{gid}:{a}")
        await alice.expect(rf"error: kick:{gid}:{a} failed: .*\(errno 164\)")
        for client in (alice, bob, carol):
            self.assertEqual(await client.finish(), 1, client.output())


class RestartTests(TestCase):
    """The node goes away mid-session: clients reconnect, log in again, and re-send."""

    async def test_unconfirmed_message_resent_and_shown_once(self) -> None:
        node = await start_node(self)
        alice, bob = start_client(self, node, "alice"), start_client(self, node, "bob")
        a, b = await sign_up(alice, "alice"), await sign_up(bob, "bob")
        await log_in(alice, a, "alice")
        await log_in(bob, b, "bob")

        # Bob's client is frozen, so the message reaches his socket but is never acknowledged,
        # and alice gets no SEND_ACK. Her note to herself, sent after it, is confirmed once the
        # server has handled both and her client has acknowledged the note; then the node
        # crashes.
        bob.transport.signalProcess(SIGSTOP)
        alice.type(f"chat:{b}:are you there?", f"chat:{a}:note")
        await alice.expect(rf"{TIME} \[{a}\]alice said: note")
        await alice.expect(rf"sent: chat:{a}:note")
        await node.restart("KILL")
        await alice.expect(rf"info: logged in again as \[{a}\]alice")
        await alice.expect(r"info: re-sending 1 message\(s\) not yet confirmed by the server")
        await alice.expect(rf"sent: chat:{b}:are you there\?")
        bob.transport.signalProcess(SIGCONT)
        await bob.expect(rf"{TIME} \[{a}\]alice said: are you there\?")
        await bob.expect(rf"info: logged in again as \[{b}\]bob")

        await node.stop()
        alice.type(f"chat:{b}:sent while the server was down")
        await alice.expect(rf"info: not connected; chat:{b}:sent while the server was down "
                           r"will be sent after reconnecting")
        await node.start()
        await alice.expect(rf"sent: chat:{b}:sent while the server was down", timeout=20)
        await bob.expect(rf"{TIME} \[{a}\]alice said: sent while the server was down",
                         timeout=20)

        alice.type("quit")
        self.assertEqual(await alice.finish(), 0, alice.output())
        self.assertEqual(await bob.finish(), 0, bob.output())
        self.assertEqual(bob.count(r".* said: are you there\?"), 1, bob.output())
        self.assertEqual(bob.count(r".* said: sent while the server was down"), 1, bob.output())
        self.assertEqual(alice.count(rf"sent: chat:{b}:are you there\?"), 1, alice.output())


class ClusterTests(TestCase):
    """Two clients on two nodes of a cluster (MariaDB + Redis) chat as if on one."""

    timeout = 120

    async def test_chat_and_group_chat_across_two_nodes(self) -> None:
        cluster = await Cluster(self).start(2)
        alice = start_client(self, cluster.nodes[0], "alice")
        bob = start_client(self, cluster.nodes[1], "bob")
        a, b = await sign_up(alice, "alice"), await sign_up(bob, "bob")
        await log_in(alice, a, "alice")
        await log_in(bob, b, "bob")
        alice.type(f"addfriend:{b}")
        await alice.expect(rf"friend added: \[{b}\]bob online")
        alice.type(f"chat:{b}:from node one")
        await bob.expect(rf"{TIME} \[{a}\]alice said: from node one")
        bob.type(f"chat:{a}:from node two")
        await alice.expect(rf"{TIME} \[{b}\]bob said: from node two")
        await bob.expect(rf"sent: chat:{a}:from node two")
        alice.type("creategroup:team:across nodes")
        gid = int((await alice.expect(r"group created: \[(\d+)\]team .*")).group(1))
        bob.type(f"addgroup:{gid}")
        await bob.expect(rf"group joined: \[{gid}\]team .*")
        bob.type(f"groupchat:{gid}:hello team")
        await alice.expect(rf"群消息\[{gid}\]:{TIME} \[{b}\]bob said: hello team")
        alice.type(f"groupchat:{gid}:hello back")
        await bob.expect(rf"群消息\[{gid}\]:{TIME} \[{a}\]alice said: hello back")
        self.assertEqual(await alice.finish(), 0)
        self.assertEqual(await bob.finish(), 0)

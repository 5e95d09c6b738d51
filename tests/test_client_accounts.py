"""chat-client's account, people and group-admin commands (client/accounts.py): parsed from
what the user types, and run by client processes against a real `twistd chatd` node."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase, TestCase

from client.accounts import (
    Announce,
    Answer,
    DeleteAccount,
    Find,
    FriendRequests,
    Invite,
    Join,
    Passwd,
    Profile,
    Requests,
    Role,
    SetName,
    parse_command,
)
from client.commands import CommandError
from tests.nodeproc import start_node
from tests.test_client_process import log_in, sign_up, start_client


class ParseTests(SynchronousTestCase):
    def test_commands_parse_and_print_back(self) -> None:
        for line, command in [
            ("passwd", Passwd()), ("profile", Profile()), ("profile:7", Profile(7)),
            ("setname:Alice B.", SetName("Alice B.")), ("find:bob", Find("bob")),
            ("requests", Requests()), ("accept:2", Answer(2, True)),
            ("decline:2", Answer(2, False)), ("role:3:4:admin", Role(3, 4, "admin")),
            ("announce:3:meeting at 10: room 2", Announce(3, "meeting at 10: room 2")),
            ("invite:3", Invite(3)), ("join:Zx3-_a", Join("Zx3-_a")),
            ("friendrequests:approve", FriendRequests("approve")),
            ("deleteaccount", DeleteAccount()),
        ]:
            self.assertEqual(parse_command(line), command, line)
            self.assertEqual(str(command), line)

    def test_other_commands_are_not_these(self) -> None:
        self.assertIsNone(parse_command("chat:2:hello"))

    def test_malformed_say_what_to_type(self) -> None:
        for line, usage in [("role:3:4:king", "role:groupid:userid:owner|admin|member"),
                            ("accept:x", "accept:userid"), ("find:", "find:name"),
                            ("passwd:now", "passwd"), ("friendrequests:maybe",
                                                       "friendrequests:open|approve")]:
            with self.assertRaises(CommandError) as caught:
                parse_command(line)
            self.assertIn(f"usage: {usage}", str(caught.exception))


class ClientAccountTests(TestCase):
    async def test_a_request_accepted_a_role_given_an_invite_used_a_password_changed(self):
        node = await start_node(self)
        alice, bob = start_client(self, node, "alice"), start_client(self, node, "bob")
        carol = start_client(self, node, "carol")
        a, b, c = (await sign_up(alice, "alice"), await sign_up(bob, "bob"),
                   await sign_up(carol, "carol"))
        for client, uid, name in ((alice, a, "alice"), (bob, b, "bob"), (carol, c, "carol")):
            await log_in(client, uid, name)
        bob.type("friendrequests:approve")
        await bob.expect("friend requests: approve")
        alice.type("find:BOB")
        await alice.expect(rf"found: \[{b}\]bob")
        alice.type(f"addfriend:{b}")
        await alice.expect(rf"error: addfriend:{b} failed: friend request sent.*\(errno 222\)")
        await bob.expect(rf"friend request: \[{a}\]alice asks to be your friend .*")
        bob.type("requests", f"accept:{a}", "friends")
        await bob.expect(rf"request: \[{a}\]alice")
        await bob.expect(rf"accepted: \[{a}\]")
        await bob.expect(rf".*\[{a}\]alice.*")
        await alice.expect("notice: a friend request was accepted")

        alice.type("creategroup:team:", "setname:Alice B.")
        gid = int((await alice.expect(r"group created: \[(\d+)\]team")).group(1))
        await alice.expect(rf"name changed: \[{a}\]Alice B\.")
        alice.type(f"invite:{gid}")
        code = (await alice.expect(rf"invite: \[{gid}\] code (\S+) \(join:\S+\)")).group(1)
        bob.type(f"join:{code}")
        await bob.expect(rf"group joined: \[{gid}\]team")
        alice.type(f"role:{gid}:{b}:admin")
        await alice.expect(rf"role set: \[{gid}\] \[{b}\] admin")
        await bob.expect(rf'group \[{gid}\] changed by \[{a}\]: '
                         rf'roles=\[{{"id": {b}, "role": "admin"}}\]')
        bob.type(f"announce:{gid}:hello team", f"profile:{a}")
        await bob.expect(rf"announcement set: \[{gid}\]")
        await bob.expect(rf"profile: \[{a}\]Alice B\. online")

        carol.type("passwd", "secret", "better")
        await carol.expect("info: password changed; your other devices are signed out")
        carol.type("deleteaccount", "wrong")
        await carol.expect(r"error: deleteaccount failed: the password is wrong.*\(errno 220\)")
        self.assertEqual(await alice.finish(), 1, "addfriend answered 222")
        self.assertEqual(await bob.finish(), 0, bob.output())

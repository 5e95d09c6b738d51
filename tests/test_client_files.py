"""chat-client's file commands against a real `twistd chatd` node with its web listener:
sendfile with its progress bar, the received attachment's line, getfile saving it, and the
reasons a transfer fails."""

from __future__ import annotations

import os

from twisted.trial.unittest import TestCase

from tests.nodeproc import start_node
from tests.servers import free_port
from tests.test_client_process import log_in, sign_up, start_client


class FileCommandTests(TestCase):
    timeout = 60

    async def test_sendfile_then_getfile(self) -> None:
        web = free_port()
        node = await start_node(self, "--web", f"tcp:{web}:interface=127.0.0.1")
        alice, bob = start_client(self, node, "alice"), start_client(self, node, "bob")
        alice_id, bob_id = await sign_up(alice, "alice"), await sign_up(bob, "bob")
        await log_in(alice, alice_id, "alice")
        await log_in(bob, bob_id, "bob")
        data = os.urandom(300_000)
        path = os.path.abspath(self.mktemp()) + "-report.bin"
        with open(path, "wb") as f:
            f.write(data)
        alice.type(f"sendfile:{bob_id}:{path}")
        await alice.expect(r"sendfile:\d+:.* \[#{20}\] 100% of 293\.0 KB")
        line = await bob.expect(r".* \[\d+\]alice said: \[(.*), 293\.0 KB\] "
                                rf"(http://127\.0\.0\.1:{web}/media/\S+) \(getfile:(\d+)\)")
        self.assertEqual(line.group(1), os.path.basename(path))
        target = os.path.abspath(self.mktemp())
        os.mkdir(target)
        bob.type(f"getfile:{line.group(3)}:{target}")
        saved = await bob.expect(rf"getfile:{line.group(3)}:.* saved: (.*)")
        with open(saved.group(1), "rb") as f:
            self.assertEqual(f.read(), data)
        alice.type(f"sendfile:{bob_id}:/no/such/file")
        await alice.expect(r".*no such file: /no/such/file")
        bob.type("getfile:12345")
        await bob.expect(r".*no attachment seen in message 12345")
        alice.type("sendfile:999999:" + path)
        await alice.expect(r".*no such user")

"""A node dies or freezes, and its users come back through the other nodes with their resume
tokens: real MariaDB, Redis and `twistd chatd` processes (as tests/test_cluster.py)."""

import os
import signal

from twisted.trial.unittest import TestCase

from chatd.cluster.redis import ALIVE_MS, LAPSING_MS
from chatd.messages import Errno, MsgId
from tests.harness import connect, deferLater, login, register
from tests.test_cluster import Cluster

USERS = 12


class ResumeTests(TestCase):
    timeout = 120

    async def test_users_of_a_killed_node_all_log_in_elsewhere_at_the_first_try(self):
        cluster = await Cluster(self).start(3)
        n1, n2, n3 = cluster.nodes
        users = []
        for i in range(USERS):
            client = await connect(self, n1)
            reply = await login(client, await register(client, f"u{i}"))
            users.append((client, reply["token"]))
        dave = await connect(self, n3)
        dave_token = (await login(dave, await register(dave, "dave")))["token"]
        await n1.stop("KILL")
        for client, _ in users:
            await client.closed  # as a real client: back once its connection has dropped
        for i, (client, token) in enumerate(users):
            again = await connect(self, n2 if i % 2 else n3)
            reply = await again.request(
                {"msgid": MsgId.LOGIN, "id": client.user_id, "token": token, "proto": 2},
                                        MsgId.LOGIN_ACK)
            self.assertEqual(reply["errno"], 0, f"user {i} refused: {reply}")
        other = await connect(self, n2)
        reply = await other.request(
            {"msgid": MsgId.LOGIN, "id": dave.user_id, "token": dave_token, "proto": 2},
                                    MsgId.LOGIN_ACK)
        self.assertEqual(reply["errno"], Errno.ALREADY_ONLINE,
                         "an account that is online stays refused")

    async def test_a_login_waits_out_the_lease_of_a_frozen_node(self):
        """A node that stops (its connections to Redis still open) stops renewing its lease:
        a login of one of its users through another node waits for the lease to run out
        instead of answering errno 2."""
        cluster = await Cluster(self).start(2)
        n1, n2 = cluster.nodes
        alice = await connect(self, n1)
        token = (await login(alice, await register(alice, "alice")))["token"]
        bob = await connect(self, n2)
        bob_token = (await login(bob, await register(bob, "bob")))["token"]
        os.kill(n1.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, n1.pid, signal.SIGCONT)
        await deferLater((ALIVE_MS - LAPSING_MS) / 1000 + 0.3)  # past the beats it missed
        again = await connect(self, n2)
        reply = await again.request(
            {"msgid": MsgId.LOGIN, "id": alice.user_id, "token": token, "proto": 2},
                                    MsgId.LOGIN_ACK)
        self.assertEqual(reply["errno"], 0, reply)
        os.kill(n1.pid, signal.SIGCONT)
        other = await connect(self, n1)
        reply = await other.request(
            {"msgid": MsgId.LOGIN, "id": bob.user_id, "token": bob_token, "proto": 2},
                                    MsgId.LOGIN_ACK)
        self.assertEqual(reply["errno"], Errno.ALREADY_ONLINE,
                         "bob is online on a live node: refused at once")

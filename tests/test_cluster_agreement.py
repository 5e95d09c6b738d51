"""Nodes that must not form a cluster together: another Redis database, a node id already in
use, other --history-days, --max-devices or database. Real Redis, MariaDB and `twistd chatd`
processes; the refused node exits by itself with status 1 and says why, naming both nodes."""

import json
import os
import re
import signal

from twisted.internet import reactor
from twisted.internet.error import ConnectError
from twisted.trial.unittest import TestCase

from chatd.cluster.agreement import JOIN_SECONDS
from tests.harness import deferLater
from tests.nodeproc import run_node, start_node
from tests.servers import free_port, mysql_database, start_redis
from tests.test_cluster import eventually
from tests.test_operations import http

INCARNATION = r"\d+\.[0-9a-f]{8}"


class AgreementTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.redis = start_redis()
        self.addCleanup(self.redis.destroy)
        self.db = mysql_database()

    def redis_url(self, number: int) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/{number}"

    async def node(self, node_id: int, *args: str, redis_db: int = 0):
        return await start_node(self, "--db", self.db, "--redis", self.redis_url(redis_db),
                                "--node-id", str(node_id), *args)

    async def refused(self, node_id: int, *args: str, redis_db: int = 0,
                      db: str | None = None) -> str:
        """Start a node that must refuse to join: its log, once it has exited with 1."""
        status, log = await run_node(self, "--db", db or self.db, "--redis",
                                     self.redis_url(redis_db), "--node-id", str(node_id),
                                     *args)
        self.assertEqual(status, 1, log)
        self.assertIn("chatd: refusing to join the cluster: ", log)
        return log

    async def test_a_node_on_another_redis_database_refuses_to_start(self):
        """Publish/subscribe ignores the database number, so one-to-one chat between such
        nodes passed while group copies for the other node's users were lost: refused."""
        first = await self.node(1, redis_db=1)
        log = await self.refused(2, redis_db=2)
        self.assertRegex(log, r"Redis database number \(--redis URL's /DB\) is 2 on node "
                              r"2\.[0-9a-f]{8} but 1 on node 1\.[0-9a-f]{8}")
        await eventually(lambda: _succeed("will refuse to start" in first.log()), 5,
                         "the first node logs the newcomer it refused")
        self.assertRegex(first.log(), r"node 2\.[0-9a-f]{8} is joining with other settings")
        third = await self.node(3, redis_db=1)
        await eventually(lambda: _succeed("joined the cluster: 1 other node(s) answered with "
                                          "the same settings" in third.log()), 5,
                         "a node on the right database joins")

    async def test_a_node_id_already_in_use_is_refused(self):
        await self.node(4)
        log = await self.refused(4)
        self.assertRegex(log, rf"node id 4 \(--node-id\) is used by both node {INCARNATION} "
                              rf"and node {INCARNATION}")

    async def test_other_history_days_max_devices_and_database_are_refused(self):
        await self.node(1)
        log = await self.refused(2, "--history-days", "30", "--max-devices", "3",
                                 db=mysql_database())
        line = next(line for line in log.splitlines() if line.startswith("chatd: refusing"))
        self.assertIn(f"[chatd.cluster.agreement#critical] {line[len('chatd: '):]}", log,
                      "the log says it too")
        self.assertRegex(line, r"--history-days is 30 on node 2\.\w+ but 90 on node 1\.\w+")
        self.assertRegex(line, r"--max-devices is 3 on node 2\.\w+ but 5 on node 1\.\w+")
        self.assertRegex(line, r"database \(--db; its identity in the table ServerSecret\) "
                               r"is [0-9a-f]{16} on node 2\.\w+ but [0-9a-f]{16} on node 1\.\w+")

    async def test_a_difference_that_appears_later_fails_health_on_both_nodes(self):
        """A newcomer that did not hear a frozen node joins; when that node wakes up both
        report the difference on /health and in their logs."""
        ports = [free_port(), free_port()]
        first = await self.node(1, "--admin", f"tcp:{ports[0]}:interface=127.0.0.1",
                                redis_db=1)
        # healthy once joined: frozen earlier, within the join's window, the first node
        # would wake up still joining and refuse to start instead
        await eventually(lambda: _healthy(ports[0]), 10, "the first node is healthy")
        os.kill(first.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, first.pid, signal.SIGCONT)
        second = await self.node(2, "--admin", f"tcp:{ports[1]}:interface=127.0.0.1",
                                 redis_db=2)
        await deferLater(JOIN_SECONDS + 0.5)
        self.assertIn("did not answer in time", second.log())
        os.kill(first.pid, signal.SIGCONT)
        for port, node in zip(ports, (first, second), strict=True):
            body = await eventually(lambda p=port: _failing(p), 15, "the difference on /health")
            self.assertEqual(body["failing"], ["cluster"])
            self.assertRegex(body["cluster"], r"^failing: Redis database number \(--redis "
                             r"URL's /DB\) is \d on node \d\.[0-9a-f]{8} but \d on node "
                             r"\d\.[0-9a-f]{8}$")
            self.assertEqual(sorted(re.findall(r"node (\d)\.", body["cluster"])), ["1", "2"])
            self.assertIn("the cluster is misconfigured: Redis database number", node.log())

    async def test_a_node_is_not_healthy_until_it_has_joined(self):
        """A node may still refuse to start while it is joining, so /health says so (503,
        `joining`) until it has joined; a frozen node that cannot answer its hello makes it
        wait out the join's whole window. (/health said 200 as soon as the bus answered.)"""
        first = await self.node(1)
        await eventually(lambda: _succeed("joined the cluster" in first.log()), 10,
                         "the first node has joined")
        os.kill(first.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, first.pid, signal.SIGCONT)
        port = free_port()
        second = await self.node(2, "--admin", f"tcp:{port}:interface=127.0.0.1")
        began, seen = reactor.seconds(), []
        code, cluster = await _cluster(port)
        while code != 200 and reactor.seconds() < began + 15:
            seen.append(cluster)
            await deferLater(0.05)
            code, cluster = await _cluster(port)
        self.assertEqual((code, cluster), (200, "ok"))
        self.assertIn("joining", seen)
        self.assertGreater(reactor.seconds() - began, JOIN_SECONDS / 2,
                           "unhealthy while it waited for the frozen node")
        self.assertIn("did not answer in time",
                      await second.logged("did not answer in time", 2))


async def _succeed(value: bool) -> bool:
    return value


async def _health(port: int) -> tuple[int, dict]:
    code, body = await http(f"http://127.0.0.1:{port}/health")
    return code, json.loads(body)


async def _cluster(port: int) -> tuple[int | None, str]:
    """/health's code and its `cluster` part; (None, "") while the listener is not up."""
    try:
        code, body = await _health(port)
    except ConnectError:
        return None, ""
    return code, body["cluster"]


async def _healthy(port: int) -> bool:
    return (await _health(port))[0] == 200


async def _failing(port: int) -> dict | None:
    code, body = await _health(port)
    return body if code == 503 else None

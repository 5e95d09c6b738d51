"""Pushes per second: a real `twistd chatd` node, a group whose members are all offline and
subscribed to the local push service (tests/pushservice.py, which decrypts each push), one
sender. Not part of `make test` (no test_ prefix); run it on its own:

    CI=true .venv/bin/trial tests.bench_push

It prints pushes delivered per second and the chat rate (group messages SEND_ACKed per
second) beside it, with the push queue's counters from the node's /metrics; docs/performance.md
has a run."""

import os
import resource
import time
from urllib.request import urlopen

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.harness import connect, deferLater, register, user
from tests.nodeproc import start_node
from tests.pushservice import PushService
from tests.servers import free_port
from tests.test_push import PUSH_ARGS, away, subscribe

MEMBERS = int(os.environ.get("PUSH_BENCH_MEMBERS", "200"))
MESSAGES = int(os.environ.get("PUSH_BENCH_MESSAGES", "50"))


def node_cpu(pid: int) -> float:
    """User and system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PushRate(TestCase):
    timeout = 600

    async def test_pushes_per_second(self):
        service = await PushService.start(self)
        admin = free_port()
        node = await start_node(self, *PUSH_ARGS, "--push-interval", "0", "--push-queue",
                                "1000000", "--max-registrations", "100000",
                                "--admin", f"tcp:{admin}:interface=127.0.0.1")
        sender = await user(self, node, "sender")
        gid = (await sender.request({"msgid": MsgId.CREATE_GROUP, "groupname": "all"},
                                    MsgId.CREATE_GROUP_ACK))["groupid"]
        endpoints = []
        for i in range(MEMBERS):
            client = await connect(self, node)
            member = await register(client, f"m{i}")
            await client.request({"msgid": MsgId.LOGIN, "id": member, "password": "secret",
                                  "proto": 2}, MsgId.LOGIN_ACK)
            await client.request({"msgid": MsgId.ADD_GROUP, "groupid": gid},
                                 MsgId.ADD_GROUP_ACK)
            browser = service.subscription()
            await subscribe(client, browser)
            await away(client)
            endpoints.append(browser.endpoint)
        total = MEMBERS * MESSAGES
        cpu = (node_cpu(node.pid), resource.getrusage(resource.RUSAGE_SELF))
        started = time.monotonic()
        for i in range(MESSAGES):
            sender.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": f"m{i}",
                         "cid": str(i)})
        for i in range(MESSAGES):
            await sender.recv(MsgId.SEND_ACK, cid=str(i), timeout=120)
        chat_seconds = time.monotonic() - started
        while sum(len(service.inbox(e).arrived) for e in endpoints) < total:
            if time.monotonic() - started > 300:
                break
            await deferLater(0.05)
        push_seconds = time.monotonic() - started
        arrived = sum(len(service.inbox(e).arrived) for e in endpoints)
        mine = resource.getrusage(resource.RUSAGE_SELF)
        node_seconds = node_cpu(node.pid) - cpu[0]
        test_seconds = (mine.ru_utime + mine.ru_stime) - (cpu[1].ru_utime + cpu[1].ru_stime)
        metrics = await deferToThread(
            lambda: urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode())
        counters = [line for line in metrics.splitlines()
                    if line.startswith(("chatd_pushes", "chatd_push_"))]
        print(f"\npush bench: {MEMBERS} offline subscribed members, {MESSAGES} group messages"
              f"\n  pushes delivered: {arrived}/{total} in {push_seconds:.2f} s = "
              f"{arrived / push_seconds:.0f} pushes/s"
              f"\n  chat: {MESSAGES} messages SEND_ACKed in {chat_seconds:.2f} s = "
              f"{MESSAGES / chat_seconds:.1f} messages/s "
              f"({MESSAGES * MEMBERS / chat_seconds:.0f} offline copies/s)"
              f"\n  CPU seconds: node {node_seconds:.2f}, push service and clients "
              f"{test_seconds:.2f}\n  "
              + "\n  ".join(counters))
        self.assertEqual(arrived, total)

"""`make cluster` (chatd.devcluster) as a user runs it: everything it started stops when it is
interrupted, terminated or loses its terminal."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from chatd.messages import MsgId
from tests.servers import free_port, unavailable

START = 120.0
STOP = 60.0


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class Person:
    """A chat client on a blocking socket, one JSON frame a line."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.lines = self.sock.makefile("rb")
        self.id = self.request({"msgid": MsgId.REG, "name": name, "password": "pw"},
                               MsgId.REG_ACK)["id"]
        self.request({"msgid": MsgId.LOGIN, "id": self.id, "password": "pw", "proto": 2},
                     MsgId.LOGIN_ACK)

    def send(self, frame: dict) -> None:
        self.sock.sendall(json.dumps(frame).encode() + b"\n")

    def request(self, frame: dict, reply: int) -> dict:
        self.send(frame)
        return self.wait(reply)

    def wait(self, msgid: int) -> dict:
        while True:
            frame = json.loads(self.lines.readline())
            if frame["msgid"] == msgid:
                return frame


class MakeClusterTests(SynchronousTestCase):

    def start(self, *args: str) -> tuple[subprocess.Popen, str, int, int]:
        """`make cluster` with these arguments, up: the process, what it printed, nginx's
        chat and web ports."""
        nginx, web = free_port(), free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatd.devcluster", "--port", str(nginx),
             "--web-port", str(web), "--password-cost", "1", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.addCleanup(proc.kill)
        output = []
        deadline = time.monotonic() + START
        for line in proc.stdout:
            output.append(line)
            if "stops the cluster" in line or time.monotonic() > deadline:
                break
        text = "".join(output)
        if proc.poll() is not None and "not installed" in text:
            raise unavailable(text)
        return proc, text, nginx, web

    def run_and_stop(self, signum: int) -> None:
        proc, text, nginx, web = self.start("--nodes", "1")
        ports = [nginx] + sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)})
        # nginx for chat and for the web, the node, its web and admin listeners, MariaDB, Redis
        self.assertEqual(len(ports), 7, text)
        self.assertIn(web, ports, text)
        self.assertTrue(all(listening(p) for p in ports), text)
        proc.send_signal(signum)
        self.assertEqual(proc.wait(STOP), 0)
        self.assertEqual([p for p in ports if listening(p)], [], text)

    def test_sighup_stops_everything(self):
        self.run_and_stop(signal.SIGHUP)

    def test_sigterm_stops_everything(self):
        self.run_and_stop(signal.SIGTERM)

    def test_ha_survives_killing_the_master(self):
        """`make cluster HA=1`: kill the master by hand as the banner says, while two users
        on different nodes chat; the sentinels promote the replica, the nodes follow, and the
        dead server comes back as a replica."""
        proc, text, nginx, web = self.start("--nodes", "2", "--ha")
        kill = re.search(r"fail over: kill -9 (\d+)", text)
        self.assertIsNotNone(kill, text)
        self.assertIn("SENTINEL FAILOVER chatd", text)
        ann, bob = Person(nginx, "ann"), Person(nginx, "bob")  # least_conn: one each
        os.kill(int(kill.group(1)), signal.SIGKILL)
        ann.send({"msgid": MsgId.ONE_CHAT, "to": bob.id, "msg": "during", "cid": "1"})
        self.assertEqual(bob.wait(MsgId.ONE_CHAT)["msg"], "during")
        self.assertEqual(ann.wait(MsgId.SEND_ACK)["errno"], 0)
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "started again as a replica" in line:
                break
        self.assertTrue(any(line.startswith("failover: the master is now") for line in seen),
                        seen)
        bob.send({"msgid": MsgId.ONE_CHAT, "to": ann.id, "msg": "after", "cid": "2"})
        self.assertEqual(ann.wait(MsgId.ONE_CHAT)["msg"], "after")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(STOP), 0)

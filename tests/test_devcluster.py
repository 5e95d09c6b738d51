"""`make cluster` (chatd.devcluster) as a user runs it: everything it started stops when it is
interrupted, terminated or loses its terminal."""

import re
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.servers import free_port, unavailable

START = 120.0
STOP = 60.0


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


class MakeClusterTests(SynchronousTestCase):

    def run_and_stop(self, signum: int) -> None:
        nginx, web = free_port(), free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chatd.devcluster", "--nodes", "1", "--port", str(nginx),
             "--web-port", str(web), "--password-cost", "1"],
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

"""A real `twistd chatd` node in a subprocess, for tests that need the whole program.

    node = await start_node(self)                 # in an async trial test method
    node = await start_node(self, "--idle-timeout", "5")
    node.port, node.db_path, node.log_path, node.log()
    await node.restart()                          # same port, same database
    await node.restart("KILL")                    # the same after a crash
    await node.stop(); await node.start()         # stop() is also done at test cleanup
    ended = await node.stop("TERM", timeout=90)   # False: it lingered and was killed
    status, log = await run_node(self, "--redis", url)  # a node expected to exit by itself

The node listens on a free loopback port with its own SQLite file in the test's temporary
directory and `--password-cost 1`; extra arguments come after these, so they override them.
`start_node` returns once the port accepts connections, or fails the test with the node's log
after 20 s. Stopping sends SIGTERM, then SIGKILL after 10 s (or `timeout`).
"""

from __future__ import annotations

import os
import sys
from contextlib import suppress

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectError, ProcessExitedAlready
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from tests.servers import free_port

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.1
LISTEN = "tcp:{port}:interface=127.0.0.1"


async def start_node(testcase: TestCase, *args: str, listen: str = LISTEN) -> Node:
    """Start a node for this test; it is stopped at the test's cleanup. `listen` is the
    --listen endpoint with `{port}` for the free port, e.g. haproxy:tcp:{port} behind nginx
    with proxy_protocol on, or ssl:{port}:privateKey=...."""
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    node = Node(directory, free_port(), args, listen)
    testcase.addCleanup(lambda: Deferred.fromCoroutine(node.stop()))
    await node.start()
    return node


async def run_node(testcase: TestCase, *args: str, timeout: float = START_TIMEOUT
                   ) -> tuple[int | None, str]:
    """Start a node that should end by itself (a refusal) and wait for it: its exit status
    and its log. Fails the test when it is still running after `timeout` seconds."""
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    node = Node(directory, free_port(), args)
    testcase.addCleanup(lambda: Deferred.fromCoroutine(node.stop()))
    process = node.spawn()
    deadline = reactor.seconds() + timeout
    while not process.ended.called and reactor.seconds() < deadline:
        await deferLater(reactor, POLL_INTERVAL)
    if not process.ended.called:
        raise FailTest(f"chatd still runs after {timeout:.0f} s; log:\n{node.log()}")
    return getattr(process.exit.value, "exitCode", None), node.log()


class _NodeOutput(ProcessProtocol):
    """Appends the node's stdout and stderr (twistd logs to stdout) to the log file."""

    def __init__(self, log_path: str) -> None:
        self._log_path = log_path
        self.ended: Deferred[None] = Deferred()
        self.exit: Failure | None = None

    def childDataReceived(self, fd: int, data: bytes) -> None:
        with open(self._log_path, "ab") as log:
            log.write(data)

    def processEnded(self, reason: Failure) -> None:
        self.exit = reason
        self.ended.callback(None)


class Node:
    """One chatd node process; `start` and `restart` keep its port and database."""

    def __init__(self, directory: str, port: int, args: tuple[str, ...],
                 listen: str = LISTEN) -> None:
        self.listen = listen.format(port=port)
        self.directory = directory
        self.port = port
        self.db_path = os.path.join(directory, "chatd.sqlite3")
        self.log_path = os.path.join(directory, "node.log")
        self.args = args
        self._process: _NodeOutput | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None, "the node is not running"
        return self._process.transport.pid

    @property
    def running(self) -> bool:
        return self._process is not None and not self._process.ended.called

    def log(self) -> str:
        """Everything the node has logged so far, across restarts."""
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return log.read()

    async def logged(self, text: str, seconds: float = 5.0) -> str:
        """The log once it holds `text` (the node writes its lines at the end of a reactor
        turn, which may come after a client already has the turn's frames)."""
        for _ in range(int(seconds / 0.05)):
            log = self.log()
            if text in log:
                return log
            await deferLater(reactor, 0.05, lambda: None)
        return self.log()

    async def start(self) -> None:
        await self._wait_for_port(self.spawn())

    def spawn(self) -> _NodeOutput:
        """Start the process without waiting for it to listen."""
        argv = [TWISTD, "--nodaemon", "--pidfile=", "chatd",
                "--listen", self.listen, "--db", f"sqlite:{self.db_path}", "--password-cost", "1",
                *self.args]
        self._process = _NodeOutput(self.log_path)
        reactor.spawnProcess(self._process, TWISTD, argv, env=dict(os.environ),
                             path=self.directory)
        return self._process

    async def stop(self, signal: str = "TERM", timeout: float = STOP_TIMEOUT) -> bool:
        """Send `signal` ("KILL" to simulate a crash), then SIGKILL if the node lingers
        `timeout` seconds. True when it ended by itself (or was not running), False when it
        had to be killed."""
        process, self._process = self._process, None
        if process is None:
            return True
        for sent in (signal, "KILL"):
            with suppress(ProcessExitedAlready):
                process.transport.signalProcess(sent)
            deadline = reactor.seconds() + (timeout if sent == signal else STOP_TIMEOUT)
            while not process.ended.called and reactor.seconds() < deadline:
                await deferLater(reactor, POLL_INTERVAL)
            if process.ended.called:
                return sent == signal
        return False

    async def restart(self, signal: str = "TERM") -> None:
        await self.stop(signal)
        await self.start()

    async def _wait_for_port(self, process: _NodeOutput) -> None:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=1)
        deadline = reactor.seconds() + START_TIMEOUT
        while reactor.seconds() < deadline:
            if process.ended.called:
                raise FailTest(f"chatd exited ({process.exit and process.exit.value}) "
                               f"before listening on {self.port}; log:\n{self.log()}")
            try:
                probe = await endpoint.connect(Factory.forProtocol(Protocol))
            except ConnectError:
                await deferLater(reactor, POLL_INTERVAL)
            else:
                probe.transport.loseConnection()
                return
        raise FailTest(f"chatd did not listen on {self.port} within {START_TIMEOUT:.0f} s; "
                       f"log:\n{self.log()}")

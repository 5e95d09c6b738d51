"""`chatd-bench --attachments`: photos and files under load. While the phases run, N media
users upload files of --media-size over the nodes' web listener (UPLOAD, PUT) all at once,
send each one in a chat message to the next user, and then every receiver downloads its file
from the link in the message; rounds go on until the phases end. Reported: upload and
download throughput in MB/s (the bytes of each half over its own wall time), rounds,
failures.

The media users run in a process of their own (`python -m chatd.bench.media`, spawned by the
parent like the workers, commands on stdin and events on stdout): in the parent's reactor
their HTTP bytes would delay the phases' coordination, and the chat figures would measure the
load generator's core instead of the node's.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from argparse import Namespace
from typing import Any

import ujson
from twisted.internet import epollreactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody

from chatd.bench.logs import log_problems_to_stderr
from chatd.bench.pool import STOP_GRACE, WorkerProcess
from chatd.messages import MsgId

MB = 1_000_000


class MediaUser(Protocol):
    """One media user's chat connection: replies by msgid, and chat frames as they come."""

    def __init__(self) -> None:
        self.buffer = b""
        self.waiting: dict[int, list[Deferred[dict[str, Any]]]] = {}
        self.chats: list[dict[str, Any]] = []
        self.chat_waiter: Deferred[dict[str, Any]] | None = None
        self.uid = 0

    def dataReceived(self, data: bytes) -> None:
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            frame = ujson.loads(line)
            msgid = frame.get("msgid")
            if msgid == MsgId.ONE_CHAT:
                self.send({"msgid": MsgId.RECV_ACK, "mid": frame["mid"]})
                self._chat(frame)
            elif self.waiting.get(msgid):
                self.waiting[msgid].pop(0).callback(frame)

    def _chat(self, frame: dict[str, Any]) -> None:
        if self.chat_waiter is not None:
            waiter, self.chat_waiter = self.chat_waiter, None
            waiter.callback(frame)
        else:
            self.chats.append(frame)

    def send(self, frame: dict[str, Any]) -> None:
        self.transport.write(ujson.dumps(frame).encode() + b"\n")

    def request(self, frame: dict[str, Any], reply: int) -> Deferred[dict[str, Any]]:
        answer: Deferred[dict[str, Any]] = Deferred()
        self.waiting.setdefault(reply, []).append(answer)
        self.send(frame)
        return answer

    def next_chat(self) -> Deferred[dict[str, Any]]:
        if self.chats:
            return Deferred.fromCoroutine(_now(self.chats.pop(0)))
        self.chat_waiter = Deferred()
        return self.chat_waiter


async def _now(value: Any) -> Any:
    return value


class MediaLoad:
    """The media users of one run and what they measured."""

    def __init__(self, opts: Namespace, reactor: Any) -> None:
        self.opts = opts
        self.reactor = reactor
        self.web = opts.media_web.rstrip("/")
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor))
        self.users: list[MediaUser] = []
        self.up = self.down = self.failed = self.rounds = 0
        self.up_seconds = self.down_seconds = 0.0
        self.first_error = ""
        self.file = ""

    async def start(self) -> None:
        fd, self.file = tempfile.mkstemp(prefix="chatd-bench-media-")
        with os.fdopen(fd, "wb") as f:
            for _ in range(self.opts.media_size):
                f.write(os.urandom(1 << 20))
        host, port = self.opts.addresses[0]
        for i in range(self.opts.media_users):
            user = await connectProtocol(TCP4ClientEndpoint(self.reactor, host, port),
                                         MediaUser())
            name = f"{self.opts.prefix}m{self.opts.run_id}{i}"
            reg = await user.request({"msgid": MsgId.REG, "name": name,
                                      "password": self.opts.password}, MsgId.REG_ACK)
            user.uid = reg["id"]
            await user.request({"msgid": MsgId.LOGIN, "id": user.uid,
                                "password": self.opts.password, "proto": 2},
                               MsgId.LOGIN_ACK)
            self.users.append(user)

    async def rounds_until(self, done: Deferred[Any]) -> None:
        """Rounds until `done` fires: every user uploads at once, then every receiver
        downloads at once; each half timed on its own."""
        count = len(self.users)
        while not done.called:
            pairs = [(u, self.users[(i + 1) % count]) for i, u in enumerate(self.users)]
            started = time.monotonic()
            sent = await gatherResults([Deferred.fromCoroutine(self._upload(*p)) for p in pairs])
            between = time.monotonic()
            await gatherResults([Deferred.fromCoroutine(self._download(r)) for _, r in pairs
                                 if r.uid in sent])
            self.up_seconds += between - started
            self.down_seconds += time.monotonic() - between
            self.rounds += 1

    async def _upload(self, sender: MediaUser, receiver: MediaUser) -> int:
        """UPLOAD, PUT, and the message naming it; the receiver's id, or 0 when it failed."""
        size = os.path.getsize(self.file)
        try:
            ack = await sender.request({"msgid": MsgId.UPLOAD, "name": "bench.bin",
                                        "size": size, "mime": "application/octet-stream",
                                        "to": receiver.uid}, MsgId.UPLOAD_ACK)
            with open(self.file, "rb") as f:
                response = await self.agent.request(
                    b"PUT", (self.web + ack["upload"]["put"]).encode(), None,
                    FileBodyProducer(f))
                await readBody(response)
        except Exception:  # a refused or broken upload is counted, the rounds go on
            self.failed += 1
            return 0
        if response.code != 201:
            self.failed += 1
            return 0
        self.up += size
        sender.send({"msgid": MsgId.ONE_CHAT, "to": receiver.uid, "msg": "",
                     "attachment": {"id": ack["upload"]["id"]}})
        return receiver.uid

    async def _download(self, receiver: MediaUser) -> None:
        try:
            got = await receiver.next_chat()
            response = await self.agent.request(b"GET", got["attachment"]["url"].encode())
            body = await readBody(response)
            if response.code != 200:
                raise RuntimeError(f"GET {response.code}: {body[:200]!r}")
            self.down += len(body)
        except Exception as e:  # counted as above; the first reason is reported
            self.failed += 1
            self.first_error = self.first_error or str(e)

    def report(self) -> dict[str, Any]:
        return {"users": len(self.users), "file_mib": self.opts.media_size,
                "rounds": self.rounds, "failed": self.failed,
                "upload_mb_s": round(self.up / MB / max(self.up_seconds, 1e-9), 1),
                "download_mb_s": round(self.down / MB / max(self.down_seconds, 1e-9), 1),
                "seconds": round(self.up_seconds + self.down_seconds, 1),
                "first_error": self.first_error}

    def close(self) -> None:
        for user in self.users:
            user.transport.loseConnection()
        if self.file:
            os.unlink(self.file)


OPTIONS = ("media_web", "media_users", "media_size", "addresses", "prefix", "run_id",
           "password")
"""What the media process takes of the parent's options."""


class MediaProcess:
    """The parent's side: the media users' process, started before the phases and stopped
    after them with its report."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.process = WorkerProcess(0, self._event)

    async def start(self, opts: Namespace) -> None:
        """Spawn the process; back when its users are logged in."""
        argv = [sys.executable, "-m", "chatd.bench.media"]
        self.reactor.spawnProcess(self.process, sys.executable, argv, env=dict(os.environ),
                                  childFDs={0: "w", 1: "r", 2: 2})
        await self.process.request({"cmd": "start",
                                    "opts": {name: getattr(opts, name) for name in OPTIONS}})

    async def stop(self) -> dict[str, Any]:
        """The rounds end (the one under way first); the report."""
        result = await self.process.request({"cmd": "stop"})
        return dict(result["attachments"])

    async def close(self) -> None:
        """Its stdin closed, it exits; killed if it lingers."""
        if self.process.transport is None or self.process.ended.called:
            return
        self.process.transport.closeStdin()
        killer = self.reactor.callLater(STOP_GRACE, self.process.transport.signalProcess,
                                        "KILL")
        await self.process.ended
        if killer.active():
            killer.cancel()

    def _event(self, process: WorkerProcess, event: dict[str, Any]) -> None:
        if event["ev"] in ("ready", "result"):
            process.answer(event)
        elif event["ev"] == "error":
            process.fail(event["error"])


class Control(LineOnlyReceiver):
    """The media process's commands on stdin: start (register and log in the users, then
    the rounds), stop (the report); end of stdin ends the process."""

    delimiter = b"\n"

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.load: MediaLoad | None = None
        self.stopped: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        cmd = ujson.loads(line)
        if cmd["cmd"] == "start":
            self.load = MediaLoad(Namespace(**cmd["opts"]), self.reactor)
            Deferred.fromCoroutine(self._run()).addErrback(self._failed)
        elif cmd["cmd"] == "stop":
            self.stopped.callback(None)

    async def _run(self) -> None:
        assert self.load is not None
        await self.load.start()
        self._emit({"ev": "ready"})
        await self.load.rounds_until(self.stopped)
        self._emit({"ev": "result", "attachments": self.load.report()})

    def _failed(self, failure: Failure) -> None:
        self._emit({"ev": "error", "error": failure.getErrorMessage()})

    def _emit(self, event: dict[str, Any]) -> None:
        self.transport.write(ujson.dumps(event).encode() + b"\n")

    def connectionLost(self, reason: Failure) -> None:
        if self.load is not None:
            self.load.close()
        if self.reactor.running:
            self.reactor.stop()


def main() -> None:
    epollreactor.install()
    from twisted.internet import reactor, stdio

    log_problems_to_stderr()
    stdio.StandardIO(Control(reactor), reactor=reactor)
    reactor.run()


def render(media: dict[str, Any]) -> str:
    return (f"attachments: {media['users']} users, {media['file_mib']} MiB files, "
            f"{media['rounds']} rounds in {media['seconds']} s, {media['failed']} failed; "
            f"upload {media['upload_mb_s']} MB/s, download {media['download_mb_s']} MB/s"
            + (f"; first error: {media['first_error']}" if media["first_error"] else ""))


if __name__ == "__main__":
    main()

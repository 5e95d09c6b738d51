"""Phases with one request per user: connect, register, log in, log in again with a token.

Like chatload, at most `window` requests are in flight per worker, so the latency measured
is the server's answer time at a steady load rather than the length of a queue the tool
built itself.
"""

from __future__ import annotations

from collections import deque
from time import monotonic_ns
from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure

from chatd.bench.phase import Phase
from chatd.bench.wire import ERROR, BenchConn, User, encode
from chatd.bench.wslink import WebSocketLink
from chatd.messages import Errno, MsgId

if TYPE_CHECKING:
    from twisted.internet.interfaces import IConnector

    from chatd.bench.worker import Worker

RETRY_SECONDS = 0.2


class WindowPhase(Phase):
    """Keeps `window` users in flight; `begin(user)` starts one, `settle(user)` ends one."""

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        self.window: int = cmd["window"]
        self.queue: deque[User] = deque(worker.users)
        self.pending: dict[User, int] = {}

    def start(self) -> None:
        self.fill()

    def fill(self) -> None:
        while self.queue and len(self.pending) < self.window:
            user = self.queue.popleft()
            self.pending[user] = monotonic_ns()
            self.begin(user)
        if not self.queue and not self.pending:
            self.finish()

    def begin(self, user: User) -> None:
        raise NotImplementedError

    def settle(self, user: User, ok: bool, error: str = "") -> None:
        """One user's request is over: time it when it succeeded, and start the next."""
        sent = self.pending.pop(user, None)
        if sent is None:
            return
        if ok:
            self.result.ok += 1
            self.result.hist.add((monotonic_ns() - sent) // 1000)
        else:
            self.result.error(error)
        self.fill()

    def skip(self, user: User, error: str) -> None:
        """A user that cannot even try (no connection, no id): a failure, with no latency."""
        self.pending.pop(user, None)
        self.result.error(error)

    def tick(self, now: int) -> None:
        late = [u for u, sent in self.pending.items() if now - sent > self.timeout_ns]
        for user in late:
            del self.pending[user]
            self.result.lost += 1
        if late:
            self.fill()

    def expire(self) -> None:
        self.result.lost += len(self.pending) + len(self.queue)
        self.pending.clear()
        self.queue.clear()
        self.finish()


class _UserFactory(ClientFactory):
    """Builds one connection of one user (its `device`) and reports a failed attempt to
    the phase."""

    def __init__(self, worker: Worker, user: User, device: int = 0) -> None:
        self.worker = worker
        self.user = user
        self.device = device

    def buildProtocol(self, addr: Any) -> BenchConn | WebSocketLink:
        conn = BenchConn(self.worker, self.user, self.device)
        if self.worker.ws:
            return WebSocketLink(conn, f"{addr.host}:{addr.port}")
        return conn

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.worker.phase.on_connect_failed(self.user, reason.getErrorMessage())


class ConnectPhase(WindowPhase):
    """Connects every user, all its devices (--devices) to the same target; a user counts
    once, when the last of them is connected."""

    name = "connect"
    unit = "conns/s"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        self.connecting: dict[User, int] = {}

    def begin(self, user: User) -> None:
        host, port = self.worker.target_of(user)
        self.connecting[user] = self.worker.devices
        for device in range(self.worker.devices):
            self.worker.reactor.connectTCP(host, port, _UserFactory(self.worker, user, device),
                                           timeout=max(1, round(self.timeout_ns / 1e9)))

    def on_connected(self, conn: BenchConn) -> None:
        left = self.connecting.pop(conn.user, 1) - 1
        if left:
            self.connecting[conn.user] = left
        else:
            self.settle(conn.user, True)

    def on_connect_failed(self, user: User, why: str) -> None:
        self.connecting.pop(user, None)
        self.settle(user, False, f"connect: {why}")


class RequestPhase(WindowPhase):
    """A request whose reply has its own msgid (REG_ACK, LOGIN_ACK), one per connection."""

    reply = 0

    def begin(self, user: User) -> None:
        if user.conn is None:
            self.skip(user, "not connected")
            return
        request = self.request(user)
        if request is None:
            self.skip(user, "no user id (registration failed and none in --idfile)")
            return
        user.conn.send(request)

    def request(self, user: User) -> bytes | None:
        raise NotImplementedError

    def answered(self, user: User, frame: dict[str, Any]) -> None:
        raise NotImplementedError

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        msgid = frame.get("msgid")
        if conn.user not in self.pending:
            super().on_frame(conn, frame)
        elif msgid == self.reply and frame.get("errno") == Errno.BUSY:
            self.worker.reactor.callLater(RETRY_SECONDS, self.retry, conn)
        elif msgid == self.reply:
            self.answered(conn.user, frame)
        elif msgid == ERROR:
            self.settle(conn.user, False, f"ERROR_MSG {frame}")

    def retry(self, conn: BenchConn) -> None:
        """Send a request the node was too busy to take again, on the same connection; its
        time counts from the first attempt."""
        request = self.request(conn.user)
        if conn.user in self.pending and conn.connected and request is not None:
            conn.send(request)

    def on_lost(self, user: User, why: str) -> None:
        super().on_lost(user, why)
        self.settle(user, False, f"connection lost: {why}")


class RegPhase(RequestPhase):
    name = "reg"
    unit = "ops/s"
    reply = MsgId.REG_ACK

    def request(self, user: User) -> bytes:
        return encode({"msgid": MsgId.REG, "name": user.name, "password": self.worker.password})

    def answered(self, user: User, frame: dict[str, Any]) -> None:
        errno = frame.get("errno")
        if errno == 0 and frame.get("id"):
            user.uid = frame["id"]
            self.settle(user, True)
        elif errno == Errno.NAME_TAKEN and user.uid:
            self.result.extra["existing"] = self.result.extra.get("existing", 0) + 1
            self.settle(user, True)
        else:
            self.settle(user, False, f"REG {user.name}: {frame}")

    def finish(self) -> None:
        self.data["ids"] = {str(u.index): u.uid for u in self.worker.users}
        super().finish()


class LoginPhase(RequestPhase):
    """LOGIN on every device of a user (--devices N names them d0 … dN-1); the user counts
    once, when the last one is logged in."""

    name = "login"
    unit = "ops/s"
    reply = MsgId.LOGIN_ACK

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        self.waiting: dict[User, int] = {}

    def begin(self, user: User) -> None:
        conns = user.conns()
        if not user.uid:
            self.skip(user, "no user id (registration failed and none in --idfile)")
        elif len(conns) < self.worker.devices:
            self.skip(user, "not connected")
        else:
            self.waiting[user] = len(conns)
            for conn in conns:
                conn.send(self.login(user, conn.device))

    def login(self, user: User, device: int) -> bytes:
        frame: dict[str, Any] = {"msgid": MsgId.LOGIN, "id": user.uid,
                                 "password": self.worker.password}
        if self.worker.proto == 2:
            frame["proto"] = 2
        if self.worker.devices > 1:
            frame["device"] = f"d{device}"
        return encode(frame)

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        user = conn.user
        if user not in self.pending or frame.get("msgid") != MsgId.LOGIN_ACK or \
                frame.get("errno") != 0 or self.waiting.get(user, 0) <= 1:
            super().on_frame(conn, frame)
            return
        self.waiting[user] -= 1
        if conn.device == 0:
            user.token = frame.get("token") or user.token

    def retry(self, conn: BenchConn) -> None:
        """The LOGIN of this device again, after "server busy, retry"."""
        if conn.user in self.pending and conn.connected:
            conn.send(self.login(conn.user, conn.device))

    def answered(self, user: User, frame: dict[str, Any]) -> None:
        logged_in(self, user, frame)

    def finish(self) -> None:
        self.data["online"] = [u.index for u in self.worker.users if u.online]
        super().finish()


def logged_in(phase: WindowPhase, user: User, frame: dict[str, Any]) -> None:
    """Settle a LOGIN_ACK; keep the resume token it carries (proto 2)."""
    if frame.get("errno") == 0:
        user.online = True
        user.token = frame.get("token") or user.token
        phase.settle(user, True)
    else:
        phase.settle(user, False, f"LOGIN {user.uid}: {frame.get('errmsg', frame)}")


class ResumePhase(WindowPhase):
    """The users of the first target lose it (the parent killed its node, or they drop their
    connections here) and log in again through the other targets with their resume tokens,
    as the bundled client does; each user is timed from the start of its turn to LOGIN_ACK."""

    name = "resume"
    unit = "ops/s"

    def __init__(self, worker: Worker, cmd: dict[str, Any]) -> None:
        super().__init__(worker, cmd)
        chosen = set(cmd["users"])
        self.queue = deque(u for u in worker.users if u.index in chosen)
        self.connecting: set[User] = set()

    def begin(self, user: User) -> None:
        if not user.token:
            self.skip(user, "no resume token (log in with --proto 2)")
        elif user.conn is not None:
            user.conn.transport.abortConnection()
        else:
            self.reconnect(user)

    def reconnect(self, user: User) -> None:
        self.connecting.add(user)
        host, port = self.worker.resume_target_of(user)
        self.worker.reactor.connectTCP(host, port, _UserFactory(self.worker, user),
                                       timeout=max(1, round(self.timeout_ns / 1e9)))

    def settle(self, user: User, ok: bool, error: str = "") -> None:
        self.connecting.discard(user)
        super().settle(user, ok, error)

    def on_lost(self, user: User, why: str) -> None:
        """The old connection is gone: go elsewhere; a new one lost is a failure."""
        if user not in self.pending:
            super().on_lost(user, why)
        elif user in self.connecting:
            self.settle(user, False, f"connection lost: {why}")
        else:
            self.reconnect(user)

    def on_connected(self, conn: BenchConn) -> None:
        user = conn.user
        conn.send(encode({"msgid": MsgId.LOGIN, "id": user.uid, "token": user.token, "proto": 2}))

    def on_connect_failed(self, user: User, why: str) -> None:
        self.settle(user, False, f"connect: {why}")

    def on_frame(self, conn: BenchConn, frame: dict[str, Any]) -> None:
        if conn.user in self.pending and frame.get("msgid") == MsgId.LOGIN_ACK:
            logged_in(self, conn.user, frame)
        elif conn.user in self.pending and frame.get("msgid") == ERROR:
            self.settle(conn.user, False, f"ERROR_MSG {frame}")
        else:
            super().on_frame(conn, frame)

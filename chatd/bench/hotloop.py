"""The message path without sockets: frames fed to a node's protocol, for instruction counts.

Timed runs on a shared machine scatter by 2-3x; instructions counted by callgrind do not.
This builds a real node (`build_node`: handlers, router, history, metrics; SQLite in a
temporary directory, the local bus), logs sessions in through the protocol on
`StringTransport`s, then feeds N chat frames, one `dataReceived` each, as chatload writes
them. `--relay PATH` does the same for the bare relay (`shared/bench/twisted_relay.py`), whose
`dataReceived` frames lines for its `lineReceived`. `--callgrind` runs this loop under
`valgrind --tool=callgrind` with N frames and with none, and prints the difference per
message; `--profile FILE` writes a cProfile of the loop. See docs/performance.md.

    python -m chatd.bench.hotloop --proto 1 -n 20000 --callgrind
    python -m chatd.bench.hotloop --proto 2 -n 20000 --callgrind        # with cid, SEND_ACK
    python -m chatd.bench.hotloop --proto 2 --ack-each -n 20000 --callgrind  # a RECV_ACK each
    python -m chatd.bench.hotloop --group 10 -n 5000 --callgrind        # 9 copies each
    python -m chatd.bench.hotloop --relay shared/bench/twisted_relay.py -n 20000 --callgrind
"""

import argparse
import cProfile
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import ujson
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport

from chatd.messages import MsgId
from chatd.metrics import LOCAL, Stats
from chatd.protocol import BURST
from chatd.requests import MAX_ACK_MIDS

CHUNK = 1000  # frames between two turns of the reactor (history writes, timers)
PAD = "x" * 40


class _Transport(StringTransport):
    """A StringTransport that takes the socket options both servers set."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Nothing to set without a socket."""

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """Nothing to set without a socket."""

    def send_now(self, data: bytes) -> None:
        """What a TCP transport sends directly (chatd/sendnow.py): offering it, this one has
        a session gather its frames of a turn as on a real connection."""
        self.write(data)


def _connect(factory: Any) -> tuple[Any, _Transport]:
    protocol = factory.buildProtocol(None)
    transport = _Transport()
    protocol.makeConnection(transport)
    return protocol, transport


def _line(frame: dict[str, Any]) -> bytes:
    return ujson.dumps(frame).encode() + b"\n"


def chat_frames(n: int, sender: int, to: int, proto: int) -> list[bytes]:
    """One-to-one frames as chatload writes them (and a cid each for proto 2)."""
    frames = []
    for seq in range(n):
        frame = {"msgid": MsgId.ONE_CHAT, "id": sender, "from": f"u{sender}", "name": f"u{sender}",
                 "to": to, "toid": to, "msg": f"B|c|0|1|{seq}|{time.time_ns()}|{PAD}",
                 "time": "bench"}
        if proto == 2:
            frame["cid"] = f"c{seq}"
        frames.append(_line(frame))
    return frames


def group_frames(n: int, sender: int, group_id: int, proto: int) -> list[bytes]:
    """Group frames as chatload writes them (and a cid each for proto 2)."""
    frames = []
    for seq in range(n):
        frame = {"msgid": MsgId.GROUP_CHAT, "id": sender, "name": f"u{sender}", "groupid": group_id,
                 "group": group_id, "msg": f"B|g|0|{seq}|{time.time_ns()}|{PAD}",
                 "time": "bench"}
        if proto == 2:
            frame["cid"] = f"c{seq}"
        frames.append(_line(frame))
    return frames


def _replies(transport: _Transport) -> list[dict[str, Any]]:
    frames = [ujson.loads(line) for line in transport.value().split(b"\n") if line]
    transport.clear()
    return frames


async def _answer(reactor: Any, session: Any, transport: _Transport, frame: dict[str, Any],
                  msgid: int) -> dict[str, Any]:
    """Send one request and wait for its reply (the store answers on its threads)."""
    session.dataReceived(_line(frame))
    for _ in range(200):
        for reply in _replies(transport):
            if reply.get("msgid") == msgid:
                if reply.get("errno"):
                    raise SystemExit(f"hotloop: {frame['msgid']} refused: {reply}")
                return reply
        await deferLater(reactor, 0.05, lambda: None)
    raise SystemExit(f"hotloop: no reply to {frame}: {transport.value()!r}")


async def _chatd_users(reactor: Any, factory: Any, count: int, proto: int
                       ) -> list[tuple[Any, _Transport, int]]:
    users = []
    for i in range(count):
        session, transport = _connect(factory)
        reg = await _answer(reactor, session, transport,
                            {"msgid": MsgId.REG, "name": f"hot{i}", "password": "pw"},
                            MsgId.REG_ACK)
        login = {"msgid": MsgId.LOGIN, "id": reg["id"], "password": "pw"}
        if proto == 2:
            login["proto"] = 2
        await _answer(reactor, session, transport, login, MsgId.LOGIN_ACK)
        users.append((session, transport, reg["id"]))
    return users


async def _chatd_group(reactor: Any, users: list[tuple[Any, _Transport, int]]) -> int:
    owner, transport, owner_id = users[0]
    created = await _answer(reactor, owner, transport,
                            {"msgid": MsgId.CREATE_GROUP, "id": owner_id, "groupname": "hot"},
                            MsgId.CREATE_GROUP_ACK)
    group_id: int = created["groupid"]
    for session, member_transport, user_id in users[1:]:
        await _answer(reactor, session, member_transport,
                      {"msgid": MsgId.ADD_GROUP, "id": user_id, "groupid": group_id},
                      MsgId.ADD_GROUP_ACK)
    # one message first, so that the node has the members cached, as it would under load
    owner.dataReceived(group_frames(1, owner_id, group_id, 1)[0])
    member, member_transport, _ = users[1]
    await _answer(reactor, member, member_transport, {"msgid": MsgId.HEARTBEAT},
                  MsgId.GROUP_CHAT)
    return group_id


async def _run_chatd(reactor: Any, args: argparse.Namespace) -> None:
    from chatd.tap import Options, build_node

    with tempfile.TemporaryDirectory() as tmp:
        options = Options()
        # every session registers from the same (absent) address: lift the per-address limit
        options.parseOptions(["--db", f"sqlite:{tmp}/hot.sqlite3", "--password-cost", "1",
                              "--max-registrations", "100000",
                              "--history-days", str(args.history_days)])
        node = build_node(options, reactor)
        node.startService()
        try:
            users = await _chatd_users(reactor, node.factory, max(2, args.group), args.proto)
            sender, _, sender_id = users[0]
            if args.group:
                group_id = await _chatd_group(reactor, users)
                frames = group_frames(args.n, sender_id, group_id, args.proto)
            else:
                frames = chat_frames(args.n, sender_id, users[1][2], args.proto)
            transports = [t for _, t, _ in users]
            for transport in transports:
                transport.clear()

            def settle() -> None:
                """Proto-2 recipients acknowledge what they got (SEND_ACKs go out); the mids are
                read from their inboxes, not parsed from their transports (no tool cost). The
                loop sends faster than a client may (protocol.RATE): refill the buckets (the
                sender's, and the recipients' for --ack-each), as the time a real client takes
                would."""
                for session, transport, _ in users:
                    session._tokens = BURST
                    transport.clear()
                    mids = list(session.inbox.unacked)
                    for start in range(0, len(mids), MAX_ACK_MIDS):  # as many as one ack may carry
                        session.dataReceived(_line({"msgid": MsgId.RECV_ACK,
                                                    "mids": mids[start:start + MAX_ACK_MIDS]}))

            def turn() -> Deferred[None]:
                """Let the reactor run timers and the store's results (history writes)."""
                return deferLater(reactor, 0, lambda: None)

            copies = node.stats.routes[LOCAL]
            fed = frames[:args.feed]
            feed = _acking(sender.dataReceived, users[1:]) if args.ack_each else sender.dataReceived
            await _loop(feed, fed, settle, turn, args)
            _check(node.stats, node.stats.routes[LOCAL] - copies, len(fed) * (len(users) - 1))
            await node.history.flush()
        finally:
            await node.stopService()  # a refused set-up must not leave the pool running


def _acking(feed: Callable[[bytes], None], receivers: list[tuple[Any, _Transport, int]]
            ) -> Callable[[bytes], None]:
    """Feed a frame, then have each receiver acknowledge what it got with one RECV_ACK per
    message, as chatd-bench writes it after a read that held one message: the path real
    clients take, where one batched ack per chunk would share its cost out."""
    sessions = [session for session, _, _ in receivers]

    def feed_and_ack(frame: bytes) -> None:
        feed(frame)
        for session in sessions:
            for mid in [*session.inbox.unacked]:
                session.dataReceived(b'{"msgid":%d,"mids":[%d]}\n' % (MsgId.RECV_ACK, mid))
    return feed_and_ack


def _check(stats: Stats, copies: int, expected: int) -> None:
    """A count is only worth something if every message went through and nothing the loop
    sent was refused (a refused acknowledgement leaves its copies to offline storage, another
    path than the one measured)."""
    print(f"{copies} copies delivered", file=sys.stderr)
    refused = {errno: n for errno, n in stats.errors.items() if n}
    if copies != expected or refused:
        raise SystemExit(f"hotloop: {copies} copies delivered, not {expected}, or frames "
                         f"refused; errors sent (errno: count): {refused}")


async def _loop(feed: Callable[[bytes], None], frames: list[bytes], settle: Callable[[], None],
                turn: Callable[[], Any], args: argparse.Namespace) -> None:
    """Feed the frames a CHUNK at a time, then `settle` (acknowledge, clear the transports)
    and `turn` the reactor; the time printed and the profile leave out the turns."""
    profile = cProfile.Profile() if args.profile else None
    spent = 0.0
    for start in range(0, len(frames), CHUNK):
        chunk = frames[start:start + CHUNK]
        began = time.perf_counter()
        if profile is not None:
            profile.enable()
        for frame in chunk:
            feed(frame)
        settle()
        if profile is not None:
            profile.disable()
        spent += time.perf_counter() - began
        await turn()
    if profile is not None:
        profile.dump_stats(args.profile)
    if frames:
        print(f"{len(frames)} frames, {spent / len(frames) * 1e6:.2f} µs each", file=sys.stderr)


def _run_relay(args: argparse.Namespace) -> None:
    """The relay on StringTransports: its module-level maps are the whole server."""
    spec = importlib.util.spec_from_file_location("twisted_relay", args.relay)
    relay = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(relay)  # type: ignore[union-attr]
    factory = relay.Factory()
    members = max(2, args.group)
    users = [_connect(factory) for _ in range(members)]
    for i, (protocol, _) in enumerate(users):
        protocol.dataReceived(_line({"msgid": MsgId.LOGIN, "id": i + 1, "password": "pw"}))
    if args.group:
        users[0][0].dataReceived(_line({"msgid": MsgId.CREATE_GROUP, "id": 1, "groupname": "hot"}))
        for i, (protocol, _) in enumerate(users[1:], 2):
            protocol.dataReceived(_line({"msgid": MsgId.ADD_GROUP, "id": i, "groupid": 1}))
        frames = group_frames(args.n, 1, 1, 1)
    else:
        frames = chat_frames(args.n, 1, 2, 1)

    def settle() -> None:
        for _, transport in users:
            transport.clear()

    async def turn() -> None:
        """No reactor: nothing to wait for."""

    Deferred.fromCoroutine(_loop(users[0][0].dataReceived, frames[:args.feed], settle, turn,
                                 args))


def _instructions(out: str) -> int:
    with open(out) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit(f"hotloop: no totals in {out}")


def callgrind(argv: list[str], n: int) -> float:
    """Instructions per message: a run feeding `n` frames minus a run building them and
    feeding none."""
    command = [sys.executable, "-m", "chatd.bench.hotloop", *argv]
    # once without valgrind, so that both counted runs find every module compiled
    subprocess.run([*command, "--feed", "0"], check=True, stderr=subprocess.DEVNULL)
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for feed in (n, 0):
            out = os.path.join(tmp, f"callgrind.{feed}")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            *command, "--feed", str(feed)], check=True,
                           stderr=subprocess.DEVNULL)
            counts.append(_instructions(out))
    return (counts[0] - counts[1]) / n


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chatd.bench.hotloop",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=20000, help="frames to feed (default 20000)")
    parser.add_argument("--proto", type=int, choices=(1, 2), default=1,
                        help="dialect of the sessions; 2 sends a cid with each message and "
                             "its recipients acknowledge (default 1)")
    parser.add_argument("--ack-each", action="store_true",
                        help="proto 2: each recipient acknowledges every message with its own "
                             "RECV_ACK as it arrives, as clients do (default: the recipients "
                             f"acknowledge a chunk of {CHUNK} messages at a time)")
    parser.add_argument("--group", type=int, default=0, metavar="MEMBERS",
                        help="group messages to a group of MEMBERS (sender included) instead "
                             "of one-to-one (default 0: one-to-one)")
    parser.add_argument("--history-days", type=int, default=90,
                        help="the node's --history-days; 0 turns history off (default 90)")
    parser.add_argument("--relay", metavar="PATH",
                        help="run the bare relay (twisted_relay.py at PATH) instead of chatd")
    parser.add_argument("--feed", type=int, metavar="K",
                        help="build the -n frames but feed only the first K (--callgrind's "
                             "baseline feeds none; default: all)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the loop")
    parser.add_argument("--callgrind", action="store_true",
                        help="print instructions per message, counted by valgrind")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.callgrind:
        rest = [a for a in argv if a != "--callgrind"]
        print(f"{callgrind(rest, args.n):,.0f} instructions per message")
        return 0
    if args.relay:
        _run_relay(args)
        return 0
    from twisted.internet import reactor
    from twisted.internet.task import react

    react(lambda _: Deferred.fromCoroutine(_run_chatd(reactor, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

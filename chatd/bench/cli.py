"""`chatd-bench`: options, the run, the table on stdout and the JSON file."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from typing import Any

from chatd.bench.logs import log_problems_to_stderr
from chatd.bench.plan import new_run_id
from chatd.bench.run import ORDER, Bench
from chatd.bench.stats import render_table

HARD_STOP_GRACE = 30.0
"""Seconds past --max-time after which the parent gives up on its workers and exits."""

DESCRIPTION = """\
Load generator for chatd (docs/bench.md). Drives one node or a cluster with N users through
the phases: reg (register), login, chat (one-to-one pairs, closed loop: a sender sends its
next message when its partner has the last one), group (fan-out in turns among one group's
members) and idle (connections held logged in). The load is spread over several worker
processes. Progress goes to stderr once a second; the table goes to stdout.
"""

EPILOG = """\
exit status: 0 when every phase ran with no failure, loss or duplicate; 1 when some did or
--max-time cut the run short; 2 on a bad option or a worker that died.
"""


def default_processes() -> int:
    """One CPU is left to the server when it runs on the same machine."""
    return max(1, (os.cpu_count() or 2) - 1)


def parse_target(text: str) -> tuple[str, int]:
    """HOST:PORT, or a bare PORT on 127.0.0.1: the tool never picks a host of its own other
    than loopback."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"bad target {text!r}: expected HOST:PORT")
    return host, int(port)


def phase_list(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in phases if p not in ORDER]
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"phases are a comma list of {','.join(ORDER)}")
    return phases


def target(text: str) -> str:
    try:
        host, port = parse_target(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return f"{host}:{port}"


def bounded(kind: type, least: float) -> Any:
    """An argparse type: a number of `kind` no smaller than `least`."""
    def check(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}: {text}")
        return value
    return check


def positive(kind: type) -> Any:
    return bounded(kind, 1 if kind is int else 1e-3)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatd-bench", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--target", action="append", type=target, metavar="HOST:PORT",
      help="a node (or nginx) to connect to; repeat for several: users go round-robin over "
           "them, so with two targets half the chat pairs cross nodes (default "
           "127.0.0.1:6000; a bare PORT means 127.0.0.1:PORT)")
    a("-n", "--users", type=positive(int), default=2000, help="users (connections) (2000)")
    a("--phases", type=phase_list, default=["reg", "login", "chat", "group"],
      help="comma list of reg,login,chat,group,history,idle,resume (reg,login,chat,group; "
           "--history adds history); chat, group, history, idle and resume imply login, "
           "and login implies reg unless --idfile has every id; resume needs --proto 2 and "
           "two targets or more")
    a("--resume-kill", type=positive(int), metavar="PID",
      help="in the resume phase, SIGKILL this process (the node of the first target) and "
           "wait (up to 10 s) until its last thread has exited, closing its sockets, before "
           "its users come back through the other targets; without it they drop their "
           "connections themselves")
    a("-m", "--messages", type=positive(int), default=300,
      help="messages per pair in chat (300)")
    a("--pairs", type=bounded(int, 0), help="chat pairs (users/2)")
    a("--group-size", type=positive(int), default=50,
      help="members of the group, creator included (50)")
    a("--group-messages", type=positive(int), default=400,
      help="messages each member sends in group, one at a time (400, chatload's --gm)")
    a("--devices", type=positive(int), default=1, metavar="N",
      help="devices each user logs in (proto 2, device names d0 ... dN-1); the loops run on "
           "the first, and every other one must get every message to the user and a copy "
           "of every message it sent: rows chat.dev and group.dev count them (1)")
    a("--history", action="store_true",
      help="after chat and group, every user pages back through its conversations with "
           "HISTORY and checks that every message sent is stored: the history row counts "
           "the messages found and lost and times the requests")
    a("--idle", type=bounded(int, 0), metavar="N",
      help="connections the idle phase holds (default: every logged-in user); the others "
           "are closed first")
    a("--idle-seconds", type=positive(float), default=10.0,
      help="how long the idle phase holds them (10)")
    a("--processes", type=positive(int), default=default_processes(),
      help="worker processes (CPU count minus one, at least 1: %(default)s here)")
    a("--password", default="benchpw", help="every user's password (benchpw)")
    a("--prefix", default="b", help="user name prefix (b)")
    a("--run-id", default=None,
      help="part of every user name, so that each run registers new users (default: six "
           "random letters); '' for names <prefix><index> that stay the same across runs, "
           "with --idfile")
    a("--idfile", metavar="FILE",
      help="user ids, one per line: read at start (a name that is already taken then still "
           "logs in), written after reg; the format of chatload's --idfile")
    a("--proto", type=int, choices=(1, 2), default=1,
      help="1: the original dialect (what the performance targets use); 2: cids, SEND_ACK "
           "and RECV_ACK (1)")
    a("--ack-delay", type=bounded(float, 0.0), default=0.0, metavar="MS",
      help="proto 2: gather the mids read within MS milliseconds into one RECV_ACK, as the "
           "web client does with 50; 0 acknowledges each read at once (0)")
    a("--ws", action="store_true",
      help="connect over WebSocket: the targets are the nodes' --web endpoints (path /ws), "
           "one frame per text message")
    a("--window", type=positive(int), default=200,
      help="connects, registrations or logins in flight, over all workers (200)")
    a("--timeout", type=positive(float), default=5.0,
      help="seconds before a request or message counts as lost and the loop goes on (5)")
    a("--max-time", type=positive(float), default=300.0,
      help="bound on the whole run in seconds; later phases are cut short or skipped (300)")
    a("--pid", type=positive(int), action="append", metavar="PID",
      help="a server process whose RSS (/proc/PID/status) is sampled before the run, after "
           "login and after idle, for the KiB per idle connection; repeatable (summed)")
    a("--attachments", action="store_true",
      help="while the phases run, --media-users users upload files of --media-size MiB over "
           "--media-web, send each in a message to another, who downloads it; the "
           "attachments line reports upload and download MB/s")
    a("--media-web", default="http://127.0.0.1:8080", metavar="URL",
      help="the web listener (or nginx) uploads go to (http://127.0.0.1:8080)")
    a("--media-users", type=positive(int), default=20, help="media users (20)")
    a("--media-size", type=positive(int), default=10, help="MiB per file (10)")
    a("--json", metavar="FILE", help="also write the results to FILE as JSON")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with every target resolved once here (`opts.addresses`) rather than by
    thousands of connects, and a name that does not resolve reported as a usage error."""
    p = parser()
    opts = p.parse_args(argv)
    opts.target = opts.target or ["127.0.0.1:6000"]
    opts.addresses = []
    for text in opts.target:
        host, port = parse_target(text)
        try:
            opts.addresses.append((socket.gethostbyname(host), port))
        except OSError as e:
            p.error(f"cannot resolve {host}: {e}")
    if "resume" in opts.phases and (opts.proto != 2 or len(opts.addresses) < 2):
        p.error("the resume phase needs --proto 2 (tokens) and at least two --target")
    if opts.devices > 1 and (opts.proto != 2 or "resume" in opts.phases):
        p.error("--devices needs --proto 2 and does not go with the resume phase")
    if opts.history:
        opts.phases.append("history")
    opts.pairs = opts.users // 2 if opts.pairs is None else opts.pairs
    opts.run_id = new_run_id() if opts.run_id is None else opts.run_id
    return opts


def execute(opts: argparse.Namespace) -> int:
    """Run the benchmark on a fresh reactor; print and write the report."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    log_problems_to_stderr()
    outcome: list[Any] = []

    def begin() -> None:
        running = Deferred.fromCoroutine(with_media(opts, reactor))
        hard_stop = reactor.callLater(opts.max_time + HARD_STOP_GRACE, running.cancel)

        def finished(result: Any) -> None:
            if hard_stop.active():
                hard_stop.cancel()
            outcome.append(result)
            reactor.stop()

        running.addBoth(finished)

    reactor.callWhenRunning(begin)
    reactor.run()
    if not outcome:
        print("chatd-bench: interrupted", file=sys.stderr)
        return 2
    if not isinstance(outcome[0], dict):
        print(f"chatd-bench: run failed: {outcome[0].getErrorMessage()}", file=sys.stderr)
        return 2
    return publish(outcome[0], opts.json)


async def with_media(opts: argparse.Namespace, reactor: Any) -> dict[str, Any]:
    """The run; with --attachments, the media users' rounds beside it (chatd/bench/media.py)."""
    if not opts.attachments:
        return await Bench(opts, reactor).run()
    from chatd.bench.media import MediaProcess
    media = MediaProcess(reactor)
    try:
        await media.start(opts)
        report = await Bench(opts, reactor).run()
        report["attachments"] = await media.stop()
    finally:
        await media.close()
    return report


def publish(report: dict[str, Any], json_path: str | None) -> int:
    print(render_table(report), flush=True)
    if "attachments" in report:
        from chatd.bench.media import render
        print(render(report["attachments"]), flush=True)
    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    clean = all(not (s["fail"] or s["lost"] or s["dup"]) for s in report["phases"].values())
    clean = clean and not report.get("attachments", {}).get("failed")
    return 0 if clean and not report["max_time_reached"] else 1


def main(argv: list[str] | None = None) -> int:
    return execute(parse_args(argv))

"""`chat-client` / `python -m client`: parse the options, pick the console, run until quit."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from prompt_toolkit.patch_stdout import patch_stdout
from twisted.internet import asyncioreactor, task
from twisted.internet.defer import Deferred
from twisted.internet.stdio import StandardIO

from client.connection import connect
from client.consoles import LineConsole, PromptConsole
from client.controller import Controller
from client.session import Session


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chat-client", description="The command-line client of the chatd chat server.")
    parser.add_argument("--host", default="127.0.0.1", help="server host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6000, help="server port (default 6000)")
    parser.add_argument(
        "--script", metavar="FILE", type=argparse.FileType("rb"),
        help="read the input lines from FILE instead of the keyboard (non-interactive mode)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Interactive on a terminal; plain lines with --script or when stdin is not a terminal,
    where the exit status is 1 when a command failed (an `error:` line was shown), else 0.

    prompt_toolkit needs asyncio, so Twisted runs on the asyncio reactor in both modes."""
    args = parse_args(argv)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    if args.script is None and sys.stdin.isatty() and sys.stdout.isatty():
        with patch_stdout():
            task.react(_start, [args, PromptConsole()])
    else:
        task.react(_start, [args, None])


def _start(reactor: Any, args: argparse.Namespace, console: Any) -> Deferred[None]:
    return Deferred.fromCoroutine(_run(reactor, args, console or _line_console(reactor, args)))


async def _run(reactor: Any, args: argparse.Namespace, console: Any) -> None:
    session = Session(console.show, reactor)
    service = connect(session, reactor, args.host, args.port, console.show)
    await Controller(session, console).run()
    await service.stopService()
    await console.close()
    if console.failed:
        raise SystemExit(1)


def _line_console(reactor: Any, args: argparse.Namespace) -> LineConsole:
    """Reads stdin, or the script file opened by the argument parser."""
    console = LineConsole()
    stdin = 0 if args.script is None else args.script.fileno()
    StandardIO(console, stdin=stdin, reactor=reactor)
    return console


if __name__ == "__main__":
    main()

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

from client import display
from client.connection import connect
from client.consoles import LineConsole, PromptConsole
from client.controller import Controller
from client.session import Session
from client.tls import client_tls


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chat-client", description="The command-line client of the chatd chat server.")
    parser.add_argument("--host", default="127.0.0.1", help="server host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6000, help="server port (default 6000)")
    parser.add_argument(
        "--script", metavar="FILE", type=argparse.FileType("rb"),
        help="read the input lines from FILE instead of the keyboard (non-interactive mode)")
    parser.add_argument(
        "--tls", action="store_true",
        help="connect with TLS, verifying the server's certificate and name against the "
             "system's trust store (or --ca)")
    parser.add_argument("--ca", metavar="FILE",
                        help="with --tls: trust the CA certificate (PEM) in FILE instead")
    parser.add_argument(
        "--insecure", action="store_true",
        help="with --tls: encrypt without verifying the certificate (test servers only)")
    args = parser.parse_args(argv)
    if (args.ca or args.insecure) and not args.tls:
        parser.error("--ca and --insecure need --tls")
    return args


def main(argv: list[str] | None = None) -> None:
    """Interactive on a terminal; plain lines with --script or when stdin is not a terminal.

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
    tls = client_tls(args.host, args.ca, args.insecure) if args.tls else None
    if args.insecure:
        console.show([display.info("--insecure: the server's certificate is not verified")])
    service = connect(session, reactor, args.host, args.port, console.show, tls)
    await Controller(session, console).run()
    await service.stopService()
    await console.close()


def _line_console(reactor: Any, args: argparse.Namespace) -> LineConsole:
    """Reads stdin, or the script file opened by the argument parser."""
    console = LineConsole()
    stdin = 0 if args.script is None else args.script.fileno()
    StandardIO(console, stdin=stdin, reactor=reactor)
    return console


if __name__ == "__main__":
    main()

"""`chat-client` / `python -m client`: parse the options, pick the console, run until quit."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
import unicodedata
from typing import Any

from prompt_toolkit.patch_stdout import patch_stdout
from twisted.internet import asyncioreactor, task
from twisted.internet.defer import Deferred
from twisted.internet.stdio import StandardIO

from client import display, state
from client.connection import connect
from client.consoles import LineConsole, PromptConsole
from client.controller import Controller
from client.session import Session
from client.tls import client_tls

MAX_DEVICE = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="chat-client", description="The command-line client of the chatd chat server.")
    parser.add_argument("--host", default="127.0.0.1", help="server host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=6000, help="server port (default 6000)")
    parser.add_argument(
        "--script", metavar="FILE", type=argparse.FileType("rb"),
        help="read the input lines from FILE instead of the keyboard (non-interactive mode)")
    parser.add_argument(
        "--device", type=device_name, default=default_device(),
        help="this device's name, 1-64 characters, by which the server tells your devices "
             "apart (default USER@HOST, here %(default)s)")
    parser.add_argument(
        "--state", metavar="FILE", default=state.default_path(),
        help="where the last message id seen per account and device is kept, to catch up "
             "from there on the next start (default %(default)s)")
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


def default_device() -> str:
    """USER@HOST: the same on every run on this machine, so a restarted client takes over
    its own device rather than taking a second one."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "user"
    try:
        return device_name(f"{who}@{socket.gethostname()}"[:MAX_DEVICE].strip())
    except argparse.ArgumentTypeError:
        return "default"


def device_name(text: str) -> str:
    """A device name as docs/protocol.md allows it: 1-64 characters, no control characters,
    no white space at either end."""
    if not 1 <= len(text) <= MAX_DEVICE or text != text.strip() or any(
            unicodedata.category(ch) == "Cc" for ch in text):
        raise argparse.ArgumentTypeError(
            f"a device name is 1-{MAX_DEVICE} characters, no control characters, "
            f"no white space at either end: {text!r}")
    return text


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
    last_mids = state.LastMids(args.state, f"{args.host}:{args.port}")
    if last_mids.problem:
        console.show([display.info(last_mids.problem)])
    terminal = console if isinstance(console, PromptConsole) else None
    session = Session(console.show, reactor, args.device, last_mids,
                      terminal.show_typing if terminal else None)
    if terminal:
        terminal.watch_typing(session.user_typing)
    tls = client_tls(args.host, args.ca, args.insecure) if args.tls else None
    if args.insecure:
        console.show([display.info("--insecure: the server's certificate is not verified")])
    service = connect(session, reactor, args.host, args.port, console.show, tls)
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

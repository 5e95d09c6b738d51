"""The two faces of the client: a prompt_toolkit terminal, and plain lines for scripts."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from prompt_toolkit import PromptSession
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from client import display
from client.display import ERROR_PREFIX
from client.protocol import Frame

TYPING_SHOWN = 3.0
"""Seconds `NAME is typing…` stays after the last TYPING (they come once a second)."""


class PromptConsole:
    """A terminal: prompts with line editing and history, passwords not echoed.

    Run it inside prompt_toolkit's `patch_stdout()`: lines shown while the user is typing
    then appear above the prompt and leave the half-typed line intact.
    """

    failed = False
    """A person at a terminal has seen the errors; the exit status does not repeat them."""

    def __init__(self) -> None:
        self._commands: PromptSession[str] = PromptSession()
        self._typing: dict[str, float] = {}

    def read_line(self, prompt: str, password: bool = False) -> Deferred[str | None]:
        # A password gets a session of its own, so it never lands in the command history.
        session: PromptSession[str] = PromptSession() if password else self._commands
        return Deferred.fromFuture(asyncio.ensure_future(_prompt(session, prompt, password)))

    def watch_typing(self, typed: Callable[[str], None]) -> None:
        """Call `typed` with the command line each time the user changes it."""
        self._commands.default_buffer.on_text_changed += lambda buffer: typed(buffer.text)

    def show_typing(self, person: Frame) -> None:
        """`NAME is typing…` in the toolbar under the prompt for a few seconds: a line of its
        own each second would push the conversation out of sight."""
        self._typing[display.user(person)] = time.monotonic() + TYPING_SHOWN
        self._redraw_toolbar()
        asyncio.get_event_loop().call_later(TYPING_SHOWN, self._redraw_toolbar)

    def _redraw_toolbar(self) -> None:
        now = time.monotonic()
        self._typing = {who: until for who, until in self._typing.items() if until > now}
        self._commands.bottom_toolbar = (
            " ".join(f"{who} is typing…" for who in self._typing) if self._typing else None)
        self._commands.app.invalidate()

    def show(self, lines: list[str]) -> None:
        for line in lines:
            print(line)

    hint = show

    def close(self) -> Deferred[None]:
        return succeed(None)


async def _prompt(session: PromptSession[str], prompt: str, password: bool) -> str | None:
    try:
        return await session.prompt_async(prompt, is_password=password)
    except (EOFError, KeyboardInterrupt):
        return None


@implementer(IHalfCloseableProtocol)
class LineConsole(Protocol):
    """Lines in from stdin or a script file, lines out on stdout, no prompts and no menu:
    the output is exactly the documented line format."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque()
        self._partial = b""
        self._ended = False
        self._reader: Deferred[str | None] | None = None
        self._closed: Deferred[None] = Deferred()
        self.failed = False
        """An `error:` line was shown: a script's command failed, so the exit status is 1."""

    def dataReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._lines.extend(line.decode("utf-8", "replace").rstrip("\r") for line in lines)
        self._wake()

    def readConnectionLost(self) -> None:
        if self._partial:
            self.dataReceived(b"\n")
        self._ended = True
        self._wake()

    def writeConnectionLost(self) -> None:
        """Nobody reads the output any more; keep going until the input ends."""

    def connectionLost(self, reason: Failure = None) -> None:
        self._ended = True
        self._wake()
        self._closed.callback(None)

    def read_line(self, prompt: str, password: bool = False) -> Deferred[str | None]:
        self._reader = Deferred()
        reader = self._reader
        self._wake()
        return reader

    def _wake(self) -> None:
        if self._reader is None or not (self._lines or self._ended):
            return
        reader, self._reader = self._reader, None
        reader.callback(self._lines.popleft() if self._lines else None)

    def show(self, lines: list[str]) -> None:
        self.failed = self.failed or any(line.startswith(ERROR_PREFIX) for line in lines)
        if lines and self.transport is not None:
            self.transport.write("".join(f"{line}\n" for line in lines).encode("utf-8"))

    def hint(self, lines: list[str]) -> None:
        """Menus are for people at a terminal, not for the line format."""

    def close(self) -> Deferred[None]:
        """Flush the output and close; fires when done."""
        self.transport.loseConnection()
        return self._closed

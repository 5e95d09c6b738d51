"""Photos and files from the terminal: `sendfile:ID:PATH`, `sendgroupfile:GROUPID:PATH` (an
upload slot, the bytes over HTTP with a progress bar, then the chat message naming them) and
`getfile:MID[:PATH]` (saves a received attachment)."""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import cooperate
from twisted.python.failure import Failure
from twisted.web.client import Agent, RedirectAgent, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from chatd.messages import MsgId
from client.display import size_text
from client.protocol import Frame

CHUNK = 64 * 1024
BAR = 20


class FileFailed(Exception):
    """The file could not be sent or saved; the message says why."""


class Progress:
    """A bar shown every tenth of the way: `sendfile [#####.....] 50% of 2.1 MB`."""

    def __init__(self, what: str, total: int, show: Callable[[list[str]], None]) -> None:
        self.what, self.total, self.show = what, total, show
        self.done = 0
        self._shown = -1

    def add(self, count: int) -> None:
        self.done += count
        tenth = self.done * 10 // max(self.total, 1)
        if tenth != self._shown:
            self._shown = tenth
            filled = self.done * BAR // max(self.total, 1)
            self.show([f"{self.what} [{'#' * filled}{'.' * (BAR - filled)}] "
                       f"{self.done * 100 // max(self.total, 1)}% of {size_text(self.total)}"])


@implementer(IBodyProducer)
class FileProducer:
    """A file read in chunks as the connection takes them, counted by a Progress."""

    def __init__(self, path: str, progress: Progress) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed when the body is sent)
        self.length = os.path.getsize(path)
        self._progress = progress
        self._task: Any = None

    def startProducing(self, consumer: Any) -> Deferred[None]:
        def chunks() -> Any:
            while data := self._file.read(CHUNK):
                consumer.write(data)
                self._progress.add(len(data))
                yield None
        self._task = cooperate(chunks())
        done: Deferred[None] = self._task.whenDone()
        return done.addBoth(self._close)

    def _close(self, result: Any) -> Any:
        self._file.close()
        return None if not isinstance(result, Failure) else result

    def pauseProducing(self) -> None:
        self._task.pause()

    def resumeProducing(self) -> None:
        self._task.resume()

    def stopProducing(self) -> None:
        self._task.stop()


class _Body(Protocol):
    """A response body to a file (or to memory when `path` is None)."""

    def __init__(self, path: str | None, progress: Progress | None) -> None:
        self.out: Any = open(path, "wb") if path else None  # noqa: SIM115
        self.data = b""
        self.progress = progress
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.out is not None:
            self.out.write(data)
            if self.progress is not None:
                self.progress.add(len(data))
        else:
            self.data += data

    def connectionLost(self, reason: Failure) -> None:
        if self.out is not None:
            self.out.close()
        if reason.check(ResponseDone):
            self.done.callback(self.data)
        else:
            self.done.errback(reason)


class Files:
    """The file commands of one session; `received` maps the mids of messages shown with an
    attachment to it (what `getfile` can save)."""

    def __init__(self, request: Callable[[Frame], Any], send_chat: Callable[..., None],
                 show: Callable[[list[str]], None]) -> None:
        self._request = request
        self._send_chat = send_chat
        self._show = show
        self.received: dict[int, Frame] = {}

    def seen(self, frame: Frame) -> None:
        attachment = frame.get("attachment")
        if isinstance(attachment, dict) and isinstance(frame.get("mid"), int):
            self.received[frame["mid"]] = attachment

    async def send(self, target: Frame, path: str, text: str) -> None:
        """UPLOAD, PUT with a progress bar, then the chat message with the attachment."""
        if not os.path.isfile(path):
            raise FileFailed(f"no such file: {path}")
        name = os.path.basename(path)
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        reply = await self._request({"msgid": MsgId.UPLOAD, "name": name,
                                     "size": os.path.getsize(path), "mime": mime, **target})
        if reply.get("errno"):
            raise FileFailed(str(reply.get("errmsg")))
        upload = reply["upload"]
        producer = FileProducer(path, Progress(text, os.path.getsize(path), self._show))
        response = await Agent(_reactor()).request(
            b"PUT", upload["url"].encode(), Headers({b"content-type": [mime.encode()]}),
            producer)
        body = _Body(None, None)
        response.deliverBody(body)
        answer = await body.done
        if response.code != 201:
            raise FileFailed(f"HTTP {response.code}: {answer.decode(errors='replace')}")
        self._send_chat(target, upload["id"], text)

    async def get(self, mid: int, path: str | None) -> str:
        """Save the attachment of message `mid`; the path it was saved to."""
        attachment = self.received.get(mid)
        if attachment is None:
            raise FileFailed(f"no attachment seen in message {mid}")
        if not path or os.path.isdir(path):
            path = os.path.join(path or ".", os.path.basename(str(attachment.get("name"))))
        response = await RedirectAgent(Agent(_reactor())).request(
            b"GET", str(attachment["url"]).encode())
        if response.code != 200:
            raise FileFailed(f"HTTP {response.code}")
        total = response.length if response.length is not UNKNOWN_LENGTH else 0
        body = _Body(path, Progress(f"getfile:{mid}", total, self._show) if total else None)
        response.deliverBody(body)
        await body.done
        return path


def _reactor() -> Any:
    """The running reactor, imported late: chat-client installs its own before it runs."""
    from twisted.internet import reactor
    return reactor

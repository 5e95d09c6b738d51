"""Download bodies of the file store: the kernel copies them from the file to the socket
(`os.sendfile`), in pieces the `MediaPacer` allows, so that a download costs the node's core
a system call per piece instead of reading the bytes into Python and writing them again."""

import os
from typing import IO, Any

from twisted.internet import tcp
from twisted.web.http import Request
from twisted.web.static import File, NoRangeStaticProducer, SingleRangeStaticProducer

from chatd.web.pacing import MediaPacer


class MediaFile(File):
    """twisted.web's static file, its headers, ETag and Range answers as they are, whose
    body (the whole file or one range) a `FileSender` sends; several ranges keep
    twisted.web's multipart producer."""

    def __init__(self, path: str, mime: str, pacer: MediaPacer) -> None:
        super().__init__(path, defaultType=mime)
        self.contentTypes = {}  # the stored type, whatever the file's name
        self.pacer = pacer

    def makeProducer(self, request: Request, fileForReading: IO[bytes]) -> Any:
        producer = super().makeProducer(request, fileForReading)
        if isinstance(producer, SingleRangeStaticProducer):
            return FileSender(request, fileForReading, producer.offset, producer.size,
                              self.pacer)
        if isinstance(producer, NoRangeStaticProducer):
            return FileSender(request, fileForReading, 0, self.getsize(), self.pacer)
        return producer


class FileSender:
    """Bytes `offset` to `offset + size` of a file as a request's body: a push producer that
    sends a piece whenever the pacer gives it its turn, with `os.sendfile` on a plain TCP
    socket whose write buffer is empty, otherwise read and written through the request
    (TLS, a wrapped transport, or bytes of the headers still queued before the body)."""

    def __init__(self, request: Request, file: IO[bytes], offset: int, size: int,
                 pacer: MediaPacer) -> None:
        self.request = request
        self.file = file
        self.offset = offset
        self.end = offset + size
        self.pacer = pacer
        self.paused = self.queued = self.done = False

    def start(self) -> None:
        self.request.registerProducer(self, True)
        if self.offset >= self.end:
            self._finish()
            return
        self.request.write(b"")  # the headers, queued ahead of any body byte
        self._queue()

    def send(self, allowance: int) -> int:
        """Up to `allowance` bytes of the body now; the number sent."""
        self.queued = False
        if self.done or self.paused or self.request._disconnected:
            return 0
        start = self.offset
        count = min(allowance, self.end - start)
        sent = self._sendfile(count)
        if sent < count:  # the socket's buffer is full, or no sendfile here
            self._write(count - sent)
        if self.done:
            return self.offset - start
        if self.offset >= self.end:
            self._finish()
        elif not self.paused:
            self._queue()
        return self.offset - start

    def _sendfile(self, count: int) -> int:
        """What the kernel took of `count` bytes; 0 when the body must go through the
        transport's buffer instead."""
        transport = self.request.channel.transport
        if not plain_socket(transport) or _unsent(transport):
            return 0
        try:
            sent = os.sendfile(transport.fileno(), self.file.fileno(), self.offset, count)
        except BlockingIOError:
            return 0
        except OSError:  # the peer has gone: the connection's loss stops this producer
            transport.loseConnection()
            self.done = True
            return 0
        self.offset += sent
        self.request.sentLength += sent
        return sent

    def _write(self, count: int) -> None:
        """`count` bytes through the request: the transport queues them and pauses this
        producer while its buffer is full."""
        if self.done:
            return
        data = os.pread(self.file.fileno(), count, self.offset)
        self.offset += len(data)
        self.request.write(data)
        if len(data) < count:  # the file was cut short under us: the body cannot be whole
            self.request.channel.transport.loseConnection()
            self.done = True

    def _queue(self) -> None:
        if not self.queued:
            self.queued = True
            self.pacer.want(self)

    def _finish(self) -> None:
        self.request.unregisterProducer()
        self.request.finish()
        self._close()

    def _close(self) -> None:
        self.done = True
        self.pacer.drop(self)
        self.file.close()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pacer.drop(self)
        self.queued = False

    def resumeProducing(self) -> None:
        self.paused = False
        if not self.done:
            self._queue()

    def stopProducing(self) -> None:
        self._close()


def plain_socket(transport: Any) -> bool:
    """A TCP (or Unix) socket of the reactor's own, no TLS or other layer over it."""
    return isinstance(transport, tcp.Connection) and not transport.TLS


def _unsent(transport: tcp.Connection) -> int:
    """Bytes the transport holds that the kernel has not taken yet: a sendfile now would
    put the body ahead of them."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

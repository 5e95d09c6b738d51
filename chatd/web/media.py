"""/media on the web listener: PUT of an upload's bytes, streamed to the media store as they
arrive, and GET/HEAD of signed download URLs with ranges, ETag and the headers that keep a
browser from running what it downloads (docs/protocol.md, *Attachments*)."""

import io
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.server import Request as SiteRequest

from chatd.handlers.media import UPLOAD_PREFIX, Media, MediaRefused, Upload, disposition
from chatd.media.images import THUMB_MIME
from chatd.messages import Errno
from chatd.web.pacing import MediaPacer
from chatd.web.sending import MediaFile

log = Logger()

DOWNLOAD_HEADERS = {b"X-Content-Type-Options": b"nosniff",
                    b"Content-Security-Policy": b"sandbox"}


def _args(uri: bytes) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(uri.decode("ascii", "replace")).query))


def _json(request: Request, status: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    data = json.dumps(body).encode()
    request.setHeader(b"content-length", b"%d" % len(data))
    return data


class MediaRequest(SiteRequest):
    """A request of the web listener whose body, for an upload, goes to an `Upload` as it
    arrives instead of into a buffer or a temporary file."""

    upload: Upload | None = None

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        path: bytes = channel._path  # the request line is parsed; requestReceived comes later
        media: Media | None = channel.site.media
        if channel._command != b"PUT" or media is None or not path.startswith(
                UPLOAD_PREFIX.encode()):
            super().gotLength(length)
            return
        self.content = io.BytesIO()
        media_id = urlsplit(path.decode("ascii", "replace")).path[len(UPLOAD_PREFIX):]
        try:
            self.upload = media.begin(media_id, _args(path), length, self._stop)
        except MediaRefused as e:
            self._stop(e)

    def _stop(self, refusal: MediaRefused) -> None:
        """Refuse the upload before its body is in: the answer, and the connection closed."""
        self.channel.refuse(refusal.status, "upload", json.dumps(refusal.body()),
                            content_type=b"application/json")

    def handleContentChunk(self, data: bytes) -> None:
        if self.upload is None:
            super().handleContentChunk(data)
        else:
            self.upload.write(data)
            self.channel.site.pacer.spend(len(data), self.channel.transport)

    def connectionLost(self, reason: Failure) -> None:
        if self.upload is not None:
            self.upload.close()  # half-way: nothing of it stays
        super().connectionLost(reason)


class UploadResource(Resource):
    """/media/upload/ID: the body went to the request's Upload; answer with what it
    became."""

    isLeaf = True

    def render_PUT(self, request: MediaRequest) -> bytes | int:
        upload = request.upload
        if upload is None:
            return _json(request, 404, MediaRefused(404, Errno.BAD_SLOT).body())
        Deferred.fromCoroutine(upload.finish()).addCallbacks(
            lambda description: self._answer(request, 201, description),
            lambda failure: self._failed(request, failure))
        return NOT_DONE_YET

    def _answer(self, request: Request, status: int, body: dict[str, Any]) -> None:
        if not request.finished and not request._disconnected:
            request.write(_json(request, status, body))
            request.finish()

    def _failed(self, request: Request, failure: Failure) -> None:
        if failure.check(MediaRefused):
            self._answer(request, failure.value.status, failure.value.body())
            return
        log.failure("upload failed", failure)
        self._answer(request, 500, {"errno": int(Errno.INTERNAL), "errmsg": "internal error"})


class DownloadResource(Resource):
    """/media/ID and /media/ID/thumb: a signed URL's bytes, from the local store or by a
    redirect to the store's own presigned URL."""

    def __init__(self, media: Media, pacer: MediaPacer) -> None:
        super().__init__()
        self.media = media
        self.pacer = pacer
        self.putChild(b"upload", UploadResource())

    def getChild(self, name: bytes, request: Request) -> Resource:
        return _Download(self.media, self.pacer, name.decode("ascii", "replace"))


class _Download(Resource):
    isLeaf = True

    def __init__(self, media: Media, pacer: MediaPacer, media_id: str) -> None:
        super().__init__()
        self.media = media
        self.pacer = pacer
        self.media_id = media_id

    def render_GET(self, request: Request) -> int:
        rest = request.postpath
        variant = "t" if rest == [b"thumb"] else "f" if rest in ([], [b""]) else ""
        Deferred.fromCoroutine(self._serve(request, variant)).addErrback(
            self._failed, request)
        return NOT_DONE_YET

    render_HEAD = render_GET

    async def _serve(self, request: Request, variant: str) -> None:
        if not variant:
            raise MediaRefused(404, Errno.NO_SUCH_MEDIA)
        row, located = await self.media.download(self.media_id, variant, _args(request.uri))
        if request._disconnected:
            return
        if located.url is not None:
            request.redirect(located.url.encode())
            request.finish()
            return
        for name, value in DOWNLOAD_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"cache-control",
                          b"private, max-age=%d" % self.media.limits.url_lifetime)
        request.setHeader(b"content-disposition", disposition(row).encode())
        if request.setETag(f'"{row.id}-{variant}"'.encode()):
            request.finish()
            return
        mime = row.mime if variant == "f" else THUMB_MIME
        body = MediaFile(located.path, mime, self.pacer).render(request)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _failed(self, failure: Failure, request: Request) -> None:
        if failure.check(MediaRefused):
            body = _json(request, failure.value.status, failure.value.body())
        else:
            log.failure("download failed", failure)
            body = _json(request, 500, {"errno": int(Errno.INTERNAL),
                                        "errmsg": "internal error"})
        if not request.finished and not request._disconnected:
            request.write(body)
            request.finish()

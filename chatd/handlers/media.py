"""The node's attachments (docs/protocol.md, *Attachments*): signed slots and URLs, the
description a message carries, uploads arriving over HTTP, downloads and cleanup.

The web edge (chatd/web/media.py) speaks HTTP and hands the bytes here; the chat handlers
(attachments.py) ask for slots and descriptions. Uploads of any node and downloads from any
node meet in the database (chatd/store/media.py) and the media store (chatd/media)."""

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from chatd.connections import AddressCount
from chatd.media.images import IMAGES, SNIFF_BYTES, THUMB_MIME, BadImage, contradicts, process
from chatd.media.stores import Located, MediaStore, Run, StoreDown
from chatd.messages import ERRMSG, Errno
from chatd.store import Store, StoreUnavailable
from chatd.store.media import COMPLETE, MediaRow
from chatd.tokens import sign, signed

log = Logger()

MiB = 1 << 20
DEFAULT_MAX_UPLOAD = 25 * MiB
DEFAULT_QUOTA = 1024 * MiB
DEFAULT_URL_LIFETIME = 86400
DEFAULT_SLOT_LIFETIME = 300
DEFAULT_UPLOADS_PER_USER = 4
UNNAMED_FOR = 86400  # seconds an upload no message names is kept
CLEAN_SECONDS = 600.0
CLEAN_BATCH = 200
SECRET_RETRY = 5.0
UPLOAD_PREFIX = "/media/upload/"
INLINE = ("audio/", "video/")


@dataclass(frozen=True)
class MediaLimits:
    """The --max-upload, --media-* and slot limits of a node; `base_url` is where clients
    reach its web listener ("" without one: no uploads)."""
    max_upload: int = DEFAULT_MAX_UPLOAD
    quota: int = DEFAULT_QUOTA
    url_lifetime: int = DEFAULT_URL_LIFETIME
    slot_lifetime: int = DEFAULT_SLOT_LIFETIME
    uploads_per_user: int = DEFAULT_UPLOADS_PER_USER
    history_days: int = 90
    base_url: str = ""


class MediaRefused(Exception):
    """An HTTP request about media refused: `status` and the errno of its JSON body."""

    def __init__(self, status: int, errno: Errno) -> None:
        super().__init__(status, errno)
        self.status = status
        self.errno = errno

    def body(self) -> dict[str, Any]:
        return {"errno": int(self.errno), "errmsg": ERRMSG[self.errno]}


def disposition(row: MediaRow) -> str:
    """Inline only for what browsers show safely (the images we check, audio, video)."""
    kind = "inline" if row.mime in IMAGES or row.mime.startswith(INLINE) else "attachment"
    return f"{kind}; filename*=UTF-8''{quote(row.name, safe='')}"


class Media:
    """Slots, descriptions, uploads, downloads and cleanup of one node."""

    def __init__(self, store: Store, files: MediaStore, run: Run, clock: IReactorTime,
                 limits: MediaLimits, pool: ThreadPool | None = None) -> None:
        self.pool = pool  # the threads `run` uses, started and stopped here
        self.store = store
        self.files = files
        self.run = run
        self.clock = clock
        self.limits = limits
        self.uploading = AddressCount(limits.uploads_per_user)
        self._secret: bytes | None = None
        self._loading: Deferred[None] | None = None
        self._cleaner = LoopingCall(self.clean)
        self._cleaner.clock = clock

    def start(self) -> None:
        if self.pool is not None:
            self.pool.start()
        self._loading = Deferred.fromCoroutine(self._load_secret())
        self._loading.addErrback(lambda f: f.trap(CancelledError))
        self._cleaner.start(CLEAN_SECONDS, now=False)

    def stop(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
        if self._cleaner.running:
            self._cleaner.stop()
        if self.pool is not None:
            self.pool.stop()

    async def _load_secret(self) -> None:
        """The signing secret every node shares, read once the database answers."""
        while self._secret is None:
            try:
                self._secret = await self.store.secret("media")
            except StoreUnavailable:
                await deferLater(self.clock, SECRET_RETRY)

    async def secret(self) -> bytes:
        if self._secret is None:
            self._secret = await self.store.secret("media")
        return self._secret

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    # slots

    async def slot(self, owner: int, name: str, size: int, mime: str) -> dict[str, Any] | None:
        """A new upload slot as UPLOAD_ACK's `upload`; None when the quota is full."""
        secret = await self.secret()
        row = MediaRow(secrets.token_urlsafe(16), owner, name, mime, size,
                       created=self._now_ms())
        if not await self.store.create_slot(row, self.limits.quota):
            return None
        expires = int(self.clock.seconds()) + self.limits.slot_lifetime
        sig = sign(secret, f"upload|{row.id}|{owner}|{expires}".encode())
        put = f"{UPLOAD_PREFIX}{row.id}?u={owner}&e={expires}&s={sig}"
        return {"id": row.id, "put": put, "url": self.limits.base_url + put,
                "expires": expires * 1000}

    def begin(self, media_id: str, args: dict[str, str], length: int | None,
              refused: Callable[[MediaRefused], None]) -> "Upload":
        """An upload's body is about to arrive: check its slot's signature, expiry and
        length, and the user's uploads at once. MediaRefused when it may not."""
        if self._secret is None:
            raise MediaRefused(503, Errno.UNAVAILABLE)
        try:
            owner, expires = int(args["u"]), int(args["e"])
            good = signed(self._secret, f"upload|{media_id}|{owner}|{expires}".encode(),
                          args["s"])
        except (KeyError, ValueError):
            good = False
        if not good or expires < self.clock.seconds():
            raise MediaRefused(403, Errno.BAD_SLOT)
        if length is None:
            raise MediaRefused(411, Errno.MEDIA_MISMATCH)
        if length > self.limits.max_upload:
            raise MediaRefused(413, Errno.MEDIA_MISMATCH)
        user = str(owner)
        if not self.uploading.admit(user):
            self.uploading.release(user)
            raise MediaRefused(429, Errno.TOO_MANY_UPLOADS)
        return Upload(self, media_id, owner, length, refused)

    # descriptions and URLs

    def url(self, media_id: str, variant: str, expires: int) -> str:
        assert self._secret is not None
        sig = sign(self._secret, f"media|{media_id}|{variant}|{expires}".encode())
        tail = "/thumb" if variant == "t" else ""
        return f"{self.limits.base_url}/media/{media_id}{tail}?e={expires}&s={sig}"

    async def avatar_url(self, media_id: str) -> str:
        """A fresh signed URL of an avatar's thumbnail."""
        await self.secret()
        return self.url(media_id, "t", int(self.clock.seconds()) + self.limits.url_lifetime)

    def refresh(self, description: dict[str, Any]) -> None:
        """Fresh signed URLs in a description (they expire --media-url-lifetime from now)."""
        expires = int(self.clock.seconds()) + self.limits.url_lifetime
        description["url"] = self.url(description["id"], "f", expires)
        if "thumb" in description:
            description["thumb"] = self.url(description["id"], "t", expires)

    def describe(self, row: MediaRow) -> dict[str, Any]:
        """What a message carries of an upload."""
        description: dict[str, Any] = {"id": row.id, "name": row.name, "size": row.size,
                                       "mime": row.mime}
        if row.width:
            description.update(width=row.width, height=row.height)
        if row.thumb:
            description["thumb"] = ""
        self.refresh(description)
        return description

    async def attach(self, media_id: str, owner: int) -> dict[str, Any]:
        """The description of `owner`'s complete upload, now kept as long as the message
        naming it; MediaRefused(404/409) with 194 or 195 otherwise."""
        await self.secret()
        row = await self.store.keep_media(media_id, owner, self._now_ms())
        if row is None or row.owner != owner:
            raise MediaRefused(404, Errno.NO_SUCH_MEDIA)
        if row.state != COMPLETE:
            raise MediaRefused(409, Errno.MEDIA_INCOMPLETE)
        return self.describe(row)

    # downloads

    async def download(self, media_id: str, variant: str, args: dict[str, str]
                       ) -> tuple[MediaRow, Located]:
        """Check a download URL; the upload and where its bytes are."""
        secret = await self.secret()
        try:
            expires = int(args["e"])
            good = signed(secret, f"media|{media_id}|{variant}|{expires}".encode(), args["s"])
        except (KeyError, ValueError):
            good = False
        if not good:
            raise MediaRefused(403, Errno.BAD_SLOT)
        if expires < self.clock.seconds():
            raise MediaRefused(410, Errno.BAD_SLOT)
        row = await self.store.media(media_id)
        if row is None or row.state != COMPLETE or (variant == "t" and not row.thumb):
            raise MediaRefused(404, Errno.NO_SUCH_MEDIA)
        key, mime = (media_id, row.mime) if variant == "f" else (media_id + ".thumb",
                                                                 THUMB_MIME)
        located = await self.files.locate(key, mime, disposition(row),
                                          max(1, expires - int(self.clock.seconds())))
        if located is None:
            raise MediaRefused(404, Errno.NO_SUCH_MEDIA)
        return row, located

    # cleanup

    def clean(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._clean()).addErrback(
            lambda f: log.failure("media cleanup failed", f))

    async def _clean(self) -> None:
        """Delete, in batches, uploads never named by a message after a day, and attachments
        whose last message left history."""
        now = self._now_ms()
        kept_before = now - self.limits.history_days * 86400_000 if self.limits.history_days \
            else now
        while True:
            stale = await self.store.stale_media(now - UNNAMED_FOR * 1000, kept_before,
                                                 CLEAN_BATCH)
            if stale:
                await self.delete([media_id for media_id, _ in stale])
            if len(stale) < CLEAN_BATCH:
                return

    async def delete(self, media_ids: list[str]) -> None:
        """Delete uploads' bytes, then forget them (a recalled message's attachment, too);
        when the store fails the rows stay, and the next cleanup tries again."""
        await self.files.delete([k for m in media_ids for k in (m, m + ".thumb")])
        await self.store.drop_media(media_ids)


class Upload:
    """One upload's body as it arrives: spooled to a file, checked against its slot (first
    bytes, length), then processed and put in the store. `refused` is told when the upload
    must stop before its body is in (a used slot, a contradicting type)."""

    def __init__(self, media: Media, media_id: str, owner: int, length: int,
                 refused: Callable[[MediaRefused], None]) -> None:
        self.media = media
        self.media_id = media_id
        self.owner = owner
        self.length = length
        self._refused = refused
        self.row: MediaRow | None = None
        self.failure: MediaRefused | None = None
        self.received = 0
        self._head = b""
        self._path = os.path.join(media.files.spool, f"{media_id}.{secrets.token_hex(4)}")
        self._file: Any = open(self._path, "wb")  # noqa: SIM115 (closed in finish/abort)
        self._done = False
        self.claimed = Deferred.fromCoroutine(self._claim())

    async def _claim(self) -> None:
        try:
            row = await self.media.store.claim_slot(self.media_id)
        except StoreUnavailable:
            self._fail(MediaRefused(503, Errno.UNAVAILABLE))
            return
        if row is None or row.owner != self.owner:
            self._fail(MediaRefused(409, Errno.BAD_SLOT))
            return
        self.row = row
        if row.size != self.length:
            self._fail(MediaRefused(413, Errno.MEDIA_MISMATCH))
        else:
            self._check_head()

    def write(self, data: bytes) -> None:
        if self.failure is not None:
            return
        self._file.write(data)
        self.received += len(data)
        if len(self._head) < SNIFF_BYTES:
            self._head += data[:SNIFF_BYTES - len(self._head)]
            self._check_head()

    def _check_head(self) -> None:
        row = self.row
        if row is None or self.failure is not None:
            return
        if len(self._head) >= min(SNIFF_BYTES, self.length) and contradicts(row.mime,
                                                                              self._head):
            self._fail(MediaRefused(415, Errno.MEDIA_MISMATCH))

    def _fail(self, refusal: MediaRefused) -> None:
        if self.failure is None:
            self.failure = refusal
            self._refused(refusal)

    async def finish(self) -> dict[str, Any]:
        """All bytes are in: the description, once processed and stored."""
        await self.claimed
        self._file.close()
        try:
            if self.failure is not None:
                raise self.failure
            row = self.row
            assert row is not None
            processed = await self._processed(row)
            await self._store(row, processed)
            width, height = processed.width, processed.height
            if not await self.media.store.complete_media(row.id, processed.size, width,
                                                         height, processed.thumb is not None):
                raise MediaRefused(404, Errno.NO_SUCH_MEDIA)
            self._done = True
            done = MediaRow(row.id, row.owner, row.name, row.mime, processed.size, COMPLETE,
                            row.created, row.kept, width, height, processed.thumb is not None)
            return self.media.describe(done)
        finally:
            self.close()

    async def _processed(self, row: MediaRow) -> Any:
        try:
            return await self.media.run(process, self._path, row.mime)
        except BadImage:
            raise MediaRefused(422, Errno.BAD_IMAGE) from None

    async def _store(self, row: MediaRow, processed: Any) -> None:
        files = self.media.files
        try:
            if processed.thumb is not None:
                await files.put(row.id + ".thumb", processed.thumb, THUMB_MIME)
            await files.put(row.id, processed.path, row.mime)
        except StoreDown as e:
            log.warn("media store: upload {id} not stored: {error}", id=row.id, error=e)
            try:  # a thumbnail stored before the original failed
                await files.delete([row.id + ".thumb"])
            except StoreDown:
                pass  # the cleanup deletes it with its row
            raise MediaRefused(503, Errno.UNAVAILABLE) from None

    def close(self) -> None:
        """The body ended (in full or not): release the user's upload and, unless the
        upload is stored, remove what was spooled and the slot (it is used up)."""
        if self._file is None:
            return
        self._file.close()
        self._file = None
        self.media.uploading.release(str(self.owner))
        if not self._done:
            for path in (self._path, self._path + ".clean", self._path + ".thumb"):
                _remove(path)
            self.claimed.addCallback(lambda _: self._drop())

    def _drop(self) -> Deferred[None] | None:
        if self.row is None:
            return None
        return Deferred.fromCoroutine(self.media.store.drop_media([self.row.id])).addErrback(
            lambda f: log.failure("dropping upload {id}", f, id=self.media_id))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


"""Media stores: `file:DIR` (the embedded default) and `s3://BUCKET?endpoint=URL&region=R`.

An upload is written, as it arrives, to a file in the store's `spool` directory (on the
store's own file system for `file:`, so that `put` is a rename); `put` then makes it the
stored object. A download is a local file to serve, or a presigned URL of the store to
redirect to. Both stores pass tests/test_media_stores.py."""

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred

# Runs a blocking callable on the media thread pool.
Run = Callable[..., Deferred[Any]]


class StoreDown(Exception):
    """The store could not be reached or refused the operation; nothing was kept."""


@dataclass(frozen=True)
class Located:
    """Where a download's bytes are: a local `path` to serve, or a `url` to redirect to."""
    path: str | None = None
    url: str | None = None


class MediaStore(Protocol):
    """What the node needs of a place for bytes."""

    spool: str  # a local directory for uploads while their bytes arrive

    async def put(self, key: str, path: str, mime: str) -> None:
        """Make the local file `path` (in `spool`) the object `key`; the file is gone
        afterwards, whether it worked or not. StoreDown when the store failed."""

    async def delete(self, keys: list[str]) -> None:
        """Delete objects; a missing one is no error. StoreDown when the store failed."""

    async def locate(self, key: str, mime: str, disposition: str, lifetime: int
                     ) -> Located | None:
        """Where to fetch `key` from, served as `mime` with `disposition` (a
        Content-Disposition value), for `lifetime` seconds; None when it is not there."""


class FileStore:
    """Objects as files under one directory; the spool is its `.partial` subdirectory."""

    def __init__(self, root: str, run: Run) -> None:
        self.root = os.path.abspath(root)
        self.spool = os.path.join(self.root, ".partial")
        os.makedirs(self.spool, exist_ok=True)
        self._run = run

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key[:2], key)

    async def put(self, key: str, path: str, mime: str) -> None:
        await self._run(self._put, key, path)

    def _put(self, key: str, path: str) -> None:
        target = self._path(key)
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
        except OSError as e:
            _unlink(path)
            raise StoreDown(str(e)) from e

    async def delete(self, keys: list[str]) -> None:
        await self._run(lambda: [_unlink(self._path(k)) for k in keys])

    async def locate(self, key: str, mime: str, disposition: str, lifetime: int
                     ) -> Located | None:
        path = self._path(key)
        return Located(path=path) if os.path.exists(path) else None


class S3Store:
    """Objects in one bucket of an S3-compatible service, through boto3 on the media pool;
    credentials come from the standard AWS environment variables or files."""

    def __init__(self, bucket: str, endpoint: str | None, region: str | None, spool: str,
                 run: Run) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.spool = os.path.abspath(spool)
        os.makedirs(self.spool, exist_ok=True)
        self._run = run
        self._client = boto3.client(
            "s3", endpoint_url=endpoint, region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30))

    async def put(self, key: str, path: str, mime: str) -> None:
        await self._run(self._put, key, path, mime)

    def _put(self, key: str, path: str, mime: str) -> None:
        """upload_file sends large files in parts and aborts the multipart upload when a
        part fails, so nothing half-written stays in the bucket."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.upload_file(path, self.bucket, key, ExtraArgs={"ContentType": mime})
        except (BotoCoreError, ClientError) as e:
            raise StoreDown(str(e)) from e
        finally:
            _unlink(path)

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await self._run(self._delete, keys)

    def _delete(self, keys: list[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys], "Quiet": True})
        except (BotoCoreError, ClientError) as e:
            raise StoreDown(str(e)) from e

    async def locate(self, key: str, mime: str, disposition: str, lifetime: int
                     ) -> Located | None:
        url = await self._run(
            self._client.generate_presigned_url, "get_object",
            Params={"Bucket": self.bucket, "Key": key, "ResponseContentType": mime,
                    "ResponseContentDisposition": disposition,
                    "ResponseCacheControl": f"private, max-age={lifetime}"},
            ExpiresIn=lifetime)
        return Located(url=url)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def open_media_store(url: str, run: Run, spool: str = "media-spool") -> MediaStore:
    """`file:DIR` or `s3://BUCKET?endpoint=URL&region=R` (`spool`: the local directory of
    arriving uploads for S3); ValueError for anything else."""
    if url.startswith("file:"):
        return FileStore(url[len("file:"):] or ".", run)
    parts = urlsplit(url)
    if parts.scheme == "s3" and parts.netloc:
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return S3Store(parts.netloc, query.get("endpoint"), query.get("region"), spool, run)
    raise ValueError(f"media store must be file:DIR or s3://BUCKET?endpoint=URL: {url}")

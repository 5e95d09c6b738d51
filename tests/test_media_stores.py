"""One test-suite for every media store, as for the SQL dialects: the local directory and an
S3-compatible service (moto's standalone server, a real HTTP server speaking S3). Then a
node on S3: an upload lands in the bucket and its download redirects there."""

import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import TestCase

from chatd.media.stores import FileStore, MediaStore, S3Store, StoreDown
from chatd.messages import Errno, MsgId
from tests.servers import free_port, start_s3
from tests.test_attachments import Uploading, http, jpeg_with_gps


def pool_runner(case: TestCase) -> Any:
    pool = ThreadPool(0, 2, "test-media")
    pool.start()
    case.addCleanup(pool.stop)
    return lambda fn, *a, **kw: deferToThreadPool(reactor, pool, fn, *a, **kw)


class StoreSuite:
    """What every MediaStore does; `make_store` gives one."""

    store: MediaStore

    def make_store(self) -> MediaStore:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def spool_file(self, data: bytes) -> str:
        path = os.path.join(self.store.spool, f"part-{len(data)}-{os.urandom(4).hex()}")
        with open(path, "wb") as f:
            f.write(data)
        return path

    async def read(self, key: str) -> bytes | None:
        located = await self.store.locate(key, "image/png", "inline; filename=a.png", 60)
        if located is None:
            return None
        if located.path is not None:
            with open(located.path, "rb") as f:
                return f.read()
        status, _, body = await http(b"GET", located.url)
        return body if status == 200 else None

    async def test_put_moves_the_spooled_file_into_the_store(self):
        path = self.spool_file(b"bytes of a photo")
        await self.store.put("k1", path, "image/png")
        self.assertFalse(os.path.exists(path))
        self.assertEqual(await self.read("k1"), b"bytes of a photo")

    async def test_large_objects_round_trip(self):
        data = os.urandom(12 << 20)  # past S3's multipart threshold
        await self.store.put("big", self.spool_file(data), "application/octet-stream")
        self.assertEqual(await self.read("big"), data)

    async def test_deleted_objects_are_gone_and_missing_ones_are_no_error(self):
        await self.store.put("k2", self.spool_file(b"x"), "image/png")
        await self.store.delete(["k2", "never-there"])
        self.assertIsNone(await self.read("k2"))


class FileStoreTests(StoreSuite, TestCase):

    def make_store(self) -> MediaStore:
        return FileStore(self.mktemp(), pool_runner(self))

    async def test_a_failing_disk_keeps_nothing(self):
        path = self.spool_file(b"x")
        with open(os.path.join(self.store.root, "bl"), "w"):  # a file where a directory goes
            pass
        with self.assertRaises(StoreDown):
            await self.store.put("blocked", path, "image/png")
        self.assertFalse(os.path.exists(path))


class S3StoreTests(StoreSuite, TestCase):
    timeout = 60

    def make_store(self) -> MediaStore:
        s3 = start_s3()
        self.addCleanup(s3.destroy)
        return S3Store(s3.BUCKET, s3.endpoint, "us-east-1", self.mktemp(), pool_runner(self))

    async def test_a_store_that_is_down_keeps_nothing(self):
        down = S3Store("b", f"http://127.0.0.1:{free_port()}", "us-east-1", self.mktemp(),
                       pool_runner(self))
        path = os.path.join(down.spool, "part")
        with open(path, "wb") as f:
            f.write(b"x")
        with self.assertRaises(StoreDown):
            await down.put("k", path, "image/png")
        self.assertFalse(os.path.exists(path))

    async def test_the_presigned_url_serves_type_disposition_and_ranges(self):
        await self.store.put("k3", self.spool_file(b"0123456789"), "image/png")
        located = await self.store.locate("k3", "image/png", "inline; filename=a.png", 60)
        status, headers, body = await http(b"GET", located.url,
                                           headers={b"range": [b"bytes=2-4"]})
        self.assertEqual((status, body), (206, b"234"))
        self.assertEqual(headers.getRawHeaders(b"content-disposition"),
                         [b"inline; filename=a.png"])


class NodeOnS3Tests(Uploading, TestCase):
    """A node whose --media-store is the S3 server."""

    def node_args(self) -> list[str]:
        self.s3 = start_s3()
        self.addCleanup(self.s3.destroy)
        return ["--media-store", self.s3.url]

    def spooled(self) -> list[str]:
        spool = self.node.node.media.files.spool
        return os.listdir(spool)

    async def test_a_store_that_is_down_answers_503_and_keeps_nothing(self):
        data = b"x" * 100_000
        slot = await self.slot("a.bin", data, "application/octet-stream")
        self.s3.stop()
        status, body = await self.put(slot, data, "application/octet-stream")
        self.assertEqual((status, body["errno"]), (503, Errno.UNAVAILABLE))
        self.assertEqual(self.spooled(), [])
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": "",
                         "attachment": {"id": slot["id"]}, "cid": "x"})
        self.assertEqual((await self.alice.recv(MsgId.ERROR, cid="x"))["errno"],
                         Errno.NO_SUCH_MEDIA)

    async def test_a_photo_goes_to_the_bucket_and_downloads_redirect_there(self):
        description = await self.upload("cat.jpg", jpeg_with_gps(), "image/jpeg")
        status, headers, _ = await http(b"GET", description["url"])
        self.assertEqual(status, 302)
        location = headers.getRawHeaders(b"location")[0].decode()
        status, headers, body = await http(b"GET", location)
        self.assertEqual((status, len(body)), (200, description["size"]))
        self.assertNotIn(b"ChatdCam", body)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"image/jpeg"])
        status, _, thumb = await http(b"GET", description["thumb"])
        self.assertEqual(status, 302)

"""Attachments end to end on one node (SQLite, the file store, a real web listener): slots,
streamed uploads, images (EXIF stripped, thumbnails, bombs and corrupt files refused),
messages carrying them to every dialect, downloads with their headers and ranges, and every
refusal the contract names."""

import io
import os
from typing import Any

import ujson
from PIL import Image
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from chatd.messages import Errno, MsgId
from tests.harness import WebNode, connect_raw, deferLater, serve_web, start_node, user

GPS_IFD, MAKE, ORIENTATION = 0x8825, 0x010F, 0x0112


def jpeg_with_gps(size: tuple[int, int] = (640, 480)) -> bytes:
    """A photo as a phone takes it: rotated by its EXIF orientation, with a GPS position and
    the camera's make."""
    image = Image.new("RGB", size, "red")
    image.paste((0, 0, 255), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[MAKE] = "ChatdCam serial 1234"
    exif[ORIENTATION] = 6  # rotate 90° clockwise to show
    exif[GPS_IFD] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif)
    return out.getvalue()


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


async def http(method: bytes, url: str, body: bytes | None = None,
               headers: dict[bytes, list[bytes]] | None = None
               ) -> tuple[int, Headers, bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    producer = FileBodyProducer(io.BytesIO(body)) if body is not None else None
    response = await agent.request(method, url.encode(), Headers(headers or {}), producer)
    return response.code, response.headers, await readBody(response)


def header(headers: Headers, name: bytes) -> str | None:
    values = headers.getRawHeaders(name)
    return values[0].decode() if values else None


class Uploading:
    """A node on SQLite with a web listener, alice and bob, and alice's uploads to bob; a
    mixin of TestCase, with the node's extra options from `node_args`."""

    timeout = 60

    async def setUp(self) -> None:
        self.store_dir = self.mktemp()
        self.node = await start_node(self, None, "--media-store", f"file:{self.store_dir}",
                                     "--media-quota", "2000000", *self.node_args())
        self.web: WebNode = await serve_web(self, self.node)
        self.alice = await user(self, self.node, "alice")
        self.bob = await user(self, self.node, "bob")
        self.bob.auto_ack = True

    def node_args(self) -> list[str]:
        return []

    async def slot(self, name: str, data: bytes, mime: str, **to: Any) -> dict[str, Any]:
        target = to or {"to": self.bob.user_id}
        ack = await self.alice.request({"msgid": MsgId.UPLOAD, "name": name, "size": len(data),
                                        "mime": mime, **target}, MsgId.UPLOAD_ACK)
        self.assertEqual(ack["errno"], 0, ack)
        return ack["upload"]  # type: ignore[no-any-return]

    async def put(self, slot: dict[str, Any], data: bytes, mime: str
                  ) -> tuple[int, dict[str, Any]]:
        status, _, body = await http(b"PUT", self.web.url.rstrip("/") + slot["put"], data,
                                     {b"content-type": [mime.encode()]})
        return status, ujson.loads(body)

    async def upload(self, name: str, data: bytes, mime: str, **to: Any) -> dict[str, Any]:
        status, description = await self.put(await self.slot(name, data, mime, **to), data,
                                              mime)
        self.assertEqual(status, 201, description)
        return description

    def spooled(self) -> list[str]:
        return os.listdir(os.path.join(self.store_dir, ".partial"))


class AttachmentTests(Uploading, TestCase):

    async def test_a_photo_reaches_the_recipient_without_its_exif(self):
        photo = jpeg_with_gps()
        description = await self.upload("cat.jpg", photo, "image/jpeg")
        self.assertEqual((description["width"], description["height"]), (480, 640))
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": "",
                         "attachment": {"id": description["id"]}, "cid": "p1"})
        got = (await self.bob.recv(MsgId.ONE_CHAT))["attachment"]
        self.assertEqual((got["name"], got["mime"], got["width"], got["height"]),
                         ("cat.jpg", "image/jpeg", 480, 640))
        await self.alice.recv(MsgId.SEND_ACK, cid="p1")
        status, headers, body = await http(b"GET", got["url"])
        self.assertEqual(status, 200)
        served = Image.open(io.BytesIO(body))
        self.assertEqual(served.size, (480, 640))
        self.assertEqual(dict(served.getexif()), {})
        self.assertNotIn(b"ChatdCam", body)
        self.assertEqual(len(body), got["size"])
        self.assertEqual(header(headers, b"content-type"), "image/jpeg")
        self.assertEqual(header(headers, b"x-content-type-options"), "nosniff")
        self.assertEqual(header(headers, b"content-security-policy"), "sandbox")
        self.assertTrue(header(headers, b"cache-control").startswith("private"))
        self.assertEqual(header(headers, b"content-disposition"),
                         "inline; filename*=UTF-8''cat.jpg")
        status, _, thumb = await http(b"GET", got["thumb"])
        self.assertEqual((status, max(Image.open(io.BytesIO(thumb)).size)), (200, 320))

    async def test_an_animated_webp_keeps_its_frames_and_loses_its_exif(self):
        frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue")]
        exif = Image.Exif()
        exif[MAKE] = "ChatdCam serial 1234"
        out = io.BytesIO()
        frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], exif=exif)
        self.assertIn(b"ChatdCam", out.getvalue())
        description = await self.upload("anim.webp", out.getvalue(), "image/webp")
        status, _, body = await http(b"GET", description["url"])
        self.assertEqual(status, 200)
        self.assertNotIn(b"ChatdCam", body)
        self.assertEqual(Image.open(io.BytesIO(body)).n_frames, 2)

    async def test_ranges_and_etags(self):
        data = os.urandom(100_000)
        description = await self.upload("clip.bin", data, "application/octet-stream")
        url = description["url"]
        status, headers, body = await http(b"GET", url, headers={b"range": [b"bytes=10-19"]})
        self.assertEqual((status, body), (206, data[10:20]))
        self.assertEqual(header(headers, b"content-range"), "bytes 10-19/100000")
        _, headers, _ = await http(b"GET", url)
        etag = header(headers, b"etag")
        status, _, body = await http(b"GET", url, headers={b"if-none-match": [etag.encode()]})
        self.assertEqual((status, body), (304, b""))
        self.assertEqual(header(headers, b"content-disposition"),
                         "attachment; filename*=UTF-8''clip.bin")

    async def test_history_and_media_url_give_fresh_links(self):
        description = await self.upload("a.png", png((50, 40)), "image/png")
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": "look",
                         "attachment": {"id": description["id"]}})
        await self.bob.recv(MsgId.ONE_CHAT)
        page = await self.bob.request({"msgid": MsgId.HISTORY, "peer": self.alice.user_id},
                                      MsgId.HISTORY_ACK)
        kept = page["messages"][0]
        self.assertEqual((kept["msg"], kept["attachment"]["width"]), ("look", 50))
        status, _, _ = await http(b"GET", kept["attachment"]["url"])
        self.assertEqual(status, 200)
        renewed = await self.bob.request({"msgid": MsgId.MEDIA_URL, "media": description["id"]},
                                         MsgId.MEDIA_URL_ACK)
        self.assertEqual(renewed["errno"], 0)
        self.assertEqual((await http(b"GET", renewed["thumb"]))[0], 200)

    async def test_the_original_dialect_gets_a_line_with_the_link(self):
        carol = await user(self, self.node, "carol", proto=None)
        description = await self.upload("notes.txt", b"hello " * 400, "text/plain",
                                        to=carol.user_id)
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": carol.user_id, "msg": "my notes",
                         "attachment": {"id": description["id"]}})
        got = await carol.recv(MsgId.ONE_CHAT)
        self.assertNotIn("attachment", got)
        caption, line = got["msg"].split("\n")
        self.assertEqual(caption, "my notes")
        self.assertTrue(line.startswith("[notes.txt, 2.3 KB] http://127.0.0.1:"), line)
        status, _, body = await http(b"GET", line.split("] ")[1])
        self.assertEqual((status, body), (200, b"hello " * 400))

    async def test_a_group_photo(self):
        group = await self.alice.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                                         MsgId.CREATE_GROUP_ACK)
        gid = group["groupid"]
        await self.bob.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        description = await self.upload("g.gif", _gif(), "image/gif", groupid=gid)
        self.alice.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "",
                         "attachment": {"id": description["id"]}})
        got = await self.bob.recv(MsgId.GROUP_CHAT)
        self.assertEqual((got["attachment"]["mime"], got["attachment"]["width"]),
                         ("image/gif", 30))

    # refusals of UPLOAD

    async def upload_refused(self, **fields: Any) -> int:
        frame = {"msgid": MsgId.UPLOAD, "name": "x.bin", "size": 10,
                 "mime": "application/octet-stream", "to": self.bob.user_id, **fields}
        ack = await self.alice.request(frame, MsgId.UPLOAD_ACK)
        self.assertEqual("errmsg" in ack, ack["errno"] != 0)
        return ack["errno"]  # type: ignore[no-any-return]

    async def test_slots_are_refused_with_their_reasons(self):
        self.assertEqual(await self.upload_refused(size=26 << 20), Errno.UPLOAD_TOO_LARGE)
        self.assertEqual(await self.upload_refused(size=1_999_000), Errno.OK)
        self.assertEqual(await self.upload_refused(size=2000), Errno.MEDIA_QUOTA)
        for name in ("../etc/passwd", "a/b", "a\\b", "bad\x01name"):
            self.assertEqual(await self.upload_refused(name=name), Errno.MEDIA_NAME, name)
        for mime in ("text/html", "image/svg+xml", "application/javascript", "nonsense"):
            self.assertEqual(await self.upload_refused(mime=mime), Errno.MEDIA_NAME, mime)
        self.assertEqual(await self.upload_refused(to=None, groupid=999), Errno.NO_SUCH_GROUP)
        self.assertEqual(await self.upload_refused(to=999999), Errno.NO_SUCH_USER)

    async def test_no_web_listener_no_uploads(self):
        node = await start_node(self)
        carol = await user(self, node, "carol")
        ack = await carol.request({"msgid": MsgId.UPLOAD, "name": "x", "size": 1,
                                   "mime": "text/plain", "to": carol.user_id},
                                  MsgId.UPLOAD_ACK)
        self.assertEqual(ack["errno"], Errno.NO_WEB)

    # refusals of PUT

    async def test_a_slot_is_signed_and_used_once(self):
        data = b"x" * 1000
        slot = await self.slot("a.bin", data, "application/octet-stream")
        forged = dict(slot, put=slot["put"].replace("&s=", "&s=A"))
        self.assertEqual(await self.put(forged, data, "application/octet-stream"),
                         (403, {"errno": Errno.BAD_SLOT, "errmsg": "upload slot is not valid"}))
        self.assertEqual((await self.put(slot, data, "application/octet-stream"))[0], 201)
        status, body = await self.put(slot, data, "application/octet-stream")
        self.assertEqual((status, body["errno"]), (409, Errno.BAD_SLOT))

    async def test_the_body_must_be_what_the_slot_says(self):
        slot = await self.slot("a.bin", b"x" * 1000, "application/octet-stream")
        status, body = await self.put(slot, b"x" * 999, "application/octet-stream")
        self.assertEqual((status, body["errno"]), (413, Errno.MEDIA_MISMATCH))
        page = b"<!DOCTYPE html><script>alert(1)</script>" + b" " * 600
        slot = await self.slot("cat.jpg", page, "image/jpeg")
        status, body = await self.put(slot, page, "image/jpeg")
        self.assertEqual((status, body["errno"]), (415, Errno.MEDIA_MISMATCH))
        slot = await self.slot("doc.bin", page, "application/octet-stream")
        self.assertEqual((await self.put(slot, page, "application/octet-stream"))[0], 415)

    async def test_corrupt_images_and_bombs_are_refused(self):
        broken = jpeg_with_gps()[:600]
        slot = await self.slot("broken.jpg", broken, "image/jpeg")
        status, body = await self.put(slot, broken, "image/jpeg")
        self.assertEqual((status, body["errno"]), (422, Errno.BAD_IMAGE))
        bomb = png((8000, 8000), "1")
        slot = await self.slot("bomb.png", bomb, "image/png")
        status, body = await self.put(slot, bomb, "image/png")
        self.assertEqual((status, body["errno"]), (422, Errno.BAD_IMAGE))
        self.assertEqual(self.spooled(), [])

    async def test_an_upload_stopped_half_way_leaves_nothing(self):
        slot = await self.slot("big.bin", b"x" * 200_000, "application/octet-stream")
        raw = await connect_raw(self, self.web.port)
        raw.transport.write(b"PUT " + slot["put"].encode() + b" HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 200000\r\n\r\n" + b"x" * 50_000)
        while not self.spooled():
            await deferLater(0.01)
        raw.transport.loseConnection()
        await raw.closed
        while self.spooled():
            await deferLater(0.01)
        status, body = await self.put(slot, b"x" * 200_000, "application/octet-stream")
        self.assertEqual((status, body["errno"]), (409, Errno.BAD_SLOT))

    # refusals of the message

    async def test_only_the_owners_complete_upload_can_be_sent(self):
        mine = await self.upload("a.bin", b"abc", "application/octet-stream")
        self.bob.send({"msgid": MsgId.ONE_CHAT, "to": self.alice.user_id, "msg": "",
                       "attachment": {"id": mine["id"]}, "cid": "b1"})
        refused = await self.bob.recv(MsgId.ERROR, cid="b1")
        self.assertEqual(refused["errno"], Errno.NO_SUCH_MEDIA)
        slot = await self.slot("b.bin", b"abc", "application/octet-stream")
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": "",
                         "attachment": {"id": slot["id"]}, "cid": "a1"})
        self.assertEqual((await self.alice.recv(MsgId.ERROR, cid="a1"))["errno"],
                         Errno.MEDIA_INCOMPLETE)
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": ""})
        self.assertEqual((await self.alice.recv(MsgId.ERROR))["errno"], Errno.OUT_OF_RANGE)

    async def test_downloads_need_a_good_unexpired_signature(self):
        description = await self.upload("a.bin", b"abc", "application/octet-stream")
        url = description["url"]
        status, _, body = await http(b"GET", url.replace("&s=", "&s=x"))
        self.assertEqual((status, ujson.loads(body)["errno"]), (403, Errno.BAD_SLOT))
        expired = self.node.context.clock.seconds() - 10
        old = self.node.node.media.url(description["id"], "f", int(expired))
        self.assertEqual((await http(b"GET", old))[0], 410)
        missing = self.node.node.media.url("nosuchid", "f", int(expired) + 1000)
        self.assertEqual((await http(b"GET", missing))[0], 404)


def _gif() -> bytes:
    out = io.BytesIO()
    Image.new("P", (30, 20)).save(out, "GIF")
    return out.getvalue()



class LimitsAndCleanupTests(Uploading, TestCase):
    """The per-user upload limit, the quota as files go, and the background cleanup."""

    def node_args(self) -> list[str]:
        return ["--max-uploads-per-user", "1", "--history-days", "2"]

    async def test_one_upload_at_a_time_per_user(self):
        first = await self.slot("a.bin", b"x" * 100_000, "application/octet-stream")
        second = await self.slot("b.bin", b"x" * 10, "application/octet-stream")
        raw = await connect_raw(self, self.web.port)
        raw.transport.write(b"PUT " + first["put"].encode() + b" HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 100000\r\n\r\n" + b"x" * 1000)
        while not self.spooled():
            await deferLater(0.01)
        status, body = await self.put(second, b"x" * 10, "application/octet-stream")
        self.assertEqual((status, body["errno"]), (429, Errno.TOO_MANY_UPLOADS))
        raw.transport.write(b"x" * 99_000)
        while not raw.data.endswith(b"}"):
            await deferLater(0.01)
        self.assertIn(b"201 Created", raw.data)

    async def test_unsent_uploads_go_after_a_day_and_sent_ones_with_their_history(self):
        unsent = await self.upload("a.bin", b"a" * 600_000, "application/octet-stream")
        sent = await self.upload("b.bin", b"b" * 600_000, "application/octet-stream")
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": "",
                         "attachment": {"id": sent["id"]}})
        await self.bob.recv(MsgId.ONE_CHAT)
        self.assertEqual(await self.upload_errno(900_000), Errno.MEDIA_QUOTA)
        await self.later(1.5)
        self.assertEqual((await http(b"GET", unsent["url"]))[0], 404)
        self.assertEqual((await http(b"GET", sent["url"]))[0], 200)
        self.assertEqual(await self.upload_errno(900_000), Errno.OK)
        await self.later(2.5)
        self.assertEqual((await http(b"GET", sent["url"]))[0], 404)
        self.assertEqual(self.stored(), [])

    async def upload_errno(self, size: int) -> int:
        ack = await self.alice.request({"msgid": MsgId.UPLOAD, "name": "c.bin", "size": size,
                                        "mime": "text/plain", "to": self.bob.user_id},
                                       MsgId.UPLOAD_ACK)
        return ack["errno"]  # type: ignore[no-any-return]

    async def later(self, days: float) -> None:
        """Run the cleanup as it would run `days` from now."""
        media = self.node.node.media
        clock = Clock()
        clock.advance(reactor.seconds() + days * 86400)
        real, media.clock = media.clock, clock
        try:
            await media.clean()
        finally:
            media.clock = real

    def stored(self) -> list[str]:
        return [name for _, _, names in os.walk(self.store_dir) for name in names]


"""Attachments across real nodes (MariaDB, Redis, `twistd chatd` processes with --web): an
upload through node 1 is sent to a user on node 2 and downloaded through node 2, with the
file store in a shared directory and with S3 (moto's server)."""

import os

from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.servers import start_s3
from tests.test_attachments import http, jpeg_with_gps
from tests.test_cluster import Cluster


class ClusterAttachmentTests(TestCase):
    timeout = 120

    async def test_upload_on_one_node_download_through_another_shared_directory(self):
        shared = os.path.abspath(self.mktemp())
        await self.across(f"file:{shared}", 200)

    async def test_upload_on_one_node_download_through_another_s3(self):
        s3 = start_s3()
        self.addCleanup(s3.destroy)
        await self.across(s3.url, 302)

    async def across(self, store: str, served: int) -> None:
        cluster = await Cluster(self).start(2, "--media-store", store, web=True)
        n1, n2 = cluster.nodes
        web1, web2 = (f"http://127.0.0.1:{port}" for port in cluster.web_ports)
        alice = await cluster.user(n1, "alice")
        bob = await cluster.user(n2, "bob")
        photo = jpeg_with_gps()
        slot = (await alice.request({"msgid": MsgId.UPLOAD, "name": "cat.jpg",
                                     "size": len(photo), "mime": "image/jpeg",
                                     "to": bob.user_id}, MsgId.UPLOAD_ACK))["upload"]
        status, _, _ = await http(b"PUT", web1 + slot["put"], photo)
        self.assertEqual(status, 201)
        big = os.urandom(3 << 20)  # past nginx's default client_max_body_size of 1 MiB
        other = (await alice.request({"msgid": MsgId.UPLOAD, "name": "big.bin",
                                      "size": len(big), "mime": "application/octet-stream",
                                      "to": bob.user_id}, MsgId.UPLOAD_ACK))["upload"]
        status, _, _ = await http(b"PUT", cluster.nginx.url.rstrip("/") + other["put"], big)
        self.assertEqual(status, 201, "through nginx")
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "from n1",
                    "attachment": {"id": slot["id"]}})
        got = (await bob.recv(MsgId.ONE_CHAT, msg="from n1"))["attachment"]
        self.assertTrue(got["url"].startswith(web1))
        status, headers, body = await http(b"GET", got["url"].replace(web1, web2))
        self.assertEqual(status, served)
        if served == 302:
            status, _, body = await http(b"GET", headers.getRawHeaders(b"location")[0].decode())
        self.assertEqual((status, len(body)), (200, got["size"]))

"""Pushes across real nodes (MariaDB, Redis, `twistd chatd` processes): the node that stores
a message offline pushes it, wherever the recipient subscribed; a user with a device online
anywhere is not pushed."""

from twisted.trial.unittest import TestCase

from chatd.messages import MsgId
from tests.harness import connect, deferLater, device, register
from tests.pushservice import PushService
from tests.test_cluster import Cluster
from tests.test_push import away, subscribe


class ClusterPushTests(TestCase):
    timeout = 120

    async def test_a_message_sent_on_one_node_pushes_a_device_subscribed_on_another(self):
        service = await PushService.start(self)
        cluster = await Cluster(self).start(2, "--push-allow-http", "--push-allow-private",
                                            "--push-interval", "0")
        n1, n2 = cluster.nodes
        alice = await cluster.user(n1, "alice")
        bob_id = await register(await connect(self, n2), "bob")
        phone, _ = await device(self, n2, bob_id, "phone")
        browser = service.subscription()
        self.assertEqual((await subscribe(phone, browser))["errno"], 0)
        await away(phone)
        laptop, _ = await device(self, n1, bob_id, "laptop")
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob_id, "msg": "while online", "cid": "1"})
        await laptop.recv(MsgId.ONE_CHAT, msg="while online")
        await alice.recv(MsgId.SEND_ACK, cid="1")
        await deferLater(0.5)
        self.assertEqual(service.arrived(browser.endpoint), [], "a device is online")
        await away(laptop)
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob_id, "msg": "now away", "cid": "2"})
        push = await service.received(browser.endpoint, timeout=3.0)
        self.assertEqual((push["peer"], push["title"]), (alice.user_id,
                                                         "New message from alice"))
        self.assertNotIn("preview", push)
        await alice.recv(MsgId.SEND_ACK, cid="2")

"""Notifications on a real node (SQLite, loopback clients) with a real local push service
(tests/pushservice.py) that decrypts what it receives: who is pushed, how often, what a
push says, mute and mentions, subscriptions refused or removed, FCM, and a push service that
hangs not slowing chat."""

import time
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from tests.harness import Client, connect, deferLater, device, register, start_node, user
from tests.pushservice import PushService

PUSH_ARGS = ("--push-allow-http", "--push-allow-private")


async def subscribe(client: Client, browser: Any, **fields: Any) -> dict[str, Any]:
    return await client.request({"msgid": MsgId.PUSH_SUBSCRIBE, "kind": "webpush",
                                 "subscription": browser.json(), **fields},
                                MsgId.PUSH_SUBSCRIBE_ACK)


async def away(client: Client) -> None:
    """The user closes the app (the connection ends; no logout)."""
    client.transport.loseConnection()
    await client.closed


class PushTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:
        self.service = await PushService.start(self)
        self.node = await start_node(self, None, *PUSH_ARGS,
                                     "--push-vapid-key", self.mktemp())
        self.alice = await user(self, self.node, "alice")
        self.bob = await user(self, self.node, "bob")
        self.alice.auto_ack = self.bob.auto_ack = True

    async def bob_away(self) -> Any:
        """Bob subscribes this device and goes away; his browser side."""
        browser = self.service.subscription()
        ack = await subscribe(self.bob, browser)
        self.assertEqual((ack["errno"], ack["kind"], ack["device"], ack["subscribed"]),
                         (0, "webpush", "default", True))
        await away(self.bob)
        return browser

    def to_bob(self, text: str, **fields: Any) -> None:
        self.alice.send({"msgid": MsgId.ONE_CHAT, "to": self.bob.user_id, "msg": text,
                         **fields})

    async def test_an_offline_user_gets_one_push_per_burst_without_the_text(self):
        browser = await self.bob_away()
        sent = time.monotonic()
        for i in range(3):
            self.to_bob(f"secret {i}", cid=str(i))
        # The burst's first push leaves at once, not at the end of the 5 s --push-interval.
        push = await self.service.received(browser.endpoint, timeout=3.0)
        self.assertLess(time.monotonic() - sent, 3.0)
        self.assertIn(push.pop("unread"), (1, 2, 3), "the messages stored so far")
        self.assertEqual({k: v for k, v in push.items() if k != "mid"}, {
            "kind": "message", "title": "New message from alice", "id": self.alice.user_id,
            "name": "alice", "peer": self.alice.user_id, "mention": False})
        headers = self.service.inbox(browser.endpoint).arrived[0]["headers"]
        self.assertEqual((headers["topic"], headers["content-encoding"]),
                         (f"p{self.alice.user_id}", "aes128gcm"))
        self.assertTrue(headers["authorization"].startswith("vapid t="))
        for i in range(3):
            await self.alice.recv(MsgId.SEND_ACK, cid=str(i))
        await deferLater(0.5)
        self.assertEqual(len(self.service.arrived(browser.endpoint)), 1, "one per burst")

    async def test_preview_carries_the_first_80_characters(self):
        node = await start_node(self, None, *PUSH_ARGS, "--push-preview",
                                "--push-vapid-key", self.mktemp())
        alice, bob = await user(self, node, "alice"), await user(self, node, "bob")
        browser = self.service.subscription()
        await subscribe(bob, browser)
        await away(bob)
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "x" * 100})
        push = await self.service.received(browser.endpoint)
        self.assertEqual(push["preview"], "x" * 80)

    async def test_login_reply_has_the_vapid_key_and_the_mutes(self):
        _, first = await device(self, self.node, self.alice.user_id, "tablet")
        self.assertEqual(len(first["vapid"]), 87, "base64url of a 65-byte P-256 point")
        self.assertEqual(first["muted"], [])
        ack = await self.alice.request({"msgid": MsgId.MUTE, "peer": self.bob.user_id,
                                        "until": -1}, MsgId.MUTE_ACK)
        self.assertEqual(ack, {"msgid": MsgId.MUTE_ACK, "errno": 0, "peer": self.bob.user_id,
                               "until": -1})
        _, later = await device(self, self.node, self.alice.user_id, "phone")
        self.assertEqual(later["muted"], [{"peer": self.bob.user_id, "until": -1}])
        self.assertEqual(later["vapid"], first["vapid"])

    async def test_a_muted_conversation_sends_no_push_and_still_counts_unread(self):
        await self.bob.request({"msgid": MsgId.MUTE, "peer": self.alice.user_id,
                                "until": int(time.time() * 1000) + 60_000}, MsgId.MUTE_ACK)
        browser = await self.bob_away()
        self.to_bob("hello", cid="1")
        await self.alice.recv(MsgId.SEND_ACK, cid="1")
        await deferLater(0.5)
        self.assertEqual(self.service.arrived(browser.endpoint), [])
        _, again = await device(self, self.node, self.bob.user_id, "phone")
        self.assertEqual([u["count"] for u in again["unread"]], [1])

    async def test_a_mention_in_a_muted_group_is_pushed(self):
        gid = (await self.alice.request({"msgid": MsgId.CREATE_GROUP, "groupname": "team"},
                                        MsgId.CREATE_GROUP_ACK))["groupid"]
        await self.bob.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        await self.bob.request({"msgid": MsgId.MUTE, "groupid": gid, "until": -1},
                               MsgId.MUTE_ACK)
        browser = await self.bob_away()
        self.alice.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "quiet", "cid": "q"})
        await self.alice.recv(MsgId.SEND_ACK, cid="q")
        await deferLater(0.5)
        self.assertEqual(self.service.arrived(browser.endpoint), [], "muted")
        self.alice.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": "look @bob",
                         "mentions": [self.bob.user_id], "cid": "m"})
        push = await self.service.received(browser.endpoint)
        self.assertEqual((push["groupid"], push["mention"]), (gid, True))
        headers = self.service.inbox(browser.endpoint).arrived[0]["headers"]
        self.assertEqual(headers["topic"], f"g{gid}")

    async def test_410_removes_the_subscription(self):
        browser = await self.bob_away()
        self.service.answer(browser, 410)
        self.to_bob("one", cid="1")
        await self.alice.recv(MsgId.SEND_ACK, cid="1")
        store = self.node.context.store
        for _ in range(50):
            if not await store.push_targets([self.bob.user_id], 0, {self.bob.user_id: 1}):
                break
            await deferLater(0.1)
        self.assertEqual(await store.push_targets([self.bob.user_id], 0,
                                                  {self.bob.user_id: 1}), {})
        self.assertEqual(self.node.node.push.queue.stats.outcomes["gone"], 1)

    async def test_logging_out_removes_the_devices_subscription(self):
        browser = self.service.subscription()
        await subscribe(self.bob, browser)
        await self.bob.request({"msgid": MsgId.LOGOUT}, MsgId.LOGOUT_ACK)
        await deferLater(0.3)
        self.to_bob("after logout", cid="1")
        await self.alice.recv(MsgId.SEND_ACK, cid="1")
        await deferLater(0.5)
        self.assertEqual(self.service.arrived(browser.endpoint), [])

    async def test_a_device_that_does_not_acknowledge_is_pushed(self):
        node = await start_node(self, None, *PUSH_ARGS, "--ack-timeout", "1",
                                "--push-vapid-key", self.mktemp())
        alice, bob = await user(self, node, "alice"), await user(self, node, "bob")
        browser = self.service.subscription()
        await subscribe(bob, browser)
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "are you there"})
        await bob.recv(MsgId.ONE_CHAT)  # shown, never acknowledged (the app was suspended)
        push = await self.service.received(browser.endpoint, timeout=4.0)
        self.assertEqual(push["peer"], alice.user_id)

    async def test_refused_subscriptions(self):
        strict = await start_node(self, None, "--push-vapid-key", self.mktemp())
        carol = await user(self, strict, "carol")
        browser = self.service.subscription()
        cases = [
            (carol, browser.json(), Errno.PUSH_ENDPOINT),  # http without --push-allow-http
            (carol, {**browser.json(), "endpoint": "https://127.0.0.1/x"}, Errno.PUSH_ENDPOINT),
            (carol, {**browser.json(), "endpoint": "https://10.1.2.3/x"}, Errno.PUSH_ENDPOINT),
            (carol, {**browser.json(), "endpoint": "https://[::1]/x"}, Errno.PUSH_ENDPOINT),
            (carol, {**browser.json(), "endpoint": "https://localhost/x"}, Errno.PUSH_ENDPOINT),
            (self.bob, {**browser.json(), "keys": {"p256dh": "AAAA", "auth": "AAAA"}},
             Errno.PUSH_KEYS),
        ]
        for client, subscription, errno in cases:
            ack = await client.request({"msgid": MsgId.PUSH_SUBSCRIBE, "kind": "webpush",
                                        "subscription": subscription},
                                       MsgId.PUSH_SUBSCRIBE_ACK)
            self.assertEqual(ack["errno"], errno, subscription)
        error = await self.bob.request({"msgid": MsgId.PUSH_SUBSCRIBE, "kind": "webpush",
                                        "subscription": {"endpoint": 5}}, MsgId.ERROR)
        self.assertEqual((error["errno"], error["ref"]), (Errno.WRONG_TYPE, MsgId.PUSH_SUBSCRIBE))
        ack = await carol.request({"msgid": MsgId.PUSH_SUBSCRIBE, "kind": "fcm",
                                   "token": "t"}, MsgId.PUSH_SUBSCRIBE_ACK)
        self.assertEqual(ack["errno"], Errno.PUSH_KIND, "no FCM credentials on this node")

    async def test_subscriptions_per_account_are_limited(self):
        node = await start_node(self, None, *PUSH_ARGS, "--push-max-subscriptions", "2",
                                "--push-vapid-key", self.mktemp())
        carol = await user(self, node, "carol")
        for i, errno in enumerate([0, 0, Errno.PUSH_SUBSCRIPTIONS]):
            ack = await subscribe(carol, self.service.subscription(), device=f"d{i}")
            self.assertEqual(ack["errno"], errno)
        ack = await subscribe(carol, self.service.subscription(), device="d0")
        self.assertEqual(ack["errno"], 0, "replacing a device's subscription")
        ack = await carol.request({"msgid": MsgId.PUSH_SUBSCRIBE, "kind": "webpush",
                                   "subscription": None, "device": "d1"},
                                  MsgId.PUSH_SUBSCRIBE_ACK)
        self.assertEqual((ack["errno"], ack["subscribed"]), (0, False))

    async def test_fcm_with_a_service_account_token(self):
        credentials = self.service.fcm_credentials(self.mktemp())
        node = await start_node(self, None, *PUSH_ARGS, "--push-fcm-credentials", credentials,
                                "--push-interval", "0",
                                "--push-fcm-url", self.service.url,
                                "--push-vapid-key", self.mktemp())
        alice, bob = await user(self, node, "alice"), await user(self, node, "bob")
        ack = await bob.request({"msgid": MsgId.PUSH_SUBSCRIBE, "kind": "fcm",
                                 "token": "phone-token"}, MsgId.PUSH_SUBSCRIBE_ACK)
        self.assertEqual(ack["errno"], 0)
        await away(bob)
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "hi"})
        message = await self.service.received("fcm:phone-token")
        self.assertEqual(message["data"]["title"], "New message from alice")
        self.assertEqual(message["data"]["peer"], str(alice.user_id))
        self.assertNotIn("preview", message["data"])
        self.assertEqual(message["android"]["collapse_key"], f"p{alice.user_id}")
        self.assertEqual(self.service.token_requests, 1)
        self.service.inbox("fcm:phone-token").answer = 404  # the app was uninstalled
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "still there?"})
        store = node.context.store
        for _ in range(50):
            if not await store.push_targets([bob.user_id], 0, {bob.user_id: alice.user_id}):
                break
            await deferLater(0.1)
        self.assertEqual(await store.push_targets([bob.user_id], 0,
                                                  {bob.user_id: alice.user_id}), {})
        self.assertEqual(self.service.token_requests, 1, "the token is reused")


class MentionTests(TestCase):
    timeout = 30

    async def setUp(self) -> None:
        self.node = await start_node(self, None, "--push-vapid-key", self.mktemp())
        self.owner, self.bob, self.carol = [await user(self, self.node, n)
                                            for n in ("owner", "bob", "carol")]
        for c in (self.owner, self.bob, self.carol):
            c.auto_ack = True
        self.gid = (await self.owner.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                                             MsgId.CREATE_GROUP_ACK))["groupid"]
        for c in (self.bob, self.carol):
            await c.request({"msgid": MsgId.ADD_GROUP, "groupid": self.gid},
                            MsgId.ADD_GROUP_ACK)

    def group(self, client: Client, mentions: Any, cid: str) -> None:
        client.send({"msgid": MsgId.GROUP_CHAT, "groupid": self.gid, "msg": "hey",
                     "mentions": mentions, "cid": cid})

    async def test_recipients_see_mentions_and_history_keeps_them(self):
        self.group(self.bob, [self.carol.user_id, self.owner.user_id, self.carol.user_id], "1")
        got = await self.carol.recv(MsgId.GROUP_CHAT, cid="1")
        self.assertEqual(got["mentions"], sorted([self.carol.user_id, self.owner.user_id]))
        page = await self.carol.request({"msgid": MsgId.HISTORY, "groupid": self.gid},
                                        MsgId.HISTORY_ACK)
        self.assertEqual(page["messages"][-1]["mentions"], got["mentions"])

    async def test_only_members_and_only_the_owner_mentions_all(self):
        outsider = await user(self, self.node, "dave")
        self.group(self.bob, [outsider.user_id], "1")
        self.group(self.bob, "all", "2")
        self.group(self.bob, "everyone", "3")
        self.group(self.bob, [], "4")
        for cid, errno in (("1", Errno.MENTION_NOT_MEMBER), ("2", Errno.MENTION_ALL),
                           ("3", Errno.WRONG_TYPE), ("4", Errno.OUT_OF_RANGE)):
            error = await self.bob.recv(MsgId.ERROR, cid=cid)
            self.assertEqual(error["errno"], errno, cid)
        self.group(self.owner, "all", "5")
        got = await self.bob.recv(MsgId.GROUP_CHAT, cid="5")
        self.assertEqual(got["mentions"], "all")
        self.assertEqual([f for f in await self.carol.quiet() if f.get("cid") in "1234"], [])


class StalledServiceTests(TestCase):
    timeout = 120
    MESSAGES = 200
    PUSH_TIMEOUT = 90  # seconds a hung push is waited for: far longer than the chat may take

    async def test_a_push_service_that_hangs_does_not_slow_chat(self):
        """Every push worker stuck on a service that never answers and the push queue full:
        chat must not wait for any of it. Were a message held by its push, the burst would
        take at least PUSH_TIMEOUT; it must be done in a third of that even on a loaded
        machine (it takes well under a second on a quiet one)."""
        service = await PushService.start(self)
        node = await start_node(self, None, *PUSH_ARGS, "--push-interval", "0",
                                "--push-queue", "50", "--push-concurrency", "4",
                                "--push-timeout", str(self.PUSH_TIMEOUT),
                                "--push-retries", "0", "--push-vapid-key", self.mktemp())
        alice, bob, carol = [await user(self, node, n) for n in ("alice", "bob", "carol")]
        alice.auto_ack = carol.auto_ack = True
        gid = (await alice.request({"msgid": MsgId.CREATE_GROUP, "groupname": "g"},
                                   MsgId.CREATE_GROUP_ACK))["groupid"]
        for c in (bob, carol):
            await c.request({"msgid": MsgId.ADD_GROUP, "groupid": gid}, MsgId.ADD_GROUP_ACK)
        browser = service.subscription()
        await subscribe(bob, browser)
        await away(bob)
        service.answer(browser, "hang")
        hanging = service.inbox(browser.endpoint).hanging
        await self._burst(alice, carol, gid, "a")
        await self._until(lambda: len(hanging) == 4)
        self.assertEqual(len(hanging), 4, "every worker is stuck on the service")
        stats = node.node.push.queue.stats
        dropped = stats.dropped
        started = time.monotonic()
        await self._burst(alice, carol, gid, "b")
        self.assertLess(time.monotonic() - started, self.PUSH_TIMEOUT / 3)
        await self._until(lambda: stats.dropped - dropped == self.MESSAGES)
        self.assertEqual(stats.dropped - dropped, self.MESSAGES, "the queue was full")
        self.assertEqual(stats.outcomes["sent"], 0)
        self.assertEqual(len(hanging), 4)

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait (20 s at most) for what the push side does after chat has moved on."""
        for _ in range(200):
            if condition():
                return
            await deferLater(0.1)

    async def _burst(self, alice: Client, carol: Client, gid: int, tag: str) -> None:
        """MESSAGES group messages sent at once; each acknowledged to alice and delivered to
        carol, in time for neither to have waited on a push."""
        for i in range(self.MESSAGES):
            alice.send({"msgid": MsgId.GROUP_CHAT, "groupid": gid, "msg": f"{tag}{i}",
                        "cid": f"{tag}{i}"})
        wait = self.PUSH_TIMEOUT / 3
        for i in range(self.MESSAGES):
            await alice.recv(MsgId.SEND_ACK, cid=f"{tag}{i}", timeout=wait)
            got = await carol.recv(MsgId.GROUP_CHAT, cid=f"{tag}{i}", timeout=wait)
            self.assertEqual(got["msg"], f"{tag}{i}")


class ReadTests(TestCase):
    timeout = 30

    async def test_a_read_on_another_device_sends_a_read_push_to_close_the_notification(self):
        service = await PushService.start(self)
        node = await start_node(self, None, *PUSH_ARGS, "--push-vapid-key", self.mktemp())
        alice = await user(self, node, "alice")
        bob_id = await register(await connect(self, node), "bob")
        bob_phone, _ = await device(self, node, bob_id, "phone")
        browser = service.subscription()
        await subscribe(bob_phone, browser)
        await away(bob_phone)
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob_id, "msg": "hi"})
        pushed = await service.received(browser.endpoint)
        laptop, _ = await device(self, node, bob_id, "laptop")
        laptop.send({"msgid": MsgId.READ, "peer": alice.user_id, "mid": pushed["mid"]})
        read = await service.received(browser.endpoint)
        self.assertEqual(read, {"kind": "read", "title": "", "peer": alice.user_id})
        headers = service.inbox(browser.endpoint).arrived[1]["headers"]
        self.assertEqual(headers["topic"], f"p{alice.user_id}")
        laptop.send({"msgid": MsgId.READ, "peer": alice.user_id, "mid": pushed["mid"]})
        await deferLater(0.5)
        self.assertEqual(len(service.arrived(browser.endpoint)), 2, "once per push")

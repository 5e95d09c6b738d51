"""The notification queries on both dialects: subscriptions per device and kind, mutes,
and what one push needs about its recipients."""

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from chatd.store import open_store
from chatd.store.push import Subscription
from tests.servers import mysql_database
from tests.test_store import HASH, MID


class PushStoreTests:
    """Mixed into a TestCase with `url()`."""

    def url(self) -> str:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = open_store(self.url())
        self.addCleanup(self.store.close)

    async def test_subscriptions_are_one_per_device_and_kind_within_the_limit(self):
        alice, bob = [await self.store.create_user(n, HASH) for n in ("alice", "bob")]
        web = Subscription(alice, "laptop", "webpush", "https://push.example/1", "k", "a")
        self.assertTrue(await self.store.subscribe(web, 2))
        self.assertTrue(await self.store.subscribe(Subscription(alice, "laptop", "webpush",
                                                                "https://push.example/2",
                                                                "k", "a"), 2))
        self.assertTrue(await self.store.subscribe(Subscription(alice, "phone", "fcm", "t"), 2))
        self.assertFalse(await self.store.subscribe(Subscription(alice, "tablet", "fcm", "u"), 2))
        targets = await self.store.push_targets([alice, bob], 0, {alice: bob, bob: alice})
        self.assertEqual(sorted(s.endpoint for s in targets[alice].subscriptions),
                         ["https://push.example/2", "t"])
        self.assertNotIn(bob, targets)
        await self.store.subscription_gone(web)  # replaced meanwhile: kept
        await self.store.unsubscribe(alice, "phone")
        targets = await self.store.push_targets([alice], 0, {alice: bob})
        self.assertEqual([s.endpoint for s in targets[alice].subscriptions],
                         ["https://push.example/2"])

    async def test_mutes_and_unread_counts_of_push_targets(self):
        alice, bob = [await self.store.create_user(n, HASH) for n in ("alice", "bob")]
        await self.store.subscribe(Subscription(alice, "d", "fcm", "t"), 10)
        await self.store.mute(alice, 0, bob, -1)
        await self.store.mute(alice, 7, 0, 5000)
        await self.store.mute(alice, 8, 0, 1000)
        self.assertEqual(await self.store.mutes(alice, 2000), [(0, bob, -1), (7, 0, 5000)])
        await self.store.save_offline([(alice, MID, "{}"), (alice, MID + 1, "{}")])
        one = (await self.store.push_targets([alice], 0, {alice: bob}))[alice]
        group = (await self.store.push_targets([alice], 7, {}))[alice]
        self.assertEqual((one.muted_until, one.unread, group.muted_until), (-1, 2, 5000))
        await self.store.mute(alice, 0, bob, 0)
        self.assertEqual((await self.store.push_targets([alice], 0, {alice: bob}))[alice]
                         .muted_until, 0)


    async def test_mutes_asked_at_one_moment_are_one_interaction_each_at_its_own_time(self):
        alice, bob = [await self.store.create_user(n, HASH) for n in ("alice", "bob")]
        await self.store.mute(alice, 7, 0, 5000)
        await self.store.mute(bob, 0, alice, 3000)
        calls = self.store.stats.store_calls.get("mutes")
        before = sum(calls.counts) if calls else 0
        mutes = await gatherResults([Deferred.fromCoroutine(self.store.mutes(user, now))
                                     for user, now in ((alice, 4000), (bob, 4000),
                                                       (bob, 2000), (alice, 6000))])
        self.assertEqual(mutes, [[(7, 0, 5000)], [], [(0, alice, 3000)], []])
        self.assertEqual(sum(self.store.stats.store_calls["mutes"].counts), before + 1)

class SQLitePushStoreTests(PushStoreTests, TestCase):
    def url(self) -> str:
        return f"sqlite:{self.mktemp()}.sqlite3"


class MySQLPushStoreTests(PushStoreTests, TestCase):
    def url(self) -> str:
        return mysql_database()

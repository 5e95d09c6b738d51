"""The push package's parts on their own: which endpoints are allowed, the bounded queue
(dropping, retrying with back-off, giving up), VAPID headers and the FCM token's refresh."""

import os

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.push import fcm
from chatd.push.endpoints import EndpointPolicy, EndpointRefused, allowed_address, parse
from chatd.push.queue import BACKOFF_SECONDS, Outcome, PushQueue
from chatd.push.vapid import VapidKey
from chatd.push.webpush import valid_keys
from tests.pushservice import Browser

STRICT = EndpointPolicy()


class EndpointTests(SynchronousTestCase):

    def test_https_only_unless_allowed(self):
        self.assertEqual(parse("https://push.example.com/x", STRICT),
                         ("https", "push.example.com", 443))
        for url in ("http://push.example.com/x", "ftp://push.example.com/", "https:///x",
                    "https://user:pw@push.example.com/", "https://h:99999/",
                    "https://push.example.com/" + "x" * 3000):
            self.assertRaises(EndpointRefused, parse, url, STRICT)
        self.assertEqual(parse("http://h:8080/x", EndpointPolicy(allow_http=True)),
                         ("http", "h", 8080))

    def test_only_public_addresses_unless_allowed(self):
        for address in ("127.0.0.1", "10.0.0.1", "192.168.1.1", "172.16.0.1", "169.254.169.254",
                        "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1",
                        "100.64.0.1"):
            self.assertFalse(allowed_address(address, STRICT), address)
            self.assertTrue(allowed_address(address, EndpointPolicy(allow_private=True)))
        for address in ("8.8.8.8", "2001:4860:4860::8888"):
            self.assertTrue(allowed_address(address, STRICT), address)


class QueueTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.clock = Clock()
        self.queue = PushQueue(self.clock, capacity=3, concurrency=1, retries=2)

    def test_a_full_queue_drops_and_counts(self):
        hanging: Deferred[tuple[Outcome, float]] = Deferred()
        self.assertTrue(self.queue.offer(lambda: hanging))  # running, not waiting
        offered = [self.queue.offer(lambda: succeed((Outcome.SENT, 0.0))) for _ in range(5)]
        self.assertEqual(offered, [True, True, True, False, False])
        self.assertEqual((self.queue.stats.dropped, self.queue.length()), (2, 4))
        hanging.callback((Outcome.SENT, 0.0))
        self.assertEqual((self.queue.stats.outcomes["sent"], self.queue.length()), (4, 0))

    def test_retries_back_off_then_give_up(self):
        attempts = []

        def job() -> Deferred[tuple[Outcome, float]]:
            attempts.append(self.clock.seconds())
            return succeed((Outcome.RETRY, 0.0))
        self.queue.offer(job)
        self.clock.advance(BACKOFF_SECONDS)
        self.clock.advance(2 * BACKOFF_SECONDS)
        self.clock.advance(100)
        self.assertEqual(attempts, [0, BACKOFF_SECONDS, 3 * BACKOFF_SECONDS])
        self.assertEqual((self.queue.stats.retries, self.queue.stats.outcomes["failed"]), (2, 1))

    def test_retry_after_is_honoured_and_stop_forgets_retries(self):
        attempts = []

        def job() -> Deferred[tuple[Outcome, float]]:
            attempts.append(self.clock.seconds())
            return succeed((Outcome.RETRY, 30.0))
        self.queue.offer(job)
        self.clock.advance(29)
        self.assertEqual(attempts, [0])
        self.clock.advance(1)
        self.assertEqual(attempts, [0, 30])
        self.queue.stop()
        self.clock.advance(1000)
        self.assertEqual((attempts, self.clock.getDelayedCalls()), ([0, 30], []))


class KeyTests(SynchronousTestCase):

    def test_the_vapid_key_is_made_once_and_headers_are_cached(self):
        path = self.mktemp()
        key = VapidKey(path, "mailto:ops@example.com")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(VapidKey(path, "mailto:ops@example.com").public_key, key.public_key)
        header = key.authorization("https://push.example.com", now=1000)
        self.assertTrue(header.startswith("vapid t=") and header.endswith(key.public_key))
        self.assertEqual(key.authorization("https://push.example.com", now=2000), header)
        self.assertNotEqual(key.authorization("https://push.example.com", now=50_000), header)

    def test_a_file_that_is_not_a_key_stops_the_node(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a key")
        self.assertRaises(ValueError, VapidKey, path, "mailto:ops@example.com")

    def test_subscription_keys(self):
        keys = Browser("https://x").json()["keys"]
        self.assertTrue(valid_keys(keys["p256dh"], keys["auth"]))
        self.assertFalse(valid_keys(keys["p256dh"], "AAAA"))
        self.assertFalse(valid_keys("B" * 87, keys["auth"]))
        self.assertFalse(valid_keys("!!", keys["auth"]))

    def test_the_fcm_token_is_renewed_before_it_expires(self):
        token = fcm.AccessToken()
        self.assertFalse(token.fresh(now=0))
        token.update({"access_token": "a", "expires_in": 3600}, now=0)
        self.assertTrue(token.fresh(now=3600 - fcm.REFRESH_BEFORE - 1))
        self.assertFalse(token.fresh(now=3600 - fcm.REFRESH_BEFORE))

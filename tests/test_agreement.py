"""chatd.cluster.agreement on a fake clock: a newcomer waits for the answers its Hello was
counted, refuses on any difference, joins when they agree or do not answer in time; a node of
the cluster answers newcomers and reports differences that appear later until it has not heard
the other node for a while. (The same over real Redis and processes: test_cluster_agreement.)"""

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatd.cluster.agreement import (
    ANNOUNCE_SECONDS,
    FORGET_SECONDS,
    JOIN_SECONDS,
    Agreement,
    differences,
)
from chatd.cluster.envelope import Hello, Present, decode_agreement

SETTINGS: dict[str, Any] = {"redis-db": 0, "key-prefix": "chatd:", "database": "d1",
                            "history-days": 90, "max-devices": 5}


class Channel:
    """The agreement channel as one node sees it: what it published, and how many listeners
    PUBLISH counts."""

    def __init__(self, listeners: int) -> None:
        self.listeners = listeners
        self.sent: list[Any] = []

    def publish(self, letter: bytes) -> Deferred[int]:
        self.sent.append(decode_agreement(letter))
        return succeed(self.listeners)


class AgreementTests(SynchronousTestCase):

    def node(self, listeners: int = 1, node_id: int = 1, **settings: Any
             ) -> tuple[Agreement, Channel, Clock, list[list[str]]]:
        clock = Clock()
        agreement = Agreement(b"%d.aaaa" % node_id, node_id, {**SETTINGS, **settings}, clock)
        refusals: list[list[str]] = []
        agreement.on_refused = refusals.append
        channel = Channel(listeners)
        agreement.connected(channel.publish)
        return agreement, channel, clock, refusals

    def joined(self) -> tuple[Agreement, Channel, Clock]:
        agreement, channel, clock, _ = self.node()
        self.assertTrue(agreement.joined)
        del channel.sent[:]
        return agreement, channel, clock

    def test_a_node_alone_joins_at_once_and_announces_itself_every_few_seconds(self):
        agreement, channel, clock, refusals = self.node(listeners=1)
        self.assertTrue(agreement.joined)
        self.assertEqual(channel.sent, [Hello(b"1.aaaa", 1, SETTINGS),
                                        Present(b"1.aaaa", 1, SETTINGS)])
        clock.advance(ANNOUNCE_SECONDS)
        self.assertEqual(channel.sent[-1], Present(b"1.aaaa", 1, SETTINGS))
        self.assertEqual(refusals, [])

    def test_a_newcomer_waits_for_every_listener_then_joins(self):
        agreement, channel, clock, refusals = self.node(listeners=3)
        agreement.heard(Present(b"2.bbbb", 2, SETTINGS).encode())
        self.assertFalse(agreement.joined)
        agreement.heard(Present(b"3.cccc", 3, SETTINGS).encode())
        self.assertTrue(agreement.joined)
        self.assertEqual((refusals, agreement.conflicts()), ([], []))

    def test_a_newcomer_joins_when_a_listener_does_not_answer_in_time(self):
        agreement, channel, clock, refusals = self.node(listeners=2)
        clock.advance(JOIN_SECONDS - 0.1)
        self.assertFalse(agreement.joined)
        clock.advance(0.1)
        self.assertTrue(agreement.joined)

    def test_a_newcomer_refuses_on_any_difference_naming_both_nodes(self):
        agreement, channel, clock, refusals = self.node(listeners=3, node_id=2, **{
            "redis-db": 2, "max-devices": 3})
        agreement.heard(Present(b"1.bbbb", 1, SETTINGS).encode())
        agreement.heard(Present(b"2.cccc", 2, SETTINGS).encode())
        self.assertEqual(refusals, [[
            "Redis database number (--redis URL's /DB) is 2 on node 2.aaaa but 0 on node "
            "1.bbbb",
            "--max-devices is 3 on node 2.aaaa but 5 on node 1.bbbb",
            "node id 2 (--node-id) is used by both node 2.aaaa and node 2.cccc",
            "Redis database number (--redis URL's /DB) is 2 on node 2.aaaa but 0 on node "
            "2.cccc",
            "--max-devices is 3 on node 2.aaaa but 5 on node 2.cccc"]])
        self.assertFalse(agreement.joined)
        clock.advance(ANNOUNCE_SECONDS)
        self.assertEqual(channel.sent, [Hello(b"2.aaaa", 2, agreement.settings)],
                         "a refused node never announces itself")

    def test_a_node_joining_at_the_same_time_answers_with_its_hello(self):
        """Nodes started together each hear the other's Hello (a newcomer sends no Present):
        no waiting for JOIN_SECONDS."""
        agreement, channel, clock, refusals = self.node(listeners=2)
        agreement.heard(Hello(b"2.bbbb", 2, SETTINGS).encode())
        self.assertTrue(agreement.joined)
        self.assertEqual(agreement.peers(), set(), "a peer once it says it is in")
        agreement.heard(Present(b"2.bbbb", 2, SETTINGS).encode())
        self.assertEqual(agreement.peers(), {b"2.bbbb"})

    def test_two_newcomers_that_differ_both_refuse(self):
        agreement, channel, clock, refusals = self.node(listeners=2)
        agreement.heard(Hello(b"2.bbbb", 2, {**SETTINGS, "history-days": 30}).encode())
        clock.advance(JOIN_SECONDS)
        self.assertEqual(refusals, [["--history-days is 90 on node 1.aaaa but 30 on node "
                                     "2.bbbb"]])

    def test_joining_waits_for_every_setting_and_for_the_bus(self):
        clock = Clock()
        agreement = Agreement(b"1.aaaa", 1, {k: v for k, v in SETTINGS.items()
                                             if k != "database"}, clock)
        channel = Channel(1)
        agreement.known("database", "d1")
        self.assertFalse(agreement.joined, "not connected")
        agreement.disconnected()
        agreement.connected(channel.publish)
        self.assertTrue(agreement.joined)
        self.assertEqual(channel.sent[0], Hello(b"1.aaaa", 1, SETTINGS))

    def test_joining_starts_over_after_a_lost_connection(self):
        agreement, channel, clock, refusals = self.node(listeners=2)
        agreement.disconnected()
        clock.advance(JOIN_SECONDS)
        self.assertFalse(agreement.joined)
        agreement.connected(channel.publish)
        self.assertEqual(len([s for s in channel.sent if type(s) is Hello]), 2)
        agreement.heard(Present(b"2.bbbb", 2, SETTINGS).encode())
        self.assertTrue(agreement.joined)

    def test_a_node_of_the_cluster_answers_newcomers_and_only_warns_about_them(self):
        agreement, channel, clock = self.joined()
        agreement.heard(Hello(b"2.bbbb", 2, {**SETTINGS, "redis-db": 1}).encode())
        self.assertEqual(channel.sent, [Present(b"1.aaaa", 1, SETTINGS)])
        self.assertEqual(agreement.conflicts(), [], "the newcomer refuses: nothing failing")

    def test_a_difference_that_appears_later_is_reported_until_that_node_is_gone(self):
        agreement, channel, clock = self.joined()
        other = Present(b"1.bbbb", 1, SETTINGS).encode()
        agreement.heard(other)
        self.assertEqual(agreement.conflicts(),
                         ["node id 1 (--node-id) is used by both node 1.aaaa and node 1.bbbb"])
        self.assertEqual(channel.sent, [Present(b"1.aaaa", 1, SETTINGS)],
                         "announced at once, for the other node to see it too")
        agreement.heard(other)
        self.assertEqual(len(channel.sent), 1, "once per difference")
        clock.advance(FORGET_SECONDS)
        self.assertEqual(len(agreement.conflicts()), 1)
        clock.advance(1)
        self.assertEqual(agreement.conflicts(), [])

    def test_a_difference_that_is_gone_is_cleared(self):
        agreement, channel, clock = self.joined()
        agreement.heard(Present(b"2.bbbb", 2, {**SETTINGS, "max-devices": 9}).encode())
        self.assertEqual(len(agreement.conflicts()), 1)
        agreement.heard(Present(b"2.bbbb", 2, SETTINGS).encode())
        self.assertEqual(agreement.conflicts(), [])

    def test_its_own_letters_and_unknown_settings_are_ignored(self):
        agreement, channel, clock = self.joined()
        agreement.heard(Present(b"1.aaaa", 1, {**SETTINGS, "redis-db": 7}).encode())
        agreement.heard(Present(b"2.bbbb", 2, {"redis-db": 0, "colour": "blue"}).encode())
        agreement.heard(b"P garbage")
        self.assertEqual(agreement.conflicts(), [])

    def test_differences_compare_what_both_name(self):
        letter = Present(b"2.bbbb", 2, {"history-days": 30})
        self.assertEqual(differences(b"1.aaaa", 1, {"history-days": 90, "max-devices": 5},
                                     letter),
                         ["--history-days is 90 on node 1.aaaa but 30 on node 2.bbbb"])

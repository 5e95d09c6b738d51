"""ChatProtocol on a StringTransport and a Clock: framing, limits, errors, rate limit, reaper.

The node is the real one (build_node on a SQLite file) with the Clock as its reactor; nothing
here logs in through the service, so no request needs the database or a hashing thread.
"""

import os
import subprocess
import sys
from typing import Any

import ujson
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from chatd.tap import Options, build_node

MAX_FRAME = 65536
RATE, BURST = 2000, 4000  # docs/protocol.md, *Limits*
PRELOGIN_TIMEOUT, IDLE_TIMEOUT = 300, 90
BEAT = b'{"msgid":18}'

ERRMSG = {100: "frame is not valid UTF-8", 101: "frame is not valid JSON",
          102: "frame is not a JSON object", 103: "missing msgid", 104: "unknown msgid",
          105: "missing field", 106: "field has the wrong type", 107: "field is out of range",
          108: "frame too large", 109: "too many requests", 110: "not logged in"}


class TcpTransport(StringTransport):
    """A StringTransport that, like a TCP one, takes socket options."""

    nodelay = keepalive = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.nodelay = enabled

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keepalive = enabled


def padded(size: int) -> bytes:
    """A HEARTBEAT frame of exactly `size` bytes (terminator not included)."""
    return BEAT[:-1] + b',"pad":"' + b"x" * (size - len(BEAT) - 9) + b'"}'


class ProtocolTests(TestCase):

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)
        options = Options()
        options.parseOptions(["--db", f"sqlite:{self.mktemp()}.sqlite3", "--password-cost", "1"])
        self.node = build_node(options, self.clock)
        self.addCleanup(self.node.store.close)
        self.factory = self.node.factory

    def connect(self, transport: StringTransport | None = None):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = transport or StringTransport()
        proto.makeConnection(transport)
        self.addCleanup(self.disconnect, proto)
        return proto, transport

    def disconnect(self, proto) -> None:
        if proto.connected:
            proto.connectionLost(Failure(ConnectionDone()))

    def replies(self, transport: StringTransport) -> list[dict[str, Any]]:
        """Every frame written so far (and clear them): each one a JSON object line."""
        data = transport.value()
        transport.clear()
        if not data:
            return []
        self.assertTrue(data.endswith(b"\n"), data[-80:])
        frames = [ujson.loads(line) for line in data[:-1].split(b"\n")]
        for frame in frames:
            self.assertIsInstance(frame, dict)
        return frames

    def send(self, data: bytes, transport: StringTransport | None = None):
        proto, transport = self.connect(transport)
        proto.dataReceived(data)
        return self.replies(transport), transport

    def assertError(self, frame: dict[str, Any], errno: int, ref: int | None = None) -> None:
        self.assertEqual((frame["msgid"], frame.get("errno")), (MsgId.ERROR, errno), frame)
        self.assertTrue(frame["errmsg"].startswith(ERRMSG[errno]), frame)
        self.assertEqual(frame.get("ref"), ref, frame)

    # framing

    def test_every_frame_written_counts_in_the_bytes_sent_until_the_connection_ends(self):
        proto, transport = self.connect()
        stats = self.factory.stats
        before = stats.bytes_out
        proto.send({"msgid": MsgId.ERROR, "errno": 1})
        proto.send_data(b'{"msgid":41,"cid":"c","mid":1,"errno":0}\n')
        self.assertEqual(stats.bytes_out - before, len(transport.value()))
        self.disconnect(proto)
        proto.send_data(b'{"msgid":41,"cid":"c","mid":2,"errno":0}\n')
        proto.send({"msgid": MsgId.ERROR, "errno": 1})
        self.assertEqual(stats.bytes_out - before, len(transport.value()))
        self.assertEqual(len(self.replies(transport)), 2)

    def test_lf_crlf_and_nul_end_frames(self):
        replies, transport = self.send(BEAT + b"\n" + BEAT + b"\r\n" + BEAT + b"\0")
        self.assertEqual([f["msgid"] for f in replies], [MsgId.HEARTBEAT] * 3)
        self.assertFalse(transport.disconnecting)

    def test_empty_frames_are_ignored(self):
        replies, transport = self.send(b"\n\r\n\0\0\n   \n\t\r\n" + BEAT + b"\n\n")
        self.assertEqual([f["msgid"] for f in replies], [MsgId.HEARTBEAT])
        self.assertFalse(transport.disconnecting)

    def test_a_frame_split_across_many_reads(self):
        proto, transport = self.connect()
        data = b'{"msgid": 18, "note": "split \xe4\xb8\xad"}\r\n'
        for i in range(len(data) - 1):
            proto.dataReceived(data[i:i + 1])
            self.assertEqual(transport.value(), b"")
        proto.dataReceived(data[-1:])
        self.assertEqual([f["msgid"] for f in self.replies(transport)], [MsgId.HEARTBEAT])

    def test_several_frames_in_one_read_are_answered_in_order(self):
        replies, _ = self.send(BEAT + b"\n" + b'{"msgid":99}\0' + b"[]\r\n" + BEAT + b"\n"
                               + BEAT[:5])
        self.assertEqual([(f["msgid"], f.get("errno")) for f in replies],
                         [(MsgId.HEARTBEAT, None), (MsgId.ERROR, 104), (MsgId.ERROR, 102),
                          (MsgId.HEARTBEAT, None)])

    def test_server_frames_are_compact_and_end_in_lf(self):
        proto, transport = self.connect()
        proto.dataReceived(BEAT + b"\n")
        self.assertEqual(transport.value(), b'{"msgid":18,"time":1000000000}\n')

    # frame size

    def test_an_oversized_frame_gets_108_and_closes_the_connection(self):
        replies, transport = self.send(BEAT + b"\n" + padded(MAX_FRAME + 1) + b"\n"
                                       + BEAT + b"\n")
        self.assertEqual(len(replies), 2, replies)
        self.assertEqual(replies[0]["msgid"], MsgId.HEARTBEAT)
        self.assertError(replies[1], 108)
        self.assertTrue(transport.disconnecting)

    def test_a_partial_frame_growing_past_the_limit_closes_the_connection(self):
        proto, transport = self.connect()
        for _ in range(MAX_FRAME // 1024):
            proto.dataReceived(b"x" * 1024)
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(b"x")
        (reply,) = self.replies(transport)
        self.assertError(reply, 108)
        self.assertTrue(transport.disconnecting)

    def test_the_frame_limit_comes_from_the_option(self):
        options = Options()
        options.parseOptions(["--db", f"sqlite:{self.mktemp()}.sqlite3", "--max-frame", "1024"])
        node = build_node(options, self.clock)
        self.addCleanup(node.store.close)
        self.factory = node.factory
        replies, transport = self.send(padded(1024) + b"\n" + padded(1025) + b"\n")
        self.assertEqual(replies[0]["msgid"], MsgId.HEARTBEAT)
        self.assertError(replies[1], 108)
        self.assertTrue(transport.disconnecting)

    def test_a_frame_of_exactly_the_limit_is_accepted_with_every_terminator(self):
        for end in (b"\n", b"\0", b"\r\n"):
            replies, transport = self.send(padded(MAX_FRAME) + end)
            self.assertEqual([f["msgid"] for f in replies], [MsgId.HEARTBEAT], end)
            self.assertFalse(transport.disconnecting, end)

    def test_a_frame_of_exactly_the_limit_is_accepted_when_its_crlf_is_split(self):
        proto, transport = self.connect()
        proto.dataReceived(padded(MAX_FRAME) + b"\r")
        proto.dataReceived(b"\n")
        self.assertEqual([f["msgid"] for f in self.replies(transport)], [MsgId.HEARTBEAT])
        self.assertFalse(transport.disconnecting)

    # bad frames: ERROR_MSG, connection stays open

    def assertRefusedFrames(self, errno: int, *frames: bytes, ref: int | None = None) -> None:
        for data in frames:
            replies, transport = self.send(data + b"\n")
            self.assertEqual(len(replies), 1, (data, replies))
            self.assertError(replies[0], errno, ref)
            self.assertFalse(transport.disconnecting, data)

    def test_100_frame_is_not_valid_utf8(self):
        self.assertRefusedFrames(100, b"\xff\xfe", b'{"msgid":18,"x":"\xc3"}', b"\x80abc",
                                 b'{"msgid":18,"x":"\xc0\x80"}')

    def test_100_for_utf8_encoded_surrogates(self):
        # ED A0 80 is U+D800 encoded as if it were a character: not UTF-8 (RFC 3629).
        self.assertRefusedFrames(100, b'{"msgid":18,"x":"\xed\xa0\x80"}',
                                 b'{"msgid":4,"name":"\xed\xb0\x80","password":"p"}')

    def test_101_frame_is_not_valid_json(self):
        self.assertRefusedFrames(101, b'{"msgid":18', b"hello", b"{'msgid': 18}",
                                 BEAT + b" trailing", b'{"msgid":18,}')

    def test_102_frame_is_not_a_json_object(self):
        self.assertRefusedFrames(102, b"[]", b"[18]", b'"msgid"', b"18", b"null", b"true")

    def test_103_missing_msgid(self):
        self.assertRefusedFrames(103, b"{}", b'{"id":1}', b'{"msgid":null}')

    def test_104_unknown_msgid_including_server_to_client_ones(self):
        for m in (0, -1, 41, 43, 52, 99, 2, 5, 11, 12, 16, 20, 22, 24, 26, 30, 32, 34, 36, 37, 39):
            self.assertRefusedFrames(104, b'{"msgid":%d}' % m, ref=m)

    def test_106_msgid_of_the_wrong_type(self):
        self.assertRefusedFrames(106, b'{"msgid":"18"}', b'{"msgid":true}',
                                 b'{"msgid":18.0}', b'{"msgid":[18]}')

    def test_105_missing_field_names_it_and_refs_the_request(self):
        replies, _ = self.send(b'{"msgid":4,"password":"p"}\n')
        self.assertError(replies[0], 105, ref=4)
        self.assertEqual(replies[0]["errmsg"], "missing field: name")

    def test_106_wrong_type_names_the_field_and_refs_the_request(self):
        replies, _ = self.send(b'{"msgid":1,"id":"1","password":"p"}\n')
        self.assertError(replies[0], 106, ref=1)
        self.assertEqual(replies[0]["errmsg"], "field has the wrong type: id")

    def test_107_out_of_range_names_the_field_and_refs_the_request(self):
        replies, _ = self.send(ujson.dumps({"msgid": MsgId.REG, "name": "n" * 51,
                                            "password": "p"}).encode() + b"\n")
        self.assertError(replies[0], 107, ref=4)
        self.assertEqual(replies[0]["errmsg"], "field is out of range: name")

    def test_a_bad_frame_does_not_stop_the_next_one(self):
        replies, _ = self.send(b"\xff\n{\n[]\n{}\n" + BEAT + b"\n")
        self.assertEqual([f.get("errno") for f in replies], [100, 101, 102, 103, None])

    def test_a_lone_surrogate_in_an_echoed_field_still_gets_an_error_frame(self):
        proto, transport = self.connect()
        proto.dataReceived(b'{"msgid":6,"to":2,"msg":"m","cid":"\\ud800"}\n')
        (reply,) = self.replies(transport)
        self.assertEqual(reply["msgid"], MsgId.ERROR)
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(BEAT + b"\n")
        self.assertEqual([f["msgid"] for f in self.replies(transport)], [MsgId.HEARTBEAT])

    def test_a_name_with_a_lone_surrogate_is_refused_at_once(self):
        replies, transport = self.send(b'{"msgid":4,"name":"a\\udc00","password":"p"}\n')
        self.assertEqual(len(replies), 1, replies)
        self.assertEqual(replies[0]["msgid"], MsgId.ERROR)
        self.assertIn(replies[0]["errno"], (100, 101, 106, 107))
        self.assertFalse(transport.disconnecting)

    # before login

    def test_heartbeat_is_answered_before_login_with_the_server_clock(self):
        self.clock.advance(0.25)
        replies, _ = self.send(BEAT + b"\n")
        self.assertEqual(replies, [{"msgid": MsgId.HEARTBEAT, "time": 1_000_000_250}])

    def test_requests_before_login_get_110_with_ref(self):
        for msgid in (3, 6, 7, 8, 9, 10, 17, 19, 21):
            replies, transport = self.send(
                ujson.dumps({"msgid": msgid, "to": 2, "msg": "m", "friendid": 2,
                             "groupid": 1, "groupname": "g", "mid": 1}).encode() + b"\n")
            self.assertEqual(len(replies), 1)
            self.assertError(replies[0], 110, ref=msgid)
            self.assertFalse(transport.disconnecting)

    def test_refused_chat_before_login_carries_its_cid(self):
        replies, _ = self.send(b'{"msgid":6,"to":2,"msg":"m","cid":"c-1"}\n')
        self.assertError(replies[0], 110, ref=6)
        self.assertEqual(replies[0]["cid"], "c-1")

    # rate limit

    def test_a_burst_over_4000_requests_gets_109_for_the_rest(self):
        replies, transport = self.send((BEAT + b"\n") * (BURST + 25))
        self.assertEqual([f["msgid"] for f in replies[:BURST]], [MsgId.HEARTBEAT] * BURST)
        self.assertEqual(len(replies), BURST + 25)
        for frame in replies[BURST:]:
            self.assertError(frame, 109)
        self.assertFalse(transport.disconnecting)

    def test_requests_are_served_again_after_the_clock_advances(self):
        proto, transport = self.connect()
        proto.dataReceived((BEAT + b"\n") * (BURST + 1))
        self.assertEqual(self.replies(transport)[-1]["errno"], Errno.RATE_LIMITED)
        self.clock.advance(1)
        proto.dataReceived(BEAT + b"\n")
        self.assertEqual([f["msgid"] for f in self.replies(transport)], [MsgId.HEARTBEAT])

    def test_2000_requests_a_second_are_sustained(self):
        proto, transport = self.connect()
        proto.dataReceived((BEAT + b"\n") * BURST)
        self.assertEqual(len(self.replies(transport)), BURST)
        for _ in range(3):
            self.clock.advance(1)
            proto.dataReceived((BEAT + b"\n") * RATE)
            self.assertEqual({f["msgid"] for f in self.replies(transport)}, {MsgId.HEARTBEAT})
        self.clock.advance(1)
        proto.dataReceived((BEAT + b"\n") * (RATE + 1))
        replies = self.replies(transport)
        self.assertEqual([f["msgid"] for f in replies[:RATE]], [MsgId.HEARTBEAT] * RATE)
        self.assertError(replies[RATE], 109)

    def test_the_rate_limit_is_per_connection(self):
        self.send((BEAT + b"\n") * (BURST + 1))
        replies, _ = self.send(BEAT + b"\n")
        self.assertEqual([f["msgid"] for f in replies], [MsgId.HEARTBEAT])

    # idle connections

    def test_a_silent_connection_that_never_logged_in_is_closed_after_300_s(self):
        _, transport = self.connect()
        self.clock.advance(PRELOGIN_TIMEOUT)
        self.factory.close_idle()
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.factory.close_idle()
        self.assertTrue(transport.disconnecting)

    def test_any_frame_restarts_the_silence(self):
        proto, transport = self.connect()
        self.clock.advance(200)
        proto.dataReceived(b"\n")
        self.clock.advance(200)
        self.factory.close_idle()
        self.assertFalse(transport.disconnecting)
        self.clock.advance(101)
        self.factory.close_idle()
        self.assertTrue(transport.disconnecting)

    def test_the_factory_reaps_idle_connections_on_its_own(self):
        self.factory.doStart()
        self.addCleanup(self.factory.doStop)
        _, quiet = self.connect()
        talker, busy = self.connect()
        for _ in range(70):
            self.clock.advance(5)
            talker.dataReceived(BEAT + b"\n")
        self.assertTrue(quiet.disconnecting)
        self.assertFalse(busy.disconnecting)

    def test_proto_2_sessions_are_closed_after_the_idle_timeout(self):
        proto, transport = self.connect()
        proto.login(1, "alice", 2)
        self.clock.advance(IDLE_TIMEOUT)
        self.factory.close_idle()
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.factory.close_idle()
        self.assertTrue(transport.disconnecting)

    def test_original_dialect_sessions_are_never_closed_for_silence(self):
        proto, transport = self.connect()
        proto.login(1, "alice", 1)
        self.clock.advance(10 * PRELOGIN_TIMEOUT)
        self.factory.close_idle()
        self.assertFalse(transport.disconnecting)

    def test_a_closed_connection_is_forgotten(self):
        proto, _ = self.connect()
        self.assertIn(proto, self.factory.sessions)
        self.disconnect(proto)
        self.assertNotIn(proto, self.factory.sessions)

    # ending a session (a kick, a ban, a password change)

    def ended(self, released: Deferred) -> StringTransport:
        """A session ended by the node while releasing its device takes `released`."""
        self.factory.end = lambda session: released
        proto, transport = self.connect()
        proto.login(1, "alice", 2)
        proto.end()
        return transport

    def test_an_ended_session_closes_once_its_device_is_released(self):
        released = Deferred()
        transport = self.ended(released)
        self.assertFalse(transport.disconnecting, "still listed as a device: not closed yet")
        released.callback(None)
        self.assertTrue(transport.disconnecting)

    def test_an_ended_session_closes_after_2_s_when_the_release_is_not_answered(self):
        transport = self.ended(Deferred())
        self.clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    # sockets

    def test_tcp_nodelay_and_keepalive_are_set(self):
        _, transport = self.connect(TcpTransport())
        self.assertIs(transport.nodelay, True)
        self.assertIs(transport.keepalive, True)


# Run in a fresh interpreter: how CPython shares attribute names among a class's instances
# depends on how many were made before, which other tests in this process change.
SESSIONS_SCRIPT = r"""
import gc, sys
from twisted.internet import reactor, tcp
from twisted.internet.protocol import ClientFactory, Protocol
from chatd.tap import Options, build_node

def own_dict(o):
    slots = {id(getattr(o, name)) for cls in type(o).__mro__
             for name in cls.__dict__.get("__slots__", ()) if hasattr(o, name)}
    return any(type(r) is dict and id(r) not in slots for r in gc.get_referents(o))

options = Options()
options.parseOptions(["--db", "sqlite:" + sys.argv[1], "--password-cost", "1"])
node = build_node(options, reactor)
port = reactor.listenTCP(0, node.factory, interface="127.0.0.1")
N, answered = 200, []

class Client(Protocol):
    def connectionMade(self):
        self.transport.write(b'{"msgid":18}\n')
    def dataReceived(self, data):
        answered.append(1)
        if len(answered) == N:
            reactor.callLater(0.2, report)

def report():
    transports = [s.transport for s in node.factory.sessions]
    print(len(transports), sum(map(own_dict, transports)),
          sum(map(own_dict, node.factory.sessions)))
    reactor.stop()

for _ in range(N):
    reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(Client))
reactor.callLater(20, reactor.stop)
reactor.run()
"""


class SessionMemoryTests(TestCase):
    """Per-session memory (issue 23): a burst of real TCP connections on the chat port, each
    answered once, leaves neither transports nor sessions with attribute dicts of their own
    (0.8 KiB each)."""

    def test_a_burst_of_connections_keeps_attributes_shared(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        out = subprocess.run([sys.executable, "-c", SESSIONS_SCRIPT, self.mktemp()],
                             capture_output=True, text=True, timeout=60, env=env)
        self.assertEqual(out.stdout.split(), ["200", "0", "0"], out.stderr[-2000:])

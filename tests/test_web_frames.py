"""The WebSocket frames a client sends, as the node reads them (chatd.web.frames), and a
ChatSocket on a StringTransport that takes socket options as TCP does: what a client gets
back for each of them (RFC 6455)."""

import os

import ujson
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from chatd.tap import Options, build_node
from chatd.web.frames import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    FrameReader,
    MessageTooLarge,
    ProtocolViolation,
    close_code,
    frame,
)
from chatd.web.socket import ChatSocket
from tests.test_protocol_unit import TcpTransport

BEAT = b'{"msgid":18}'


def masked(payload: bytes, opcode: int = TEXT, final: bool = True,
           key: bytes | None = None) -> bytes:
    """A client's frame as a browser sends it: masked with a random key."""
    key = os.urandom(4) if key is None else key
    head = frame(payload, opcode, final=final)[:-len(payload) or None]
    head = bytes((head[0], head[1] | 0x80)) + head[2:]
    body = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return head + key + body


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's frames (final, unmasked) in what it wrote."""
    frames, pos = [], 0
    while pos < len(data):
        first, size, pos = data[pos], data[pos + 1], pos + 2
        if size >= 126:
            wide = 2 if size == 126 else 8
            size, pos = int.from_bytes(data[pos:pos + wide], "big"), pos + wide
        frames.append((first & 0x0F, data[pos:pos + size]))
        assert first & 0x80 and not first & 0x70, "final, no reserved bits"
        pos += size
    return frames


class FrameReaderTests(TestCase):

    def read(self, *chunks: bytes, limit: int = 1 << 20) -> list[tuple[int, bytes]]:
        reader = FrameReader(limit)
        return [event for chunk in chunks for event in reader.feed(chunk)]

    def violation(self, *chunks: bytes) -> int:
        return self.assertRaises(ProtocolViolation, self.read, *chunks).code

    def test_masked_messages_of_every_length_form_are_unmasked(self):
        """7-bit, 16-bit and 64-bit lengths, a random mask key each."""
        for size in (0, 1, 5, 125, 126, 65535, 65536, 70001):
            payload = bytes(i % 95 + 32 for i in range(size))
            self.assertEqual(self.read(masked(payload)), [(TEXT, payload)], size)

    def test_a_read_may_hold_several_messages_or_a_byte_of_one(self):
        wire = masked(b"one") + masked(b"two") + masked(b"x" * 300)
        self.assertEqual(self.read(wire), [(TEXT, b"one"), (TEXT, b"two"), (TEXT, b"x" * 300)])
        bytewise = [wire[i:i + 1] for i in range(len(wire))]
        self.assertEqual(self.read(*bytewise), self.read(wire))

    def test_fragments_are_gathered_with_control_frames_between_them(self):
        wire = (masked(b"in ", final=False) + masked(b"ping", PING)
                + masked(b"pa", CONTINUATION, final=False) + masked(b"", PONG)
                + masked(b"rts", CONTINUATION))
        self.assertEqual(self.read(wire), [(PING, b"ping"), (PONG, b""), (TEXT, b"in parts")])

    def test_empty_fragments_hold_no_memory(self):
        """A message that never ends, in empty fragments: what is kept stays the message."""
        reader = FrameReader(100)
        flood = masked(b"", CONTINUATION, final=False) * 10_000
        self.assertEqual(list(reader.feed(masked(b"x", final=False) + flood)), [])
        self.assertEqual(reader._gathered, b"x")
        self.assertEqual(list(reader.feed(masked(b"y", CONTINUATION))), [(TEXT, b"xy")])

    def test_a_utf8_character_may_be_split_between_fragments(self):
        text = "é".encode()
        wire = masked(text[:1], final=False) + masked(text[1:], CONTINUATION)
        self.assertEqual(self.read(wire), [(TEXT, text)])

    def test_binary_messages_come_as_they_are(self):
        self.assertEqual(self.read(masked(b"\xff\x00", BINARY)), [(BINARY, b"\xff\x00")])

    def test_a_message_past_the_limit_is_refused_from_its_header(self):
        self.assertEqual(self.read(masked(b"x" * 100), limit=100), [(TEXT, b"x" * 100)])
        header = masked(b"x" * 101)[:8]
        self.assertRaises(MessageTooLarge, self.read, header, limit=100)

    def test_fragments_past_the_limit_are_refused_before_the_message_ends(self):
        reader = FrameReader(100)
        self.assertEqual(list(reader.feed(masked(b"x" * 60, final=False))), [])
        with self.assertRaises(MessageTooLarge):
            list(reader.feed(masked(b"x" * 41, CONTINUATION, final=False)[:8]))

    def test_invalid_utf8_in_a_text_message_is_1007(self):
        self.assertEqual(self.violation(masked(b"\xff\xfe")), 1007)
        self.assertEqual(self.violation(masked(b"\xc3", final=False)
                                        + masked(b"(", CONTINUATION)), 1007)

    def test_what_rfc_6455_forbids_is_1002(self):
        cases = {
            "unmasked": frame(b"hello"),
            "reserved bit": bytes((0xC1,)) + masked(b"hello")[1:],
            "opcode 3": masked(b"x", 3),
            "opcode 11": masked(b"x", 0xB),
            "continuation of nothing": masked(b"x", CONTINUATION),
            "text inside a fragmented text": masked(b"a", final=False) + masked(b"b"),
            "fragmented ping": masked(b"x", PING, final=False),
            "ping over 125 bytes": masked(b"x" * 126, PING),
            "16-bit length under 126": bytes((0x81, 0xFE, 0, 5)) + b"\0" * 9,
            "64-bit length under 65536": bytes((0x81, 0xFF)) + (5).to_bytes(8, "big"),
            "64-bit length with its top bit": bytes((0x81, 0xFF, 0x80)) + b"\0" * 7,
        }
        for name, wire in cases.items():
            self.assertEqual(self.violation(wire), 1002, name)

    def test_close_codes(self):
        self.assertIsNone(close_code(b""))
        self.assertEqual(close_code((1001).to_bytes(2, "big") + b"bye"), 1001)
        self.assertEqual(close_code((4000).to_bytes(2, "big")), 4000)
        for payload in (b"\x03", (1005).to_bytes(2, "big"), (999).to_bytes(2, "big"),
                        (2000).to_bytes(2, "big")):
            self.assertEqual(self.assertRaises(ProtocolViolation, close_code, payload).code,
                             1002, payload)
        bad_reason = (1000).to_bytes(2, "big") + b"\xff"
        self.assertEqual(self.assertRaises(ProtocolViolation, close_code, bad_reason).code,
                         1007)


class ChatSocketTests(TestCase):
    """One upgraded connection, the node real (SQLite), the clock a Clock."""

    def setUp(self) -> None:
        self.clock = clock = Clock()
        clock.advance(1_000_000)
        options = Options()
        options.parseOptions(["--db", f"sqlite:{self.mktemp()}.sqlite3", "--password-cost", "1",
                              "--max-frame", "2048"])
        node = build_node(options, clock)
        self.addCleanup(node.store.close)
        self.socket = ChatSocket(node.factory, IPv4Address("TCP", "127.0.0.1", 40000))
        self.tcp = TcpTransport()
        self.tcp.registerProducer(self, True)  # as the HTTP channel is when the upgrade comes
        self.socket.makeConnection(self.tcp)
        self.addCleanup(self._lost)

    def _lost(self) -> None:
        self.socket.connectionLost(Failure(ConnectionDone()))

    def sent(self) -> list[tuple[int, bytes]]:
        """What the client got by the end of this turn (the session sends its frames of a
        turn together, at its end)."""
        self.clock.advance(0)
        frames = server_frames(self.tcp.value())
        self.tcp.clear()
        return frames

    def test_each_text_message_is_one_chat_frame_and_each_reply_one_message(self):
        self.socket.dataReceived(masked(BEAT) + masked(BEAT[:5], final=False))
        self.socket.dataReceived(masked(BEAT[5:], CONTINUATION))
        replies = self.sent()
        self.assertEqual([opcode for opcode, _ in replies], [TEXT, TEXT])
        self.assertEqual([ujson.loads(payload)["msgid"] for _, payload in replies], [18, 18])

    def test_a_ping_is_answered_with_its_payload_and_a_pong_is_ignored(self):
        self.socket.dataReceived(masked(b"are you there", PING) + masked(b"", PONG))
        self.assertEqual(self.sent(), [(PONG, b"are you there")])
        self.assertFalse(self.tcp.disconnecting)

    def test_a_binary_message_gets_errno_180_and_the_connection_stays(self):
        self.socket.dataReceived(masked(BEAT, BINARY) + masked(BEAT))
        (_, error), (_, beat) = self.sent()
        self.assertEqual(ujson.loads(error)["errno"], 180)
        self.assertEqual(ujson.loads(beat)["msgid"], 18)

    def test_the_peers_close_is_answered_with_its_code_and_nothing_follows(self):
        self.socket.dataReceived(masked((1001).to_bytes(2, "big"), CLOSE) + masked(BEAT))
        self.assertEqual(self.sent(), [(CLOSE, (1001).to_bytes(2, "big"))])
        self.assertTrue(self.tcp.disconnecting)
        self.socket.chat.send({"msgid": 18})
        self.socket.dataReceived(masked(BEAT))
        self.assertEqual(self.sent(), [], "nothing after the Close")

    def test_the_sessions_frames_of_the_turn_go_before_a_pong_and_a_close(self):
        """A ping or a Close in the same turn as a frame for the client comes after it."""
        self.socket.chat.send({"msgid": 18})
        self.socket.dataReceived(masked(b"p", PING) + masked(b"", CLOSE))
        self.assertEqual([opcode for opcode, _ in self.sent()], [TEXT, PONG, CLOSE])

    def test_a_close_without_a_code_is_answered_without_one(self):
        self.socket.dataReceived(masked(b"", CLOSE))
        self.assertEqual(self.sent(), [(CLOSE, b"")])

    def test_invalid_utf8_closes_with_1007_and_an_unmasked_frame_with_1002(self):
        self.socket.dataReceived(masked(BEAT) + masked(b"\xff") + masked(BEAT))
        (_, beat), close = self.sent()
        self.assertEqual(ujson.loads(beat)["msgid"], 18, "what came before is answered")
        self.assertEqual(close, (CLOSE, (1007).to_bytes(2, "big")))
        self.assertTrue(self.tcp.disconnecting)
        self.setUp()
        self.socket.dataReceived(frame(BEAT))
        self.assertEqual(self.sent(), [(CLOSE, (1002).to_bytes(2, "big"))])

    def test_a_message_past_max_frame_gets_errno_108_and_a_close(self):
        self.socket.dataReceived(masked(b"x" * 2049)[:8])
        (_, error), close = self.sent()
        self.assertEqual(ujson.loads(error)["errno"], 108)
        self.assertEqual(close, (CLOSE, (1000).to_bytes(2, "big")))
        self.assertTrue(self.tcp.disconnecting)

    def test_the_connection_has_the_chat_ports_socket_options(self):
        """No Nagle delay on small frames, keepalive for a browser that vanished: a WebSocket
        session's TCP connection is set up as a TCP session's is."""
        self.assertIs(self.tcp.nodelay, True)
        self.assertIs(self.tcp.keepalive, True)

    def test_each_line_written_at_once_is_its_own_message(self):
        self.socket.chat.transport.write(b'{"a":1}\n')
        self.socket.chat.transport.writeSequence([b'{"b":2}\n{"c":', b'3}\n'])
        self.assertEqual(self.sent(), [(TEXT, b'{"a":1}'), (TEXT, b'{"b":2}'), (TEXT, b'{"c":3}')])

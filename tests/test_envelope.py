"""chatd.cluster.envelope: every letter between nodes comes back equal from its channel's
decoder, the letters the router and the operator send keep today's bytes, and anything else
read on a channel (another channel's letter, a malformed one, arbitrary bytes) is dropped
with one warning and never raises."""

from collections.abc import Callable
from typing import Any

import ujson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.logger import Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from chatd.cluster import envelope
from chatd.cluster.envelope import (
    END_KINDS,
    BlockChanged,
    Broadcast,
    Copy,
    DeviceCopy,
    EndSession,
    GroupChanged,
    GroupCopy,
    Hello,
    Live,
    Present,
    Query,
    QueryReport,
    Reports,
    Spread,
    Stored,
    TakenOver,
    decode_agreement,
    decode_control,
    decode_node,
    decode_user,
    encode_copy,
    encode_device_copy,
    encode_group_copy,
    encode_live,
    encode_reports,
)

NODE = b"3.a1b2c3d4"
FRAME = b'{"msgid":13,"mid":77,"from":42,"msg":"hello there, how are you?","time":"12:00"}\n'
REPORT = {"node": "3.a1b2c3d4", "node_id": 3, "sessions": [[7, "ann", 2], [8, "bob", 1]]}
MAX_INT = (1 << 63) - 1

SETTINGS = {"redis-db": 1, "key-prefix": "chatd:", "database": "bac05100ec58ec1f",
            "history-days": 90, "max-devices": 5}

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "user": decode_user, "node": decode_node, "control": decode_control,
    "agreement": decode_agreement}

# One of every letter, with the channel it is read on.
LETTERS: list[tuple[str, Any]] = [
    ("user", Copy(123456789, NODE, 98765, FRAME)),
    ("user", Live(FRAME)),
    ("user", Stored()),
    ("user", DeviceCopy(NODE, FRAME)),
    ("user", TakenOver(NODE, "phone")),
    ("user", Spread()),
    ("node", GroupCopy(123456789, NODE, 98765, [7, 8, 9], FRAME)),
    ("node", Reports([1, 2, 3])),
    ("node", QueryReport(4, REPORT)),
    ("control", GroupChanged(12)),
    ("control", BlockChanged(7, 8, True)),
    ("control", EndSession(NODE, 7, "banned")),
    ("control", Broadcast(NODE, "maintenance at noon")),
    ("control", Query(NODE, 4)),
    ("agreement", Hello(NODE, 3, SETTINGS)),
    ("agreement", Present(NODE, 3, SETTINGS)),
]

# What the router and operator sent before this module (their expressions, copied as they
# are): the letters that keep their tag must keep their bytes, so that nodes switched to the
# envelope and the receivers' behaviour stay as they were.
TODAY: list[tuple[Any, bytes]] = [
    (Copy(123456789, NODE, 98765, FRAME), b"U %d %s %d\n" % (123456789, NODE, 98765) + FRAME),
    (Live(FRAME), b"N\n" + FRAME),
    (Stored(), b"O\n"),
    (DeviceCopy(NODE, FRAME), b"S %s\n" % NODE + FRAME),
    (TakenOver(NODE, "Ann's phone é"), b"K %s %s\n" % (NODE, "Ann's phone é".encode())),
    (Spread(), b"D\n"),
    (GroupCopy(123456789, NODE, 98765, [7], FRAME),
     b"G %d %s %d %s\n" % (123456789, NODE, 98765, b",".join(b"%d" % u for u in [7])) + FRAME),
    (GroupCopy(123456789, NODE, 98765, [7, 80, 900], FRAME),
     b"G %d %s %d %s\n" % (123456789, NODE, 98765,
                           b",".join(b"%d" % u for u in [7, 80, 900])) + FRAME),
    (Reports([5]), b"A " + b" ".join([b"5"])),
    (Reports([5, 60, 700]), b"A " + b" ".join([b"5", b"60", b"700"])),
    (QueryReport(4, REPORT), b"R %s " % b"4" + ujson.dumps(REPORT).encode()),
    (GroupChanged(12), b"C %d" % 12),
    (BlockChanged(7, 8, True), b"B %d %d %d" % (7, 8, True)),
    (BlockChanged(7, 8, False), b"B %d %d %d" % (7, 8, False)),
    (Query(NODE, 4), b"Q %s %d" % (NODE, 4)),
]

# Payloads each channel must drop: (channel, payload, the reason the warning gives).
UNKNOWN, USER, NODE_LETTER, CONTROL = ("an unknown letter", "a letter of the user channel",
                                      "a letter of the node channel",
                                      "a letter of the control channel")
MALFORMED: list[tuple[str, bytes, str]] = [
    # user channel
    ("user", b"", UNKNOWN),
    ("user", b"Z 1 2\n" + FRAME, UNKNOWN),
    ("user", b"u 1 3.ab 5\n" + FRAME, UNKNOWN),
    ("user", b"U 1 3.ab\n" + FRAME, "a malformed U letter"),  # no token
    ("user", b"U 1 3.ab 5 6\n" + FRAME, "a malformed U letter"),  # a field too many
    ("user", b"U x 3.ab 5\n" + FRAME, "a malformed U letter"),  # mid not a number
    ("user", b"U -1 3.ab 5\n" + FRAME, "a malformed U letter"),
    ("user", b"U 1 3.ab 5_0\n" + FRAME, "a malformed U letter"),  # int() would take it
    ("user", b"U 1 3.ab \t5\n" + FRAME, "a malformed U letter"),  # int() would take it
    ("user", b"U 1  5\n" + FRAME, "a malformed U letter"),  # no node to report to
    ("user", b"U  1 3.ab 5\n" + FRAME, "a malformed U letter"),  # two blanks
    ("user", b"U 1 3.ab 5", "a malformed U letter"),  # no newline, no frame
    ("user", b"U 1 3.ab 5\n", "a malformed U letter"),  # empty frame
    ("user", b"U 1 3.ab 5\n{}", "a malformed U letter"),  # frame without its newline
    ("user", b"Ux 1 3.ab 5\n" + FRAME, "a malformed U letter"),
    ("user", b"N", "a malformed N letter"),
    ("user", b"N\n", "a malformed N letter"),  # no frame
    ("user", b"N 3.ab\n" + FRAME, "a malformed N letter"),  # N has no fields
    ("user", b"O", "a malformed O letter"),
    ("user", b"O\n" + FRAME, "a malformed O letter"),  # O has no frame
    ("user", b"O 1\n", "a malformed O letter"),
    ("user", b"S\n" + FRAME, "a malformed S letter"),  # no origin
    ("user", b"S 3.ab", "a malformed S letter"),  # no frame
    ("user", b"S 3.ab x\n" + FRAME, "a malformed S letter"),
    ("user", b"K 3.ab\n", "a malformed K letter"),  # no device
    ("user", b"K 3.ab \n", "a malformed K letter"),  # empty device
    ("user", b"K  phone\n", "a malformed K letter"),  # no origin
    ("user", b"K 3.ab ph\xffone\n", "a malformed K letter"),  # not UTF-8
    ("user", b"K 3.ab phone", "a malformed K letter"),  # no newline
    ("user", b"K 3.ab phone\n" + FRAME, "a malformed K letter"),  # K has no frame
    ("user", b"D", "a malformed D letter"),
    ("user", b"D\n\n", "a malformed D letter"),
    # node channel
    ("node", b"", UNKNOWN),
    ("node", b"G 1 3.ab 5\n" + FRAME, "a malformed G letter"),  # no users
    ("node", b"G 1 3.ab 5 \n" + FRAME, "a malformed G letter"),  # empty list of users
    ("node", b"G 1 3.ab 5 7,,8\n" + FRAME, "a malformed G letter"),
    ("node", b"G 1 3.ab 5 7,8,\n" + FRAME, "a malformed G letter"),
    ("node", b"G 1 3.ab 5 7,x\n" + FRAME, "a malformed G letter"),  # uid not a number
    ("node", b"G 1 3.ab 5 7,-8\n" + FRAME, "a malformed G letter"),
    ("node", b"G 1 3.ab 5 7 8\n" + FRAME, "a malformed G letter"),  # a field too many
    ("node", b"G x 3.ab 5 7\n" + FRAME, "a malformed G letter"),
    ("node", b"G 1 3.ab x 7\n" + FRAME, "a malformed G letter"),  # token not a number
    ("node", b"G 1 3.ab 5 7", "a malformed G letter"),  # no frame
    ("node", b"A", "a malformed A letter"),  # no tokens
    ("node", b"A ", "a malformed A letter"),
    ("node", b"A 1  2", "a malformed A letter"),
    ("node", b"A 1 x", "a malformed A letter"),
    ("node", b"A 1 2\n", "a malformed A letter"),
    ("node", b"R 4", "a malformed R letter"),  # no report
    ("node", b"R x {}", "a malformed R letter"),
    ("node", b"R 4 [1, 2]", "a malformed R letter"),  # not an object
    ("node", b"R 4 {", "a malformed R letter"),
    ("node", b'R 4 {"a": "\xff"}', "a malformed R letter"),  # not UTF-8
    ("node", b"R 4 " + b"[" * 3000 + b"]" * 3000, "a malformed R letter"),  # too deep
    ("node", b"Z", UNKNOWN),
    # control channel
    ("control", b"", UNKNOWN),
    ("control", b"C", "a malformed C letter"),
    ("control", b"C x", "a malformed C letter"),
    ("control", b"C 1 2", "a malformed C letter"),
    ("control", b"B 1 2", "a malformed B letter"),
    ("control", b"B 1 2 2", "a malformed B letter"),
    ("control", b"B 1 2 true", "a malformed B letter"),
    ("control", b"B 1 x 1", "a malformed B letter"),
    ("control", b"X 3.ab 7", "a malformed X letter"),
    ("control", b"X 3.ab 7 dismissed", "a malformed X letter"),  # not a kind of END_KINDS
    ("control", b"X 3.ab x kicked", "a malformed X letter"),
    ("control", b"X  7 kicked", "a malformed X letter"),
    ("control", b"X 3.ab 7 kicked again", "a malformed X letter"),
    ("control", b"W 3.ab", "a malformed W letter"),  # no text
    ("control", b"W  hello", "a malformed W letter"),  # no origin
    ("control", b"W 3.ab caf\xe9", "a malformed W letter"),  # Latin-1, not UTF-8
    ("control", b"Q 3.ab", "a malformed Q letter"),
    ("control", b"Q 3.ab x", "a malformed Q letter"),
    ("control", b"Q 3.ab 4 5", "a malformed Q letter"),
    # what the operator sent before the envelope (K and N are user channel tags now)
    ("control", b"K 3.ab 7 kicked", USER),
    ("control", b"N 3.ab maintenance at noon", USER),
    ("control", b"\xff\xfe", UNKNOWN),
    # agreement channel
    ("agreement", b"", UNKNOWN),
    ("agreement", b"H 3.ab 3", "a malformed H letter"),  # no settings
    ("agreement", b"H 3.ab {}", "a malformed H letter"),  # no node id
    ("agreement", b"H  3 {}", "a malformed H letter"),  # no origin
    ("agreement", b"H 3.ab x {}", "a malformed H letter"),  # node id not a number
    ("agreement", b"H 3.ab -3 {}", "a malformed H letter"),
    ("agreement", b"Hx 3.ab 3 {}", "a malformed H letter"),
    ("agreement", b"P 3.ab 3 [1]", "a malformed P letter"),  # not an object
    ("agreement", b"P 3.ab 3 {", "a malformed P letter"),
    ("agreement", b'P 3.ab 3 {"a": true}', "a malformed P letter"),  # neither int nor str
    ("agreement", b'P 3.ab 3 {"a": null}', "a malformed P letter"),
    ("agreement", b'P 3.ab 3 {"a": [1]}', "a malformed P letter"),
    ("agreement", b'P 3.ab 3 {"a": 1.5}', "a malformed P letter"),
    ("agreement", b'P 3.ab 3 {"a": "\xff"}', "a malformed P letter"),  # not UTF-8
    ("agreement", b"C 12", CONTROL),
]

FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


class Watched(SynchronousTestCase):
    def watch(self) -> list[dict[str, Any]]:
        """The events the envelope logs from now to the end of the test."""
        events: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace") == "chatd.cluster.envelope":
                events.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        return events

    def assertDropped(self, events: list[dict[str, Any]], channel: str, payload: bytes,
                      why: str) -> None:
        """One warning, of one line, naming the channel, the reason and how the letter
        starts."""
        self.assertEqual(len(events), 1, payload)
        event = events.pop()
        self.assertEqual(event["log_level"], LogLevel.warn)
        text = formatEvent(event)
        self.assertNotIn("\n", text)
        self.assertTrue(text.startswith(f"{channel} channel: dropped {why} "), text)
        self.assertIn(repr(payload[:80]), text)


class TodayTests(SynchronousTestCase):
    """The bytes on the wire are today's, so the receivers' behaviour does not change."""

    def test_same_bytes_as_today(self) -> None:
        for letter, wire in TODAY:
            self.assertEqual(letter.encode(), wire, letter)

    def test_hot_encoders(self) -> None:
        """The router sends the hot letters without building them: the same bytes."""
        copy = Copy(123456789, NODE, 98765, FRAME)
        self.assertEqual(encode_copy(123456789, NODE, 98765, FRAME), copy.encode())
        self.assertEqual(encode_live(FRAME), Live(FRAME).encode())
        self.assertEqual(encode_device_copy(NODE, FRAME), DeviceCopy(NODE, FRAME).encode())
        group = GroupCopy(123456789, NODE, 98765, [7, 80], FRAME)
        self.assertEqual(encode_group_copy(123456789, NODE, 98765, (7, 80), FRAME),
                         group.encode())
        self.assertEqual(encode_reports((5, 60)), Reports([5, 60]).encode())

    def test_operator_letters_have_their_own_tags(self) -> None:
        """Ending a session and a broadcast were K and N, which mean other letters on user
        channels."""
        self.assertEqual(EndSession(NODE, 7, "kicked").encode(), b"X 3.a1b2c3d4 7 kicked")
        self.assertEqual(Broadcast(NODE, "back at noon").encode(), b"W 3.a1b2c3d4 back at noon")

    def test_tags_are_unique(self) -> None:
        tags = [letter.encode()[:1] for _, letter in LETTERS]
        self.assertEqual(len(set(tags)), len(LETTERS))


class RoundTripTests(SynchronousTestCase):
    """What is encoded comes back equal, and of its class, from its channel's decoder."""

    def assertRoundTrip(self, channel: str, letter: Any) -> None:
        decoded = DECODERS[channel](letter.encode())
        self.assertEqual(decoded, letter)
        self.assertIs(type(decoded), type(letter))

    def test_every_letter(self) -> None:
        for channel, letter in LETTERS:
            self.assertRoundTrip(channel, letter)

    def test_device_names(self) -> None:
        """A device name runs to the newline: blanks, any script, up to 64 characters."""
        for device in ["Ann's  phone", "téléphone ✓ 電話", "x", "d" * 64, "a b c d e f"]:
            self.assertRoundTrip("user", TakenOver(NODE, device))

    def test_broadcast_texts(self) -> None:
        """A broadcast's text runs to the end of the letter: blanks and newlines too."""
        for text in ["two  blanks", "line one\nline two\n", "ünïcødé ✓ 🎉", " around ", "\n",
                     "", "W 3.ab nested"]:
            self.assertRoundTrip("control", Broadcast(NODE, text))

    def test_broadcast_without_utf8_form(self) -> None:
        """A lone surrogate (JSON may escape one) goes as "?", as in the chat frames."""
        self.assertEqual(decode_control(Broadcast(NODE, "a\ud800b").encode()),
                         Broadcast(NODE, "a?b"))

    def test_frames_with_blanks(self) -> None:
        frame = b'{"msgid": 13, "msg": "a  b c", "to": [1, 2]}\n'
        self.assertRoundTrip("user", Copy(1, NODE, 2, frame))
        self.assertRoundTrip("user", Live(frame))
        self.assertRoundTrip("user", DeviceCopy(NODE, frame))
        self.assertRoundTrip("node", GroupCopy(1, NODE, 2, [3], frame))

    def test_frame_holding_newlines(self) -> None:
        """The header ends at the first newline; the frame is carried as it is."""
        frame = b'{"msg":"a"}\n{"msg":"b"}\n'
        self.assertRoundTrip("user", Copy(1, NODE, 2, frame))
        self.assertRoundTrip("node", GroupCopy(1, NODE, 2, [3], frame))

    def test_lists_and_large_numbers(self) -> None:
        self.assertRoundTrip("node", GroupCopy(MAX_INT, NODE, MAX_INT, list(range(1, 501)),
                                               FRAME))
        self.assertRoundTrip("node", Reports(list(range(10**9, 10**9 + 200))))
        self.assertRoundTrip("user", Copy(0, b"local", 0, FRAME))
        self.assertRoundTrip("control", BlockChanged(MAX_INT, 1, False))

    def test_query_report(self) -> None:
        report = {"node": "3.ab", "node_id": 3,
                  "sessions": [[7, "Zoë / ✓ \"quoted\"", 2], [8, "with\nnewline", 1]]}
        self.assertRoundTrip("node", QueryReport(MAX_INT, report))
        self.assertRoundTrip("node", QueryReport(1, {}))

    def test_settings(self) -> None:
        """Settings are numbers and text, in any order; none at all is a letter too."""
        for shared in [{}, {"b": 2, "a": "x y"}, {"é ✓": MAX_INT, "": ""}]:
            self.assertRoundTrip("agreement", Hello(NODE, 1023, shared))
            self.assertRoundTrip("agreement", Present(b"local", 0, shared))
        self.assertEqual(Present(NODE, 3, {"b": 2, "a": 1}).encode(),
                         b'P 3.a1b2c3d4 3 {"a":1,"b":2}')

    def test_end_session_kinds(self) -> None:
        for kind in END_KINDS:
            self.assertRoundTrip("control", EndSession(NODE, 7, kind))

    def test_a_password_change_ends_sessions_on_the_other_nodes(self) -> None:
        """SET_PASSWORD (docs/protocol.md) ends the account's sessions of the other nodes."""
        letter = EndSession(NODE, 7, "password_changed")
        self.assertEqual(letter.encode(), b"X 3.a1b2c3d4 7 password_changed")
        self.assertRoundTrip("control", letter)
        self.assertIsNone(decode_control(b"X 3.a1b2c3d4 7 password"))

    def test_property(self) -> None:
        """Any letter that can be built from its fields' types comes back equal."""

        @FUZZ
        @given(_letters())
        def check(channel_letter: tuple[str, Any]) -> None:
            self.assertRoundTrip(*channel_letter)

        check()


class DroppedTests(Watched):
    """Anything that is not one of a channel's letters gives None and one warning."""

    def test_wrong_channel(self) -> None:
        """Each tag belongs to one channel: a letter read on another is dropped, and the
        warning says where it belongs."""
        events = self.watch()
        for channel, letter in LETTERS:
            payload = letter.encode()
            for other, decode in DECODERS.items():
                if other != channel:
                    self.assertIsNone(decode(payload), (other, letter))
                    self.assertDropped(events, other, payload,
                                       f"a letter of the {channel} channel")

    def test_malformed(self) -> None:
        events = self.watch()
        for channel, payload, why in MALFORMED:
            self.assertIsNone(DECODERS[channel](payload), payload)
            self.assertDropped(events, channel, payload, why)

    def test_long_letter(self) -> None:
        """The warning shows how the letter starts, and its length."""
        events = self.watch()
        payload = b"U 1 3.ab x\n" + b"y" * 1000
        self.assertIsNone(decode_user(payload))
        text = formatEvent(events[0])
        self.assertIn(repr(payload[:80]), text)
        self.assertNotIn(repr(payload[:81]), text)
        self.assertIn(f"of {len(payload)} bytes", text)

    def test_letters_are_quiet(self) -> None:
        """A letter read on its own channel logs nothing."""
        events = self.watch()
        for channel, letter in LETTERS:
            DECODERS[channel](letter.encode())
        self.assertEqual(events, [])


class NeverRaisesTests(SynchronousTestCase):
    """Whatever bytes a channel carries, its decoder answers a letter of that channel or
    None, with exactly one warning for None."""

    TYPES = {"user": (Copy, Live, Stored, DeviceCopy, TakenOver, Spread),
             "node": (GroupCopy, Reports, QueryReport),
             "control": (GroupChanged, BlockChanged, EndSession, Broadcast, Query),
             "agreement": (Hello, Present)}

    def setUp(self) -> None:
        # the warnings of hundreds of examples go here rather than to the test log
        self.events: list[dict[str, Any]] = []
        self.patch(envelope, "log", Logger(namespace="chatd.cluster.envelope",
                                           observer=self.events.append))

    def check(self, payload: bytes) -> None:
        for channel, decode in DECODERS.items():
            del self.events[:]
            letter = decode(payload)
            if letter is None:
                self.assertEqual(len(self.events), 1)
            else:
                self.assertIsInstance(letter, self.TYPES[channel])
                self.assertEqual(self.events, [])

    def test_arbitrary_bytes(self) -> None:
        FUZZ(given(st.binary(max_size=300))(self.check))()

    def test_near_letters(self) -> None:
        """A tag, fields made of pieces of letters (good and bad) and an end that may be a
        frame: to reach past the first checks, where arbitrary bytes seldom get."""
        tags = [bytes([c]) for c in b"UNOSKDGARCBXWQHPZ"]
        pieces = [b"", b"0", b"1", b"-1", b"1_0", b"\t2", b"99999999999999999999", b"x",
                  b"3.ab", b"7,8", b",", b"7,", b"kicked", b"banned", b"{}", b'{"a":[1]}',
                  b"[", b"\xff", "é".encode(), b"\n"]
        ends = [b"", b"\n", b"\n" + FRAME, b"\n{}", b"\n\n"]
        near = st.builds(lambda tag, fields, end: tag + b"".join(b" " + f for f in fields) + end,
                         st.sampled_from(tags), st.lists(st.sampled_from(pieces), max_size=6),
                         st.sampled_from(ends))
        settings(FUZZ, max_examples=3000)(given(near)(self.check))()


def _letters() -> st.SearchStrategy[tuple[str, Any]]:
    """Any letter, with its channel."""
    number = st.integers(0, MAX_INT)
    # an incarnation: no blank, and no newline where a frame follows
    node = st.binary(min_size=1, max_size=16).map(
        lambda b: b.replace(b" ", b"_").replace(b"\n", b"_"))
    frame = st.binary(max_size=200).map(lambda b: b + b"\n")
    text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=100)
    device = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\n"),
                     min_size=1, max_size=64)
    json = st.recursive(st.none() | st.booleans() | number | text,
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(text, inner, max_size=4), max_leaves=10)
    ids = st.lists(number, min_size=1, max_size=20)
    shared = st.dictionaries(text, number | text, max_size=6)
    letters = [
        ("user", st.builds(Copy, number, node, number, frame)),
        ("user", st.builds(Live, frame)),
        ("user", st.just(Stored())),
        ("user", st.builds(DeviceCopy, node, frame)),
        ("user", st.builds(TakenOver, node, device)),
        ("user", st.just(Spread())),
        ("node", st.builds(GroupCopy, number, node, number, ids, frame)),
        ("node", st.builds(Reports, ids)),
        ("node", st.builds(QueryReport, number, st.dictionaries(text, json, max_size=5))),
        ("control", st.builds(GroupChanged, number)),
        ("control", st.builds(BlockChanged, number, number, st.booleans())),
        ("control", st.builds(EndSession, node, number, st.sampled_from(END_KINDS))),
        ("control", st.builds(Broadcast, node, text)),
        ("control", st.builds(Query, node, number)),
        ("agreement", st.builds(Hello, node, number, shared)),
        ("agreement", st.builds(Present, node, number, shared)),
    ]
    return st.one_of([strategy.map(lambda letter, c=channel: (c, letter))
                      for channel, strategy in letters])

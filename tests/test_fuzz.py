"""Property tests: whatever a client sends, the protocol answers every frame it can answer,
writes only JSON objects, and never raises.

The expected answer of a frame comes from the rules of docs/protocol.md (*Framing*, *Errors*,
*Identity*) in `expected()`; field validation itself is `chatd.requests.validate`, tested
against the *Limits* table in test_requests.
"""

import gc
import json
from types import SimpleNamespace
from typing import Any

import ujson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from chatd.handlers.passwords import PasswordHasher, hash_password
from chatd.messages import ChatError, Errno, MsgId
from chatd.requests import validate
from chatd.tap import Options, build_node

MAX_FRAME = 65536
CLIENT_MSGIDS = {
    MsgId.LOGIN, MsgId.LOGOUT, MsgId.REG, MsgId.ONE_CHAT, MsgId.ADD_FRIEND, MsgId.CREATE_GROUP,
    MsgId.ADD_GROUP, MsgId.GROUP_CHAT, MsgId.RECV_ACK, MsgId.HEARTBEAT, MsgId.FRIEND_LIST,
    MsgId.GROUP_LIST, MsgId.HISTORY, MsgId.SYNC, MsgId.READ, MsgId.TYPING, MsgId.REMOVE_FRIEND,
    MsgId.LEAVE_GROUP, MsgId.KICK_MEMBER, MsgId.BLOCK, MsgId.DEVICES}
SERVER_MSGIDS = {
    MsgId.LOGIN_ACK, MsgId.REG_ACK, MsgId.ONE_CHAT, MsgId.GROUP_CHAT, MsgId.ERROR,
    MsgId.ADD_FRIEND_ACK, MsgId.CREATE_GROUP_ACK, MsgId.ADD_GROUP_ACK, MsgId.LOGOUT_ACK,
    MsgId.SEND_ACK, MsgId.HEARTBEAT, MsgId.FRIEND_LIST_ACK, MsgId.GROUP_LIST_ACK,
    MsgId.HISTORY_ACK, MsgId.SYNC_ACK, MsgId.READ, MsgId.TYPING, MsgId.REMOVE_FRIEND_ACK,
    MsgId.LEAVE_GROUP_ACK, MsgId.KICK_MEMBER_ACK, MsgId.BLOCK_ACK, MsgId.NOTICE,
    MsgId.DEVICES_ACK}
# The codes a TCP session may get from frames alone: not the operator's or the WebSocket's.
PUBLISHED = set(Errno) - {Errno.BANNED, Errno.KICKED, Errno.OPERATOR_NOTICE,
                          Errno.BINARY_MESSAGE}
FIELDS = ["id", "password", "proto", "name", "to", "toid", "msg", "time", "cid", "friendid",
          "groupname", "groupdesc", "groupid", "mid", "mids", "peer", "before", "limit",
          "after", "userid", "block", "device"]
TERMINATORS = [b"\n", b"\r\n", b"\0"]

FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Lone surrogates still break the node (see the report of these tests): stop at the first
# failing example instead of shrinking through hundreds of logged tracebacks.
SURROGATE_FUZZ = settings(FUZZ, phases=[Phase.explicit, Phase.generate])

LATER = "later"  # REG/LOGIN that pass validation: answered after hashing and the database
ANY = "any"      # a valid request after login: the service decides (often later)


def expected(line: bytes, user_id: int | None = None) -> Any:
    """(msgid, errno, ref) of the one reply a frame gets at once, or LATER / ANY."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return (MsgId.ERROR, Errno.BAD_UTF8, None)
    try:
        value = ujson.loads(line)
    except ValueError:
        return (MsgId.ERROR, Errno.BAD_JSON, None)
    if type(value) is not dict:
        return (MsgId.ERROR, Errno.NOT_OBJECT, None)
    msgid = value.get("msgid")
    if msgid is None:
        return (MsgId.ERROR, Errno.NO_MSGID, None)
    if type(msgid) is not int:
        return (MsgId.ERROR, Errno.WRONG_TYPE, None)
    if msgid not in CLIENT_MSGIDS:
        return (MsgId.ERROR, Errno.UNKNOWN_MSGID, msgid)
    if user_id is None and msgid not in (MsgId.LOGIN, MsgId.REG, MsgId.HEARTBEAT):
        return (MsgId.ERROR, Errno.NOT_LOGGED_IN, msgid)
    try:
        validate(msgid, dict(value))
    except ChatError as e:
        return (MsgId.ERROR, int(e.errno), msgid)
    if user_id is not None and msgid != MsgId.LOGIN:
        claimed = value.get("id")  # any request naming another user: ID_MISMATCH
        if claimed is not None and claimed != user_id:
            return (MsgId.ERROR, Errno.ID_MISMATCH, msgid)
    if msgid == MsgId.HEARTBEAT:
        return (MsgId.HEARTBEAT, None, None)
    if user_id is None:
        return LATER
    if msgid == MsgId.LOGIN:
        return (MsgId.ERROR, Errno.ALREADY_LOGGED_IN, MsgId.LOGIN)
    return ANY


def expected_stream(stream: bytes) -> list[tuple[int, Any, Any]]:
    """The replies a not-logged-in connection gives at once to a byte stream, in order."""
    lines = stream.replace(b"\0", b"\n").split(b"\n")
    rest = lines.pop()
    out = []
    for line in lines:
        frame = line[:-1] if line.endswith(b"\r") else line
        if len(frame) > MAX_FRAME:
            return [*out, (MsgId.ERROR, Errno.FRAME_TOO_LARGE, None)]
        if not line.strip():
            continue
        want = expected(line)
        if want is not LATER:
            out.append(want)
    if len(rest) > MAX_FRAME + (rest.endswith(b"\r")):
        out.append((MsgId.ERROR, Errno.FRAME_TOO_LARGE, None))
    return out


# strategies

scalars = (st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)
field_values = st.one_of(
    json_values, st.integers(-2, 5), st.integers(1, (1 << 63) - 1),
    st.sampled_from([0, 1 << 63, True, 1.0, "", " ", "\t", "a\x00b", "x" * 51, "x" * 65,
                     "x" * 129, "x" * 201, "😀" * 50, [], [1, 2], [0], ["1"], [True]]),
    st.text(max_size=70), st.lists(st.integers(-2, 10), max_size=5))
msgids = st.integers(-5, 25) | st.sampled_from(sorted(CLIENT_MSGIDS)) | json_values


KEYS = st.text(max_size=12)


def requests(msgid_strategy=msgids):
    """JSON objects shaped like requests: a msgid (mostly), known fields, unknown ones."""
    def build(msgid, fields, extra, drop):
        frame = {**extra, **fields}
        if not drop:
            frame["msgid"] = msgid
        return frame
    return st.builds(build, msgid_strategy,
                     st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=6),
                     st.dictionaries(KEYS, json_values, max_size=2),
                     st.sampled_from([False] * 9 + [True]))


frame_values = requests() | json_values


@st.composite
def encoded(draw, values=frame_values):
    """One value as the bytes of a frame: JSON text in UTF-8 and a terminator."""
    value = draw(values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8") + draw(st.sampled_from(TERMINATORS))


@st.composite
def chopped(draw, frames):
    """Frames joined, then cut into reads at arbitrary places."""
    data = b"".join(draw(st.lists(frames, min_size=1, max_size=6)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


raw_chunks = st.lists(st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"\n", b"\0", b"\r\n", b"\r", b"{", b"}", b'"', b'{"msgid":', b"18",
                     b'{"msgid":18}', b'{"msgid":4,"name":"n"', b',"password":"p"}',
                     b"\xed\xa0\x80", b"\xff", b"\xc3", b"\xa9", b" " * 10, b"x" * 70000])),
    max_size=25)

# Raw bytes inside a JSON string: valid UTF-8 or not (surrogates, overlong forms, > U+10FFFF).
string_bytes = st.lists(st.binary(min_size=1, max_size=4) | st.sampled_from(
    [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc3\xa9", b"\xf0\x9f\x98\x80", b"\xc0\x80",
     b"\xf4\x90\x80\x80", b"\xe2\x82"]), max_size=4).map(b"".join).map(
    lambda b: bytes(c for c in b if c not in b'"\\\n\0'))
spliced = st.builds(lambda msgid, raw, end: b'{"msgid":%d,"s":"%s"}%s' % (msgid, raw, end),
                    st.sampled_from([MsgId.REG, MsgId.ONE_CHAT, MsgId.HEARTBEAT, 99]), string_bytes,
                    st.sampled_from(TERMINATORS))

# st.text() all but never yields surrogates, whatever its alphabet: join characters instead.
surrogate_text = st.lists(st.characters(categories=["Cs"]) | st.characters(), min_size=1,
                          max_size=6).map("".join).filter(
    lambda s: any(0xD800 <= ord(c) <= 0xDFFF for c in s))
VALID = {MsgId.LOGIN: {"id": 1, "password": "p"}, MsgId.LOGOUT: {},
         MsgId.REG: {"name": "n", "password": "p"}, MsgId.ONE_CHAT: {"to": 1, "msg": "m"},
         MsgId.ADD_FRIEND: {"friendid": 2}, MsgId.CREATE_GROUP: {"groupname": "g"},
         MsgId.ADD_GROUP: {"groupid": 1}, MsgId.GROUP_CHAT: {"groupid": 1, "msg": "m"},
         MsgId.RECV_ACK: {"mid": 1}, MsgId.HEARTBEAT: {}, MsgId.FRIEND_LIST: {},
         MsgId.GROUP_LIST: {}}
STRING_FIELDS = ["password", "name", "msg", "time", "cid", "groupname", "groupdesc"]


def surrogate_requests(msgids=None):
    """Valid requests but for strings holding lone surrogates (in known fields or not)."""
    if msgids is None:
        msgids = st.sampled_from(sorted(VALID))
    return st.builds(lambda msgid, strings: {"msgid": msgid, **VALID[msgid], **strings}, msgids,
                     st.dictionaries(st.sampled_from(STRING_FIELDS) | KEYS, surrogate_text,
                                     min_size=1, max_size=3))


def ascii_json(values):
    """Frames whose lone surrogates travel as JSON escapes (valid UTF-8 on the wire)."""
    return values.map(lambda v: json.dumps(v).encode() + b"\n")


class WaitingTransport(StringTransport):
    """A StringTransport that can be waited on for the next write."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: list[Deferred[None]] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def next_write(self) -> Deferred[None]:
        if self.value():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d.addTimeout(5, reactor)


class FuzzCase(TestCase):
    """The real node (build_node, SQLite file) with a Clock as its reactor; the protocol on a
    StringTransport. Its hasher has no threads, so REG and LOGIN stay pending unless a test
    gives the handlers a hasher on real threads (`threads = True`)."""

    threads = False

    def setUp(self) -> None:
        self.addCleanup(gc.collect)  # last: failures left in Deferreds are reported here
        self.clock = Clock()
        options = Options()
        options.parseOptions(["--db", f"sqlite:{self.mktemp()}.sqlite3", "--password-cost", "1"])
        node = build_node(options, self.clock)
        self.store, self.router, self.factory = node.store, node.router, node.factory
        self.offline = node.context.offline
        self.addCleanup(self.store.close)
        if self.threads:
            # the handlers that hash (accounts, operator) get a hasher on real threads
            self.hasher = PasswordHasher(reactor, 1, threads=1)
            self.factory.dispatch[MsgId.LOGIN].__self__.hasher = self.hasher
            self.hasher.start()
            self.addCleanup(self.hasher.stop)
        # Cleanups run last-in first-out: the sessions end, then what they left in flight is
        # waited for, then the pools stop.
        self.addCleanup(lambda: Deferred.fromCoroutine(self.settle()))
        self.protocols: list[Any] = []
        self.addCleanup(self.disconnect_all)

    async def settle(self, rounds: int = 1) -> None:
        """Let every pending interaction finish: the pools run their queues in order."""
        for _ in range(rounds):
            if self.threads:
                await self.hasher.hash(SimpleNamespace(connected=True), "flush")
            await self.offline.flush()
            await self.store.user(0)

    def connect(self, transport: StringTransport | None = None):
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = transport or StringTransport()
        proto.makeConnection(transport)
        self.protocols.append(proto)
        return proto, transport

    def disconnect(self, proto) -> None:
        if proto.connected:
            proto.connectionLost(Failure(ConnectionDone()))

    def disconnect_all(self) -> None:
        for proto in self.protocols:
            self.disconnect(proto)
        self.protocols = []

    def written(self, transport: StringTransport) -> list[dict[str, Any]]:
        """The frames written since last time: strict UTF-8, strict JSON objects, int msgid,
        one per LF-terminated line."""
        data = transport.value()
        transport.clear()
        if not data:
            return []
        self.assertTrue(data.endswith(b"\n"), data[-100:])
        frames = []
        for line in data[:-1].split(b"\n"):
            frame = json.loads(line.decode("utf-8"))
            self.assertIs(type(frame), dict, line)
            self.assertIs(type(frame.get("msgid")), int, line)
            self.assertIn(frame["msgid"], SERVER_MSGIDS, line)
            if "errno" in frame:
                self.assertIn(frame["errno"], PUBLISHED, line)
                self.assertNotEqual(frame["errno"], Errno.INTERNAL, line)
            frames.append(frame)
        return frames

    def shape(self, frame: dict[str, Any]) -> tuple[int, Any, Any]:
        if frame["msgid"] == MsgId.HEARTBEAT:
            self.assertIs(type(frame.get("time")), int, frame)
        return (frame["msgid"], frame.get("errno"), frame.get("ref"))


class BeforeLoginFuzzTests(FuzzCase):

    def check_stream(self, chunks: list[bytes]) -> None:
        proto, transport = self.connect()
        for chunk in chunks:
            if transport.disconnecting:
                break  # a real transport stops reading once it is closing
            proto.dataReceived(chunk)
        replies = self.written(transport)
        want = expected_stream(b"".join(chunks))
        self.assertEqual([self.shape(f) for f in replies], want)
        self.assertEqual(transport.disconnecting,
                         (MsgId.ERROR, Errno.FRAME_TOO_LARGE, None) in want)
        self.disconnect(proto)

    @FUZZ
    @given(chunks=raw_chunks)
    def test_arbitrary_bytes_get_one_answer_per_frame(self, chunks):
        self.check_stream(chunks)

    @FUZZ
    @given(chunks=chopped(encoded()))
    def test_arbitrary_json_frames_get_one_answer_per_frame(self, chunks):
        self.check_stream(chunks)

    @FUZZ
    @given(chunks=chopped(encoded(requests(st.sampled_from(sorted(CLIENT_MSGIDS))))))
    def test_request_shaped_frames_get_one_answer_per_frame(self, chunks):
        self.check_stream(chunks)

    @FUZZ
    @given(chunks=chopped(spliced))
    def test_frames_that_are_not_utf8_get_100(self, chunks):
        self.check_stream(chunks)

    @SURROGATE_FUZZ
    @given(frames=st.lists(ascii_json(surrogate_requests()), min_size=1, max_size=4))
    def test_strings_with_lone_surrogates_get_answers_too(self, frames):
        proto, transport = self.connect()
        for data in frames:
            proto.dataReceived(data)
            replies = self.written(transport)
            if expected(data[:-1]) is LATER:
                self.assertLessEqual(len(replies), 1, data)
            else:
                self.assertEqual(len(replies), 1, data)
            self.assertFalse(transport.disconnecting, data)
        self.disconnect(proto)


NOT_LOGOUT = (st.sampled_from(sorted(CLIENT_MSGIDS - {MsgId.LOGOUT}))
              | st.integers(-5, 25).filter(lambda m: m != MsgId.LOGOUT))


class LoggedInFuzzTests(FuzzCase):
    """One session logged in through the service (hashing on real threads); then frames one
    at a time. Replies that need the database arrive after the examples, and are checked
    then."""

    threads = True

    async def logged_in(self):
        self.user_id = await self.store.create_user("fuzzer", hash_password("pw", 1))
        other = await self.store.create_user("other", hash_password("pw", 1))
        group = await self.store.create_group("g", "", self.user_id)
        await self.store.join_group(group, other)
        proto, transport = self.connect(WaitingTransport())
        proto.dataReceived(b'{"msgid":1,"id":%d,"password":"pw","proto":2}\n' % self.user_id)
        await transport.next_write()
        (ack,) = self.written(transport)
        self.assertEqual((ack["msgid"], ack["errno"]), (MsgId.LOGIN_ACK, 0), ack)
        return proto, transport

    def check_frame(self, proto, transport, data: bytes, exact: bool) -> None:
        """One frame: the answer `expected()` predicts (only its number when not `exact`)."""
        self.clock.advance(1)  # stay inside the rate limit
        proto.dataReceived(data)
        replies = self.written(transport)
        want = expected(data.rstrip(b"\r\n\0"), self.user_id)
        if want is ANY:
            self.assertLessEqual(len(replies), 1, data)
        elif exact:
            self.assertEqual([self.shape(f) for f in replies], [want], data)
        else:
            self.assertEqual(len(replies), 1, data)
        self.assertIsNotNone(proto.user_id)

    async def fuzz(self, frames, fuzz_settings=FUZZ, exact: bool = True) -> None:
        """Feed examples of `frames` one frame at a time, then check the late replies."""
        proto, transport = await self.logged_in()

        @fuzz_settings
        @given(frames=st.lists(frames, min_size=1, max_size=5))
        def run(frames):
            for data in frames:
                self.check_frame(proto, transport, data, exact)
        run()
        await self.settle(rounds=4)
        self.written(transport)

    async def test_request_shaped_frames_after_login(self):
        await self.fuzz(encoded(requests(NOT_LOGOUT)))

    async def test_strings_with_lone_surrogates_after_login(self):
        # Which error a lone surrogate deserves (100, 101, 107) is for the fix to choose.
        msgids = st.sampled_from(sorted(set(VALID) - {MsgId.LOGOUT}))
        await self.fuzz(ascii_json(surrogate_requests(msgids)), SURROGATE_FUZZ, exact=False)

    async def test_chat_messages_with_lone_surrogates_are_refused(self):
        proto, transport = await self.logged_in()
        for cid in (b"", b',"cid":"c1"'):
            proto.dataReceived(b'{"msgid":6,"to":%d,"msg":"\\ud83d"%s}\n' % (self.user_id, cid))
            await self.settle(rounds=2)
            gc.collect()  # a failure left in a Deferred is reported when it is collected
            (reply,) = self.written(transport)
            self.assertEqual(reply["msgid"], MsgId.ERROR)
            self.assertIn(reply["errno"], (Errno.BAD_UTF8, Errno.BAD_JSON, Errno.WRONG_TYPE,
                                           Errno.OUT_OF_RANGE))

"""Small parts on their own: mids, passwords, the derived SQLite schema, the codec, Inbox,
the router's reports, the listener, members' locations, Redis replies."""

import base64
import os
import re
import sqlite3
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.cluster import local
from chatd.cluster.claim import HELD, Claim
from chatd.cluster.envelope import Stored
from chatd.cluster.local import LocalBus
from chatd.cluster.locations import Locations
from chatd.cluster.redis import BusDown, RedisBus, RedisTarget, parse_redis_url
from chatd.cluster.sentinel import DOWN, SWITCH_MASTER, SentinelWatch
from chatd.codec import decode, encode, encode_text
from chatd.delivery.dialect import Dialect
from chatd.delivery.inbound import Inbound
from chatd.delivery.inbox import NO_MIDS, Inbox
from chatd.delivery.offline import Offline
from chatd.delivery.router import Router
from chatd.handlers import passwords
from chatd.handlers.chat import Chat, Sent
from chatd.handlers.passwords import PasswordHasher, check_password, hash_password
from chatd.messages import ONE_CHAT, SEND_ACK, ChatError, Errno
from chatd.metrics import Stats
from chatd.mids import MidGenerator
from chatd.store import open_store
from chatd.store.schema import mysql_statements, sqlite_statements
from chatd.tap import DEFAULT_BACKLOG, Listener, Options
from chatd.tokens import CLOCK_SKEW_MS, TokenSigner

EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
MAX_INT = (1 << 63) - 1


def fixed(seconds: float):
    return lambda: seconds


def stepping(*times: float):
    """A wall clock that reads the given times in turn, then stays at the last one."""
    readings = list(times)
    return lambda: readings.pop(0) if len(readings) > 1 else readings[0]


class MidTests(SynchronousTestCase):

    def test_mids_are_milliseconds_since_2026_then_node_then_sequence(self):
        now = EPOCH + 86400.25
        mid = MidGenerator(5, fixed(now)).next()
        self.assertEqual(mid >> 22, 86400250)
        self.assertEqual((mid >> 12) & 0x3FF, 5)
        self.assertEqual(mid & 0xFFF, 0)

    def test_every_node_id_is_in_the_mid(self):
        for node in (0, 1, 512, 1023):
            gen = MidGenerator(node, fixed(EPOCH + 10))
            self.assertEqual({(gen.next() >> 12) & 0x3FF for _ in range(5000)}, {node})

    def test_node_ids_outside_0_to_1023_are_refused(self):
        for bad in (-1, 1024, 1 << 20):
            self.assertRaises(ValueError, MidGenerator, bad)

    def test_5000_mids_in_one_millisecond_are_strictly_increasing(self):
        gen = MidGenerator(3, fixed(EPOCH + 100.0005))
        mids = [gen.next() for _ in range(5000)]
        self.assertEqual(mids, sorted(set(mids)))

    def test_mids_keep_increasing_after_borrowing_the_next_millisecond(self):
        gen = MidGenerator(3, stepping(*[EPOCH + 100.0] * 5000, EPOCH + 100.001,
                                       EPOCH + 100.002, EPOCH + 100.010))
        mids = [gen.next() for _ in range(5003)]
        self.assertEqual(mids, sorted(set(mids)))
        self.assertEqual(mids[-1] >> 22, 100010)

    def test_mids_keep_increasing_when_the_clock_steps_back(self):
        gen = MidGenerator(7, stepping(EPOCH + 500, EPOCH + 500.001, EPOCH + 499, EPOCH + 3,
                                       EPOCH + 3, EPOCH + 500.001, EPOCH + 500.002))
        mids = [gen.next() for _ in range(10)]
        self.assertEqual(mids, sorted(set(mids)))

    def test_two_nodes_never_issue_the_same_mid(self):
        clock = stepping(*[EPOCH + 1000] * 3000, EPOCH + 999, EPOCH + 1000.001)
        first, second = MidGenerator(1, clock), MidGenerator(2, clock)
        a = {first.next() for _ in range(5000)}
        b = {second.next() for _ in range(5000)}
        self.assertEqual((len(a), len(b)), (5000, 5000))
        self.assertEqual(a & b, set())

    def test_mids_fit_the_protocols_integer_range_for_decades(self):
        for years in (0, 1, 50, 65):
            mid = MidGenerator(1023, fixed(EPOCH + years * 365.25 * 86400)).next()
            self.assertTrue(1 <= mid <= MAX_INT, (years, mid))

    def test_mids_from_the_real_clock_increase(self):
        gen = MidGenerator(1)
        mids = [gen.next() for _ in range(10000)]
        self.assertEqual(mids, sorted(set(mids)))


class PasswordTests(SynchronousTestCase):

    def test_hash_records_scheme_cost_salt_and_hash(self):
        stored = hash_password("secret", 3)
        scheme, cost, r, p, salt, digest = stored.split("$")
        self.assertEqual((scheme, cost, r, p), ("scrypt", "3", "8", "1"))
        self.assertEqual(len(base64.b64decode(salt)), 16)
        self.assertEqual(len(base64.b64decode(digest)), 32)

    def test_hashes_are_salted(self):
        self.assertNotEqual(hash_password("secret", 1), hash_password("secret", 1))

    def test_check_matches_only_the_password(self):
        stored = hash_password("sécret 😀", 2)
        self.assertTrue(check_password("sécret 😀", stored))
        for wrong in ("sécret", "sécret 😀 ", "", "SÉCRET 😀"):
            self.assertFalse(check_password(wrong, stored), wrong)

    def test_malformed_stored_values_never_match(self):
        good = hash_password("pw", 1)
        _, _, _, _, salt, digest = good.split("$")
        for bad in ("", "pw", "$$$$$", "scrypt", good[:-8], good + "$x",
                    f"bcrypt$1$8$1${salt}${digest}", f"scrypt$x$8$1${salt}${digest}",
                    f"scrypt$0$8$1${salt}${digest}", f"scrypt$-1$8$1${salt}${digest}",
                    f"scrypt$1$0$1${salt}${digest}", f"scrypt$1$8$0${salt}${digest}",
                    f"scrypt$1$8$1$é${digest}", f"scrypt$1$8$1${salt}$%%%",
                    f"scrypt$64$8$1${salt}${digest}", f"scrypt$99$8$1${salt}${digest}",
                    f"scrypt$1$8$99999999999${salt}${digest}"):
            self.assertFalse(check_password("pw", bad), bad)

    def test_a_hash_keeps_verifying_after_the_cost_changes(self):
        old = hash_password("pw", 1)
        new = hash_password("pw", 4)
        self.assertTrue(check_password("pw", old))
        self.assertTrue(check_password("pw", new))

    def test_the_highest_cost_the_option_accepts_can_hash(self):
        def accepted(cost: int) -> bool:
            try:
                Options().parseOptions(["--password-cost", str(cost)])
            except usage.UsageError:
                return False
            return True
        highest = max(c for c in range(1, 32) if accepted(c))
        stored = hash_password("pw", highest)
        self.assertEqual(stored.split("$")[1], str(highest))


class Connection:
    """Who the hasher works for; `connected` turns False when it goes away."""

    def __init__(self) -> None:
        self.connected = True


OWNER = Connection()


class PasswordHasherTests(TestCase):
    """The hasher's own thread pool delivers through the (global) reactor: it needs threads."""

    def hasher(self, cost: int) -> PasswordHasher:
        hasher = PasswordHasher(reactor, cost, threads=2)
        hasher.start()
        self.addCleanup(hasher.stop)
        return hasher

    def spy(self, name: str) -> list[threading.Thread]:
        """Record the thread each call of passwords.`name` runs on."""
        threads: list[threading.Thread] = []
        real = getattr(passwords, name)

        def recording(*args):
            threads.append(threading.current_thread())
            return real(*args)
        self.patch(passwords, name, recording)
        return threads

    async def test_hashing_and_checking_run_off_the_reactor_thread(self):
        hasher = self.hasher(1)
        hashing, checking = self.spy("hash_password"), self.spy("check_password")
        d = hasher.hash(OWNER, "pw")
        self.assertFalse(d.called)
        stored = await d
        self.assertTrue(await hasher.check(OWNER, "pw", stored))
        self.assertEqual(len(hashing), 1)
        self.assertEqual(len(checking), 1)
        for thread in hashing + checking:
            self.assertIsNot(thread, threading.main_thread())

    async def test_check_against_a_known_hash(self):
        hasher = self.hasher(1)
        stored = await hasher.hash(OWNER, "pw")
        self.assertTrue(stored.startswith("scrypt$1$"))
        self.assertTrue(await hasher.check(OWNER, "pw", stored))
        self.assertFalse(await hasher.check(OWNER, "pW", stored))

    async def test_an_unknown_user_never_matches_but_still_costs_a_hash(self):
        hasher = self.hasher(1)
        checking = self.spy("check_password")
        self.assertFalse(await hasher.check(OWNER, "pw", None))
        self.assertEqual(len(checking), 1)

    async def test_hashes_run_at_lower_priority_than_the_reactor(self):
        """A login storm must not take CPU turns with the reactor (chat latency)."""
        hasher = self.hasher(1)
        seen: list[int] = []
        real = passwords.hash_password

        def recording(*args):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return real(*args)
        self.patch(passwords, "hash_password", recording)
        await hasher.hash(OWNER, "pw")
        reactor_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.assertEqual(seen, [min(reactor_priority + passwords.HASH_NICENESS, 19)])

    async def test_a_second_slot_of_one_connection_is_refused_at_once(self):
        hasher = self.hasher(1)
        with hasher.slot(OWNER):
            with self.assertRaises(ChatError) as caught, hasher.slot(OWNER):
                pass
            self.assertEqual(caught.exception.errno, Errno.HASH_PENDING)
            await hasher.hash(OWNER, "pw")
        with hasher.slot(OWNER):
            self.assertFalse(await hasher.check(OWNER, "pw", None))

    async def test_a_hash_that_would_wait_too_long_is_refused_with_busy(self):
        hasher = PasswordHasher(reactor, 1, threads=1, max_wait=1e-9)
        hasher.start()
        self.addCleanup(hasher.stop)
        running = [hasher.hash(Connection(), "pw") for _ in range(2)]  # 1 running, 1 queued
        with self.assertRaises(ChatError) as caught, hasher.slot(Connection()):
            pass
        self.assertEqual(caught.exception.errno, Errno.BUSY)
        for d in running:
            await d
        with hasher.slot(Connection()):
            await hasher.hash(Connection(), "pw")

    async def test_cheap_hashes_share_trips_to_a_thread_each_with_its_own_answer(self):
        hasher = self.hasher(1)
        stored = await hasher.hash(OWNER, "pw")
        trips = self.spy("_background")
        owners = [Connection() for _ in range(20)]
        answers = await gatherResults([hasher.check(owner, "pw" if i % 2 else "no", stored)
                                       for i, owner in enumerate(owners)])
        self.assertEqual(answers, [bool(i % 2) for i in range(20)])
        self.assertLess(len(trips), 20)

    async def test_the_work_of_a_closed_connection_is_never_hashed(self):
        hasher = PasswordHasher(reactor, 1, threads=1)
        hasher.start()
        self.addCleanup(hasher.stop)
        hashing = self.spy("hash_password")
        first, gone = Connection(), Connection()
        running = hasher.hash(first, "pw")
        queued = hasher.hash(gone, "pw")
        gone.connected = False
        await running
        with self.assertRaises(ChatError):
            await queued
        self.assertEqual(len(hashing), 1)

    async def test_a_hash_made_at_one_cost_verifies_after_the_cost_changes(self):
        hasher = self.hasher(1)
        old = await hasher.hash(OWNER, "pw")
        hasher.cost = 3
        new = await hasher.hash(OWNER, "pw")
        self.assertTrue(new.startswith("scrypt$3$"))
        self.assertTrue(await hasher.check(OWNER, "pw", old))
        self.assertTrue(await self.hasher(5).check(OWNER, "pw", old))


def mysql_tables() -> dict[str, dict[str, bool]]:
    """{table: {column: NOT NULL}} as schema.sql declares them (an AUTO_INCREMENT id counts as
    nullable: SQLite's INTEGER PRIMARY KEY is never NULL but does not say NOT NULL)."""
    tables = {}
    for stmt in mysql_statements():
        table = re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", stmt).group(1)
        body = stmt[stmt.index("(") + 1:stmt.rindex(")")]
        columns = {}
        for line in body.splitlines():
            m = re.match(r"\s*(\w+)\s+(\w+)", line)
            if m and m.group(1) not in ("PRIMARY", "UNIQUE", "KEY", "INDEX", "CONSTRAINT"):
                columns[m.group(1)] = "NOT NULL" in line and "AUTO_INCREMENT" not in line
        tables[table] = columns
    return tables


class SchemaTests(SynchronousTestCase):

    def setUp(self) -> None:
        self.db = sqlite3.connect(":memory:")
        self.addCleanup(self.db.close)
        for stmt in sqlite_statements():
            self.db.execute(stmt)

    def sqlite_tables(self) -> dict[str, dict[str, bool]]:
        names = [r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        return {t: {row[1]: bool(row[3]) for row in self.db.execute(f"PRAGMA table_info({t})")}
                for t in names}

    def primary_key(self, table: str) -> list[str]:
        rows = sorted((r[5], r[1]) for r in self.db.execute(f"PRAGMA table_info({table})"))
        return [name for pk, name in rows if pk]

    def unique_sets(self, table: str) -> set[tuple[str, ...]]:
        out = set()
        for _, name, unique, *_ in self.db.execute(f"PRAGMA index_list({table})"):
            if unique:
                out.add(tuple(r[2] for r in self.db.execute(f"PRAGMA index_info({name})")))
        return out

    def test_sqlite_has_the_tables_and_columns_of_schema_sql(self):
        expected = mysql_tables()
        self.assertEqual(set(expected), {"User", "Friend", "AllGroup", "GroupUser",
                                         "OfflineMessage", "ServerSecret", "TokenRevocation",
                                         "Ban"})
        self.assertEqual(self.sqlite_tables(), expected)

    def test_sqlite_keeps_the_primary_and_unique_keys(self):
        self.assertEqual(self.primary_key("Friend"), ["userid", "friendid"])
        self.assertEqual(self.primary_key("GroupUser"), ["groupid", "userid"])
        for table in ("User", "AllGroup", "OfflineMessage"):
            self.assertEqual(self.primary_key(table), ["id"])
        self.assertIn(("name",), self.unique_sets("User"))
        self.assertIn(("groupname",), self.unique_sets("AllGroup"))
        self.assertIn(("userid", "mid"), self.unique_sets("OfflineMessage"))

    def test_sqlite_keeps_the_plain_indexes(self):
        indexes = {r[1]: r[2] for r in self.db.execute("PRAGMA index_list(GroupUser)")}
        self.assertIn("ix_groupuser_user", indexes)
        self.assertEqual([r[2] for r in self.db.execute("PRAGMA index_info(ix_groupuser_user)")],
                         ["userid"])

    def test_sqlite_ids_autoincrement_and_defaults_apply(self):
        self.db.execute("INSERT INTO User (name, password) VALUES ('a', 'h')")
        self.db.execute("INSERT INTO User (name, password) VALUES ('b', 'h')")
        self.db.execute("INSERT INTO GroupUser (groupid, userid) VALUES (1, 1)")
        self.db.execute("INSERT INTO AllGroup (groupname) VALUES ('g')")
        self.assertEqual([r[0] for r in self.db.execute("SELECT id FROM User ORDER BY id")],
                         [1, 2])
        self.assertEqual(self.db.execute("SELECT grouprole FROM GroupUser").fetchone()[0],
                         "normal")
        self.assertEqual(self.db.execute("SELECT groupdesc FROM AllGroup").fetchone()[0], "")
        self.assertIsNotNone(self.db.execute("SELECT created FROM User").fetchone()[0])

    def test_applying_the_sqlite_schema_again_is_harmless(self):
        self.db.execute("INSERT INTO User (name, password) VALUES ('a', 'h')")
        for stmt in sqlite_statements():
            self.db.execute(stmt)
        self.assertEqual(self.db.execute("SELECT name FROM User").fetchall(), [("a",)])

    def test_mids_up_to_2_pow_63_minus_1_fit(self):
        self.db.execute("INSERT INTO OfflineMessage (userid, mid, message) VALUES (1, ?, 'm')",
                        (MAX_INT,))
        self.assertEqual(self.db.execute("SELECT mid FROM OfflineMessage").fetchone()[0],
                         MAX_INT)


class CodecTests(SynchronousTestCase):

    def test_frames_are_compact_json_ended_by_one_lf(self):
        self.assertEqual(encode({"msgid": 18, "time": 5, "l": [1, 2], "o": {"a": None}}),
                         b'{"msgid":18,"time":5,"l":[1,2],"o":{"a":null}}\n')

    def test_non_ascii_stays_utf8(self):
        data = encode({"msg": "héllo 中文 😀"})
        self.assertIn("héllo 中文 😀".encode(), data)
        self.assertNotIn(b"\\u", data)
        self.assertEqual(decode(data), {"msg": "héllo 中文 😀"})

    def test_newlines_inside_strings_never_end_the_frame(self):
        data = encode({"msg": "one\ntwo\r\nthree\x00", "k\n": "/"})
        self.assertTrue(data.endswith(b"\n"))
        self.assertEqual(data.count(b"\n"), 1)
        self.assertNotIn(b"\x00", data)
        self.assertEqual(decode(data[:-1]), {"msg": "one\ntwo\r\nthree\x00", "k\n": "/"})

    def test_slashes_are_not_escaped(self):
        self.assertEqual(encode({"u": "a/b"}), b'{"u":"a/b"}\n')

    def test_html_characters_and_floats_come_out_as_they_are(self):
        # encode passes ujson's options by position: this pins what they mean
        self.assertEqual(encode({"h": "<a&b>", "f": 0.1, "g": 1 / 3}),
                         b'{"h":"<a&b>","f":0.1,"g":0.3333333333333333}\n')
        self.assertEqual(encode_text({"h": "<é>"}), '{"h":"<é>"}')

    def test_encode_text_is_the_frame_without_its_terminator(self):
        value = {"id": 1, "name": "😀", "state": "online"}
        self.assertEqual(encode_text(value).encode() + b"\n", encode(value))

    def test_big_ints_round_trip(self):
        self.assertEqual(decode(encode({"mid": MAX_INT})), {"mid": MAX_INT})


class TokenTests(SynchronousTestCase):
    def signer(self, lifetime: float = 3600) -> tuple[TokenSigner, Clock]:
        clock = Clock()
        clock.advance(1_800_000_000)
        return TokenSigner(b"k" * 32, lifetime, clock.seconds), clock

    def test_a_token_logs_in_its_own_user_only(self):
        signer, _ = self.signer()
        token = signer.issue(7)
        self.assertTrue(signer.valid(token, 7, 0))
        self.assertFalse(signer.valid(token, 8, 0))

    def test_a_token_expires_after_its_lifetime(self):
        signer, clock = self.signer(lifetime=60)
        token = signer.issue(7)
        clock.advance(59)
        self.assertTrue(signer.valid(token, 7, 0))
        clock.advance(1)
        self.assertFalse(signer.valid(token, 7, 0))

    def test_a_logout_revokes_what_was_issued_before_it(self):
        signer, clock = self.signer()
        before = signer.issue(7)
        revoked = signer.revocation_ms()
        self.assertFalse(signer.valid(before, 7, revoked))
        clock.advance(CLOCK_SKEW_MS / 1000 + 0.001)
        self.assertTrue(signer.valid(signer.issue(7), 7, revoked))

    def test_forged_and_malformed_tokens_are_refused(self):
        signer, clock = self.signer()
        user, issued, sig = signer.issue(7).split(".")
        other = TokenSigner(b"x" * 32, 3600, clock.seconds)
        future = int(issued) + CLOCK_SKEW_MS + 1
        for token in (f"{user}.{int(issued) - 1}.{sig}", f"{user}.{issued}.{sig[:-1]}A",
                      other.issue(7), f"{user}.{future}.{signer._sign(7, future)}",
                      "", "7", "7..", f"+7.{issued}.{sig}", f"٧.{issued}.{sig}",
                      f"{user}.{issued}.{sig}.x"):
            self.assertFalse(signer.valid(token, 7, 0), token)


class RecordingSession:
    """The parts of a Session an Inbox uses: who it is and what was written to it."""

    def __init__(self, user_id: int, proto: int) -> None:
        self.user_id, self.proto = user_id, proto
        self.device, self.since = "default", 0
        self.written: list[bytes] = []
        self.paused = False
        self.held = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def send_data(self, data: bytes) -> None:
        self.written.append(data)

    def hold(self, size: int) -> None:
        self.held += size


class SendAckTests(SynchronousTestCase):

    def test_send_ack_is_the_encoded_frame(self):
        """SEND_ACK is formatted from a template, not encoded from a dict: the bytes must be
        the dict's, key order included, for a cid that JSON escapes as well."""
        session = RecordingSession(7, 2)
        stats = Stats()
        chat = Chat(SimpleNamespace(
            router=SimpleNamespace(session=lambda user_id, device: session), offline=None,
            history=None, members=SimpleNamespace(mutes={}), blocks=None, mids=None,
            stats=stats, clock=Clock(), composer=SimpleNamespace(holding=set(), fields=set())))
        for cid in ("c1", 'a"b\\c', "é€😀", "x/<>&\n\u2028"):
            chat.acknowledge(Sent(chat, session, cid, 42, ONE_CHAT))
            self.assertEqual(session.written[-1],
                             encode({"msgid": SEND_ACK, "cid": cid, "mid": 42, "errno": 0}))


class LocalCidTests(SynchronousTestCase):
    """The (sender, cid) registry of a node alone forgets entries ten minutes old, and the
    oldest past its limit, though it looks for them only when one is due."""

    def remember(self, bus: LocalBus, cid: str, mid: int) -> tuple[int, bool] | None:
        answers: list[tuple[int, bool] | None] = []
        bus.remember(7, cid, mid, answers.append)
        return answers[0]

    def test_entries_are_forgotten_after_ten_minutes(self):
        clock = Clock()
        bus = LocalBus(clock)
        self.assertIsNone(self.remember(bus, "a", 1))
        clock.advance(300)
        self.assertIsNone(self.remember(bus, "b", 2))
        bus.settle(7, "b", 2)
        clock.advance(300)
        self.assertEqual(self.remember(bus, "a", 3), (1, False))  # 600 s: not yet
        clock.advance(1)
        self.assertEqual(self.remember(bus, "b", 4), (2, True))
        self.assertIsNone(self.remember(bus, "a", 5))  # forgotten, remembered anew
        clock.advance(300)
        self.assertIsNone(self.remember(bus, "b", 6))
        self.assertEqual(self.remember(bus, "a", 7), (5, False))

    def test_the_oldest_entry_goes_past_the_limit(self):
        self.patch(local, "CID_LIMIT", 3)
        bus = LocalBus(Clock())
        for mid, cid in enumerate("abcd", 1):
            self.assertIsNone(self.remember(bus, cid, mid))
        self.assertEqual(self.remember(bus, "d", 9), (4, False))
        self.assertIsNone(self.remember(bus, "a", 10))  # it made room for "d"


class ClusterBus(LocalBus):
    """A LocalBus whose publications reach one listener elsewhere and are recorded."""

    incarnation = b"here"

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.to_nodes: list[tuple[bytes, bytes]] = []

    def publish_node(self, incarnation: bytes, payload: bytes) -> Deferred[int]:
        self.to_nodes.append((incarnation, payload))
        return succeed(1)

    def carry(self, user_id, payload, answered, token) -> None:
        answered(1, token)


class ReportTests(SynchronousTestCase):
    """Reports that copies from another node are safe travel batched, one per node a turn."""

    def router(self) -> tuple[Router, ClusterBus, Clock]:
        clock = Clock()
        bus = ClusterBus(clock)
        stats = Stats()
        router = Router(bus, clock, Offline(None, clock, stats), stats)  # type: ignore[arg-type]
        Inbound(router)
        return router, bus, clock

    def test_reports_of_one_turn_go_to_each_node_in_one_message(self):
        router, bus, clock = self.router()
        for user_id in (7, 8):
            inbox = self.successResultOf(Deferred.fromCoroutine(
                router.attach(RecordingSession(user_id, 1))))
            inbox.open()
        bus.listener.from_user_channel(7, b"U 100 nodeA 1\n{}\n")
        bus.listener.from_user_channel(8, b"U 101 nodeA 2\n{}\n")
        bus.listener.from_user_channel(8, b"U 102 nodeB 9\n{}\n")
        self.assertEqual(bus.to_nodes, [])
        clock.advance(0)
        self.assertEqual(sorted(bus.to_nodes), [(b"nodeA", b"A 1 2"), (b"nodeB", b"A 9")])

    def test_one_report_settles_every_copy_it_names(self):
        router, bus, clock = self.router()
        settled: list[tuple[set[int], set[int]]] = []
        case = self

        class Receipt:
            def delivered(self, missing: set[int], full: set[int]) -> None:
                settled.append((missing, full))

            def failed(self, failure: Failure) -> None:
                case.fail(failure)

        for user_id in (7, 8):
            router.deliver([user_id], 100 + user_id, b"{}\n", Receipt())
        bus.listener.from_node_channel(b"A 1 2")
        self.assertEqual(settled, [(set(), set()), (set(), set())])


class Done:
    """A waiter for one frame that records its mid when the frame is safe."""

    def __init__(self, done: list[int], mid: int) -> None:
        self._done, self._mid = done, mid

    def done(self) -> None:
        self._done.append(self._mid)

    def failed(self, failure: Failure) -> None:
        raise AssertionError(f"frame {self._mid} failed: {failure}")


class ClaimingBus(LocalBus):
    """A LocalBus whose claims wait for the test to answer them, recording what is
    published on users' channels."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock)
        self.claims: list[Deferred[Claim]] = []
        self.published: list[tuple[int, bytes]] = []

    async def subscribe(self, user_id, device, since, max_devices, takeover) -> Claim:
        self.claims.append(Deferred())
        return await self.claims[-1]

    def publish(self, user_id: int, payload: bytes) -> Deferred[int]:
        self.published.append((user_id, payload))
        return succeed(1)


class Receipt:
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def delivered(self, missing: object, full: object) -> None:
        self.outcomes.append("delivered")

    def failed(self, failure: Failure) -> None:
        self.outcomes.append(f"failed: {failure.value}")


class RefusedLoginTests(TestCase):
    """A copy for a user pushed into the inbox of a login of that user that is then refused
    (the account is online on another node) was dropped with the inbox: the user never got
    it and its sender never got SEND_ACK. Found by the failover tests, which try second
    logins while users chat."""

    async def test_what_a_refused_login_held_is_stored_and_announced(self):
        store = open_store(f"sqlite:{os.path.abspath(self.mktemp())}.sqlite3")
        self.addCleanup(store.close)
        stats = Stats()
        bus = ClaimingBus(reactor)
        offline = Offline(store, reactor, stats)
        router = Router(bus, reactor, offline, stats)
        ann = await store.create_user("ann", "hash")
        login = Deferred.fromCoroutine(router.attach(RecordingSession(ann, 2)))
        receipt = Receipt()
        router.deliver([ann], 100, b'{"msgid":5,"msg":"hi"}\n', receipt)
        bus.claims[0].callback(Claim(HELD))
        refused = await self.assertFailure(login, ChatError)
        self.assertEqual(refused.errno, Errno.ALREADY_ONLINE)
        await offline.flush()
        self.assertEqual(receipt.outcomes, ["delivered"])
        self.assertEqual(await store.offline(ann, 10), [(100, '{"msgid":5,"msg":"hi"}')])
        self.assertEqual(bus.published, [(ann, Stored().encode())], "its node looks again")


class InboxTests(SynchronousTestCase):

    def inbox(self, proto: int) -> tuple[Inbox, RecordingSession, Clock]:
        session, clock = RecordingSession(7, proto), Clock()
        return Inbox(session, clock, Dialect()), session, clock

    def test_frames_before_open_are_held_then_written_in_order(self):
        for proto in (1, 2):
            inbox, session, _ = self.inbox(proto)
            inbox.push(1, b"a\n", None)
            inbox.push(2, b"b\n", None)
            self.assertEqual(session.written, [])
            session.written.append(b"login reply\n")
            inbox.open()
            inbox.push(3, b"c\n", None)
            self.assertEqual(session.written, [b"login reply\n", b"a\n", b"b\n", b"c\n"])

    def test_original_dialect_frames_are_done_once_written(self):
        inbox, session, _ = self.inbox(1)
        done: list[int] = []
        inbox.push(1, b"a\n", Done(done, 1))
        self.assertEqual(done, [])
        inbox.open()
        inbox.push(2, b"b\n", Done(done, 2))
        self.assertEqual(done, [1, 2])
        self.assertEqual(len(inbox.unacked), 0)

    def test_copies_of_one_frame_are_tested_once_and_converted_each(self):
        """The copies of a group message share the first member's plain-frame test; a frame
        to convert, and a frame after a new converter, are tested again."""
        dialect = Dialect()
        inboxes = [Inbox(RecordingSession(user_id, 1), Clock(), dialect) for user_id in (7, 8)]
        plain, edited = b'{"msgid":10,"msg":"a"}\n', b'{"msgid":55,"msg":"x"}\n'
        for inbox in inboxes:
            inbox.open()
            inbox.push(1, plain, None)
        self.assertIs(dialect.last_plain, plain)
        dialect.frame(10, lambda f: {"msgid": 10, "msg": "now " + f["msg"]})
        dialect.frame(55, lambda f: {"msgid": 6, "msg": "edited: " + f["msg"]})
        for inbox in inboxes:
            inbox.push(2, edited, None)
            inbox.push(3, plain, None)
        self.assertEqual([inbox.session.written for inbox in inboxes],
                         [[plain, b'{"msgid":6,"msg":"edited: x"}\n',
                           b'{"msgid":10,"msg":"now a"}\n']] * 2)

    def test_original_dialect_frames_wait_while_the_client_does_not_read(self):
        inbox, session, _ = self.inbox(1)
        done: list[int] = []
        inbox.open()
        session.paused = True
        inbox.push(1, b"a\n", Done(done, 1))
        inbox.push(2, b"bb\n", Done(done, 2))
        self.assertEqual((session.written, done, session.held), ([], [], 5))
        self.assertEqual([mid for mid, _, _ in inbox.drain()], [1, 2])
        inbox.push(3, b"c\n", Done(done, 3))
        session.paused = False
        inbox.resume()
        self.assertEqual((session.written, done), ([b"c\n"], [3]))

    def test_proto_2_frames_stay_unacked_until_acknowledged(self):
        inbox, session, _ = self.inbox(2)
        done: list[int] = []
        inbox.open()
        for mid in (1, 2, 3):
            inbox.push(mid, b"%d\n" % mid, Done(done, mid))
        self.assertEqual(list(inbox.unacked), [1, 2, 3])
        self.assertEqual(done, [])
        inbox.ack([2, 99])
        self.assertEqual(done, [2])
        self.assertEqual(list(inbox.unacked), [1, 3])
        inbox.ack([2])
        self.assertEqual(done, [2])

    def test_expired_returns_only_frames_sent_before_the_deadline(self):
        inbox, _, clock = self.inbox(2)
        inbox.open()
        inbox.push(1, b"a\n", None)
        clock.advance(5)
        inbox.push(2, b"b\n", None)
        clock.advance(5)
        inbox.push(3, b"c\n", None)
        self.assertEqual(inbox.expired(0), [])
        self.assertEqual([m for m, _, _ in inbox.expired(5)], [1])
        self.assertEqual(list(inbox.unacked), [2, 3])
        self.assertEqual([(m, f) for m, f, _ in inbox.expired(100)], [(2, b"b\n"), (3, b"c\n")])
        self.assertEqual(list(inbox.unacked), [])

    def test_an_inbox_with_nothing_held_keeps_no_queue(self):
        """Per-session memory (issue 23): the queue exists only while frames wait."""
        inbox, session, _ = self.inbox(1)
        inbox.open()
        self.assertIsNone(inbox._held)
        session.paused = True
        inbox.push(1, b"a\n", None)
        self.assertIsNotNone(inbox._held)
        session.paused = False
        inbox.resume()
        self.assertIsNone(inbox._held)
        self.assertEqual(session.written, [b"a\n"])

    def test_sessions_without_offline_mids_share_one_empty_set(self):
        inbox, _, _ = self.inbox(2)
        self.assertIs(inbox.offline_mids, NO_MIDS)
        inbox.remember_offline(frozenset({4, 5}))
        self.assertEqual(inbox.offline_mids, {4, 5})
        inbox.remember_offline(inbox.offline_mids.difference([4, 5]))
        self.assertIs(inbox.offline_mids, NO_MIDS)

    def test_drain_returns_held_frames(self):
        inbox, session, _ = self.inbox(1)
        inbox.push(1, b"a\n", None)
        inbox.push(2, b"b\n", None)
        self.assertEqual([(m, f) for m, f, _ in inbox.drain()], [(1, b"a\n"), (2, b"b\n")])
        self.assertEqual(inbox.drain(), [])
        inbox.open()
        self.assertEqual(session.written, [])

    def test_drain_returns_unacked_frames_without_releasing_them(self):
        inbox, _, _ = self.inbox(2)
        done: list[int] = []
        inbox.open()
        for mid in (1, 2, 3):
            inbox.push(mid, b"%d\n" % mid, Done(done, mid))
        inbox.ack([2])
        self.assertEqual([(m, f) for m, f, _ in inbox.drain()], [(1, b"1\n"), (3, b"3\n")])
        self.assertEqual(done, [2])
        self.assertEqual(inbox.drain(), [])
        inbox.ack([1, 3])
        self.assertEqual(done, [2])


class ListenerTests(TestCase):
    async def test_a_listener_gets_a_storm_sized_backlog_unless_told_otherwise(self):
        for description, backlog in (("tcp:0:interface=127.0.0.1", DEFAULT_BACKLOG),
                                     ("tcp:0:interface=127.0.0.1:backlog=7", 7),
                                     ("haproxy:tcp:0:interface=127.0.0.1", DEFAULT_BACKLOG)):
            listener = Listener(description, Factory.forProtocol(Protocol), reactor)
            listener.privilegedStartService()
            port = await listener._waitingForPort
            self.addCleanup(port.stopListening)
            self.assertEqual(port.backlog, backlog)


class LocationsTests(SynchronousTestCase):
    """Members' nodes as heard from the session claims; an MGET answer fills in only what
    was not heard, and nothing is trusted across a lost subscription."""

    def listening(self) -> Locations:
        locations = Locations()
        locations.listen()
        return locations

    def test_the_latest_announcement_wins_and_a_release_means_offline(self):
        locations = self.listening()
        locations.heard(b"7 1.aa")
        locations.heard(b"8 1.aa")
        locations.heard(b"7 2.bb")
        locations.heard(b"8 ")
        self.assertEqual(locations.split([7, 8, 9]), ({7: b"2.bb"}, [9]))

    def test_an_mget_answer_does_not_override_what_was_heard_meanwhile(self):
        locations = self.listening()
        epoch = locations.epoch
        locations.heard(b"7 2.bb")  # 7 moved after the MGET read it on node 1
        locations.learned(epoch, [7, 8], [b"1.aa", None])
        self.assertEqual(locations.split([7, 8]), ({7: b"2.bb"}, []))

    def test_nothing_is_trusted_while_announcements_may_be_missed(self):
        locations = Locations()
        epoch = locations.epoch
        locations.listen()
        locations.learned(epoch, [7], [b"1.aa"])  # asked before the subscription held
        self.assertEqual(locations.split([7]), ({}, [7]))
        locations.heard(b"7 1.aa")
        epoch = locations.epoch
        locations.forget()
        self.assertEqual(locations.split([7]), ({}, [7]))
        locations.listen()
        locations.learned(epoch, [7], [b"1.aa"])  # asked before the connection was lost
        self.assertEqual(locations.split([7]), ({}, [7]))


class RedisUrlTests(SynchronousTestCase):
    """--redis: one server, or the sentinels of a service."""

    def test_one_server(self):
        self.assertEqual(parse_redis_url("redis://:p%40ss@10.0.0.5:6380/2"),
                         RedisTarget("10.0.0.5", 6380, 2, "p@ss", [], ""))
        self.assertEqual(parse_redis_url("redis://h"), RedisTarget("h", 6379, 0, None, [], ""))

    def test_sentinels(self):
        self.assertEqual(
            parse_redis_url("sentinel://:secret@s1:26379,10.0.0.2:26380,s3:26381/chatd/3"),
            RedisTarget("", 0, 3, "secret", [("s1", 26379), ("10.0.0.2", 26380),
                                             ("s3", 26381)], "chatd"))
        self.assertEqual(parse_redis_url("sentinel://127.0.0.1:26379/mymaster"),
                         RedisTarget("", 0, 0, None, [("127.0.0.1", 26379)], "mymaster"))
        self.assertEqual(str(parse_redis_url("sentinel://a:1/svc")), "sentinel service 'svc'")

    def test_what_is_refused(self):
        for url in ("http://x", "redis://h:port/0", "redis://h/x", "sentinel://a:1",
                    "sentinel://a:1/", "sentinel://a/svc", "sentinel://a:1,/svc",
                    "sentinel://a:0/svc", "sentinel://a:1/svc/x", "sentinel://a:1/svc/0/1",
                    "sentinel://:1/svc"):
            self.assertRaises(ValueError, parse_redis_url, url)


class SentinelEventsTests(SynchronousTestCase):
    """What the sentinels publish about the service's master reaches the bus; events of
    other services, and of replicas, do not."""

    def test_down_and_switched(self):
        heard: list[tuple[str, str, int]] = []
        watch = SentinelWatch([], "chatd", None, lambda h, p: heard.append(("down", h, p)),
                              lambda h, p: heard.append(("switched", h, p)))
        watch.heard(DOWN, "master chatd 10.0.0.21 6379 #quorum 2/2")
        watch.heard(DOWN, "master other 10.0.0.9 6379 #quorum 2/2")
        watch.heard(DOWN, "slave 10.0.0.22:6379 10.0.0.22 6379 @ chatd 10.0.0.21 6379")
        watch.heard(SWITCH_MASTER, "chatd 10.0.0.21 6379 10.0.0.22 6379")
        watch.heard(SWITCH_MASTER, "other 10.0.0.21 6379 10.0.0.23 6379")
        watch.heard(SWITCH_MASTER, "chatd 10.0.0.21 6379")
        self.assertEqual(heard, [("down", "10.0.0.21", 6379), ("switched", "10.0.0.22", 6379)])


class RedisRepliesTests(SynchronousTestCase):
    """The command connection's replies reach their callers in order, whether a caller waits
    with a Deferred (MGET) or with a plain callback (a copy's PUBLISH), also when the
    connection is lost with both waiting."""

    def connection(self) -> Any:
        bus = RedisBus("redis://127.0.0.1:1/0", 1, Clock(), {})
        conn = bus._command_factory.buildProtocol(None)
        conn.transport, conn.connected = StringTransport(), 1
        bus._cmd, bus._connected_before = conn, True
        return bus, conn

    def test_plain_and_deferred_replies_keep_their_order(self):
        bus, conn = self.connection()
        answers: list[tuple[int, int]] = []
        bus.carry(7, b"U 1 x 1\n{}\n", lambda n, token: answers.append((n, token)), 1)
        mget = conn.send(b"MGET", b"chatd:session:7")
        bus.carry_node(b"2.ab", b"G ...", lambda n, token: answers.append((n, token)), 2)
        self.assertIn(b"PUBLISH\r\n$12\r\nchatd:user:7\r\n", conn.transport.value())
        conn.dataReceived(b":1\r\n*1\r\n$4\r\n2.ab\r\n:0\r\n")
        self.assertEqual(answers, [(1, 1), (0, 2)])
        self.assertEqual(self.successResultOf(mget), [b"2.ab"])

    def test_pipelined_requests_on_a_lost_connection_fail_as_the_bus_being_down(self):
        """The throttles' PTTLs went as a FirstError, which a login answered with errno 131
        (internal error) instead of 130 when a failover cut the connection."""
        bus, conn = self.connection()
        remaining = bus.remaining(["a", "b"])
        conn.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(remaining, BusDown)

    def test_a_claim_cut_off_by_a_lost_connection_is_the_bus_being_down(self):
        """A login whose claim was on the wire when a failover cut the connection got
        errno 131 (internal error) instead of 130 (try again)."""
        bus, conn = self.connection()
        claim = Deferred.fromCoroutine(bus._claim(conn, 7, "d", 0, 5, "login"))
        conn.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(claim, BusDown)

    def test_cids_are_remembered_and_settled_in_order_with_other_replies(self):
        bus, conn = self.connection()
        answers: list[tuple[int, bool] | None] = []
        bus.remember(7, "c1", 41, answers.append)
        mget = conn.send(b"MGET", b"chatd:session:7")
        bus.settle(7, "c1", 41)
        bus.remember(7, "c2", 42, answers.append)
        bus.remember(7, "\u4f60\ud800", 43, answers.append)
        sent = conn.transport.value()
        self.assertIn(b"$3\r\nSET\r\n$14\r\nchatd:cid:7:c1\r\n$2\r\n41\r\n$2\r\nNX\r\n"
                      b"$2\r\nPX\r\n$6\r\n600000\r\n$3\r\nGET\r\n", sent)
        self.assertIn(b"chatd:cid:7:c1\r\n$4\r\n41 s\r\n$2\r\nXX\r\n", sent)
        self.assertIn("chatd:cid:7:\u4f60".encode(), sent)
        conn.dataReceived(b"$-1\r\n*1\r\n$4\r\n2.ab\r\n+OK\r\n$4\r\n40 s\r\n"
                          b"-ERR wrong\r\n")
        self.assertEqual(answers, [None, (40, True), None])
        self.assertEqual(self.successResultOf(mget), [b"2.ab"])

    def test_a_cid_asked_of_a_lost_or_absent_connection_counts_as_new(self):
        """The message is then stored and delivered as new, as on a node alone."""
        bus, conn = self.connection()
        answers: list[tuple[int, bool] | None] = []
        bus.remember(7, "c1", 41, answers.append)
        bus.settle(7, "c0", 40)
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(answers, [None])
        bus._cmd = None
        bus.remember(7, "c2", 42, answers.append)
        bus.settle(7, "c2", 42)
        self.assertEqual(answers, [None, None])

    def test_a_lost_connection_answers_none_received(self):
        bus, conn = self.connection()
        answers: list[tuple[int, int]] = []
        bus.carry(7, b"U 1 x 1\n{}\n", lambda n, token: answers.append((n, token)), 5)
        mget = conn.send(b"MGET", b"chatd:session:7")
        conn.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(answers, [(0, 5)])
        self.failureResultOf(mget)
        bus._cmd = None
        bus.carry(7, b"U 1 x 1\n{}\n", lambda n, token: answers.append((n, token)), 6)
        self.assertEqual(answers, [(0, 5), (0, 6)])

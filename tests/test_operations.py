"""Operating a node: /metrics scraped over real HTTP, /health against a real Redis and MariaDB
that the test stops, the admin API's token, `chatd-admin` against a real two-node cluster,
JSON logs, and the Grafana dashboard's queries against a real scrape."""

import gc
import json
import os
import re
import sys
from io import BytesIO, StringIO
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, LogPublisher, formatEventAsClassicLogText
from twisted.python.failure import Failure
from twisted.python.log import LogPublisher as LegacyPublisher
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from chatd.admin import admin_site
from chatd.admin_cli import _parser, request_for, table
from chatd.devservers import create_database
from chatd.gcpauses import Pauses
from chatd.logformat import (
    ROLLBACK_QUIET_SECONDS,
    LineObserver,
    SecondClock,
    TurnWriter,
    classic_line,
    json_file_observer,
)
from chatd.messages import Errno, MsgId
from chatd.metrics import Histogram, NodeCollector, Stats, node_registry
from tests import harness
from tests.harness import connect, deferLater, login, register, user
from tests.nodeproc import start_node as start_process
from tests.servers import free_port, mysql_database, private_mariadb, start_redis
from tests.test_cluster import eventually

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "chatd.json")
CHATD_ADMIN = os.path.join(os.path.dirname(sys.executable), "chatd-admin")
TOKEN = b"a-test-token-of-the-operators-0123"


async def http(url: str, method: bytes = b"GET", token: bytes | None = None,
               body: Any = None) -> tuple[int, bytes]:
    """One real HTTP request; (status, body)."""
    headers = Headers({b"authorization": [b"Bearer " + token]} if token else {})
    producer = FileBodyProducer(BytesIO(json.dumps(body).encode())) if body is not None else None
    response = await Agent(reactor).request(method, url.encode(), headers, producer)
    return response.code, await readBody(response)


async def serve_admin(case: TestCase, node: harness.Node, token: bytes | None = TOKEN) -> str:
    """The node's admin site on a loopback port; its base URL."""
    site = admin_site(node.node, node_registry(node.node), token, reactor)
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    case.addCleanup(port.stopListening)
    return f"http://127.0.0.1:{port.getHost().port}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus scrape by (name, sorted labels)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = await http(base + "/metrics")
    assert code == 200, (code, body)
    return samples(body.decode())


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


class MetricsTests(TestCase):
    timeout = 60

    async def test_counters_and_histograms_move_by_the_traffic(self):
        node = await harness.start_node(self)
        base = await serve_admin(self, node)
        before = await scrape(base)
        alice = await user(self, node, "alice")
        bob = await user(self, node, "bob")
        bob.auto_ack = True
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "hi", "cid": "c1"})
        await alice.recv(MsgId.SEND_ACK, cid="c1")
        alice.send({"msgid": MsgId.ONE_CHAT, "to": 999, "msg": "nobody", "cid": "c2"})
        await alice.recv(MsgId.ERROR, cid="c2")
        wrong = await login(await connect(self, node), 999, "wrong")
        self.assertEqual(wrong["errno"], Errno.BAD_LOGIN)
        after = await scrape(base)
        self.assertEqual(moved(before, after, "chatd_frames_received_total", msgid="6"), 2)
        self.assertEqual(moved(before, after, "chatd_frames_received_total", msgid="4"), 2)
        self.assertEqual(moved(before, after, "chatd_chat_copies_total", route="local"), 1)
        self.assertEqual(moved(before, after, "chatd_chat_copies_total", route="offline"), 1)
        self.assertEqual(moved(before, after, "chatd_send_ack_seconds_count"), 1)
        self.assertEqual(moved(before, after, "chatd_send_ack_seconds_bucket", le="+Inf"), 1)
        self.assertEqual(moved(before, after, "chatd_errors_sent_total", errno="120"), 1)
        self.assertEqual(moved(before, after, "chatd_errors_sent_total", errno="1"), 1)
        self.assertEqual(moved(before, after, "chatd_logins_total", outcome="ok"), 2)
        self.assertEqual(moved(before, after, "chatd_logins_total", outcome="bad_password"), 1)
        self.assertEqual(moved(before, after, "chatd_registrations_total"), 2)
        self.assertEqual(after[("chatd_sessions", (("proto", "2"),))], 2)
        self.assertGreater(moved(before, after, "chatd_received_bytes_total"), 100)
        self.assertGreater(moved(before, after, "chatd_sent_bytes_total"), 100)
        self.assertGreaterEqual(moved(before, after, "chatd_store_seconds_count", kind="user"), 3)
        self.assertEqual(after[("chatd_bus_up", ())], 1)
        self.assertEqual(after[("chatd_offline_pending", ())], 0, "the stored copy is done")
        self.assertIn(("process_open_fds", ()), after)

    async def test_every_dashboard_query_names_an_exported_metric(self):
        node = await harness.start_node(self)
        base = await serve_admin(self, node)
        await user(self, node, "alice")
        code, body = await http(base + "/metrics")
        exported = set()
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
        for family in text_string_to_metric_families(body.decode()):
            exported.add(family.name)
            exported.update(family.name + s for s in suffixes.get(family.type, []))
        with open(DASHBOARD, encoding="utf-8") as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        self.assertGreaterEqual(len(exprs), 7)
        names = {n for e in exprs for n in re.findall(r"\b((?:chatd|process)_[a-z0-9_]+)", e)}
        self.assertEqual(names - exported, set(), "dashboard metrics missing from /metrics")


class CollectorTests(TestCase):
    timeout = 60

    async def test_a_node_freezes_its_set_up_and_times_collections(self):
        """A twistd node takes its start-up objects out of the garbage collector's walks
        (what made full collections 35 ms long) and reports each collection's pause."""
        port = free_port()
        node = await start_process(self, "--admin", f"tcp:{port}:interface=127.0.0.1")
        for n in range(20):
            client = await connect(self, node)
            await login(client, await register(client, f"user{n}"))
        after = await scrape(f"http://127.0.0.1:{port}")
        self.assertGreater(after[("chatd_gc_frozen_objects", ())], 10_000)
        self.assertIn("objects of the node's set-up frozen", node.log())
        young = after[("chatd_gc_pause_seconds_count", (("generation", "0"),))]
        self.assertGreater(young, 0, "20 logins made young collections")
        self.assertEqual(after[("chatd_gc_pause_seconds_bucket", (("generation", "0"),
                                                                   ("le", "+Inf")))], young)

    def test_each_collection_is_timed_by_generation(self):
        pauses = Pauses()
        pauses.start()
        self.addCleanup(pauses.stop)
        gc.collect(0)
        gc.collect(2)
        young, _, full = (sum(h.counts) for h in pauses.by_generation)
        self.assertGreaterEqual(young, 1)
        self.assertGreaterEqual(full, 1)


class HealthTests(TestCase):
    timeout = 120

    async def test_health_names_the_part_that_is_down_and_recovers(self):
        mariadb = private_mariadb()
        self.addCleanup(mariadb.destroy)
        redis = start_redis()
        self.addCleanup(redis.destroy)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        await start_process(self, "--db", create_database(mariadb.url), "--redis", redis.url,
                            "--admin", f"tcp:{port}:interface=127.0.0.1")

        async def health() -> tuple[int, dict]:
            code, body = await http(base + "/health")
            return code, json.loads(body)

        await eventually(lambda: _status(health, 200), 10, "healthy at start")
        redis.stop()
        code, body = await eventually(lambda: _status(health, 503), 10, "503 without redis")
        self.assertEqual(body["failing"], ["bus"])
        redis.start()
        await eventually(lambda: _status(health, 200), 20, "healthy once redis is back")
        mariadb.stop()
        code, body = await _status(health, 503)
        self.assertEqual(body["failing"], ["store"])
        mariadb.start()
        await eventually(lambda: _status(health, 200), 20, "healthy once mariadb is back")


async def _status(health: Any, want: int) -> tuple[int, dict] | None:
    code, body = await health()
    return (code, body) if code == want else None


class AdminAPITests(TestCase):
    timeout = 60

    async def test_a_missing_or_wrong_token_is_refused(self):
        node = await harness.start_node(self)
        base = await serve_admin(self, node)
        for token in (None, b"wrong", TOKEN + b"x"):
            code, body = await http(base + "/admin/v1/online", token=token)
            self.assertEqual(code, 401, body)
        code, _ = await http(base + "/admin/v1/online", token=TOKEN)
        self.assertEqual(code, 200)

    async def test_without_a_token_file_the_admin_api_is_not_served(self):
        node = await harness.start_node(self)
        base = await serve_admin(self, node, token=None)
        code, _ = await http(base + "/admin/v1/online", token=TOKEN)
        self.assertEqual(code, 404)
        code, _ = await http(base + "/health")
        self.assertEqual(code, 200)

    async def test_broadcast_reaches_both_dialects_and_bad_requests_are_refused(self):
        node = await harness.start_node(self)
        base = await serve_admin(self, node)
        new = await user(self, node, "new")
        old = await user(self, node, "old", proto=None)
        code, _ = await http(base + "/admin/v1/broadcast", b"POST", TOKEN, {"msg": "maint"})
        self.assertEqual(code, 200)
        self.assertEqual(await new.recv(MsgId.NOTICE), {"msgid": MsgId.NOTICE, "kind": "broadcast",
                                                  "msg": "maint"})
        self.assertEqual((await old.recv(MsgId.ERROR))["errno"], Errno.OPERATOR_NOTICE)
        for path, body, want in (("broadcast", {"msg": ""}, 400), ("broadcast", [1], 400),
                                 ("users/abc/kick", {}, 400), ("users/999/ban", {}, 404),
                                 ("nothing", {}, 404)):
            code, _ = await http(f"{base}/admin/v1/{path}", b"POST", TOKEN, body)
            self.assertEqual(code, want, path)
        code, _ = await http(base + "/admin/v1/users/999", token=TOKEN)
        self.assertEqual(code, 404)


def _token_file(case: TestCase, token: bytes) -> str:
    path = os.path.abspath(case.mktemp())
    with open(path, "wb") as f:
        f.write(token + b"\n")
    return path


class _Admin(ProcessProtocol):
    def __init__(self, stdin: bytes) -> None:
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.ended: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(reason.value.exitCode)


class ChatdAdminClusterTests(TestCase):
    timeout = 180

    async def chatd_admin(self, url: str, *args: str, stdin: bytes = b"") -> str:
        """Run the real console script; its standard output (fails on a non-zero exit)."""
        process = _Admin(stdin)
        argv = [CHATD_ADMIN, "--url", url, "--token-file", self.token_file, *args]
        reactor.spawnProcess(process, CHATD_ADMIN, argv, env=dict(os.environ), path=ROOT)
        code = await process.ended
        self.assertEqual(code, 0, process.err.decode())
        return process.out.decode()

    async def test_chatd_admin_operates_users_on_either_node(self):
        self.token_file = _token_file(self, TOKEN)
        redis = start_redis()
        self.addCleanup(redis.destroy)
        db = mysql_database()
        urls, nodes = [], []
        for i in (1, 2):
            port = free_port()
            urls.append(f"http://127.0.0.1:{port}")
            nodes.append(await start_process(
                self, "--db", db, "--redis", redis.url, "--node-id", str(i),
                "--admin", f"tcp:{port}:interface=127.0.0.1",
                "--admin-token-file", self.token_file))
        n1, n2 = nodes
        alice = await user(self, n1, "alice")
        bob = await user(self, n2, "bob")
        carol = await user(self, n2, "carol", proto=None)
        before = await scrape(urls[0])
        bob.auto_ack = True
        alice.send({"msgid": MsgId.ONE_CHAT, "to": bob.user_id, "msg": "across", "cid": "x1"})
        await alice.recv(MsgId.SEND_ACK, cid="x1")
        after = await scrape(urls[0])
        self.assertEqual(moved(before, after, "chatd_chat_copies_total", route="remote"), 1)
        self.assertGreaterEqual(moved(before, after, "chatd_bus_publishes_total"), 1)
        self.assertEqual(after[("chatd_bus_up", ())], 1)

        listing = json.loads(await self.chatd_admin(urls[0], "--json", "online"))["online"]
        self.assertEqual([(u["name"], u["node_id"], u["proto"]) for u in listing],
                         [("alice", 1, 2), ("bob", 2, 2), ("carol", 2, 1)])
        table = await self.chatd_admin(urls[1], "nodes")
        self.assertRegex(table, r"(?m)^1\.\w+\s+1\s+1\s+0\s+1$")
        self.assertRegex(table, r"(?m)^2\.\w+\s+2\s+2\s+1\s+1$")
        shown = await self.chatd_admin(urls[0], "user", str(bob.user_id))
        self.assertRegex(shown, r"online\s+on node 2\.\w+ \(proto 2\)")

        await self.chatd_admin(urls[0], "kick", str(bob.user_id))
        self.assertEqual(await bob.recv(MsgId.NOTICE), {"msgid": MsgId.NOTICE, "kind": "kicked"})
        await bob.closed

        await self.chatd_admin(urls[0], "ban", str(carol.user_id), "--reason", "spam")
        self.assertEqual((await carol.recv(MsgId.ERROR))["errno"], Errno.BANNED)
        await carol.closed
        refused = await login(await connect(self, n1), carol.user_id, proto=None)
        self.assertEqual(refused["errno"], Errno.BANNED)
        shown = json.loads(await self.chatd_admin(urls[1], "--json", "user",
                                                  str(carol.user_id)))
        self.assertEqual((shown["banned"], shown["ban"]["reason"]), (True, "spam"))
        await self.chatd_admin(urls[1], "unban", str(carol.user_id))
        self.assertEqual((await login(await connect(self, n1), carol.user_id))["errno"], 0)

        await self.chatd_admin(urls[1], "password", str(alice.user_id), stdin=b"n3w pass\n")
        self.assertEqual((await login(await connect(self, n2), alice.user_id))["errno"],
                         Errno.BAD_LOGIN)
        again = await login(await connect(self, n2), alice.user_id, "n3w pass")
        self.assertEqual(again["errno"], Errno.ALREADY_ONLINE,
                         "right password; alice is still online on node 1")

    async def test_chatd_admin_says_why_it_fails(self):
        node_token, self.token_file = _token_file(self, TOKEN), _token_file(self, b"x" * 20)
        port = free_port()
        await start_process(self, "--admin", f"tcp:{port}:interface=127.0.0.1",
                            "--admin-token-file", node_token)
        process = _Admin(b"")
        argv = [CHATD_ADMIN, "--url", f"http://127.0.0.1:{port}", "--token-file",
                self.token_file, "online"]
        reactor.spawnProcess(process, CHATD_ADMIN, argv, env=dict(os.environ), path=ROOT)
        self.assertEqual(await process.ended, 1)
        self.assertIn(b"401", process.err)


class JsonLogTests(TestCase):
    timeout = 60

    async def test_every_line_is_a_json_object_with_the_event_fields(self):
        node = await start_process(self, "--log-format", "json")
        client = await connect(self, node)
        uid = await register(client, "alice")
        await login(client, uid)
        client.transport.loseConnection()
        await client.closed
        await deferLater(0.5)
        records = [json.loads(line) for line in node.log().splitlines() if line.strip()]
        connected = [r for r in records if r["text"].startswith("connection from")]
        self.assertTrue(connected, records)
        self.assertTrue(connected[0]["client"].startswith("127.0.0.1:"))
        logged_in = [r for r in records if r.get("uid") == uid and "logged in" in r["text"]]
        self.assertEqual(logged_in[0]["level"], "info")
        self.assertEqual(logged_in[0]["namespace"], "chatd.handlers.welcome")


class UnitTests(TestCase):
    def test_histogram_buckets_are_cumulative_and_inclusive(self):
        histogram = Histogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 2.0):
            histogram.observe(value)
        self.assertEqual(histogram.cumulative(), [("0.1", 2), ("1.0", 3), ("+Inf", 4)])
        self.assertAlmostEqual(histogram.total, 2.65)

    def test_login_outcomes_map_errnos_and_lump_the_rest(self):
        stats = Stats()
        for errno in (0, 0, 1, 2, 142, 150, 105):
            stats.login(errno)
        node = type("N", (), {"stats": stats})()
        families = {f.name: f for f in NodeCollector(node)._accounts(stats)}
        got = {s.labels["outcome"]: s.value for s in families["chatd_logins"].samples}
        self.assertEqual(got, {"ok": 2, "bad_password": 1, "already_online": 1, "banned": 1,
                               "unavailable": 0, "busy": 0, "throttled": 1, "error": 1})

    def test_text_logs_are_twisteds_lines_written_once_per_reactor_turn(self):
        class Reactor(MemoryReactorClock):
            def callFromThread(self, f: Any, *args: Any) -> None:
                self.callLater(0, f, *args)

        class Out(StringIO):
            flushes = 0

            def flush(self) -> None:
                self.flushes += 1

        clock, out = Reactor(), Out()
        clock.running = True
        observer = LineObserver(classic_line(SecondClock()), TurnWriter(out, clock))
        events = [{"log_format": "user {uid} logged in", "uid": i, "log_time": 1764433000.5 + i / 2,
                   "log_level": LogLevel.info, "log_namespace": "chatd.handlers.welcome"}
                  for i in range(4)]
        for event in events:
            observer(event)
        self.assertEqual(out.getvalue(), "")
        clock.advance(0)
        self.assertEqual(out.getvalue(), "".join(formatEventAsClassicLogText(e) for e in events))
        self.assertEqual(out.flushes, 1)
        clock.running = False
        observer(events[0])
        self.assertEqual(out.flushes, 2, "written at once while the reactor is not running")

    def test_an_outages_rollback_tracebacks_become_one_warning_line(self):
        """adbapi logs "Rollback failed" with a traceback for each failed transaction; an
        outage shows one warning line, and a new outage after a quiet minute another."""
        out = StringIO()
        clock = MemoryReactorClock()
        observer = LineObserver(classic_line(SecondClock()), TurnWriter(out, clock))
        events: list[dict[str, Any]] = []
        published = LogPublisher(events.append)
        legacy = LegacyPublisher(observerPublisher=published, publishPublisher=published)
        try:
            raise OSError(2013, "Lost connection to MySQL server during query")
        except OSError:
            for _ in range(30):
                legacy.msg(failure=Failure(), why="Rollback failed", isError=1)
        for i, event in enumerate(events):
            event["log_time"] = 1764433000.0 + i
            observer(event)
        events[0]["log_time"] = 1764433000.0 + 30 + ROLLBACK_QUIET_SECONDS + 1
        observer(events[0])
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("database unreachable: a transaction could not be rolled back",
                      lines[0])
        self.assertIn("Lost connection to MySQL server", lines[0])
        self.assertNotIn("Traceback", out.getvalue())

    def test_json_log_records_keep_fields_and_tracebacks(self):
        out = StringIO()
        observer = json_file_observer(out)
        failure = Failure(ZeroDivisionError("division by zero"))
        observer({"log_format": "user {uid} from {client}", "log_time": 0.0, "uid": 7,
                  "client": "127.0.0.1:5", "obj": object(), "log_level": LogLevel.warn,
                  "log_namespace": "chatd.x", "log_failure": failure})
        record = json.loads(out.getvalue())
        self.assertEqual(out.getvalue().count("\n"), 1)
        self.assertEqual((record["text"], record["uid"], record["level"], record["time"]),
                         ("user 7 from 127.0.0.1:5", 7, "warn",
                          "1970-01-01T00:00:00.000+00:00"))
        self.assertIn("<object object", record["obj"])
        self.assertIn("ZeroDivisionError", record["failure"])

    def test_chatd_admin_tables_and_requests(self):
        self.assertEqual(table(["ID", "NAME"], [[1, "alice"], [22, None]]),
                         "ID  NAME\n1   alice\n22")
        args = _parser_for(["password", "5"])
        self.assertEqual(request_for(args, StringIO("s3cret pw\n"))[:3],
                         ("POST", "users/5/password", {"password": "s3cret pw"}))
        self.assertEqual(request_for(_parser_for(["kick", "5"]), None)[:2],
                         ("POST", "users/5/kick"))
        self.assertEqual(request_for(_parser_for(["ban", "5", "--reason", "x"]), None)[2],
                         {"reason": "x"})


def _parser_for(argv: list[str]) -> Any:
    return _parser().parse_args(argv)

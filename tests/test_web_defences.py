"""Hostile clients against a real node's --web listener over real sockets (issue 24): each
test is a row of docs/security.md's threat table and fails without its defence. Timeouts are
set small through the options so that the tests take seconds."""

import os
from types import SimpleNamespace

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import SkipTest, TestCase

from chatd.connections import raise_file_limit
from chatd.messages import Errno, MsgId
from tests.harness import (
    Raw,
    connect,
    connect_raw,
    deferLater,
    serve_web,
    start_node,
    user,
)
from tests.nodeproc import start_node as start_process
from tests.servers import free_port, start_nginx
from tests.test_operations import scrape, serve_admin

HALF = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # a request whose headers never end
GET = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def web_node(case: TestCase, *args: str):
    """A node (options `args`) with its web listener."""
    return await serve_web(case, await start_node(case, None, *args))


def front(port: int) -> SimpleNamespace:
    """A web listener (a node's or nginx's) as harness.connect takes it."""
    return SimpleNamespace(port=port, ws_url=f"ws://127.0.0.1:{port}/ws")


async def answer(raw: Raw, timeout: float = 5.0) -> bytes:
    """The data of the connection once an HTTP answer's head is in (or it closed)."""
    deadline = reactor.seconds() + timeout
    while b"\r\n\r\n" not in raw.data and not raw.closed.called:
        if reactor.seconds() > deadline:
            raise AssertionError(f"no answer within {timeout} s: {raw.data!r}")
        await deferLater(0.02)
    return raw.data


async def request(case: TestCase, port: int, data: bytes = GET, source: str | None = None
                  ) -> Raw:
    """A connection that sent `data` and has its answer's head."""
    raw = await connect_raw(case, port, source)
    raw.transport.write(data)
    await answer(raw)
    return raw


async def closed_within(raw: Raw, timeout: float) -> float:
    """Seconds until the node closed the connection; fails past `timeout`."""
    started = reactor.seconds()
    await raw.closed.addTimeout(timeout, reactor)
    return reactor.seconds() - started


def status(raw: Raw) -> int:
    return int(raw.data.split(b" ", 2)[1]) if raw.data.startswith(b"HTTP/1.1 ") else 0


def upgrade(port: int) -> bytes:
    return (b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" % port)


async def chat_both_ways(case: TestCase, a, b) -> None:
    """a and b (proto 2, acknowledging) exchange a message each way."""
    for sender, receiver, text in ((a, b, "there"), (b, a, "and back")):
        receiver.auto_ack = True
        sender.send({"msgid": MsgId.ONE_CHAT, "to": receiver.user_id, "msg": text, "cid": text})
        case.assertEqual((await receiver.recv(MsgId.ONE_CHAT))["msg"], text)
        case.assertEqual((await sender.recv(MsgId.SEND_ACK, cid=text))["errno"], 0)


class HeaderTests(TestCase):
    timeout = 60

    async def test_headers_must_be_complete_within_the_header_timeout(self):
        """A slowloris: headers a byte at a time (each byte would restart an idle timer),
        or nothing at all, get 408 and are closed after --web-header-timeout."""
        web = await web_node(self, "--web-header-timeout", "1")
        silent = await connect_raw(self, web.port)
        dripping = await connect_raw(self, web.port)
        dripping.transport.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        for _ in range(12):
            if dripping.closed.called:
                break
            dripping.transport.write(b"x")
            await deferLater(0.2)
        self.assertLess(await closed_within(dripping, 2), 1)
        await closed_within(silent, 1)
        for raw in (silent, dripping):
            self.assertEqual(status(raw), 408, raw.data)
            self.assertIn(b"request headers took too long", raw.data)
        self.assertEqual(status(await request(self, web.port)), 200)

    async def test_a_keep_alive_connection_idle_past_the_idle_timeout_is_closed(self):
        web = await web_node(self, "--web-idle-timeout", "1", "--web-header-timeout", "5")
        raw = await request(self, web.port, b"GET /wire.js HTTP/1.1\r\nHost: x\r\n\r\n")
        await deferLater(0.5)
        self.assertEqual(status(raw), 200)
        raw.data = b""
        raw.transport.write(b"GET /wire.js HTTP/1.1\r\nHost: x\r\n\r\n")
        await answer(raw)
        self.assertEqual(status(raw), 200, "the connection was kept for a second request")
        self.assertGreater(await closed_within(raw, 3), 0.5)

    async def test_long_request_lines_and_large_header_sections_are_refused(self):
        web = await web_node(self, "--web-max-request-line", "256", "--web-max-headers", "10",
                             "--web-max-header-size", "1024")
        cases = [
            (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 300 + b"\r\n\r\n", 431),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-N: n\r\n" * 11 + b"\r\n", 400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-N: %s\r\n" % (b"n" * 200) * 6 + b"\r\n",
             400),
            (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-N: %s\r\n" % (b"n" * 100) * 8 + b"\r\n",
             200),
        ]
        for data, code in cases:
            raw = await request(self, web.port, data)
            self.assertEqual(status(raw), code, data[:60])
            if code != 200:
                await closed_within(raw, 2)


class BodyTests(TestCase):
    timeout = 60

    async def test_a_body_trickling_one_byte_a_second_is_closed(self):
        """Slow POST and slow chunked PUT: under --web-body-rate over a --web-body-window
        the connection gets 408 and is closed; a steady body above the floor is read
        whole and answered (405: no POST here yet, the uploads will inherit this)."""
        web = await web_node(self, "--web-body-rate", "100", "--web-body-window", "1")
        post = await connect_raw(self, web.port)
        post.transport.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        put = await connect_raw(self, web.port)
        put.transport.write(b"PUT /media/x HTTP/1.1\r\nHost: x\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n")
        steady = await connect_raw(self, web.port)
        steady.transport.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\n\r\n")
        for _ in range(10):
            for raw, byte in ((post, b"p"), (put, b"1\r\nu\r\n")):
                if not raw.closed.called:
                    raw.transport.write(byte)
            steady.transport.write(b"s" * 300)
            await deferLater(0.2)
        for raw in (post, put):
            await closed_within(raw, 2)
            self.assertEqual(status(raw), 408, raw.data)
            self.assertIn(b"request body slower than 100 bytes a second", raw.data)
        await answer(steady)
        self.assertEqual(status(steady), 405, steady.data)

    async def test_request_bodies_in_flight_per_address_are_limited(self):
        web = await web_node(self, "--web-max-uploads-per-address", "2")
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        uploads = []
        for _ in range(2):
            raw = await connect_raw(self, web.port)
            raw.transport.write(head + b"u" * 10)
            uploads.append(raw)
        third = await request(self, web.port, head + b"u" * 10)
        self.assertEqual(status(third), 429, third.data)
        self.assertIn(b"too many uploads from this address", third.data)
        elsewhere = await request(self, web.port, head + b"e" * 100, source="127.0.0.2")
        self.assertEqual(status(elsewhere), 405, "another address has its own slots")
        uploads[0].transport.write(b"u" * 90)
        await answer(uploads[0])
        self.assertEqual(status(uploads[0]), 405)
        again = await request(self, web.port, head + b"a" * 100)
        self.assertEqual(status(again), 405, "a finished body gives its slot back")
        self.assertFalse(uploads[1].closed.called, "a body in flight is not disturbed")


class AddressTests(TestCase):
    timeout = 60

    async def test_connections_per_address_count_the_chat_port_and_the_web_listener(self):
        """One count per address for both listeners, before and after a WebSocket
        upgrade; past it errno 143 on the chat port, 429 on the web listener."""
        node = await start_node(self, None, "--max-conns-per-address", "3")
        web = await serve_web(self, node)
        await connect(self, node)
        socket = await connect(self, web)
        page = await request(self, web.port)
        self.assertEqual(status(page), 200)
        extra = await connect(self, node)
        self.assertEqual((await extra.recv(MsgId.ERROR))["errno"], Errno.TOO_MANY_CONNECTIONS)
        await extra.closed
        refused = await request(self, web.port, upgrade(web.port))
        self.assertEqual(status(refused), 429, refused.data)
        self.assertIn(b"too many connections from this address", refused.data)
        self.assertIn(b"content-security-policy", refused.data.lower())
        await user(self, web, "elsewhere", source="127.0.0.2")
        socket.transport.loseConnection()
        await socket.closed
        await deferLater(0.1)
        again = await connect(self, node)
        self.assertEqual((await again.request({"msgid": MsgId.HEARTBEAT}, MsgId.HEARTBEAT)
                          )["msgid"], MsgId.HEARTBEAT, "the WebSocket's count was released")

    async def test_a_trusted_proxy_address_counts_behind_nginx(self):
        """Behind nginx every connection comes from 127.0.0.1: the node counts each under
        the browser's address that nginx names in X-Real-IP, static files and WebSockets
        alike, and nginx passes its 429 on."""
        node = await start_node(self, None, "--max-conns-per-address", "1")
        web = await serve_web(self, node, trusted_proxies=frozenset({"127.0.0.1"}))
        nginx = start_nginx([node.port], proxy_protocol=False, web_ports=[web.port])
        self.addCleanup(nginx.destroy)
        proxied = front(nginx.web_port)
        first = await user(self, proxied, "first", source="127.0.0.2")
        second = await user(self, proxied, "second", source="127.0.0.3")
        refused = await request(self, nginx.web_port, upgrade(nginx.web_port),
                                source="127.0.0.2")
        self.assertEqual(status(refused), 429, refused.data)
        page = await request(self, nginx.web_port, source="127.0.0.4")
        self.assertEqual(status(page), 200, page.data)
        await chat_both_ways(self, first, second)


class LoginTimeoutTests(TestCase):
    timeout = 60

    async def test_a_websocket_that_never_logs_in_is_closed_after_the_login_timeout(self):
        node = await start_node(self, None, "--login-timeout", "1")
        web = await serve_web(self, node)
        silent_socket = await connect(self, web)
        silent_tcp = await connect(self, node)
        alice = await user(self, web, "alice")
        for client in (silent_socket, silent_tcp):
            await client.closed.addTimeout(3, reactor)
        await deferLater(0.5)
        self.assertEqual((await alice.request({"msgid": MsgId.HEARTBEAT}, MsgId.HEARTBEAT)
                          )["msgid"], MsgId.HEARTBEAT, "a logged-in session stays")


class CeilingTests(TestCase):
    timeout = 60

    async def test_the_node_wide_ceiling_refuses_new_connections_and_sessions_keep_chatting(
            self):
        node = await start_node(self, None, "--max-connections", "4")
        web = await serve_web(self, node)
        admin = await serve_admin(self, node)
        alice = await user(self, node, "alice")
        bob = await user(self, web, "bob", source="127.0.0.2")
        await user(self, node, "carol", source="127.0.0.3")
        page = await request(self, web.port, source="127.0.0.4")
        self.assertEqual(status(page), 200)
        late = await connect(self, node, source="127.0.0.5")
        err = await late.recv(MsgId.ERROR)
        self.assertEqual((err["errno"], err["errmsg"]),
                         (Errno.NODE_FULL, "the node is full, retry later or on another node"))
        await late.closed
        late_web = await request(self, web.port, upgrade(web.port), source="127.0.0.5")
        self.assertEqual(status(late_web), 503, late_web.data)
        self.assertIn(b"the node is full", late_web.data)
        metrics = await scrape(admin)
        for listener, count in (("chat", 2), ("web", 2), ("admin", 1)):
            self.assertEqual(metrics[("chatd_listener_connections",
                                      (("listener", listener),))], count, listener)
        for listener in ("chat", "web"):
            self.assertEqual(metrics[("chatd_connections_refused_total",
                                      (("listener", listener), ("reason", "node_full")))], 1)
        self.assertEqual(metrics[("chatd_max_connections", ())], 4)
        await chat_both_ways(self, alice, bob)


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class SlowlorisTests(TestCase):
    """The attack of issue 24 against a real `twistd chatd` with the default limits."""

    timeout = 120
    ATTACKERS = 1000

    async def test_a_thousand_half_headers_from_one_address(self):
        if raise_file_limit() < self.ATTACKERS + 500:
            raise SkipTest("the file limit leaves no room for 1,000 attacking sockets")
        web_port = free_port()
        node = await start_process(self, "--web", f"tcp:{web_port}:interface=127.0.0.1",
                                   "--web-header-timeout", "3")
        most = [open_files(node.pid)]
        sampler = LoopingCall(lambda: most.append(open_files(node.pid)))
        sampler.start(0.05)
        self.addCleanup(lambda: sampler.running and sampler.stop())
        attackers = await gatherResults([Deferred.fromCoroutine(connect_raw(self, web_port))
                                         for _ in range(self.ATTACKERS)])
        opened = reactor.seconds()
        for raw in attackers:
            raw.transport.write(HALF)
        page = await request(self, web_port, source="127.0.0.2")
        self.assertEqual(status(page), 200, page.data)
        on_web = await user(self, front(web_port), "on_web", source="127.0.0.2")
        on_tcp = await user(self, node, "on_tcp", source="127.0.0.2")
        await chat_both_ways(self, on_web, on_tcp)
        served = reactor.seconds() - opened
        self.assertLess(served, 3, "the legitimate clients were served during the attack")
        await gatherResults([raw.closed for raw in attackers]).addTimeout(6, reactor)
        closed = reactor.seconds() - opened
        sampler.stop()
        codes = [status(raw) for raw in attackers]
        held, refused, dropped = codes.count(408), codes.count(429), codes.count(0)
        self.assertEqual(held + refused + dropped, self.ATTACKERS, set(codes))
        # 500 is the per-address limit; the start-up probe of the chat port may still count
        self.assertGreaterEqual(held, 495)
        self.assertLessEqual(held, 500)
        self.assertGreater(refused, 0, "answered, as many at a time as ANSWERING allows")
        self.assertLess(closed, 3 + 1.5)
        self.assertLess(max(most), 600, f"open files: {max(most)}")

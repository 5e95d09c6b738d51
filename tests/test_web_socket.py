"""The chat protocol over a real WebSocket (Twisted's client) against a real node's --web
listener: every TCP scenario again, then what only a WebSocket has."""

from twisted.trial.unittest import TestCase

from chatd.messages import Errno, MsgId
from chatd.web.frames import frame
from tests.harness import Raw, connect_raw, deferLater, serve_web, start_node, user
from tests.test_scenarios import Scenarios


class WebSocketScenarios(Scenarios, TestCase):
    """Every scenario of tests.test_scenarios with the clients on a WebSocket."""

    async def node(self, *args: str):
        return await serve_web(self, await super().node(*args))

    async def test_bad_frames_get_errors_and_the_connection_stays(self):
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        cases = [(b"not json", 101), (b"\xff\xfe\xfd", 180), (b"[1,2]", 102), (b'{"a":1}', 103),
                 (b'{"msgid":"6"}', 106), (b'{"msgid":77}', 104), (b'{"msgid":17}', 105),
                 (b'{"msgid":9,"groupid":0}', 107), (b"{}\n{}", 101)]
        for data, errno in cases:
            a.send(data)
            err = await a.recv(MsgId.ERROR)
            self.assertEqual(err["errno"], errno, data)
        a.transport.sendBytesMessage(b'{"msgid":18}')
        self.assertEqual((await a.recv(MsgId.ERROR))["errno"], Errno.BINARY_MESSAGE,
                         "frames are text messages")
        a.transport.sendTextMessage("")
        a.transport.sendTextMessage("  ")
        self.assertEqual(await a.quiet(), [], "empty messages are ignored")
        a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": "still here"})
        self.assertEqual((await b.recv(MsgId.ONE_CHAT))["msg"], "still here")

    async def test_frames_split_across_packets_and_batched(self):
        """A WebSocket splits by message, never by packet: a message in fragments is one
        frame, and each server frame comes as one message."""
        node = await self.node()
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        wire = a.transport.transport
        for chunk in (_frame(b'{"msgid":6,"to":' + str(b.user_id).encode(), final=False),
                      _continued(b',"msg":"in ', final=False), _continued(b'parts"}')):
            for byte in chunk:
                wire.write(bytes([byte]))
        self.assertEqual((await b.recv(MsgId.ONE_CHAT))["msg"], "in parts")

    async def test_a_message_in_fragments_past_the_limit_is_cut_before_it_is_whole(self):
        node = await self.node("--max-frame", "2048")
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        wire = a.transport.transport
        wire.write(_frame(b'{"msgid":6,"msg":"', final=False))
        for _ in range(200):
            wire.write(_continued(b"x" * 1024, final=False))
        self.assertEqual((await a.recv(MsgId.ERROR))["errno"], Errno.FRAME_TOO_LARGE)
        await a.closed
        b.send({"msgid": MsgId.HEARTBEAT})
        await b.recv(MsgId.HEARTBEAT)

    async def test_a_message_of_exactly_the_limit_is_accepted(self):
        node = await self.node("--max-frame", "2048")
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        head = f'{{"msgid":6,"to":{b.user_id},"msg":"'
        room = 2048 - len(head) - 2
        text = "é" * (room // 2) + "x" * (room % 2)
        a.send((head + text + '"}').encode())
        self.assertEqual((await b.recv(MsgId.ONE_CHAT))["msg"], text, "2048 bytes in UTF-8")
        a.send((head + text + 'x"}').encode())
        self.assertEqual((await a.recv(MsgId.ERROR))["errno"], Errno.FRAME_TOO_LARGE)

    async def test_server_frames_of_every_length_encoding_arrive_whole(self):
        """RFC 6455 has three length forms: 7 bits, 16 bits, 64 bits."""
        node = await self.node("--max-frame", "200000")
        a = await user(self, node, "alice")
        b = await user(self, node, "bob")
        for text in ("x" * 10, "y" * 1000, "é" * 32768):
            a.send({"msgid": MsgId.ONE_CHAT, "to": b.user_id, "msg": text})
            self.assertEqual((await b.recv(MsgId.ONE_CHAT))["msg"], text)

    async def test_a_session_can_be_the_producer_of_its_connection(self):
        """A session that registers itself as its transport's producer (to hear that a
        client reads slowly) is registered with the WebSocket's TCP connection."""
        node = await self.node()
        a = await user(self, node, "alice")
        session = next(s for s in node.node.node.factory.sessions if s.user_id == a.user_id)
        session.transport.registerProducer(session, True)
        tcp = session.transport._tcp
        self.assertIs(tcp.producer, session)
        session.transport.unregisterProducer()
        self.assertIsNone(tcp.producer)
        a.send({"msgid": MsgId.HEARTBEAT})
        await a.recv(MsgId.HEARTBEAT)

    async def test_browser_and_tcp_sessions_chat_both_ways(self):
        web = await self.node()
        on_web = await user(self, web, "web")
        on_tcp = await user(self, web.node, "tcp")
        on_web.send({"msgid": MsgId.ONE_CHAT, "to": on_tcp.user_id, "msg": "from the browser",
                     "cid": "w1"})
        got = await on_tcp.recv(MsgId.ONE_CHAT)
        self.assertEqual((got["msg"], got["name"]), ("from the browser", "web"))
        on_tcp.send({"msgid": MsgId.RECV_ACK, "mid": got["mid"]})
        await on_web.recv(MsgId.SEND_ACK, cid="w1")
        on_tcp.send({"msgid": MsgId.ONE_CHAT, "to": on_web.user_id, "msg": "from the terminal",
                     "cid": "t1"})
        got = await on_web.recv(MsgId.ONE_CHAT)
        on_web.send({"msgid": MsgId.RECV_ACK, "mid": got["mid"]})
        await on_tcp.recv(MsgId.SEND_ACK, cid="t1", mid=got["mid"])


def _frame(payload: bytes, final: bool = True) -> bytes:
    """A client's text frame with the mask key 0, so the payload shows as it is."""
    return frame(payload, masked=True, final=final)


def _continued(payload: bytes, final: bool = True) -> bytes:
    return frame(payload, 0, masked=True, final=final)


async def _http(case: TestCase, port: int, request: bytes) -> bytes:
    raw = await connect_raw(case, port)
    raw.transport.write(request)
    for _ in range(50):
        await deferLater(0.05)
        if b"\r\n\r\n" in raw.data:
            break
    raw.transport.loseConnection()
    return raw.data


def _upgrade(port: int, origin: str | None, real_ip: str | None = None) -> bytes:
    lines = [b"GET /ws HTTP/1.1", b"Host: 127.0.0.1:%d" % port, b"Upgrade: websocket",
             b"Connection: Upgrade", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             b"Sec-WebSocket-Version: 13"]
    if origin is not None:
        lines.append(b"Origin: " + origin.encode())
    if real_ip is not None:
        lines.append(b"X-Real-IP: " + real_ip.encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _open_sockets(case: TestCase, port: int, real_ips: list[str]) -> list[Raw]:
    """Upgraded connections, one per X-Real-IP, held open until the test ends."""
    sockets = []
    for real_ip in real_ips:
        raw = await connect_raw(case, port)
        raw.transport.write(_upgrade(port, None, real_ip))
        sockets.append(raw)
    await deferLater(1.0)
    return sockets


class SiteTests(TestCase):
    """What the web listener answers before any chat: the upgrade and the files."""

    async def test_an_upgrade_from_a_foreign_origin_is_refused(self):
        web = await serve_web(self, await start_node(self))
        own = await _http(self, web.port, _upgrade(web.port, f"http://127.0.0.1:{web.port}"))
        self.assertTrue(own.startswith(b"HTTP/1.1 101"), own)
        foreign = await _http(self, web.port, _upgrade(web.port, "http://evil.example"))
        self.assertTrue(foreign.startswith(b"HTTP/1.1 403"), foreign)
        self.assertIn(b"origin not allowed", foreign)

    async def test_web_origin_lists_the_origins_allowed(self):
        web = await serve_web(self, await start_node(self), frozenset({"https://chat.example"}))
        listed = await _http(self, web.port, _upgrade(web.port, "https://chat.example"))
        self.assertTrue(listed.startswith(b"HTTP/1.1 101"), listed)
        own = await _http(self, web.port, _upgrade(web.port, f"http://127.0.0.1:{web.port}"))
        self.assertTrue(own.startswith(b"HTTP/1.1 403"), own)

    async def test_a_trusted_proxy_names_the_client_address_for_the_limits(self):
        """Behind nginx every browser comes from nginx's address: X-Real-IP from a proxy in
        --web-trusted-proxy is the address --max-conns-per-address counts."""
        node = await start_node(self, None, "--max-conns-per-address", "1")
        web = await serve_web(self, node, trusted_proxies=frozenset({"127.0.0.1"}))
        first, second, third = await _open_sockets(self, web.port, ["10.0.0.1", "10.0.0.2",
                                                                    "10.0.0.1"])
        for upgraded in (first, second):
            self.assertTrue(upgraded.data.startswith(b"HTTP/1.1 101"), upgraded.data)
        self.assertTrue(third.data.startswith(b"HTTP/1.1 429"), third.data)

    async def test_an_untrusted_peer_cannot_choose_its_address(self):
        node = await start_node(self, None, "--max-conns-per-address", "1")
        web = await serve_web(self, node)
        first, second = await _open_sockets(self, web.port, ["10.0.0.1", "10.0.0.2"])
        self.assertTrue(first.data.startswith(b"HTTP/1.1 101"), first.data)
        self.assertTrue(second.data.startswith(b"HTTP/1.1 429"), second.data)

    async def test_every_response_forbids_inline_script(self):
        web = await serve_web(self, await start_node(self))
        for path, status in ((b"/", b"200"), (b"/app.js", b"200"), (b"/nothing", b"404"),
                             (b"/ws", b"400")):
            answer = await _http(self, web.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
            head = answer.split(b"\r\n\r\n")[0].lower()
            self.assertTrue(head.startswith(b"http/1.1 " + status), (path, head))
            self.assertIn(b"content-security-policy: default-src 'self'; script-src 'self';",
                          head)
        script = await _http(self, web.port, b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"content-type: text/javascript", script.lower())

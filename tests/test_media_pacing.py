"""The media pacer (chatd/web/pacing.py) on a fake clock, and download bodies sent by
chatd/web/sending.py over real loopback sockets: with sendfile on plain TCP, through the
transport on TLS, whole, in order, and range by range."""

import os
from typing import Any

import twisted.test
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from chatd.metrics import Stats
from chatd.web.pacing import CHAT_BUSY_RATE, SEND_CHUNK, MediaPacer
from chatd.web.sending import MediaFile, plain_socket


class _Transport:
    """An upload's connection as the pacer sees it: read or not."""

    connected = True

    def __init__(self) -> None:
        self.reading = True

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True


class _Sender:
    """A download that sends what it is allowed, `left` bytes in all."""

    def __init__(self, pacer: MediaPacer, left: int) -> None:
        self.pacer = pacer
        self.left = left
        self.allowances: list[int] = []

    def send(self, allowance: int) -> int:
        self.allowances.append(allowance)
        sent = min(allowance, self.left)
        self.left -= sent
        if self.left:
            self.pacer.want(self)
        return sent


def _turn(clock: Clock, seconds: float = 0.0) -> None:
    """One reactor turn `seconds` later: the calls due at its start run, and those they
    schedule for now wait for the next turn, as in the reactor (Clock.advance runs them
    too)."""
    clock.rightNow += seconds
    due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
    for call in due:
        clock.calls.remove(call)
        call.called = True
        call.func(*call.args, **call.kw)


class PacerTests(TestCase):
    """Media bytes per reactor turn, and per window while the chat is busy."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.stats = Stats()

    def test_uploads_past_the_budget_wait_for_the_next_turn(self):
        pacer = MediaPacer(self.clock, self.stats, per_turn=100)
        first, second = _Transport(), _Transport()
        pacer.spend(60, first)
        pacer.spend(60, second)
        self.assertEqual((first.reading, second.reading), (True, False))
        self.clock.advance(0)
        self.assertTrue(second.reading)
        pacer.spend(60, second)
        self.assertTrue(second.reading, "a new turn, a new budget")

    def test_downloads_take_turns_within_the_budget(self):
        pacer = MediaPacer(self.clock, self.stats, per_turn=SEND_CHUNK * 2)
        senders = [_Sender(pacer, SEND_CHUNK * 2) for _ in range(3)]
        for sender in senders:
            pacer.want(sender)
        _turn(self.clock)
        self.assertEqual([s.left for s in senders], [SEND_CHUNK, SEND_CHUNK, SEND_CHUNK * 2])
        _turn(self.clock)
        self.assertEqual([s.left for s in senders], [0, SEND_CHUNK, SEND_CHUNK],
                         "the one left over goes first, then the queue in order")
        _turn(self.clock)
        self.assertEqual([s.left for s in senders], [0, 0, 0])
        self.assertFalse(self.clock.getDelayedCalls(), "nothing waits: no more turns")

    def test_a_busy_chat_holds_media_to_the_window_rate(self):
        pacer = MediaPacer(self.clock, self.stats, per_turn=1000, busy_rate=20_000,
                           window=0.1)  # 2,000 bytes a window
        sender = _Sender(pacer, 10_000)
        self.stats.bytes_in += int(CHAT_BUSY_RATE * 0.1) + 1
        pacer.want(sender)
        _turn(self.clock, 0.1)
        _turn(self.clock)
        self.assertEqual(sender.left, 8000, "a window's worth in two turns")
        _turn(self.clock)
        self.assertEqual(sender.left, 8000, "then nothing until the window ends")
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 0.2)
        _turn(self.clock, 0.1)
        self.assertEqual(sender.left, 7000, "a quiet window: the chat is busy no more")
        _turn(self.clock)
        self.assertEqual(sender.left, 6000, "and the turns go on at the turn budget")

    def test_a_quiet_chat_leaves_media_the_turn_budget_alone(self):
        pacer = MediaPacer(self.clock, self.stats, per_turn=1000, busy_rate=20_000,
                           window=0.1)
        sender = _Sender(pacer, 10_000)
        self.stats.bytes_in += int(CHAT_BUSY_RATE * 0.1) // 2  # heartbeats, not a load
        pacer.want(sender)
        _turn(self.clock, 0.1)
        for _ in range(9):
            _turn(self.clock)
        self.assertEqual(sender.left, 0)


class _Fetch(Protocol):
    """A raw HTTP/1.0 exchange: the request, then every byte until the server closes;
    `slow` stops reading for a while after the first bytes, so the server's socket fills."""

    def __init__(self, request: bytes, slow: float = 0.0) -> None:
        self.request = request
        self.slow = slow
        self.data = bytearray()
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        if not self.data and self.slow:
            self.transport.pauseProducing()
            reactor.callLater(self.slow, self.transport.resumeProducing)
        self.data += data

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(bytes(self.data))


class _Files(Resource):
    """/NAME: the file NAME of a directory, as the media store's downloads serve it."""

    def __init__(self, root: str, pacer: MediaPacer) -> None:
        super().__init__()
        self.root = root
        self.pacer = pacer

    def getChild(self, name: bytes, request: Any) -> Resource:
        return MediaFile(os.path.join(self.root, name.decode()), "application/octet-stream",
                         self.pacer)


class SendingTests(TestCase):
    """Download bodies over real sockets: plain TCP (sendfile) and TLS (read and write)."""

    SIZE = 8 * 1024 * 1024 + 12345

    async def _serve(self, tls: bool) -> int:
        root = self.mktemp()
        os.makedirs(root)
        self.content = os.urandom(self.SIZE)
        with open(os.path.join(root, "f"), "wb") as f:
            f.write(self.content)
        site = Site(_Files(root, MediaPacer(reactor, Stats())))
        if tls:
            pem = FilePath(twisted.test.__file__).sibling("server.pem").getContent()
            cert = ssl.PrivateCertificate.loadPEM(pem)
            endpoint: Any = SSL4ServerEndpoint(reactor, 0, cert.options(),
                                               interface="127.0.0.1")
        else:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = await endpoint.listen(site)
        self.addCleanup(port.stopListening)
        self.tls = tls
        return port.getHost().port

    async def _get(self, port: int, headers: bytes = b"", slow: float = 0.0
                   ) -> tuple[bytes, bytes]:
        fetch = _Fetch(b"GET /f HTTP/1.0\r\n" + headers + b"\r\n", slow)
        factory = ClientFactory.forProtocol(lambda: fetch)
        if self.tls:
            reactor.connectSSL("127.0.0.1", port, factory, ssl.CertificateOptions())
        else:
            reactor.connectTCP("127.0.0.1", port, factory)
        response = await fetch.done
        head, _, body = response.partition(b"\r\n\r\n")
        return head, body

    async def test_whole_files_arrive_complete_and_in_order(self):
        port = await self._serve(tls=False)
        answers = await gatherResults([Deferred.fromCoroutine(self._get(port))
                                       for _ in range(5)])
        for head, body in answers:
            self.assertIn(b"200 OK", head.split(b"\r\n")[0])
            self.assertIn(b"Content-Length: %d" % self.SIZE, head)
            self.assertEqual(body, self.content)

    async def test_a_reader_that_stalls_gets_every_byte(self):
        port = await self._serve(tls=False)
        head, body = await self._get(port, slow=0.5)
        self.assertEqual(body, self.content)

    async def test_a_range_is_the_slice_it_names(self):
        port = await self._serve(tls=False)
        head, body = await self._get(port, b"Range: bytes=1000-3000999\r\n")
        self.assertIn(b"206", head.split(b"\r\n")[0])
        self.assertIn(b"Content-Range: bytes 1000-3000999/%d" % self.SIZE, head)
        self.assertEqual(body, self.content[1000:3001000])
        head, body = await self._get(port, b"Range: bytes=-10\r\n")
        self.assertEqual(body, self.content[-10:])

    async def test_an_unsatisfiable_range_is_416_without_a_body(self):
        port = await self._serve(tls=False)
        head, body = await self._get(port, b"Range: bytes=%d-\r\n" % (self.SIZE + 1))
        self.assertIn(b"416", head.split(b"\r\n")[0])
        self.assertEqual(body, b"")

    async def test_tls_sends_through_the_transport(self):
        port = await self._serve(tls=True)
        head, body = await self._get(port)
        self.assertEqual(body, self.content)
        head, body = await self._get(port, b"Range: bytes=5-99999\r\n", slow=0.3)
        self.assertEqual(body, self.content[5:100000])

    async def test_only_a_plain_tcp_transport_takes_sendfile(self):
        port = await self._serve(tls=False)
        client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                       Protocol())
        self.assertTrue(plain_socket(client.transport))
        client.transport.TLS = True  # as startTLS leaves it
        self.assertFalse(plain_socket(client.transport))
        client.transport.TLS = False
        await self._get(port)  # the server has closed its connections when this ends
        client.transport.loseConnection()

"""write_now on real loopback sockets: what the peer reads is every byte, in order, whether a
frame went straight to the socket or took Twisted's queue."""

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.sendnow import Turns, write_now


class Reader(Protocol):
    """The peer: keeps what it reads until the connection closes."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object) -> None:
        self.closed.callback(bytes(self.data))


class Writer(Protocol):
    """The server side: hands its transport to the test once connected."""

    def __init__(self, connected: Deferred) -> None:
        self._connected = connected

    def connectionMade(self) -> None:
        self._connected.callback(self.transport)


class LoopbackTests(TestCase):
    @inlineCallbacks
    def connect(self):
        connected: Deferred = Deferred()
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: Writer(connected)))
        self.addCleanup(port.stopListening)
        reader = Reader()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(lambda: reader))
        transport = yield connected
        return transport, reader

    @inlineCallbacks
    def test_small_frame_leaves_nothing_queued(self):
        """A frame to a reading peer is in the kernel when write_now returns."""
        transport, reader = yield self.connect()
        write_now(transport, b'{"msgid":5}\n')
        self.assertEqual((transport._tempDataLen, transport.dataBuffer), (0, b""))
        transport.loseConnection()
        self.assertEqual((yield reader.closed), b'{"msgid":5}\n')

    @inlineCallbacks
    def test_order_kept_past_a_full_socket(self):
        """Frames larger than the socket buffers queue the rest in Twisted; the small frames
        written behind them arrive after them, never before."""
        transport, reader = yield self.connect()
        reader.transport.pauseProducing()
        frames = [bytes([65 + i % 26]) * (size + 1) + b"\n"
                  for i, size in enumerate([10, 4 << 20, 3, 2 << 20, 7] * 3)]
        for data in frames:
            write_now(transport, data)
        self.assertTrue(transport._tempDataLen or transport.dataBuffer)
        reader.transport.resumeProducing()
        transport.loseConnection()
        self.assertEqual((yield reader.closed), b"".join(frames))

    @inlineCallbacks
    def test_frame_behind_a_queue_waits_its_turn(self):
        """What Twisted still holds for the socket goes first, even when the socket could
        take the new frame at once."""
        transport, reader = yield self.connect()
        transport.write(b"queued\n")
        write_now(transport, b"after\n")
        transport.loseConnection()
        self.assertEqual((yield reader.closed), b"queued\nafter\n")


class FallbackTests(SynchronousTestCase):
    def test_other_transports_take_their_own_write(self):
        """Anything but a plain TCP server connection (here a test transport) is written to
        the usual way."""
        transport = StringTransport()
        write_now(transport, b"frame\n")
        self.assertEqual(transport.value(), b"frame\n")


class TurnTests(SynchronousTestCase):
    def test_a_turn_keeps_its_number_until_the_reactor_turns(self):
        """Frames of one turn see one number, so only the first goes straight out."""
        clock = Clock()
        turns = Turns(clock)
        first = turns.current()
        self.assertEqual(turns.current(), first)
        clock.advance(0)
        self.assertEqual(turns.current(), first + 1)

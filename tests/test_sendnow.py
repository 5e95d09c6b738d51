"""write_now and a session's gathered frames on real loopback sockets: what the peer reads is
every byte, in order, whether a frame went straight to the socket or took Twisted's queue,
and a session's frames of one reactor turn leave in one send at the turn's end."""

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatd.connections import Connections
from chatd.metrics import Stats
from chatd.protocol import ChatFactory, ChatProtocol
from chatd.sendnow import Gathered, write_now


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


class Sends:
    """Stands in for a transport's socket and counts its sends."""

    def __init__(self, socket: object) -> None:
        self._socket = socket
        self.count = 0

    def send(self, data: bytes) -> int:
        self.count += 1
        return self._socket.send(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._socket, name)


def turn() -> Deferred:
    """One turn of the reactor: what was gathered in this one has been flushed after it."""
    return deferLater(reactor, 0, lambda: None)


class GatherTests(TestCase):
    """A ChatProtocol on a real TCP connection, written to as the router writes to it."""

    @inlineCallbacks
    def connect(self):
        connected: Deferred = Deferred()
        # a send buffer larger than the back-pressure test's frames: past it the session ends
        factory = ChatFactory({}, lambda session: None, Stats(), reactor, Connections(10, 10),
                              max_send_buffer=64 << 20)

        def build(addr):
            session = ChatFactory.buildProtocol(factory, addr)
            reactor.callLater(0, connected.callback, session)
            return session
        factory.buildProtocol = build
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        reader = Reader()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(lambda: reader))
        session: ChatProtocol = yield connected
        sends = session.transport.socket = Sends(session.transport.socket)
        return session, reader, sends

    @inlineCallbacks
    def test_a_turns_first_frame_leaves_at_once_and_the_rest_together_at_its_end(self):
        """The first frame is sent during the turn; the others reach neither the socket nor
        the transport's queue until the turn ends, then leave in one send."""
        session, reader, sends = yield self.connect()
        frames = [b'{"msgid":10,"n":%d}\n' % i for i in range(20)]
        for data in frames:
            session.write(data)
        self.assertEqual((sends.count, session.transport._tempDataLen), (1, 0))
        yield turn()
        self.assertEqual(sends.count, 2)
        session.write(b"next turn\n")
        self.assertEqual(sends.count, 3, "the next turn's first frame leaves at once")
        yield turn()
        session.close()
        self.assertEqual((yield reader.closed), b"".join(frames) + b"next turn\n")

    @inlineCallbacks
    def test_closing_sends_what_was_gathered_first(self):
        """A close in the middle of a turn loses none of the turn's frames."""
        session, reader, _ = yield self.connect()
        for data in (b"one\n", b"two\n", b"three\n"):
            session.write(data)
        session.close()
        self.assertEqual((yield reader.closed), b"one\ntwo\nthree\n")

    @inlineCallbacks
    def test_an_oversized_frame_is_answered_before_the_close(self):
        """The error frame of the protocol's own close leaves before the connection ends,
        behind the frames gathered before it."""
        session, reader, _ = yield self.connect()
        session.write(b"before\n")
        session.dataReceived(b"x" * (session._max_frame + 10))
        data = yield reader.closed
        self.assertTrue(data.startswith(b'before\n{"msgid":'), data[:40])
        self.assertIn(b'"errno":108', data)

    @inlineCallbacks
    def test_abort_drops_what_was_gathered(self):
        """Aborting drops the turn's frames, as Twisted drops what it still holds."""
        session, reader, sends = yield self.connect()
        session.write(b"sent\n")
        session.write(b"never\n")
        session.abort()
        yield reader.closed.addErrback(lambda _: None)
        # the first went out during the turn (the reset may beat it to the reader)
        self.assertIn(bytes(reader.data), (b"sent\n", b""))
        self.assertEqual(sends.count, 1)

    @inlineCallbacks
    def test_back_pressure_past_a_full_socket(self):
        """Turns of frames larger than the socket buffers: what the kernel does not take
        queues in Twisted, which pauses the session; the frames of later turns go behind
        it, and the peer reads every byte in order."""
        session, reader, _ = yield self.connect()
        reader.transport.pauseProducing()
        frames = [bytes([65 + i % 26]) * (size + 1) + b"\n"
                  for i, size in enumerate([10, 4 << 20, 3, 2 << 20, 7] * 3)]
        for start in range(0, len(frames), 2):
            for data in frames[start:start + 2]:
                session.write(data)
            yield turn()
        self.assertTrue(session.transport._tempDataLen or session.transport.dataBuffer)
        self.assertTrue(session.paused, "Twisted pauses its producer, the session")
        reader.transport.resumeProducing()
        while session.paused:  # Twisted closes only once its producer is not paused
            yield turn()
        session.close()
        self.assertEqual((yield reader.closed), b"".join(frames))


class GatheredTests(SynchronousTestCase):
    def test_each_connection_is_flushed_once_when_the_turn_ends(self):
        """In the order they joined the turn; one call scheduled for the turn."""
        clock = Clock()
        gathered = Gathered(clock)
        flushed = []

        class Connection:
            def __init__(self, name: str) -> None:
                self.name = name

            def flush(self) -> None:
                flushed.append(self.name)
        for name in ("b", "a", "c"):
            gathered.add(Connection(name))
        self.assertEqual((flushed, len(clock.getDelayedCalls())), ([], 1))
        clock.advance(0)
        self.assertEqual((flushed, clock.getDelayedCalls()), (["b", "a", "c"], []))
        gathered.add(Connection("d"))
        clock.advance(0)
        self.assertEqual(flushed, ["b", "a", "c", "d"])

    def test_a_failing_connection_does_not_keep_the_others_frames(self):
        clock = Clock()
        gathered = Gathered(clock)
        flushed = []

        class Failing:
            def flush(self) -> None:
                raise ZeroDivisionError()

        class Connection:
            def flush(self) -> None:
                flushed.append(self)
        later = Connection()
        gathered.add(Failing())
        gathered.add(later)
        clock.advance(0)
        self.assertEqual(flushed, [later])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_a_test_transport_is_written_to_at_once(self):
        """A transport that cannot take a direct send (here a test's) is not gathered for:
        its reader sees each frame as it is written."""
        factory = ChatFactory({}, lambda session: None, Stats(), Clock(), Connections(10, 10))
        session = ChatProtocol(factory)
        transport = StringTransport()
        session.makeConnection(transport)
        session.write(b"frame\n")
        self.assertEqual(transport.value(), b"frame\n")

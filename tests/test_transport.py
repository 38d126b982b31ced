"""Tests for L{wighaven.proxy.transport}: the TCP transports that cork writes until
the end of the reactor turn, pause lazily and keep their local address.

Every test runs over real sockets on 127.0.0.1 with the real reactor: what
these transports change is their dealing with the kernel and the reactor
(send calls, epoll registrations), which a fake transport would not show.
The transport under test (C{fast}) talks to a plain Twisted transport
(C{plain}); the behaviour tests run twice, once with the fast transport on
the accepting side (L{FastServer}, from L{listen_tcp}) and once on the
connecting side (L{FastClient}, through L{FastConnectReactor}).

The last tests check that the private Twisted names the module relies on
still exist and mean what it thinks, so that an upgrade of the pinned
Twisted that changes them fails here, loudly, rather than in production.
"""

import fcntl
import inspect
import socket
import struct
import termios
from errno import ECONNRESET, EWOULDBLOCK

from twisted.internet import abstract, error, reactor, ssl, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import (
    IPushProducer,
    IReactorPluggableNameResolver,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from wighaven.proxy import transport as wt
from wighaven.proxy.transport import (
    FastClient,
    FastConnectReactor,
    FastPort,
    FastServer,
    adopt_port,
    for_connecting,
    listen_tcp,
)

from .support.certs import pki
from .support.waiting import wait_until

MiB = 1024 * 1024


def pattern(size):
    """C{size} bytes that are not all alike, so that a lost, doubled or
    reordered piece shows up in a comparison."""
    block = bytes(range(256)) * 256 + b"\x01"  # 64 KiB + 1: no alignment with chunks
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def turns(n=1):
    """A Deferred firing after C{n} more reactor turns: the corked writes of
    the current turn are flushed by the end of the first one."""
    d = deferLater(reactor, 0, lambda: None)
    for _ in range(n - 1):
        d.addCallback(lambda _: deferLater(reactor, 0, lambda: None))
    return d


class Calls:
    """
    Replaces C{obj.name} with a spy that records the arguments of each call
    and then calls the original, for the rest of the test.
    """

    def __init__(self, testcase, obj, name):
        original = getattr(obj, name)
        had_own = name in vars(obj)
        self.calls = []

        def spy(*args, **kwargs):
            self.calls.append(args)
            return original(*args, **kwargs)

        setattr(obj, name, spy)
        if had_own:
            testcase.addCleanup(setattr, obj, name, original)
        else:
            testcase.addCleanup(delattr, obj, name)

    def about(self, selectable):
        """The calls whose first argument is C{selectable} (reactor spies)."""
        return [args for args in self.calls if args and args[0] is selectable]


class Peer(Protocol):
    """One end of a test connection: keeps what it receives, notes its end."""

    def __init__(self):
        self.received = bytearray()
        self.reasons = []  # one per connectionLost call: there must be one
        self._lost_waiters = []

    def connectionMade(self):
        connections = getattr(self.factory, "connections", None)
        if connections is not None:
            connections.put(self)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.reasons.append(reason)
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)

    def lost(self):
        """A Deferred firing once connectionLost has been called (the
        reason is in C{reasons})."""
        if self.reasons:
            return succeed(None)
        d = Deferred()
        self._lost_waiters.append(d)
        return d

    def receive(self, size, timeout=10):
        """A Deferred firing once C{size} bytes have arrived."""
        return wait_until(lambda: len(self.received) >= size, timeout)


class SlowReader(Peer):
    """A peer that reads one chunk, then stops reading for a millisecond."""

    _later = None

    def dataReceived(self, data):
        super().dataReceived(data)
        self.transport.pauseProducing()
        self._later = reactor.callLater(0.001, self.transport.resumeProducing)

    def connectionLost(self, reason):
        if self._later is not None and self._later.active():
            self._later.cancel()
        super().connectionLost(reason)


class Accepting(Factory):
    """Server factory: each connection, once made, is put in C{connections}."""

    def __init__(self, protocol=Peer):
        self.protocol = protocol
        self.connections = DeferredQueue()


def close(peer):
    """Test cleanup: drop the connection if it is still open; wait for its end."""
    if not peer.reasons and peer.transport is not None:
        peer.transport.abortConnection()
    return peer.lost()


@inlineCallbacks
def connect(testcase, fast_side, fast=Peer, plain=Peer):
    """
    A connection on 127.0.0.1 between a fast transport (on C{fast_side},
    "server" or "client") and a plain Twisted one, each with a fresh protocol
    of the given class; fires with (fast protocol, plain protocol) once both
    ends are connected. Everything is closed at the end of the test.
    """
    if fast_side == "server":
        factory = Accepting(fast)
        port = listen_tcp(reactor, 0, factory, 50, "127.0.0.1")
        client_reactor, client_protocol = reactor, plain()
    else:
        factory = Accepting(plain)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        client_reactor, client_protocol = FastConnectReactor(reactor), fast()
    testcase.addCleanup(port.stopListening)
    endpoint = TCP4ClientEndpoint(client_reactor, "127.0.0.1", port.getHost().port)
    client = yield connectProtocol(endpoint, client_protocol)
    testcase.addCleanup(close, client)
    server = yield factory.connections.get()
    testcase.addCleanup(close, server)
    fast_end, plain_end = (server, client) if fast_side == "server" else (client, server)
    testcase.assertIsInstance(fast_end.transport, FastServer if fast_side == "server" else FastClient)
    testcase.assertNotIsInstance(plain_end.transport, (FastServer, FastClient))
    return fast_end, plain_end


class RecvSpy:
    """
    Stands in for a transport's socket for the rest of the test (a socket's
    own methods cannot be replaced): records the size asked of each recv()
    and what came of it (the bytes, or the error raised); everything else
    is the real socket's.
    """

    def __init__(self, testcase, transport):
        self._socket = transport.socket
        self.sizes = []
        self.outcomes = []
        transport.socket = self

        def restore():
            if getattr(transport, "socket", None) is self:
                transport.socket = self._socket

        testcase.addCleanup(restore)

    def recv(self, size, *flags):
        self.sizes.append(size)
        try:
            data = self._socket.recv(size, *flags)
        except OSError as e:
            self.outcomes.append(e)
            raise
        self.outcomes.append(data)
        return data

    def __getattr__(self, name):
        return getattr(self._socket, name)


class ChunkSizes(Peer):
    """A peer that also notes the size of each piece dataReceived delivers."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def dataReceived(self, data):
        self.sizes.append(len(data))
        super().dataReceived(data)


def unread(transport):
    """Bytes the kernel holds for C{transport}, received but not yet read (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(transport.fileno(), termios.FIONREAD, b"\0" * 4))[0]


@implementer(IPushProducer)
class Chunks:
    """
    A streaming producer writing C{total} bytes of L{pattern} in 64 KiB
    chunks, as fast as the consumer lets it; C{done} fires when all is
    written.
    """

    def __init__(self, consumer, total, chunk=64 * 1024):
        self.consumer = consumer
        self.data = pattern(total)
        self.chunk = chunk
        self.written = 0
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.done = Deferred()

    def start(self):
        self.consumer.registerProducer(self, True)
        self._produce()

    def _produce(self):
        while not self.paused and self.written < len(self.data):
            piece = self.data[self.written:self.written + self.chunk]
            self.written += len(piece)
            self.consumer.write(piece)
        if self.written == len(self.data) and not self.done.called:
            self.consumer.unregisterProducer()
            self.done.callback(None)

    def pauseProducing(self):
        self.paused = True
        self.pauses += 1

    def resumeProducing(self):
        self.paused = False
        self.resumes += 1
        self._produce()

    def stopProducing(self):
        self.paused = True


def buffered(transport):
    """Bytes the transport holds in user space, not yet given to the kernel."""
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class _TransportBehaviour:
    """The behaviour of the fast transports; C{side} says which end is fast."""

    side = None

    def connect(self, fast=Peer, plain=Peer):
        return connect(self, self.side, fast, plain)

    # Corked writes ---------------------------------------------------------

    @inlineCallbacks
    def test_many_writes_in_one_turn_are_one_send(self):
        """
        The point of corking: a thousand write() calls and a writeSequence()
        in one reactor turn arrive complete and in order, in a single send
        at the end of the turn, without ever registering the socket for
        writability (an epoll_ctl pair saved per burst of writes).
        """
        fast, plain = yield self.connect()
        sends = Calls(self, fast.transport, "writeSomeData")
        add_writer = Calls(self, reactor, "addWriter")
        chunks = [b"%05d," % i for i in range(2000)]
        for chunk in chunks[:1000]:
            fast.transport.write(chunk)
        fast.transport.writeSequence(chunks[1000:])
        self.assertEqual(sends.calls, [], "nothing is sent before the end of the turn")
        expected = b"".join(chunks)
        yield plain.receive(len(expected))
        self.assertEqual(bytes(plain.received), expected)
        self.assertEqual(len(sends.calls), 1)
        self.assertEqual(add_writer.about(fast.transport), [])
        self.assertEqual(buffered(fast.transport), 0)

    @inlineCallbacks
    def test_plain_transport_registers_for_writability(self):
        """
        What the fast transport saves, seen on the plain one: Twisted's own
        write registers the socket for writability (which also shows that
        the reactor spy of the test above does see registrations).
        """
        fast, plain = yield self.connect()
        add_writer = Calls(self, reactor, "addWriter")
        plain.transport.write(b"hello")
        yield fast.receive(5)
        self.assertEqual(len(add_writer.about(plain.transport)), 1)

    @inlineCallbacks
    def test_each_turn_is_flushed_once(self):
        """
        One flush (one timer) per reactor turn, whatever the number of writes
        and of transports written to; writes of a later turn get their own.
        """
        fast1, plain1 = yield self.connect()
        fast2, plain2 = yield self.connect()
        flusher = wt._flusher_for(reactor)
        flushes = Calls(self, flusher, "_flush")
        for fast in (fast1, fast2, fast1, fast2):
            fast.transport.write(b"a")
            fast.transport.writeSequence([b"b", b"c"])
        yield turns(1)
        self.assertEqual(len(flushes.calls), 1)
        fast1.transport.write(b"d")
        fast2.transport.write(b"d")
        yield plain1.receive(7)
        yield plain2.receive(7)
        self.assertEqual(len(flushes.calls), 2)
        self.assertEqual(bytes(plain1.received), b"abcabcd")
        self.assertEqual(bytes(plain2.received), b"abcabcd")

    @inlineCallbacks
    def test_empty_writes_do_not_cork(self):
        """Empty writes send nothing and schedule no flush."""
        fast, plain = yield self.connect()
        fast.transport.write(b"")
        fast.transport.writeSequence([])
        fast.transport.writeSequence([b"", b""])
        self.assertFalse(fast.transport._corked)
        fast.transport.write(b"x")
        yield plain.receive(1)
        self.assertEqual(bytes(plain.received), b"x")

    @inlineCallbacks
    def test_write_of_text_is_refused_at_once(self):
        """
        As with Twisted's own transports, writing text (not bytes) raises
        TypeError in write() itself: a corked text write would instead fail
        at the end of the turn, away from the code that made the mistake.
        The connection stays usable.
        """
        fast, plain = yield self.connect()
        self.assertRaises(TypeError, fast.transport.write, "text")
        fast.transport.write(b"ok")  # now corked
        self.assertRaises(TypeError, fast.transport.write, "text")
        self.assertRaises(TypeError, fast.transport.writeSequence, [b"a", "b"])
        yield plain.receive(2)
        yield turns(2)
        self.assertEqual(bytes(plain.received), b"ok")

    @inlineCallbacks
    def test_error_in_one_flush_does_not_stall_the_others(self):
        """
        The flush at the end of a turn runs the code of registered producers
        (a drained buffer resumes them). If that code raises for one
        connection, the reactor's usual rule applies to that connection
        only (error logged, connection closed); the other connections
        written to in the same turn still get their bytes, and keep working.
        """

        class Failing:
            calls = 0

            def resumeProducing(self):
                self.calls += 1
                if self.calls > 1:
                    raise RuntimeError("producer failed")

            def stopProducing(self):
                pass

        bad, bad_plain = yield self.connect()
        good, good_plain = yield self.connect()
        bad.transport.registerProducer(Failing(), False)  # a pull producer
        bad.transport.write(b"bad")  # the flush's doWrite resumes it: it raises
        good.transport.write(b"good")
        yield good_plain.receive(4)
        yield bad.lost()
        reason = bad.reasons[0]
        self.assertTrue(reason.check(RuntimeError))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        good.transport.write(b" still")
        yield good_plain.receive(10)
        self.assertEqual(bytes(good_plain.received), b"good still")
        self.assertEqual(len(bad.reasons), 1)

    # Large writes and backpressure -----------------------------------------

    @inlineCallbacks
    def test_large_write_to_slow_reader(self):
        """
        8 MiB written at once, more than the kernel takes, to a peer that
        reads slowly: the flush sends what it can and leaves the rest to
        the reactor the usual way (registered for writability); all of it
        arrives, in order; small writes made meanwhile come after it.
        """
        fast, plain = yield self.connect(plain=SlowReader)
        add_writer = Calls(self, reactor, "addWriter")
        data = pattern(8 * MiB)
        fast.transport.write(data)
        yield turns(2)
        self.assertTrue(add_writer.about(fast.transport), "the rest is written the usual way")
        self.assertGreater(buffered(fast.transport), 0)
        fast.transport.write(b"tail")
        fast.transport.writeSequence([b"-", b"end"])
        yield plain.receive(len(data) + 8, timeout=30)
        self.assertEqual(len(plain.received), len(data) + 8)
        self.assertTrue(bytes(plain.received) == data + b"tail-end", "the bytes differ")
        yield turns(1)
        self.assertEqual(buffered(fast.transport), 0)
        self.assertNotIn(fast.transport, reactor.getWriters())

    @inlineCallbacks
    def test_streaming_producer_paused_and_resumed(self):
        """
        Backpressure still works: a streaming producer writing 8 MiB to a
        peer that does not read is paused once the transport's buffer is
        full, stays paused while the peer does not read (it has not written
        everything, and the transport holds little), and is resumed once the
        peer reads again, until everything has arrived.
        """
        fast, plain = yield self.connect()
        plain.transport.pauseProducing()  # the peer stops reading
        producer = Chunks(fast.transport, 8 * MiB)
        producer.start()
        self.assertGreaterEqual(producer.pauses, 1, "paused as soon as the buffer is full")
        # Wait until the kernel's buffers are full too: the producer stays paused.
        yield wait_until(lambda: producer.paused and buffered(fast.transport) > 0, timeout=10)
        yield deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(producer.paused)
        self.assertLess(producer.written, 8 * MiB)
        self.assertLessEqual(
            buffered(fast.transport), fast.transport.bufferSize + producer.chunk
        )
        resumes_before = producer.resumes
        plain.transport.resumeProducing()
        yield plain.receive(8 * MiB, timeout=30)
        yield producer.done
        self.assertGreater(producer.resumes, resumes_before)
        self.assertTrue(bytes(plain.received) == producer.data, "the bytes differ")

    # Closing ----------------------------------------------------------------

    @inlineCallbacks
    def test_lose_connection_after_writes_delivers_everything(self):
        """
        loseConnection() in the same turn as the writes ends the cork: the
        reactor sends the buffer, then closes; the peer gets every byte and
        a clean close.
        """
        fast, plain = yield self.connect()
        data = pattern(3 * MiB)
        for i in range(0, len(data), 50000):
            fast.transport.write(data[i:i + 50000])
        fast.transport.loseConnection()
        fast.transport.write(b"")  # no effect, and no error
        yield plain.lost()
        reason = plain.reasons[0]
        self.assertTrue(reason.check(error.ConnectionDone), reason)
        self.assertTrue(bytes(plain.received) == data, "the bytes differ")
        yield fast.lost()
        yield turns(1)
        self.assertEqual(len(fast.reasons), 1)
        self.assertTrue(fast.reasons[0].check(error.ConnectionDone), fast.reasons[0])

    @inlineCallbacks
    def test_lose_connection_of_small_corked_write(self):
        """The smallest case of the above: a few bytes, then loseConnection()."""
        fast, plain = yield self.connect()
        fast.transport.write(b"bye")
        fast.transport.writeSequence([b", ", b"now"])
        fast.transport.loseConnection()
        yield plain.lost()
        self.assertEqual(bytes(plain.received), b"bye, now")
        yield fast.lost()
        self.assertEqual(len(fast.reasons), 1)

    @inlineCallbacks
    def test_abort_after_corked_write(self):
        """
        abortConnection() right after a corked write does not raise; the
        flush at the end of the turn then sends nothing (abort drops the
        buffer, as Twisted's does), logs no error and leaves the closed
        transport registered for nothing; connectionLost is called once.
        """
        fast, plain = yield self.connect()
        transport = fast.transport
        transport.write(b"dropped")
        transport.abortConnection()
        transport.write(b"after")  # ignored, no error
        yield fast.lost()
        reason = fast.reasons[0]
        self.assertTrue(reason.check(error.ConnectionAborted), reason)
        yield plain.lost()
        yield turns(2)
        self.assertEqual(bytes(plain.received), b"")
        self.assertEqual(len(fast.reasons), 1)
        self.assertNotIn(transport, reactor.getWriters())
        self.assertNotIn(transport, reactor.getReaders())

    @inlineCallbacks
    def test_write_after_peer_closed(self):
        """
        Writes to a connection the peer has closed, before the transport
        knows it, end with one connectionLost and no logged error.
        """
        fast, plain = yield self.connect()
        plain.transport.abortConnection()  # a reset, not a clean close
        yield plain.lost()
        for _ in range(3):
            fast.transport.write(b"x" * 100000)
            yield turns(1)
        yield fast.lost()
        yield turns(2)
        self.assertEqual(len(fast.reasons), 1)

    # Lazy pause -------------------------------------------------------------

    @inlineCallbacks
    def test_pause_holds_data_until_resume(self):
        """
        After pauseProducing(), data from the peer is not delivered; the
        transport stops reading for real when it comes (once), and delivers
        it after resumeProducing(), followed by what comes next.
        """
        fast, plain = yield self.connect()
        remove_reader = Calls(self, reactor, "removeReader")
        fast.transport.pauseProducing()
        plain.transport.write(b"held")
        yield wait_until(lambda: fast.transport not in reactor.getReaders())
        yield turns(2)
        self.assertEqual(bytes(fast.received), b"")
        self.assertEqual(len(remove_reader.about(fast.transport)), 1)
        fast.transport.resumeProducing()
        self.assertIn(fast.transport, reactor.getReaders())
        plain.transport.write(b" then more")
        yield fast.receive(14)
        self.assertEqual(bytes(fast.received), b"held then more")

    @inlineCallbacks
    def test_pause_resume_without_data_costs_no_registration(self):
        """
        The common case that lazy pausing is for: a pause that ends before
        the peer sends anything does not touch the reactor's registrations
        at all (a plain transport's pause does: removeReader, addReader).
        """
        fast, plain = yield self.connect()
        add_reader = Calls(self, reactor, "addReader")
        remove_reader = Calls(self, reactor, "removeReader")
        for _ in range(3):
            fast.transport.pauseProducing()
            yield turns(2)
            fast.transport.resumeProducing()
        self.assertEqual(add_reader.about(fast.transport), [])
        self.assertEqual(remove_reader.about(fast.transport), [])
        self.assertIn(fast.transport, reactor.getReaders())
        plain.transport.pauseProducing()
        plain.transport.resumeProducing()
        self.assertEqual(len(remove_reader.about(plain.transport)), 1)
        self.assertEqual(len(add_reader.about(plain.transport)), 1)
        plain.transport.write(b"still reading")
        yield fast.receive(13)
        self.assertEqual(bytes(fast.received), b"still reading")

    @inlineCallbacks
    def test_repeated_pause_needs_one_resume(self):
        """As with Twisted's transports, pauses do not nest: one resume undoes them."""
        fast, plain = yield self.connect()
        fast.transport.pauseProducing()
        fast.transport.pauseProducing()
        plain.transport.write(b"abc")
        yield wait_until(lambda: fast.transport not in reactor.getReaders())
        fast.transport.pauseProducing()
        fast.transport.resumeProducing()
        yield fast.receive(3)
        self.assertEqual(bytes(fast.received), b"abc")

    @inlineCallbacks
    def test_peer_close_during_pause_reported_after_resume(self):
        """
        The peer sends its last bytes and closes while the transport is
        paused: nothing is reported during the pause; after the resume the
        bytes are delivered, then connectionLost (a clean close), once.
        """
        fast, plain = yield self.connect()
        fast.transport.pauseProducing()
        plain.transport.write(b"last words")
        plain.transport.loseConnection()
        yield plain.lost()
        yield wait_until(lambda: fast.transport not in reactor.getReaders())
        yield turns(2)
        self.assertEqual((bytes(fast.received), fast.reasons), (b"", []))
        fast.transport.resumeProducing()
        yield fast.lost()
        reason = fast.reasons[0]
        self.assertTrue(reason.check(error.ConnectionDone), reason)
        self.assertEqual(bytes(fast.received), b"last words")
        yield turns(1)
        self.assertEqual(len(fast.reasons), 1)

    @inlineCallbacks
    def test_peer_close_without_data_during_pause(self):
        """Same with a close that brings no data: reported after the resume."""
        fast, plain = yield self.connect()
        fast.transport.pauseProducing()
        plain.transport.loseConnection()
        yield plain.lost()
        yield wait_until(lambda: fast.transport not in reactor.getReaders())
        yield turns(2)
        self.assertEqual(fast.reasons, [])
        fast.transport.resumeProducing()
        yield fast.lost()
        reason = fast.reasons[0]
        self.assertTrue(reason.check(error.ConnectionDone), reason)
        self.assertEqual(len(fast.reasons), 1)

    @inlineCallbacks
    def test_lose_connection_while_paused(self):
        """
        loseConnection() during a pause closes the connection (a later
        resume does not start reading again), after the writes are sent.
        """
        fast, plain = yield self.connect()
        fast.transport.pauseProducing()
        plain.transport.write(b"unread")
        yield wait_until(lambda: fast.transport not in reactor.getReaders())
        fast.transport.write(b"goodbye")
        fast.transport.loseConnection()
        fast.transport.resumeProducing()
        yield fast.lost()
        yield plain.lost()
        self.assertEqual(bytes(plain.received), b"goodbye")
        self.assertEqual(bytes(fast.received), b"")
        self.assertEqual(len(fast.reasons), 1)

    # Addresses ---------------------------------------------------------------

    @inlineCallbacks
    def test_get_host_cached_and_right(self):
        """getHost() is read once: the same object each time, the socket's address."""
        fast, plain = yield self.connect()
        host = fast.transport.getHost()
        self.assertIs(fast.transport.getHost(), host)
        self.assertEqual(host, IPv4Address("TCP", *fast.transport.socket.getsockname()))
        self.assertEqual(host, plain.transport.getPeer())
        self.assertEqual(fast.transport.getPeer(), plain.transport.getHost())

    @inlineCallbacks
    def test_get_peer_cached_and_right(self):
        """getPeer() is made once: the same object each time, the peer's address."""
        fast, plain = yield self.connect()
        peer = fast.transport.getPeer()
        self.assertIs(fast.transport.getPeer(), peer)
        self.assertEqual(peer, IPv4Address("TCP", *fast.transport.socket.getpeername()))
        self.assertEqual(peer, plain.transport.getHost())


class FastServerTests(_TransportBehaviour, TestCase):
    """L{FastServer}: the fast transport is the accepted connection."""

    side = "server"


class FastClientTests(_TransportBehaviour, TestCase):
    """L{FastClient}: the fast transport is the outgoing connection."""

    side = "client"


class ReadSizeTests(TestCase):
    """
    L{FastServer} reads up to C{read_size} (256 KiB) per recv(): an upload
    costs fewer reads, and less of the Python work behind each. Its write
    buffer's limit (C{bufferSize}, which decides when a producer writing to
    it is paused, so what a slow client can make the gateway hold) stays
    Twisted's 64 KiB, and L{FastClient} reads as Twisted does. FastServer
    reads with its own copy of Twisted's doRead, so these tests also check
    that the copy handles recv()'s outcomes as Twisted's does.
    """

    @inlineCallbacks
    def read_after_pause(self, side, size=200 * 1024):
        """
        Let the peer write C{size} bytes while the fast transport (on
        C{side}) is paused, wait until more than 128 KiB of them wait
        unread in the kernel, then resume it. Fires with the recv() spy
        and the fast protocol (which notes the size of each delivery),
        once everything has arrived, unchanged.
        """
        fast, plain = yield connect(self, side, fast=ChunkSizes)
        # Room in the kernel for more than 64 KiB unread (Linux's default
        # receive buffer, without autotuning, holds about 64 KiB of data).
        fast.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, MiB)
        spy = RecvSpy(self, fast.transport)
        fast.transport.pauseProducing()
        data = pattern(size)
        plain.transport.write(data)
        yield wait_until(lambda: unread(fast.transport) > 128 * 1024, timeout=10)
        self.assertEqual(fast.sizes, [], "nothing delivered during the pause")
        fast.transport.resumeProducing()
        yield fast.receive(size)
        self.assertTrue(bytes(fast.received) == data, "the bytes differ")
        return spy, fast

    @inlineCallbacks
    def test_server_reads_read_size_at_once(self):
        """
        An accepted connection asks recv() for 256 KiB, and so delivers more
        than Twisted's 64 KiB in one dataReceived when that much is waiting.
        """
        spy, fast = yield self.read_after_pause("server")
        self.assertEqual(FastServer.read_size, 256 * 1024)
        self.assertEqual(set(spy.sizes), {256 * 1024})
        self.assertGreater(fast.sizes[0], 128 * 1024)
        self.assertLessEqual(max(fast.sizes), 256 * 1024)

    @inlineCallbacks
    def test_client_reads_twisteds_buffer_size(self):
        """
        An outgoing connection (to the backend) keeps Twisted's reads: 64 KiB
        at most per recv(), as much as is waiting.
        """
        spy, fast = yield self.read_after_pause("client")
        self.assertIsNone(FastClient.read_size)
        self.assertEqual(set(spy.sizes), {65536})
        self.assertEqual(max(fast.sizes), 65536)

    def test_buffer_size_stays_twisteds(self):
        """
        bufferSize, the write buffer's limit, is Twisted's 64 KiB on both
        transports: the bigger reads of FastServer must not raise it.
        """
        self.assertEqual(abstract.FileDescriptor.bufferSize, 65536)
        self.assertEqual(FastServer.bufferSize, 65536)
        self.assertEqual(FastClient.bufferSize, 65536)

    @inlineCallbacks
    def test_producer_paused_beyond_64_kib_buffered(self):
        """
        On real connections of both kinds, a streaming producer writing to
        the transport is paused as soon as more than 64 KiB are buffered,
        not 256 KiB: the read size leaves the write side's backpressure alone.
        """

        @implementer(IPushProducer)
        class Pauses:
            paused = 0

            def pauseProducing(self):
                self.paused += 1

            def resumeProducing(self):
                pass

            def stopProducing(self):
                pass

        for side in ("server", "client"):
            fast, plain = yield connect(self, side)
            self.assertEqual(fast.transport.bufferSize, 65536, side)
            producer = Pauses()
            fast.transport.registerProducer(producer, True)
            fast.transport.write(b"x" * 65536)  # corked: all of it still buffered
            self.assertEqual(producer.paused, 0, side)
            fast.transport.write(b"y")
            self.assertEqual(producer.paused, 1, side)
            fast.transport.unregisterProducer()
            yield plain.receive(65537)
            self.assertEqual(len(plain.received), 65537, side)

    @inlineCallbacks
    def test_nothing_to_read_is_not_a_lost_connection(self):
        """
        A read when the socket has nothing to give (recv() fails with
        EWOULDBLOCK: a spurious wake-up) returns None, as Twisted's does:
        the connection stays open and goes on working.
        """
        fast, plain = yield connect(self, "server")
        spy = RecvSpy(self, fast.transport)
        self.assertIsNone(fast.transport.doRead())
        self.assertEqual(spy.sizes, [256 * 1024])
        self.assertIsInstance(spy.outcomes[0], BlockingIOError)
        self.assertEqual(spy.outcomes[0].errno, EWOULDBLOCK)
        yield turns(2)
        self.assertEqual(fast.reasons, [])
        self.assertTrue(fast.transport.connected)
        self.assertIn(fast.transport, reactor.getReaders())
        plain.transport.write(b"still open")
        yield fast.receive(10)
        fast.transport.write(b"both ways")
        yield plain.receive(9)
        self.assertEqual((bytes(fast.received), bytes(plain.received)), (b"still open", b"both ways"))

    @inlineCallbacks
    def test_reset_by_peer_is_a_lost_connection(self):
        """
        Any other error of recv() (here the peer's reset, ECONNRESET) ends
        the connection as lost (ConnectionLost, not a clean close), once.
        """
        fast, plain = yield connect(self, "server")
        spy = RecvSpy(self, fast.transport)
        plain.transport.abortConnection()  # SO_LINGER 0: a reset, not a FIN
        yield plain.lost()
        yield fast.lost()
        reason = fast.reasons[0]
        self.assertTrue(reason.check(error.ConnectionLost), reason)
        self.assertEqual([getattr(o, "errno", o) for o in spy.outcomes], [ECONNRESET])
        yield turns(1)
        self.assertEqual(len(fast.reasons), 1)


class StartTLSTests(TestCase):
    """Transports switched to Twisted's startTLS keep Twisted's own behaviour."""

    @inlineCallbacks
    def test_write_after_start_tls_in_same_turn_is_encrypted(self):
        """
        A server that answers, starts TLS and writes more in the same turn
        (the STARTTLS pattern): the answer is corked, but what follows
        startTLS must go through TLS, never out in clear with the answer.
        """
        with open(pki().good, "rb") as f:
            server_tls = ssl.PrivateCertificate.loadPEM(f.read()).options()

        class StartsTLS(Peer):
            def connectionMade(self):
                super().connectionMade()
                self.transport.write(b"go\n")
                self.transport.startTLS(server_tls)
                self.transport.write(b"secret")

        fast, plain = yield connect(self, "server", fast=StartsTLS)
        yield plain.receive(3)
        yield turns(3)
        self.assertEqual(bytes(plain.received), b"go\n", "bytes sent in clear after startTLS")
        with open(pki().ca_pem, "rb") as f:
            ca = ssl.Certificate.loadPEM(f.read())
        plain.transport.startTLS(ssl.optionsForClientTLS("localhost", trustRoot=ca))
        yield plain.receive(9)
        self.assertEqual(bytes(plain.received), b"go\nsecret")


class ReactorTests(TestCase):
    """L{FastConnectReactor} and the functions choosing the transports."""

    @inlineCallbacks
    def test_hostname_endpoint_makes_fast_clients(self):
        """
        Through L{FastConnectReactor}, an endpoint (the backend's is a
        HostnameEndpoint) makes L{FastClient} connections, which work.
        """
        factory = Accepting()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        endpoint = HostnameEndpoint(FastConnectReactor(reactor), "127.0.0.1", port.getHost().port)
        client = yield connectProtocol(endpoint, Peer())
        self.addCleanup(close, client)
        server = yield factory.connections.get()
        self.addCleanup(close, server)
        self.assertIsInstance(client.transport, FastClient)
        client.transport.write(b"ping")
        yield server.receive(4)
        server.transport.write(b"pong")
        yield client.receive(4)
        self.assertEqual((bytes(server.received), bytes(client.received)), (b"ping", b"pong"))

    def test_everything_else_is_the_reactors(self):
        """Timers, clock and interfaces pass through to the real reactor."""
        fast = FastConnectReactor(reactor)
        self.assertEqual(fast.seconds, reactor.seconds)
        self.assertEqual(fast.callLater, reactor.callLater)
        self.assertIs(fast.nameResolver, reactor.nameResolver)
        for interface in (IReactorTCP, IReactorTime, IReactorPluggableNameResolver):
            self.assertTrue(interface.providedBy(fast), interface)
        fired = Deferred()
        fast.callLater(0, fired.callback, "fired")
        return fired.addCallback(self.assertEqual, "fired")

    def test_for_connecting_on_real_reactor(self):
        fast = for_connecting(reactor)
        self.assertIsInstance(fast, FastConnectReactor)
        self.assertIs(fast._reactor, reactor)

    def test_fake_reactor_gets_plain_behaviour(self):
        """
        A test's fake reactor (MemoryReactorClock) is no posix reactor: the
        functions fall back to its plain methods, recorded as it records them.
        """
        fake = MemoryReactorClock()
        factory = Accepting()
        self.assertIs(for_connecting(fake), fake)
        listen_tcp(fake, 8080, factory, 50, "127.0.0.1")
        self.assertEqual(fake.tcpServers, [(8080, factory, 50, "127.0.0.1")])
        adopt_port(fake, 7, socket.AF_INET, factory)
        self.assertEqual(fake.adoptedPorts, [(7, socket.AF_INET, factory)])

    @inlineCallbacks
    def accept_one(self, port, factory):
        """
        Connect a plain client to C{port}, a L{FastPort}; the server's side is
        a L{FastServer}. Fires with (client, server), both closed at cleanup.
        """
        self.assertIsInstance(port, FastPort)
        client = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Peer()
        )
        self.addCleanup(close, client)
        server = yield factory.connections.get()
        self.addCleanup(close, server)
        self.assertIsInstance(server.transport, FastServer)
        return client, server

    @inlineCallbacks
    def test_listen_tcp_accepts_fast_servers(self):
        factory = Accepting()
        port = listen_tcp(reactor, 0, factory, 50, "127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertEqual(port.getHost().host, "127.0.0.1")
        yield self.accept_one(port, factory)

    @inlineCallbacks
    def test_adopt_port_accepts_fast_servers(self):
        """
        An inherited listening socket (how worker processes share one port)
        adopted with L{adopt_port} gives L{FastServer} connections too.
        """
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(50)
        listener.setblocking(False)
        factory = Accepting()
        try:
            port = adopt_port(reactor, listener.fileno(), socket.AF_INET, factory)
        finally:
            listener.close()  # the reactor has its own copy of the descriptor
        self.addCleanup(port.stopListening)
        client, server = yield self.accept_one(port, factory)
        server.transport.write(b"adopted")
        yield client.receive(7)
        self.assertEqual(bytes(client.received), b"adopted")


class TwistedPrivateNamesTests(TestCase):
    """
    The private parts of Twisted that wighaven.proxy.transport uses. If one of
    these fails after a Twisted upgrade, re-read the module against the new
    twisted.internet.abstract / tcp / epollreactor before changing the pin.
    """

    def test_write_buffer_fields(self):
        """The two-level write buffer and the half-close flag."""
        descriptor = abstract.FileDescriptor(reactor)
        self.assertEqual(descriptor._tempDataBuffer, [])
        self.assertEqual(descriptor._tempDataLen, 0)
        self.assertEqual(descriptor.dataBuffer, b"")
        self.assertEqual(descriptor.offset, 0)
        self.assertIs(descriptor._writeDisconnected, False)
        self.assertIsInstance(abstract.FileDescriptor.bufferSize, int)
        source = inspect.getsource(abstract.FileDescriptor.doWrite)
        for name in ("_tempDataBuffer", "_tempDataLen", "dataBuffer", "offset", "stopWriting"):
            self.assertIn(name, source)
        # Twisted's own check that written data is bytes, reused by the cork.
        self.assertRaises(TypeError, abstract._dataMustBeBytes, "text")
        abstract._dataMustBeBytes(b"bytes")

    def test_tcp_hooks(self):
        """The hooks of twisted.internet.tcp the subclasses plug into."""
        self.assertIs(tcp.Connection.TLS, False)
        self.assertTrue(callable(tcp.Connection.abortConnection))
        self.assertIs(tcp.Port.transport, tcp.Server)
        self.assertTrue(callable(tcp.Connector._makeTransport))
        self.assertTrue(callable(tcp.Port._fromListeningDescriptor))
        self.assertEqual(
            list(inspect.signature(tcp.Client.__init__).parameters),
            ["self", "host", "port", "bindAddress", "connector", "reactor"],
        )

    def test_do_read_as_copied(self):
        """
        FastServer.doRead is a copy of Twisted's Connection.doRead with its
        own read size: recv(bufferSize), None on EWOULDBLOCK, CONNECTION_LOST
        on other errors, then _dataReceived. A change there must be copied.
        """
        source = inspect.getsource(tcp.Connection.doRead)
        for fragment in (
            "self.socket.recv(self.bufferSize)",
            "EWOULDBLOCK",
            "main.CONNECTION_LOST",
            "self._dataReceived(data)",
        ):
            self.assertIn(fragment, source)
        self.assertTrue(callable(tcp.Connection._dataReceived))

    @inlineCallbacks
    def test_writes_while_registered_go_twisteds_way(self):
        """
        A transport registered for writability (some bytes the kernel did
        not take) writes the usual way, behind them, never corked ahead;
        once unregistered it corks again. Registration is seen through the
        reactor's public getWriters().
        """
        fast, plain = yield connect(self, "server")
        transport = fast.transport
        transport.startWriting()
        self.assertIn(transport, reactor.getWriters())
        transport.write(b"behind")
        self.assertFalse(transport._corked)
        yield plain.receive(len(b"behind"))
        self.assertNotIn(transport, reactor.getWriters())  # doWrite drained and unregistered
        transport.write(b"corked")
        self.assertTrue(transport._corked)
        self.assertNotIn(transport, reactor.getWriters())
        yield plain.receive(len(b"behindcorked"))
        self.assertEqual(bytes(plain.received), b"behindcorked")

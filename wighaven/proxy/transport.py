"""TCP transports that spend fewer system calls per proxied request.

Why: a profile of the gateway under many small requests shows about a
sixth of its time in epoll registration changes, not in proxying. Twisted's
TCP transport (twisted.internet.tcp) never writes at once: every write
registers the socket for writability (one epoll_ctl), waits for the next
reactor turn, writes, and unregisters (another). Every pause of a
transport (Twisted's HTTP client pauses the backend connection at each
response's headers and resumes it a moment later, when the body gets its
reader) unregisters and re-registers it for reading: two more. These
subclasses change only that:

  - writes corked to the end of the reactor turn: a write to a transport
    with nothing queued is kept in its buffer, and one timer a turn
    (callLater(0), shared by every transport) sends each buffer with one
    send() once the turn's work is done. The response head and body, or a
    request head and its first body bytes, thus leave in one system call,
    and the socket is registered for writability (the usual way) only
    when the kernel does not take everything. Byte order and backpressure
    are Twisted's.
  - lazy pause: pauseProducing only marks the transport paused. If data
    arrives while it is paused, the transport stops reading for real then
    (epoll is level-triggered, so nothing is lost); resumeProducing undoes
    whichever happened. A pause that ends before the peer sends anything,
    the common case, costs nothing.
  - the local and remote addresses are made once per connection
    (Twisted's HTTP server asks for them on every request);
  - on request (L{watch_hangup}: an upload held back by backpressure), a
    connection whose reading is stopped is watched for its peer hanging up
    (L{wighaven.proxy.hangup}): a client that leaves while its upload waits is
    noticed at once, not when reading resumes.

L{FastPort} listens with L{FastServer} connections; L{FastConnectReactor}
hands an endpoint (the backend's) L{FastClient} connections. Transports
that have switched to Twisted's old startTLS keep Twisted's own behaviour.
setup.py caps Twisted at the releases where tests/test_twisted_private.py
passes; each private name used here (the write buffer's fields) has a test
there.
"""

from __future__ import annotations

import socket
from errno import EWOULDBLOCK

from twisted.internet import main, tcp
from twisted.internet.abstract import _dataMustBeBytes  # Twisted's own write check
from twisted.internet.posixbase import PosixReactorBase
from twisted.python import failure, log
from zope.interface import directlyProvides, providedBy

from .hangup import hangup_watch_for

__all__ = [
    "FastClient", "FastConnectReactor", "FastPort", "FastServer", "address_family", "adopt_port",
    "for_connecting", "listen_tcp",
]


class _Flusher:
    """
    Writes the corked transports of one reactor turn, once, at its end:
    one timer per turn, whatever the number of writes.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        self._corked = []

    def cork(self, transport) -> None:
        if not self._corked:
            self._reactor.callLater(0, self._flush)
        self._corked.append(transport)

    def _flush(self):
        corked, self._corked = self._corked, []
        for transport in corked:
            try:
                transport._flush_corked()
            except BaseException:
                # A producer resumed by the flush raised. As the reactor does
                # when a doWrite raises: log it and drop that connection. The
                # other transports of this turn must still be written: left
                # corked, they would never be flushed again.
                reason = failure.Failure()
                log.err(reason, "Unhandled error in a corked write")
                try:
                    transport.connectionLost(reason)
                except BaseException:
                    log.err(None, "Unhandled error in connectionLost")


_flushers = {}


def _flusher_for(reactor) -> _Flusher:
    flusher = _flushers.get(id(reactor))
    if flusher is None or flusher._reactor is not reactor:
        flusher = _flushers[id(reactor)] = _Flusher(reactor)
    return flusher


class _FewerSyscalls:
    """The mixin over a twisted.internet.tcp connection (see the module doc)."""

    _read_paused = False  # paused by a consumer
    _read_stopped = False  # ...and data came, so reading is really stopped
    _watch_hangup = False  # a hang-up of the peer aborts, even while not reading
    _corked = False  # writes wait in the buffer for the end of this reactor turn
    _writing = False  # registered for writability: Twisted's own write path is on
    _cached_host = None
    _cached_peer = None
    read_size = None  # bytes asked of each recv(); None: Twisted's bufferSize

    def _can_cork(self) -> bool:
        """Nothing is being written the usual way (registered for writability)."""
        return (
            self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not getattr(self, "TLS", False)
            and not self._writing
        )

    def write(self, data):
        if self._corked or (data and self._can_cork()):
            _dataMustBeBytes(data)
            self._cork((data,))
        else:
            super().write(data)

    def writeSequence(self, iovec):
        # Twisted's HTTP server writes a response head as dozens of pieces:
        # they are checked and queued in one go.
        if self._corked or self._can_cork():
            for data in iovec:
                _dataMustBeBytes(data)  # all or nothing, as Twisted's own
            self._cork(iovec)
        else:
            super().writeSequence(iovec)

    def _cork(self, pieces):
        if not self.connected or self._writeDisconnected:
            return
        size = sum(map(len, pieces))
        if not size:
            return
        self._tempDataBuffer.extend(pieces)
        self._tempDataLen += size
        if self.producer is not None:
            self._maybePauseProducer()
        if not self._corked:
            self._corked = True
            _flusher_for(self.reactor).cork(self)

    def startTLS(self, *args, **kwargs):
        # What was written before goes out as it is, the usual way; what
        # follows goes through the TLS layer (never corked: _can_cork).
        if self._corked:
            self.startWriting()
        return super().startTLS(*args, **kwargs)

    def startWriting(self):
        # Registering for writability (loseConnection does) ends the cork:
        # the reactor's doWrite then sends the buffer, corked bytes first.
        self._corked = False
        self._writing = True
        super().startWriting()

    def stopWriting(self):
        self._writing = False
        super().stopWriting()

    def _flush_corked(self):
        """The end of the reactor turn: send what was written during it."""
        if not self._corked:
            return
        self._corked = False
        if not self.connected:
            return
        result = self.doWrite()
        if result is not None or self._tempDataLen or self.offset < len(self.dataBuffer):
            # Left over, or an error the reactor's own doWrite will report.
            self.startWriting()

    def pauseProducing(self):
        if getattr(self, "TLS", False):
            return super().pauseProducing()
        self._read_paused = True

    def resumeProducing(self):
        if not self._read_paused:
            return super().resumeProducing()
        self._read_paused = False
        if self._read_stopped:
            self._read_stopped = False
            if self._watch_hangup:
                hangup_watch_for(self.reactor).unwatch(self)
            super().resumeProducing()

    def doRead(self):
        if self._read_paused:
            self._read_stopped = True
            self.stopReading()
            if self._watch_hangup:
                hangup_watch_for(self.reactor).watch(self)
            return None
        if self.read_size is None:
            return super().doRead()
        # Twisted's Connection.doRead, with its own read size.
        try:
            data = self.socket.recv(self.read_size)
        except OSError as e:
            return None if e.args[0] == EWOULDBLOCK else main.CONNECTION_LOST
        return self._dataReceived(data)

    def watch_hangup(self, on: bool) -> None:
        """
        While C{on}, a peer that hangs up aborts the connection at once, even
        while reading is stopped: for a pause that only an incomplete upload
        holds (the request can never complete then). Off, a hang-up is
        seen when reading resumes, as Twisted does (a client that half-closes
        after its request still gets the answer in flight).
        """
        self._watch_hangup = on
        if self._read_stopped:
            watch = hangup_watch_for(self.reactor)
            (watch.watch if on else watch.unwatch)(self)

    def connectionLost(self, reason):
        if self._watch_hangup:
            hangup_watch_for(self.reactor).unwatch(self)
        super().connectionLost(reason)

    def getHost(self):
        if self._cached_host is None:
            self._cached_host = super().getHost()
        return self._cached_host

    def getPeer(self):
        # Twisted's HTTP server asks for it on every request (a new address
        # object each time); a connection's peer never changes.
        if self._cached_peer is None:
            self._cached_peer = super().getPeer()
        return self._cached_peer


class FastServer(_FewerSyscalls, tcp.Server):
    """
    An accepted connection (see the module doc). It reads up to 256 KiB at
    a time: an upload then costs a quarter of the reads (and of the Python
    work behind each), while the write buffer's limit, which bounds what a
    slow client can make the gateway hold, stays Twisted's 64 KiB.
    """

    read_size = 256 * 1024


class FastClient(_FewerSyscalls, tcp.Client):
    """An outgoing connection (see the module doc)."""


class FastPort(tcp.Port):
    """A listening port whose connections are L{FastServer}s."""

    transport = FastServer


class _FastConnector(tcp.Connector):
    def _makeTransport(self):
        return FastClient(self.host, self.port, self.bindAddress, self, self.reactor)


class FastConnectReactor:
    """
    The reactor as an endpoint sees it, except that connectTCP makes
    L{FastClient} connections; everything else (name resolution, timers,
    TLS) is the real reactor's.
    """

    def __init__(self, reactor):
        self._reactor = reactor
        directlyProvides(self, *providedBy(reactor))

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def connectTCP(self, host, port, factory, timeout=30, bindAddress=None):
        connector = _FastConnector(host, port, factory, timeout, bindAddress, self._reactor)
        connector.connect()
        return connector


def address_family(interface: str) -> int:
    """The socket family of a listening address (IPv6 when it has a colon)."""
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


def _real(reactor) -> bool:
    """A real posix reactor (not a test's fake): these transports fit it."""
    return isinstance(reactor, PosixReactorBase)


def for_connecting(reactor):
    """The reactor to give the backend's endpoint: L{FastConnectReactor} on a real one."""
    return FastConnectReactor(reactor) if _real(reactor) else reactor


def listen_tcp(reactor, port, factory, backlog, interface):
    """Like reactor.listenTCP, with L{FastServer} connections."""
    if not _real(reactor):
        return reactor.listenTCP(port, factory, backlog=backlog, interface=interface)
    listening = FastPort(port, factory, backlog, interface, reactor)
    listening.startListening()
    return listening


def adopt_port(reactor, fd, family, factory):
    """Like reactor.adoptStreamPort, with L{FastServer} connections (a L{SharedPort})."""
    if not _real(reactor):
        return reactor.adoptStreamPort(fd, family, factory)
    listening = SharedPort._fromListeningDescriptor(reactor, fd, family, factory)
    listening.startListening()
    return listening


class SharedPort(FastPort):
    """
    A listening socket that other processes accept from too (the workers of
    L{wighaven.run.cluster}). Twisted accepts up to C{numberAccepts} connections
    per wake-up, a number that grows with the traffic (100 at first): the
    first worker to wake would take a whole burst (a load tester's 64
    connections made at once) and leave the others idle: 64 to 0 most
    times with two workers. Taking one at a time, each idle worker takes
    its share (about 38 to 26; SO_REUSEPORT gave 35 to 29), for one more
    epoll wake-up per connection of a burst.
    """

    accepts_per_wakeup = 1

    def doRead(self):
        self.numberAccepts = self.accepts_per_wakeup  # Twisted's adaptive count, pinned
        return super().doRead()

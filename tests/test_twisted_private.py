"""
The private names of Twisted the gateway relies on, one named test each.

Twisted does not promise to keep them. Each test below checks the behaviour
the gateway needs from its name, not merely that the name exists, so that a
Twisted release that changes one fails the test named after it. The Twisted
range in setup.py is the set of releases on which this module passes;
L{DependencyRangeTests} checks that setup.py asks for ranges (no exact pin
holds back a security release of Twisted, cryptography or pyOpenSSL) and
that requirements.txt, the tested lock, pins a version inside each.

To add a name: write its entry in the list below
(C{- Name -- where it is used: what for. Breaks: what goes wrong}) and a
test in L{PrivateNamesTests} named C{test_} + the name with every dot made
an underscore (C{Agent._getEndpoint} -> C{test_Agent__getEndpoint}).
L{ListTests} fails while an entry has no test or a test no entry, and while
the package uses a private name of Twisted (or of treq, Klein, pyOpenSSL...)
that is not listed: it finds imports of private modules and names, private
attributes read on other objects or on C{self} but defined by no class of
the package, and methods of the package that override private ones.

HTTP server (twisted.web.http, twisted.protocols.basic):
- HTTPChannel._dataBuffer -- proxy/channel.py GatewayChannel._hold and _replay:
  the bytes a client sends while an answer is written, parsed once it is
  done; proxy/websocket.py WebSocketRelay._tunnel: what the client sent after its
  handshake, taken to the backend at 101. Breaks: pipelined requests and
  the first frames of a client that does not wait for the 101.
- HTTPChannel._handlingRequest -- proxy/channel.py GatewayChannel: set from a
  request's complete body to its answer's end; Twisted's pauseProducing and
  resumeProducing leave the client's reading alone while it is set. Breaks:
  pipelining order, and a slow reader pausing its own upload.
- HTTPChannel._networkProducer -- proxy/channel.py GatewayChannel._hold, _park
  and requestDone: the client's transport as a push producer, paused while
  too much of a next request waits and resumed at each answer's end, as
  Twisted's requestDone does. Breaks: the bound on pipelined bytes read
  ahead.
- HTTPChannel._waitingForTransport -- proxy/channel.py GatewayChannel: whether
  the client's transport has paused the channel (its send buffer is full);
  reading is not resumed then. Breaks: backpressure from slow readers.
- HTTPChannel._optimisticEagerReadSize -- proxy/channel.py GatewayChannel._hold
  and _park: how many bytes of a next request are read ahead before the
  client is paused. Breaks: memory bound of pipelining clients.
- HTTPChannel._send100Continue -- proxy/channel.py GatewayChannel: overridden so
  that only a request the gateway goes on with hears 100 Continue. Breaks:
  clients send bodies the gateway has refused (413).
- HTTPChannel._protocolUpgradeForWebsockets -- proxy/websocket.py
  WebSocketRelay._tunnel: hands the client's connection to the byte relay
  after 101. Breaks: every WebSocket (Streamlit, Gradio live updates).
- http.Request._cleanup -- proxy/channel.py GatewayRequest._cleanup: postponed
  until the rest of a body answered early has been read. Breaks: a next
  request could start inside the previous one's body (smuggling).
- http.Request._disconnected -- proxy/channel.py GatewayRequest._cleanup: whether
  the client's connection is gone. Breaks: the end of requests answered
  early on a lost connection.
- http._ChunkedTransferDecoder -- proxy/websocket.py _decoder_for: the chunked
  body of a backend's non-101 answer to a handshake. Breaks: that body.
- http._IdentityTransferDecoder -- proxy/websocket.py _decoder_for: the same
  with Content-Length. Breaks: that body.

HTTP client (twisted.web.client, twisted.web._newclient):
- twisted.web._newclient -- proxy/errors.py: the request failures are imported
  from it. Breaks: the import of the gateway, the classification of
  upstream errors.
- Agent._getEndpoint -- proxy/upstream.py BackendAgent: the one endpoint to the
  backend (TLS verified), also used for WebSocket tunnels. Breaks: every
  connection to the backend.
- twisted.web.client._HTTP11ClientFactory -- observe/logs.py _QUIET_NAMESPACES: a
  log namespace kept at warn. Breaks: two info lines per new connection of
  treq's (probes, Hub API, OIDC calls).
- HTTPConnectionPool._factory -- proxy/upstream_protocol.py upstream_pool: the
  pool builds each new connection's factory with it, from its quiescent
  callback and the endpoint's repr. Breaks: every new connection speaks
  Twisted's client protocol instead of UpstreamProtocol.
- HTTPConnectionPool._newConnection -- proxy/upstream_protocol.py new_connection:
  connects through the endpoint with that factory, whatever is cached.
  Breaks: every request that finds no idle connection.
- HTTPConnectionPool._connections -- proxy/upstream_protocol.py take_idle: the
  idle connections of each key, oldest first. Breaks: no connection is
  reused (or a busy one is).
- HTTPConnectionPool._timeouts -- proxy/upstream_protocol.py take_idle: the idle
  expiry of each idle connection, cancelled when it is taken. Breaks: the
  pool closes a connection under its exchange.
- HTTPConnectionPool._putConnection -- proxy/upstream_protocol.py, through the
  quiescent callback: keeps a QUIESCENT connection with its idle timer, at
  most maxPersistentPerHost per key (closing the oldest). Breaks: reuse,
  idle expiry and the cap on idle connections.

The event loop (twisted.internet.epollreactor):
- EPollReactor._poller -- run/dispatch.py lean_poll: the epoll set the reactor
  registers its readers and writers in, polled by the lean loop. Breaks: the
  gateway's process never sees a ready descriptor.
- EPollReactor._selectables -- run/dispatch.py lean_poll: descriptor number ->
  the reader or writer registered for it. Breaks: events handed to no one.
- EPollReactor._doReadOrWrite -- run/dispatch.py lean_poll: runs a ready
  descriptor's doRead or doWrite and closes its connection when that fails.
  Breaks: every read and write of the gateway's process.

TCP transports (twisted.internet.abstract, twisted.internet.tcp):
- FileDescriptor._tempDataBuffer -- proxy/transport.py _FewerSyscalls._cork:
  corked writes wait in Twisted's own write queue. Breaks: every corked
  write (lost or reordered bytes).
- FileDescriptor._tempDataLen -- proxy/transport.py _cork and _flush_corked: the
  size of that queue, and whether a flush left bytes over. Breaks:
  backpressure and the flush.
- FileDescriptor._maybePauseProducer -- proxy/transport.py _cork: pauses the
  producer once the queue is over bufferSize. Breaks: memory bound of slow
  readers.
- FileDescriptor._writeDisconnected -- proxy/transport.py _can_cork and _cork: no
  write after a half-close. Breaks: writes after loseWriteConnection.
- abstract._dataMustBeBytes -- proxy/transport.py write and writeSequence:
  Twisted's own check that written data is bytes. Breaks: a str written by
  mistake is sent or crashes the flush.
- tcp.Connection._dataReceived -- proxy/transport.py _FewerSyscalls.doRead: hands
  what recv() read to the protocol. Breaks: every read of FastServer.
- tcp.Connector._makeTransport -- proxy/transport.py _FastConnector: makes the
  FastClient of a backend connection. Breaks: every backend connection.
- tcp.Port._fromListeningDescriptor -- proxy/transport.py adopt_port: a port on a
  socket inherited from the supervisor (WORKERS). Breaks: workers.

TLS (twisted.internet._sslverify):
- twisted.internet._sslverify -- proxy/tls.py: IOpenSSLTrustRoot and
  OpenSSLCertificateAuthorities are imported from it. Breaks: the import of
  the gateway.
- IOpenSSLTrustRoot._addCACertsToContext -- proxy/tls.py _SystemAndExtraTrust:
  implemented to add BACKEND_CA_BUNDLE's CAs to the system's. Breaks:
  backends of a private CA fail verification.
- OpenSSLDefaultPaths._addCACertsToContext -- proxy/tls.py _SystemAndExtraTrust:
  the system store (what ssl.platformTrust() returns), honouring
  SSL_CERT_FILE. Breaks: public backends fail verification.

The gateway's own classes over the same names are tested in
tests/test_channel.py, tests/test_upstream.py, tests/test_transport.py
(TwistedPrivateNamesTests) and tests/test_websocket_integration.py.
"""

import ast
import importlib
import inspect
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile

from OpenSSL import SSL, crypto
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from twisted.internet import _sslverify, abstract, main, reactor, ssl, tcp
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import ClientFactory
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import _newclient, client, http
from twisted.web.client import URI, Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementedBy, implementer

from wighaven.observe.logs import _QUIET_NAMESPACES
from wighaven.proxy.tls import load_ca_bundle

from .support.certs import pki
from .support.fakes import CollectingProtocol, RecordingProducer
from .test_transport import Accepting, Peer, close

ROOT = pathlib.Path(__file__).resolve().parent.parent


# Twisted's HTTP server, driven through a StringTransport.

def serve(channel_class=http.HTTPChannel, request_class=http.Request):
    """A connected C{channel_class} whose requests are C{request_class}es
    (Twisted's own Request answers nothing until told to finish)."""
    channel = channel_class()
    channel.requestFactory = request_class
    channel.timeOut = None  # no idle timer on the global reactor
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


GET_A = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
UPGRADE = (b"GET /_stcore/stream HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
           b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")


@implementer(IPolicyForHTTPS)
class RecordingPolicy:
    """A TLS policy that notes for which host and port it was asked."""

    def __init__(self):
        self.asked = []

    def creatorForNetloc(self, hostname, port):
        self.asked.append((hostname, port))
        return ssl.optionsForClientTLS(hostname.decode("ascii"))


# HTTPConnectionPool, with connections that are only what it reads of them.

POOL_KEY = (b"http", b"backend", 80)


class Pooled:
    """A connection as the pool sees it: a state and a transport."""

    def __init__(self, state="QUIESCENT"):
        self.state = state
        self.transport = StringTransport()


class PoolEndpoint:
    """Notes the factories it connects with; each connect() fires at once."""

    def __init__(self):
        self.factories = []
        self.results = []
        self.connected = Pooled()

    def connect(self, factory):
        self.factories.append(factory)
        self.results.append(succeed(self.connected))
        return self.results[-1]


# Twisted's write buffer, on a descriptor whose "socket" is a list.

class Descriptor(abstract.FileDescriptor):
    """A connected FileDescriptor whose writes land in C{sent}, taking at
    most C{accept} bytes per call (None: everything)."""

    connected = 1

    def __init__(self, accept=None):
        super().__init__(MemoryReactorClock())
        self.accept = accept
        self.sent = []
        self.write_closed = 0

    def writeSomeData(self, data):
        taken = len(data) if self.accept is None else min(self.accept, len(data))
        self.sent.append(bytes(data[:taken]))
        return taken

    def _closeWriteConnection(self):
        self.write_closed += 1

    def queue(self, *pieces):
        """Queue C{pieces} the way wighaven.proxy.transport's cork does."""
        self._tempDataBuffer.extend(pieces)
        self._tempDataLen += sum(map(len, pieces))


# TLS: does a context's store verify a certificate?

def verifies(context, cert_path) -> bool:
    [leaf] = load_ca_bundle(cert_path)
    try:
        crypto.X509StoreContext(context.get_cert_store(), leaf).verify_certificate()
    except crypto.X509StoreContextError:
        return False
    return True


def certificate(name):
    """The certificate file of the test PKI's identity C{name}."""
    return getattr(pki(), name)[: -len(".pem")] + ".crt"


class PrivateNamesTests(TestCase):
    """One test per entry of the module's list, named after it."""

    # HTTP server

    def test_HTTPChannel__dataBuffer(self):
        """Bytes after a request's head, while it is handled, are kept there
        and nowhere else; emptied, they are never parsed as a request."""
        channel, transport = serve()
        channel.dataReceived(UPGRADE)
        channel.dataReceived(b"\x81\x05hello")
        channel.dataReceived(b"\x81\x03bye")
        self.assertEqual(b"".join(channel._dataBuffer), b"\x81\x05hello\x81\x03bye")
        self.assertEqual(len(channel.requests), 1)
        channel._dataBuffer = []
        channel.requests[0].finish()
        self.assertEqual(channel.requests, [])
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)

    def test_HTTPChannel__handlingRequest(self):
        """Set from a request's complete body until it is done; while set,
        a full send buffer pauses the request's producer, not the client's
        reading."""
        channel, transport = serve()
        self.assertFalse(channel._handlingRequest)
        channel.dataReceived(GET_A)
        self.assertTrue(channel._handlingRequest)
        producer = RecordingProducer()
        channel.requests[0].registerProducer(producer, True)
        channel.pauseProducing()
        self.assertEqual((producer.calls, transport.producerState), (["pause"], "producing"))
        channel.resumeProducing()
        channel.requests[0].unregisterProducer()
        channel.requests[0].finish()
        self.assertFalse(channel._handlingRequest)
        channel.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        channel.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_HTTPChannel__networkProducer(self):
        """The transport, with the channel registered as its producer."""
        channel, transport = serve()
        self.assertIs(channel._networkProducer, transport)
        self.assertIs(transport.producer, channel)
        channel._networkProducer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")

    def test_HTTPChannel__waitingForTransport(self):
        """True from the transport's pause of the channel to its resume;
        a request done meanwhile does not resume the client's reading."""
        channel, transport = serve()
        channel.dataReceived(GET_A)
        self.assertFalse(channel._waitingForTransport)
        channel.pauseProducing()
        self.assertTrue(channel._waitingForTransport)
        transport.pauseProducing()  # as the transport itself would
        channel.requests[0].finish()
        self.assertEqual(transport.producerState, "paused")
        channel.resumeProducing()
        self.assertFalse(channel._waitingForTransport)
        self.assertEqual(transport.producerState, "producing")

    def test_HTTPChannel__optimisticEagerReadSize(self):
        """Twisted reads this many bytes ahead while a request is handled,
        then pauses the client."""
        self.assertEqual(http.HTTPChannel._optimisticEagerReadSize, 16 * 1024)
        channel, transport = serve()
        channel.dataReceived(GET_A)
        channel.dataReceived(b"x" * channel._optimisticEagerReadSize)
        self.assertEqual(transport.producerState, "producing")
        channel.dataReceived(b"x")
        self.assertEqual(transport.producerState, "paused")

    def test_HTTPChannel__send100Continue(self):
        """Called after the request's gotLength (where the gateway may refuse
        it), only for an HTTP/1.1 C{Expect: 100-continue}; Twisted's own
        writes the interim answer."""
        events = []

        class Request(http.Request):
            def gotLength(self, length):
                events.append("gotLength")
                super().gotLength(length)

        class Continuing(http.HTTPChannel):
            def _send100Continue(self):
                events.append("100")
                super()._send100Continue()

        cases = [
            (b"HTTP/1.1", b"Expect: 100-continue\r\n", ["gotLength", "100"]),
            (b"HTTP/1.1", b"", ["gotLength"]),
            (b"HTTP/1.0", b"Expect: 100-continue\r\n", ["gotLength"]),
        ]
        for version, expect, expected in cases:
            del events[:]
            channel, transport = serve(Continuing, Request)
            channel.dataReceived(b"PUT / " + version + b"\r\n" + expect + b"Content-Length: 2\r\n\r\n")
            self.assertEqual(events, expected, (version, expect))
            interim = b"HTTP/1.1 100 Continue\r\n\r\n" if "100" in expected else b""
            self.assertEqual(transport.value(), interim)

    def test_HTTPChannel__protocolUpgradeForWebsockets(self):
        """The new protocol gets the connection's transport, every later
        byte and the connection's end; the channel parses and writes
        nothing more."""
        channel, transport = serve()
        channel.dataReceived(UPGRADE)
        relay = CollectingProtocol()
        channel._protocolUpgradeForWebsockets(relay)
        self.assertIs(relay.transport, transport)
        channel.dataReceived(b"\x81\x05hello")
        channel.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(relay.received, [b"\x81\x05hello", b"GET / HTTP/1.1\r\n\r\n"])
        self.assertEqual(len(channel.requests), 1)
        reason = Failure(ConnectionDone())
        channel.connectionLost(reason)
        self.assertEqual(relay.lost, [reason])
        self.assertEqual(transport.value(), b"")

    def test_http_Request__cleanup(self):
        """finish() calls it; until it runs, the channel starts no next
        request; Twisted's own then lets the next one in."""

        class Postponing(http.Request):
            cleanups = 0

            def _cleanup(self):
                self.cleanups += 1

        channel, _ = serve(request_class=Postponing)
        channel.dataReceived(GET_A + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        [first] = channel.requests
        first.finish()
        self.assertEqual(first.cleanups, 1)
        self.assertEqual(channel.requests, [first])
        http.Request._cleanup(first)
        [second] = channel.requests
        self.assertEqual(second.uri, b"/b")

    def test_http_Request__disconnected(self):
        channel, _ = serve()
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        [request] = channel.requests
        self.assertFalse(request._disconnected)
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertTrue(request._disconnected)

    def test_http__ChunkedTransferDecoder(self):
        """(write, done): the decoded body, in pieces however it arrives, then
        done(bytes after the body)."""
        body = b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n"
        written, done = [], []
        decoder = http._ChunkedTransferDecoder(written.append, done.append)
        for i in range(len(body)):
            decoder.dataReceived(body[i:i + 1])
        self.assertEqual((b"".join(written), done), (b"helloabc", [b""]))
        written, done = [], []
        http._ChunkedTransferDecoder(written.append, done.append).dataReceived(body + b"NEXT")
        self.assertEqual((b"".join(written), done), (b"helloabc", [b"NEXT"]))

    def test_http__IdentityTransferDecoder(self):
        written, done = [], []
        decoder = http._IdentityTransferDecoder(5, written.append, done.append)
        decoder.dataReceived(b"abc")
        self.assertEqual(done, [])
        decoder.dataReceived(b"deXYZ")
        self.assertEqual((b"".join(written), done), (b"abcde", [b"XYZ"]))

    # HTTP client

    def test_twisted_web__newclient(self):
        """Every name the package imports from it is there, and those that
        twisted.web.client also exports are the very same objects, so the
        failures the pool raises are the ones the gateway checks for."""
        imported = {
            alias.name
            for node, _ in parsed_sources()
            for alias in getattr(node, "names", ())
            if isinstance(node, ast.ImportFrom) and node.module == "twisted.web._newclient"
        }
        self.assertIn("ResponseNeverReceived", imported)
        for name in imported:
            self.assertTrue(hasattr(_newclient, name), name)
            if hasattr(client, name):
                self.assertIs(getattr(client, name), getattr(_newclient, name), name)

    @inlineCallbacks
    def test_Agent__getEndpoint(self):
        """An endpoint that connects to the URI's host and port; for https,
        made with the agent's TLS policy, asked for that host and port."""
        accepting = Accepting()
        port = reactor.listenTCP(0, accepting, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        policy = RecordingPolicy()
        agent = Agent(reactor, contextFactory=policy, pool=HTTPConnectionPool(reactor))
        uri = URI.fromBytes(b"http://127.0.0.1:%d/" % port.getHost().port)
        peer = yield connectProtocol(agent._getEndpoint(uri), Peer())
        self.addCleanup(close, peer)
        self.addCleanup(close, (yield accepting.connections.get()))
        self.assertEqual(policy.asked, [])
        agent._getEndpoint(URI.fromBytes(b"https://127.0.0.1:8443/"))
        self.assertEqual(policy.asked, [(b"127.0.0.1", 8443)])

    def test_twisted_web_client__HTTP11ClientFactory(self):
        """The factories of a real pool log under this namespace, the one
        wighaven.observe.logs keeps quiet."""
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        class Endpoint:
            def connect(self, factory):
                factory.doStart()
                factory.doStop()
                return Deferred()

        HTTPConnectionPool(MemoryReactorClock()).getConnection(("http", b"backend", 80), Endpoint())
        namespaces = {e["log_namespace"] for e in events if "factory" in e.get("log_format", "")}
        self.assertEqual(namespaces, {"twisted.web.client._HTTP11ClientFactory"})
        self.assertIn("twisted.web.client._HTTP11ClientFactory", _QUIET_NAMESPACES)

    # HTTPConnectionPool, as wighaven.proxy.upstream_protocol uses it

    def test_HTTPConnectionPool__factory(self):
        """Called as C{_factory(quiescentCallback, metadata)} for each new
        connection; the endpoint connects with what it returns, and the
        callback gives a protocol back under the connection's key."""
        made = []

        class Made(ClientFactory):
            def __init__(self, quiescentCallback, metadata):
                made.append((self, quiescentCallback, metadata))

        pool = HTTPConnectionPool(MemoryReactorClock())
        pool._factory = Made
        endpoint = PoolEndpoint()
        d = pool.getConnection(POOL_KEY, endpoint)
        [(factory, callback, metadata)] = made
        self.assertEqual((endpoint.factories, metadata), ([factory], repr(endpoint)))
        self.assertIs(self.successResultOf(d), endpoint.connected)
        connection = Pooled()
        callback(connection)
        self.assertEqual(pool._connections, {POOL_KEY: [connection]})

    def test_HTTPConnectionPool__newConnection(self):
        """The endpoint's connect() Deferred itself, made with the pool's
        factory, even while an idle connection is cached."""
        callbacks = []

        class Made(ClientFactory):
            def __init__(self, quiescentCallback, metadata):
                callbacks.append(quiescentCallback)

        pool = HTTPConnectionPool(MemoryReactorClock())
        pool._factory = Made
        cached = Pooled()
        pool._putConnection(POOL_KEY, cached)
        endpoint = PoolEndpoint()
        d = pool._newConnection(POOL_KEY, endpoint)
        self.assertIs(d, endpoint.results[0])
        [factory] = endpoint.factories
        self.assertIsInstance(factory, Made)
        self.assertEqual(pool._connections, {POOL_KEY: [cached]})
        connection = Pooled()
        callbacks[0](connection)
        self.assertEqual(pool._connections, {POOL_KEY: [cached, connection]})

    def test_HTTPConnectionPool__connections(self):
        """A list per key, oldest first; getConnection takes from it."""
        pool = HTTPConnectionPool(MemoryReactorClock())
        first, second = Pooled(), Pooled()
        pool._putConnection(POOL_KEY, first)
        pool._putConnection(POOL_KEY, second)
        self.assertEqual(pool._connections, {POOL_KEY: [first, second]})
        pool.retryAutomatically = False
        self.assertIs(self.successResultOf(pool.getConnection(POOL_KEY, PoolEndpoint())), first)
        self.assertEqual(pool._connections, {POOL_KEY: [second]})

    def test_HTTPConnectionPool__timeouts(self):
        """Each idle connection's expiry, a delayed call of
        cachedConnectionTimeout that closes it and forgets it; cancelled
        and removed, it leaves the connection alone."""
        clock = MemoryReactorClock()
        pool = HTTPConnectionPool(clock)
        pool.cachedConnectionTimeout = 10
        kept, expiring = Pooled(), Pooled()
        pool._putConnection(POOL_KEY, kept)
        pool._putConnection(POOL_KEY, expiring)
        self.assertEqual(set(pool._timeouts), {kept, expiring})
        self.assertEqual(pool._timeouts[kept].getTime(), 10)
        pool._connections[POOL_KEY].remove(kept)
        pool._timeouts.pop(kept).cancel()
        clock.advance(10)
        self.assertEqual((kept.transport.disconnecting, expiring.transport.disconnecting), (False, True))
        self.assertEqual((pool._connections, pool._timeouts), ({POOL_KEY: []}, {}))

    def test_HTTPConnectionPool__putConnection(self):
        """Keeps only a QUIESCENT connection (logging the others as a bug),
        at most maxPersistentPerHost per key: the oldest is closed."""
        clock = MemoryReactorClock()
        pool = HTTPConnectionPool(clock)
        pool.maxPersistentPerHost = 2
        pool._putConnection(POOL_KEY, Pooled("BUSY"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(pool._connections, {})
        connections = [Pooled() for _ in range(3)]
        for connection in connections:
            pool._putConnection(POOL_KEY, connection)
        self.assertEqual(pool._connections, {POOL_KEY: connections[1:]})
        self.assertEqual([c.transport.disconnecting for c in connections], [True, False, False])
        self.assertEqual(len(clock.getDelayedCalls()), 2)

    # TCP transports

    # The event loop

    def epoll_reactor_with_reader(self):
        """A fresh EPollReactor (never run) with a reader on a socket pair: (reactor, reader, peer)."""
        from twisted.internet.epollreactor import EPollReactor

        from .test_dispatch import Reader

        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        ours, peer = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(peer.close)
        reader = Reader(reactor, ours)
        reactor.addReader(reader)
        self.addCleanup(reactor.removeReader, reader)
        return reactor, reader, peer

    def test_EPollReactor__poller(self):
        """The epoll set of the reactor's readers: it reports one that is ready."""
        import select

        reactor, reader, peer = self.epoll_reactor_with_reader()
        self.assertIsInstance(reactor._poller, select.epoll)
        self.assertEqual(reactor._poller.poll(0), [])
        peer.send(b"x")
        [(fd, event)] = reactor._poller.poll(0, len(reactor._selectables))
        self.assertEqual(fd, reader.fileno())
        self.assertTrue(event & select.EPOLLIN)

    def test_EPollReactor__selectables(self):
        """Descriptor number -> its reader, while it is one."""
        reactor, reader, _ = self.epoll_reactor_with_reader()
        self.assertIs(reactor._selectables[reader.fileno()], reader)
        reactor.removeReader(reader)
        self.assertNotIn(reader.fileno(), reactor._selectables)

    def test_EPollReactor__doReadOrWrite(self):
        """(selectable, fd, event): doRead for input; a failing doRead loses the connection."""
        import select

        reactor, reader, peer = self.epoll_reactor_with_reader()
        peer.send(b"data")
        reactor._doReadOrWrite(reader, reader.fileno(), select.EPOLLIN)
        self.assertEqual(reader.read, [b"data"])
        reader.fail = True
        peer.send(b"more")
        reactor._doReadOrWrite(reader, reader.fileno(), select.EPOLLIN)
        self.assertEqual(len(reader.lost), 1)
        self.flushLoggedErrors(RuntimeError)

    def test_FileDescriptor__tempDataBuffer(self):
        """Twisted's own writes queue there too, so bytes queued there by
        hand go out with them, in order, at the next doWrite."""
        descriptor = Descriptor()
        descriptor.write(b"first ")
        self.assertEqual(descriptor._tempDataBuffer, [b"first "])
        descriptor.queue(b"corked ", b"pieces")
        self.assertIsNone(descriptor.doWrite())
        self.assertEqual(b"".join(descriptor.sent), b"first corked pieces")
        self.assertEqual(descriptor._tempDataBuffer, [])

    def test_FileDescriptor__tempDataLen(self):
        """The bytes queued and not yet moved to dataBuffer; with C{offset <
        len(dataBuffer)} it tells whether a doWrite left bytes over."""
        descriptor = Descriptor(accept=4)
        descriptor.write(b"0123456789")
        self.assertEqual(descriptor._tempDataLen, 10)
        descriptor.doWrite()
        self.assertEqual(descriptor._tempDataLen, 0)
        self.assertTrue(descriptor.offset < len(descriptor.dataBuffer))
        descriptor.queue(b"ab")
        self.assertEqual(descriptor._tempDataLen, 2)
        descriptor.accept = None
        descriptor.doWrite()
        self.assertEqual(b"".join(descriptor.sent), b"0123456789ab")
        self.assertFalse(descriptor._tempDataLen or descriptor.offset < len(descriptor.dataBuffer))

    def test_FileDescriptor__maybePauseProducer(self):
        """Pauses a streaming producer once the queue holds more than
        bufferSize; the doWrite that drains it resumes the producer."""
        descriptor = Descriptor(accept=0)
        producer = RecordingProducer()
        descriptor.registerProducer(producer, True)
        descriptor.queue(b"x" * descriptor.bufferSize)
        descriptor._maybePauseProducer()
        self.assertEqual(producer.calls, [])
        descriptor.queue(b"y")
        descriptor._maybePauseProducer()
        self.assertEqual(producer.calls, ["pause"])
        descriptor.accept = None
        descriptor.doWrite()
        self.assertEqual(producer.calls, ["pause", "resume"])

    def test_FileDescriptor__writeDisconnected(self):
        """False until a half-close has written everything; then true, and
        later writes are dropped."""
        descriptor = Descriptor()
        self.assertFalse(descriptor._writeDisconnected)
        descriptor.write(b"last")
        descriptor.loseWriteConnection()
        self.assertFalse(descriptor._writeDisconnected)
        descriptor.doWrite()
        self.assertTrue(descriptor._writeDisconnected)
        self.assertEqual(descriptor.write_closed, 1)
        descriptor.write(b"dropped")
        self.assertEqual((b"".join(descriptor.sent), descriptor._tempDataLen), (b"last", 0))

    def test_abstract__dataMustBeBytes(self):
        """The check Twisted's own write makes: bytes pass, str raises the
        same TypeError write raises."""
        abstract._dataMustBeBytes(b"bytes")
        abstract._dataMustBeBytes(b"")
        ours = self.assertRaises(TypeError, abstract._dataMustBeBytes, "text")
        theirs = self.assertRaises(TypeError, Descriptor().write, "text")
        self.assertEqual(str(ours), str(theirs))

    def test_tcp_Connection__dataReceived(self):
        """Hands data to the protocol (None: go on); b"" is the peer's close."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        relay = CollectingProtocol()
        connection = tcp.Connection(ours, relay, reactor)
        self.assertIsNone(connection._dataReceived(b"abc"))
        self.assertEqual(relay.received, [b"abc"])
        self.assertIs(connection._dataReceived(b""), main.CONNECTION_DONE)
        self.assertEqual(relay.received, [b"abc"])

    @inlineCallbacks
    def test_tcp_Connector__makeTransport(self):
        """connect() makes the connection's transport with it, from the
        connector's host, port, bindAddress and reactor."""

        class Mine(tcp.Client):
            pass

        class Connector(tcp.Connector):
            def _makeTransport(self):
                return Mine(self.host, self.port, self.bindAddress, self, self.reactor)

        accepting = Accepting()
        port = reactor.listenTCP(0, accepting, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        made = Deferred()

        class Client(Peer):
            def connectionMade(self):
                made.callback(self)

        Connector("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(Client),
                  10, None, reactor).connect()
        peer = yield made
        self.addCleanup(close, peer)
        self.addCleanup(close, (yield accepting.connections.get()))
        self.assertIsInstance(peer.transport, Mine)

    @inlineCallbacks
    def test_tcp_Port__fromListeningDescriptor(self):
        """A port of the class it is called on, listening on a copy of the
        given socket, whose connections are of that class's C{transport}."""

        class Mine(tcp.Server):
            pass

        class Port(tcp.Port):
            transport = Mine

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        listener.setblocking(False)
        accepting = Accepting()
        try:
            port = Port._fromListeningDescriptor(reactor, listener.fileno(), socket.AF_INET, accepting)
            port.startListening()
        finally:
            address = listener.getsockname()
            listener.close()
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, Port)
        self.assertEqual(port.getHost().port, address[1])
        peer = yield connectProtocol(TCP4ClientEndpoint(reactor, *address), Peer())
        self.addCleanup(close, peer)
        server = yield accepting.connections.get()
        self.addCleanup(close, server)
        self.assertIsInstance(server.transport, Mine)

    # TLS

    def test_twisted_internet__sslverify(self):
        """The trust roots the public API deals in are its IOpenSSLTrustRoot
        providers: platformTrust() and OpenSSLCertificateAuthorities."""
        self.assertTrue(_sslverify.IOpenSSLTrustRoot.providedBy(ssl.platformTrust()))
        authorities = _sslverify.OpenSSLCertificateAuthorities(load_ca_bundle(pki().ca_pem))
        self.assertTrue(_sslverify.IOpenSSLTrustRoot.providedBy(authorities))
        self.assertIsInstance(ssl.CertificateOptions(trustRoot=authorities).getContext(), SSL.Context)

    def test_IOpenSSLTrustRoot__addCACertsToContext(self):
        """A trust root of our own is asked once, with the context the
        client options make; OpenSSLCertificateAuthorities' puts its CAs in
        the context's store."""

        @implementer(_sslverify.IOpenSSLTrustRoot)
        class Root:
            def __init__(self):
                self.contexts = []

            def _addCACertsToContext(self, context):
                self.contexts.append(context)

        root = Root()
        context = ssl.CertificateOptions(trustRoot=root).getContext()
        self.assertEqual(root.contexts, [context])
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        authorities = _sslverify.OpenSSLCertificateAuthorities(load_ca_bundle(pki().ca_pem))
        authorities._addCACertsToContext(context)
        self.assertTrue(verifies(context, certificate("good")))
        self.assertFalse(verifies(context, certificate("untrusted")))

    def test_OpenSSLDefaultPaths__addCACertsToContext(self):
        """platformTrust()'s loads the system store, which SSL_CERT_FILE
        moves."""
        previous = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = pki().ca_pem
        self.addCleanup(
            lambda: os.environ.pop("SSL_CERT_FILE") if previous is None
            else os.environ.update(SSL_CERT_FILE=previous)
        )
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ssl.platformTrust()._addCACertsToContext(context)
        self.assertTrue(verifies(context, certificate("good")))
        self.assertFalse(verifies(context, certificate("untrusted")))


# Keeping the list whole.

THIRD_PARTY = frozenset(["twisted", "treq", "klein", "OpenSSL", "service_identity", "wsproto",
                         "cryptography", "zope", "attrs", "prometheus_client"])
OUR_SOURCES = sorted(ROOT.glob("wighaven/**/*.py")) + [ROOT / "twisted/plugins/wighaven_plugin.py"]
_ABC_MACHINERY = frozenset(["_abc_impl"])  # set on every class by ABCMeta


def listed() -> list:
    """The names of the module docstring's list, in order."""
    return re.findall(r"^- (\S+) -- ", __doc__, re.M)


def named_test(name: str) -> str:
    return "test_" + name.replace(".", "_")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module_name(path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _ours(obj) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return module.split(".")[0] == "wighaven" or module == "twisted.plugins.wighaven_plugin"


def _third_party(obj) -> bool:
    module = getattr(obj, "__module__", "") or ""
    return module.split(".")[0] in THIRD_PARTY and not _ours(obj)


def parsed_sources():
    """(node, where) for every AST node of the package's sources."""
    for path in OUR_SOURCES:
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), where)):
            yield node, where


def _defined_in(class_node) -> set:
    """Names a class defines: its methods, class attributes, self.X stores."""
    names = set()
    for node in ast.walk(class_node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id == "self"):
            names.add(node.attr)
    return names


class _Source:
    """One source file of the package: its tree, its module, its classes."""

    def __init__(self, path):
        self.where = str(path.relative_to(ROOT))
        self.tree = ast.parse(path.read_text(encoding="utf-8"), self.where)
        self.module = importlib.import_module(_module_name(path))
        self.classes = {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}
        self.defined = _defined_in(self.tree)
        self.other_modules = {  # `import os`: os._exit is no business of this list
            alias.asname or alias.name.split(".")[0]
            for node in ast.walk(self.tree) if isinstance(node, ast.Import)
            for alias in node.names if alias.name.split(".")[0] not in THIRD_PARTY
        }

    def at(self, node) -> str:
        return "%s:%d" % (self.where, node.lineno)


def _imports(source, found):
    """Private modules and private names imported from the third parties."""
    for node in ast.walk(source.tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules, names = [node.module], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            modules, names = [a.name for a in node.names], []
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] in THIRD_PARTY:
                if any(map(_private, parts)):
                    found.setdefault(module, source.at(node))
                for name in filter(_private, names):
                    found.setdefault(name, source.at(node))


def _strings(source, found):
    """Dotted private paths of the third parties written as strings (log namespaces)."""
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts = node.value.split(".")
            if len(parts) > 1 and parts[0] in THIRD_PARTY and any(map(_private, parts)):
                found.setdefault(node.value, source.at(node))


def _attributes(source, own_classes, defined_anywhere, found):
    """
    Private attributes the package reaches for that none of its classes
    defines: on C{self}, those not defined by the class or its bases of the
    package; on anything else, those defined nowhere in the package.
    """
    for name, class_node in source.classes.items():
        cls = getattr(source.module, name)
        # A zope Interface is a class statement without an __mro__.
        bases = getattr(cls, "__mro__", None) or (cls,)
        ours = set().union(*(own_classes.get((c.__module__, c.__name__), set())
                             for c in bases if _ours(c)))
        for node in ast.walk(class_node):
            if (isinstance(node, ast.Attribute) and _private(node.attr)
                    and isinstance(node.value, ast.Name) and node.value.id == "self"
                    and node.attr not in ours):
                found.setdefault(node.attr, source.at(node))
    for node in ast.walk(source.tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and node.attr not in defined_anywhere
                and not (isinstance(node.value, ast.Name)
                         and node.value.id in ("self",) + tuple(source.other_modules))):
            found.setdefault(node.attr, source.at(node))


def _overrides(source, found):
    """Private names a class of the package defines that a third-party base
    class or interface of it has too: overridden hooks (or clashes)."""
    for name, cls in vars(source.module).items():
        if not inspect.isclass(cls) or cls.__module__ != source.module.__name__:
            continue
        bases = [vars(b) for b in cls.__mro__ if _third_party(b)]
        bases += [i.names(all=True) for i in implementedBy(cls).flattened() if _third_party(i)]
        mine = [attr for c in cls.__mro__ if _ours(c) for attr in vars(c)]  # mixins too
        for attr in mine:
            if _private(attr) and attr not in _ABC_MACHINERY and any(attr in b for b in bases):
                found.setdefault(attr, "%s %s.%s" % (source.where, name, attr))


def private_names_used() -> dict:
    """{private name of a third party: where the package uses it}."""
    sources = [_Source(path) for path in OUR_SOURCES]
    own_classes = {
        (s.module.__name__, name): _defined_in(node) for s in sources for name, node in s.classes.items()
    }
    defined_anywhere = set().union(*(s.defined for s in sources))
    found = {}
    for source in sources:
        _imports(source, found)
        _strings(source, found)
        _attributes(source, own_classes, defined_anywhere, found)
        _overrides(source, found)
    return found


class ListTests(SynchronousTestCase):
    """The module's list, its tests and the package's code agree."""

    def test_every_listed_name_has_its_test(self):
        names = listed()
        self.assertEqual(len(names), len(set(names)), "a name is listed twice")
        missing = [named_test(n) for n in names if not hasattr(PrivateNamesTests, named_test(n))]
        self.assertEqual(missing, [])

    def test_every_test_is_listed(self):
        tests = {n for n in vars(PrivateNamesTests) if n.startswith("test_")}
        self.assertEqual(tests - {named_test(n) for n in listed()}, set())

    def test_every_private_name_used_is_listed(self):
        """A private name of Twisted (or treq, Klein, pyOpenSSL...) in the
        package must have its entry and test here."""
        entries = listed()

        def is_listed(name):
            return any(name == entry or name in entry.split(".") for entry in entries)

        unlisted = {name: where for name, where in private_names_used().items() if not is_listed(name)}
        self.assertEqual(unlisted, {}, "add an entry and a test to tests/test_twisted_private.py")

    def test_the_scan_sees_each_kind_of_use(self):
        """The scan of the package sees the known uses of each kind."""
        found = private_names_used()
        for name in ("twisted.web._newclient", "_dataMustBeBytes", "twisted.web.client._HTTP11ClientFactory",
                     "_networkProducer", "_optimisticEagerReadSize", "_getEndpoint", "_send100Continue",
                     "_addCACertsToContext", "_makeTransport"):
            self.assertIn(name, found)
        self.assertNotIn("_exit", found)  # os._exit: the standard library's
        self.assertNotIn("_log", found)  # the package's own


# The dependency ranges (setup.py) and the lock (requirements.txt).

RANGED = ("twisted", "cryptography", "pyopenssl")  # whose fixes must reach users


def install_requires() -> list:
    """setup.py's INSTALL_REQUIRES, read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "INSTALL_REQUIRES"
                                                for t in node.targets):
            return [Requirement(line) for line in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no INSTALL_REQUIRES list")


def locked() -> dict:
    """{project: pinned version} of requirements.txt."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            [spec] = requirement.specifier
            pins[canonicalize_name(requirement.name)] = (spec.operator, spec.version)
    return pins


def exact_pins(requirements) -> list:
    return [str(r) for r in requirements if any(s.operator in ("==", "===") for s in r.specifier)]


class DependencyRangeTests(SynchronousTestCase):
    """
    install_requires holds compatible ranges, so that a user's install can
    take security fixes of Twisted, cryptography and pyOpenSSL;
    requirements.txt pins one tested set inside them (the lock the Docker
    image and CI install).
    """

    def test_install_requires_are_ranges(self):
        requirements = install_requires()
        self.assertEqual(exact_pins(requirements), [])
        names = {canonicalize_name(r.name): r for r in requirements}
        for name in RANGED:
            self.assertIn(name, names)
            self.assertTrue(any(s.operator == ">=" for s in names[name].specifier), name)
        # A release may change the private names above: Twisted is capped
        # at the releases this module has been run against.
        self.assertTrue(any(s.operator == "<" for s in names["twisted"].specifier))

    def test_the_lock_pins_every_range_inside_it(self):
        pins = locked()
        # The lock is for this Python: a backport for older ones (tomli) is not in it.
        requirements = {canonicalize_name(r.name): r.specifier for r in install_requires()
                        if r.marker is None or r.marker.evaluate()}
        self.assertEqual(set(pins), set(requirements))
        for name, (operator, version) in pins.items():
            self.assertEqual(operator, "==", name)
            self.assertIn(version, requirements[name], name)

    def test_built_metadata_has_no_exact_pins(self):
        """The metadata setuptools builds from setup.py (what pip installs)
        requires ranges: read with importlib.metadata, as for an installed
        distribution."""
        from importlib.metadata import PathDistribution

        with tempfile.TemporaryDirectory() as base:
            subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", base],
                           cwd=ROOT, check=True, capture_output=True, timeout=120)
            [info] = pathlib.Path(base).glob("*.egg-info")
            requires = PathDistribution(info).requires
        requirements = [Requirement(r) for r in requires]
        self.assertEqual(exact_pins(requirements), [])
        self.assertTrue({canonicalize_name(r.name) for r in requirements} >= set(RANGED))

"""Tests of the gateway's limits on connections.

- UPSTREAM_MAX_CONNECTIONS (L{wighaven.proxy.upstream.BackendAgent}): at most that
  many requests in flight to the backend; the rest wait in line. A slot is
  given back when the forwarding code calls C{UpstreamResponse.release} (at
  the end of a body, or at the headers of an event stream), or when the
  request fails; a cancelled request leaves the line and never reaches the
  backend. The wait in line counts against UPSTREAM_TIMEOUT.
- MAX_CONNECTIONS_PER_IP (L{wighaven.proxy.limits.PeerConnectionLimit}): a
  connection over the limit gets a self-framed 429 and is closed; the count
  goes down when a connection closes, whatever it became (an HTTP
  connection, or a WebSocket tunnel).

BackendAgent is tested against a real local server whose requests are held
until the test answers them; the whole gateway over real sockets; the
release rule of the forwarding code with fakes and a MemoryReactorClock.
"""

import json
import socket
import time

from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from websockets.sync.client import connect as ws_connect

from wighaven.config.settings import load_config
from wighaven.proxy.limits import PeerConnectionLimit
from wighaven.config.trust import TrustedProxies
from wighaven.run.service import build_site
from wighaven.proxy.tls import BackendTLSPolicy
from wighaven.proxy.upstream import BackendAgent
from wighaven.proxy.upstream_protocol import upstream_pool

from tests.support.waiting import wait_until
from tests.support.backend import start_backend
from tests.support.client import fetch
from tests.support.gateway import TOKEN, free_port, start_gateway
from tests.support.ws_backend import WebSocketBackend
from tests.test_timeouts import BackendResponse, HandAgent
from tests.test_upstream import TrackedChannel


def pause(seconds=0.1):
    """Let the reactor run a while (for something that must NOT happen)."""
    return task.deferLater(reactor, seconds, lambda: None)




# --- a backend that holds every request until the test answers it --------------------


class HoldingResource(Resource):
    """
    Holds every request (NOT_DONE_YET) until L{answer}. A target under
    C{/partial} gets its headers and the start of its body at once, then is
    held too. Records the targets in order of arrival and the most requests
    it ever held at once.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.received = []
        self.held = {}
        self.most_at_once = 0

    def render(self, request):
        target = request.uri
        self.received.append(target)
        self.held[target] = request
        self.most_at_once = max(self.most_at_once, len(self.held))
        request.notifyFinish().addBoth(lambda _: self.held.pop(target, None))
        request.setHeader(b"Content-Type", b"text/plain")
        if request.path.startswith(b"/partial"):
            request.write(b"first part;")
        return NOT_DONE_YET

    def answer(self, target, body=None):
        request = self.held.pop(target)
        request.write(body if body is not None else b"answer " + target)
        request.finish()

    def abort(self, target):
        """Drop the connection of a held request without answering."""
        self.held.pop(target).channel.transport.abortConnection()


class HoldingServer:
    """A plain HTTP server on 127.0.0.1 over a L{HoldingResource}, for one test."""

    def __init__(self, testcase):
        self.resource = HoldingResource()
        self.site = Site(self.resource)
        self.site.protocol = TrackedChannel
        self.site.channels = []
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.origin = "http://127.0.0.1:%d" % self.port.getHost().port
        testcase.addCleanup(self.stop)

    @property
    def received(self):
        return self.resource.received

    def wait_for(self, count, timeout=5.0):
        return wait_until(lambda: len(self.received) >= count, timeout)

    @defer.inlineCallbacks
    def stop(self):
        yield self.port.stopListening()
        for channel in self.site.channels:
            if not channel.lost.called:
                channel.transport.abortConnection()
        yield defer.gatherResults([c.lost for c in self.site.channels])


# --- UPSTREAM_MAX_CONNECTIONS: BackendAgent ----------------------------------------


class BackendAgentLimitTests(TestCase):
    """BackendAgent with max_connections=2 against the holding server."""

    def setUp(self):
        self.server = HoldingServer(self)
        self.pool = upstream_pool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)
        self.agent = BackendAgent(
            reactor, self.server.origin.encode(), self.pool, BackendTLSPolicy(), max_connections=2
        )

    def request(self, target, method=b"GET"):
        return self.agent.request(method, target, Headers({b"host": [b"backend"]}), None)

    @defer.inlineCallbacks
    def answer(self, target, d):
        """Answer C{target}, read its response through C{d}, give back its slot."""
        self.server.resource.answer(target)
        upstream = yield d
        body = yield readBody(upstream.response)
        self.assertEqual(body, b"answer " + target)
        upstream.release()

    @defer.inlineCallbacks
    def test_third_request_waits_for_a_released_slot(self):
        d1, d2, d3 = [self.request(b"/hold/%d" % i) for i in (1, 2, 3)]
        yield self.server.wait_for(2)
        yield pause()
        self.assertEqual(sorted(self.server.received), [b"/hold/1", b"/hold/2"])
        self.assertEqual(self.agent.waiting, 1)
        self.assertNoResult(d3)

        # The first response is complete, but its slot is held until released.
        self.server.resource.answer(b"/hold/1")
        upstream = yield d1
        self.assertEqual((yield readBody(upstream.response)), b"answer /hold/1")
        yield pause()
        self.assertEqual(len(self.server.received), 2)
        self.assertEqual(self.agent.waiting, 1)

        upstream.release()
        self.assertEqual(self.agent.waiting, 0)
        yield self.server.wait_for(3)
        self.assertEqual(self.server.received[2], b"/hold/3")

        # Releasing twice gives back one slot only: a fourth request waits.
        upstream.release()
        d4 = self.request(b"/hold/4")
        self.assertEqual(self.agent.waiting, 1)
        yield pause()
        self.assertEqual(len(self.server.received), 3)

        yield self.answer(b"/hold/2", d2)
        yield self.server.wait_for(4)
        yield self.answer(b"/hold/3", d3)
        yield self.answer(b"/hold/4", d4)
        self.assertEqual(self.server.resource.most_at_once, 2)
        self.assertEqual(self.agent.waiting, 0)

    @defer.inlineCallbacks
    def test_cancelled_waiting_request_leaves_the_line(self):
        d1, d2, d3 = [self.request(b"/hold/%d" % i) for i in (1, 2, 3)]
        self.assertEqual(self.agent.waiting, 1)
        d3.cancel()
        self.failureResultOf(d3, defer.CancelledError)
        self.assertEqual(self.agent.waiting, 0)
        yield self.server.wait_for(2)

        # A slot given back goes to the next request, not the cancelled one...
        yield self.answer(b"/hold/1", d1)
        d4 = self.request(b"/hold/4")
        self.assertEqual(self.agent.waiting, 0)
        yield self.server.wait_for(3)
        # ...and the cancelled one took no slot: a fifth request must wait.
        d5 = self.request(b"/hold/5")
        self.assertEqual(self.agent.waiting, 1)
        yield pause()
        self.assertEqual(sorted(self.server.received), [b"/hold/1", b"/hold/2", b"/hold/4"])

        yield self.answer(b"/hold/2", d2)
        yield self.server.wait_for(4)
        yield self.answer(b"/hold/4", d4)
        yield self.answer(b"/hold/5", d5)
        self.assertNotIn(b"/hold/3", self.server.received)

    @defer.inlineCallbacks
    def test_failed_request_releases_its_slot(self):
        """A request that fails in flight (not retried: POST) frees its slot."""
        d1 = self.request(b"/hold/1", method=b"POST")
        d2 = self.request(b"/hold/2")
        d3 = self.request(b"/hold/3")
        yield self.server.wait_for(2)
        self.assertEqual(self.agent.waiting, 1)
        self.server.resource.abort(b"/hold/1")
        yield self.assertFailure(d1, ResponseNeverReceived)
        yield self.third_takes_the_freed_slot(d2, d3)

    @defer.inlineCallbacks
    def third_takes_the_freed_slot(self, d2, d3):
        """The first request's slot is free: the third reaches the backend, then both finish."""
        yield self.server.wait_for(3)
        self.assertEqual(self.server.received[2], b"/hold/3")
        self.assertEqual(self.agent.waiting, 0)
        yield self.answer(b"/hold/2", d2)
        yield self.answer(b"/hold/3", d3)

    @defer.inlineCallbacks
    def test_cancelled_request_in_flight_releases_its_slot(self):
        d1, d2, d3 = [self.request(b"/hold/%d" % i) for i in (1, 2, 3)]
        yield self.server.wait_for(2)
        d1.cancel()
        self.failureResultOf(d1)
        yield self.third_takes_the_freed_slot(d2, d3)

    @defer.inlineCallbacks
    def test_connection_failures_release_their_slots(self):
        """With one slot, every request to a closed port fails in turn; none hangs."""
        agent = BackendAgent(
            reactor, b"http://127.0.0.1:%d" % free_port(), self.pool, BackendTLSPolicy(),
            max_connections=1,
        )
        ds = [agent.request(b"GET", b"/%d" % i, Headers(), None) for i in range(3)]
        self.assertEqual(agent.waiting, 2)
        results = yield defer.DeferredList(ds, consumeErrors=True).addTimeout(5, reactor)
        for ok, failure in results:
            self.assertFalse(ok)
            failure.trap(ConnectionRefusedError)
        self.assertEqual(agent.waiting, 0)


# --- UPSTREAM_MAX_CONNECTIONS: the forwarding code gives slots back ----------------------


class SlotReleaseTests(SynchronousTestCase):
    """When the forwarding code calls UpstreamResponse.release (fake agent, no sockets)."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.agent = HandAgent()
        config = load_config({"PRIVATE_BACKEND_URL": "https://user-space.hf.space"})
        self.site = build_site(config, self.agent, self.reactor)

    def start(self, content_type, target=b"/x"):
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7860))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "203.0.113.7", 50000))
        channel.makeConnection(transport)
        channel.dataReceived(b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
        [call] = self.agent.calls
        backend = BackendResponse(content_type)
        return channel, transport, call, backend

    def test_event_stream_gives_back_its_slot_at_its_headers(self):
        _, transport, call, backend = self.start(b"text/event-stream; charset=utf-8")
        call.deferred.callback(backend.upstream())
        self.assertEqual(backend.released, 1)
        backend.send(b"data: 1\n\n")
        self.assertIn(b"data: 1\n\n", transport.value())

    def test_other_responses_hold_their_slot_until_the_body_ends(self):
        _, transport, call, backend = self.start(b"application/octet-stream")
        call.deferred.callback(backend.upstream())
        backend.send(b"part one")
        self.assertEqual(backend.released, 0)
        backend.end()
        self.assertEqual(backend.released, 1)
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))

    def test_slot_given_back_when_the_body_breaks_off(self):
        _, transport, call, backend = self.start(b"application/octet-stream")
        call.deferred.callback(backend.upstream())
        backend.send(b"part one")
        backend.connection_lost_mid_body()
        self.assertEqual(backend.released, 1)
        self.assertTrue(transport.disconnected)

    def test_slot_given_back_when_the_client_leaves_mid_body(self):
        channel, _, call, backend = self.start(b"application/octet-stream")
        call.deferred.callback(backend.upstream())
        backend.send(b"part one")
        channel.connectionLost(Failure(ConnectionDone()))
        # The backend connection is being closed and the slot is free at once.
        self.assertEqual(backend.transport.producerState, "stopped")
        self.assertEqual(backend.released, 1)
        backend.connection_lost_mid_body()  # the backend connection closes
        self.assertEqual(backend.released, 1)


# --- UPSTREAM_MAX_CONNECTIONS through the whole gateway -------------------------------


class GatewayUpstreamLimitTests(TestCase):
    @defer.inlineCallbacks
    def test_event_streams_do_not_hold_the_slots(self):
        """
        Six streams of 1 s with two slots and UPSTREAM_TIMEOUT=0.5: had the
        streams kept their slots, four would wait 1 s in line and get 504.
        """
        backend, _, origin = yield start_backend(self)
        _, port = yield start_gateway(
            self, origin, UPSTREAM_MAX_CONNECTIONS="2", UPSTREAM_TIMEOUT="0.5"
        )
        started = time.monotonic()
        replies = yield defer.gatherResults(
            [fetch(port, "GET", "/sse?n=2&every=1") for _ in range(6)]
        )
        elapsed = time.monotonic() - started
        for reply in replies:
            self.assertEqual(reply.status, 200)
            self.assertEqual(reply.body, b"data: event 0\n\ndata: event 1\n\n")
        self.assertEqual(len(backend.requests), 6)
        self.assertLess(elapsed, 2.0)

    @defer.inlineCallbacks
    def test_stalled_downloads_do_not_starve_others(self):
        """
        Two clients ask for 100 MiB each and never read; with two slots, a
        third client is still answered: a response its client keeps paused
        for SLOW_CLIENT_GRACE gives its slot back.
        """
        _, _, origin = yield start_backend(self)
        gateway, port = yield start_gateway(
            self, origin, UPSTREAM_MAX_CONNECTIONS="2", UPSTREAM_TIMEOUT="3",
            SLOW_CLIENT_GRACE="0.3",
        )
        for _ in range(2):
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", port))
            self.addCleanup(stalled.close)
            stalled.sendall(b"GET /big?size=104857600 HTTP/1.1\r\nHost: a\r\n\r\n")
        yield task.deferLater(reactor, 1.5, lambda: None)  # both stalled by now
        started = time.monotonic()
        reply = yield fetch(port, "GET", "/echo")
        self.assertEqual(reply.status, 200)
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual(gateway.site._forward.slow_clients.released, 2)

    @defer.inlineCallbacks
    def test_other_requests_served_two_at_a_time(self):
        server = HoldingServer(self)
        _, port = yield start_gateway(
            self, server.origin, UPSTREAM_MAX_CONNECTIONS="2", UPSTREAM_TIMEOUT="10"
        )
        targets = ["/hold/%d" % i for i in range(6)]
        replies = defer.gatherResults([fetch(port, "GET", t) for t in targets])
        answered = 0
        while answered < 6:
            expected = min(answered + 2, 6)
            yield server.wait_for(expected)
            yield pause()
            self.assertEqual(len(server.received), expected)
            server.resource.answer(server.received[answered])
            answered += 1
        replies = yield replies
        for target, reply in zip(targets, replies):
            self.assertEqual((reply.status, reply.body), (200, b"answer " + target.encode()))
        self.assertEqual(server.resource.most_at_once, 2)

    @defer.inlineCallbacks
    def test_wait_in_line_counts_against_upstream_timeout(self):
        """
        The one slot is held by a response whose body is still coming; the
        next request gets 504 after UPSTREAM_TIMEOUT without reaching the
        backend. (A /hang request would not do as the holder: it times out
        itself after UPSTREAM_TIMEOUT and gives its slot to the next one.)
        """
        server = HoldingServer(self)
        _, port = yield start_gateway(
            self, server.origin, UPSTREAM_MAX_CONNECTIONS="1", UPSTREAM_TIMEOUT="0.5"
        )
        first = fetch(port, "GET", "/partial/1")
        yield server.wait_for(1)
        started = time.monotonic()
        second = yield fetch(port, "GET", "/second")
        elapsed = time.monotonic() - started
        self.assertEqual(second.status, 504)
        self.assertEqual(second.json()["error"], "gateway_timeout")
        self.assertTrue(0.4 < elapsed < 3.0, elapsed)
        self.assertEqual(server.received, [b"/partial/1"])

        server.resource.answer(b"/partial/1", b"the rest")
        first = yield first
        self.assertEqual((first.status, first.body), (200, b"first part;the rest"))
        # The slot is free again, and the timed-out request took none.
        third = fetch(port, "GET", "/third")
        yield server.wait_for(2)
        server.resource.answer(b"/third")
        third = yield third
        self.assertEqual((third.status, third.body), (200, b"answer /third"))
        self.assertEqual(server.received, [b"/partial/1", b"/third"])


# --- MAX_CONNECTIONS_PER_IP --------------------------------------------------------


class PeerConnectionLimitUnitTests(SynchronousTestCase):
    def setUp(self):
        config = load_config({"PRIVATE_BACKEND_URL": "https://user-space.hf.space"})
        self.site = build_site(config, HandAgent(), MemoryReactorClock())
        self.limit = PeerConnectionLimit(self.site, 2)

    def connect(self, host):
        protocol = self.limit.buildProtocol(IPv4Address("TCP", host, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        protocol.makeConnection(transport)
        return protocol, transport

    def assertServed(self, protocol, transport):
        protocol.dataReceived(b"GET /gateway-health HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "), transport.value()[:80])
        self.assertFalse(transport.disconnecting)

    def assertRefused(self, transport):
        data = transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), data[:80])
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"Connection: close", head)
        self.assertIn(b"Content-Length: %d" % len(body), head)
        self.assertEqual(json.loads(body)["error"], "too_many_requests")
        self.assertTrue(transport.disconnecting)

    def test_limit_is_per_address(self):
        first = self.connect("10.0.0.1")
        second = self.connect("10.0.0.1")
        _, third = self.connect("10.0.0.1")
        self.assertRefused(third)
        self.assertServed(*first)
        self.assertServed(*second)
        self.assertServed(*self.connect("10.0.0.2"))

    def test_closed_connection_makes_room(self):
        first, _ = self.connect("10.0.0.1")
        self.connect("10.0.0.1")
        first.connectionLost(Failure(ConnectionDone()))
        self.assertServed(*self.connect("10.0.0.1"))
        self.assertRefused(self.connect("10.0.0.1")[1])

    def test_trusted_proxy_not_counted(self):
        """Every visitor comes through the proxy: the limit can't fall on all of them."""
        self.limit = PeerConnectionLimit(self.site, 2, TrustedProxies.parse("10.9.0.0/16"))
        connections = [self.connect("10.9.0.1") for _ in range(5)]
        for connection in connections:
            self.assertServed(*connection)
        for protocol, _ in connections:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.connect("10.0.0.1")
        self.connect("10.0.0.1")
        self.assertRefused(self.connect("10.0.0.1")[1])


class RawClient(Protocol):
    """A client connection that collects what it reads and notes its end."""

    def __init__(self):
        self.data = b""
        self.lost = defer.Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.lost.callback(None)

    def responses(self):
        """The number of complete responses read (Content-Length or chunked)."""
        count, rest = 0, self.data
        while True:
            head, found, rest = rest.partition(b"\r\n\r\n")
            if not found:
                return count
            fields = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            if fields.get(b"transfer-encoding") == b"chunked":
                while True:
                    size, found, rest = rest.partition(b"\r\n")
                    if not found or len(rest) < int(size, 16) + 2:
                        return count
                    rest = rest[int(size, 16) + 2:]
                    if int(size, 16) == 0:
                        break
            else:
                length = int(fields.get(b"content-length", b"0"))
                if len(rest) < length:
                    return count
                rest = rest[length:]
            count += 1


class PeerConnectionLimitIntegrationTests(TestCase):
    """MAX_CONNECTIONS_PER_IP=2 on a real gateway; every client is 127.0.0.1."""

    @defer.inlineCallbacks
    def start(self, origin):
        _, self.port = yield start_gateway(self, origin, MAX_CONNECTIONS_PER_IP="2")

    @defer.inlineCallbacks
    def open(self):
        client = RawClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        self.addCleanup(self.close, client)
        return client

    def close(self, client):
        if not client.lost.called:
            client.transport.loseConnection()
        return client.lost

    @defer.inlineCallbacks
    def assertServed(self, client, close=False):
        before = client.responses()
        extra = b"Connection: close\r\n" if close else b""
        client.transport.write(b"GET /gateway-health HTTP/1.1\r\nHost: gw\r\n" + extra + b"\r\n")
        yield wait_until(lambda: client.responses() > before)
        last = client.data.rsplit(b"HTTP/1.1 ", 1)[1]
        self.assertTrue(last.startswith(b"200 "), last[:40])

    @defer.inlineCallbacks
    def assertRefused(self):
        client = yield self.open()
        yield client.lost.addTimeout(5, reactor)
        self.assertTrue(client.data.startswith(b"HTTP/1.1 429 "), client.data[:80])
        self.assertIn(b"Connection: close", client.data)

    @defer.inlineCallbacks
    def open_when_room(self, timeout=2.0):
        """A new connection once the gateway has noticed a close (429s until then)."""
        deadline = time.monotonic() + timeout
        while True:
            client = yield self.open()
            yield pause(0.05)
            if not client.lost.called:
                return client
            self.assertTrue(client.data.startswith(b"HTTP/1.1 429 "), client.data[:80])
            self.assertLess(time.monotonic(), deadline, "no room made in %.1fs" % timeout)

    @defer.inlineCallbacks
    def test_third_connection_refused_until_one_closes(self):
        _, _, origin = yield start_backend(self)
        yield self.start(origin)
        first = yield self.open()
        second = yield self.open()
        yield self.assertServed(first)
        yield self.assertServed(second)
        yield self.assertRefused()
        yield self.assertServed(first)  # the open ones are still served

        # The gateway closes the second one (Connection: close): room at once.
        yield self.assertServed(second, close=True)
        yield second.lost
        third = yield self.open()
        yield self.assertServed(third)
        yield self.assertRefused()

        # The client closes the first one: room once the gateway has seen it.
        yield self.close(first)
        fourth = yield self.open_when_room()
        yield self.assertServed(fourth)
        yield self.assertRefused()

    @defer.inlineCallbacks
    def test_websocket_tunnel_closing_makes_room(self):
        ws_backend = WebSocketBackend(TOKEN)
        self.addCleanup(ws_backend.stop)
        yield self.start(ws_backend.origin)

        def open_tunnel():
            ws = ws_connect("ws://127.0.0.1:%d/ws" % self.port, open_timeout=10)
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
            return ws

        tunnels = []
        for _ in range(2):
            ws = yield deferToThread(open_tunnel)
            tunnels.append(ws)
            self.addCleanup(deferToThread, ws.close)
        yield self.assertRefused()

        yield deferToThread(tunnels[0].close)
        client = yield self.open_when_room()
        yield self.assertServed(client)
        yield self.assertRefused()
        # The other tunnel still works.
        echoed = yield deferToThread(lambda: (tunnels[1].send("still"), tunnels[1].recv(timeout=5)))
        self.assertEqual(echoed[1], "still")

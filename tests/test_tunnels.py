"""Tests for MAX_WEBSOCKETS, MAX_STREAMS and their per-address bound
(L{wighaven.proxy.tunnels}): unit tests of the counting, then real WebSockets and
event streams through a gateway on 127.0.0.1."""

import socket

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase
from websockets.exceptions import InvalidStatus

from wighaven.config.settings import load_config
from wighaven.proxy.tunnels import STREAM, WEBSOCKET, TunnelLimits

from tests.support.backend import start_backend
from tests.support.client import fetch, read_head
from tests.support.gateway import TOKEN, start_gateway
from tests.support.waiting import wait_until
from tests.support.ws_backend import WebSocketBackend
from tests.test_websocket_integration import ws_connect


class TunnelLimitsTests(SynchronousTestCase):
    def test_bounded_in_all_per_kind(self):
        limits = TunnelLimits(max_websockets=2, max_streams=1)
        holds = [limits.take(WEBSOCKET, b"a")[0] for _ in range(2)]
        self.assertEqual(limits.take(WEBSOCKET, b"b"), (None, "all"))
        stream, _ = limits.take(STREAM, b"b")
        self.assertIsNotNone(stream)
        self.assertEqual(limits.take(STREAM, b"c"), (None, "all"))
        holds[0].release()
        holds[0].release()  # a second release gives back nothing more
        self.assertEqual(limits.open, {WEBSOCKET: 1, STREAM: 1})
        self.assertIsNotNone(limits.take(WEBSOCKET, b"b")[0])
        self.assertEqual(limits.take(WEBSOCKET, b"b"), (None, "all"))

    def test_per_address_counts_both_kinds(self):
        limits = TunnelLimits(max_websockets=10, max_streams=10, per_address=2)
        ws, _ = limits.take(WEBSOCKET, b"198.51.100.1")
        limits.take(STREAM, b"198.51.100.1")
        self.assertEqual(limits.take(STREAM, b"198.51.100.1"), (None, "address"))
        self.assertIsNotNone(limits.take(STREAM, b"198.51.100.2")[0])
        ws.release()
        self.assertIsNotNone(limits.take(WEBSOCKET, b"198.51.100.1")[0])

    def test_auto_fits_the_open_files_limit(self):
        config = load_config({"PRIVATE_BACKEND_URL": "https://a.example"})
        limits = TunnelLimits.for_config(config, open_files=4096)
        self.assertEqual(limits.maxima, {WEBSOCKET: 512, STREAM: 512})
        # Both kinds at their bound hold two descriptors each: half the limit.
        self.assertEqual(2 * sum(limits.maxima.values()), 4096 // 2)


def _open_stream(port, source="127.0.0.1", forwarded_for=None):
    """A connection asking for a long event stream; (socket, status line)."""
    s = socket.socket()
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    extra = b"X-Forwarded-For: %s\r\n" % forwarded_for.encode() if forwarded_for else b""
    s.sendall(b"GET /sse?n=50&every=0.2 HTTP/1.1\r\nHost: a\r\n" + extra + b"\r\n")
    return s, read_head(s).split(b"\r\n", 1)[0]


class StreamLimitTests(unittest.TestCase):
    @defer.inlineCallbacks
    def gateway(self, **settings):
        _, _, origin = yield start_backend(self)
        self.gw, self.port = yield start_gateway(self, origin, **settings)

    @defer.inlineCallbacks
    def open_stream(self, **kwargs):
        s, status = yield deferToThread(_open_stream, self.port, **kwargs)
        self.addCleanup(s.close)
        return s, status

    @defer.inlineCallbacks
    def test_streams_past_max_streams_get_503(self):
        yield self.gateway(MAX_STREAMS="2")
        for _ in range(2):
            _, status = yield self.open_stream()
            self.assertEqual(status, b"HTTP/1.1 200 OK")
        s, status = yield self.open_stream()
        self.assertEqual(status, b"HTTP/1.1 503 Service Unavailable")
        # Ordinary requests are never refused for streams.
        reply = yield fetch(self.port, "GET", "/echo")
        self.assertEqual(reply.status, 200)
        reply = yield fetch(self.port, "GET", "/sse?n=1")
        self.assertEqual(reply.status, 503)
        self.assertEqual(reply.json()["error"], "too_many_streams")
        self.assertEqual(reply.get("Retry-After"), "5")

    @defer.inlineCallbacks
    def test_a_closed_stream_frees_its_place(self):
        yield self.gateway(MAX_STREAMS="1")
        first, status = yield self.open_stream()
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        first.close()
        tunnels = self.gw.site._forward.tunnels
        yield wait_until(lambda: tunnels.open[STREAM] == 0, timeout=5)
        _, status = yield self.open_stream()
        self.assertEqual(status, b"HTTP/1.1 200 OK")

    @defer.inlineCallbacks
    def test_per_client_address_behind_a_trusted_proxy(self):
        """Each proxy connection comes from its own 127.0.0.x; the client is in X-Forwarded-For."""
        yield self.gateway(MAX_CONNECTIONS_PER_IP="2", TRUST_PROXY="true")
        for source in ("127.0.0.2", "127.0.0.3"):
            _, status = yield self.open_stream(source=source, forwarded_for="198.51.100.1")
            self.assertEqual(status, b"HTTP/1.1 200 OK")
        _, status = yield self.open_stream(source="127.0.0.4", forwarded_for="198.51.100.1")
        self.assertEqual(status, b"HTTP/1.1 429 Too Many Requests")
        _, status = yield self.open_stream(source="127.0.0.4", forwarded_for="198.51.100.2")
        self.assertEqual(status, b"HTTP/1.1 200 OK")


class WebSocketLimitTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.ws = WebSocketBackend(TOKEN)
        self.addCleanup(self.ws.stop)
        self.gw, self.port = yield start_gateway(self, self.ws.origin, MAX_WEBSOCKETS="1")

    @defer.inlineCallbacks
    def test_websockets_past_max_websockets_get_503(self):
        first = yield deferToThread(ws_connect, self.port, "/echo")
        self.addCleanup(first.close)

        def second():
            try:
                with ws_connect(self.port, "/echo"):
                    return None
            except InvalidStatus as e:
                return e.response

        response = yield deferToThread(second)
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.headers["Retry-After"], "5")
        self.assertIn(b"too_many_websockets", response.body)

        yield deferToThread(first.send, "still here")
        echoed = yield deferToThread(first.recv, 5)
        self.assertEqual(echoed, "still here")
        yield deferToThread(first.close)
        tunnels = self.gw.site._forward.tunnels
        yield wait_until(lambda: tunnels.open[WEBSOCKET] == 0, timeout=5)
        again = yield deferToThread(ws_connect, self.port, "/echo")
        yield deferToThread(again.close)

"""WebSocket through the gateway, against a real WebSocket server over TLS
that (like a private Space) refuses handshakes without the token."""

import os
import tempfile
import time

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import TOKEN, GatewayProcess, start_gateway
from tests.support.waiting import wait_until
from tests.support.ws_backend import WebSocketBackend

MiB = 1024 * 1024


def ws_connect(port, path="/ws", **kwargs):
    kwargs.setdefault("max_size", None)
    kwargs.setdefault("compression", None)
    kwargs.setdefault("open_timeout", 10)
    return connect("ws://127.0.0.1:%d%s" % (port, path), **kwargs)


def headers_named(handshake, name):
    return [v for n, v in handshake if n.lower() == name.lower()]


class WebSocketTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.ws = WebSocketBackend(TOKEN)
        self.addCleanup(self.ws.stop)
        self.gateway, self.port = yield start_gateway(self, self.ws.origin)

    @defer.inlineCallbacks
    def test_handshake_carries_token_subprotocols_and_cookies(self):
        def talk():
            with ws_connect(
                self.port, "/hello", subprotocols=["chat.v1", "chat.v2"],
                additional_headers={"Cookie": "session=abc", "Authorization": "Bearer client"},
            ) as ws:
                greeting = ws.recv(timeout=5)
                ws.send("ping")
                echoed = ws.recv(timeout=5)
                ws.send(b"\x00\x01binary")
                return ws.subprotocol, greeting, echoed, ws.recv(timeout=5)

        subprotocol, greeting, echoed, binary = yield deferToThread(talk)
        self.assertEqual(subprotocol, "chat.v2")
        self.assertEqual(greeting, "hello session=abc")
        self.assertEqual((echoed, binary), ("ping", b"\x00\x01binary"))
        handshake = self.ws.handshakes[-1]
        self.assertEqual(headers_named(handshake, "Authorization"), ["Bearer " + TOKEN])
        self.assertEqual(headers_named(handshake, "Sec-WebSocket-Protocol"), ["chat.v1, chat.v2"])
        self.assertEqual(headers_named(handshake, "Host"), [self.ws.origin.split("//")[1]])

    @defer.inlineCallbacks
    def test_ten_thousand_messages(self):
        def talk():
            with ws_connect(self.port) as ws:
                for i in range(10000):
                    ws.send("message %d" % i)
                return [ws.recv(timeout=10) for _ in range(10000)]

        received = yield deferToThread(talk)
        self.assertEqual(received, ["message %d" % i for i in range(10000)])

    @defer.inlineCallbacks
    def test_fifty_mib_binary_message(self):
        payload = os.urandom(50 * MiB)

        def talk():
            with ws_connect(self.port) as ws:
                ws.send(payload)
                return ws.recv(timeout=60)

        echoed = yield deferToThread(talk)
        self.assertEqual(echoed, payload)

    @defer.inlineCallbacks
    def test_refused_handshake_relayed_as_a_response(self):
        _, port = yield start_gateway(self, self.ws.origin, HF_TOKEN=None)

        def talk():
            try:
                ws_connect(port)
            except InvalidStatus as e:
                return e.response.status_code, e.response.body
            return None

        status, body = yield deferToThread(talk)
        self.assertEqual(status, 404)
        self.assertEqual(body, b"no such space\n")

    @defer.inlineCallbacks
    def test_non_101_answer_keeps_connection_usable(self):
        out = yield raw(
            self.port,
            b"GET /plain HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            b"GET /gateway-health HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(out.startswith(b"HTTP/1.1 426 "), out[:80])
        self.assertIn(b"X-Plain: yes", out)
        self.assertIn(b"plain answer\n", out)
        self.assertIn(b'"service": "wighaven-gateway"', out)

    @defer.inlineCallbacks
    def test_client_close_closes_backend_side(self):
        def talk():
            ws = ws_connect(self.port)
            ws.send("x")
            ws.recv(timeout=5)
            opened = self.ws.open
            ws.close()
            return opened, ws.close_code

        opened, code = yield deferToThread(talk)
        self.assertEqual((opened, code), (1, 1000))
        # The backend's side of the tunnel closes too.
        yield wait_until(lambda: self.ws.open == 0, timeout=3)

    @defer.inlineCallbacks
    def test_idle_timeout_closes_silent_tunnel(self):
        _, port = yield start_gateway(self, self.ws.origin, WS_IDLE_TIMEOUT="0.5")

        def talk():
            with ws_connect(port) as ws:
                ws.send("x")
                ws.recv(timeout=5)
                started = time.monotonic()
                try:
                    ws.recv(timeout=5)
                except ConnectionClosed:
                    return time.monotonic() - started
            return None

        waited = yield deferToThread(talk)
        self.assertIsNotNone(waited)
        self.assertLess(waited, 3)

    @defer.inlineCallbacks
    def test_no_idle_timeout_by_default(self):
        def talk():
            with ws_connect(self.port) as ws:
                time.sleep(1.5)
                ws.send("still here")
                return ws.recv(timeout=5)

        self.assertEqual((yield deferToThread(talk)), "still here")


class OtherUpgradeTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_h2c_upgrade_dropped_request_served_as_http11(self):
        backend, _, origin = yield start_backend(self)
        _, port = yield start_gateway(self, origin)
        reply = yield fetch(port, "GET", "/echo", {"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings",
                                                  "HTTP2-Settings": "AAMAAABkAAQAAP__"})
        self.assertEqual(reply.status, 200)
        names = {n.lower() for n, _ in reply.json()["headers"]}
        self.assertNotIn("upgrade", names)
        self.assertNotIn("http2-settings", names)


class WebSocketMemoryTests(unittest.TestCase):
    """The tunnel streams: a real gateway process stays flat under big and many messages."""

    timeout = 300

    @defer.inlineCallbacks
    def test_memory_flat_for_big_and_many_messages(self):
        ws = WebSocketBackend(TOKEN)
        self.addCleanup(ws.stop)
        log_dir = tempfile.mkdtemp(prefix="wighaven-ws-")
        gateway = GatewayProcess(ws.origin, os.path.join(log_dir, "gateway.log"))
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        payload = os.urandom(50 * MiB)

        def talk():
            with ws_connect(gateway.port) as conn:
                conn.send("warm-up")
                conn.recv(timeout=5)
                baseline = gateway.rss_kib()
                for i in range(10000):
                    conn.send("m%d" % i)
                many = [conn.recv(timeout=10) for _ in range(10000)]
                conn.send(payload)
                big = conn.recv(timeout=60)
                return baseline, many, big

        baseline, many, big = yield deferToThread(talk)
        self.assertEqual(many, ["m%d" % i for i in range(10000)])
        self.assertEqual(big, payload)
        growth = gateway.peak_rss_kib() - baseline
        print("\n[memory] websocket 10,000 messages + 50 MiB message: gateway RSS grew %.1f MiB"
              % (growth / 1024.0))
        self.assertLess(growth, 64 * 1024)

"""Settings that change what the gateway answers: DASHBOARD_PATH,
CORS_ALLOW_ORIGINS, TOKEN_HEADER and TRUST_PROXY, over real sockets."""

import socket
import time

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import TOKEN, start_gateway
from tests.test_forward_integration import header_values


class GatewaySettingsTests(unittest.TestCase):

    @defer.inlineCallbacks
    def gateway(self, **settings):
        self.backend, _, origin = yield start_backend(self)
        _, port = yield start_gateway(self, origin, **settings)
        return port

    @defer.inlineCallbacks
    def test_moved_dashboard_frees_the_root_for_the_space(self):
        port = yield self.gateway(DASHBOARD_PATH="/_gateway/")
        reply = yield fetch(port, "GET", "/?__theme=dark")
        self.assertEqual(reply.json()["uri"], "/?__theme=dark")
        reply = yield fetch(port, "GET", "/_gateway/")
        self.assertEqual(reply.status, 200)
        self.assertIn(b"WigHaven Gateway", reply.body)
        self.assertEqual(reply.get("Content-Type"), "text/html; charset=utf-8")
        reply = yield fetch(port, "GET", "/gateway-health")
        self.assertEqual(reply.json()["status"], "ok")

    @defer.inlineCallbacks
    def test_dashboard_never_shows_the_token(self):
        port = yield self.gateway()
        for _ in range(3):
            yield fetch(port, "GET", "/cookies")
        reply = yield fetch(port, "GET", "/")
        self.assertNotIn(TOKEN.encode(), reply.body)
        self.assertIn(b"localhost", reply.body)
        self.assertIn(b'data-stat="requests">3<', reply.body)

    @defer.inlineCallbacks
    def test_backend_cors_untouched_without_setting(self):
        port = yield self.gateway()
        reply = yield fetch(
            port, "OPTIONS", "/echo",
            {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        # Forwarded to the backend as any request (it answered with its echo).
        self.assertEqual(reply.json()["method"], "OPTIONS")
        self.assertIsNone(reply.get("Access-Control-Allow-Origin"))

    @defer.inlineCallbacks
    def test_cors_preflight_answered_for_allowed_origin(self):
        port = yield self.gateway(CORS_ALLOW_ORIGINS="https://app.example, https://other.example")
        reply = yield fetch(
            port, "OPTIONS", "/api",
            {
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-custom",
            },
        )
        self.assertEqual(reply.status, 204)
        self.assertEqual(reply.get("Access-Control-Allow-Origin"), "https://app.example")
        # x-custom is not in CORS_ALLOW_HEADERS: it is not echoed.
        self.assertEqual(reply.get("Access-Control-Allow-Headers"), "content-type")
        self.assertEqual(reply.get("Access-Control-Allow-Credentials"), "true")
        self.assertIn("POST", reply.get("Access-Control-Allow-Methods"))
        self.assertEqual(self.backend.requests, [])

        reply = yield fetch(port, "GET", "/echo", {"Origin": "https://app.example"})
        self.assertEqual(reply.get("Access-Control-Allow-Origin"), "https://app.example")
        self.assertIn("Origin", reply.get("Vary"))

        reply = yield fetch(port, "GET", "/echo", {"Origin": "https://evil.example"})
        self.assertIsNone(reply.get("Access-Control-Allow-Origin"))

    @defer.inlineCallbacks
    def test_cors_star_is_the_wildcard_without_credentials(self):
        """Any site may read with *, but never with the visitor's cookies."""
        port = yield self.gateway(CORS_ALLOW_ORIGINS="*")
        for method, path, headers in [
            ("OPTIONS", "/api", {"Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "x-evil"}),
            ("GET", "/echo", {}),
        ]:
            headers["Origin"] = "https://evil.example"
            reply = yield fetch(port, method, path, headers)
            self.assertEqual(reply.get("Access-Control-Allow-Origin"), "*")
            self.assertIsNone(reply.get("Access-Control-Allow-Credentials"))
            self.assertIsNone(reply.get("Access-Control-Allow-Headers"))

    @defer.inlineCallbacks
    def test_forged_forwarding_headers_replaced(self):
        """Without TRUST_PROXY the client's forwarding claims never reach the backend."""
        port = yield self.gateway()
        reply = yield fetch(port, "GET", "/echo", {
            "X-Forwarded-For": "10.9.9.9", "Forwarded": "for=10.9.9.9", "X-Real-IP": "10.9.9.9",
            "X-Forwarded-Port": "443", "X-Forwarded-Prefix": "/admin",
        })
        echo = reply.json()
        self.assertEqual(header_values(echo, "x-forwarded-for"), ["127.0.0.1"])
        for name in ("forwarded", "x-real-ip", "x-forwarded-port", "x-forwarded-prefix"):
            self.assertEqual(header_values(echo, name), [], name)

    @defer.inlineCallbacks
    def test_trusted_cidr_proxy_chain(self):
        """The peer 127.0.0.1 is a trusted proxy: the right-most untrusted hop is the client."""
        port = yield self.gateway(TRUST_PROXY="127.0.0.0/8, 10.0.0.0/8")
        reply = yield fetch(port, "GET", "/echo", {
            "X-Forwarded-For": "6.6.6.6, 203.0.113.9, 10.1.1.1",
            "X-Forwarded-Proto": "https",
        })
        echo = reply.json()
        self.assertEqual(
            header_values(echo, "x-forwarded-for"), ["203.0.113.9, 10.1.1.1, 127.0.0.1"]
        )
        self.assertEqual(header_values(echo, "x-forwarded-proto"), ["https"])

    @defer.inlineCallbacks
    def test_untrusted_peer_with_cidr_list(self):
        port = yield self.gateway(TRUST_PROXY="10.0.0.0/8")
        reply = yield fetch(port, "GET", "/echo", {
            "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
        })
        echo = reply.json()
        self.assertEqual(header_values(echo, "x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(header_values(echo, "x-forwarded-proto"), ["http"])

    @defer.inlineCallbacks
    def test_token_in_x_hf_authorization_leaves_client_authorization(self):
        port = yield self.gateway(TOKEN_HEADER="x-hf-authorization")
        reply = yield fetch(
            port, "GET", "/echo",
            {"Authorization": "Basic dXNlcjpwYXNz", "X-HF-Authorization": "Bearer forged"},
        )
        echo = reply.json()
        self.assertEqual(header_values(echo, "authorization"), ["Basic dXNlcjpwYXNz"])
        self.assertEqual(header_values(echo, "x-hf-authorization"), ["Bearer " + TOKEN])

    @defer.inlineCallbacks
    def test_no_token_configured_forwards_no_token(self):
        port = yield self.gateway(HF_TOKEN=None)
        reply = yield fetch(port, "GET", "/echo")
        self.assertEqual(header_values(reply.json(), "authorization"), [])

    @defer.inlineCallbacks
    def test_trusted_proxy_headers_shape_location(self):
        port = yield self.gateway(TRUST_PROXY="true")
        headers = {"Host": "internal:7860", "X-Forwarded-Proto": "https",
                   "X-Forwarded-Host": "owner-gateway.hf.space"}
        reply = yield fetch(port, "GET", "/redirect-internal", headers)
        self.assertEqual(reply.get("Location"), "https://owner-gateway.hf.space/landed?x=1")

    @defer.inlineCallbacks
    def test_untrusted_proxy_headers_ignored(self):
        port = yield self.gateway()
        headers = {"Host": "gw.example", "X-Forwarded-Proto": "https",
                   "X-Forwarded-Host": "evil.example"}
        reply = yield fetch(port, "GET", "/redirect-internal", headers)
        self.assertEqual(reply.get("Location"), "http://gw.example/landed?x=1")
        reply = yield fetch(port, "GET", "/echo", headers)
        self.assertEqual(header_values(reply.json(), "x-forwarded-proto"), ["http"])
        self.assertEqual(header_values(reply.json(), "x-forwarded-host"), ["gw.example"])


class DrainingHealthTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_health_and_dashboard_say_draining(self):
        _, _, origin = yield start_backend(self)
        gateway, port = yield start_gateway(self, origin)
        gateway.stats.draining = True
        reply = yield fetch(port, "GET", "/gateway-health")
        self.assertEqual(reply.status, 503)
        self.assertEqual(reply.json()["status"], "draining")
        self.assertEqual(reply.get("Connection"), "close")
        reply = yield fetch(port, "GET", "/")
        self.assertIn(b'data-stat="status">draining<', reply.body)


class DashboardLiveSettingTests(unittest.TestCase):
    """The page knows whether a live feed exists."""

    @defer.inlineCallbacks
    def page(self, **settings):
        _, _, origin = yield start_backend(self)
        _, port = yield start_gateway(self, origin, **settings)
        reply = yield fetch(port, "GET", "/")
        return reply.body

    @defer.inlineCallbacks
    def test_metrics_on_page_opens_the_feed(self):
        body = yield self.page()
        self.assertIn(b'{"live":"/_gateway/live"', body)

    @defer.inlineCallbacks
    def test_metrics_off_page_says_live_updates_off(self):
        body = yield self.page(METRICS="off")
        self.assertIn(b'{"live":null', body)


def _answer_to_head(port, head, timeout=3.0):
    """Send only C{head}; return what the gateway answers before closing (or timing out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        out = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                out += data
        except socket.timeout:
            pass
        return out


class OwnAnswerBodyTests(unittest.TestCase):
    """Requests the gateway answers itself take small bodies only, never spooled."""

    @defer.inlineCallbacks
    def setUp(self):
        _, _, origin = yield start_backend(self)
        _, self.port = yield start_gateway(self, origin, CORS_ALLOW_ORIGINS="https://app.example")

    @defer.inlineCallbacks
    def test_large_declared_body_refused_before_it_is_sent(self):
        for head in [
            b"POST /gateway-health HTTP/1.1\r\nHost: a\r\nContent-Length: 50000000\r\n\r\n",
            b"POST /_gateway/metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 50000000\r\n\r\n",
            b"TRACE /x HTTP/1.1\r\nHost: a\r\nContent-Length: 50000000\r\n\r\n",
            b"OPTIONS /x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example\r\n"
            b"Access-Control-Request-Method: POST\r\nContent-Length: 50000000\r\n\r\n",
        ]:
            started = time.monotonic()
            out = yield deferToThread(_answer_to_head, self.port, head)
            self.assertTrue(out.startswith(b"HTTP/1.1 413 "), (head, out[:80]))
            self.assertIn(b"the gateway's own paths", out)
            self.assertLess(time.monotonic() - started, 2.0)

    @defer.inlineCallbacks
    def test_chunked_body_cut_at_the_limit(self):
        chunk = b"1000\r\n" + b"z" * 4096 + b"\r\n"
        out = yield raw(
            self.port,
            b"POST /gateway-health HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * 8 + b"0\r\n\r\n",
        )
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:80])

    @defer.inlineCallbacks
    def test_small_body_answered_as_usual(self):
        reply = yield fetch(self.port, "POST", "/gateway-health", body=b"x" * 100)
        self.assertEqual(reply.status, 405)

    @defer.inlineCallbacks
    def test_own_answers_do_not_advertise_twisted(self):
        for path in ("/", "/gateway-health", "/_gateway/metrics", "/_gateway/nothing"):
            reply = yield fetch(self.port, "GET", path)
            self.assertIsNone(reply.get("Server"), path)
        reply = yield fetch(self.port, "TRACE", "/x")
        self.assertEqual(reply.status, 405)
        self.assertIsNone(reply.get("Server"))

"""Forwarding over real sockets: client -> gateway -> TLS backend on 127.0.0.1."""

import gzip
import hashlib
import json
import os

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.backend import GZIPPED, start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import TOKEN, start_gateway


def header_values(echo, name):
    return [v for n, v in echo["headers"] if n.lower() == name.lower()]


class ForwardingTests(unittest.TestCase):
    """Requests and responses cross the gateway as they were, token added."""

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, self.backend_site, self.origin = yield start_backend(self)
        self.gateway, self.port = yield start_gateway(self, self.origin)

    @defer.inlineCallbacks
    def test_token_injected_replacing_client_authorization(self):
        reply = yield fetch(self.port, "GET", "/echo", {"Authorization": "Bearer client-token"})
        self.assertEqual(reply.status, 200)
        echo = reply.json()
        self.assertEqual(header_values(echo, "authorization"), ["Bearer " + TOKEN])

    @defer.inlineCallbacks
    def test_every_method_but_trace_and_connect_forwarded(self):
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"]:
            reply = yield fetch(self.port, method, "/echo", body=b"" if method != "GET" else None)
            self.assertEqual(reply.status, 200, method)
            self.assertEqual(reply.json()["method"], method)
        forwarded = len(self.backend.requests)
        for method in ["TRACE", "CONNECT"]:
            reply = yield fetch(self.port, method, "/echo")
            self.assertEqual(reply.status, 405, method)
            self.assertEqual(reply.json()["error"], "method_not_allowed")
        self.assertEqual(len(self.backend.requests), forwarded)

    @defer.inlineCallbacks
    def test_target_forwarded_byte_for_byte(self):
        for target in [
            "/echo/a%2Fb/c?x=1&y=%2F&z=%E2%9C%93",
            "/echo//double//slash",
            "/echo/%C3%A9t%C3%A9?q=caf%C3%A9",
            "/echo/a;b=c/d?",
            "/echo?",
        ]:
            reply = yield fetch(self.port, "GET", target)
            self.assertEqual(reply.json()["uri"], target)

    @defer.inlineCallbacks
    def test_host_always_the_backends(self):
        reply = yield fetch(self.port, "GET", "//evil.example/x")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["uri"], "//evil.example/x")
        reply = yield fetch(self.port, "GET", "/echo", {"Host": "evil.example"})
        echo = reply.json()
        self.assertEqual(header_values(echo, "host"), [self.origin.split("//")[1]])
        self.assertEqual(header_values(echo, "x-forwarded-host"), ["evil.example"])

    @defer.inlineCallbacks
    def test_absolute_form_never_changes_host(self):
        out = yield raw(
            self.port,
            b"GET http://evil.example:1/echo/abs?q=1 HTTP/1.1\r\nHost: evil.example\r\n"
            b"Connection: close\r\n\r\n",
        )
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertIn(b'"uri": "/echo/abs?q=1"', body)

    @defer.inlineCallbacks
    def test_userinfo_style_target_refused(self):
        before = len(self.backend.requests)
        out = yield raw(self.port, b"GET @evil.example/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:60])
        self.assertEqual(len(self.backend.requests), before)

    @defer.inlineCallbacks
    def test_forwarded_headers(self):
        reply = yield fetch(
            self.port, "GET", "/echo",
            {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        )
        echo = reply.json()
        # TRUST_PROXY is off: the client's X-Forwarded-For is its own claim, replaced.
        self.assertEqual(header_values(echo, "x-forwarded-for"), ["127.0.0.1"])
        self.assertEqual(header_values(echo, "x-forwarded-proto"), ["http"])

    @defer.inlineCallbacks
    def test_hop_by_hop_removed_both_ways(self):
        reply = yield fetch(
            self.port, "GET", "/echo",
            {
                "Connection": "keep-alive, X-Secret-Hop",
                "X-Secret-Hop": "1",
                "Keep-Alive": "timeout=5",
                "TE": "trailers",
                "Trailer": "X-T",
                "Proxy-Authorization": "Basic Zm9vOmJhcg==",
                "Proxy-Connection": "keep-alive",
                "Upgrade": "h2c",
                "X-End-To-End": "kept",
            },
        )
        names = {n.lower() for n, _ in reply.json()["headers"]}
        for hop in ["x-secret-hop", "keep-alive", "te", "trailer", "proxy-authorization",
                    "proxy-connection", "upgrade"]:
            self.assertNotIn(hop, names)
        self.assertIn("x-end-to-end", names)

        reply = yield fetch(self.port, "GET", "/hop")
        names = {n.lower() for n, _ in reply.headers}
        for hop in ["x-internal", "keep-alive", "proxy-authenticate", "proxy-connection"]:
            self.assertNotIn(hop, names)
        self.assertEqual(reply.get("X-Kept"), "yes")

    @defer.inlineCallbacks
    def test_duplicate_set_cookie_kept_and_no_cookie_jar(self):
        reply = yield fetch(self.port, "GET", "/cookies")
        self.assertEqual(
            reply.get_all("Set-Cookie"),
            ["a=1; Path=/", "b=2; Path=/; HttpOnly", "c=3; Path=/; Secure"],
        )
        # Another client, no cookies of its own: the gateway must not replay the first one's.
        reply = yield fetch(self.port, "GET", "/cookies")
        self.assertEqual(reply.json()["cookie"], [])
        reply = yield fetch(self.port, "GET", "/cookies", {"Cookie": "mine=1"})
        self.assertEqual(reply.json()["cookie"], ["mine=1"])

    @defer.inlineCallbacks
    def test_gzip_passes_byte_identical(self):
        reply = yield fetch(self.port, "GET", "/gzip", {"Accept-Encoding": "gzip, br"})
        self.assertEqual(reply.body, GZIPPED)
        self.assertEqual(reply.get("Content-Encoding"), "gzip")
        self.assertEqual(reply.get("X-Seen-Accept-Encoding"), "gzip, br")
        self.assertEqual(gzip.decompress(reply.body)[:16], b"compressed hello")
        reply = yield fetch(self.port, "GET", "/gzip")
        self.assertEqual(reply.get("X-Seen-Accept-Encoding"), "(none)")

    @defer.inlineCallbacks
    def test_no_content_type_or_server_invented(self):
        reply = yield fetch(self.port, "GET", "/no-type")
        self.assertEqual(reply.body, b"raw bytes, no type")
        self.assertIsNone(reply.get("Content-Type"))
        self.assertIsNone(reply.get("Server"))

    @defer.inlineCallbacks
    def test_redirects_not_followed_and_location_rewritten(self):
        reply = yield fetch(self.port, "GET", "/redirect-internal", {"Host": "gw.example:8443"})
        self.assertEqual(reply.status, 302)
        self.assertEqual(reply.get("Location"), "http://gw.example:8443/landed?x=1")
        reply = yield fetch(self.port, "GET", "/redirect-external")
        self.assertEqual(reply.status, 302)
        self.assertEqual(reply.get("Location"), "https://elsewhere.example/landed")
        self.assertNotIn(b"/landed", [r["uri"] for r in self.backend.requests])

    @defer.inlineCallbacks
    def test_status_codes_and_empty_bodies(self):
        for code in [201, 204, 304, 404, 418, 500, 503]:
            reply = yield fetch(self.port, "GET", "/status/%d" % code)
            self.assertEqual(reply.status, code)
        reply = yield fetch(self.port, "HEAD", "/head")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.get("Content-Length"), "1234")
        self.assertEqual(reply.body, b"")

    @defer.inlineCallbacks
    def test_request_body_byte_exact(self):
        body = os.urandom(3 * 1024 * 1024 + 17)
        reply = yield fetch(self.port, "POST", "/upload", {"Content-Type": "application/octet-stream"}, body)
        self.assertEqual(reply.json(), {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})

    @defer.inlineCallbacks
    def test_chunked_request_body(self):
        out = yield raw(
            self.port,
            b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        body = out.partition(b"\r\n\r\n")[2]
        self.assertIn(hashlib.sha256(b"hello world").hexdigest().encode(), body)

    @defer.inlineCallbacks
    def test_expect_100_continue_not_forwarded(self):
        out = yield raw(
            self.port,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nhi",
        )
        self.assertTrue(out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "), out[:80])
        echo = json.loads(out.split(b"\r\n\r\n", 2)[2])
        self.assertEqual(header_values(echo, "expect"), [])
        self.assertEqual(echo["body_length"], 2)

    @defer.inlineCallbacks
    def test_sse_events_arrive_as_sent(self):
        import http.client
        import time

        from twisted.internet.threads import deferToThread

        def read_events():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("GET", "/sse?n=3&every=0.4")
            resp = conn.getresponse()
            start = time.monotonic()
            arrivals = []
            buf = b""
            while len(arrivals) < 3:
                buf += resp.read1(65536)
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    arrivals.append((time.monotonic() - start, event))
            conn.close()
            return resp.getheader("Content-Type"), arrivals

        ctype, arrivals = yield deferToThread(read_events)
        self.assertEqual(ctype, "text/event-stream")
        self.assertEqual([e for _, e in arrivals], [b"data: event 0", b"data: event 1", b"data: event 2"])
        # The first event arrives at once, and each next one about 0.4 s later (not batched).
        self.assertLess(arrivals[0][0], 0.2)
        self.assertGreater(arrivals[1][0], 0.25)
        self.assertGreater(arrivals[2][0] - arrivals[1][0], 0.25)

    @defer.inlineCallbacks
    def test_connections_reused(self):
        before = self.backend_site.connections
        for _ in range(50):
            reply = yield fetch(self.port, "GET", "/echo")
            self.assertEqual(reply.status, 200)
        self.assertLessEqual(self.backend_site.connections - before, 3)

    @defer.inlineCallbacks
    def test_gateway_endpoints_not_forwarded(self):
        reply = yield fetch(self.port, "GET", "/gateway-health")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.get("Content-Type"), "application/json")
        health = reply.json()
        self.assertEqual((health["status"], health["service"]), ("ok", "wighaven-gateway"))
        reply = yield fetch(self.port, "GET", "/_gateway/nothing-here")
        self.assertEqual(reply.status, 404)
        self.assertEqual(self.backend.requests, [])
        reply = yield fetch(self.port, "GET", "/")
        self.assertEqual(reply.status, 200)
        self.assertIn(b"WigHaven Gateway", reply.body)

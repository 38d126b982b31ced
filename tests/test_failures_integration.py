"""Failures over real sockets: unreachable or untrusted backends, timeouts,
backends and clients that go away mid-request, and hostile request heads."""

import time

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.waiting import wait_until
from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import free_port, start_gateway




class UnreachableBackendTests(unittest.TestCase):
    """Every way of not reaching the backend is a 502 with a JSON body."""

    @defer.inlineCallbacks
    def assertBadGateway(self, backend_url, detail_fragment, **settings):
        _, port = yield start_gateway(self, backend_url, UPSTREAM_TIMEOUT="10", **settings)
        reply = yield fetch(port, "GET", "/anything")
        self.assertEqual(reply.status, 502)
        self.assertEqual(reply.get("Content-Type"), "application/json")
        body = reply.json()
        self.assertEqual(body["error"], "bad_gateway")
        self.assertIn(detail_fragment, body["detail"])

    def test_connection_refused(self):
        return self.assertBadGateway("http://127.0.0.1:%d" % free_port(), "refused")

    def test_dns_failure(self):
        return self.assertBadGateway("https://no-such-host.invalid", "resolved")

    @defer.inlineCallbacks
    def test_untrusted_certificate(self):
        _, _, origin = yield start_backend(self, identity="untrusted")
        yield self.assertBadGateway(origin, "TLS")

    @defer.inlineCallbacks
    def test_certificate_for_another_hostname(self):
        _, _, origin = yield start_backend(self, identity="wrong_host")
        yield self.assertBadGateway(origin, "hostname")

    @defer.inlineCallbacks
    def test_without_the_test_ca_the_backend_is_not_trusted(self):
        """Only the system store and BACKEND_CA_BUNDLE count: no CA bundle, no trust."""
        backend, _, origin = yield start_backend(self)
        yield self.assertBadGateway(origin, "TLS", BACKEND_CA_BUNDLE=None)
        self.assertEqual(backend.requests, [])


class StreamFailureTests(unittest.TestCase):
    """Timeouts, and either side leaving in the middle of an exchange."""

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, self.backend_site, origin = yield start_backend(self)
        self.gateway, self.port = yield start_gateway(self, origin, UPSTREAM_TIMEOUT="0.5")

    @defer.inlineCallbacks
    def test_no_response_headers_in_time_is_504(self):
        started = time.monotonic()
        reply = yield fetch(self.port, "GET", "/hang")
        elapsed = time.monotonic() - started
        self.assertEqual(reply.status, 504)
        self.assertEqual(reply.json()["error"], "gateway_timeout")
        self.assertTrue(0.4 < elapsed < 3.0, elapsed)
        # The timed-out upstream connection is closed, not left hanging.
        yield wait_until(lambda: not self.backend_site.open, timeout=2)

    @defer.inlineCallbacks
    def test_slow_stream_has_no_total_time_limit(self):
        """UPSTREAM_TIMEOUT bounds the wait for headers only, not a stream."""
        reply = yield fetch(self.port, "GET", "/sse?n=4&every=0.3")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.body.count(b"data: event"), 4)

    @defer.inlineCallbacks
    def test_backend_dying_mid_body_aborts_client(self):
        for length in (b"1", b"0"):  # with Content-Length, and chunked
            out = yield raw(self.port, b"GET /die?length=" + length + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _, body = out.partition(b"\r\n\r\n")
            self.assertIn(b" 200 ", head.split(b"\r\n")[0])
            if length == b"1":
                self.assertIn(b"Content-Length: 1000000", head)
                self.assertLess(len(body), 1000000)
            else:
                self.assertIn(b"Transfer-Encoding: chunked", head)
                self.assertFalse(body.endswith(b"0\r\n\r\n"), body[-20:])
        health = yield fetch(self.port, "GET", "/gateway-health")
        self.assertGreaterEqual(health.json()["errors"], 2)

    @defer.inlineCallbacks
    def _disconnect_after(self, target, ready):
        """Open a request, wait for C{ready()}, then drop the client socket."""
        import socket

        sock = yield deferToThread(socket.create_connection, ("127.0.0.1", self.port), 5)
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        yield wait_until(ready)
        sock.close()

    @defer.inlineCallbacks
    def test_client_leaving_cancels_waiting_request(self):
        before = len(self.backend.requests)
        yield self._disconnect_after(b"/hang", lambda: len(self.backend.requests) > before)
        self.assertEqual(len(self.backend_site.open), 1)
        waited = yield wait_until(lambda: not self.backend_site.open, timeout=1.0)
        self.assertLess(waited, 1.0)

    @defer.inlineCallbacks
    def test_client_leaving_mid_stream_closes_upstream(self):
        before = len(self.backend.requests)
        yield self._disconnect_after(
            b"/sse?n=1000&every=0.05", lambda: len(self.backend.requests) > before
        )
        waited = yield wait_until(lambda: not self.backend_site.open, timeout=1.0)
        self.assertLess(waited, 1.0)


class HostileInputTests(unittest.TestCase):
    """Broken or oversized request heads: refused, nothing forwarded, service goes on."""

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, origin = yield start_backend(self)
        self.gateway, self.port = yield start_gateway(self, origin)

    @defer.inlineCallbacks
    def assertRefused(self, request, status):
        out = yield raw(self.port, request)
        self.assertTrue(out.startswith(b"HTTP/1.1 %d " % status), out[:80])
        self.assertIn(b"Connection: close", out)
        self.assertEqual(self.backend.requests, [])
        reply = yield fetch(self.port, "GET", "/gateway-health")
        self.assertEqual(reply.status, 200)

    def test_content_length_and_transfer_encoding(self):
        return self.assertRefused(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",
            400,
        )

    def test_malformed_content_length(self):
        return self.assertRefused(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello", 400)

    def test_two_different_content_lengths(self):
        return self.assertRefused(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            400,
        )

    def test_header_block_over_64k(self):
        headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 8000) for i in range(9))
        return self.assertRefused(b"GET /x HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n", 431)

    def test_request_line_over_8k(self):
        return self.assertRefused(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414)

    def test_bad_request_line(self):
        return self.assertRefused(b"NONSENSE\r\n\r\n", 400)

"""Request bodies stream to the backend as they arrive, within MAX_BODY_SIZE."""

import hashlib
import http.client
import socket
import time

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import start_gateway

MiB = 1024 * 1024


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _staged_upload(port, first, rest, chunked, backend_site):
    """
    Send C{first}, wait until the backend has seen body bytes, then send
    C{rest}. Returns (backend saw bytes before the client finished, reply).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("POST", "/upload")
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
    else:
        conn.putheader("Content-Length", str(len(first) + len(rest)))
    conn.endheaders()

    def send(data):
        conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    send(first)
    early = _wait_for(lambda: backend_site.body_bytes > 0)
    send(rest)
    if chunked:
        conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return early, resp.status, body


class StreamingUploadTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, self.backend_site, origin = yield start_backend(self)
        self.gateway, self.port = yield start_gateway(self, origin, MAX_BODY_SIZE=str(16 * MiB))

    @defer.inlineCallbacks
    def assertStreams(self, chunked):
        first, rest = b"a" * MiB, b"b" * (3 * MiB)
        early, status, body = yield deferToThread(
            _staged_upload, self.port, first, rest, chunked, self.backend_site
        )
        self.assertTrue(early, "the backend saw no byte before the client finished")
        self.assertEqual(status, 200)
        import json

        self.assertEqual(
            json.loads(body),
            {"length": 4 * MiB, "sha256": hashlib.sha256(first + rest).hexdigest()},
        )

    def test_content_length_body_streams(self):
        return self.assertStreams(chunked=False)

    def test_chunked_body_streams(self):
        return self.assertStreams(chunked=True)

    @defer.inlineCallbacks
    def test_declared_length_over_limit_refused_before_the_body(self):
        out = yield raw(
            self.port,
            b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
            b"Expect: 100-continue\r\n\r\n" % (17 * MiB),
        )
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:60])
        self.assertNotIn(b"100 Continue", out)
        self.assertEqual(self.backend.requests, [])

    @defer.inlineCallbacks
    def test_accepted_expect_continue_gets_100_then_streams(self):
        def exchange():
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                          b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
                interim = s.recv(100)
                s.sendall(b"hello")
                rest = b""
                while True:
                    data = s.recv(65536)
                    if not data:
                        return interim, rest
                    rest += data

        interim, rest = yield deferToThread(exchange)
        self.assertEqual(interim, b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertIn(b" 200 ", rest.split(b"\r\n")[0])
        self.assertIn(hashlib.sha256(b"hello").hexdigest().encode(), rest)
        expect = [v for n, v in self.backend.requests[0]["headers"] if n.lower() == "expect"]
        self.assertEqual(expect, [])

    @defer.inlineCallbacks
    def test_chunked_body_cut_at_the_limit(self):
        chunk = b"x" * MiB
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
        out = yield raw(
            self.port, b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        )
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:60])
        self.assertLessEqual(self.backend_site.body_bytes, 16 * MiB)
        reply = yield fetch(self.port, "GET", "/gateway-health")
        self.assertEqual(reply.status, 200)

    @defer.inlineCallbacks
    def test_zero_means_unlimited(self):
        _, port = yield start_gateway(self, self.backend.origin, MAX_BODY_SIZE="0")
        body = b"z" * (20 * MiB)
        reply = yield fetch(port, "POST", "/upload", body=body)
        self.assertEqual(reply.json()["length"], len(body))

    @defer.inlineCallbacks
    def test_client_leaving_mid_upload_cancels_upstream(self):
        def half_upload():
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (8 * MiB))
            s.sendall(b"q" * MiB)
            _wait_for(lambda: self.backend_site.body_bytes > 0)
            s.close()

        yield deferToThread(half_upload)
        self.assertGreater(self.backend_site.body_bytes, 0)
        start = time.monotonic()
        while self.backend_site.open and time.monotonic() - start < 2:
            yield deferToThread(time.sleep, 0.02)
        self.assertEqual(self.backend_site.open, [])
        self.assertEqual(self.backend.requests, [])  # the backend never got a whole request


class _EarlyAnswer(Protocol):
    """A backend that answers as soon as a request head is in, body unread (like nginx's `return`)."""

    def connectionMade(self):
        self.closed = defer.Deferred()
        self.factory.connections.append(self)

    def dataReceived(self, data):
        if b"\r\n\r\n" in data and not getattr(self, "answered", False):
            self.answered = True
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nearly\n")

    def connectionLost(self, reason):
        self.closed.callback(None)


def _close_all(connections):
    """Close the backend's side of every connection and wait until each is gone."""
    for connection in connections:
        connection.transport.loseConnection()
    return defer.gatherResults([connection.closed for connection in connections])


class EarlyAnswerTests(unittest.TestCase):
    """The backend answers before the body is in: the client's connection stays usable."""

    @defer.inlineCallbacks
    def test_rest_of_body_dropped_then_next_request_served(self):
        factory = Factory.forProtocol(_EarlyAnswer)
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        # Runs after the gateway's own cleanup: its upstream connections may
        # still be closing on this (the backend's) side.
        self.addCleanup(_close_all, factory.connections)
        _, gw_port = yield start_gateway(
            self, "http://127.0.0.1:%d" % port.getHost().port, BACKEND_CA_BUNDLE=None
        )
        body = b"G" * (4 * MiB)  # holds what looks like a request line: it must stay body
        body = b"GET /gateway-health HTTP/1.1\r\nHost: smuggled\r\n\r\n" + body[60:]

        out = yield raw(
            gw_port,
            b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
            + b"GET /gateway-health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK"), out[:80])
        self.assertIn(b"early\n", out)
        # Exactly one more answer: the real second request, not one smuggled in the body.
        self.assertEqual(out.count(b"HTTP/1.1 "), 2, out)
        self.assertIn(b'"service": "wighaven-gateway"', out)

"""The forwarded answer's head, byte for byte, over real sockets: a scripted
backend writes exact response bytes, a raw client reads exact bytes back.

What the client must get: the backend's end-to-end header lines in the
backend's order and spelling (duplicates where they were), the gateway's
X-Request-ID instead of the backend's, the head the moment it arrives
(before any body), Twisted's framing rule (chunked only for an HTTP/1.1
answer without a length that may have a body), and never a header line
smuggled in by a backend's bare CR.
"""

import socket

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.client import raw, read_head
from tests.support.gateway import start_gateway


class _ScriptedBackend(Protocol):
    """Answers each request head with the factory's next scripted bytes,
    and closes after an answer that says Connection: close."""

    def connectionMade(self):
        self.factory.connections.add(self)
        self._buffer = b""

    def dataReceived(self, data):
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            self.factory.heads.append(head)
            answer = self.factory.answers.pop(0)
            self.transport.write(answer)
            if b"\r\nconnection: close\r\n" in answer.lower():
                self.transport.loseConnection()  # the body ends at the close

    def connectionLost(self, reason):
        self.factory.connections.discard(self)


class ScriptedBackendFactory(Factory):
    protocol = _ScriptedBackend
    noisy = False

    def __init__(self, *answers):
        self.answers = list(answers)
        self.heads = []
        self.connections = set()

    def send_more(self, data):
        for connection in self.connections:
            connection.transport.write(data)


def _head_of(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    return status, lines, body


def _read_head_then(port, request, timeout=5):
    """Send C{request}; (bytes up to the end of the head, the socket)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(request)
    return read_head(s), s


def _read_to_close(s):
    chunks = []
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        s.close()
    return b"".join(chunks)


class ResponseHeadTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def gateway(self, *answers, **settings):
        backend = ScriptedBackendFactory(*answers)
        port = reactor.listenTCP(0, backend, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(
            lambda: [c.transport.abortConnection() for c in list(backend.connections)]
        )
        _, gw_port = yield start_gateway(
            self, "http://127.0.0.1:%d" % port.getHost().port, BACKEND_CA_BUNDLE=None,
            **settings,
        )
        return backend, gw_port

    def get(self, port, method=b"GET", version=b"HTTP/1.1", extra=b""):
        return raw(
            port,
            b"%s /x %s\r\nHost: gw\r\n%sConnection: close\r\n\r\n" % (method, version, extra),
        )

    @defer.inlineCallbacks
    def test_names_keep_their_case_order_and_duplicates(self):
        _, port = yield self.gateway(
            b"HTTP/1.1 200 OK\r\nx-lower: 1\r\nX-MiXeD-Case: 2\r\nx-lower: 3\r\n"
            b"set-cookie: a=1\r\nSet-Cookie: b=2; Path=/\r\nContent-Length: 2\r\n\r\nok"
        )
        status, lines, body = _head_of((yield self.get(port)))
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        backend_lines = [line for line in lines if not line.lower().startswith(
            (b"x-request-id", b"connection"))]
        self.assertEqual(backend_lines, [
            b"x-lower: 1", b"X-MiXeD-Case: 2", b"x-lower: 3", b"set-cookie: a=1",
            b"Set-Cookie: b=2; Path=/", b"Content-Length: 2",
        ])
        self.assertEqual(body, b"ok")

    @defer.inlineCallbacks
    def test_the_backends_request_id_gives_way_to_the_gateways(self):
        _, port = yield self.gateway(
            b"HTTP/1.1 200 OK\r\nx-request-id: from-backend\r\nContent-Length: 0\r\n\r\n"
        )
        _, lines, _ = _head_of((yield self.get(port, extra=b"X-Request-ID: client-id-7\r\n")))
        ids = [line.lower() for line in lines if line.lower().startswith(b"x-request-id:")]
        self.assertEqual(ids, [b"x-request-id: client-id-7"])

    @defer.inlineCallbacks
    def test_the_head_reaches_the_client_before_any_body(self):
        backend, port = yield self.gateway(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
        )
        head, s = yield deferToThread(
            _read_head_then, port, b"GET /events HTTP/1.1\r\nHost: gw\r\n\r\n"
        )
        status, lines, rest = _head_of(head)
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertIn(b"Transfer-Encoding: chunked", lines)
        self.assertEqual(rest, b"")
        backend.send_more(b"data: 1\n\n")
        s.settimeout(5)
        chunk = yield deferToThread(s.recv, 65536)
        self.assertEqual(chunk, b"9\r\ndata: 1\n\n\r\n")
        s.close()

    @defer.inlineCallbacks
    def test_framing_follows_the_method_status_and_version(self):
        _, port = yield self.gateway(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",  # HEAD
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto-the-close",  # HTTP/1.0 client
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto-the-close",  # HTTP/1.1 client
        )
        head = yield self.get(port, method=b"HEAD")
        _, lines, body = _head_of(head)
        self.assertIn(b"Content-Length: 5", lines)
        self.assertNotIn(b"Transfer-Encoding: chunked", lines)
        self.assertEqual(body, b"")
        for expected in (b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified"):
            status, lines, body = _head_of((yield self.get(port)))
            self.assertEqual(status, expected)
            self.assertNotIn(b"Transfer-Encoding: chunked", lines)
            self.assertEqual(body, b"")
        status, lines, body = _head_of((yield self.get(port, version=b"HTTP/1.0")))
        self.assertEqual(status, b"HTTP/1.0 200 OK")
        self.assertNotIn(b"Transfer-Encoding: chunked", lines)
        self.assertEqual(body, b"to-the-close")
        _, lines, body = _head_of((yield self.get(port)))
        self.assertIn(b"Transfer-Encoding: chunked", lines)
        self.assertEqual(body, b"c\r\nto-the-close\r\n0\r\n\r\n")

    @defer.inlineCallbacks
    def test_the_reason_phrase_is_the_backends_even_empty(self):
        _, port = yield self.gateway(
            b"HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
        )
        status, _, _ = _head_of((yield self.get(port)))
        self.assertEqual(status, b"HTTP/1.1 404 ")
        status, _, _ = _head_of((yield self.get(port)))
        self.assertEqual(status, b"HTTP/1.1 200 Fine Thanks")

    @defer.inlineCallbacks
    def test_a_bare_cr_in_a_backend_value_never_splits_the_head(self):
        _, port = yield self.gateway(
            b"HTTP/1.1 200 OK\r\nX-Evil: a\rSet-Cookie: stolen=1\r\nContent-Length: 0\r\n\r\n"
        )
        status, lines, _ = _head_of((yield self.get(port)))
        self.assertEqual(status, b"HTTP/1.1 502 Bad Gateway")
        self.assertFalse([line for line in lines if b"stolen" in line])

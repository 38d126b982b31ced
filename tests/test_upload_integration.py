"""Request bodies stream to the backend as they arrive, within MAX_BODY_SIZE."""

import gc
import hashlib
import http.client
import socket
import threading
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import start_gateway
from tests.support.waiting import wait_until
from wighaven.proxy.transport import FastClient, FastServer

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
        # The cut request's upstream connection closes; only then has every
        # byte that will ever reach the backend arrived.
        yield wait_until(lambda: not self.backend_site.open, timeout=5)
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
        self.assertEqual(self.backend_site.open, set())
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


@defer.inlineCallbacks
def _gateway_before(testcase, backend_protocol, **settings):
    """
    A plain-http backend speaking C{backend_protocol} (which appends itself
    to its factory's C{connections}) and an in-process gateway in front of
    it. Fires with (the backend's factory, the gateway's port).
    """
    factory = Factory.forProtocol(backend_protocol)
    factory.connections = []
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    # Runs after the gateway's own cleanup: its upstream connections may
    # still be closing on this (the backend's) side.
    testcase.addCleanup(_close_all, factory.connections)
    _, gw_port = yield start_gateway(
        testcase, "http://127.0.0.1:%d" % port.getHost().port, BACKEND_CA_BUNDLE=None,
        **settings,
    )
    return factory, gw_port


class EarlyAnswerTests(unittest.TestCase):
    """The backend answers before the body is in: the client's connection stays usable."""

    @defer.inlineCallbacks
    def test_rest_of_body_dropped_then_next_request_served(self):
        _, gw_port = yield _gateway_before(self, _EarlyAnswer)
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


class EarlyAnswerOverLimitTests(unittest.TestCase):
    """A body passing MAX_BODY_SIZE after the answer was sent gets no second answer."""

    @defer.inlineCallbacks
    def test_no_413_after_a_complete_answer(self):
        _, gw_port = yield _gateway_before(self, _EarlyAnswer, MAX_BODY_SIZE="1000")
        out = yield deferToThread(_upload_after_answer, gw_port)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK"), out[:80])
        self.assertEqual(out.count(b"HTTP/1.1 "), 1, out)
        self.assertNotIn(b"413", out)


def _upload_after_answer(port):
    """A chunked upload whose first chunk is answered; the rest passes MAX_BODY_SIZE."""
    chunk = b"400\r\n" + b"c" * 1024 + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        out = b""
        while b"early\n" not in out:
            data = s.recv(65536)
            if not data:
                return out
            out += data
        try:
            s.sendall(chunk * 4 + b"0\r\n\r\n")
            while True:
                data = s.recv(65536)
                if not data:
                    return out
                out += data
        except OSError:
            return out


class _StallingEarlyAnswer(_EarlyAnswer):
    """
    A backend that stops reading as soon as a request head is in, without
    reading the body, and answers 200 with a small body when the test says
    so (L{answer}: like nginx's `return`), in one write; it reads again when
    the test says so (L{read_again}). Every body byte that reaches it after
    the head is counted: what the gateway forwarded of the body.
    """

    head_in = False
    body_bytes = 0

    def connectionMade(self):
        super().connectionMade()
        self._head = b""

    def dataReceived(self, data):
        if self.head_in:
            self.body_bytes += len(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end >= 0:
            self.head_in = True
            self.body_bytes = len(self._head) - (end + 4)
            self.transport.pauseProducing()

    def answer(self):
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nearly\n")

    def read_again(self):
        self.transport.resumeProducing()


class _SlowUploader(Protocol):
    """
    A client that sends a request C{head}, then the C{pieces} of its body one
    every C{pause} seconds, then C{after} (its next request); it keeps what
    it receives. Its writes never block: what the gateway does not read yet
    waits in its transport.
    """

    def __init__(self, head, pieces, pause, after):
        self._head = head
        self._pieces = list(pieces)
        self._pause = pause
        self._after = after
        self._later = None
        self.received = b""
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self._head)
        self._send_next()

    def _send_next(self):
        self._later = None
        if self._pieces:
            self.transport.write(self._pieces.pop(0))
            self._later = reactor.callLater(self._pause, self._send_next)
        else:
            self.transport.write(self._after)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        if self._later is not None and self._later.active():
            self._later.cancel()
        self.closed.callback(None)


def _gateway_side(backend):
    """The gateway's end (a L{FastClient}) of the connection C{backend} accepted."""
    peer = backend.transport.getPeer()
    ends = [
        t for t in reactor.getReaders() + reactor.getWriters()
        if isinstance(t, FastClient) and t.getHost().port == peer.port
    ]
    assert ends, "the gateway's end of the backend connection is not in the reactor"
    return ends[0]


class _WritesFrom:
    """Counts the bytes written to C{transport} from now on (a spy on its write methods)."""

    def __init__(self, testcase, transport):
        self.size = 0
        for name in ("write", "writeSequence"):
            original = getattr(transport, name)

            def spy(data, _original=original, _sequence=name == "writeSequence"):
                self.size += sum(map(len, data)) if _sequence else len(data)
                return _original(data)

            setattr(transport, name, spy)
            testcase.addCleanup(delattr, transport, name)


def _abort(transport, closed):
    """Test cleanup: drop a connection still open; wait for its end (C{closed})."""
    if transport.connected:
        transport.abortConnection()
    return wait_until(closed, timeout=5)


class EarlyAnswerBodyDroppedTests(unittest.TestCase):
    """
    When the backend's response is complete while the client's body is still
    arriving, the gateway stops sending the body upstream (the backend has
    answered in full: the rest is of no use to it), but still reads the
    client's rest and drops it, so the client's connection stays usable for
    its next request.
    """

    @defer.inlineCallbacks
    def answer_while_body_stuck(self):
        """
        A client uploads 16 MiB slowly (1 MiB pieces, 50 ms apart), then asks
        /gateway-health on the same connection. The backend takes the head,
        then reads nothing until the gateway holds more of the body than it
        can send (its upstream write buffer over the limit, the client
        paused: the kernel's buffers are full), and answers then, in full.
        So the answer comes long before the body ends, and at the moment
        when a gateway that went on writing the body would send all of it
        (the backend reading again makes the gateway resume its producer).
        The backend reads again once the client has the whole answer.

        Fires with (the client, the backend, the gateway's end of the
        upstream connection, the bytes written to it after the client had
        the answer) once the gateway has closed the client's connection.
        """
        factory, gw_port = yield _gateway_before(self, _StallingEarlyAnswer)
        piece = b"u" * MiB
        client = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", gw_port),
            _SlowUploader(
                b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (16 * MiB),
                [piece] * 16,
                0.05,
                b"GET /gateway-health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            ),
        )
        self.addCleanup(_abort, client.transport, lambda: client.closed.called)
        yield wait_until(lambda: factory.connections and factory.connections[0].head_in, timeout=10)
        backend = factory.connections[0]
        upstream = _gateway_side(backend)
        self.addCleanup(_abort, upstream, lambda: not upstream.connected)
        yield wait_until(
            lambda: upstream.producerPaused and upstream in reactor.getWriters(), timeout=10
        )
        backend.answer()
        yield wait_until(lambda: b"early\n" in client.received, timeout=10)
        after_answer = _WritesFrom(self, upstream)
        backend.read_again()
        yield wait_until(lambda: client.closed.called, timeout=20)
        self.assertEqual(len(factory.connections), 1)
        return client, backend, upstream, after_answer.size

    @defer.inlineCallbacks
    def test_rest_of_body_not_forwarded_connection_reused(self):
        """
        The client gets the backend's 200, then the answer to its next
        request on the same connection (the rest of the body was read, not
        taken for a request). Not one more byte of the body went upstream
        once the answer was in: the backend gets only what was on its way
        then (kernel buffers, a few MiB at most), not the 16 MiB.
        """
        client, backend, _, written_after = yield self.answer_while_body_stuck()
        out = client.received
        first, sep, second = out.partition(b"early\n")
        self.assertTrue(first.startswith(b"HTTP/1.1 200 OK\r\n"), out[:200])
        self.assertEqual(sep, b"early\n")
        self.assertTrue(second.startswith(b"HTTP/1.1 200 "), out[:400])
        self.assertIn(b'"service": "wighaven-gateway"', second)
        self.assertEqual(out.count(b"HTTP/1.1 "), 2, out[:400])
        self.assertEqual(written_after, 0)
        yield deferLater(reactor, 0.2, lambda: None)  # let what was on its way arrive
        self.assertLess(backend.body_bytes, 8 * MiB)

    @defer.inlineCallbacks
    def test_upstream_connection_closed_after_early_answer(self):
        """
        The gateway closes the upstream connection it stopped sending the
        body on: the backend must not be left with an open connection the
        gateway will never use again.
        """
        _, backend, _, _ = yield self.answer_while_body_stuck()
        yield wait_until(lambda: backend.closed.called, timeout=5)



def _send_until(port, stop, chunk=32 * 1024, every=0.02):
    """
    Send an upload's head, then a piece of its 100 MiB body every C{every}
    seconds until C{stop} (a threading.Event) is set; then hang up. The
    pieces are small, so the hang-up reaches the gateway's side of the
    connection even while the gateway is not reading it.
    """
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (100 * MiB))
    sent = 0
    deadline = time.monotonic() + 30
    while not stop.is_set() and time.monotonic() < deadline:
        sent += s.send(b"b" * chunk)
        time.sleep(every)
    s.close()
    return sent


def _held_back_clients():
    """The gateway's accepted connections whose reading is stopped now."""
    return [t for t in gc.get_objects()
            if isinstance(t, FastServer) and t.connected and t._read_stopped]


class HangupDuringBackpressureTests(unittest.TestCase):
    """A client that leaves while its upload is held back is noticed at once."""

    @defer.inlineCallbacks
    def test_upstream_request_dropped_when_the_client_hangs_up(self):
        factory, gw_port = yield _gateway_before(self, _StallingEarlyAnswer)
        stop = threading.Event()
        sending = deferToThread(_send_until, gw_port, stop)
        # The backend reads nothing: the upload is held back once the kernel
        # buffers between them are full (a few seconds at most).
        yield wait_until(lambda: _held_back_clients(), timeout=20)
        [backend] = factory.connections
        upstream = _gateway_side(backend)  # the gateway's end, paused by the backend
        stop.set()
        sent = yield sending
        self.assertLess(sent, 100 * MiB)
        hung_up = time.monotonic()
        # The stalled backend itself reads nothing more, so the gateway's
        # side of that connection is where the give-up shows.
        yield wait_until(lambda: not upstream.connected, timeout=5)
        self.assertLess(time.monotonic() - hung_up, 1.0)


class _AnswersOnceRead(_StallingEarlyAnswer):
    """Stalls at the head like its parent; once let read, answers when the whole body is in."""

    expected = 64 * MiB  # far more than the kernel buffers between the two can hold

    def dataReceived(self, data):
        super().dataReceived(data)
        if self.head_in and self.body_bytes >= self.expected and not getattr(self, "done", False):
            self.done = True
            self.answer()


def _upload_then_pipelined(port, size):
    """An upload of C{size} bytes with a second request pipelined behind it; all read until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size
                  + b"u" * size
                  + b"GET /gateway-health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        out = b""
        while True:
            data = s.recv(65536)
            if not data:
                return out
            out += data


class PipelinedAfterBackpressureTests(unittest.TestCase):
    """
    The pause for upload backpressure and the pause for pipelining act on the
    same client transport: once the upload is through, the request behind it
    is read and answered (the transport is not left paused).
    """

    @defer.inlineCallbacks
    def test_request_behind_a_held_back_upload_is_answered(self):
        factory, gw_port = yield _gateway_before(self, _AnswersOnceRead)
        talking = deferToThread(_upload_then_pipelined, gw_port, _AnswersOnceRead.expected)
        yield wait_until(lambda: _held_back_clients(), timeout=10)
        [backend] = factory.connections
        backend.read_again()
        out = yield talking
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK"), out[:80])
        self.assertIn(b"early\n", out)
        self.assertEqual(out.count(b"HTTP/1.1 200 OK"), 2, out[-300:])
        self.assertIn(b'"service": "wighaven-gateway"', out)

"""Tests for L{wighaven.proxy.upstream_protocol}: the httptools client protocol
inside Twisted's HTTPConnectionPool.

Unit tests drive the protocol through a StringTransport, feeding responses
whole and one byte at a time, and check exactly what the sink heard and
what was written; the pool's contract is checked on a real
HTTPConnectionPool over a MemoryReactorClock. Integration tests run over
real sockets on 127.0.0.1, against the project's plain and TLS test
backends and a full-duplex backend that answers while it reads.
"""

import hashlib
import json

from httptools import HttpRequestParser
from twisted.internet import endpoints, reactor, ssl
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import URI, Agent
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from wighaven.proxy.tls import BackendTLSPolicy
from wighaven.proxy.transport import for_connecting
from wighaven.proxy.upstream_protocol import (
    BAD_RESPONSE, CLOSED_BEFORE_HEAD, CLOSED_MID_BODY, UPLOAD_FAILED,
    IResponseSink, UpstreamFactory, UpstreamProtocol, ends_at_close, new_connection,
    request_head, take_idle, upstream_pool,
)

from .support.backend import start_backend
from .support.certs import pki
from .support.fakes import RecordingProducer
from .support.waiting import wait_until

HOST = [(b"Host", [b"backend"])]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_HEAD = ("head", 200, b"OK", [(b"Content-Length", b"2")])  # what the sink hears of OK
KEY = (b"http", b"backend", 80)


@implementer(IResponseSink)
class Recorder:
    """A sink that keeps what it hears; C{ended} fires at the exchange's end,
    C{headed} at its head."""

    def __init__(self):
        self.events = []
        self.headed = Deferred()
        self.ended = Deferred()

    def response_head(self, status, reason, headers):
        self.events.append(("head", status, reason, headers))
        self.headed.callback(status)

    def response_body(self, data):
        self.events.append(("body", data))

    def response_done(self):
        self.events.append(("done",))
        self.ended.callback("done")

    def response_failed(self, reason):
        self.events.append(("failed", reason))
        self.ended.callback(reason)

    def merged(self):
        """The events with consecutive body pieces joined."""
        merged = []
        for event in self.events:
            if event[0] == "body" and merged and merged[-1][0] == "body":
                merged[-1] = ("body", merged[-1][1] + event[1])
            else:
                merged.append(event)
        return merged

    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "body")


@implementer(IBodyProducer)
class Body(RecordingProducer):
    """A request body the test writes by hand through C{consumer}; records pauses."""

    def __init__(self, length=UNKNOWN_LENGTH, first=()):
        super().__init__()
        self.length = length
        self.first = first  # written at once by startProducing
        self.consumer = None
        self.done = Deferred()

    def startProducing(self, consumer):
        self.consumer = consumer
        for piece in self.first:
            consumer.write(piece)
        return self.done


def connected():
    """(protocol, transport, connections given back) over a StringTransport."""
    given_back = []
    protocol = UpstreamProtocol(given_back.append)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport, given_back


def lose(protocol, clean=True):
    protocol.connectionLost(Failure(ConnectionDone() if clean else ConnectionLost()))


def exchange(response, method=b"GET", body=None, bytewise=False):
    """Send one request on a new connection, feed it C{response}; (sink,
    protocol, transport, given back)."""
    protocol, transport, given_back = connected()
    sink = Recorder()
    protocol.send(method, b"/", HOST, body, sink)
    feed(protocol, response, bytewise)
    return sink, protocol, transport, given_back


def feed(protocol, data, bytewise=False):
    if bytewise:
        for i in range(len(data)):
            protocol.dataReceived(data[i:i + 1])
    else:
        protocol.dataReceived(data)


def reused(protocol, transport, given_back) -> bool:
    """Given back once, idle, and still open."""
    return given_back == [protocol] and protocol.state == "QUIESCENT" and not transport.disconnecting


def closed(protocol, transport, given_back) -> bool:
    """Never given back, and closed (or closing)."""
    return given_back == [] and protocol.state != "QUIESCENT" and transport.disconnecting


class RequestTests(SynchronousTestCase):
    """What send() writes."""

    def test_head_is_written_at_once_as_given(self):
        protocol, transport, _ = connected()
        headers = [(b"Host", [b"backend:8080"]), (b"X-Twice", [b"1", b"2"]), (b"x-lower", [b"v"])]
        protocol.send(b"GET", b"/a?", headers, None, Recorder())
        self.assertEqual(
            transport.value(),
            b"GET /a? HTTP/1.1\r\nHost: backend:8080\r\nX-Twice: 1\r\nX-Twice: 2\r\n"
            b"x-lower: v\r\n\r\n",
        )
        self.assertEqual(protocol.state, "BUSY")

    def test_post_and_put_without_body_say_content_length_0(self):
        zero = b"Content-Length: 0\r\n"
        for method, framing in ((b"POST", zero), (b"PUT", zero), (b"DELETE", b""), (b"OPTIONS", b"")):
            protocol, transport, _ = connected()
            protocol.send(method, b"/", HOST, None, Recorder())
            expected = method + b" / HTTP/1.1\r\nHost: backend\r\n" + framing + b"\r\n"
            self.assertEqual(transport.value(), expected)

    def test_known_length_body(self):
        """Content-Length, the bytes as written, the producer registered on
        the transport while it writes and unregistered once done."""
        protocol, transport, _ = connected()
        body = Body(5, [b"ab"])
        protocol.send(b"POST", b"/up", HOST, body, Recorder())
        self.assertIsNotNone(transport.producer)
        self.assertTrue(transport.streaming)
        body.consumer.write(b"cde")
        body.done.callback(None)
        self.assertEqual(
            transport.value(), b"POST /up HTTP/1.1\r\nHost: backend\r\nContent-Length: 5\r\n\r\nabcde"
        )
        self.assertIsNone(transport.producer)

    def test_unknown_length_is_sent_chunked(self):
        """Each write is a chunk (empty ones skipped: an empty chunk would end
        the body), then the terminator."""
        protocol, transport, _ = connected()
        body = Body(UNKNOWN_LENGTH, [b"abc"])
        protocol.send(b"POST", b"/", HOST, body, Recorder())
        body.consumer.write(b"")
        body.consumer.write(b"0123456789abcdef!")
        body.done.callback(None)
        self.assertEqual(
            transport.value(),
            b"POST / HTTP/1.1\r\nHost: backend\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n11\r\n0123456789abcdef!\r\n0\r\n\r\n",
        )
        self.assertIsNone(transport.producer)

    def test_cr_or_lf_in_a_header_is_refused(self):
        for headers in ([(b"X", [b"a\r\nInjected: 1"])], [(b"X", [b"a\nb"])], [(b"X", [b"a\rb"])],
                        [(b"X\r\nY", [b"1"])]):
            protocol, transport, _ = connected()
            self.assertRaises(ValueError, protocol.send, b"GET", b"/", headers, None, Recorder())
            self.assertEqual((transport.value(), protocol.state), (b"", "QUIESCENT"))
        self.assertRaises(ValueError, request_head, b"GET", b"/a HTTP/1.1\r\nX: y", [], None)

    def test_more_bytes_than_the_length_fail_the_upload(self):
        """The extra bytes are never written (they would be a next request)."""
        protocol, transport, _ = connected()
        body = Body(3, [b"ab"])
        sink = Recorder()
        protocol.send(b"POST", b"/", HOST, body, sink)
        body.consumer.write(b"cd")
        body.consumer.write(b"more")
        self.assertTrue(transport.value().endswith(b"\r\n\r\nab"))
        self.assertEqual(sink.events, [("failed", UPLOAD_FAILED)])
        self.assertEqual(body.calls, ["stop"])
        self.assertTrue(transport.disconnected)  # aborted

    def test_fewer_bytes_than_the_length_fail_the_upload(self):
        protocol, transport, _ = connected()
        body = Body(3, [b"ab"])
        sink = Recorder()
        protocol.send(b"POST", b"/", HOST, body, sink)
        body.done.callback(None)
        self.assertEqual(sink.events, [("failed", UPLOAD_FAILED)])
        self.assertTrue(transport.disconnected)

    def test_a_failing_producer_fails_the_upload(self):
        protocol, transport, _ = connected()
        body = Body(10)
        sink = Recorder()
        protocol.send(b"POST", b"/", HOST, body, sink)
        body.done.errback(Failure(RuntimeError("client gone")))
        self.assertEqual(sink.events, [("failed", UPLOAD_FAILED)])
        self.assertTrue(transport.disconnected)

    def test_a_slow_backend_pauses_the_body(self):
        """The transport pauses and resumes the body through what it has
        registered; once the body is done, nothing reaches it."""
        protocol, transport, _ = connected()
        body = Body(UNKNOWN_LENGTH)
        protocol.send(b"POST", b"/", HOST, body, Recorder())
        transport.producer.pauseProducing()
        transport.producer.resumeProducing()
        self.assertEqual(body.calls, ["pause", "resume"])
        registered = transport.producer
        body.done.callback(None)
        registered.pauseProducing()
        self.assertEqual(body.calls, ["pause", "resume"])

    def test_sending_while_busy_is_a_bug(self):
        protocol, _, _ = connected()
        protocol.send(b"GET", b"/", HOST, None, Recorder())
        self.assertRaises(RuntimeError, protocol.send, b"GET", b"/", HOST, None, Recorder())

    def test_sending_on_a_closed_connection_fails_before_head(self):
        """At once: the caller may send again on a new connection."""
        protocol, transport, _ = connected()
        lose(protocol)
        sink = Recorder()
        protocol.send(b"GET", b"/", HOST, None, sink)
        self.assertEqual(sink.events, [("failed", CLOSED_BEFORE_HEAD)])
        self.assertEqual(transport.value(), b"")


class ResponseTests(SynchronousTestCase):
    """What the sink hears, fed whole and one byte at a time."""

    def check(self, response, expected, method=b"GET"):
        """The sink hears C{expected} however C{response} arrives; returns
        the last (sink, protocol, transport, given back)."""
        for bytewise in (False, True):
            result = exchange(response, method, bytewise=bytewise)
            self.assertEqual(result[0].merged(), expected, "bytewise" if bytewise else "whole")
        return result

    def test_head_and_body(self):
        result = self.check(OK, [OK_HEAD, ("body", b"ok"), ("done",)])
        self.assertTrue(reused(*result[1:]))

    def test_the_head_arrives_before_the_body(self):
        protocol, _, _ = connected()
        sink = Recorder()
        protocol.send(b"GET", b"/", HOST, None, sink)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        self.assertEqual(sink.events, [("head", 200, b"OK", [(b"Content-Length", b"5")])])
        protocol.dataReceived(b"abc")
        self.assertEqual(sink.events[1:], [("body", b"abc")])

    def test_headers_as_received(self):
        """Names as sent, duplicates apart and in order, the connection's own
        headers included; the reason as sent, or empty."""
        head = (b"HTTP/1.1 404 Not Found Here\r\nSet-Cookie: a=1\r\nconnection: X-Foo\r\n"
                b"X-Foo: bar\r\nset-cookie: b=2, c=3\r\nContent-Length: 0\r\n\r\n")
        headers = [(b"Set-Cookie", b"a=1"), (b"connection", b"X-Foo"), (b"X-Foo", b"bar"),
                   (b"set-cookie", b"b=2, c=3"), (b"Content-Length", b"0")]
        self.check(head, [("head", 404, b"Not Found Here", headers), ("done",)])
        self.check(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
                   [("head", 200, b"", [(b"Content-Length", b"0")]), ("done",)])

    def test_chunked_is_decoded_and_trailers_dropped(self):
        response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        result = self.check(response, [("head", 200, b"OK", [(b"Transfer-Encoding", b"chunked")]),
                                       ("body", b"hello world"), ("done",)])
        self.assertTrue(reused(*result[1:]))

    def test_content_length_beside_transfer_encoding_is_refused(self):
        """llhttp refuses it, whichever comes first (RFC 9112 6.3): a bad
        response, the connection aborted."""
        for framing in (b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                        b"Content-Length: 3\r\nContent-Length: 4\r\n"):
            result = self.check(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n3\r\nabc\r\n0\r\n\r\n",
                                [("failed", BAD_RESPONSE)])
            self.assertTrue(closed(*result[1:]))
            self.assertTrue(result[2].disconnected)

    def test_bad_framing_after_the_head(self):
        result = self.check(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                            [("head", 200, b"OK", [(b"Transfer-Encoding", b"chunked")]),
                             ("failed", BAD_RESPONSE)])
        self.assertTrue(closed(*result[1:]))

    def test_a_head_response_has_no_body(self):
        """Done at its head, whatever Content-Length says, and the
        connection serves the next request."""
        for name, value in ((b"Content-Length", b"1234"), (b"Transfer-Encoding", b"chunked")):
            result = self.check(b"HTTP/1.1 200 OK\r\n%s: %s\r\n\r\n" % (name, value),
                                [("head", 200, b"OK", [(name, value)]), ("done",)], method=b"HEAD")
            sink, protocol, transport, given_back = result
            self.assertTrue(reused(protocol, transport, given_back))
            again = Recorder()
            protocol.send(b"GET", b"/", HOST, None, again)
            protocol.dataReceived(OK)
            self.assertEqual(again.merged()[1:], [("body", b"ok"), ("done",)])

    def test_a_body_after_a_head_response_is_not_reused(self):
        result = exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"HEAD")
        self.assertEqual(result[0].merged(), [OK_HEAD, ("done",)])
        self.assertTrue(closed(*result[1:]))

    def test_a_head_response_read_to_the_close_is_not_reused(self):
        """Without a length llhttp would wait for the close: the connection
        is not trusted for another request."""
        result = exchange(b"HTTP/1.1 200 OK\r\n\r\n", b"HEAD")
        self.assertEqual(result[0].merged(), [("head", 200, b"OK", []), ("done",)])
        self.assertTrue(closed(*result[1:]))

    def test_204_and_304_have_no_body(self):
        for status in (b"204 No Content", b"304 Not Modified"):
            response = b"HTTP/1.1 " + status + b"\r\nContent-Length: 5\r\n\r\n"
            head = ("head", int(status[:3]), status[4:], [(b"Content-Length", b"5")])
            sink, protocol, transport, given_back = self.check(response, [head, ("done",)])
            self.assertTrue(reused(protocol, transport, given_back))
            again = Recorder()
            protocol.send(b"GET", b"/", HOST, None, again)
            protocol.dataReceived(OK)
            self.assertEqual(again.merged()[1:], [("body", b"ok"), ("done",)])

    def test_interim_answers_are_dropped(self):
        response = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK
        result = self.check(response, [OK_HEAD, ("body", b"ok"), ("done",)])
        self.assertTrue(reused(*result[1:]))

    def test_101_makes_a_tunnel(self):
        """The head, then the bytes after it and every later byte as they
        are; the close ends it; never reused."""
        head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        headers = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]
        for bytewise in (False, True):
            sink, protocol, transport, given_back = exchange(head + b"\x81\x02hi", bytewise=bytewise)
            protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
            self.assertEqual(sink.merged(), [("head", 101, b"Switching Protocols", headers),
                                             ("body", b"\x81\x02hiHTTP/1.1 200 OK\r\n\r\n")])
            self.assertEqual(protocol.state, "UPGRADED")
            protocol.pause_reading()
            self.assertEqual(transport.producerState, "paused")
            protocol.resume_reading()
            self.assertRaises(RuntimeError, protocol.send, b"GET", b"/", HOST, None, Recorder())
            lose(protocol)
            self.assertEqual(sink.events[-1], ("done",))
            self.assertEqual(given_back, [])
        sink, protocol, _, _ = exchange(head)
        lose(protocol, clean=False)
        self.assertEqual(sink.merged(), [("head", 101, b"Switching Protocols", headers),
                                         ("failed", CLOSED_MID_BODY)])

    def test_101_without_its_upgrade_headers_is_bad(self):
        """RFC 9110 7.8: a 101 names the protocol it switches to, in Upgrade
        and Connection; without them it is a bad response."""
        for headers in (b"", b"Upgrade: websocket\r\n"):
            result = self.check(b"HTTP/1.1 101 Switching Protocols\r\n" + headers + b"\r\nxyz",
                                [("failed", BAD_RESPONSE)])
            self.assertTrue(closed(*result[1:]))

    def test_a_body_delimited_by_the_close(self):
        """Done at a clean close, cut at a reset; never reused."""
        for response in (b"HTTP/1.1 200 OK\r\n\r\nuntil", b"HTTP/1.0 200 OK\r\n\r\nuntil",
                         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nuntil"):
            for clean, end in ((True, ("done",)), (False, ("failed", CLOSED_MID_BODY))):
                sink, protocol, transport, given_back = exchange(response)
                protocol.dataReceived(b" close")
                lose(protocol, clean)
                self.assertEqual(sink.merged()[1:], [("body", b"until close"), end], response)
                self.assertEqual(given_back, [])

    def test_a_close_before_the_head(self):
        for partial in (b"", b"HTTP/1.1 200 OK\r\nContent-"):
            sink, protocol, _, given_back = exchange(partial)
            lose(protocol)
            self.assertEqual((sink.events, given_back), ([("failed", CLOSED_BEFORE_HEAD)], []))
            self.assertEqual(protocol.state, "CLOSED")

    def test_a_close_mid_body(self):
        for response in (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
                         b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n"):
            sink, protocol, _, _ = exchange(response)
            lose(protocol)
            self.assertEqual(sink.merged()[1:], [("body", b"ab"), ("failed", CLOSED_MID_BODY)])

    def test_ends_at_close(self):
        self.assertTrue(ends_at_close([]))
        self.assertTrue(ends_at_close([(b"Transfer-Encoding", b"chunked, gzip")]))
        self.assertFalse(ends_at_close([(b"content-length", b"0")]))
        self.assertFalse(ends_at_close([(b"Transfer-Encoding", b"gzip"),
                                        (b"transfer-encoding", b" Chunked ")]))


class ReuseTests(SynchronousTestCase):
    """When the connection goes back to the pool, and when it does not."""

    def test_given_back_once_before_the_sink_hears_done(self):
        """So that the sink's next request can take it at once."""
        protocol, transport, _ = connected()
        order = []

        class Sink(Recorder):
            def response_done(self):
                order.append(("done", protocol.state))

        protocol._quiescent_callback = lambda p: order.append(("given back", p.state))
        protocol.send(b"GET", b"/", HOST, None, Sink())
        protocol.dataReceived(OK)
        self.assertEqual(order, [("given back", "QUIESCENT"), ("done", "QUIESCENT")])

    def test_the_next_request_may_be_sent_from_response_done(self):
        protocol, transport, given_back = connected()

        class Again(Recorder):
            def response_done(self):
                protocol.send(b"GET", b"/2", HOST, None, second)

        second = Recorder()
        protocol.send(b"GET", b"/1", HOST, None, Again())
        protocol.dataReceived(OK)
        self.assertTrue(transport.value().endswith(b"GET /2 HTTP/1.1\r\nHost: backend\r\n\r\n"))
        protocol.dataReceived(OK)
        self.assertEqual(second.merged()[1:], [("body", b"ok"), ("done",)])
        self.assertEqual(given_back, [protocol, protocol])

    def test_not_reused_without_keep_alive(self):
        for response in (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                         b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"):
            sink, protocol, transport, given_back = exchange(response)
            self.assertEqual(sink.merged()[1:], [("body", b"ok"), ("done",)])
            self.assertTrue(closed(protocol, transport, given_back))
            self.assertFalse(transport.disconnected)  # a clean close
        result = exchange(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(reused(*result[1:]))

    def test_a_response_complete_before_its_upload_closes_the_connection(self):
        """Done for the sink; the body stopped and cut off (its bytes may
        never leave); later writes go nowhere."""
        protocol, transport, given_back = connected()
        body = Body(100, [b"x" * 10])
        sink = Recorder()
        protocol.send(b"POST", b"/", HOST, body, sink)
        protocol.dataReceived(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(sink.events,
                         [("head", 413, b"Too Large", [(b"Content-Length", b"0")]), ("done",)])
        self.assertEqual(body.calls, ["stop"])
        self.assertTrue(closed(protocol, transport, given_back))
        self.assertTrue(transport.disconnected)
        self.assertIsNone(transport.producer)
        written = transport.value()
        body.consumer.write(b"late")
        body.done.callback(None)
        self.assertEqual(transport.value(), written)

    def test_full_duplex(self):
        """The head and body pieces reach the sink while the upload goes on;
        an exchange whose upload then ends before its response is reused."""
        protocol, transport, given_back = connected()
        body = Body(UNKNOWN_LENGTH, [b"first"])
        sink = Recorder()
        protocol.send(b"POST", b"/", HOST, body, sink)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        self.assertEqual(sink.merged()[1:], [("body", b"first")])
        body.consumer.write(b"second")
        body.done.callback(None)
        self.assertTrue(transport.value().endswith(b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"))
        protocol.dataReceived(b"6\r\nsecond\r\n0\r\n\r\n")
        self.assertEqual(sink.merged()[1:], [("body", b"firstsecond"), ("done",)])
        self.assertTrue(reused(protocol, transport, given_back))

    def test_bytes_on_an_idle_connection_make_it_unusable(self):
        sink, protocol, transport, given_back = exchange(OK)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(protocol.state, "CLOSING")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(sink.events[-1], ("done",))

    def test_bytes_after_the_response_make_it_unusable(self):
        """A second response, its start, or garbage, in the same read."""
        for extra in (b"HT", OK, b"\x00garbage"):
            sink, protocol, transport, given_back = exchange(OK + extra)
            self.assertEqual(sink.merged()[1:], [("body", b"ok"), ("done",)], extra)
            self.assertTrue(closed(protocol, transport, given_back), extra)

    def test_a_paused_connection_is_resumed_before_it_is_given_back(self):
        protocol, transport, given_back = connected()
        protocol.send(b"GET", b"/", HOST, None, Recorder())
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no")
        protocol.pause_reading()
        self.assertEqual(transport.producerState, "paused")
        protocol.dataReceived(b"k")
        self.assertEqual(transport.producerState, "producing")
        self.assertTrue(reused(protocol, transport, given_back))

    def test_pausing_outside_an_exchange_does_nothing(self):
        protocol, transport, _ = connected()
        protocol.pause_reading()
        self.assertEqual(transport.producerState, "producing")
        _, protocol, transport, _ = exchange(OK)
        protocol.pause_reading()
        protocol.resume_reading()
        self.assertEqual(transport.producerState, "producing")

    def test_abort(self):
        """Closed at once; the sink hears nothing more; the Deferred fires
        when the connection is gone (at once if it is)."""
        protocol, transport, given_back = connected()
        body = Body(10)
        sink = Recorder()
        protocol.send(b"POST", b"/", HOST, body, sink)
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        lost = protocol.abort()
        self.assertTrue(transport.disconnected)
        self.assertEqual(body.calls, ["stop"])
        self.assertNoResult(lost)
        protocol.dataReceived(b"cde")
        lose(protocol, clean=False)
        self.successResultOf(lost)
        self.assertEqual(sink.merged()[1:], [("body", b"ab")])
        self.assertEqual(given_back, [])
        self.successResultOf(protocol.abort())

    def test_abort_from_inside_the_sink(self):
        protocol, transport, _ = connected()

        class Aborting(Recorder):
            def response_head(self, *args):
                super().response_head(*args)
                protocol.abort()

        sink = Aborting()
        protocol.send(b"GET", b"/", HOST, None, sink)
        protocol.dataReceived(OK + OK)
        self.assertEqual([e[0] for e in sink.events], ["head"])
        self.assertTrue(transport.disconnected)

    def test_a_failing_sink_is_logged_and_its_connection_aborted(self):
        protocol, transport, given_back = connected()

        class Failing(Recorder):
            def response_body(self, data):
                raise ZeroDivisionError()

        sink = Failing()
        protocol.send(b"GET", b"/", HOST, None, sink)
        protocol.dataReceived(OK)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual([e[0] for e in sink.events], ["head"])
        self.assertTrue(transport.disconnected)
        lose(protocol)
        self.assertEqual([e[0] for e in sink.events], ["head"])
        self.assertEqual(given_back, [])


class Endpoint:
    """Connects each factory's protocol to a new StringTransport at once."""

    def connect(self, factory):
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        return succeed(protocol)


class PoolTests(SynchronousTestCase):
    """The pool's contract, on a real HTTPConnectionPool."""

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.pool = upstream_pool(self.clock)
        self.pool.maxPersistentPerHost = 2
        self.pool.cachedConnectionTimeout = 10

    def complete(self, connection):
        """Run one exchange to its end on C{connection}."""
        connection.send(b"GET", b"/", HOST, None, Recorder())
        connection.dataReceived(OK)
        return connection

    def connect(self):
        return self.successResultOf(new_connection(self.pool, KEY, Endpoint()))

    def test_new_connections_are_upstream_protocols(self):
        connection = self.connect()
        self.assertIsInstance(connection, UpstreamProtocol)
        self.assertEqual(connection.state, "QUIESCENT")
        self.assertIsNone(take_idle(self.pool, KEY))  # not idle until its exchange is done
        self.complete(connection)
        self.assertIs(take_idle(self.pool, KEY), connection)

    def test_the_factory(self):
        given_back = []
        factory = UpstreamFactory(given_back.append, "metadata")
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.complete(protocol)
        self.assertEqual(given_back, [protocol])
        verifyObject(IResponseSink, Recorder())

    def test_take_idle_takes_the_newest_and_cancels_its_timer(self):
        first, second = self.complete(self.connect()), self.complete(self.connect())
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        self.assertIs(take_idle(self.pool, KEY), second)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(20)
        self.assertFalse(second.transport.disconnecting)
        self.assertTrue(first.transport.disconnecting)
        self.assertIsNone(take_idle(self.pool, KEY))
        self.assertIsNone(take_idle(self.pool, (b"http", b"other", 80)))

    def test_take_idle_drops_closed_connections(self):
        first, second = self.complete(self.connect()), self.complete(self.connect())
        lose(second)
        second.transport = None  # the pool must not touch it again
        self.assertIs(take_idle(self.pool, KEY), first)
        self.assertEqual((self.pool._connections[KEY], self.pool._timeouts), ([], {}))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_idle_expiry(self):
        connection = self.complete(self.connect())
        self.clock.advance(9)
        self.assertFalse(connection.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)
        self.assertIsNone(take_idle(self.pool, KEY))

    def test_max_persistent_per_host(self):
        connections = [self.connect() for _ in range(3)]
        for connection in connections:
            self.complete(connection)
        self.assertEqual([c.transport.disconnecting for c in connections], [True, False, False])
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)

    def test_close_cached_connections(self):
        connection = self.complete(self.connect())
        closing = self.pool.closeCachedConnections()
        self.assertTrue(connection.transport.disconnected)
        self.assertNoResult(closing)
        lose(connection, clean=False)
        self.successResultOf(closing)
        self.assertEqual(self.clock.getDelayedCalls(), [])


# Real sockets.

class DuplexServer(Protocol):
    """
    A backend that answers at the first bytes of a request's body, and
    echoes each piece of the body as a chunk while it reads; it ends the
    response when the body ends.
    """

    def connectionMade(self):
        self.factory.connections.add(self)
        self.parser = HttpRequestParser(self)
        self.answered = False

    def connectionLost(self, reason):
        self.factory.connections.discard(self)

    def dataReceived(self, data):
        self.parser.feed_data(data)

    def on_message_begin(self):
        self.answered = False

    def on_body(self, body):
        self.answer()
        self.transport.write(b"%x\r\n%s\r\n" % (len(body), body))

    def on_message_complete(self):
        self.answer()
        self.transport.write(b"0\r\n\r\n")

    def answer(self):
        if not self.answered:
            self.answered = True
            self.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")


@implementer(IProtocolNegotiationFactory)
class DuplexFactory(Factory):
    protocol = DuplexServer
    noisy = False

    def acceptableProtocols(self):
        """ALPN, as twisted.web's Site: a TLS server without it fails the
        handshake of a client that offers it (BackendTLSPolicy does)."""
        return [b"http/1.1"]

    def __init__(self):
        self.connections = set()  # the open ones


def pattern(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


class IntegrationTests(TestCase):
    """Over real sockets on 127.0.0.1, through the real pool."""

    timeout = 30

    def pool_to(self, origin: str):
        """(pool, key, endpoint, Host header) for C{origin}, the endpoint
        made as wighaven.proxy.upstream.BackendAgent makes its own."""
        pool = upstream_pool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        uri = URI.fromBytes(origin.encode("ascii") + b"/")
        policy = BackendTLSPolicy(pki().ca_pem)
        agent = Agent(for_connecting(reactor), contextFactory=policy, pool=pool)
        host = [(b"Host", [uri.netloc])]
        return pool, (uri.scheme, uri.host, uri.port), agent._getEndpoint(uri), host

    @inlineCallbacks
    def send(self, upstream, method, target, body=None, sink=None):
        """One exchange, on an idle connection if there is one; (sink,
        connection), once it has ended."""
        pool, key, endpoint, host = upstream
        connection = take_idle(pool, key)
        if connection is None:
            connection = yield new_connection(pool, key, endpoint)
        sink = sink or Recorder()
        connection.send(method, target, host, body, sink)
        yield sink.ended
        return sink, connection

    @inlineCallbacks
    def keep_alive(self, tls):
        _, site, origin = yield start_backend(self, tls=tls)
        upstream = self.pool_to(origin)
        first, connection = yield self.send(upstream, b"GET", b"/echo?a")
        second, again = yield self.send(upstream, b"GET", b"/echo?b")
        self.assertIs(again, connection)
        self.assertEqual(site.connections, 1)
        for sink, target in ((first, "/echo?a"), (second, "/echo?b")):
            self.assertEqual(sink.events[-1], ("done",))
            self.assertEqual(sink.events[0][1], 200)
            self.assertEqual(json.loads(sink.body())["uri"], target)

    def test_keep_alive_plain(self):
        """Two sequential requests use one connection."""
        return self.keep_alive(tls=False)

    def test_keep_alive_tls(self):
        return self.keep_alive(tls=True)

    @inlineCallbacks
    def big_and_upload(self, tls):
        """A 1 MiB response, read with pauses, and a chunked upload, on one
        connection."""
        _, site, origin = yield start_backend(self, tls=tls)
        upstream = self.pool_to(origin)

        class Pausing(Recorder):
            def response_body(self, data):
                super().response_body(data)
                connection.pause_reading()
                reactor.callLater(0.001, connection.resume_reading)

        connection = yield new_connection(*upstream[:3])
        big = Pausing()
        connection.send(b"GET", b"/big?size=1048576", upstream[3], None, big)
        yield big.ended
        self.assertEqual((big.events[0][1], big.events[-1]), (200, ("done",)))
        self.assertEqual(big.body(), b"\x00" * 1048576)

        data = pattern(300_000)
        body = Body(UNKNOWN_LENGTH)
        sink = Recorder()
        d = self.send(upstream, b"POST", b"/upload", body, sink)
        for i in range(0, len(data), 8192):
            body.consumer.write(data[i:i + 8192])
        body.done.callback(None)
        sink, again = yield d
        self.assertIs(again, connection)
        expected = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self.assertEqual(json.loads(sink.body()), expected)
        self.assertEqual(site.connections, 1)

    def test_big_response_and_chunked_upload_plain(self):
        return self.big_and_upload(tls=False)

    def test_big_response_and_chunked_upload_tls(self):
        return self.big_and_upload(tls=True)

    @inlineCallbacks
    def test_idle_expiry(self):
        _, site, origin = yield start_backend(self, tls=False)
        upstream = self.pool_to(origin)
        upstream[0].cachedConnectionTimeout = 0.2
        _, connection = yield self.send(upstream, b"GET", b"/echo")
        yield wait_until(lambda: connection.state == "CLOSED" and not site.open)
        self.assertIsNone(take_idle(upstream[0], upstream[1]))

    @inlineCallbacks
    def duplex(self, tls):
        factory = DuplexFactory()
        if tls:  # as tests.support.backend serves TLS
            with open(pki().good, "rb") as f:
                options = ssl.PrivateCertificate.loadPEM(f.read()).options()
            endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
        else:
            endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in list(factory.connections)])
        origin = "%s://localhost:%d" % ("https" if tls else "http", port.getHost().port)
        upstream = self.pool_to(origin)
        first, rest = pattern(1000), pattern(200_000)
        body = Body(len(first) + len(rest), [first])
        sink = Recorder()
        d = self.send(upstream, b"POST", b"/stream", body, sink)
        yield sink.headed
        yield wait_until(lambda: len(sink.body()) == len(first))
        self.assertFalse(body.done.called)  # the upload is not over
        body.consumer.write(rest)
        body.done.callback(None)
        _, connection = yield d
        self.assertEqual(sink.events[-1], ("done",))
        self.assertEqual(sink.body(), first + rest)
        self.assertIs(take_idle(upstream[0], upstream[1]), connection)

    def test_full_duplex_plain(self):
        """The head and the first echoed bytes reach the sink while the
        upload is still going."""
        return self.duplex(tls=False)

    def test_full_duplex_tls(self):
        return self.duplex(tls=True)

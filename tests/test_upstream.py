"""Tests for L{wighaven.proxy.upstream.BackendAgent} against a real, tiny HTTP
server on 127.0.0.1 (twisted.web on port 0), over a real upstream_pool.

They cover: the raw request target reaches the server byte for byte
(Agent's URI parser would drop an empty query), the connection always
goes to the configured origin whatever the target says, the connection
headers are handed on apart from the response's in the
L{UpstreamResponse}, as Twisted's parser filed them, and the retry rule:
an idempotent request without a body is sent once more on a new
connection when a kept-alive one turns out dead; a request with a body, a
non-idempotent one and a cancelled one are not.

L{ExchangeTests} drive the exchange by hand over StringTransports: the
head while the upload goes on, the bytes read with the head held until
deliverBody, backpressure, and the failures Twisted's client would report.
"""

from OpenSSL import SSL
from twisted.internet import defer, reactor
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionAborted, ConnectionLost
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web._newclient import HTTPClientParser
from twisted.web.client import (
    RequestGenerationFailed,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from wighaven.proxy.errors import classify_failure
from wighaven.proxy.tls import BackendTLSPolicy
from wighaven.proxy import upstream
from wighaven.proxy.upstream import BackendAgent, UpstreamResponse
from wighaven.proxy.upstream_protocol import (
    BAD_RESPONSE, new_connection, take_idle, upstream_pool,
)

from .support.fakes import CollectingProtocol, Connecting
from .test_upstream_protocol import Body as UploadBody


class TrackedChannel(http.HTTPChannel):
    """A server connection that tells the site when it opens and closes."""

    def connectionMade(self):
        super().connectionMade()
        self.lost = defer.Deferred()
        self.factory.channels.append(self)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.lost.callback(None)


class TrackingSite(Site):
    protocol = TrackedChannel

    def __init__(self, resource):
        super().__init__(resource)
        self.channels = []


class Received:
    def __init__(self, request):
        self.method = request.method
        self.uri = request.uri
        self.headers = list(request.requestHeaders.getAllRawHeaders())
        self.body = request.content.read()
        self.channel = request.channel
        self.port = request.getHost().port


class Server(Resource):
    """
    Records every request; answers by path: C{/hang} never answers (and
    fires the Deferreds in C{waiting}), C{/conn} names X-Foo in Connection,
    anything else gets 200 C{b"ok " + target}.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.received = []
        self.waiting = []

    def render(self, request):
        self.received.append(Received(request))
        if request.path == b"/hang":
            waiting, self.waiting = self.waiting, []
            for d in waiting:  # from the next reactor turn, outside render
                reactor.callLater(0, d.callback, request)
            return NOT_DONE_YET
        if request.path == b"/conn":
            request.responseHeaders.setRawHeaders(b"connection", [b"X-Foo"])
            request.responseHeaders.setRawHeaders(b"x-foo", [b"bar"])
            request.responseHeaders.setRawHeaders(b"x-end", [b"kept"])
            return b"hello"
        return b"ok " + request.uri

    def next_request(self):
        d = defer.Deferred()
        self.waiting.append(d)
        return d


class Recording:
    """
    Records each connection BackendAgent is handed: an idle one taken from
    the pool (take_idle) or a new one (new_connection), in order.
    """

    def __init__(self, testcase):
        self.handed_out = []
        testcase.patch(upstream, "take_idle", self.take_idle)
        testcase.patch(upstream, "new_connection", self.new_connection)

    def take_idle(self, pool, key):
        connection = take_idle(pool, key)
        if connection is not None:
            self.handed_out.append(connection)
        return connection

    def new_connection(self, pool, key, endpoint):
        return new_connection(pool, key, endpoint).addCallback(self.record)

    def record(self, connection):
        self.handed_out.append(connection)
        return connection


@implementer(IBodyProducer)
class BytesProducer:
    """Produces C{body} at once (no reactor involved)."""

    def __init__(self, body):
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer):
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        pass


class BackendAgentTests(TestCase):
    def setUp(self):
        self.server = Server()
        self.site = TrackingSite(self.server)
        port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(self.close_server_connections)
        self.port = port.getHost().port
        self.netloc = b"127.0.0.1:%d" % self.port
        self.pool = upstream_pool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)
        self.recording = Recording(self)
        self.agent = BackendAgent(
            reactor, b"http://" + self.netloc, self.pool, BackendTLSPolicy()
        )

    def close_server_connections(self):
        for channel in self.site.channels:
            if not channel.lost.called:
                channel.transport.abortConnection()
        return defer.gatherResults([c.lost for c in self.site.channels])

    def headers(self):
        return Headers({b"host": [self.netloc], b"x-test": [b"1"]})

    @defer.inlineCallbacks
    def get(self, target, method=b"GET", body_producer=None):
        """Send one request; return (UpstreamResponse, body)."""
        upstream = yield self.agent.request(method, target, self.headers(), body_producer)
        self.assertIsInstance(upstream, UpstreamResponse)
        body = yield readBody(upstream.response)
        return upstream, body

    @defer.inlineCallbacks
    def test_raw_target_byte_for_byte(self):
        targets = [b"/a?", b"//x", b"/?", b"/a%2Fb/c?x=1&y=%2F", b"/%FF%00", b"/a;b=c//d?e",
                   b"/a??b", b"/caf%C3%A9?q=%E2%9C%93"]
        for target in targets:
            upstream, body = yield self.get(target)
            self.assertEqual(upstream.response.code, 200)
            self.assertEqual(body, b"ok " + target)
        self.assertEqual([r.uri for r in self.server.received], targets)

    @defer.inlineCallbacks
    def test_connection_always_to_the_configured_origin(self):
        for target in [b"//evil.example:1/x", b"http://evil.example:1/y", b"//127.0.0.2:1/z"]:
            upstream, body = yield self.get(target)
            self.assertEqual((upstream.response.code, body), (200, b"ok " + target))
        self.assertEqual(len(self.server.received), 3)
        for received in self.server.received:
            self.assertEqual(received.port, self.port)
            self.assertEqual(
                [v for n, vs in received.headers if n.lower() == b"host" for v in vs],
                [self.netloc],
            )

    @defer.inlineCallbacks
    def test_headers_and_method_sent_as_given(self):
        yield self.get(b"/m", method=b"PROPFIND")
        [received] = self.server.received
        self.assertEqual(received.method, b"PROPFIND")
        names = {n.lower() for n, _ in received.headers}
        self.assertIn(b"x-test", names)
        # Persistent: the HTTP client adds no Connection: close.
        self.assertNotIn(b"connection", names)

    @defer.inlineCallbacks
    def test_connection_headers_exposed(self):
        upstream, body = yield self.get(b"/conn")
        self.assertEqual(body, b"hello")
        connection = upstream.connection_headers
        self.assertEqual(connection.getRawHeaders(b"connection"), [b"X-Foo"])
        self.assertEqual(connection.getRawHeaders(b"content-length"), [b"5"])
        headers = upstream.response.headers
        self.assertEqual(headers.getRawHeaders(b"x-foo"), [b"bar"])
        self.assertEqual(headers.getRawHeaders(b"x-end"), [b"kept"])
        self.assertFalse(headers.hasHeader(b"connection"))
        self.assertFalse(headers.hasHeader(b"content-length"))

    @defer.inlineCallbacks
    def test_connection_headers_belong_to_their_own_response(self):
        """Each response on a reused connection gets its own parser's headers."""
        first, _ = yield self.get(b"/conn")
        second, _ = yield self.get(b"/plain")
        self.assertEqual(len(self.site.channels), 1)
        self.assertEqual(first.connection_headers.getRawHeaders(b"connection"), [b"X-Foo"])
        self.assertIsNone(second.connection_headers.getRawHeaders(b"connection"))
        self.assertEqual(
            second.connection_headers.getRawHeaders(b"content-length"), [b"%d" % len(b"ok /plain")]
        )

    @defer.inlineCallbacks
    def test_body_sent(self):
        upstream, _ = yield self.get(b"/upload", method=b"POST",
                                     body_producer=BytesProducer(b"\x00data\r\n"))
        self.assertEqual(upstream.response.code, 200)
        [received] = self.server.received
        self.assertEqual(received.body, b"\x00data\r\n")

    @defer.inlineCallbacks
    def kill_idle_connection(self):
        """
        Leave one kept-alive connection idle in the pool, then abort it on
        the server's side; the client does not know yet when this returns.
        """
        _, body = yield self.get(b"/first")
        self.assertEqual(body, b"ok /first")
        [channel] = self.site.channels
        self.assertEqual(len(self.recording.handed_out), 1)
        channel.transport.abortConnection()
        return self.recording.handed_out[0]

    @defer.inlineCallbacks
    def test_idempotent_request_retried_on_a_new_connection(self):
        for method in [b"GET", b"DELETE"]:
            self.server.received = []
            self.recording.handed_out = []
            dead = yield self.kill_idle_connection()
            upstream, body = yield self.get(b"/second", method=method)
            self.assertEqual((upstream.response.code, body), (200, b"ok /second"), method)
            # Sent on the dead connection first, then once more on a new one.
            self.assertEqual(len(self.recording.handed_out), 3, method)
            self.assertIs(self.recording.handed_out[1], dead, method)
            self.assertIsNot(self.recording.handed_out[2], dead, method)
            self.assertEqual([r.uri for r in self.server.received], [b"/first", b"/second"])
            self.assertIsNot(self.server.received[1].channel, self.server.received[0].channel)
            self.assertEqual(
                upstream.connection_headers.getRawHeaders(b"content-length"),
                [b"%d" % len(b"ok /second")],
            )
            yield self.close_server_connections()
            yield self.pool.closeCachedConnections()
            self.site.channels = []

    @defer.inlineCallbacks
    def assertNotRetried(self, method, body_producer):
        dead = yield self.kill_idle_connection()
        d = self.agent.request(method, b"/second", self.headers(), body_producer)
        yield self.assertFailure(
            d, ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed
        )
        self.assertEqual(self.recording.handed_out, [dead, dead])
        self.assertEqual([r.uri for r in self.server.received], [b"/first"])
        self.assertEqual(len(self.site.channels), 1)

    def test_post_with_body_not_retried(self):
        return self.assertNotRetried(b"POST", BytesProducer(b"payload"))

    def test_idempotent_method_with_body_not_retried(self):
        return self.assertNotRetried(b"PUT", BytesProducer(b"payload"))

    def test_post_without_body_not_retried(self):
        return self.assertNotRetried(b"POST", None)

    @defer.inlineCallbacks
    def test_cancelled_request_not_retried(self):
        arrived = self.server.next_request()
        d = self.agent.request(b"GET", b"/hang", self.headers(), None)
        yield arrived
        d.cancel()
        # Failed at once: a retry would have left it waiting for a new connection.
        failure = self.failureResultOf(d, ResponseNeverReceived)
        self.assertTrue(any(r.check(defer.CancelledError) for r in failure.value.reasons))
        [channel] = self.site.channels
        yield channel.lost
        self.assertEqual(len(self.recording.handed_out), 1)
        self.assertEqual([r.uri for r in self.server.received], [b"/hang"])
        self.assertEqual(len(self.site.channels), 1)


# The exchange, driven by hand over StringTransports.

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


class ExchangeTests(SynchronousTestCase):
    """BackendAgent's side of an exchange: the Response interface over the
    sink, backpressure, failures."""

    def setUp(self):
        self.clock = MemoryReactorClock()
        self.pool = upstream_pool(self.clock)
        self.agent = BackendAgent(self.clock, b"http://backend", self.pool, BackendTLSPolicy())
        self.agent.endpoint = Connecting()

    def send(self, method=b"GET", body=None):
        """(the request's Deferred, its connection)."""
        d = self.agent.request(method, b"/x", Headers({b"host": [b"backend"]}), body)
        return d, self.agent.endpoint.connections[-1]

    def test_the_head_arrives_while_the_body_is_still_going_up(self):
        body = UploadBody()
        d, connection = self.send(b"POST", body)
        body.consumer.write(b"first")
        connection.dataReceived(CHUNKED_HEAD + b"5\r\nfirst\r\n")
        upstream = self.successResultOf(d)
        self.assertEqual(upstream.response.code, 200)
        reader = CollectingProtocol()
        upstream.response.deliverBody(reader)
        self.assertEqual(reader.received, [b"first"])
        body.consumer.write(b"rest")
        connection.dataReceived(b"4\r\nrest\r\n")
        body.done.callback(None)
        connection.dataReceived(b"0\r\n\r\n")
        self.assertEqual(reader.received, [b"first", b"rest"])
        [reason] = reader.lost
        reason.trap(ResponseDone)
        self.assertTrue(connection.transport.value().endswith(b"5\r\nfirst\r\n4\r\nrest\r\n0\r\n\r\n"))
        self.assertIs(take_idle(self.pool, self.agent._key), connection)

    def test_bytes_read_with_the_head_wait_for_deliverBody(self):
        """Reading pauses at the head; deliverBody hands on what came with
        it, then resumes."""
        d, connection = self.send()
        connection.dataReceived(CHUNKED_HEAD + b"3\r\none\r\n")
        transport = connection.transport
        self.assertEqual(transport.producerState, "paused")
        upstream = self.successResultOf(d)
        reader = CollectingProtocol()
        upstream.response.deliverBody(reader)
        self.assertEqual((reader.received, transport.producerState), ([b"one"], "producing"))
        connection.dataReceived(b"3\r\ntwo\r\n0\r\n\r\n")
        self.assertEqual(reader.received, [b"one", b"two"])
        reader.lost[0].trap(ResponseDone)

    def test_a_whole_response_read_with_its_head(self):
        """The connection goes back to the pool at once, unpaused; the body
        and its end wait for deliverBody."""
        d, connection = self.send()
        connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(connection.transport.producerState, "producing")
        self.assertEqual(connection.state, "QUIESCENT")
        upstream = self.successResultOf(d)
        upstream.abort()  # the exchange is over: the pooled connection is left alone
        self.assertFalse(connection.transport.disconnecting)
        reader = CollectingProtocol()
        upstream.response.deliverBody(reader)
        self.assertEqual(reader.received, [b"ok"])
        reader.lost[0].trap(ResponseDone)

    def test_headers_filed_as_twisted_files_them(self):
        """Connection-control headers apart, names lowered (Headers gives
        them capitalised), values stripped; a HEAD's Content-Length is an
        end-to-end header."""
        head = (b"HTTP/1.1 200 Fine\r\nConnection: X-Foo\r\nContent-Length: 0\r\n"
                b"X-Foo:  bar \r\nKeep-Alive: timeout=5\r\nset-cookie: a\r\nSet-Cookie: b\r\n\r\n")
        for method, control, end_to_end in [
            (b"GET", {b"Connection": [b"X-Foo"], b"Content-Length": [b"0"],
                      b"Keep-Alive": [b"timeout=5"]},
             {b"X-Foo": [b"bar"], b"Set-Cookie": [b"a", b"b"]}),
            (b"HEAD", {b"Connection": [b"X-Foo"], b"Keep-Alive": [b"timeout=5"]},
             {b"Content-Length": [b"0"], b"X-Foo": [b"bar"], b"Set-Cookie": [b"a", b"b"]}),
        ]:
            d, connection = self.send(method)
            connection.dataReceived(head)
            upstream = self.successResultOf(d)
            self.assertEqual((upstream.response.code, upstream.response.phrase), (200, b"Fine"))
            self.assertEqual(dict(upstream.connection_headers.getAllRawHeaders()), control)
            self.assertEqual(dict(upstream.response.headers.getAllRawHeaders()), end_to_end)

    def test_connection_control_headers_are_twisted_parsers(self):
        self.assertEqual(upstream._CONNECTION_CONTROL, HTTPClientParser.CONNECTION_CONTROL_HEADERS)

    def test_backpressure_while_the_exchange_lasts(self):
        d, connection = self.send()
        connection.dataReceived(CHUNKED_HEAD)
        reader = CollectingProtocol()
        self.successResultOf(d).response.deliverBody(reader)
        transport = connection.transport
        reader.transport.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        reader.transport.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        connection.dataReceived(b"0\r\n\r\n")
        reader.transport.pauseProducing()  # ended: the connection is the pool's
        self.assertEqual(transport.producerState, "producing")

    def test_a_reader_paused_at_delivery_stays_paused(self):
        d, connection = self.send()
        connection.dataReceived(CHUNKED_HEAD + b"1\r\na\r\n")

        class Pausing(CollectingProtocol):
            def connectionMade(self):
                self.transport.pauseProducing()

        self.successResultOf(d).response.deliverBody(Pausing())
        self.assertEqual(connection.transport.producerState, "paused")

    def test_stopping_the_body_aborts_its_connection(self):
        d, connection = self.send()
        connection.dataReceived(CHUNKED_HEAD + b"1\r\na\r\n")
        reader = CollectingProtocol()
        self.successResultOf(d).response.deliverBody(reader)
        reader.transport.stopProducing()
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(reader.lost, [])  # until the connection is gone
        connection.connectionLost(Failure(ConnectionAborted()))
        [reason] = reader.lost
        reason.trap(ResponseFailed)
        self.assertEqual(reader.received, [b"a"])

    def test_a_broken_body(self):
        """The body's end is a ResponseFailed holding the connection's loss,
        or the protocol's reason when the connection was not lost."""
        for rest, lost in [(b"", Failure(ConnectionLost())), (b"zz\r\n", None)]:
            d, connection = self.send()
            connection.dataReceived(CHUNKED_HEAD + rest)
            reader = CollectingProtocol()
            self.successResultOf(d).response.deliverBody(reader)
            if lost is not None:
                connection.connectionLost(lost)
            [reason] = reader.lost
            reason.trap(ResponseFailed)
            [inner] = reason.value.reasons
            if lost is None:
                self.assertEqual(inner.value.args, (BAD_RESPONSE,))
            else:
                self.assertIs(inner, lost)

    def test_failures_before_the_head(self):
        """The types, and so the answers, of Twisted's client; the cause of
        a lost connection is kept."""
        closed = "the backend closed the connection without an answer"
        cases = [
            (lambda connection: connection.connectionLost(Failure(ConnectionLost())),
             ResponseNeverReceived, b"POST", closed),
            (lambda connection: connection.connectionLost(Failure(SSL.Error([]))),
             ResponseNeverReceived, b"GET",
             "TLS handshake with the backend failed (certificate not trusted)"),
            (lambda connection: connection.dataReceived(b"NOT HTTP\r\n\r\n"),
             ResponseFailed, b"GET", closed),
            (lambda connection: connection.body.done.errback(Failure(ValueError())),
             RequestGenerationFailed, b"POST", "the request could not be sent to the backend"),
        ]
        for fail, kind, method, detail in cases:
            body = UploadBody() if method == b"POST" else None
            d, connection = self.send(method, body)
            connection.body = body
            fail(connection)
            failure = self.failureResultOf(d, kind)
            self.assertEqual(classify_failure(failure).detail, detail)

    def test_cancelled_before_the_head(self):
        d, connection = self.send()
        d.cancel()
        failure = self.failureResultOf(d, ResponseNeverReceived)
        self.assertTrue(any(r.check(defer.CancelledError) for r in failure.value.reasons))
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(len(self.agent.endpoint.connections), 1)

"""Tests for L{wighaven.upstream.BackendAgent} against a real, tiny HTTP
server on 127.0.0.1 (twisted.web on port 0), over a real HTTPConnectionPool.

They cover what the module takes from Twisted's private HTTP client (pinned
in requirements.txt): the raw request target reaches the server byte for
byte (Agent's URI parser would drop an empty query), the connection always
goes to the configured origin whatever the target says, the connection
headers Twisted's parser keeps apart are handed on in the
L{UpstreamResponse}, and the retry rule that replaces the pool's own: an
idempotent request without a body is sent once more on a new connection
when a kept-alive one turns out dead; a request with a body, a
non-idempotent one and a cancelled one are not.
"""

from twisted.internet import defer, reactor
from twisted.internet.defer import succeed
from twisted.web import http
from twisted.web._newclient import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.client import HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from wighaven.tls import BackendTLSPolicy
from wighaven.upstream import BackendAgent, UpstreamResponse


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


class RecordingPool(HTTPConnectionPool):
    """A real pool that records each connection it hands out."""

    def __init__(self, reactor):
        super().__init__(reactor, persistent=True)
        self.handed_out = []

    def getConnection(self, key, endpoint):
        d = super().getConnection(key, endpoint)

        def record(protocol):
            self.handed_out.append(protocol)
            return protocol

        return d.addCallback(record)


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
        self.pool = RecordingPool(reactor)
        self.addCleanup(self.pool.closeCachedConnections)
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
        self.assertEqual(len(self.pool.handed_out), 1)
        channel.transport.abortConnection()
        return self.pool.handed_out[0]

    @defer.inlineCallbacks
    def test_idempotent_request_retried_on_a_new_connection(self):
        for method in [b"GET", b"DELETE"]:
            self.server.received = []
            self.pool.handed_out = []
            dead = yield self.kill_idle_connection()
            upstream, body = yield self.get(b"/second", method=method)
            self.assertEqual((upstream.response.code, body), (200, b"ok /second"), method)
            # Sent on the dead connection first, then once more on a new one.
            self.assertEqual(len(self.pool.handed_out), 3, method)
            self.assertIs(self.pool.handed_out[1], dead, method)
            self.assertIsNot(self.pool.handed_out[2], dead, method)
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
        self.assertEqual(self.pool.handed_out, [dead, dead])
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
        self.assertEqual(len(self.pool.handed_out), 1)
        self.assertEqual([r.uri for r in self.server.received], [b"/hang"])
        self.assertEqual(len(self.site.channels), 1)

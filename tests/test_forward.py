"""Unit tests of L{wighaven.proxy.forward} and L{wighaven.proxy.site}, with no sockets.

The forwarding resource is driven with treq.testing.StubTreq (an in-memory
client over a real twisted.web Site) and a task.Clock for the upstream
timeout. The whole GatewaySite, built by L{wighaven.run.service.build_site}, is
driven over a StringTransport with a MemoryReactorClock, for what shows on
the wire (framing, headers the server would add, exact request targets), the
dispatch between the gateway's own pages and the forwarded paths, and the
counters of the health endpoint.

The backend is a small twisted.web resource reached through
treq.testing.RequestTraversalAgent, behind the BackendAgent interface
(C{request(method, target, headers, body_producer)} firing with an
L{UpstreamResponse}); other fakes never answer or fail at once.
"""

import json

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest
from treq.testing import RequestTraversalAgent, StubTreq

from wighaven.proxy import errors
from wighaven.config.settings import load_config
from wighaven.proxy.deadlines import RESOLUTION
from wighaven.proxy.forward import ForwardResource
from wighaven.run.service import build_site
from wighaven.proxy.upstream import UpstreamResponse
from .support.agents import SendsThroughRequest

BACKEND = "https://user-space.hf.space"
TOKEN = "hf_unit_S3cr3t_0123456789"
GATEWAY_ADDRESS = IPv4Address("TCP", "127.0.0.1", 7860)
PEER = IPv4Address("TCP", "203.0.113.7", 50000)

REFUSED = {"error": "bad_gateway", "detail": "the backend refused the connection"}
TIMED_OUT = {"error": "gateway_timeout", "detail": "the backend did not answer in time"}


def make_config(**settings):
    env = {"PRIVATE_BACKEND_URL": BACKEND, "HF_TOKEN": TOKEN}
    env.update({k: v for k, v in settings.items() if v is not None})
    for k in [k for k, v in settings.items() if v is None]:
        env.pop(k, None)
    return load_config(env)


def values_of(raw_headers, name):
    """Every value of header C{name} (any case) in a list of (name, values)."""
    return [v for n, vs in raw_headers for v in vs if n.lower() == name.lower()]


# --- the backend and the fake BackendAgents ---------------------------------


class Received:
    """One request as the backend (or the agent) received it."""

    def __init__(self, method, target, headers, body_producer=None):
        self.method = method
        self.target = target
        self.headers = headers  # list of (name, [values])
        self.body_producer = body_producer

    def header(self, name):
        return values_of(self.headers, name)


class Backend(Resource):
    """
    The backend: records each request and answers with C{self.answer(request)}
    (by default 200 with a small text body).
    """

    isLeaf = True

    def __init__(self, answer=None):
        super().__init__()
        self.received = []
        self.answer = answer or (lambda request: b"backend body")

    def render(self, request):
        self.received.append(
            Received(request.method, request.uri, list(request.requestHeaders.getAllRawHeaders()))
        )
        return self.answer(request)


class FakeAgent(SendsThroughRequest):
    """
    The BackendAgent interface for tests. By default a request crosses
    RequestTraversalAgent to C{backend} and the response is wrapped in an
    L{UpstreamResponse} with C{connection_headers} (what Twisted's client
    parser keeps apart: Connection, Content-Length, ...). A target in
    C{fail_with} fails at once with that exception; one in C{hang} never
    gets an answer (its Deferred records its cancellation).

    Bodies: forwarding a body producer would start the global cooperator,
    so requests with a body are only recorded (never answered); tests read
    the producer themselves.
    """

    def __init__(self, backend=None, connection_headers=(), fail_with=None, hang=()):
        self.backend = backend if backend is not None else Backend()
        self._traversal = RequestTraversalAgent(self.backend)
        self.connection_headers = list(connection_headers)
        self.fail_with = dict(fail_with or {})
        self.hang = set(hang)
        self.calls = []
        self.cancelled = []

    def request(self, method, target, headers, body_producer):
        call = Received(method, target, list(headers.getAllRawHeaders()), body_producer)
        self.calls.append(call)
        if target in self.fail_with:
            return defer.fail(self.fail_with[target])
        if target in self.hang or body_producer is not None:
            return defer.Deferred(lambda d: self.cancelled.append(call))
        d = self._traversal.request(method, BACKEND.encode("ascii") + target, headers, None)
        return d.addCallback(self._wrap)

    def _wrap(self, response):
        connection = Headers()
        for name, values in self.connection_headers:
            connection.setRawHeaders(name, values)
        return UpstreamResponse(response, connection)


class HangingAgent(FakeAgent):
    """Never answers any request."""

    def request(self, method, target, headers, body_producer):
        self.hang.add(target)
        return super().request(method, target, headers, body_producer)


class FailingAgent(FakeAgent):
    """Fails every request at once with C{exception}."""

    def __init__(self, exception):
        super().__init__()
        self._exception = exception

    def request(self, method, target, headers, body_producer):
        self.fail_with[target] = self._exception
        return super().request(method, target, headers, body_producer)


# --- driving the forwarding resource with StubTreq --------------------------


class StubGateway:
    """The forwarding resource over C{agent}, a task.Clock, and StubTreq."""

    def __init__(self, agent, **settings):
        self.agent = agent
        self.clock = Clock()
        self.config = make_config(**settings)
        self.resource = ForwardResource(agent, self.config, self.clock)
        self.stub = StubTreq(self.resource)

    def request(self, method, path, headers=None, host="gw.example"):
        return self.stub.request(
            method, "http://%s%s" % (host, path), headers=headers, allow_redirects=False
        )


class ForwardTestsMixin:
    def gateway(self, agent=None, **settings):
        return StubGateway(agent if agent is not None else FakeAgent(), **settings)

    def fetch(self, gw, method, path, headers=None, host="gw.example"):
        """The response and body of a request that is answered at once."""
        response = self.successResultOf(gw.request(method, path, headers, host))
        return response, self.successResultOf(gw.stub.content(response))

    def assertErrorAnswer(self, response, body, status, payload):
        self.assertEqual(response.code, status)
        self.assertEqual(json.loads(body), payload)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"application/json"])


class TokenAndHostTests(ForwardTestsMixin, SynchronousTestCase):
    def test_token_replaces_client_authorization(self):
        gw = self.gateway()
        response, body = self.fetch(
            gw, "GET", "/api", {"Authorization": ["Bearer client-token", "Basic b3RoZXI="]}
        )
        self.assertEqual((response.code, body), (200, b"backend body"))
        [received] = gw.agent.backend.received
        self.assertEqual(received.header(b"authorization"), [b"Bearer " + TOKEN.encode()])
        [call] = gw.agent.calls
        self.assertEqual(call.header(b"authorization"), [b"Bearer " + TOKEN.encode()])

    def test_token_added_when_client_sends_none(self):
        gw = self.gateway()
        self.fetch(gw, "GET", "/api")
        [received] = gw.agent.backend.received
        self.assertEqual(received.header(b"authorization"), [b"Bearer " + TOKEN.encode()])

    def test_token_in_x_hf_authorization(self):
        gw = self.gateway(TOKEN_HEADER="x-hf-authorization")
        self.fetch(
            gw, "GET", "/api",
            {"Authorization": ["Bearer client-token"], "X-HF-Authorization": ["Bearer forged"]},
        )
        [received] = gw.agent.backend.received
        self.assertEqual(received.header(b"x-hf-authorization"), [b"Bearer " + TOKEN.encode()])
        self.assertEqual(received.header(b"authorization"), [b"Bearer client-token"])

    def test_no_token_configured_adds_none(self):
        gw = self.gateway(HF_TOKEN=None)
        self.fetch(gw, "GET", "/api", {"Authorization": ["Bearer client-token"]})
        [received] = gw.agent.backend.received
        self.assertEqual(received.header(b"authorization"), [b"Bearer client-token"])

    def test_host_is_the_backends(self):
        gw = self.gateway()
        self.fetch(gw, "GET", "/api", host="gw.example:8443")
        [call] = gw.agent.calls
        [received] = gw.agent.backend.received
        for seen in (call, received):
            self.assertEqual(seen.header(b"host"), [b"user-space.hf.space"])
            self.assertEqual(seen.header(b"x-forwarded-host"), [b"gw.example:8443"])

    def test_host_with_non_default_port(self):
        gw = self.gateway(PRIVATE_BACKEND_URL="http://10.1.2.3:8080")
        self.fetch(gw, "GET", "/api")
        [call] = gw.agent.calls
        self.assertEqual(call.header(b"host"), [b"10.1.2.3:8080"])

    def test_method_and_target_handed_to_the_agent(self):
        gw = self.gateway()
        for method in ["GET", "DELETE", "OPTIONS", "PROPFIND"]:
            self.fetch(gw, method, "/files/a%2Fb?x=1&y=%2F")
        self.assertEqual(
            [(c.method, c.target) for c in gw.agent.calls],
            [(m, b"/files/a%2Fb?x=1&y=%2F") for m in [b"GET", b"DELETE", b"OPTIONS", b"PROPFIND"]],
        )
        self.assertEqual([r.method for r in gw.agent.backend.received],
                         [b"GET", b"DELETE", b"OPTIONS", b"PROPFIND"])

    def test_no_body_producer_without_a_body(self):
        gw = self.gateway()
        self.fetch(gw, "GET", "/api")
        self.assertIsNone(gw.agent.calls[0].body_producer)


class RefusedTests(ForwardTestsMixin, SynchronousTestCase):
    def test_trace_and_connect_never_reach_the_agent(self):
        gw = self.gateway()
        for method in ["TRACE", "CONNECT"]:
            response, body = self.fetch(gw, method, "/api")
            self.assertErrorAnswer(
                response, body, 405,
                {"error": "method_not_allowed", "detail": "TRACE and CONNECT are not forwarded"},
            )
            allow = response.headers.getRawHeaders(b"allow")
            self.assertEqual(len(allow), 1)
            self.assertNotIn(b"TRACE", allow[0])
            self.assertNotIn(b"CONNECT", allow[0])
        self.assertEqual(gw.agent.calls, [])
        self.assertEqual(gw.clock.getDelayedCalls(), [])

    def test_bad_targets_never_reach_the_agent(self):
        """Rendered with DummyRequest, whose uri can be anything."""
        agent = FakeAgent()
        resource = ForwardResource(agent, make_config(), Clock())
        for uri in [b"@evil.example/x", b"*", b"evil.example/x", b"/a#frag", b"/a b",
                    b"/caf\xc3\xa9", b"/a\x00b", b""]:
            request = DummyRequest([])
            request.uri = uri
            body = resource.render(request)
            self.assertEqual(request.responseCode, 400, uri)
            self.assertEqual(
                json.loads(body),
                {"error": "bad_request", "detail": "the request target must be a path"},
            )
            self.assertEqual(
                request.responseHeaders.getRawHeaders(b"content-type"), [b"application/json"]
            )
        self.assertEqual(agent.calls, [])


class PlainRequest(DummyRequest):
    """DummyRequest of a plain-HTTP client (DummyRequest has no isSecure)."""

    def isSecure(self):
        return False


class TimeoutTests(ForwardTestsMixin, SynchronousTestCase):
    def test_504_after_upstream_timeout_and_not_before(self):
        agent = HangingAgent()
        gw = self.gateway(agent, UPSTREAM_TIMEOUT="8")
        d = gw.request("GET", "/slow")
        self.assertEqual(len(agent.calls), 1)
        gw.clock.advance(7.75)
        gw.stub.flush()
        self.assertNoResult(d)
        self.assertEqual(agent.cancelled, [])

        gw.clock.advance(0.25 + RESOLUTION)  # by the first deadline sweep after it
        gw.stub.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(gw.stub.content(response))
        self.assertErrorAnswer(response, body, 504, TIMED_OUT)
        self.assertEqual(agent.cancelled, agent.calls)
        self.assertEqual(gw.clock.getDelayedCalls(), [])

    def test_timer_cancelled_once_the_response_arrives(self):
        gw = self.gateway(UPSTREAM_TIMEOUT="8")
        response, _ = self.fetch(gw, "GET", "/api")
        self.assertEqual(response.code, 200)
        self.assertEqual(gw.clock.getDelayedCalls(), [])

    def test_timer_cancelled_on_failure(self):
        gw = self.gateway(FailingAgent(error.ConnectionRefusedError()))
        response, _ = self.fetch(gw, "GET", "/api")
        self.assertEqual(response.code, 502)
        self.assertEqual(gw.clock.getDelayedCalls(), [])

    def test_client_gone_cancels_the_upstream_request(self):
        """Rendered with DummyRequest: a client that leaves fails notifyFinish."""
        agent = HangingAgent()
        clock = Clock()
        resource = ForwardResource(agent, make_config(UPSTREAM_TIMEOUT="8"), clock)
        request = PlainRequest([b"slow"])
        request.uri = b"/slow"
        resource.render(request)
        self.assertEqual(agent.cancelled, [])
        request.processingFailed(Failure(ConnectionLost()))
        self.assertEqual(agent.cancelled, agent.calls)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(request.written, [])
        self.assertIsNone(request.responseCode)


class FailureTests(ForwardTestsMixin, SynchronousTestCase):
    def test_connection_refused_is_502(self):
        gw = self.gateway(FailingAgent(error.ConnectionRefusedError("hf_secret_text")))
        response, body = self.fetch(gw, "GET", "/api")
        self.assertErrorAnswer(response, body, 502, REFUSED)
        self.assertNotIn(b"hf_secret_text", body)
        self.assertEqual(response.length, len(body))

    def test_other_failures(self):
        for exception, status, detail in [
            (error.DNSLookupError("x"), 502, "the backend's hostname could not be resolved"),
            (ResponseNeverReceived([Failure(ConnectionDone())]), 502,
             "the backend closed the connection without an answer"),
            (ResponseNeverReceived([Failure(error.ConnectionRefusedError())]), 502,
             "the backend refused the connection"),
            (error.TimeoutError(), 504, "the backend did not answer in time"),
            (ValueError(TOKEN), 502, "the backend could not be reached"),
        ]:
            gw = self.gateway(FailingAgent(exception))
            response, body = self.fetch(gw, "GET", "/api")
            self.assertEqual(response.code, status, exception)
            self.assertEqual(json.loads(body)["detail"], detail, exception)
            self.assertNotIn(TOKEN.encode(), body)


class ResponseTests(ForwardTestsMixin, SynchronousTestCase):
    def test_status_phrase_and_end_to_end_headers(self):
        def answer(request):
            request.setResponseCode(418, b"Short And Stout")
            request.responseHeaders.setRawHeaders(b"x-app", [b"one", b"two"])
            request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
            return b"teapot"

        gw = self.gateway(FakeAgent(Backend(answer)))
        response, body = self.fetch(gw, "GET", "/tea")
        self.assertEqual((response.code, response.phrase, body), (418, b"Short And Stout", b"teapot"))
        self.assertEqual(response.headers.getRawHeaders(b"x-app"), [b"one", b"two"])
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"text/plain; charset=utf-8"]
        )

    def test_three_set_cookie_kept_apart(self):
        cookies = [b"a=1; Path=/", b"b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT", b"c=3; Secure"]

        def answer(request):
            request.responseHeaders.setRawHeaders(b"set-cookie", cookies)
            return b""

        gw = self.gateway(FakeAgent(Backend(answer)))
        response, _ = self.fetch(gw, "GET", "/login")
        self.assertEqual(response.headers.getRawHeaders(b"set-cookie"), cookies)

    def test_location_rewritten_to_the_gateway(self):
        locations = {
            b"/own": b"https://user-space.hf.space/login?next=%2Fa",
            b"/own-port": b"https://USER-SPACE.hf.space:443/x",
            b"/relative": b"/login",
            b"/elsewhere": b"https://huggingface.co/login",
            b"/other-scheme": b"http://user-space.hf.space/x",
        }

        def answer(request):
            request.setResponseCode(302)
            request.responseHeaders.setRawHeaders(b"location", [locations[request.uri]])
            return b""

        gw = self.gateway(FakeAgent(Backend(answer)))
        expected = {
            b"/own": b"http://gw.example:8443/login?next=%2Fa",
            b"/own-port": b"http://gw.example:8443/x",
            b"/relative": b"/login",
            b"/elsewhere": b"https://huggingface.co/login",
            b"/other-scheme": b"http://user-space.hf.space/x",
        }
        for path, location in expected.items():
            response, _ = self.fetch(gw, "GET", path.decode(), host="gw.example:8443")
            self.assertEqual(response.code, 302)
            self.assertEqual(response.headers.getRawHeaders(b"location"), [location], path)
        # Never followed: one upstream request per client request.
        self.assertEqual(len(gw.agent.calls), len(expected))

    def test_response_hop_by_hop_headers_removed(self):
        """What treq's client shows: the hop-by-hop headers it doesn't keep apart."""

        def answer(request):
            for name, value in [
                (b"proxy-authenticate", b"Basic"),
                (b"trailer", b"X-Checksum"),
                (b"x-internal", b"secret"),
                (b"x-kept", b"yes"),
            ]:
                request.responseHeaders.setRawHeaders(name, [value])
            return b"ok"

        gw = self.gateway(
            FakeAgent(Backend(answer), connection_headers=[(b"connection", [b"X-Internal"])])
        )
        response, _ = self.fetch(gw, "GET", "/hop")
        for name in [b"proxy-authenticate", b"trailer", b"x-internal"]:
            self.assertFalse(response.headers.hasHeader(name), name)
        self.assertEqual(response.headers.getRawHeaders(b"x-kept"), [b"yes"])


# --- the whole site over a StringTransport ----------------------------------


class Reply:
    """A parsed HTTP/1.1 response (Content-Length or chunked framing)."""

    def __init__(self, data):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        _, status, self.reason = lines[0].split(b" ", 2)
        self.status = int(status)
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.append((name.strip(), [value.strip()]))
        if self.header(b"transfer-encoding") == [b"chunked"]:
            self.body = b""
            while True:
                size, _, rest = rest.partition(b"\r\n")
                size = int(size, 16)
                if size == 0:
                    break
                self.body += rest[:size]
                rest = rest[size + 2:]
        else:
            self.body = rest

    def header(self, name):
        return values_of(self.headers, name)

    def names(self):
        return {name.lower() for name, _ in self.headers}

    def json(self):
        return json.loads(self.body)


class SiteGateway:
    """A GatewaySite from build_site over C{agent}, driven over StringTransports."""

    def __init__(self, agent, **settings):
        self.agent = agent
        self.reactor = MemoryReactorClock()
        self.config = make_config(**settings)
        self.site = build_site(self.config, agent, self.reactor)

    def connect(self):
        channel = self.site.buildProtocol(GATEWAY_ADDRESS)
        transport = StringTransport(hostAddress=GATEWAY_ADDRESS, peerAddress=PEER)
        channel.makeConnection(transport)
        return channel, transport

    def send(self, method, target, extra=b"", body=None):
        """Send one request on a new connection; return (channel, transport)."""
        data = b"%s %s HTTP/1.1\r\nHost: gw.example\r\n%s" % (method, target, extra)
        if body is not None:
            data += b"Content-Length: %d\r\n" % len(body)
        data += b"\r\n" + (body or b"")
        channel, transport = self.connect()
        channel.dataReceived(data)
        # A forwarded request starts when its head is in; an answer that is
        # ready at once is written on the reactor's next turn.
        self.reactor.advance(0)
        return channel, transport

    def fetch(self, method, target, extra=b"", body=None):
        _, transport = self.send(method, target, extra, body)
        return Reply(transport.value())

    def health(self):
        reply = self.fetch(b"GET", b"/gateway-health")
        assert reply.status == 200, reply.status
        return reply.json()


def answers_on_the_wire(data):
    """The status lines and bodies of the answers in C{data}, in order."""
    answers = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = [int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")]
        if length:
            body, data = data[:length[0]], data[length[0]:]
        else:  # chunked
            body = b""
            while True:
                size, _, data = data.partition(b"\r\n")
                size = int(size, 16)
                body, data = body + data[:size], data[size + 2:]
                if not size:
                    break
        answers.append((lines[0], body))
    return answers


class PipeliningTests(SynchronousTestCase):
    """Requests sent one after another without waiting are answered in order;
    none is handed on before the answer to the one before it is done."""

    def setUp(self):
        self.gw = SiteGateway(FakeAgent(Backend(lambda request: b"body of " + request.uri)))
        self.channel, self.transport = self.gw.connect()

    def get(self, target):
        return b"GET %s HTTP/1.1\r\nHost: gw.example\r\n\r\n" % target

    def test_in_one_piece(self):
        self.channel.dataReceived(self.get(b"/a") + self.get(b"/b") + self.get(b"/gateway-health"))
        # /a is forwarded at once; /b waits for its answer, which comes next turn.
        self.assertEqual([c.target for c in self.gw.agent.calls], [b"/a"])
        self.gw.reactor.advance(0)
        self.assertEqual([c.target for c in self.gw.agent.calls], [b"/a", b"/b"])
        self.gw.reactor.advance(0)
        answers = answers_on_the_wire(self.transport.value())
        self.assertEqual([status for status, _ in answers], [b"HTTP/1.1 200 OK"] * 3)
        self.assertEqual([body for _, body in answers[:2]], [b"body of /a", b"body of /b"])
        self.assertEqual(json.loads(answers[2][1])["status"], "ok")
        self.assertFalse(self.transport.disconnecting)

    def test_in_pieces_split_anywhere(self):
        data = self.get(b"/a") + b"POST /b HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 4\r\n\r\nbody" + self.get(b"/c")
        for cut in (3, 30, 45, 80, len(data) - 2):
            self.setUp()
            self.channel.dataReceived(data[:cut])
            self.gw.reactor.advance(0)
            self.channel.dataReceived(data[cut:])
            for _ in range(4):
                self.gw.reactor.advance(0)
            # The POST's body is a StreamingBody the fake records, never answers.
            self.assertEqual([c.target for c in self.gw.agent.calls], [b"/a", b"/b"], cut)
            answers = answers_on_the_wire(self.transport.value())
            self.assertEqual([body for _, body in answers], [b"body of /a"], cut)

    def test_chunked_upload_with_trailers(self):
        """A chunked body is decoded for the upstream request (which frames it
        again) and its trailers are dropped, never taken for headers."""
        self.gw.agent.hang.add(b"/up")
        self.channel.dataReceived(
            b"POST /up HTTP/1.1\r\nHost: gw.example\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
        )
        [call] = self.gw.agent.calls
        body = call.body_producer
        self.assertTrue(body.ended)
        self.assertEqual(b"".join(body._pending), b"hello world")
        self.assertNotIn(b"x-checksum", [name.lower() for name, _ in call.headers])
        self.assertEqual(self.transport.value(), b"")
        self.assertFalse(self.transport.disconnecting)

    def test_read_ahead_is_bounded(self):
        """While an answer is pending, at most 16 KiB of what follows is read
        before the client is paused; it is resumed when the answer is done,
        and every request read ahead is answered in its turn."""
        targets = [b"/a", b"/x" + b"x" * 8000, b"/y" + b"y" * 8000, b"/z" + b"z" * 3000]
        self.channel.dataReceived(self.get(targets[0]) + self.get(targets[1]))
        self.assertEqual(self.transport.producerState, "producing")
        self.channel.dataReceived(self.get(targets[2]) + self.get(targets[3]))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual([c.target for c in self.gw.agent.calls], targets[:1])
        for _ in targets:
            self.gw.reactor.advance(0)  # each answer comes on the next turn
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual([c.target for c in self.gw.agent.calls], targets)
        answers = answers_on_the_wire(self.transport.value())
        self.assertEqual([body for _, body in answers], [b"body of " + t for t in targets])


class AnsweredBeforeTheBodyTests(SynchronousTestCase):
    """A request answered before its body is in (what a policy step may do)
    leaves the connection usable: the rest of its body is read and dropped,
    never parsed as a request."""

    def test_rest_of_the_body_dropped_then_next_request_served(self):
        gw = SiteGateway(FakeAgent())

        def refuse_at_once(request, length, target):
            request.write(errors.respond_with_error(
                request, errors.GatewayError(403, "forbidden", "not for you")))
            request.finish()

        gw.site._forward.start = refuse_at_once
        channel, transport = gw.connect()
        channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: gw.example\r\nContent-Length: 26\r\n\r\n"
                             b"GET /smuggled HTT")
        channel.dataReceived(b"P/1.1\r\n\r\n" + b"GET /gateway-health HTTP/1.1\r\nHost: gw\r\n\r\n")
        answers = answers_on_the_wire(transport.value())
        self.assertEqual([status for status, _ in answers],
                         [b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 200 OK"])
        self.assertEqual(gw.agent.calls, [])
        self.assertFalse(transport.disconnecting)


class WireTests(SynchronousTestCase):
    """What the client gets on the wire through the whole site."""

    def test_targets_handed_over_byte_for_byte(self):
        gw = SiteGateway(FakeAgent())
        targets = [b"/a?", b"//evil.example/x", b"/a%2Fb/c?x=1&y=%2F", b"/%FF", b"/a;b=c//d?q"]
        for target in targets:
            self.assertEqual(gw.fetch(b"GET", target).status, 200, target)
        self.assertEqual([c.target for c in gw.agent.calls], targets)

    def test_absolute_form_keeps_only_path_and_query(self):
        gw = SiteGateway(FakeAgent())
        reply = gw.fetch(b"GET", b"http://evil.example:1/x?q=1")
        self.assertEqual(reply.status, 200)
        [call] = gw.agent.calls
        self.assertEqual(call.target, b"/x?q=1")
        self.assertEqual(call.header(b"host"), [b"user-space.hf.space"])

    def test_refused_requests_never_reach_the_agent(self):
        gw = SiteGateway(FakeAgent())
        for method, target, status in [
            (b"TRACE", b"/x", 405),
            (b"trace", b"/x", 400),  # methods are case-sensitive: not a method llhttp knows
            (b"CONNECT", b"evil.example:443", 405),
            (b"GET", b"@evil.example/x", 400),
            (b"GET", b"/a#frag", 400),
            (b"GET", b"/caf\xc3\xa9", 400),  # refused by the channel already
        ]:
            reply = gw.fetch(method, target)
            self.assertEqual(reply.status, status, (method, target))
            self.assertEqual(reply.header(b"content-type"), [b"application/json"])
        self.assertEqual(gw.agent.calls, [])

    def test_forwarded_headers(self):
        gw = SiteGateway(FakeAgent())
        gw.fetch(b"GET", b"/api", b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n")
        [received] = gw.agent.backend.received
        # TRUST_PROXY is off: the client's claims are replaced by what the gateway saw.
        self.assertEqual(received.header(b"x-forwarded-for"), [b"203.0.113.7"])
        self.assertEqual(received.header(b"x-forwarded-proto"), [b"http"])
        self.assertEqual(received.header(b"host"), [b"user-space.hf.space"])

    def test_request_hop_by_hop_headers_not_forwarded(self):
        gw = SiteGateway(FakeAgent())
        gw.fetch(
            b"GET", b"/api",
            b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n"
            b"Proxy-Authorization: Basic eDp5\r\nUpgrade: h2c\r\nX-End: kept\r\n",
        )
        [call] = gw.agent.calls
        names = {n.lower() for n, _ in call.headers}
        for hop in [b"connection", b"x-hop", b"keep-alive", b"te", b"proxy-authorization",
                    b"upgrade"]:
            self.assertNotIn(hop, names)
        self.assertEqual(call.header(b"x-end"), [b"kept"])

    def test_response_hop_by_hop_and_connection_named_removed(self):
        def answer(request):
            request.responseHeaders.setRawHeaders(b"x-internal", [b"secret"])
            request.responseHeaders.setRawHeaders(b"proxy-authenticate", [b"Basic"])
            request.responseHeaders.setRawHeaders(b"x-kept", [b"yes"])
            request.responseHeaders.setRawHeaders(b"set-cookie", [b"a=1", b"b=2", b"c=3"])
            return b"hello"

        agent = FakeAgent(
            Backend(answer),
            connection_headers=[
                (b"connection", [b"keep-alive, X-Internal"]),
                (b"keep-alive", [b"timeout=5"]),
                (b"content-length", [b"5"]),
            ],
        )
        reply = SiteGateway(agent).fetch(b"GET", b"/hop")
        self.assertEqual((reply.status, reply.body), (200, b"hello"))
        for name in [b"connection", b"keep-alive", b"x-internal", b"proxy-authenticate",
                     b"transfer-encoding"]:
            self.assertNotIn(name, reply.names())
        self.assertEqual(reply.header(b"x-kept"), [b"yes"])
        self.assertEqual(reply.header(b"set-cookie"), [b"a=1", b"b=2", b"c=3"])
        self.assertEqual(reply.header(b"content-length"), [b"5"])

    def test_content_length_beside_transfer_encoding_dropped(self):
        agent = FakeAgent(
            Backend(lambda request: b"hello"),
            connection_headers=[
                (b"transfer-encoding", [b"chunked"]),
                (b"content-length", [b"5"]),
            ],
        )
        reply = SiteGateway(agent).fetch(b"GET", b"/chunked")
        self.assertEqual((reply.status, reply.body), (200, b"hello"))
        self.assertEqual(reply.header(b"content-length"), [])
        self.assertEqual(reply.header(b"transfer-encoding"), [b"chunked"])

    def test_no_content_type_server_or_date_invented(self):
        def answer(request):
            request.defaultContentType = None
            request.responseHeaders.removeHeader(b"server")
            request.responseHeaders.removeHeader(b"date")
            return b"raw bytes"

        reply = SiteGateway(FakeAgent(Backend(answer))).fetch(b"GET", b"/raw")
        self.assertEqual((reply.status, reply.body), (200, b"raw bytes"))
        for name in [b"content-type", b"server", b"date"]:
            self.assertNotIn(name, reply.names())

    def test_backend_server_and_date_passed_not_doubled(self):
        def answer(request):
            request.responseHeaders.setRawHeaders(b"server", [b"BackendServer/1"])
            request.responseHeaders.setRawHeaders(b"date", [b"Tue, 01 Jan 2030 00:00:00 GMT"])
            return b"x"

        reply = SiteGateway(FakeAgent(Backend(answer))).fetch(b"GET", b"/x")
        self.assertEqual(reply.header(b"server"), [b"BackendServer/1"])
        self.assertEqual(reply.header(b"date"), [b"Tue, 01 Jan 2030 00:00:00 GMT"])

    def test_upstream_timeout_through_the_site(self):
        agent = HangingAgent()
        gw = SiteGateway(agent, UPSTREAM_TIMEOUT="2")
        _, transport = gw.send(b"GET", b"/slow")
        gw.reactor.advance(1.75)
        self.assertEqual(transport.value(), b"")
        gw.reactor.advance(0.25 + RESOLUTION)  # by the first deadline sweep after it
        reply = Reply(transport.value())
        self.assertEqual(reply.status, 504)
        # Through the site, an error body also names the exchange's request id.
        body = reply.json()
        request_id = body.pop("request_id")
        self.assertEqual(body, TIMED_OUT)
        self.assertEqual(reply.header(b"x-request-id"), [request_id.encode()])
        self.assertEqual(agent.cancelled, agent.calls)


class BodyTests(TestCase):
    """The client's body reaches the agent as a producer of the same bytes."""

    @defer.inlineCallbacks
    def read(self, producer):
        consumer = _Collector()
        yield producer.startProducing(consumer)
        return consumer.data

    @defer.inlineCallbacks
    def test_body_producer_of_the_clients_bytes(self):
        agent = FakeAgent()
        gw = SiteGateway(agent)
        body = b"\x00binary\r\n\xff" * 1000
        gw.send(b"POST", b"/upload", b"Content-Type: application/octet-stream\r\n", body)
        [call] = agent.calls
        self.assertEqual(call.method, b"POST")
        self.assertEqual(call.body_producer.length, len(body))
        # The client's Content-Length is not copied: the HTTP client frames the body again.
        self.assertEqual(call.header(b"content-length"), [])
        self.assertEqual(call.header(b"content-type"), [b"application/octet-stream"])
        data = yield self.read(call.body_producer)
        self.assertEqual(data, body)

    @defer.inlineCallbacks
    def test_chunked_body(self):
        agent = FakeAgent()
        gw = SiteGateway(agent)
        channel, _ = gw.connect()
        channel.dataReceived(
            b"PUT /u HTTP/1.1\r\nHost: gw.example\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        [call] = agent.calls
        self.assertEqual(call.header(b"transfer-encoding"), [])
        data = yield self.read(call.body_producer)
        self.assertEqual(data, b"hello world")

    def test_empty_body_with_content_length(self):
        agent = FakeAgent()
        SiteGateway(agent).send(b"POST", b"/u", body=b"")
        self.assertEqual(agent.calls[0].body_producer.length, 0)


class _Collector:
    def __init__(self):
        self.data = b""

    def write(self, data):
        self.data += data


# --- dispatch and counters ---------------------------------------------------


def path_request(path):
    request = DummyRequest([])
    request.path = path
    return request


class DispatchTests(SynchronousTestCase):
    def site(self, **settings):
        return build_site(make_config(**settings), FakeAgent(), Clock())

    def assertOwn(self, site, path):
        request = path_request(path)
        self.assertIs(site.getResourceFor(request), site.resource, path)
        self.assertFalse(getattr(request, "forwarded", False), path)

    def assertForwarded(self, site, path):
        request = path_request(path)
        self.assertIsInstance(site.getResourceFor(request), ForwardResource, path)
        self.assertTrue(request.forwarded, path)

    def test_own_paths_go_to_the_pages(self):
        site = self.site()
        for path in [b"/", b"/gateway-health", b"/_gateway/", b"/_gateway/anything",
                     b"/_gateway/a/b/c"]:
            self.assertOwn(site, path)

    def test_every_other_path_is_forwarded(self):
        site = self.site()
        for path in [b"/gateway-health/x", b"/gateway-health/", b"/gateway-healthz",
                     b"/Gateway-Health", b"/_gatewayx", b"/_gatewayx/y", b"/favicon.ico",
                     b"//", b"/index.html", b"/gradio_api/queue/data", b"/%FF"]:
            self.assertForwarded(site, path)

    def test_moved_dashboard(self):
        site = self.site(DASHBOARD_PATH="/_gateway/ui")
        self.assertOwn(site, b"/_gateway/ui")
        self.assertOwn(site, b"/gateway-health")
        self.assertForwarded(site, b"/")

    def test_own_pages_served_without_the_agent(self):
        agent = FakeAgent()
        gw = SiteGateway(agent)
        health = gw.fetch(b"GET", b"/gateway-health")
        self.assertEqual(health.status, 200)
        self.assertEqual(health.json()["status"], "ok")
        self.assertEqual(health.header(b"content-type"), [b"application/json"])
        health_query = gw.fetch(b"GET", b"/gateway-health?verbose=1")
        self.assertEqual(health_query.json()["status"], "ok")
        dashboard = gw.fetch(b"GET", b"/")
        self.assertEqual(dashboard.status, 200)
        self.assertEqual(dashboard.header(b"content-type"), [b"text/html; charset=utf-8"])
        for path in [b"/_gateway/", b"/_gateway/anything", b"/_gateway/a/b"]:
            reply = gw.fetch(b"GET", path)
            self.assertEqual(reply.status, 404, path)
            self.assertEqual(reply.json()["error"], "not_found", path)
        self.assertEqual(agent.calls, [])

    def test_lookalike_paths_reach_the_backend(self):
        agent = FakeAgent()
        gw = SiteGateway(agent)
        targets = [b"/gateway-health/x", b"/_gatewayx", b"/favicon.ico", b"/%FF"]
        for target in targets:
            reply = gw.fetch(b"GET", target)
            self.assertEqual((reply.status, reply.body), (200, b"backend body"), target)
        self.assertEqual([c.target for c in agent.calls], targets)


class StatsTests(SynchronousTestCase):
    def test_forwarded_requests_and_errors_counted(self):
        backend = Backend(lambda request: (request.setResponseCode(503), b"down")[1]
                          if request.uri == b"/down" else b"up")
        agent = FakeAgent(backend, fail_with={b"/refused": error.ConnectionRefusedError()})
        gw = SiteGateway(agent)
        self.assertEqual(gw.health()["requests"], 0)
        self.assertEqual(gw.fetch(b"GET", b"/ok").status, 200)
        self.assertEqual(gw.fetch(b"GET", b"/other").status, 200)
        health = gw.health()
        self.assertEqual((health["requests"], health["errors"]), (2, 0))
        self.assertEqual(gw.fetch(b"GET", b"/refused").status, 502)
        self.assertEqual(gw.fetch(b"GET", b"/down").status, 503)
        self.assertEqual(gw.fetch(b"TRACE", b"/x").status, 405)
        # Own pages (health, dashboard) are not counted; 4xx are not errors.
        gw.fetch(b"GET", b"/")
        health = gw.health()
        self.assertEqual((health["requests"], health["errors"]), (5, 2))
        self.assertEqual(health["in_flight"], 0)

    def test_in_flight_and_latency_of_a_timed_out_request(self):
        agent = HangingAgent()
        gw = SiteGateway(agent, UPSTREAM_TIMEOUT="2")
        _, transport = gw.send(b"GET", b"/slow")
        health = gw.health()
        self.assertEqual((health["in_flight"], health["requests"]), (1, 0))
        gw.reactor.advance(2)
        self.assertEqual(Reply(transport.value()).status, 504)
        health = gw.health()
        self.assertEqual((health["in_flight"], health["requests"], health["errors"]), (0, 1, 1))
        self.assertEqual(health["mean_latency_ms"], 2000.0)
        self.assertEqual(health["uptime_seconds"], 2.0)

    def test_client_gone_counted_as_failed(self):
        agent = HangingAgent()
        gw = SiteGateway(agent, UPSTREAM_TIMEOUT="2")
        channel, transport = gw.send(b"GET", b"/slow")
        transport.loseConnection()
        channel.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(agent.cancelled, agent.calls)
        health = gw.health()
        self.assertEqual((health["in_flight"], health["requests"], health["errors"]), (0, 1, 1))
        gw.reactor.advance(5)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(gw.health()["requests"], 1)

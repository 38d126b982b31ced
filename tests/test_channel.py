"""Tests for L{wighaven.proxy.channel}: the gateway's limits on request heads,
driven through a real GatewaySite (built by L{wighaven.run.service.build_site})
over a StringTransport.

A request line over 8 KiB is answered 414; a header line over 16 KiB, a
header block over 64 KiB or more than 100 header lines 431; what Twisted's
parser rejects (Content-Length beside Transfer-Encoding, malformed
Content-Length) 400. Each refusal is one self-framed JSON response with
Connection: close, after which the connection is closed; requests within
the limits are served as usual.
"""

import json

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from wighaven.proxy.channel import (
    MAX_HEADER_BLOCK,
    MAX_HEADER_LINE,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
    GatewayChannel,
    GatewayRequest,
)
from wighaven.config.settings import load_config
from wighaven.run.service import build_site
from wighaven.observe.stats import GatewayStats
from .support.agents import SendsThroughRequest


class RecordingAgent(SendsThroughRequest):
    """Stands in for the BackendAgent: records requests, never answers."""

    def __init__(self):
        self.requests = []

    def request(self, method, target, headers=None, body=None):
        self.requests.append((method, target))
        return defer.Deferred()


def parse_response(data):
    """(status, reason, headers dict with lower-cased names, body) of one response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    _, status, reason = lines[0].split(b" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status), reason, headers, body


def headers_of(count, size=10):
    """C{count} header lines of C{size} value bytes each."""
    return b"".join(b"X-H%d: %s\r\n" % (i, b"v" * size) for i in range(count))


def get(path=b"/gateway-health", extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: gw.example\r\n" + extra + b"\r\n"


class ChannelTestsMixin:
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.agent = RecordingAgent()
        config = load_config({"PRIVATE_BACKEND_URL": "https://user-space.hf.space"})
        self.stats = GatewayStats(self.reactor)
        self.site = build_site(config, self.agent, self.reactor, self.stats)

    def connect(self):
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 7860))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 7860),
            peerAddress=IPv4Address("TCP", "203.0.113.7", 50000),
        )
        channel.makeConnection(transport)
        return channel, transport

    def send(self, data):
        channel, transport = self.connect()
        channel.dataReceived(data)
        return channel, transport

    def assertRefused(self, data, status, reason):
        """C{data} gets exactly one self-framed refusal and a closed connection."""
        channel, transport = self.send(data)
        code, phrase, headers, body = parse_response(transport.value())
        self.assertEqual((code, phrase), (status, reason))
        self.assertEqual(headers[b"content-length"], [b"%d" % len(body)])
        self.assertEqual(headers[b"connection"], [b"close"])
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        self.assertNotIn(b"transfer-encoding", headers)
        payload = json.loads(body)
        self.assertEqual(sorted(payload), ["detail", "error"])
        self.assertEqual(payload["error"], reason.decode().lower().replace(" ", "_"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.agent.requests, [])
        return channel, transport

    def assertServed(self, data, status=200):
        _, transport = self.send(data)
        code, _, _, _ = parse_response(transport.value())
        self.assertEqual(code, status)
        self.assertFalse(transport.disconnecting)


class TypesTests(SynchronousTestCase):
    def test_site_uses_gateway_channel_and_request(self):
        site = build_site(
            load_config({"PRIVATE_BACKEND_URL": "http://127.0.0.1:9"}),
            RecordingAgent(),
            MemoryReactorClock(),
        )
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.assertIsInstance(channel, GatewayChannel)
        self.assertIs(site.requestFactory, GatewayRequest)


class RequestLineTests(ChannelTestsMixin, SynchronousTestCase):
    def test_too_long(self):
        target = b"/" + b"a" * MAX_REQUEST_LINE
        self.assertRefused(get(target), 414, b"URI Too Long")

    def test_too_long_without_line_end(self):
        """A request line that never ends is refused once it passes the buffer."""
        self.assertRefused(b"GET /" + b"a" * (MAX_HEADER_BLOCK + 10), 414, b"URI Too Long")

    def test_at_limit(self):
        prefix, suffix = b"GET /_gateway/", b" HTTP/1.1"
        target = b"a" * (MAX_REQUEST_LINE - len(prefix) - len(suffix))
        self.assertEqual(len(prefix + target + suffix), MAX_REQUEST_LINE)
        self.assertServed(get(b"/_gateway/" + target), 404)
        self.assertRefused(get(b"/_gateway/" + target + b"a"), 414, b"URI Too Long")


class HeaderLimitTests(ChannelTestsMixin, SynchronousTestCase):
    def test_header_line_too_long(self):
        line = b"X-Big: " + b"a" * MAX_HEADER_LINE
        self.assertRefused(get(extra=line + b"\r\n"), 431, b"Request Header Fields Too Large")

    def test_header_line_at_limit(self):
        name = b"X-Big: "
        line = name + b"a" * (MAX_HEADER_LINE - len(name))
        self.assertServed(get(extra=line + b"\r\n"))

    def test_header_line_without_end(self):
        data = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEADER_BLOCK + 10)
        self.assertRefused(data, 431, b"Request Header Fields Too Large")

    def test_header_block_too_large(self):
        """Lines each within the limit, together over 64 KiB."""
        size = MAX_HEADER_LINE - 100
        count = MAX_HEADER_BLOCK // size + 1
        self.assertRefused(
            get(extra=headers_of(count, size)), 431, b"Request Header Fields Too Large"
        )

    def test_too_many_headers(self):
        # Host is one of the lines: MAX_HEADERS more make one too many.
        self.assertRefused(
            get(extra=headers_of(MAX_HEADERS)), 431, b"Request Header Fields Too Large"
        )

    def test_header_count_at_limit(self):
        self.assertServed(get(extra=headers_of(MAX_HEADERS - 1)))

    def test_limits_are_per_request(self):
        """Two requests near the limits on one persistent connection are both served."""
        request = get(extra=headers_of(3, MAX_HEADER_LINE - 100) + headers_of(MAX_HEADERS - 4))
        channel, transport = self.send(request)
        self.assertEqual(parse_response(transport.value())[0], 200)
        transport.clear()
        channel.dataReceived(request)
        self.assertEqual(parse_response(transport.value())[0], 200)
        self.assertFalse(transport.disconnecting)


class MalformedRequestTests(ChannelTestsMixin, SynchronousTestCase):
    def post(self, headers):
        return b"POST /upload HTTP/1.1\r\nHost: gw.example\r\n" + headers + b"\r\nabc"

    def test_content_length_and_transfer_encoding(self):
        self.assertRefused(
            self.post(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"), 400, b"Bad Request"
        )

    def test_malformed_content_length(self):
        for value in (b"abc", b"-1", b"+3", b"3 3", b"0x3", b"1,2"):
            self.assertRefused(self.post(b"Content-Length: " + value + b"\r\n"), 400, b"Bad Request")


class LlhttpRefusalTests(ChannelTestsMixin, SynchronousTestCase):
    """What the module says llhttp refuses is a JSON 400 and a closed connection."""

    def test_refused(self):
        for data in [
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo-colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\nHost: x\n\n",
            b"NONSENSE\r\n\r\n",
            b"FROB / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            # An upgrade other than a WebSocket, with a body llhttp would not frame.
            b"POST /x HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
            b"Content-Length: 3\r\n\r\nabc",
        ]:
            self.assertRefused(data, 400, b"Bad Request")

    def test_upgrade_without_body_is_forwarded(self):
        """An upgrade the gateway does not tunnel goes on as a plain request,
        and the connection parses the next one."""
        data = b"GET /x HTTP/1.1\r\nHost: gw\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
        _, transport = self.send(data)
        self.assertEqual(self.agent.requests, [(b"GET", b"/x")])
        self.assertEqual(transport.value(), b"")


class AfterRefusalTests(ChannelTestsMixin, SynchronousTestCase):
    def test_later_bytes_ignored(self):
        channel, transport = self.assertRefused(
            get(b"/" + b"a" * MAX_REQUEST_LINE), 414, b"URI Too Long"
        )
        written = transport.value()
        channel.dataReceived(get())
        self.assertEqual(transport.value(), written)

    def test_pipelined_request_not_served(self):
        data = get(b"/" + b"a" * MAX_REQUEST_LINE) + get()
        _, transport = self.send(data)
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)

    def test_others_still_served(self):
        self.assertRefused(get(extra=headers_of(MAX_HEADERS)), 431, b"Request Header Fields Too Large")
        self.assertServed(get())


class NormalRequestTests(ChannelTestsMixin, SynchronousTestCase):
    def test_health(self):
        _, transport = self.send(get())
        status, _, headers, _ = parse_response(transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        self.assertFalse(transport.disconnecting)

    def test_forwarded_request_reaches_agent(self):
        _, transport = self.send(get(b"/gradio_api/info?x=%2F"))
        self.assertEqual(self.agent.requests, [(b"GET", b"/gradio_api/info?x=%2F")])
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)

    def test_request_records_start(self):
        self.reactor.advance(42)
        channel, _ = self.send(get(b"/upstream"))
        request = channel.requests[0]
        self.assertIsInstance(request, GatewayRequest)
        self.assertEqual(request.started, 42)
        self.assertTrue(request.forwarded)

    def test_client_gone_counted_once_as_failed(self):
        channel, _ = self.send(get(b"/upstream"))
        request = channel.requests[0]
        self.assertEqual(self.stats.snapshot().in_flight, 1)
        self.reactor.advance(2)
        channel.connectionLost(Failure(ConnectionLost()))
        snap = self.stats.snapshot()
        self.assertEqual((snap.requests, snap.errors, snap.in_flight), (1, 1, 0))
        self.assertAlmostEqual(snap.mean_latency_ms, 2000.0)
        self.assertFalse(request.mark_logged())


class ConnectionFactsTests(ChannelTestsMixin, SynchronousTestCase):
    def test_is_secure_follows_the_connection(self):
        """isSecure is worked out once per connection, and right for each kind."""
        from twisted.internet.interfaces import ISSLTransport
        from zope.interface import directlyProvides

        for secure in (False, True):
            channel, transport = self.connect()
            if secure:
                directlyProvides(transport, ISSLTransport)
            channel.dataReceived(get(b"/api"))
            [request] = channel.requests
            self.assertIs(request.isSecure(), secure)
            self.assertIs(channel.isSecure(), secure)

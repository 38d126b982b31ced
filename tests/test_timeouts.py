"""Tests of the gateway's timers (L{wighaven.proxy.channel}, L{wighaven.proxy.forward}).

- HEADER_TIMEOUT: a request head must be complete within that time of its
  first byte (of the connection opening, for the first request), in all:
  a silent or trickling client gets a self-framed 408 and is closed. The
  timer is not reset by each byte, and starts again for the next request
  on a keep-alive connection.
- KEEPALIVE_TIMEOUT: a persistent connection with nothing in progress is
  closed after that much silence, counted from the end of the last response.
- STREAM_IDLE_TIMEOUT: a response body that goes silent that long is cut
  (the client's connection aborted, so it can't take the truncated body for
  a whole one); a request body that goes silent that long gets the client
  disconnected. Neither bounds a stream that keeps flowing, and
  UPSTREAM_TIMEOUT bounds only the wait for response headers.

The timer logic is driven with a MemoryReactorClock through the real
GatewaySite (L{wighaven.run.service.build_site}) over StringTransports; a few
integration tests check the same over real sockets with small timeouts.
"""

import json
import socket
import time

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import PotentialDataLoss
from twisted.web._newclient import Response, ResponseFailed
from twisted.web.http_headers import Headers

from wighaven.config.settings import load_config
from wighaven.run.service import build_site
from wighaven.proxy.deadlines import RESOLUTION
from wighaven.proxy.upstream import UpstreamResponse
from .support.agents import SendsThroughRequest

from tests.support.waiting import wait_until
from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import start_gateway

GATEWAY_ADDRESS = IPv4Address("TCP", "127.0.0.1", 7860)
PEER = IPv4Address("TCP", "203.0.113.7", 50000)

HEADER_TIMEOUT = 10.0
KEEPALIVE_TIMEOUT = 30.0
STREAM_IDLE_TIMEOUT = 5.0


# --- fakes and helpers --------------------------------------------------------


class Call:
    """One request the L{HandAgent} received; the test answers it by hand."""

    def __init__(self, method, target, body_producer, cancelled):
        self.method = method
        self.target = target
        self.body_producer = body_producer
        self.deferred = defer.Deferred(lambda _: cancelled.append(self))


class HandAgent(SendsThroughRequest):
    """The BackendAgent interface: records requests, answers only when told."""

    def __init__(self):
        self.calls = []
        self.cancelled = []

    def request(self, method, target, headers, body_producer):
        call = Call(method, target, body_producer, self.cancelled)
        self.calls.append(call)
        return call.deferred


class BackendResponse:
    """
    A response of Twisted's HTTP client whose body the test feeds by hand,
    as the client parser would. C{transport} is what the gateway sees as
    the backend connection: its C{producerState} shows whether the gateway
    paused or stopped it.
    """

    def __init__(self, content_type=b"text/plain"):
        self.transport = StringTransport()
        headers = Headers({b"content-type": [content_type]})
        self.response = Response._construct(
            (b"HTTP", 1, 1), 200, b"OK", headers, self.transport, None
        )
        self.released = 0

    def release(self):
        self.released += 1

    def upstream(self):
        return UpstreamResponse(self.response, Headers(), self.release)

    def send(self, data):
        self.response._bodyDataReceived(data)

    def end(self):
        """The whole body has arrived."""
        self.response._bodyDataFinished()

    def connection_lost_mid_body(self):
        """What the client parser reports when the connection closes mid-body."""
        self.response._bodyDataFinished(Failure(ResponseFailed([Failure(ConnectionDone())])))


def split_response(data):
    """(status, headers dict with lower-cased names, rest after the head)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status, headers, rest


def get(path=b"/gateway-health", extra=b""):
    return b"GET " + path + b" HTTP/1.1\r\nHost: gw.example\r\n" + extra + b"\r\n"


class SiteTestsMixin:
    """A GatewaySite over a L{HandAgent}, a MemoryReactorClock and StringTransports."""

    settings = {}

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.agent = HandAgent()
        env = {
            "PRIVATE_BACKEND_URL": "https://user-space.hf.space",
            "HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "KEEPALIVE_TIMEOUT": str(KEEPALIVE_TIMEOUT),
            "UPSTREAM_TIMEOUT": "1000",
        }
        env.update(self.settings)
        self.config = load_config(env)
        self.site = build_site(self.config, self.agent, self.reactor)

    def connect(self):
        channel = self.site.buildProtocol(GATEWAY_ADDRESS)
        transport = StringTransport(hostAddress=GATEWAY_ADDRESS, peerAddress=PEER)
        channel.makeConnection(transport)
        return channel, transport

    def advance_to(self, when):
        """Move the clock to C{when} seconds (it starts at 0)."""
        self.reactor.advance(when - self.reactor.seconds())

    def advance_past(self, when):
        """
        Move the clock to the first deadline sweep after C{when}: a timeout
        due at C{when} has fired by then (never before C{when}, at most one
        RESOLUTION after it).
        """
        self.advance_to(when + RESOLUTION)

    def answer_at(self, when, body=b"first"):
        """At C{when}, the backend answers the one forwarded request: C{body}, then its end."""
        [call] = self.agent.calls
        self.advance_to(when)
        backend = BackendResponse()
        call.deferred.callback(backend.upstream())
        if body:
            backend.send(body)
        backend.end()

    def assertOpen(self, transport):
        self.assertFalse(transport.disconnecting)

    def assertStatuses(self, transport, statuses):
        """The client has received exactly responses with C{statuses}, in order."""
        data = transport.value()
        found = [int(part.split(b" ", 2)[0]) for part in data.split(b"HTTP/1.1 ")[1:]]
        self.assertEqual(found, statuses, data[:300])

    def assert408(self, transport, before=b""):
        """After C{before}, exactly one self-framed 408, and the connection closed."""
        data = transport.value()
        self.assertTrue(data.startswith(before), data[:200])
        status, headers, body = split_response(data[len(before):])
        self.assertEqual(status, 408)
        self.assertEqual(headers[b"connection"], [b"close"])
        self.assertEqual(headers[b"content-type"], [b"application/json"])
        self.assertEqual(headers[b"content-length"], [b"%d" % len(body)])
        self.assertEqual(json.loads(body)["error"], "request_timeout")
        self.assertTrue(transport.disconnecting)


# --- HEADER_TIMEOUT -------------------------------------------------------------


class HeaderTimeoutTests(SiteTestsMixin, SynchronousTestCase):
    def test_silent_connection_gets_408_then_is_closed(self):
        _, transport = self.connect()
        self.advance_to(HEADER_TIMEOUT - 0.01)
        self.assertEqual(transport.value(), b"")
        self.assertOpen(transport)
        self.advance_past(HEADER_TIMEOUT)
        self.assert408(transport)
        self.assertEqual(self.agent.calls, [])

    def test_trickled_head_gets_408_at_timeout_after_first_byte(self):
        """A byte every HEADER_TIMEOUT/10: the head timer is not reset by each byte."""
        channel, transport = self.connect()
        head = get(b"/upstream")
        step = HEADER_TIMEOUT / 10
        sent = 0
        for i, byte in enumerate(head):
            self.advance_to(i * step)
            if transport.disconnecting:
                break
            channel.dataReceived(bytes([byte]))
            sent += 1
            if (i + 1) * step < HEADER_TIMEOUT:
                # Still within HEADER_TIMEOUT of the first byte: nothing yet.
                self.reactor.advance(step - 0.01)
                self.assertEqual(transport.value(), b"", i)
                self.assertOpen(transport)
        self.assertEqual(self.reactor.seconds(), HEADER_TIMEOUT)
        self.assertLess(sent, len(head))
        self.assert408(transport)
        # The rest of the head is ignored: nothing is forwarded.
        channel.dataReceived(head[sent:])
        self.assertEqual(self.agent.calls, [])
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 1)

    def test_complete_head_in_time_then_no_408(self):
        """A request whose head came in time may take as long as it needs."""
        channel, transport = self.connect()
        self.advance_to(HEADER_TIMEOUT - 1)
        channel.dataReceived(get(b"/slow-backend"))
        [call] = self.agent.calls
        self.assertEqual(call.target, b"/slow-backend")
        self.advance_to(HEADER_TIMEOUT * 5)
        self.assertEqual(transport.value(), b"")
        self.assertOpen(transport)
        backend = BackendResponse()
        call.deferred.callback(backend.upstream())
        backend.send(b"late but fine")
        backend.end()
        status, _, _ = split_response(transport.value())
        self.assertEqual(status, 200)
        self.assertIn(b"late but fine", transport.value())
        self.assertOpen(transport)

    def test_served_request_not_followed_by_408(self):
        channel, transport = self.connect()
        channel.dataReceived(get())
        self.assertStatuses(transport, [200])
        self.advance_to(HEADER_TIMEOUT * 2)
        self.assertStatuses(transport, [200])
        self.assertOpen(transport)

    def test_slow_body_after_a_timely_head_not_cut_by_head_timer(self):
        """The head timer governs the head only; a body that keeps coming is read."""
        channel, transport = self.connect()
        body = b"0123456789"
        channel.dataReceived(
            b"POST /upload HTTP/1.1\r\nHost: gw.example\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        [call] = self.agent.calls
        self.assertIsNotNone(call.body_producer)
        for i, byte in enumerate(body):
            self.advance_to((i + 1) * HEADER_TIMEOUT / 2)
            self.assertOpen(transport)
            channel.dataReceived(bytes([byte]))
        self.assertEqual(self.reactor.seconds(), HEADER_TIMEOUT * 5)
        self.assertEqual(transport.value(), b"")
        self.assertOpen(transport)
        self.assertTrue(call.body_producer.ended)

    def test_head_timer_restarts_for_next_request(self):
        channel, transport = self.connect()
        channel.dataReceived(get())
        self.assertStatuses(transport, [200])
        first = transport.value()
        start = HEADER_TIMEOUT * 2  # well after the first head's deadline
        self.advance_to(start)
        channel.dataReceived(b"GET /gateway-health HT")
        self.advance_to(start + HEADER_TIMEOUT - 0.01)
        self.assertEqual(transport.value(), first)
        self.assertOpen(transport)
        self.advance_past(start + HEADER_TIMEOUT)
        self.assert408(transport, before=first)

    def test_next_request_in_time_served(self):
        channel, transport = self.connect()
        channel.dataReceived(get())
        start = HEADER_TIMEOUT * 2
        self.advance_to(start)
        channel.dataReceived(b"GET /gateway-health HT")
        self.advance_to(start + HEADER_TIMEOUT - 1)
        channel.dataReceived(b"TP/1.1\r\nHost: gw.example\r\n\r\n")
        self.assertStatuses(transport, [200, 200])
        self.advance_to(start + HEADER_TIMEOUT * 2)
        self.assertStatuses(transport, [200, 200])
        self.assertOpen(transport)


    def test_pipelined_requests_behind_a_slow_one_served(self):
        """A head that came in time is not timed out while it waits its turn."""
        channel, transport = self.connect()
        channel.dataReceived(get(b"/upstream") + get())
        answered = HEADER_TIMEOUT * 5
        self.answer_at(answered)
        self.assertStatuses(transport, [200, 200])
        self.advance_to(answered + HEADER_TIMEOUT * 2)
        self.assertStatuses(transport, [200, 200])
        self.assertOpen(transport)

    def test_pipelined_incomplete_head_timed_from_its_turn(self):
        """Part of the next head sent early: its HEADER_TIMEOUT runs once its turn comes."""
        channel, transport = self.connect()
        channel.dataReceived(get(b"/upstream") + b"GET /gateway-health HTTP/1.1\r\nHo")
        answered = HEADER_TIMEOUT * 5
        self.answer_at(answered)
        self.assertStatuses(transport, [200])
        written = transport.value()
        self.advance_to(answered + HEADER_TIMEOUT - 0.01)
        self.assertOpen(transport)
        self.advance_past(answered + HEADER_TIMEOUT)
        self.assert408(transport, before=written)


    def test_pipelined_fragment_without_line_end_gets_head_timer(self):
        """Even a next request's first bytes with no line end yet are timed as a head."""
        channel, transport = self.connect()
        channel.dataReceived(get(b"/upstream") + b"GET /gateway-he")
        answered = HEADER_TIMEOUT * 5
        self.answer_at(answered, body=b"")
        written = transport.value()
        self.advance_to(answered + HEADER_TIMEOUT)
        self.assert408(transport, before=written)


class ShortStreamIdleTimeoutTests(SiteTestsMixin, SynchronousTestCase):
    """STREAM_IDLE_TIMEOUT shorter than the others governs bodies only."""

    settings = {"STREAM_IDLE_TIMEOUT": "1"}

    def test_head_timer_not_cut_short(self):
        channel, transport = self.connect()
        self.advance_to(HEADER_TIMEOUT - 0.01)
        self.assertOpen(transport)
        self.advance_past(HEADER_TIMEOUT)
        self.assert408(transport)

    def test_keepalive_not_cut_short(self):
        channel, transport = self.connect()
        channel.dataReceived(get())
        self.advance_to(KEEPALIVE_TIMEOUT - 0.01)
        self.assertOpen(transport)
        self.advance_past(KEEPALIVE_TIMEOUT)
        self.assertTrue(transport.disconnecting)

    def test_silent_upload_cut(self):
        channel, transport = self.connect()
        channel.dataReceived(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhalf!")
        self.advance_to(0.9)
        channel.dataReceived(b"1")  # every byte restarts the body timer
        self.advance_to(1.8)
        self.assertOpen(transport)
        self.advance_past(1.9)
        self.assertTrue(transport.disconnecting)


# --- KEEPALIVE_TIMEOUT -----------------------------------------------------------


class KeepAliveTimeoutTests(SiteTestsMixin, SynchronousTestCase):
    def assertClosedQuietly(self, transport, written):
        """Closed (not aborted) with nothing more written."""
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.assertEqual(transport.value(), written)

    def test_idle_connection_closed_after_keepalive_timeout_not_before(self):
        channel, transport = self.connect()
        channel.dataReceived(get())
        self.assertStatuses(transport, [200])
        written = transport.value()
        self.advance_to(KEEPALIVE_TIMEOUT - 0.01)
        self.assertOpen(transport)
        self.advance_past(KEEPALIVE_TIMEOUT)
        self.assertClosedQuietly(transport, written)

    def test_counted_from_the_end_of_the_response(self):
        channel, transport = self.connect()
        channel.dataReceived(get(b"/upstream"))
        answered = KEEPALIVE_TIMEOUT  # the backend takes its time
        self.answer_at(answered, body=b"body")
        self.assertStatuses(transport, [200])
        self.assertTrue(transport.value().endswith(b"0\r\n\r\n"))
        written = transport.value()
        self.advance_to(answered + KEEPALIVE_TIMEOUT - 0.01)
        self.assertOpen(transport)
        self.advance_past(answered + KEEPALIVE_TIMEOUT)
        self.assertClosedQuietly(transport, written)

    def test_new_request_before_timeout_served(self):
        channel, transport = self.connect()
        channel.dataReceived(get())
        second = KEEPALIVE_TIMEOUT - 1
        self.advance_to(second)
        channel.dataReceived(get())
        self.assertStatuses(transport, [200, 200])
        written = transport.value()
        # The keep-alive wait starts again from the second response.
        self.advance_to(second + KEEPALIVE_TIMEOUT - 0.01)
        self.assertOpen(transport)
        self.advance_past(second + KEEPALIVE_TIMEOUT)
        self.assertClosedQuietly(transport, written)

    def test_new_request_started_before_timeout_then_head_timer_applies(self):
        channel, transport = self.connect()
        channel.dataReceived(get())
        written = transport.value()
        started = KEEPALIVE_TIMEOUT - 1
        self.advance_to(started)
        channel.dataReceived(b"GET /gateway-health HTTP/1.1\r\n")
        # Past the keep-alive deadline: the connection is no longer idle.
        self.advance_to(started + HEADER_TIMEOUT - 0.01)
        self.assertEqual(transport.value(), written)
        self.assertOpen(transport)
        self.advance_past(started + HEADER_TIMEOUT)
        self.assert408(transport, before=written)


# --- STREAM_IDLE_TIMEOUT on responses ----------------------------------------------


class ResponseIdleTimeoutTests(SiteTestsMixin, SynchronousTestCase):
    settings = {"STREAM_IDLE_TIMEOUT": str(STREAM_IDLE_TIMEOUT)}

    def start_stream(self, content_type=b"text/event-stream"):
        channel, transport = self.connect()
        channel.dataReceived(get(b"/events"))
        [call] = self.agent.calls
        backend = BackendResponse(content_type)
        call.deferred.callback(backend.upstream())
        return transport, backend

    def assertStreaming(self, transport):
        status, headers, _ = split_response(transport.value())
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"transfer-encoding"], [b"chunked"])

    def test_silent_stream_cut_after_idle_timeout(self):
        transport, backend = self.start_stream()
        backend.send(b"data: 1\n\n")
        self.assertIn(b"data: 1\n\n", transport.value())
        self.assertStreaming(transport)
        self.advance_to(STREAM_IDLE_TIMEOUT - 0.01)
        self.assertEqual(backend.transport.producerState, "producing")
        self.advance_past(STREAM_IDLE_TIMEOUT)
        # The gateway gives up on the backend connection...
        self.assertEqual(backend.transport.producerState, "stopped")
        # ...whose client then reports the body broken off: the client's
        # connection is aborted, with no end-of-body chunk.
        backend.connection_lost_mid_body()
        self.assertTrue(transport.disconnected)
        self.assertFalse(transport.value().endswith(b"0\r\n\r\n"))

    def test_each_chunk_restarts_the_idle_timer(self):
        transport, backend = self.start_stream()
        step = STREAM_IDLE_TIMEOUT - 1
        for i in range(10):  # 40 s in all, eight times STREAM_IDLE_TIMEOUT
            self.advance_to((i + 1) * step)
            self.assertEqual(backend.transport.producerState, "producing", i)
            backend.send(b"data: %d\n\n" % i)
        backend.end()
        self.assertStreaming(transport)
        self.assertFalse(transport.disconnected)
        body = transport.value()
        self.assertIn(b"data: 9\n\n", body)
        self.assertTrue(body.endswith(b"0\r\n\r\n"))
        self.assertOpen(transport)
        # The timer is gone with the body: nothing is cut later.
        self.advance_to(self.reactor.seconds() + STREAM_IDLE_TIMEOUT * 3)
        self.assertEqual(backend.transport.producerState, "producing")
        self.assertEqual(transport.value(), body)

    def test_cut_of_a_close_delimited_body_is_never_a_clean_end(self):
        """A body without length ends when its connection closes: a cut must still abort."""
        transport, backend = self.start_stream(b"text/plain")
        backend.send(b"partial-body")
        self.advance_to(STREAM_IDLE_TIMEOUT)
        self.assertEqual(backend.transport.producerState, "stopped")
        # Twisted reports a close-delimited body's end as PotentialDataLoss.
        backend.response._bodyDataFinished(Failure(PotentialDataLoss()))
        self.assertTrue(transport.disconnected)
        self.assertFalse(transport.value().endswith(b"0\r\n\r\n"))

    def test_silence_before_the_first_chunk_counts(self):
        transport, backend = self.start_stream(b"application/octet-stream")
        self.advance_to(STREAM_IDLE_TIMEOUT - 0.01)
        self.assertEqual(backend.transport.producerState, "producing")
        self.advance_past(STREAM_IDLE_TIMEOUT)
        self.assertEqual(backend.transport.producerState, "stopped")
        backend.connection_lost_mid_body()
        # The head was relayed the moment it arrived; the body, cut before
        # its first byte, never gets its end: the client sees a broken answer.
        self.assertTrue(transport.disconnected)
        self.assertStreaming(transport)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))
        self.assertFalse(transport.value().endswith(b"0\r\n\r\n"))


# --- over real sockets -------------------------------------------------------------




def timed(d):
    """Fire with (result, seconds taken) of Deferred C{d} started just now."""
    start = time.monotonic()
    return d.addCallback(lambda result: (result, time.monotonic() - start))


class HeaderTimeoutIntegrationTests(TestCase):
    @defer.inlineCallbacks
    def test_incomplete_head_gets_408_over_a_socket(self):
        backend, _, origin = yield start_backend(self)
        _, port = yield start_gateway(self, origin, HEADER_TIMEOUT="0.5")
        out, elapsed = yield timed(raw(port, b"GET /x HTTP/1.1\r\nHost: a\r\n"))
        self.assertTrue(out.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), out[:80])
        self.assertIn(b"Connection: close", out)
        self.assertTrue(0.4 < elapsed < 3.0, elapsed)
        self.assertEqual(backend.requests, [])


class StreamIdleIntegrationTests(TestCase):
    """STREAM_IDLE_TIMEOUT=1 and UPSTREAM_TIMEOUT=0.5 against the real backend."""

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, self.backend_site, origin = yield start_backend(self)
        _, self.port = yield start_gateway(
            self, origin, UPSTREAM_TIMEOUT="0.5", STREAM_IDLE_TIMEOUT="1"
        )

    @defer.inlineCallbacks
    def test_silent_event_stream_aborted_after_idle_timeout(self):
        request = b"GET /sse?n=3&every=5 HTTP/1.1\r\nHost: a\r\n\r\n"
        out, elapsed = yield timed(raw(self.port, request))
        self.assertTrue(0.9 < elapsed < 3.0, elapsed)
        head, _, body = out.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"Transfer-Encoding: chunked", head)
        self.assertIn(b"data: event 0", body)
        self.assertNotIn(b"data: event 1", body)
        # Aborted, not ended: no last chunk.
        self.assertFalse(body.endswith(b"0\r\n\r\n"), body[-20:])
        yield wait_until(lambda: not self.backend_site.open, timeout=2)

    @defer.inlineCallbacks
    def test_steady_event_stream_outlives_both_timeouts(self):
        """Events every 0.3 s for 1.5 s: longer than either timeout, and complete."""
        reply, elapsed = yield timed(fetch(self.port, "GET", "/sse?n=6&every=0.3"))
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.get("Content-Type"), "text/event-stream")
        self.assertEqual(
            reply.body, b"".join(b"data: event %d\n\n" % i for i in range(6))
        )
        self.assertGreater(elapsed, 1.4)


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


def _upload(port, head, pieces, every):
    """
    Send C{head}, then C{pieces} C{every} seconds apart; read until the
    connection closes or a response with a Content-Length is complete.
    @return: (bytes read, seconds from the last piece sent to that point)
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(every)
            s.sendall(piece)
        last_sent = time.monotonic()
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            data += chunk
            response_head, found, body = data.partition(b"\r\n\r\n")
            length = _content_length(response_head) if found else None
            if length is not None and len(body) >= length:
                break
        return data, time.monotonic() - last_sent


class UploadIntegrationTests(TestCase):
    """A real backend and gateway (with C{settings}) for uploads over sockets."""

    settings = {}

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, self.backend_site, origin = yield start_backend(self)
        _, self.port = yield start_gateway(self, origin, **self.settings)

    @staticmethod
    def head(length, path=b"/upload"):
        return (
            b"POST %s HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % (path, length)
        )


class UploadIdleIntegrationTests(UploadIntegrationTests):
    """STREAM_IDLE_TIMEOUT=0.5 on request bodies, over real sockets."""

    settings = {"STREAM_IDLE_TIMEOUT": "0.5"}

    @defer.inlineCallbacks
    def test_upload_that_goes_silent_is_disconnected(self):
        out, silent_for = yield deferToThread(
            _upload, self.port, self.head(1000), [b"x" * 500], 0
        )
        self.assertTrue(0.4 < silent_for < 3.0, silent_for)
        self.assertFalse(out.startswith(b"HTTP/1.1 2"), out[:80])
        # The half body was on its way to the backend, which never answered;
        # the upstream request is given up with the client.
        self.assertEqual(self.backend_site.body_bytes, 500)
        self.assertEqual(self.backend.requests, [])
        yield wait_until(lambda: not self.backend_site.open, timeout=2)

    @defer.inlineCallbacks
    def test_upload_with_pauses_shorter_than_the_timeout_completes(self):
        pieces = [b"y" * 100] * 5  # 1.2 s in all, never silent for 0.5 s
        out, _ = yield deferToThread(_upload, self.port, self.head(500), pieces, 0.3)
        status, _, body = split_response(out)
        self.assertEqual(status, 200, out[:200])
        self.assertEqual(json.loads(body)["length"], 500)


class UpstreamTimeoutUploadIntegrationTests(UploadIntegrationTests):
    """UPSTREAM_TIMEOUT=0.5 counts from the body's last byte, not from the head."""

    settings = {"UPSTREAM_TIMEOUT": "0.5"}

    @defer.inlineCallbacks
    def test_upload_longer_than_the_timeout_succeeds(self):
        pieces = [b"u" * 1000] * 6  # 1.5 s of sending, three times UPSTREAM_TIMEOUT
        out, _ = yield deferToThread(
            _upload, self.port, self.head(6000), pieces, 0.3
        )
        status, _, body = split_response(out)
        self.assertEqual(status, 200, out[:200])
        self.assertEqual(json.loads(body)["length"], 6000)

    @defer.inlineCallbacks
    def test_timeout_counted_from_the_last_byte_sent(self):
        pieces = [b"h" * 100] * 4  # 0.9 s of sending, then the backend never answers
        out, waited = yield deferToThread(
            _upload, self.port, self.head(400, b"/hang"), pieces, 0.3
        )
        status, _, _ = split_response(out)
        self.assertEqual(status, 504, out[:200])
        self.assertTrue(0.4 < waited < 2.0, waited)

"""The upstream HTTP client: requests to the one configured backend, sent
on the pool's L{wighaven.proxy.upstream_protocol.UpstreamProtocol} connections.

Why not Agent.request(uri): it parses a URL per request, and its URI parser
drops an empty query (C{/a?} becomes C{/a}), so the target would not reach
the backend byte for byte. L{BackendAgent} parses the backend's origin once
and sends the client's raw target as the request path: the host and port
can never come from the request.

Two ways in, one rule:
  - L{BackendAgent.send} is the forwarding path's: the response goes to a
    sink (L{IExchangeSink}) piece by piece as it is parsed, with no
    Deferred, Headers, Response or Failure made for a request that goes
    well. It returns the exchange's handle (L{Exchange}): the push
    producer over the connection's reading, C{abort} and C{release}.
  - L{BackendAgent.request} answers through Twisted's Response interface
    (a Deferred firing with an L{UpstreamResponse}, deliverBody), for
    callers that want Twisted's client shape; it stands on C{send}.

Rule: one exchange per request, on an idle connection taken at once (no
Deferred) or on a new one. At most C{max_connections} exchanges hold a
slot at once; the rest wait in line, in order. A slot is held from the
start until C{release} (the caller calls it when the body is done, or when
the response is a long-lived stream), and given back by itself when the
exchange fails before its head or is aborted. The response's head reaches
the sink the moment it is parsed, even while the request body is still
going up (full duplex).

Failures reach the sink as Twisted's client's failures, so
L{wighaven.proxy.errors} classifies them as before: before the head,
L{ResponseNeverReceived} (the connection closed), L{ResponseFailed} (an
unparseable response) or L{RequestGenerationFailed} (the body could not be
sent whole), each holding the connection's own loss (a TLS error...) when
there is one; connection failures come from the endpoint as they are.
After the head, a broken body is a L{ResponseFailed}. An aborted exchange
tells its sink nothing more.

Retry: an idempotent request without a body is sent once more, on a new
connection, when the kept-alive connection it was sent on closed before the
head (the backend's keep-alive timeout raced it); an aborted one never.
"""

from __future__ import annotations

import collections

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionAborted
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    RequestGenerationFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from zope.interface import Interface, implementer

from .transport import for_connecting
from .upstream_protocol import (
    BAD_RESPONSE,
    CLOSED_BEFORE_HEAD,
    NOWHERE,
    IResponseSink,
    new_connection,
    take_idle,
)

__all__ = ["BackendAgent", "Exchange", "ExchangeFailed", "IExchangeSink", "UpstreamResponse"]

_IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])

# What Twisted's response parser (HTTPClientParser.CONNECTION_CONTROL_HEADERS)
# files apart from the response's headers; Content-Length stays with them in
# the answer to a HEAD.
_CONNECTION_CONTROL = frozenset([
    b"content-length", b"connection", b"keep-alive", b"te", b"trailers",
    b"transfer-encoding", b"upgrade", b"proxy-connection",
])

# How a failure before the head reaches the caller, by its reason.
_BEFORE_HEAD = {CLOSED_BEFORE_HEAD: ResponseNeverReceived, BAD_RESPONSE: ResponseFailed}


class ExchangeFailed(Exception):
    """
    Why an exchange failed, as L{wighaven.proxy.upstream_protocol} says it
    (C{closed_before_head}, C{closed_mid_body}, C{bad_response},
    C{upload_failed}): the reason inside the failures this module reports.
    """


class IExchangeSink(Interface):
    """
    Where L{BackendAgent.send} hands a response. Each exchange ends with
    exactly one C{response_done} or C{response_failed}, unless it is
    aborted (then nothing more comes).
    """

    def response_head(status, reason, headers):
        """
        The final head: C{headers} a list of C{(name, value)} pairs as
        received (see L{IResponseSink.response_head}; connection headers
        included, the caller filters them).
        """

    def response_body(data):
        """A piece of the decoded body."""

    def response_done():
        """The body ended cleanly."""

    def response_failed(failure):
        """The exchange failed: a Failure of Twisted's client's kinds (see the module)."""


@implementer(IResponseSink, IPushProducer)
class Exchange:
    """
    One request's exchange: between the agent's line and slots, the
    connection and the caller's sink. The caller keeps it as the handle of
    its exchange: a push producer over the response's reading (pauses are
    kept while no connection is there yet), C{abort} and C{release}.
    """

    __slots__ = ("_agent", "_request", "_sink", "_connection", "_connecting", "_reused",
                 "_live", "_paused", "_held", "_head_seen")

    def __init__(self, agent, request, sink):
        self._agent = agent
        self._request = request  # (method, target, headers, body)
        self._sink = sink
        self._connection = None
        self._connecting = None  # the Deferred of a new connection
        self._reused = False
        self._live = True  # neither ended nor aborted
        self._paused = False
        self._held = False  # holds a slot
        self._head_seen = False

    # The caller's side.

    @property
    def in_line(self) -> bool:
        """Is the exchange still waiting for a slot?"""
        return self._live and not self._held and self._connection is None

    def release(self):
        """Give the exchange's slot back (once; later calls do nothing)."""
        if self._held:
            self._held = False
            self._agent._slot_freed()

    def abort(self):
        """
        Give up on the exchange: its connection is closed at once (or its
        connecting cancelled, or its place in line left) and its slot
        given back; the sink hears nothing more. Nothing once it has ended.

        @return: a Deferred firing once its connection is gone, when it had one.
        """
        if not self._live:
            return None
        self._live = False
        self._sink = NOWHERE
        self.release()
        if self._connection is not None:
            return self._connection.abort()
        if self._connecting is not None:
            self._connecting.cancel()
        else:
            self._agent._left_line()
        return None

    def pauseProducing(self):
        self._paused = True
        if self._live and self._connection is not None:
            self._connection.pause_reading()

    def resumeProducing(self):
        self._paused = False
        if self._live and self._connection is not None:
            self._connection.resume_reading()

    stopProducing = abort

    # The agent's side.

    def start(self):
        """A slot is this exchange's: send on an idle connection, or a new one."""
        self._held = True
        connection = take_idle(self._agent._pool, self._agent._key)
        if connection is None:
            self._connect()
        else:
            self._reused = True
            self._send_on(connection)

    def _connect(self):
        agent = self._agent
        self._reused = False
        self._connecting = d = new_connection(agent._pool, agent._key, agent.endpoint)
        d.addCallbacks(self._connected, self._not_connected)

    def _connected(self, connection):
        self._connecting = None
        if self._live:
            self._send_on(connection)

    def _not_connected(self, failure):
        self._connecting = None
        if self._live:  # else cancelled by abort: nobody is told
            self._fail(failure)

    def _send_on(self, connection):
        self._connection = connection
        method, target, headers, body = self._request
        try:
            connection.send(method, target, headers, body, self)
        except ValueError:  # a header the request line can't carry: nothing was sent
            self._connection = None
            connection.abort()
            self._fail(Failure(RequestGenerationFailed([Failure()])))
            return
        if self._paused and self._live:
            connection.pause_reading()

    def _fail(self, failure):
        self._live = False
        self.release()
        sink, self._sink = self._sink, NOWHERE
        sink.response_failed(failure)

    # IResponseSink, from the connection.

    def response_head(self, status, reason, headers):
        self._head_seen = True
        self._sink.response_head(status, reason, headers)

    def response_body(self, data):
        self._sink.response_body(data)

    def response_done(self):
        self._live = False
        sink, self._sink = self._sink, NOWHERE
        sink.response_done()

    def response_failed(self, reason):
        method, _, _, body = self._request
        if (reason == CLOSED_BEFORE_HEAD and self._reused and body is None
                and method in _IDEMPOTENT):
            self._connection = None
            self._connect()  # once: a new connection is not reused
            return
        # The connection's own loss (a TLS error...) says more, when there is one.
        cause = self._connection.lost_reason or Failure(ExchangeFailed(reason))
        if self._head_seen:
            kind = ResponseFailed
        else:
            kind = _BEFORE_HEAD.get(reason, RequestGenerationFailed)
        self._fail(Failure(kind([cause])))


@attrs.frozen
class UpstreamResponse:
    """
    The backend's response with the connection headers Twisted keeps apart,
    and C{release}: call it when the exchange no longer needs its slot (the
    body is done, or the response is a long-lived stream); calling it again
    does nothing.
    """

    response: object
    connection_headers: object  # twisted.web.http_headers.Headers
    release: object = lambda: None
    # Closes the exchange's connection at once (its request can't finish);
    # does nothing once the exchange has ended.
    abort: object = lambda: None


def _split_head(headers, method: bytes):
    """
    The response's end-to-end headers and its connection-control headers
    (two Headers), filed as Twisted's client files them: names lowered,
    values stripped.
    """
    end_to_end, control = Headers(), Headers()
    for name, value in headers:
        name = name.lower()
        apart = name in _CONNECTION_CONTROL and not (method == b"HEAD" and name == b"content-length")
        (control if apart else end_to_end).addRawHeader(name, value.strip())
    return end_to_end, control


class _Response:
    """The backend's response, read as Twisted's Response is."""

    __slots__ = ("code", "phrase", "headers", "_answer")

    def __init__(self, code, phrase, headers, answer):
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self._answer = answer

    def deliverBody(self, protocol):
        """Hand the body to C{protocol} (an IProtocol), as it arrives."""
        self._answer.deliver(protocol)


@implementer(IExchangeSink, IPushProducer)
class _TwistedAnswer:
    """
    The sink of L{BackendAgent.request}: fires its Deferred with the head,
    then is the transport of the protocol the body is delivered to. Body
    bytes that come before deliverBody are held, with reading paused.
    """

    def __init__(self, method):
        self._method = method
        self.exchange = None
        self.deferred = Deferred(self._cancel)
        self._body = None  # the body's protocol, once delivered
        self._held = []  # body bytes in before deliverBody
        self._end = None  # the body's end, when it came before deliverBody
        self._reader_paused = False
        self._ended = False

    def _cancel(self, deferred):
        in_line = self.exchange.in_line
        self.exchange.abort()
        if in_line:  # left the line: nothing was sent
            deferred.errback(Failure(CancelledError()))
        else:
            deferred.errback(Failure(ResponseNeverReceived([Failure(CancelledError())])))

    def _abort(self):
        if not self._ended:
            self._ended = True
            self.exchange.abort()

    # IExchangeSink

    def response_head(self, status, reason, headers):
        self.exchange.pauseProducing()  # until deliverBody
        end_to_end, control = _split_head(headers, self._method)
        exchange = self.exchange
        self.deferred.callback(UpstreamResponse(
            _Response(status, reason, end_to_end, self), control, exchange.release, self._abort
        ))

    def response_body(self, data):
        if self._body is None:
            self._held.append(data)
        else:
            self._body.dataReceived(data)

    def response_done(self):
        self._ended = True
        self._body_ended(Failure(ResponseDone("Response body fully received")))

    def response_failed(self, failure):
        self._ended = True
        if not self.deferred.called:
            self.deferred.errback(failure)
        else:
            self._body_ended(failure)

    # The body's side.

    def deliver(self, protocol):
        self._body = protocol
        protocol.makeConnection(self)
        held, self._held = self._held, None
        for data in held:
            protocol.dataReceived(data)
        if self._end is not None:
            protocol.connectionLost(self._end)
        elif not self._reader_paused:
            self.exchange.resumeProducing()

    def _body_ended(self, reason):
        if self._body is None:
            self._end = reason
        else:
            self._body.connectionLost(reason)

    # IPushProducer, for the body's protocol (readBody calls abortConnection).

    def pauseProducing(self):
        self._reader_paused = True
        self.exchange.pauseProducing()

    def resumeProducing(self):
        self._reader_paused = False
        self.exchange.resumeProducing()

    def stopProducing(self):
        """Give up on the body: its protocol hears a broken end once the connection is gone."""
        if self._ended:
            return
        self._ended = True
        lost = self.exchange.abort()
        if lost is not None:
            lost.addCallback(
                lambda _: self._body.connectionLost(
                    Failure(ResponseFailed([Failure(ConnectionAborted())]))
                )
            )

    abortConnection = stopProducing


class BackendAgent:
    """
    Sends requests to one fixed backend over C{pool}.

    @param origin: the backend's origin, e.g. C{b"https://user-space.hf.space"}.
    @param pool: an L{wighaven.proxy.upstream_protocol.upstream_pool}.
    @param tls_policy: an IPolicyForHTTPS (verifies certificate and hostname).
    @param pool_key_extra: kept in the pool key beside the origin (see above).
    @param connect_reactor: the reactor its endpoint connects with (default:
        L{for_connecting}'s, whose connections are the leaner FastClient
        transports); a L{wighaven.routing.connect_guard.GuardedReactor} for
        an upstream added through the admin API.
    """

    def __init__(self, reactor, origin: bytes, pool, tls_policy, max_connections: int = 256,
                 pool_key_extra=None, connect_reactor=None):
        if connect_reactor is None:
            connect_reactor = for_connecting(reactor)
        agent = Agent(connect_reactor, contextFactory=tls_policy, pool=pool)
        self._free = max_connections
        self._line = collections.deque()  # Exchanges waiting for a slot
        self._left = 0  # of those, how many were aborted while waiting
        self._pool = pool
        uri = URI.fromBytes(origin + b"/")
        self.endpoint = agent._getEndpoint(uri)
        # The pool's key: the origin, plus (when given) what else sets the
        # connection apart, such as the CA bundle its certificate was checked with.
        self._key = (uri.scheme, uri.host, uri.port)
        if pool_key_extra is not None:
            self._key += (pool_key_extra,)

    # endpoint: connects to the backend (TLS verified); also used on its own
    # for connections that leave HTTP (WebSocket tunnels).

    def send(self, method: bytes, target: bytes, headers, body, sink) -> Exchange:
        """
        Send C{method} C{target} (the raw request target, starting with /)
        with C{headers} (a list of C{(name, [values])}, written as given)
        and C{body} (None or an IBodyProducer); the response goes to C{sink}
        (an L{IExchangeSink}), which may hear from it before this returns.

        @return: the L{Exchange}, the caller's handle.
        """
        exchange = Exchange(self, (method, target, headers, body), sink)
        if self._free:
            self._free -= 1
            exchange.start()
        else:
            self._line.append(exchange)
        return exchange

    def request(self, method: bytes, target: bytes, headers, body_producer):
        """
        L{send}, answered the way Twisted's client answers: C{headers} a
        Headers; cancelling the returned Deferred aborts the exchange.

        @return: a Deferred firing with an L{UpstreamResponse}.
        """
        answer = _TwistedAnswer(method)
        answer.exchange = self.send(
            method, target, list(headers.getAllRawHeaders()), body_producer, answer
        )
        return answer.deferred

    @property
    def waiting(self) -> int:
        """Requests waiting in line for a free slot."""
        return len(self._line) - self._left

    def _left_line(self):
        self._left += 1

    def _slot_freed(self):
        """A slot is free: the first live exchange in line takes it."""
        line = self._line
        while line:
            exchange = line.popleft()
            if exchange._live:
                exchange.start()
                return
            self._left -= 1
        self._free += 1

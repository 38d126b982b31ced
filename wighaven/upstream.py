"""The upstream HTTP client: requests to the one configured backend, sent
on the pool's L{wighaven.upstream_protocol.UpstreamProtocol} connections,
answered through Twisted's Response interface.

Why not Agent.request(uri): it parses a URL per request, and its URI parser
drops an empty query (C{/a?} becomes C{/a}), so the target would not reach
the backend byte for byte. L{BackendAgent} parses the backend's origin once
and sends the client's raw target as the request path: the host and port
can never come from the request.

Rule: one exchange per request, on an idle connection taken at once or on a
new one. The response's head fires the request's Deferred the moment it is
parsed, even while the request body is still going up (full duplex: a
backend that answers before it has read the whole upload, or streams while
it reads, is relayed at once). The L{UpstreamResponse} holds what Twisted's
client gave: a response with code, phrase, its end-to-end headers and
deliverBody, and apart from them the connection-control headers Twisted's
parser kept to itself (Connection, Content-Length, Transfer-Encoding...): a
proxy must read Connection to drop the headers it names. The body protocol's
transport is a push producer over the connection's reading; the bytes that
came with the head wait (reading paused, so one read at most) until
deliverBody.

Failures are Twisted's client's, so L{wighaven.errors} classifies them as
before: before the head, L{ResponseNeverReceived} (the connection closed),
L{ResponseFailed} (an unparseable response) or L{RequestGenerationFailed}
(the body could not be sent whole); connection failures come from the
endpoint as they are. After the head, the body protocol's connectionLost
gets L{ResponseDone} for a clean end and L{ResponseFailed} for a broken one.
Cancelling a request aborts its connection; it fails with a
L{ResponseNeverReceived} holding a CancelledError.

Retry: an idempotent request without a body is sent once more, on a new
connection, when the kept-alive connection it was sent on closed before the
head (the backend's keep-alive timeout raced it); a cancelled one never.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
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
from zope.interface import implementer

from .transport import for_connecting
from .upstream_protocol import (
    BAD_RESPONSE,
    CLOSED_BEFORE_HEAD,
    IResponseSink,
    new_connection,
    take_idle,
)

__all__ = ["BackendAgent", "ExchangeFailed", "UpstreamResponse"]

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
    Why an exchange failed, as L{wighaven.upstream_protocol} says it
    (C{closed_before_head}, C{closed_mid_body}, C{bad_response},
    C{upload_failed}): the reason inside the failures this module reports.
    """


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


class _Slot:
    """One request's place among the UPSTREAM_MAX_CONNECTIONS in flight."""

    def __init__(self, semaphore):
        self._semaphore = semaphore
        self._held = False

    def taken(self):
        self._held = True

    def release(self):
        if self._held:
            self._held = False
            self._semaphore.release()

    def release_on_failure(self, failure):
        self.release()
        return failure


def _cancelled(failure) -> bool:
    """True when the request failed because it was cancelled on purpose."""
    return any(reason.check(CancelledError) for reason in getattr(failure.value, "reasons", ()))


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

    __slots__ = ("code", "phrase", "headers", "_exchange")

    def __init__(self, code, phrase, headers, exchange):
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self._exchange = exchange

    def deliverBody(self, protocol):
        """Hand the body to C{protocol} (an IProtocol), as it arrives."""
        self._exchange.deliver(protocol)


@implementer(IResponseSink, IPushProducer)
class _Exchange:
    """
    One request on one connection: the sink of its response, then the
    transport of the protocol its body is delivered to. Its connection is
    its own while the exchange is in flight (C{_live}) and no longer: from
    its response's end, the pool may hand it to another request.
    """

    def __init__(self, connection, method, release):
        self._connection = connection
        self._live = True
        self._method = method
        self._release = release
        self.deferred = Deferred(self._cancel)
        self._body = None  # the body's protocol, once delivered
        self._held = []  # body bytes in before deliverBody
        self._end = None  # the body's end, when it came before deliverBody
        self._reader_paused = False

    def _cancel(self, deferred):
        self.abort()
        deferred.errback(Failure(ResponseNeverReceived([Failure(CancelledError())])))

    def abort(self):
        """Close the connection at once, while the exchange is in flight."""
        if self._live:
            self._live = False
            return self._connection.abort()
        return None

    # IResponseSink

    def response_head(self, status, reason, headers):
        self._connection.pause_reading()  # until deliverBody
        end_to_end, control = _split_head(headers, self._method)
        self.deferred.callback(UpstreamResponse(
            _Response(status, reason, end_to_end, self), control, self._release, self.abort
        ))

    def response_body(self, data):
        if self._body is None:
            self._held.append(data)
        else:
            self._body.dataReceived(data)

    def response_done(self):
        self._live = False
        self._ended(Failure(ResponseDone("Response body fully received")))

    def response_failed(self, reason):
        self._live = False
        # The connection's own loss (a TLS error...) says more, when there is one.
        cause = self._connection.lost_reason or Failure(ExchangeFailed(reason))
        if not self.deferred.called:
            self.deferred.errback(Failure(_BEFORE_HEAD.get(reason, RequestGenerationFailed)([cause])))
        else:
            self._ended(Failure(ResponseFailed([cause])))

    # The body's side.

    def deliver(self, protocol):
        self._body = protocol
        protocol.makeConnection(self)
        held, self._held = self._held, None
        for data in held:
            protocol.dataReceived(data)
        if self._end is not None:
            protocol.connectionLost(self._end)
        elif self._live and not self._reader_paused:
            self._connection.resume_reading()

    def _ended(self, reason):
        if self._body is None:
            self._end = reason
        else:
            self._body.connectionLost(reason)

    # IPushProducer, for the body's protocol (readBody calls abortConnection).

    def pauseProducing(self):
        self._reader_paused = True
        if self._live:
            self._connection.pause_reading()

    def resumeProducing(self):
        self._reader_paused = False
        if self._live:
            self._connection.resume_reading()

    def stopProducing(self):
        """Give up on the body: its protocol hears a broken end once the connection is gone."""
        lost = self.abort()
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
    @param pool: an L{wighaven.upstream_protocol.upstream_pool}.
    @param tls_policy: an IPolicyForHTTPS (verifies certificate and hostname).
    """

    def __init__(self, reactor, origin: bytes, pool, tls_policy, max_connections: int = 256):
        # Connections made for this agent are the leaner FastClient transports.
        agent = Agent(for_connecting(reactor), contextFactory=tls_policy, pool=pool)
        self._slots = DeferredSemaphore(max_connections)
        self._pool = pool
        uri = URI.fromBytes(origin + b"/")
        self.endpoint = agent._getEndpoint(uri)
        self._key = (uri.scheme, uri.host, uri.port)

    # endpoint: connects to the backend (TLS verified); also used on its own
    # for connections that leave HTTP (WebSocket tunnels).

    def request(self, method: bytes, target: bytes, headers, body_producer):
        """
        Send C{method} C{target} (the raw request target, starting with /)
        with C{headers} (a Headers, written as its getAllRawHeaders gives).

        At most C{max_connections} requests are in flight at once; the rest
        wait in line (cancelling the returned Deferred leaves the line).

        @return: a Deferred firing with an L{UpstreamResponse}.
        """
        slot = _Slot(self._slots)
        d = self._slots.acquire()
        d.addCallback(self._send_in_slot, slot, method, target, headers, body_producer)
        d.addErrback(slot.release_on_failure)
        return d

    @property
    def waiting(self) -> int:
        """Requests waiting in line for a free slot."""
        return len(self._slots.waiting)

    def _send_in_slot(self, _, slot, method, target, headers, body_producer):
        slot.taken()
        exchange = (method, target, list(headers.getAllRawHeaders()), body_producer, slot.release)
        connection = take_idle(self._pool, self._key)
        if connection is None:
            return self._send_on_new(*exchange)
        d = self._send_on(connection, *exchange)
        if body_producer is None and method in _IDEMPOTENT:
            d.addErrback(self._retry, exchange)
        return d

    def _retry(self, failure, exchange):
        if not failure.check(ResponseNeverReceived) or _cancelled(failure):
            return failure
        return self._send_on_new(*exchange)

    def _send_on_new(self, *exchange):
        d = new_connection(self._pool, self._key, self.endpoint)
        return d.addCallback(self._send_on, *exchange)

    def _send_on(self, connection, method, target, headers, body_producer, release):
        exchange = _Exchange(connection, method, release)
        try:
            connection.send(method, target, headers, body_producer, exchange)
        except ValueError:  # a header the request line can't carry: nothing was sent
            exchange.abort()
            exchange.deferred.errback(RequestGenerationFailed([Failure()]))
        return exchange.deferred

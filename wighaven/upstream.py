"""The upstream HTTP client: Twisted's HTTP/1.1 client over the shared
pool, pinned to the one configured backend.

Why not Agent.request(uri): it parses a URL per request, and its URI parser
drops an empty query (C{/a?} becomes C{/a}), so the target would not reach
the backend byte for byte. L{BackendAgent} parses the backend's origin once
and sends the client's raw target as the request path: the host and port
can never come from the request.

Why it reaches into the HTTP client (private names: setup.py caps Twisted at
the releases where tests/test_twisted_private.py, which tests each of them,
passes): Twisted's client
parser files the response's Connection, Content-Length and Transfer-Encoding
under connection-control headers that the Response does not expose. A
proxy must read Connection to drop the headers it names, so the parser of
each request is kept and its connection headers handed on with the
response (L{UpstreamResponse}). For the same reason the pool's automatic
retry (which swaps connections, and parsers, behind our back) is replaced by
the same rule applied here: an idempotent request without a body is sent
once more on a fresh connection when a kept-alive one died before answering.
"""

from __future__ import annotations

import attrs
from twisted.internet.defer import CancelledError, DeferredSemaphore
from twisted.web._newclient import (
    Request,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseNeverReceived,
)
from twisted.web.client import URI, Agent

from .transport import for_connecting

__all__ = ["BackendAgent", "UpstreamResponse"]

_IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"])
_RETRYABLE = (RequestNotSent, RequestTransmissionFailed, ResponseNeverReceived)


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
    # Closes the exchange's connection at once (its request can't finish).
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


class BackendAgent:
    """
    Sends requests to one fixed backend over C{pool}.

    @param origin: the backend's origin, e.g. C{b"https://user-space.hf.space"}.
    @param tls_policy: an IPolicyForHTTPS (verifies certificate and hostname).
    """

    def __init__(self, reactor, origin: bytes, pool, tls_policy, max_connections: int = 256):
        # Connections made for this agent are the leaner FastClient transports.
        agent = Agent(for_connecting(reactor), contextFactory=tls_policy, pool=pool)
        self._slots = DeferredSemaphore(max_connections)
        pool.retryAutomatically = False
        self._pool = pool
        self._uri = URI.fromBytes(origin + b"/")
        self.endpoint = agent._getEndpoint(self._uri)
        self._key = (self._uri.scheme, self._uri.host, self._uri.port)

    # endpoint: connects to the backend (TLS verified); also used on its own
    # for connections that leave HTTP (WebSocket tunnels).

    def request(self, method: bytes, target: bytes, headers, body_producer):
        """
        Send C{method} C{target} (the raw request target, starting with /).

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
        d = self._send(method, target, headers, body_producer, slot.release)
        if body_producer is None and method in _IDEMPOTENT:
            d.addErrback(self._retry, method, target, headers, slot.release)
        return d

    def _retry(self, failure, method, target, headers, release):
        if not failure.check(*_RETRYABLE) or _cancelled(failure):
            return failure
        return self._send(method, target, headers, None, release)

    def _send(self, method, target, headers, body_producer, release):
        d = self._pool.getConnection(self._key, self.endpoint)
        return d.addCallback(self._send_on, method, target, headers, body_producer, release)

    def _send_on(self, protocol, method, target, headers, body_producer, release):
        request = Request._construct(
            method, target, headers, body_producer, persistent=True, parsedURI=self._uri
        )
        d = protocol.request(request)
        parser = protocol._parser
        if parser is None:  # the request was refused at once (RequestNotSent)
            return d
        abort = protocol.transport.abortConnection
        return d.addCallback(
            lambda response: UpstreamResponse(response, parser.connHeaders, release, abort)
        )

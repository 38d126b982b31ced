"""What the client is told when the backend can't answer.

Rule: a failure of the upstream request maps to 502 (the backend could not
be reached, refused, failed TLS, broke the connection) or 504 (no response
headers within UPSTREAM_TIMEOUT), with a short JSON body
C{{"error": "...", "detail": "..."}}. Details are fixed phrases chosen here,
never an exception's text, so nothing the gateway knows (such as the token)
can leak into them.
"""

from __future__ import annotations

import json
from typing import Optional

import attrs
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived, RequestGenerationFailed

__all__ = ["GatewayError", "classify_failure", "error_body"]


@attrs.frozen
class GatewayError:
    """An error answer of the gateway's own: status, code and a fixed detail."""

    status: int
    code: str
    detail: str
    retry_after: Optional[int] = None  # seconds, for a limit that frees up by itself


BAD_REQUEST_TARGET = GatewayError(400, "bad_request", "the request target must be a path")
METHOD_NOT_ALLOWED = GatewayError(405, "method_not_allowed", "TRACE and CONNECT are not forwarded")
NOT_FOUND = GatewayError(404, "not_found", "no gateway endpoint here")
NO_ROUTE = GatewayError(404, "no_route", "no route of the gateway takes this host and path")
ROUTE_DISABLED = GatewayError(503, "route_disabled",
                              "this Space is switched off by the gateway's administrator")
GATEWAY_TIMEOUT = GatewayError(504, "gateway_timeout", "the backend did not answer in time")
TOO_MANY_WEBSOCKETS = GatewayError(
    503, "too_many_websockets", "the gateway has MAX_WEBSOCKETS WebSockets open; try again later",
    retry_after=5,
)
TOO_MANY_STREAMS = GatewayError(
    503, "too_many_streams", "the gateway has MAX_STREAMS event streams open; try again later",
    retry_after=5,
)
TOO_MANY_FROM_ADDRESS = GatewayError(
    429, "too_many_from_address",
    "this address holds MAX_CONNECTIONS_PER_IP WebSockets and event streams already",
    retry_after=5,
)


def _inner_reasons(failure):
    """The failure and every failure wrapped inside it (ResponseNeverReceived etc.)."""
    stack = [failure]
    while stack:
        current = stack.pop()
        yield current
        reasons = getattr(current.value, "reasons", None)
        if reasons:
            stack.extend(reasons)


def classify_failure(failure) -> GatewayError:
    """Map a failure of the upstream request to the error the client gets."""
    reasons = list(_inner_reasons(failure))
    for reason in reasons:
        if reason.check(defer.TimeoutError, error.TimeoutError):
            return GATEWAY_TIMEOUT
    for reason in reasons:
        if reason.check(VerificationError):
            return GatewayError(
                502, "bad_gateway", "TLS: the backend's certificate does not match its hostname"
            )
        if reason.check(SSL.Error):
            return GatewayError(
                502, "bad_gateway", "TLS handshake with the backend failed (certificate not trusted)"
            )
    for reason in reasons:
        if reason.check(error.DNSLookupError):
            return GatewayError(502, "bad_gateway", "the backend's hostname could not be resolved")
        if reason.check(error.ConnectionRefusedError):
            return GatewayError(502, "bad_gateway", "the backend refused the connection")
        if reason.check(error.ConnectError):
            return GatewayError(502, "bad_gateway", "the backend could not be reached")
    if failure.check(ResponseNeverReceived, ResponseFailed):
        return GatewayError(502, "bad_gateway", "the backend closed the connection without an answer")
    if failure.check(RequestGenerationFailed):
        return GatewayError(502, "bad_gateway", "the request could not be sent to the backend")
    return GatewayError(502, "bad_gateway", "the backend could not be reached")


# Reasons Twisted's table lacks (it says "Unknown Status").
_PHRASES = {429: b"Too Many Requests"}


def error_body(err: GatewayError, **extra) -> bytes:
    """The JSON body of an error answer."""
    body = {"error": err.code, "detail": err.detail}
    body.update(extra)
    return json.dumps(body).encode("utf-8")


def respond_with_error(request, err: GatewayError) -> bytes:
    """Set status and headers of C{request} for C{err}; return the body to write."""
    request_id = getattr(request, "request_id", None)
    if request_id is not None:
        request.responseHeaders.setRawHeaders(b"X-Request-ID", [request_id])
        body = error_body(err, request_id=request_id.decode("ascii"))
    else:
        body = error_body(err)
    request.setResponseCode(err.status, _PHRASES.get(err.status))
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"Cache-Control", [b"no-store"])
    request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
    if err.retry_after is not None:
        request.responseHeaders.setRawHeaders(b"Retry-After", [b"%d" % err.retry_after])
    if err.status == 405:
        request.responseHeaders.setRawHeaders(b"Allow", [b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"])
    return body

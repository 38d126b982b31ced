"""The admin panel's "test connection": one GET to an upstream, its status and time.

Rules: the URL has passed the upstream checks (server-side request forgery)
before it gets here; TLS is verified as for forwarding (the gateway's CA
bundle); the token goes in the header forwarding would put it in; no
redirect is followed; the body is never read (the connection is closed once
the status is in), so a huge or endless answer costs nothing. The outcome
carries no token and no text of the upstream's answer, only its status, the
time and, on failure, a fixed sentence of what went wrong.
"""

from __future__ import annotations

from twisted.internet import defer, error, protocol
from twisted.web.client import Agent
from twisted.web.http_headers import Headers

__all__ = ["TEST_TIMEOUT", "test_connection"]

TEST_TIMEOUT = 10.0  # seconds the whole test may take

_FAILURES = (
    (defer.TimeoutError, "no answer within %d seconds" % TEST_TIMEOUT),
    (defer.CancelledError, "no answer within %d seconds" % TEST_TIMEOUT),
    (error.DNSLookupError, "the host name could not be resolved"),
    (error.ConnectionRefusedError, "the connection was refused"),
    (error.TimeoutError, "the connection timed out"),
)


class _Discard(protocol.Protocol):
    """Takes the answer's body and hangs up at once: only the status was wanted."""

    def connectionMade(self):
        self.transport.stopProducing()


def _reason(failure) -> str:
    for kind, sentence in _FAILURES:
        if failure.check(kind):
            return sentence
    text = failure.getErrorMessage().lower()
    if "certificate" in text or "ssl" in text or "tls" in text:
        return "the TLS certificate could not be verified"
    return "the connection failed"


def test_connection(reactor, tls_policy, url: str, path: str = "/", token=None,
                    token_header: str = "authorization") -> defer.Deferred:
    """
    GET C{url}C{path} once; fires with C{{"ok", "status", "duration_ms", "error"}}
    (never fails). C{ok}: an answer below 500 came.
    """
    agent = Agent(reactor, contextFactory=tls_policy, connectTimeout=TEST_TIMEOUT)
    headers = Headers({b"User-Agent": [b"WigHaven-Gateway connection test"]})
    if token:
        name = b"Authorization" if token_header == "authorization" else b"X-HF-Authorization"
        headers.setRawHeaders(name, [b"Bearer " + token.encode("utf-8")])
    started = reactor.seconds()
    target = (url.rstrip("/") + path).encode("ascii")
    # maybeDeferred: a URL the client can't even start with is an answer too, never a 500.
    d = defer.maybeDeferred(agent.request, b"GET", target, headers)
    d.addTimeout(TEST_TIMEOUT, reactor)

    def answered(response):
        response.deliverBody(_Discard())
        return {"ok": response.code < 500, "status": response.code,
                "duration_ms": round((reactor.seconds() - started) * 1000.0, 1), "error": None}

    def failed(failure):
        return {"ok": False, "status": None,
                "duration_ms": round((reactor.seconds() - started) * 1000.0, 1),
                "error": _reason(failure)}

    return d.addCallbacks(answered, failed)

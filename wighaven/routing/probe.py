"""Active health: an upstream is probed on a schedule, not only judged by traffic.

Rule (issue "many Spaces", active health): per upstream of a route, one
probe every C{health_interval} seconds (10), the first one at once:

  - the route has C{health_path}: C{GET {upstream.url}{health_path}} with
    the upstream's token (C{Authorization: Bearer ...}, or the configured
    token header), TLS verified with the upstream's CA bundle. A 2xx or 3xx
    answer is up (redirects are not followed: a redirect would carry the
    token wherever the upstream points); any other answer, a timeout, a
    connect or TLS error is down.
  - else the upstream has C{space}: ask the Hub,
    C{GET {HF_ENDPOINT}/api/spaces/{space}/runtime}, with the upstream's
    token. Only C{"stage": "RUNNING"} is up; any other stage (BUILDING,
    SLEEPING, PAUSED, RUNTIME_ERROR...) is down with the stage kept. The
    Space's app itself is never touched in this mode, so a sleeping Space
    is not woken (nor billed) just to be checked.
  - neither: no active check; passive health (L{wighaven.routing.health})
    is all there is.

Each probe has a timeout (L{probe_timeout}: the interval, at most 10 s), and
the probes of one upstream never overlap: one still running when the next
is due means that turn is skipped, so a slow upstream never piles up
connections. Answer bodies are read up to L{BODY_CAP} (64 KiB), never more.

Secrets: the token goes only into the request header of the probe it
belongs to, to the origin it belongs to. It is kept out of every repr, and
every detail is built from the error's kind (and scrubbed of the token in
case), so no log line, snapshot or last_error can carry it. A state change
(up -> down, down -> up, and a first answer of down) is logged once; a
probe that changes nothing logs nothing.

Why the Agent and not treq's request(): treq's client wraps its agent in a
cookie jar (an upstream's cookies would come back on every probe), gzip
decoding and, unless told otherwise, redirect following; and treq's body
collection cannot be cancelled, so a body that stalls after its head would
hold the connection open past the timeout. The probes use
L{twisted.web.client.Agent} over a non-persistent pool with a body reader
of their own that is capped and cancellable.

The clock is the reactor's (task.Clock in tests); L{ActiveHealth} keeps the
schedule and the state; the balancer asks L{ActiveHealth.available}.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

import attrs
from OpenSSL import SSL
from twisted.internet import defer, error, task
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web._newclient import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)

__all__ = [
    "ActiveHealth", "BODY_CAP", "CheckResult", "DEFAULT_HF_ENDPOINT", "DEFAULT_INTERVAL",
    "check_for", "hub_runtime_check", "path_check", "probe_timeout",
]

DEFAULT_INTERVAL = 10.0
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
BODY_CAP = 64 * 1024
_MAX_TIMEOUT = 10.0
_USER_AGENT = b"WigHaven-Gateway health probe"


def probe_timeout(interval: float) -> float:
    """The timeout of one probe: the interval (probes must not overlap), at most 10 s."""
    return min(interval, _MAX_TIMEOUT)


@attrs.frozen
class CheckResult:
    """What one probe found. C{detail} says why down; C{stage} is the Hub's, when asked."""

    up: bool
    detail: Optional[str] = None
    stage: Optional[str] = None


class ActiveHealth:
    """
    The active health of one upstream, probed every C{interval} seconds.

    @param clock: an IReactorTime (task.Clock in tests).
    @param check: a zero-argument callable returning a Deferred that fires
        with a L{CheckResult} (an errback counts as down); see
        L{check_for}.
    @param name: how log lines name the upstream (never its token).
    """

    _log = Logger()

    def __init__(self, clock, check: Callable[[], defer.Deferred],
                 interval: float = DEFAULT_INTERVAL, name: str = ""):
        self._clock = clock
        self._check = check
        self.interval = interval
        self.name = name
        self.state = "unknown"
        self.last_error: Optional[str] = None
        self.stage: Optional[str] = None
        self.checked_at: Optional[float] = None
        self.skipped = 0  # turns skipped because the previous probe still ran
        self._loop: Optional[task.LoopingCall] = None
        self._running: Optional[defer.Deferred] = None

    def __repr__(self) -> str:
        return "<ActiveHealth %s %s>" % (self.name or "?", self.state)

    def available(self) -> bool:
        """May the upstream take requests? Only a probe that said down says no."""
        return self.state != "down"

    def start(self) -> None:
        """Probe at once, then every C{interval} seconds; a no-op when started."""
        if self._loop is not None:
            return
        loop = task.LoopingCall(self._probe)
        loop.clock = self._clock
        self._loop = loop
        loop.start(self.interval, now=True)

    def stop(self) -> None:
        """Stop the schedule and cancel a probe in flight; idempotent."""
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        running, self._running = self._running, None
        if running is not None:
            running.cancel()  # its outcome is ignored: it is no longer _running

    def snapshot(self) -> dict:
        """The state for the dashboard and /_gateway pages."""
        return {
            "state": self.state,
            "last_error": self.last_error,
            "stage": self.stage,
            "checked_at": self.checked_at,
        }

    def _probe(self) -> None:
        # Never returns the Deferred: LoopingCall would stop on its errback,
        # and the overlap rule is ours to keep (skip, don't queue).
        if self._running is not None:
            self.skipped += 1
            return
        d = defer.maybeDeferred(self._check)
        self._running = d
        d.addCallbacks(self._answered, self._failed, callbackArgs=(d,), errbackArgs=(d,))

    def _answered(self, result, d) -> None:
        if d is not self._running:
            return  # stopped meanwhile
        self._running = None
        if not isinstance(result, CheckResult):
            result = CheckResult(False, "check gave %s, not a CheckResult" % type(result).__name__)
        self._record(result)

    def _failed(self, failure: Failure, d) -> None:
        if d is not self._running:
            return None  # cancelled by stop(): swallowed
        self._running = None
        # Only the error's kind: its message is not ours and might hold anything.
        self._record(CheckResult(False, "check failed: %s" % failure.type.__name__))
        return None

    def _record(self, result: CheckResult) -> None:
        before = self.state
        self.state = "up" if result.up else "down"
        self.stage = result.stage
        self.checked_at = self._clock.seconds()
        if not result.up:
            self.last_error = result.detail or "down"
        if self.state == before:
            return
        if self.state == "down":
            self._log.warn(
                "upstream {name} is down: {detail}", name=self.name, detail=self.last_error,
                stage=self.stage,
            )
        elif before == "down":
            self._log.info("upstream {name} is up again", name=self.name, stage=self.stage)
        # unknown -> up: the normal start, not worth a line per upstream.


class _TooBig(Exception):
    """The answer's body went over the cap."""


class _CappedBody(Protocol):
    """Collects a response body up to C{cap} bytes; aborts the connection past it."""

    def __init__(self, cap: int, finished: defer.Deferred):
        self._cap = cap
        self._parts = []
        self._size = 0
        self.finished: Optional[defer.Deferred] = finished

    def dataReceived(self, data: bytes) -> None:
        if self.finished is None:
            return
        self._size += len(data)
        if self._size > self._cap:
            d, self.finished = self.finished, None
            self.transport.stopProducing()
            d.errback(_TooBig())
            return
        self._parts.append(data)

    def connectionLost(self, reason=None) -> None:
        if self.finished is None:
            return
        d, self.finished = self.finished, None
        if reason is None or reason.check(ResponseDone, PotentialDataLoss):
            d.callback(b"".join(self._parts))
        else:
            d.errback(reason)

    def abort(self) -> None:
        self.finished = None
        if self.transport is not None:
            self.transport.stopProducing()


def _read_capped(response, cap: int = BODY_CAP) -> defer.Deferred:
    """The body of C{response}, at most C{cap} bytes (else _TooBig); cancelling aborts it."""
    proto = _CappedBody(cap, None)
    d = defer.Deferred(lambda _: proto.abort())
    proto.finished = d
    response.deliverBody(proto)
    return d


def _header_value(token: Optional[str]) -> Optional[bytes]:
    """C{Bearer <token>} as bytes; refuses a token that isn't one header-safe line."""
    if token is None:
        return None
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("the token is not ASCII") from None
    if any(c < 0x21 or c == 0x7F for c in raw):
        raise ValueError("the token holds spaces or control characters")
    return b"Bearer " + raw


def _tls_reason(value) -> str:
    """A short TLS reason: OpenSSL's reason string, or a hostname mismatch."""
    if isinstance(value, SSL.Error):
        reasons = [entry[-1] for entry in (value.args[0] if value.args else []) if entry]
        if reasons and isinstance(reasons[0], str):
            return "TLS: " + reasons[0]
        return "TLS: handshake failed"
    return "TLS: certificate does not match the host"


def _is_tls(value) -> bool:
    if isinstance(value, SSL.Error):
        return True
    try:
        from service_identity import VerificationError
        from service_identity.exceptions import CertificateError
    except ImportError:  # pragma: no cover - service_identity is a dependency
        return False
    return isinstance(value, (VerificationError, CertificateError))


def _describe(failure: Failure, timeout: float) -> str:
    """
    A short, secret-free description of why a probe failed. Built from the
    error's type (and OpenSSL's reason strings), never from arbitrary
    messages, so nothing the request carried can leak through it.
    """
    value = failure.value
    if isinstance(value, defer.TimeoutError):
        return "timeout after %gs" % timeout
    if isinstance(value, _TooBig):
        return "answer over %d KiB" % (BODY_CAP // 1024)
    if isinstance(value, error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(value, error.DNSLookupError):
        return "DNS lookup failed"
    if isinstance(value, (error.TCPTimedOutError, error.TimeoutError)):
        return "connect timed out"
    if isinstance(value, error.NoRouteError):
        return "no route to host"
    if isinstance(value, error.ConnectError):
        return "connect failed (%s)" % type(value).__name__
    if _is_tls(value):
        return _tls_reason(value)
    if isinstance(value, (ResponseNeverReceived, ResponseFailed, RequestTransmissionFailed)):
        for reason in value.reasons:
            if _is_tls(reason.value):
                return _tls_reason(reason.value)
        if isinstance(value, ResponseNeverReceived):
            return "connection closed before an answer"
        if isinstance(value, RequestTransmissionFailed):
            return "connection closed while sending"
        return "connection lost mid-answer"
    return "error: %s" % type(value).__name__


class _Probe:
    """What both checks share: the Agent, the timeout, the token kept out of sight."""

    def __init__(self, reactor, tls_policy, timeout: float, token: Optional[str], pool):
        self._reactor = reactor
        self._timeout = timeout
        self._token = token
        self._auth = _header_value(token)
        if pool is None:
            pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent = Agent(reactor, contextFactory=tls_policy, pool=pool)

    def __call__(self) -> defer.Deferred:
        """One probe: a Deferred firing with a L{CheckResult} (errback only when cancelled)."""
        d = defer.maybeDeferred(self._attempt)
        expired = []

        def expire():
            # Cancelling aborts the connection; what that surfaces as depends
            # on the phase (CancelledError, ResponseNeverReceived...), so the
            # flag, not the error, says it was the timeout.
            expired.append(True)
            d.cancel()

        call = self._reactor.callLater(self._timeout, expire)

        def done(result):
            if call.active():
                call.cancel()
            if isinstance(result, Failure):
                if expired:
                    result = CheckResult(False, "timeout after %gs" % self._timeout)
                elif result.check(defer.CancelledError):
                    return result  # cancelled from outside: no result to give
                else:
                    result = CheckResult(False, _describe(result, self._timeout))
            return self._scrubbed(result)

        return d.addBoth(done)

    def _get(self, url: str, header: bytes, extra=()) -> defer.Deferred:
        headers = Headers({b"user-agent": [_USER_AGENT]})
        for name, value in extra:
            headers.setRawHeaders(name, [value])
        if self._auth is not None:
            headers.setRawHeaders(header, [self._auth])
        return self._agent.request(b"GET", url.encode("ascii"), headers)

    def _attempt(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _scrubbed(self, result: CheckResult) -> CheckResult:
        """Belt and braces: a detail never carries the token, whatever built it."""
        token = self._token
        if token and result.detail and token in result.detail:
            result = attrs.evolve(result, detail=result.detail.replace(token, "[token]"))
        return result


class _PathCheck(_Probe):
    """GET url+health_path on the upstream itself; 2xx/3xx is up."""

    def __init__(self, reactor, url, health_path, token, tls_policy, timeout, token_header, pool):
        super().__init__(reactor, tls_policy, timeout, token, pool)
        self.target = url.rstrip("/") + health_path
        self._header = token_header.lower().encode("ascii")

    def __repr__(self) -> str:
        return "<path check GET %s>" % (self.target,)

    @defer.inlineCallbacks
    def _attempt(self):
        response = yield self._get(self.target, self._header)
        try:
            # Drained (up to the cap) so the connection ends cleanly; the
            # status alone decides, whatever the body does.
            yield _read_capped(response)
        except defer.CancelledError:
            raise
        except Exception:
            pass
        if 200 <= response.code < 400:
            return CheckResult(True)
        return CheckResult(False, "answered %d" % response.code)


class _HubRuntimeCheck(_Probe):
    """GET the Space's runtime from the Hub; stage RUNNING is up."""

    def __init__(self, reactor, hf_endpoint, space, token, tls_policy, timeout, pool):
        super().__init__(reactor, tls_policy, timeout, token, pool)
        self.space = space
        self.target = "%s/api/spaces/%s/runtime" % (hf_endpoint.rstrip("/"), space)

    def __repr__(self) -> str:
        return "<Hub runtime check %s>" % (self.target,)

    @defer.inlineCallbacks
    def _attempt(self):
        response = yield self._get(
            self.target, b"authorization", [(b"accept", b"application/json")]
        )
        body = yield _read_capped(response)
        if response.code != 200:
            return CheckResult(False, "Hub answered %d" % response.code)
        try:
            answer = json.loads(body)
        except ValueError:
            return CheckResult(False, "Hub answer is not JSON")
        stage = answer.get("stage") if isinstance(answer, dict) else None
        if not isinstance(stage, str) or not stage:
            return CheckResult(False, "Hub answer has no stage")
        stage = stage[:64]
        if stage == "RUNNING":
            return CheckResult(True, stage=stage)
        return CheckResult(False, "stage %s" % stage, stage=stage)


def path_check(reactor, url: str, health_path: str, token: Optional[str], tls_policy,
               timeout: float, token_header: str = "authorization", pool=None):
    """
    A check callable probing C{url + health_path} (no redirects followed).

    @param token: sent as C{<token_header>: Bearer <token>} (nothing when None).
    @param tls_policy: an IPolicyForHTTPS, e.g. BackendTLSPolicy(ca_bundle).
    @param pool: an HTTPConnectionPool; a non-persistent one of its own by default.
    """
    return _PathCheck(reactor, url, health_path, token, tls_policy, timeout, token_header, pool)


def hub_runtime_check(reactor, hf_endpoint: str, space: str, token: Optional[str], tls_policy,
                      timeout: float, pool=None):
    """
    A check callable asking the Hub at C{hf_endpoint} for the Space's stage;
    the token goes as C{Authorization: Bearer} to the Hub only.
    """
    return _HubRuntimeCheck(reactor, hf_endpoint, space, token, tls_policy, timeout, pool)


def check_for(reactor, route, upstream, hf_endpoint, hub_tls_policy, upstream_tls_policy, timeout,
              pool=None, token_header: str = "authorization", upstream_reactor=None):
    """
    The check for one upstream of a route, or None when it has none.
    C{route.health_path} wins over C{upstream.space}: a route that names a
    health endpoint wants its app asked, through C{upstream_reactor} when
    given (a stored route's: guarded at each connection, as its requests).
    """
    if route.health_path:
        return path_check(
            upstream_reactor or reactor, upstream.url, route.health_path, upstream.token,
            upstream_tls_policy, timeout, token_header=token_header, pool=pool,
        )
    if upstream.space:
        return hub_runtime_check(
            reactor, hf_endpoint or DEFAULT_HF_ENDPOINT, upstream.space, upstream.token,
            hub_tls_policy, timeout, pool=pool,
        )
    return None

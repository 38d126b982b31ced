"""The forwarding resource: one upstream request per client request,
streamed both ways.

Why not treq's request(): treq's HTTPClient always wraps its agent in a
cookie jar (shared by all requests, so one user's cookies would go out on
another's), in gzip content decoding (which rewrites bodies and drops
Content-Encoding) and in redirect following (which would carry the token
wherever a backend points). None of that may happen to proxied traffic, so
this path stands on L{wighaven.proxy.upstream.BackendAgent.send} over a shared
persistent HTTPConnectionPool, with a body producer for the request and a
sink for the response. treq's high-level API serves elsewhere (tests,
probes).

Flow of one request:
  render -> checks (method, target, CORS preflight) -> BackendAgent.send
  with the rebuilt headers, the body and the request's L{_Relay} as the
  sink -> at the response's head (which may come while the body is still
  going up): status and end-to-end headers copied, body relayed piece by
  piece as it arrives. No Deferred, Headers or Failure is made for the
  upstream side of a request that goes well.

Backpressure: the upstream connection is registered as the producer of the
client's response, so a client that reads slowly pauses the backend
connection instead of filling the gateway's memory; one that keeps it
paused gives its in-flight place back (L{wighaven.proxy.slow_clients}).

Failures: before response headers, a failure is answered with 502/504
(see L{wighaven.proxy.errors}); after them, the backend dying mid-body aborts
the client's connection, so the client never takes a truncated body for a
whole one. A client that goes away cancels the upstream request (or stops
reading its body), which closes that upstream connection.
"""

from __future__ import annotations

from typing import Optional

from twisted.logger import Logger
from twisted.web.client import FileBodyProducer
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from . import errors
from ..auth.gate import answer_refusal
from .body import StreamingBody
from .cors import CorsPolicy
from .deadlines import Deadlines
from ..observe.exchange_log import ExchangeLog
from .headers import (
    ResponseShapes, client_origin, downstream_headers, origin_for_upstream, rightmost,
    upstream_headers, upstream_target,
)
from ..observe.metrics import RouteMetrics
from ..routing.affinity import MAX_JOIN_BODY, event_id_from_answer, uploaded_files_from_answer
from ..routing.health import FAILING_STATUSES
from ..routing.retry import may_retry
from .slow_clients import PacedProducer, SlowClients
from .tunnels import STREAM, WEBSOCKET, TunnelLimits
from ..routing.router import single_router
from .upstream import IExchangeSink
from .websocket import WebSocketRelay, is_websocket_upgrade

__all__ = ["ForwardResource"]

_REFUSED_METHODS = frozenset([b"TRACE", b"CONNECT"])
_UNSET = object()


class ForwardResource(Resource):
    """
    Forwards every request it renders to the configured backend.

    @param agent: a L{wighaven.proxy.upstream.BackendAgent} over the shared pool.
    @param config: the gateway's L{wighaven.config.settings.Config}.
    @param reactor: provides callLater for the response-header timeout.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, agent, config, reactor, route=None, tunnels=None, router=None):
        super().__init__()
        self.tunnels = tunnels if tunnels is not None else TunnelLimits.for_config(config)
        if router is None:  # the environment's one backend, over C{agent}
            self.route = route if route is not None else RouteMetrics("backend", reactor)
            router = single_router(config, agent, reactor, self.route)
        self.router = router
        self.gate = None  # with AUTH on, the wighaven.auth.gate.Gate every request passes
        self.render_forbidden = None  # a browser's 403 page, from the gateway's pages
        self._reactor = reactor
        self._timeout = config.upstream_timeout
        self._token_header = config.token_header.encode("ascii")
        self._trust_proxy = config.trust_proxy
        self._ws_idle_timeout = config.ws_idle_timeout
        self._stream_idle_timeout = config.stream_idle_timeout
        self.slow_clients = SlowClients(reactor, config.slow_client_grace)
        self.deadlines = Deadlines(reactor)
        self.shapes = ResponseShapes()
        self._exchange_log = (
            ExchangeLog(config.log_bodies, config.log_bodies_max, None)
            if config.log_bodies != "off"
            else None
        )
        self._cors = (
            CorsPolicy(config.cors_allow_origins, config.cors_allow_headers)
            if config.cors_allow_origins
            else None
        )
        self.table_replaced()

    def table_replaced(self):
        """The router has a new table: LOG_BODIES redacts its tokens."""
        if self._exchange_log is not None:
            self._exchange_log.tokens = tuple(
                u.token for live in self.router.routes for u in live.upstreams if u.token)

    def route_for(self, request):
        """
        The request's L{wighaven.routing.router.LiveRoute} (None: no route
        takes it), worked out once and kept on the request.
        """
        live = getattr(request, "live_route", _UNSET)
        if live is _UNSET:
            live = request.live_route = self.router.route_for(request)
        return live

    def stream_target(self, request) -> Optional[bytes]:
        """
        The upstream target of C{request} when it is to be forwarded, or
        None when the gateway answers it itself (or reads its body first).
        Called when only its head is in, to start forwarding at once.
        """
        if request.method.upper() in _REFUSED_METHODS or self._is_preflight(request):
            return None
        live = request.live_route = self.router.route_for(request)
        if live is None:
            return None
        if self.gate is not None and self._refusal(request, live) is not None:
            return None  # answered by render(), or at once when a body follows
        if live.plain:  # no prefix, no body to read first: the usual case, at no cost
            return upstream_target(request.uri)
        if not live.enabled or live.wants_slash(request) or live.needs_body(request):
            return None
        target = upstream_target(request.uri)
        return None if target is None else live.upstream_target(target)

    def start(self, request, length, target):
        """Forward C{request} to C{target} now; its body (if any) follows as it arrives."""
        live = request.live_route
        if is_websocket_upgrade(request.method, request.requestHeaders):
            hold = self.take_tunnel(request, WEBSOCKET)
            if hold is not None:
                upstream = live.choose(request, secure=self._came_secure(request, live))
                request.upstream_label = upstream.label
                request.notifyFinish().addBoth(hold.release)
                headers = origin_for_upstream(
                    self._upstream_headers(request, live, upstream), self.gateway_origin(request),
                    upstream.model.origin.encode("ascii"))
                WebSocketRelay(
                    request, upstream.agent.endpoint, target, headers, self._reactor,
                    self._timeout, self.deadlines, self._ws_idle_timeout, live.metrics,
                    closed=hold.release,
                )
            return
        if _declares_body(request):
            request.body = StreamingBody(request.channel.transport, length)
        self._forward(request, live, target, request.body, in_head=True)

    def render(self, request):
        """Forward a request whose body has been read already, or answer it."""
        if request.method.upper() in _REFUSED_METHODS:
            return errors.respond_with_error(request, errors.METHOD_NOT_ALLOWED)
        target = upstream_target(request.uri)
        if target is None:
            return errors.respond_with_error(request, errors.BAD_REQUEST_TARGET)
        if self._is_preflight(request):
            return self._answer_preflight(request, _origin_of(request))
        live = self.route_for(request)
        if live is None:
            return errors.respond_with_error(request, errors.NO_ROUTE)
        refusal = self._refusal(request, live) if self.gate is not None else None
        if refusal is not None:
            return answer_refusal(request, refusal, self.render_forbidden)
        if not live.enabled:
            return errors.respond_with_error(request, errors.ROUTE_DISABLED)
        if live.wants_slash(request):
            return _redirect_to_slash(request, live.prefix)
        body = _body_of(request)
        whole = None
        if body is not None and live.needs_body(request):
            whole = request.content.read(MAX_JOIN_BODY + 1)
            request.content.seek(0)
        self._forward(request, live, live.upstream_target(target), body, whole=whole)
        return NOT_DONE_YET

    def _refusal(self, request, live):
        """The gate's refusal of C{request} on C{live} (kept on the request), or None."""
        refusal = request.gate_refusal = self.gate.refusal(request, live.access, live.name)
        if refusal is None:
            request.upstream_auth = self.gate.seen(request).upstream
        return refusal

    def take_tunnel(self, request, kind):
        """
        A place for a long-lived exchange (L{wighaven.proxy.tunnels}), or None when
        the limits are reached, in which case the client has been answered
        (503, or 429 for its own address), on the reactor's next turn: the
        request's head may still be being parsed.
        """
        address = self._trust_proxy.client_address(
            _peer_address(request), request.requestHeaders.getRawHeaders(b"x-forwarded-for", ())
        )
        hold, which = self.tunnels.take(kind, address)
        if hold is None:
            err = errors.TOO_MANY_FROM_ADDRESS if which == "address" else (
                errors.TOO_MANY_WEBSOCKETS if kind == WEBSOCKET else errors.TOO_MANY_STREAMS
            )
            self._reactor.callLater(0, _answer_error, request, err)
        return hold

    def _is_preflight(self, request) -> bool:
        return self._cors is not None and self._cors.is_preflight(
            request.method,
            _origin_of(request),
            request.requestHeaders.getRawHeaders(b"access-control-request-method", [None])[0],
        )

    def _upstream_headers(self, request, live, upstream):
        return upstream_headers(
            request.requestHeaders.getAllRawHeaders(),
            backend_host=upstream.host_header,
            peer=_peer_address(request),
            proto=b"https" if request.isSecure() else b"http",
            token=upstream.token,
            token_header=self._token_header,
            trust_proxy=self._trust_proxy,
            request_id=getattr(request, "request_id", None),
            prefix=live.prefix or None,
            auth=getattr(request, "upstream_auth", None),
        )

    def _forward(self, request, live, target, body, in_head=False, whole=None):
        upstream = live.only or live.choose(
            request, whole, secure=self._came_secure(request, live))
        relay = _Relay(self, request, _origin_of(request), in_head, live, target)
        _when_client_gone(request, relay.client_gone)
        if isinstance(body, StreamingBody):
            body.listener = relay
        relay.send_to(upstream, body)

    def _answer_preflight(self, request, origin):
        request.setResponseCode(204)
        if self._cors.allows(origin):
            wanted = request.requestHeaders.getRawHeaders(b"access-control-request-headers", [None])[0]
            for name, values in self._cors.preflight_headers(origin, wanted):
                request.responseHeaders.setRawHeaders(name, values)
        return b""

    def _came_secure(self, request, live) -> Optional[bool]:
        """Did the client use https (as a trusted proxy says)? Asked for affinity cookies only."""
        if live.cookie is None:
            return None
        origin = self.gateway_origin(request)
        return request.isSecure() if origin is None else origin.startswith(b"https:")

    def gateway_origin(self, request) -> Optional[bytes]:
        """The gateway's origin as this client addressed it (for Location)."""
        headers = request.requestHeaders
        forwarded_proto = forwarded_host = None
        if self._trust_proxy.trusts_peer(_peer_address(request).decode("latin-1")):
            forwarded_proto = rightmost(headers.getRawHeaders(b"x-forwarded-proto"))
            forwarded_host = rightmost(headers.getRawHeaders(b"x-forwarded-host"))
        return client_origin(
            request.isSecure(),
            headers.getRawHeaders(b"host", [None])[0],
            forwarded_proto,
            forwarded_host,
        )

    def response_headers(self, request, raw, origin, upstream=None, prefix=b""):
        """The client's view of the backend's response headers (C{raw}: (name, [values]) pairs)."""
        # The gateway's origin matters only to a Location header: no work without one.
        origin_seen = (
            self.gateway_origin(request)
            if any(name.lower() == b"location" for name, _ in raw)
            else None
        )
        if upstream is None:
            upstream = self.router.routes[0].upstreams[0]
        headers = downstream_headers(raw, upstream.origin_key, origin_seen, prefix)
        if self._cors is not None:
            headers = self._cors.response_headers(headers, origin)
        return headers


def _answer_error(request, err):
    """Answer C{err} unless the client has left or an answer is under way."""
    if request.finished or request.startedWriting or request._disconnected:
        return
    request.write(errors.respond_with_error(request, err))
    request.finish()


def _origin_of(request) -> Optional[bytes]:
    return request.requestHeaders.getRawHeaders(b"origin", [None])[0]


def _when_client_gone(request, callback):
    """C{callback(reason)} if C{request}'s client leaves before its answer ends."""
    watch = getattr(request, "when_client_gone", None)
    if watch is not None:
        watch(callback)  # the gateway's own requests: no Deferred
    else:
        request.notifyFinish().addErrback(callback)


def _peer_address(request) -> bytes:
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    return host.encode("ascii") if host else b"unknown"


def _declares_body(request) -> bool:
    """Did the client frame a body (even an empty one)?"""
    headers = request.requestHeaders
    return headers.hasHeader(b"content-length") or headers.hasHeader(b"transfer-encoding")


def _body_of(request):
    """A producer for the client's request body read already, or None."""
    return FileBodyProducer(request.content) if _declares_body(request) else None


@implementer(IExchangeSink)
class _Relay:
    """
    One forwarded request, from its start to its end: the sink of the
    backend's response (L{wighaven.proxy.upstream.IExchangeSink}), which it
    writes to the client as it arrives, with backpressure.

    Timeouts (one C{deadline} at a time, checked by the resource's
    L{wighaven.proxy.deadlines.Deadlines} sweep): UPSTREAM_TIMEOUT until the
    response's head (not counting the time a streamed body takes to go up:
    see L{upload_started}); then STREAM_IDLE_TIMEOUT of silence in the body
    (the backend sends nothing, or the client has stopped reading and so
    paused it) cuts it.
    """

    deadline = None

    def __init__(self, resource: ForwardResource, request, origin, in_head, live, target):
        self._resource = resource
        self._request = request
        self._origin = origin
        self._live = live  # the route it started on, kept whatever a reload does
        self._target = target
        self.upstream = None  # the LiveUpstream of the current try
        self._tried = ()  # the upstreams tried before it (retries)
        self._exchange = None  # the agent's handle, once sent
        self._starting = True  # being sent: the handle is not there yet
        self._in_head = in_head  # the request's head is still being parsed
        self._early = []  # what the sink heard while being sent
        self._uploading = False
        self._waiting = True  # for the response's head
        self._producer = None  # the PacedProducer registered on the client's request
        self._record = getattr(request, "exchange", None)  # LOG_BODIES
        self._answer = None  # the start of a Gradio call's answer, for its event_id
        self.client_disconnected = False
        self.stream_cut = False  # cut by the gateway for silence: never a clean end
        self.stream_open = None  # the Hold of an event stream counted open
        self.ended = False

    def send_to(self, upstream, body):
        """Send the request to C{upstream} (a LiveUpstream): the first try, or a retry."""
        self.upstream = upstream
        upstream.in_flight += 1
        request = self._request
        request.upstream_label = upstream.label
        live = self._live
        if live.retries and not self._tried:
            live.budget.request()
        # That upstream's agent, Host and token, and nobody else's.
        resource = self._resource
        sent = resource._upstream_headers(request, live, upstream)
        exchange_log = resource._exchange_log
        if exchange_log is not None:
            self._record = request.exchange = exchange_log.record()
            self._record.request_headers = exchange_log.headers(sent)
        self.start(upstream.agent.send(request.method, self._target, sent, body, self))

    def _upstream_done(self):
        """The current try is over: the upstream has one request fewer in flight."""
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.in_flight -= 1

    def start(self, exchange):
        """
        The request is sent (C{exchange}, the agent's handle): wait for the
        head at most UPSTREAM_TIMEOUT. What the sink heard while it was
        being sent is handled now, or, while the request's head is still
        being parsed, on the reactor's next turn.
        """
        self._exchange = exchange
        self._starting = False
        if not self.ended:
            self._resource.deadlines.watch(self)
            if self._waiting and not self._uploading:
                self._wait_for_head()
        early, self._early = self._early, None
        for call in early:
            if self._in_head:
                self._resource._reactor.callLater(0, *call)
            else:
                call[0](*call[1:])

    def _later(self, *call) -> bool:
        """Keep C{call} for L{start} while the request is being sent."""
        if self._starting:
            self._early.append(call)
            return True
        return False

    def _wait_for_head(self):
        resource = self._resource
        self.deadline = resource._reactor.seconds() + resource._timeout

    def _end_deadlines(self):
        self.deadline = None
        self._resource.deadlines.forget(self)

    def deadline_passed(self):
        if self._waiting:
            self.time_out()
        elif not self.ended:
            self._went_idle()

    def upload_started(self):
        """The body starts going upstream: the wait for an answer is suspended."""
        self._uploading = True
        self.deadline = None

    def upload_finished(self):
        """The body's last byte is sent: UPSTREAM_TIMEOUT counts from now."""
        self._uploading = False
        if self._waiting and self._exchange is not None:
            self._wait_for_head()

    def time_out(self):
        """No response headers within UPSTREAM_TIMEOUT: give up on the backend."""
        self._exchange.abort()
        self._failed_before_head(errors.GATEWAY_TIMEOUT, "timeout", "TimeoutError")

    def release(self):
        """The exchange's in-flight slot back (once)."""
        if self._exchange is not None:
            self._exchange.release()

    # IExchangeSink

    def response_head(self, status, phrase, headers):
        if self._later(self.response_head, status, phrase, headers):
            return
        self._waiting = False
        self.deadline = None
        request = self._request
        if self.client_disconnected:
            self._exchange.abort()
            return
        resource = self._resource
        request.headers_at = resource._reactor.seconds()
        live = self._live
        route = live.metrics
        route.backend_ok()
        health = self.upstream.health
        if status in FAILING_STATUSES or not health.clean:
            health.answered(status)
        kept, content_type, location = resource.shapes.end_to_end(headers)
        if content_type is not None and _is_event_stream(content_type):
            # A live stream may last hours: it must not hold a slot others wait for,
            # and MAX_STREAMS bounds how many are open.
            self.release()
            hold = resource.take_tunnel(request, STREAM)
            if hold is None:
                self._exchange.abort()
                self._end_deadlines()
                self.ended = True
                return
            route.stream_opened()
            self.stream_open = hold
        if location:  # rewritten to the gateway's origin: the full rule
            kept = resource.response_headers(
                request, _grouped(headers), self._origin, self.upstream, live.prefix)
        elif resource._cors is not None:
            kept = resource._cors.response_headers(kept, self._origin)
        if live.affinity:
            cookie = getattr(request, "affinity_cookie", None)
            if cookie is not None:
                kept.append((b"Set-Cookie", [cookie]))
            if live.sessions is not None and _answer_names_keys(request):
                self._answer = []
        _send_head(request, status, phrase, kept)
        if self._record is not None:
            self._record.response_headers = resource._exchange_log.headers(_grouped(headers))
        self._producer = PacedProducer(self._exchange, resource.slow_clients, self.release)
        request.registerProducer(self._producer, True)
        self.deadline = resource._reactor.seconds() + resource._stream_idle_timeout

    def response_body(self, data):
        if self._later(self.response_body, data):
            return
        resource = self._resource
        self.deadline = resource._reactor.seconds() + resource._stream_idle_timeout
        if self._record is not None:
            self._record.response_body(data)
        if self._answer is not None:
            self._keep_answer(data)
        self._request.write(data)

    def _keep_answer(self, data):
        """Keep the start of a Gradio answer (at most MAX_JOIN_BODY) to learn its event_id."""
        answer = self._answer
        answer.append(data)
        if sum(map(len, answer)) > MAX_JOIN_BODY:
            self._answer = None

    def response_done(self):
        if self._later(self.response_done):
            return
        if self._answer is not None:
            answer = b"".join(self._answer)
            key = event_id_from_answer(answer)
            keys = [key] if key is not None else uploaded_files_from_answer(answer)
            if self.upstream is not None:
                for key in keys:
                    self._live.learn(key, self.upstream)
            self._answer = None
        self._body_ended(broken=self.stream_cut)

    def response_failed(self, failure):
        if self._later(self.response_failed, failure):
            return
        if not self._waiting:
            self._body_ended(broken=True, kind=failure.type.__name__)
            return
        err = errors.classify_failure(failure)
        self._failed_before_head(
            err, "timeout" if err.status == 504 else "connect", failure.type.__name__
        )

    def _failed_before_head(self, err, kind, cause):
        """
        No answer head came: the request is tried on another upstream when
        it may be (L{wighaven.routing.retry}), else the client gets C{err}
        (a 502 or 504).
        """
        self._waiting = False
        self._end_deadlines()
        upstream = self.upstream
        self._upstream_done()
        if self.client_disconnected:
            self.ended = True
            return
        route = self._live.metrics
        route.upstream_error(kind)
        route.backend_failed(err.detail)
        if upstream is not None:
            upstream.health.failed(err.detail)
            if kind == "connect" and self._retry(upstream):
                return
        self.ended = True
        self._resource._log.warn(
            "upstream request failed: {detail} ({kind})", detail=err.detail, kind=cause
        )
        request = self._request
        request.write(errors.respond_with_error(request, err))
        request.finish()

    def _retry(self, failed) -> bool:
        """Try another upstream, when the rule and the route's budget allow."""
        live, request = self._live, self._request
        tried = self._tried + (failed,)
        if not may_retry(request.method, _declares_body(request), False,
                         request.startedWriting, len(tried) - 1, live.retries):
            return False
        upstream = live.choose(request, tried=tried)
        if upstream in tried or not live.budget.take():
            return False
        self._resource._log.info(
            "retrying {method} on {upstream} of route {route} (attempt {n})",
            method=request.method.decode("ascii", "replace"), upstream=upstream.label,
            route=live.name, n=len(tried) + 1)
        self._tried = tried
        self._waiting = True
        self._starting = True
        self._in_head = False
        self._early = []
        self.send_to(upstream, None)
        return True

    # The body's end, clean or not.

    def _went_idle(self):
        self.stream_cut = True
        self._resource._log.info(
            "stream idle for {seconds}s: cut", seconds=self._resource._stream_idle_timeout
        )
        self._exchange.abort()
        self._body_ended(broken=True, kind="idle")

    def client_gone(self, failure):
        """The client went away: abandon the upstream request (or its body)."""
        self.client_disconnected = True
        if self._exchange is None or self.ended:
            return
        self._exchange.abort()
        if self._waiting:
            self._waiting = False
            self._end_deadlines()
            self._upstream_done()
            self.ended = True
        else:
            self._body_ended(broken=True)

    def _body_ended(self, broken, kind=None):
        if self.ended:
            return
        self.ended = True
        self._end_deadlines()
        self._upstream_done()
        if self._producer is not None:
            self._producer.done()
        self.release()
        if self.stream_open is not None:
            self.stream_open.release()
            self.stream_open = None
            self._live.metrics.stream_closed()
        request = self._request
        body = getattr(request, "body", None)
        if isinstance(body, StreamingBody) and not body.ended:
            # The backend has answered in full before reading the whole body
            # (like nginx's `return`): the rest is of no use to it, and its
            # connection can't carry another request, so it is closed now.
            # The client's rest is read and dropped.
            body.stopProducing()
            self._exchange.abort()
        if self.client_disconnected:
            return
        request.unregisterProducer()
        if not broken:
            request.finish()
            return
        # The backend broke off mid-body (or the gateway cut it): make sure the client can tell.
        if kind is not None and kind != "idle":
            self._resource._log.warn("backend broke off the response body: {kind}", kind=kind)
        request.broken_off = True
        request.channel.transport.abortConnection()


def _send_head(request, status, phrase, headers):
    """
    The answer's status and headers (the backend's, as the client gets
    them), with the gateway's X-Request-ID in place of the backend's: sent
    at once by the gateway's own requests, set for Twisted to send on any
    other twisted.web Request (the resource mounted in another site).
    """
    out = request.responseHeaders
    out.removeHeader(b"date")  # Twisted's, when the request was rendered
    write_head = getattr(request, "write_forwarded_head", None)
    if write_head is not None:
        write_head(status, phrase, headers)
        return
    request_id = getattr(request, "request_id", None)
    request.setResponseCode(status, phrase)
    request.defaultContentType = None
    for name, values in headers:
        for value in values:  # a name may come back: each value is kept
            out.addRawHeader(name, value)
    if request_id is not None:
        out.setRawHeaders(b"X-Request-ID", [request_id])


def _answer_names_keys(request) -> bool:
    """
    Is C{request} a Gradio call whose answer names an event_id (call/<api>,
    queue/join) or uploaded files' paths (upload)?
    """
    if request.method != b"POST":
        return False
    path = request.path
    return path.endswith((b"/queue/join", b"/upload")) or b"/call/" in path


def _redirect_to_slash(request, prefix: bytes) -> bytes:
    """Send a GET of C{/chat} to C{/chat/} (its query kept): see LiveRoute.wants_slash."""
    query = request.uri.partition(b"?")[2]
    location = prefix + b"/" + (b"?" + query if query else b"")
    request.setResponseCode(308)
    request.responseHeaders.setRawHeaders(b"Location", [location])
    request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/plain; charset=utf-8"])
    request_id = getattr(request, "request_id", None)
    if request_id is not None:
        request.responseHeaders.setRawHeaders(b"X-Request-ID", [request_id])
    return b"Moved to " + location + b"\n"


def _is_event_stream(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == b"text/event-stream"


def _grouped(pairs):
    """(name, [value]) of the backend's (name, value) pairs, values stripped."""
    return [(name, [value.strip()]) for name, value in pairs]

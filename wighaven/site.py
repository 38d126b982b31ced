"""The gateway's site: its own pages on Klein, every other path forwarded.

Rule: the paths the gateway keeps for itself are the dashboard
(DASHBOARD_PATH, default C{/}), C{/gateway-health} and everything under
C{/_gateway/}. They are served by a Klein app (L{GatewayPages}). Every other
path goes straight to the forwarding resource, without Klein routing
(Klein costs ~130 us a request and refuses non-UTF-8 paths with a 400 of
its own, which would break a Space that uses them).

L{GatewaySite} also writes the one access-log line of each request and
keeps the counters the dashboard shows.
"""

from __future__ import annotations

import json
import weakref

from klein import Klein
from twisted.logger import Logger, LogLevel
from twisted.web import resource
from twisted.web.server import Site

from . import __version__, errors
from .channel import GatewayChannel, GatewayRequest
from .dashboard import render_dashboard
from .live import LiveFeed, LiveMessages
from .logs import LEVELS
from .metrics import GatewayCollector, exposition

__all__ = ["GatewayPages", "GatewaySite", "HEALTH_PATH", "GATEWAY_PREFIX"]

HEALTH_PATH = "/gateway-health"
GATEWAY_PREFIX = "/_gateway/"
METRICS_PATH = GATEWAY_PREFIX + "metrics"
LIVE_PATH = GATEWAY_PREFIX + "live"
# Seconds a rendered dashboard is served again to viewers of the same kind.
PAGE_TTL = 1.0
LIVE_FULL = errors.GatewayError(
    503, "live_feed_full", "LIVE_MAX_WATCHERS dashboards are watching; the page retries by itself",
    retry_after=5,
)


class GatewayPages:
    """
    The Klein app of the gateway's own pages: dashboard, health, and under
    /_gateway/ the Prometheus metrics and the dashboard's live feed (when
    METRICS is on).

    What a viewer may see of other visitors' requests is decided in one
    place (L{may_see_paths}), for the page and the feed alike. The
    dashboard is rendered at most once per PAGE_TTL for each kind of
    viewer: a render costs milliseconds of CPU, a forwarded request a
    fraction of one, so anonymous visitors asking for the page over and
    over must not cost more than one render a second.
    """

    def __init__(self, config, stats, clock):
        self._stats = stats
        self._clock = clock
        self._backend_host = config.backend_netloc
        self._show_paths = config.dashboard_show_paths
        self._rendered = {}  # (show_paths, draining) -> (when, page)
        self.app = app = Klein()
        app.route(config.dashboard_path, methods=["GET", "HEAD"])(self.dashboard)
        app.route(HEALTH_PATH, methods=["GET", "HEAD"])(self.health)
        self.live = None
        if config.metrics:
            self._collector = GatewayCollector(stats.figures)
            self.live = LiveFeed(
                LiveMessages(stats.route, stats, self._backend_host, clock), clock,
                max_watchers=config.live_max_watchers,
            )
            app.route(METRICS_PATH, methods=["GET", "HEAD"])(self.metrics)
            app.route(LIVE_PATH, methods=["GET"])(self.live_feed)
        app.route(GATEWAY_PREFIX, branch=True)(self.not_found)

    def may_see_paths(self, request) -> bool:
        """
        May whoever sent C{request} see the paths of other visitors'
        requests? Everyone or no one, by DASHBOARD_SHOW_PATHS, until
        there are administrators to tell apart.
        """
        return self._show_paths

    def live_feed(self, request):
        if self.live.full:
            # Refused before the handshake: the page backs off and retries.
            return errors.respond_with_error(request, LIVE_FULL)
        return self.live.resource(self.may_see_paths(request))

    def metrics(self, request):
        body, content_type = exposition(self._collector)
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return body

    def resource(self):
        return self.app.resource()

    def health(self, request):
        snap = self._stats.snapshot()
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        if snap.draining:
            # A load balancer must stop sending here.
            request.setResponseCode(503)
        return json.dumps(
            {
                "status": "draining" if snap.draining else "ok",
                "service": "wighaven-gateway",
                "version": __version__,
                "uptime_seconds": round(snap.uptime_seconds, 3),
                "requests": snap.requests,
                "errors": snap.errors,
                "in_flight": snap.in_flight,
                "mean_latency_ms": round(snap.mean_latency_ms, 3),
                "workers": snap.workers,
            }
        ).encode("utf-8")

    def dashboard(self, request):
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(
            b"Content-Security-Policy",
            b"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            b"connect-src 'self'",
        )
        show_paths = self.may_see_paths(request)
        key = (show_paths, self._stats.draining)
        now = self._clock.seconds()
        when, page = self._rendered.get(key, (None, None))
        if when is None or not 0 <= now - when < PAGE_TTL:
            page = self._render(show_paths)
            self._rendered[key] = (now, page)
        return page

    def _render(self, show_paths: bool) -> bytes:
        snap = self._stats.snapshot()
        live = self.live
        return render_dashboard(
            snap, self._backend_host, __version__, HEALTH_PATH,
            status="draining" if snap.draining else "ok",
            # The first paint has every figure, even without JavaScript.
            live=live.hello(show_paths) if live is not None else None,
            live_path=LIVE_PATH if live is not None else None,
            show_paths=show_paths,
        )

    def not_found(self, request):
        return errors.respond_with_error(request, errors.NOT_FOUND)


class GatewaySite(Site):
    """
    Dispatches each request to the gateway's pages or the forwarding
    resource, and logs one access line per request.

    @param pages: the resource of the gateway's own pages (Klein).
    @param forward: the forwarding resource.
    @param stats: a L{wighaven.stats.GatewayStats}.
    """

    protocol = GatewayChannel
    requestFactory = GatewayRequest
    noisy = False
    _log = Logger()

    def __init__(self, pages, forward, config, stats, reactor):
        # Twisted's own idle timer is off: GatewayChannel times each phase itself.
        super().__init__(pages, reactor=reactor, timeout=None)
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.stream_idle_timeout = config.stream_idle_timeout
        self._forward = forward
        self.deadlines = forward.deadlines  # one sweep for the channels' and the relays' timeouts
        self._stats = stats
        self._own_paths = frozenset([config.dashboard_path.encode(), HEALTH_PATH.encode()])
        self._own_prefix = GATEWAY_PREFIX.encode()
        self.max_body_size = config.max_body_size
        self._redact_query = config.log_redact_query
        self._trust_proxy = config.trust_proxy
        self._count_metrics = config.metrics
        # Access and exchange lines are info: below LOG_LEVEL, don't even build them.
        self._log_access = LEVELS[config.log_level] <= LogLevel.info
        self.channels = weakref.WeakSet()  # open connections, for draining

    @property
    def draining(self) -> bool:
        return self._stats.draining

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        self.channels.add(channel)
        return channel

    def stop_timers(self) -> None:
        """The gateway is stopping: no timer of the forwarding path may outlive it."""
        self._forward.slow_clients.stop()
        self.deadlines.stop()

    def is_own_path(self, path: bytes) -> bool:
        """Does C{path} belong to the gateway rather than the backend?"""
        return path in self._own_paths or path.startswith(self._own_prefix)

    def begin(self, request, length) -> bool:
        """
        The head of C{request} is in: start forwarding it now, its body to
        follow as it arrives. False when the request is not forwarded as a
        stream (the gateway's own pages, requests the gateway answers).
        """
        if self.is_own_path(request.path):
            return False
        target = self._forward.stream_target(request)
        if target is None:
            return False
        request.site = self
        self._count(request)
        self._forward.start(request, length, target)
        return True

    def getResourceFor(self, request):
        request.site = self
        request.sitepath = []
        if self.is_own_path(request.path):
            return resource.getChildForRequest(self.resource, request)
        self._count(request)
        return self._forward

    def _client_address(self, request, peer: str) -> str:
        """The visitor's address: the peer's, or behind a trusted proxy its client's."""
        if not self._trust_proxy:
            return peer
        forwarded_for = request.requestHeaders.getRawHeaders(b"x-forwarded-for", ())
        return self._trust_proxy.client_address(peer.encode("latin-1"), forwarded_for).decode(
            "latin-1"
        )

    def _count(self, request):
        if not getattr(request, "forwarded", False):
            request.forwarded = True
            self._stats.request_started()

    def log(self, request, aborted=False):
        if not request.mark_logged():
            return
        duration = self.reactor.seconds() - request.started
        failed = aborted or request.broken_off
        # No status when the exchange broke off before an answer was sent.
        status = request.code if (request.startedWriting or not aborted) else None
        path = request.uri
        if self._redact_query:
            path = path.split(b"?", 1)[0]
        to_headers = None if request.headers_at is None else request.headers_at - request.started
        if request.forwarded:
            if self._count_metrics:
                self._stats.request_ended(
                    status, duration, failed, method=request.method, to_headers=to_headers,
                    bytes_in=request.body_received, bytes_out=request.sentLength, path=path,
                )
            else:
                self._stats.route.in_flight -= 1  # the drain still needs it
        if not self._log_access:
            return
        peer = getattr(request.getClientAddress(), "host", None) or "-"
        self._log.info(
            "{method} {path} {status} {bytes_out} {duration_ms:.1f}ms {client} {request_id}",
            method=request.method.decode("ascii", "replace"),
            path=path.decode("latin-1"),
            status=("%s aborted" % (status or "-")) if failed else status,
            bytes_in=request.body_received,
            bytes_out=request.sentLength,
            duration_ms=round(duration * 1000.0, 3),
            upstream_ms=None if to_headers is None else round(to_headers * 1000.0, 3),
            peer=peer,
            client=self._client_address(request, peer),
            request_id=request.request_id.decode("ascii"),
            user_agent=request.requestHeaders.getRawHeaders(b"user-agent", [b"-"])[0].decode(
                "latin-1"
            ),
        )
        if request.exchange is not None:
            self._log.info(
                "exchange {request_id}: {method} {path} -> {status}; request headers "
                "{request_headers}; response headers {response_headers}",
                method=request.method.decode("ascii", "replace"),
                path=path.decode("latin-1"),
                status=status,
                request_id=request.request_id.decode("ascii"),
                **request.exchange.fields(),
            )

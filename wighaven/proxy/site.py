"""The gateway's site: its own pages on Klein, every other path forwarded.

Rule: the paths the gateway keeps for itself are the dashboard
(DASHBOARD_PATH, default C{/}), C{/gateway-health} and everything under
C{/_gateway/}. They are served by a Klein app (L{wighaven.web.pages.GatewayPages}). Every other
path goes straight to the forwarding resource, without Klein routing
(Klein costs ~130 us a request and refuses non-UTF-8 paths with a 400 of
its own, which would break a Space that uses them).

L{GatewaySite} also writes the one access-log line of each request,
keeps the counters the dashboard shows, and the last exchanges for the
admin API (L{GatewaySite.recent_requests}).
"""

from __future__ import annotations

import weakref

from twisted.logger import Logger, LogLevel
from twisted.web import resource
from twisted.web.server import Site

from ..config.trust import visitor_address
from ..observe.logs import LEVELS
from ..observe.recent import RequestRing, process_ids
from ..web.pages import GATEWAY_PREFIX, HEALTH_PATH
from .channel import OWN_BODY_LIMIT, GatewayChannel, GatewayRequest

__all__ = ["GatewaySite"]


class GatewaySite(Site):
    """
    Dispatches each request to the gateway's pages or the forwarding
    resource, and logs one access line per request.

    @param pages: the resource of the gateway's own pages (Klein).
    @param forward: the forwarding resource.
    @param stats: a L{wighaven.observe.stats.GatewayStats}.

    @ivar recent_requests: with AUTH on (L{keep_recent_requests}), the last
        exchanges (a L{wighaven.observe.recent.RequestRing}), each kept where
        its access line is written, whatever LOG_LEVEL: a raw record of a
        few microseconds, summarized and redacted (credentials, and the
        route table's upstream tokens: L{tokens}) when it is read. None with
        AUTH off: no admin API reads it, so nothing is kept.
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
        self.recent_requests = None  # keep_recent_requests(): the admin API's, with AUTH on
        self._large_bodies = {}  # (method, path) -> (limit, allowed(request)): allow_large_body

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

    def keep_recent_requests(self) -> RequestRing:
        """Keep the last exchanges from now on (the admin API lists them); the ring."""
        if self.recent_requests is None:
            self.recent_requests = RequestRing(secrets=self.tokens, ids=process_ids())
        return self.recent_requests

    def allow_large_body(self, method: bytes, path: bytes, limit: int, allowed) -> None:
        """
        Let C{method} C{path}, one of the gateway's own endpoints, take a
        body of up to C{limit} bytes from a request C{allowed(request)} says
        yes to, judged on its head alone (its credentials), before any of
        the body is read: everyone else keeps the 16 KiB of every own path.
        """
        self._large_bodies[(method, path)] = (limit, allowed)

    def own_body_limit(self, request) -> int:
        """The most a body of C{request}, which the gateway answers itself, may be."""
        large = self._large_bodies.get((request.method, request.path))
        if large is not None and large[1](request):
            return large[0]
        return OWN_BODY_LIMIT

    def tokens(self) -> list:
        """The upstream tokens of the route table in force (what the recent lists redact)."""
        return [upstream.token for live in self._forward.router.routes
                for upstream in live.upstreams if upstream.token]

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
        self._count(request, request.live_route)
        self._forward.start(request, length, target)
        return True

    def getResourceFor(self, request):
        request.site = self
        request.sitepath = []
        if self.is_own_path(request.path):
            return resource.getChildForRequest(self.resource, request)
        live = self._forward.route_for(request)
        if live is not None:
            self._count(request, live)
        return self._forward

    def _count(self, request, live):
        """A request of route C{live} (a LiveRoute) starts: counted until logged."""
        if not getattr(request, "forwarded", False):
            request.forwarded = True
            live.metrics.request_started()

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
            live = request.live_route
            if self._count_metrics:
                live.metrics.request_ended(
                    request.method, status, duration, to_headers, request.body_received,
                    request.sentLength, failed, path=path,
                    upstream=None if live.only is not None else request.upstream_label,
                )
            else:
                live.metrics.in_flight -= 1  # the drain still needs it
        ring = self.recent_requests
        if ring is None and not self._log_access:
            return
        peer = getattr(request.getClientAddress(), "host", None) or "-"
        client = visitor_address(self._trust_proxy, request, peer)
        if ring is not None:
            ring.record_exchange(request, status, duration, path, client)
        if not self._log_access:
            return
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
            client=client,
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

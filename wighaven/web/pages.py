"""The gateway's own pages, on Klein: the dashboard, health, and under
C{/_gateway/} the Prometheus metrics and the dashboard's live feed.

Which paths are the gateway's (rather than the backend's) is decided by
L{wighaven.proxy.site.GatewaySite} from the constants here; everything
else never reaches Klein.
"""

from __future__ import annotations

import json

from klein import Klein

from .. import __version__
from ..observe.live import LiveFeed, LiveMessages
from ..observe.metrics import GatewayCollector, exposition
from ..auth.gate import answer_refusal
from ..config.trust import visitor_address
from ..proxy import errors
from .auth_pages import AuthPages
from .dashboard import render_dashboard

__all__ = ["GatewayPages", "HEALTH_PATH", "GATEWAY_PREFIX", "METRICS_PATH", "LIVE_PATH"]

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



def _client_address(trust_proxy):
    """C{address(request)}: the visitor's address (behind a trusted proxy, its client's)."""
    def address(request) -> str:
        peer = getattr(request.getClientAddress(), "host", None) or "unknown"
        return visitor_address(trust_proxy, request, peer)
    return address


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

    def __init__(self, config, stats, clock, router=None, control=None, forward=None):
        """C{control}: the L{wighaven.auth.control.AccessControl} when AUTH is on
        (C{forward}, the forwarding resource, then tells the gateway's origin)."""
        self._stats = stats
        self._router = router
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
                LiveMessages(stats, self._backend_host, clock), clock,
                max_watchers=config.live_max_watchers,
            )
            app.route(METRICS_PATH, methods=["GET", "HEAD"])(self.metrics)
            app.route(LIVE_PATH, methods=["GET"])(self.live_feed)
        self._gate = None
        self._forbidden_page = None
        self._control = control
        self._config = config
        self._auth = None
        self._forward = forward
        if control is not None:
            self._gate = control.gate
            self._auth = AuthPages(app, control, config.auth, forward.gateway_origin,
                                   _client_address(config.trust_proxy), control.hf_sign_in)
            self._forbidden_page = forward.render_forbidden = self._auth.forbidden_page
            forward.gate = control.gate
        app.route(GATEWAY_PREFIX, branch=True)(self.not_found)

    def enable_admin(self, reloader, reactor, tls_policy, recent, resolve=None):
        """
        Serve the admin API (C{/_gateway/api/v1/}) and the admin panel
        (C{/_gateway/admin/}), with AUTH on, once the L{Reloader} exists.
        """
        from ..routing.upstream_guard import default_resolver
        from .admin_api import AdminApi, ApiFrame
        from .admin_people import PeopleApi
        from .admin_routes import RouteApi
        from .admin_ui import AdminPages
        from .openapi import openapi_document

        control, settings = self._control, self._config.auth
        address_of = _client_address(self._config.trust_proxy)
        frame = ApiFrame(self.app, control, self._auth.cookie_refusal, address_of)
        AdminApi(frame, self._router, self._stats, self._clock, self._backend_host,
                 recent, openapi_document())
        RouteApi(frame, reloader, control.store, control.secret_box, settings.upstream_policy,
                 resolve or default_resolver(reactor), reactor, tls_policy,
                 self._config.token_header)
        PeopleApi(frame, control, self._forward.gateway_origin, settings.public_url)
        frame.refuse_other_methods()
        AdminPages(self.app, control, self._forbidden_page, self._auth.same_origin, address_of)

    def may_see_paths(self, request) -> bool:
        """
        May whoever sent C{request} see the paths of other visitors'
        requests? With AUTH on only administrators see the dashboard, and
        they do; with AUTH off everyone or no one, by DASHBOARD_SHOW_PATHS.
        """
        return self._show_paths or self._gate is not None

    def _admin_refusal(self, request):
        """With AUTH on, the answer for anyone but an administrator (None: go on)."""
        if self._gate is None:
            return None
        refusal = self._gate.admin_refusal(request)
        if refusal is None:
            return None
        return answer_refusal(request, refusal, self._forbidden_page)

    def live_feed(self, request):
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        if self.live.full:
            # Refused before the handshake: the page backs off and retries.
            return errors.respond_with_error(request, LIVE_FULL)
        return self.live.resource(self.may_see_paths(request))

    def metrics(self, request):
        if self._gate is None or not self._gate.metrics_token_ok(request):
            refused = self._admin_refusal(request)
            if refused is not None:
                return refused
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
        status = "draining" if snap.draining else "ok"
        if self._gate is not None:  # AUTH on: the figures are for administrators
            return json.dumps({"status": status}).encode("utf-8")
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
                "routes": self._routes(),
            }
        ).encode("utf-8")

    def _routes(self) -> list:
        """Each route: its match, figures and each upstream's state (every worker's, merged)."""
        if self._router is None:
            return []
        figures = self._stats.figures()["routes"]
        out = []
        for live in self._router.routes:
            route = figures.get(live.metrics.name, {})
            merged = route.get("upstreams", {})
            upstreams = []
            for status in live.status()["upstreams"]:
                seen = merged.get(status["upstream"], {})
                upstreams.append(dict(status, state=seen.get("state") or status["state"],
                                      requests=seen.get("requests", 0),
                                      errors=seen.get("errors", 0)))
            out.append({
                "name": live.name, "hosts": list(live.hosts), "path": live.path,
                "requests": sum(n for c in route.get("requests", {}).values() for n in c.values()),
                "errors": route.get("errors", 0), "in_flight": route.get("in_flight", 0),
                "upstreams": upstreams,
            })
        return out

    def dashboard(self, request):
        refused = self._admin_refusal(request)
        if refused is not None:
            return refused
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(
            b"Content-Security-Policy",
            b"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            b"connect-src 'self'",
        )
        show_paths = self.may_see_paths(request)
        account = self._account(request)
        key = (show_paths, self._stats.draining, account)
        now = self._clock.seconds()
        when, page = self._rendered.get(key, (None, None))
        if when is None or not 0 <= now - when < PAGE_TTL:
            if len(self._rendered) > 64:  # one page per signed-in session at most, for a second
                self._rendered.clear()
            page = self._render(show_paths, account)
            self._rendered[key] = (now, page)
        return page

    def _account(self, request):
        """With AUTH on, (who is signed in, its session's CSRF token or None)."""
        if self._gate is None:
            return None
        identity = self._gate.identify(request)
        csrf = (self._control.sessions.csrf_token(identity.session_id)
                if identity.session_id else None)
        return identity.user, csrf

    def _render(self, show_paths: bool, account=None) -> bytes:
        snap = self._stats.snapshot()
        live = self.live
        return render_dashboard(
            snap, self._backend_host, __version__, HEALTH_PATH,
            status="draining" if snap.draining else "ok",
            # The first paint has every figure, even without JavaScript.
            live=live.hello(show_paths) if live is not None else None,
            live_path=LIVE_PATH if live is not None else None,
            show_paths=show_paths, account=account,
        )

    def not_found(self, request):
        return errors.respond_with_error(request, errors.NOT_FOUND)

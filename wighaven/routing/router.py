"""The live route table: which route and which upstream take a request.

The request pipeline, in order (the rest of the gateway hangs off these
steps; later issues insert identity, policy, rate limit and cache between
the first two):

    route    L{Router.route_for}: the request's host and path -> a L{LiveRoute}
    balance  L{LiveRoute.choose}: affinity, health and the route's balancer
             -> a L{LiveUpstream}
    forward  L{wighaven.proxy.forward}: the request goes to that upstream's
             agent with that upstream's token, and nobody else's

A L{LiveRoute} is a frozen L{wighaven.config.routes.Route} plus what it
needs at run time: its upstreams' agents (one persistent pool, keyed per
upstream), their health, the balancer's scores, the retry budget, the
affinity sessions and the route's metrics. A L{LiveUpstream} is one
upstream's: its agent, Host, token, passive and active health and
requests in flight.

Reload (L{Router.replace}) builds the new table whole and swaps it in with
one assignment: requests that started keep the L{LiveRoute} they were
given, so nothing in flight changes under them. An unchanged route keeps
its L{LiveRoute} (scores, sessions, health); a changed one keeps the
L{LiveUpstream}s whose upstream is unchanged. A removed route is retired:
its open exchanges (event streams, WebSockets, uploads) may run on for at
most DRAIN_TIMEOUT, then are cut.
"""

from __future__ import annotations

import random
from typing import Callable, Dict, Iterable, Optional, Sequence

from twisted.logger import Logger

from .affinity import (
    AffinityCookie, MAX_JOIN_BODY, Sessions, file_keys_from_join, gradio_keys,
    session_hash_from_join,
)
from .balance import balancer_for
from .health import PassiveHealth
from .retry import RetryBudget
from .table import RouteTable, normalized_host

__all__ = ["LiveRoute", "LiveUpstream", "Router", "upstream_labels"]

def upstream_labels(upstreams: Sequence) -> list:
    """
    The metric label of each upstream of a route: its host[:port], never
    a token or credentials (URLs with user:password@ are refused at load),
    with #2, #3... when two upstreams share one.
    """
    seen: Dict[str, int] = {}
    labels = []
    for upstream in upstreams:
        label = upstream.netloc
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else "%s#%d" % (label, seen[label]))
    return labels


class LiveUpstream:
    """One upstream of a route, as the forwarding path uses it."""

    __slots__ = ("model", "label", "agent", "host_header", "origin_key", "token", "health",
                 "active", "in_flight")

    def __init__(self, model, label: str, agent, clock):
        self.model = model  # the frozen wighaven.config.routes.Upstream
        self.label = label
        self.agent = agent  # a wighaven.proxy.upstream.BackendAgent
        self.host_header = model.netloc.encode("ascii")
        # (scheme, host, port) of its origin: the Location it may be rewritten from.
        self.origin_key = (model.scheme.encode("ascii"), model.host.encode("ascii"), model.port)
        self.token = model.token.encode("utf-8") if model.token else None
        self.health = PassiveHealth(clock)
        self.active = None  # a wighaven.routing.probe.ActiveHealth, when the route has a probe
        self.in_flight = 0

    def available(self) -> bool:
        """May it take a request (passive and active health both say yes)?"""
        active = self.active
        return self.health.available() and (active is None or active.available())

    def status(self) -> dict:
        """Its state for /gateway-health, the dashboard and the metrics."""
        health = self.health
        active = self.active.snapshot() if self.active is not None else None
        if not health.available():
            state = "ejected"
        elif active is not None and active["state"] == "down":
            state = "down"
        else:
            state = "up"
        return {
            "upstream": self.label,
            "state": state,
            "ejected_until": health.ejected_until if state == "ejected" else None,
            "last_error": (active or {}).get("last_error") or health.last_error,
            "stage": (active or {}).get("stage"),
            "space": self.model.space,
            "in_flight": self.in_flight,
        }


def _cookie_value(request, name: bytes) -> Optional[bytes]:
    """The value of cookie C{name} in the request's Cookie headers, or None."""
    values = request.requestHeaders.getRawHeaders(b"cookie")
    if not values:
        return None
    prefix = name + b"="
    for value in values:
        for part in value.split(b";"):
            part = part.strip()
            if part.startswith(prefix):
                return part[len(prefix):]
    return None


class LiveRoute:
    """
    One route of the table at run time.

    @param route: the frozen L{wighaven.config.routes.Route}.
    @param upstreams: its L{LiveUpstream}s, in the route's order.
    @param metrics: its L{wighaven.observe.metrics.RouteMetrics}.
    """

    def __init__(self, route, upstreams: Sequence[LiveUpstream], metrics, clock,
                 affinity_secret: bytes, rng: Optional[random.Random] = None):
        self.route = route
        self.name = route.name
        self.access = route.access  # who may use it, with AUTH on
        self.hosts = route.hosts
        self.path = route.path
        self.metrics = metrics
        self.upstreams = tuple(upstreams)
        self.only = self.upstreams[0] if len(self.upstreams) == 1 else None
        # The prefix the upstream does not see (strip_path), and sends as X-Forwarded-Prefix.
        self.prefix = route.path.encode("ascii") if route.strip_path and route.path != "/" else b""
        self.budget = RetryBudget(clock)
        self.retries = route.retries
        self._balancer = balancer_for(
            route.balance, self.upstreams, [u.model.weight for u in self.upstreams],
            _in_flight, rng,
        ) if self.only is None else None
        self.cookie = (
            AffinityCookie(affinity_secret, route.name, [u.model for u in self.upstreams],
                           route.path)
            if route.affinity != "none" and self.only is None else None
        )
        self._by_model = {id(u.model): u for u in self.upstreams}
        self.sessions = Sessions(clock) if route.affinity == "gradio" and self.only is None else None
        self.affinity = self.cookie is not None or self.sessions is not None
        self.enabled = route.enabled  # False: answered 503 route_disabled, never forwarded
        # Nothing to strip, no body to read first, enabled: the target goes up as it
        # came (the one test the usual request pays for).
        self.plain = not self.prefix and self.sessions is None and self.enabled
        metrics.upstream_status = self.upstream_status
        # A lone upstream's request counts are the route's: not counted twice.
        metrics.lone_upstream_is(self.only.label if self.only is not None else None)

    def upstream_status(self) -> list:
        return [u.status() for u in self.upstreams]

    # Targets.

    def upstream_target(self, target: bytes) -> bytes:
        """The request target the upstream gets: without the prefix, with strip_path."""
        prefix = self.prefix
        if not prefix:
            return target
        rest = target[len(prefix):]
        if not rest.startswith(b"/"):
            rest = b"/" + rest  # "/chat" and "/chat?q" go up as "/" and "/?q"
        return rest

    def wants_slash(self, request) -> bool:
        """
        A GET or HEAD of exactly the prefix (C{/chat}): the page the
        upstream serves at C{/} links C{./assets/...}, which a browser at
        C{/chat} would fetch from C{/assets}. It is sent to C{/chat/}.
        """
        return bool(self.prefix) and request.path == self.prefix and request.method in (
            b"GET", b"HEAD")

    # Balance.

    def needs_body(self, request) -> bool:
        """Must the request's body be read before an upstream is chosen (Gradio's join)?"""
        if self.sessions is None or request.method != b"POST":
            return False
        if not request.path.endswith(b"/queue/join"):
            return False
        length = request.requestHeaders.getRawHeaders(b"content-length")
        try:
            return length is not None and int(length[0]) <= MAX_JOIN_BODY
        except ValueError:
            return False

    def choose(self, request, body: Optional[bytes] = None, tried=(),
               secure: Optional[bool] = None) -> LiveUpstream:
        """
        The upstream for C{request}: the one its affinity names while that
        one is available, else the balancer's pick among the available ones
        (all of them when none is: panic). C{tried} are left out for a retry.
        C{body} is the whole body, when it was read first (L{needs_body}).
        C{secure}: did the client come over https (behind a trusted proxy,
        as it says)? The affinity cookie is then Secure; default: isSecure().
        """
        only = self.only
        if only is not None:
            return only
        upstream = None
        keys = ()
        if self.sessions is not None:
            keys = gradio_keys(request.path, request.uri.partition(b"?")[2])
            if body is not None:
                # The files a join names are on the replica they were uploaded to:
                # without them the call cannot run, so they come before its session.
                keys = file_keys_from_join(body) + keys
                key = session_hash_from_join(body)
                if key is not None:
                    keys.append(key)
            for key in keys:
                known = self._by_model.get(id(self.sessions.lookup(key)))
                if known is not None and known.available() and known not in tried:
                    upstream = known
                    break
        cookie = self.cookie
        bound = None
        if cookie is not None:
            bound = self._by_model.get(id(cookie.upstream_for(_cookie_value(request, cookie.name))))
            if upstream is None and bound is not None and bound.available() and bound not in tried:
                upstream = bound
        if upstream is None:
            if tried:
                upstream = self._balancer.pick(lambda u: u not in tried and u.available())
                if upstream in tried:  # every other one is down too: any untried one
                    upstream = next((u for u in self.upstreams if u not in tried), upstream)
            else:
                upstream = self._balancer.pick(LiveUpstream.available)
        for key in keys:
            self.sessions.learn(key, upstream.model)
        if cookie is not None and bound is not upstream:
            request.affinity_cookie = cookie.set_cookie(
                upstream.model, request.isSecure() if secure is None else secure)
        return upstream

    def learn(self, key: bytes, upstream: LiveUpstream) -> None:
        """A Gradio key (an event_id or a file path an answer gave) belongs to C{upstream}."""
        if self.sessions is not None:
            self.sessions.learn(key, upstream.model)

    def status(self) -> dict:
        """The route's state: its match and each upstream's health."""
        return {
            "name": self.name,
            "hosts": list(self.hosts),
            "path": self.path,
            "upstreams": self.upstream_status(),
        }


def _probe_of(route):
    """What a route's active probes depend on."""
    return route.health_path, route.health_interval


def _in_flight(upstream: LiveUpstream) -> int:
    return upstream.in_flight


class Router:
    """
    The current route table, replaced whole on reload.

    @param make_agent: C{make_agent(upstream, source)} -> a BackendAgent for an
        L{wighaven.config.routes.Upstream} of a route of C{source} ("file",
        "env" or "store": its pool key, TLS, limits, and for "store" the
        addresses it may connect to).
    @param metrics_for: C{metrics_for(route)} -> its RouteMetrics.
    @param make_check: C{make_check(route, upstream)} -> an ActiveHealth
        (not started) or None.
    @param open_requests: C{open_requests()} -> the requests under way (each
        with its C{live_route}): asked only when a route is removed, so
        that nothing is tracked per request.
    """

    _log = Logger()

    def __init__(self, routes: Iterable, *, clock, make_agent: Callable, metrics_for: Callable,
                 affinity_secret: bytes, trust_proxy, drain_timeout: float = 0.0,
                 make_check: Callable = lambda route, upstream: None,
                 open_requests: Callable = lambda: ()):
        self._clock = clock
        self._make_agent = make_agent
        self._metrics_for = metrics_for
        self._make_check = make_check
        self._open_requests = open_requests
        self._secret = affinity_secret
        self._trust_proxy = trust_proxy
        self._drain_timeout = drain_timeout
        self._retired = []  # (LiveRoute, its cut timer)
        self.table = RouteTable(())
        self.only = None
        self.replace(routes)

    @property
    def routes(self):
        return self.table.routes

    def route_for(self, request) -> Optional[LiveRoute]:
        """The route of C{request}, or None (the gateway answers 404 no_route)."""
        only = self.only
        if only is not None:  # one route at / for every host: nothing to look up
            return only
        host = None
        headers = request.requestHeaders
        if self._trust_proxy:
            peer = request.getClientAddress()
            if self._trust_proxy.trusts_peer(getattr(peer, "host", "") or ""):
                forwarded = headers.getRawHeaders(b"x-forwarded-host")
                if forwarded:
                    host = normalized_host(forwarded[-1].split(b",")[-1])
        if host is None:
            host = normalized_host((headers.getRawHeaders(b"host") or (None,))[0])
        return self.table.match(host, request.path.decode("latin-1"))

    def replace(self, routes: Iterable) -> dict:
        """
        Swap in a table of C{routes} (frozen Routes, validated). Returns
        what changed: {"added": [...], "changed": [...], "removed": [...]}.
        """
        old = {live.name: live for live in self.table.routes}
        old_upstreams = {}
        for live in old.values():
            for upstream in live.upstreams:
                old_upstreams[(live.name, upstream.model)] = upstream
        built, kept_upstreams, changes = [], set(), {"added": [], "changed": [], "removed": []}
        for route in routes:
            previous = old.get(route.name)
            if previous is not None and previous.route == route:
                built.append(previous)
                kept_upstreams.update(id(u) for u in previous.upstreams)
                continue
            changes["changed" if previous is not None else "added"].append(route.name)
            upstreams = []
            probes_kept = previous is not None and _probe_of(previous.route) == _probe_of(route)
            for model, label in zip(route.upstreams, upstream_labels(route.upstreams)):
                live = old_upstreams.get((route.name, model))
                if live is None or live.label != label:
                    agent = self._make_agent(model, route.source)
                    live = LiveUpstream(model, label, agent, self._clock)
                    self._start_check(live, route)
                elif not probes_kept:  # same upstream, another probe: its health is kept
                    if live.active is not None:
                        live.active.stop()
                    self._start_check(live, route)
                kept_upstreams.add(id(live))
                upstreams.append(live)
            live = LiveRoute(route, upstreams, self._metrics_for(route), self._clock, self._secret)
            if previous is not None and previous.sessions is not None and live.sessions is not None:
                live.sessions = previous.sessions  # Gradio sessions stay on their replicas
            built.append(live)
        new_names = {live.name for live in built}
        changes["removed"] = sorted(name for name in old if name not in new_names)
        self.table = RouteTable(built)
        catch_all = [live for live in built if live.path == "/" and not live.hosts]
        self.only = catch_all[0] if len(built) == 1 and catch_all else None
        for name, live in old.items():
            if live in built:
                continue
            for upstream in live.upstreams:
                if id(upstream) not in kept_upstreams and upstream.active is not None:
                    upstream.active.stop()
            if name not in new_names:
                self._retire(live)
        return changes

    def _start_check(self, upstream: LiveUpstream, route) -> None:
        upstream.active = self._make_check(route, upstream.model)
        if upstream.active is not None:
            upstream.active.start()

    def _retire(self, live: LiveRoute) -> None:
        """
        A route left the table: what it still has open (event streams,
        WebSockets, uploads, downloads) may finish within DRAIN_TIMEOUT,
        then is cut. (A changed route's exchanges run to their end.)
        """
        if any(True for _ in self._requests_of(live)):
            timer = self._clock.callLater(self._drain_timeout, self._cut, live)
            self._retired.append((live, timer))

    def _requests_of(self, live: LiveRoute):
        return (r for r in self._open_requests() if getattr(r, "live_route", None) is live)

    def _cut(self, live: LiveRoute) -> None:
        self._retired = [(r, t) for r, t in self._retired if r is not live]
        left = list(self._requests_of(live))
        if left:
            self._log.info(
                "route {route} was removed: {count} exchanges still open after DRAIN_TIMEOUT "
                "are cut", route=live.name, count=len(left))
        for request in left:
            transport = getattr(request.channel, "transport", None)
            if transport is not None:
                transport.abortConnection()

    def stop(self) -> None:
        """The gateway stops: no probe or cut timer outlives it."""
        for live in self.table.routes:
            for upstream in live.upstreams:
                if upstream.active is not None:
                    upstream.active.stop()
        for _, timer in self._retired:
            if timer.active():
                timer.cancel()
        self._retired = []

    def status(self) -> list:
        """Every route's state (L{LiveRoute.status}), in the table's order."""
        return [live.status() for live in self.table.routes]


def single_router(config, agent, clock, metrics) -> Router:
    """
    The environment's one backend (PRIVATE_BACKEND_URL) as the whole table,
    over C{agent}: a ForwardResource built without a router (tests, or the
    resource mounted in another site).
    """
    from ..config.routes import env_route

    return Router(
        [env_route(config)], clock=clock, make_agent=lambda upstream, source: agent,
        metrics_for=lambda route: metrics, affinity_secret=b"", trust_proxy=config.trust_proxy,
    )

"""The gateway's state as the dashboard and the health endpoint show it.

Rule: L{GatewayStats} is a thin view over the metrics of the routes (one
L{wighaven.observe.metrics.RouteMetrics} each, in C{metrics}), plus what is
not a metric: when the gateway started and whether it is draining.
Counting happens once, in each route; nothing here keeps a second copy of
a counter. The gateway-wide figures (the dashboard's headline,
/gateway-health) are every route's added up.

With several workers (WORKERS above 1) each process counts its own
requests, and C{peers} holds what the supervising parent last reported of
all the others; L{GatewayStats.figures} adds the two, so every page shows
the whole gateway whichever worker serves it.
"""

from __future__ import annotations

import attrs

from .metrics import Metrics, RouteMetrics, merge_route_figures, merge_snapshots

__all__ = ["GatewayStats", "StatsSnapshot"]


@attrs.frozen
class StatsSnapshot:
    """The figures at one moment, for rendering."""

    started: float
    now: float
    requests: int
    errors: int
    in_flight: int
    mean_latency_ms: float
    draining: bool = False
    workers: int = 1

    @property
    def uptime_seconds(self) -> float:
        return max(0.0, self.now - self.started)


class GatewayStats:
    """
    Start time, draining state and a view of the routes' counters.
    C{clock} gives seconds (a reactor); C{route}, when given, is counted
    among the routes (the environment's backend is named C{backend}).
    """

    ENV_ROUTE = "backend"  # the metrics name of PRIVATE_BACKEND_URL's route

    def __init__(self, clock, route: RouteMetrics = None):
        self._clock = clock
        self.metrics = Metrics(clock)
        if route is not None:
            self.metrics.adopt(route)
        self.started = clock.seconds()
        self.reloads = {"ok": 0, "error": 0}  # config reloads (SIGHUP), by result
        self.draining = False  # set on SIGTERM: finishing what is in flight
        # In a worker: the other workers' figures (see wighaven.run.cluster.PeerFigures).
        self.peers = None

    @property
    def route(self) -> RouteMetrics:
        """The environment's route's metrics (made on first use)."""
        return self.metrics.route(self.ENV_ROUTE)

    @property
    def in_flight(self) -> int:
        return sum(route.in_flight for route in self.metrics.routes.values())

    @property
    def gateway_started(self) -> float:
        """When the gateway started: the parent's start when there are workers."""
        started = self.peers.started if self.peers is not None else None
        return self.started if started is None else min(started, self.started)

    def figures(self, now=None) -> dict:
        """
        The whole gateway's metrics snapshot (the format of
        L{wighaven.observe.metrics.Metrics.snapshot}): this process's own, plus the
        other workers' when there are any.
        """
        if now is None:
            now = self._clock.seconds()
        own = {"time": now, "reloads": dict(self.reloads), "routes": self.own_routes(now)}
        others = self.peers.snapshot() if self.peers is not None else None
        return merge_snapshots([own, others]) if others else own

    # Up to this many routes, every one is in the figures; above it, only
    # those with something to show (L{RouteMetrics.in_use}): a table of
    # 1,000 mostly idle routes is not snapshot whole every second.
    EVERY_ROUTE_UP_TO = 64

    def own_routes(self, now) -> dict:
        """This process's route snapshots, by metrics name (see EVERY_ROUTE_UP_TO)."""
        routes = self.metrics.routes
        every = len(routes) <= self.EVERY_ROUTE_UP_TO
        return {name: route.snapshot(now) for name, route in routes.items()
                if every or route.in_use()}

    def route_figures(self, now=None) -> dict:
        """Every route's figures added up (a route snapshot's shape)."""
        if now is None:
            now = self._clock.seconds()
        return merge_route_figures(self.figures(now)["routes"].values(), self._clock, now)

    def snapshot(self) -> StatsSnapshot:
        now = self._clock.seconds()
        route = self.route_figures(now)
        latency = route["total_latency"]
        return StatsSnapshot(
            started=self.gateway_started,
            now=now,
            requests=sum(n for classes in route["requests"].values() for n in classes.values()),
            errors=route["errors"],
            in_flight=route["in_flight"],
            mean_latency_ms=(latency["sum"] / latency["count"] * 1000.0) if latency["count"] else 0.0,
            draining=self.draining,
            workers=self.peers.workers if self.peers is not None else 1,
        )

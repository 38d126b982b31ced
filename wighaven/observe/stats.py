"""The gateway's state as the dashboard and the health endpoint show it.

Rule: L{GatewayStats} is a thin view over the metrics of the backend route
(L{wighaven.observe.metrics.RouteMetrics}), plus what is not a metric: when the
gateway started and whether it is draining. Counting happens once, in the
route; nothing here keeps a second copy of a counter.

With several workers (WORKERS above 1) each process counts its own
requests, and C{peers} holds what the supervising parent last reported of
all the others; L{GatewayStats.figures} adds the two, so every page shows
the whole gateway whichever worker serves it.
"""

from __future__ import annotations

import attrs

from .metrics import RouteMetrics, merge_snapshots

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
    Start time, draining state and a view of the backend route's counters.
    C{clock} gives seconds (a reactor); C{route} is created when not given.
    """

    def __init__(self, clock, route: RouteMetrics = None):
        self._clock = clock
        self.route = route if route is not None else RouteMetrics("backend", clock)
        self.started = clock.seconds()
        self.draining = False  # set on SIGTERM: finishing what is in flight
        # In a worker: the other workers' figures (see wighaven.run.cluster.PeerFigures).
        self.peers = None

    @property
    def in_flight(self) -> int:
        return self.route.in_flight

    def request_started(self) -> None:
        self.route.request_started()

    def request_ended(self, status, duration: float, failed: bool = False, *, method=b"GET",
                      to_headers=None, bytes_in=0, bytes_out=0, path=None) -> None:
        """Count one forwarded request; 5xx answers and broken streams are errors."""
        self.route.request_ended(
            method, status, duration, to_headers, bytes_in, bytes_out, failed, path=path
        )

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
        own = {"time": now, "routes": {self.route.name: self.route.snapshot(now)}}
        others = self.peers.snapshot() if self.peers is not None else None
        return merge_snapshots([own, others]) if others else own

    def route_figures(self, now=None) -> dict:
        """The backend route's part of L{figures}."""
        return self.figures(now)["routes"][self.route.name]

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

"""The gateway's state as the dashboard and the health endpoint show it.

Rule: L{GatewayStats} is a thin view over the metrics of the backend route
(L{wighaven.metrics.RouteMetrics}), plus what is not a metric: when the
gateway started and whether it is draining. Counting happens once, in the
route; nothing here keeps a second copy of a counter.
"""

from __future__ import annotations

import attrs

from .metrics import RouteMetrics

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

    def snapshot(self) -> StatsSnapshot:
        route = self.route
        latency = route.total_latency
        return StatsSnapshot(
            started=self.started,
            now=self._clock.seconds(),
            requests=sum(route.requests.values()),
            errors=route.errors,
            in_flight=route.in_flight,
            mean_latency_ms=(latency.sum / latency.count * 1000.0) if latency.count else 0.0,
            draining=self.draining,
        )

"""Counters the dashboard and the health endpoint show.

Rule: one L{GatewayStats} per gateway, updated once per finished request
(in the access-log hook), read as an immutable L{StatsSnapshot}. Cheap
enough for the hot path: a handful of integer and float additions.
"""

from __future__ import annotations

import attrs

__all__ = ["GatewayStats", "StatsSnapshot"]


@attrs.frozen
class StatsSnapshot:
    """The counters at one moment, for rendering."""

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
    """Running totals of proxied requests. C{clock} gives seconds (a reactor)."""

    def __init__(self, clock):
        self._clock = clock
        self.started = clock.seconds()
        self.requests = 0
        self.errors = 0
        self.in_flight = 0
        self.draining = False  # set on SIGTERM: finishing what is in flight
        self._latency_total = 0.0

    def request_started(self) -> None:
        self.in_flight += 1

    def request_ended(self, status: int, duration: float, failed: bool = False) -> None:
        """Count one forwarded request; 5xx answers and broken streams are errors."""
        self.in_flight -= 1
        self.requests += 1
        self._latency_total += duration
        if failed or status >= 500:
            self.errors += 1

    def snapshot(self) -> StatsSnapshot:
        mean = (self._latency_total / self.requests * 1000.0) if self.requests else 0.0
        return StatsSnapshot(
            started=self.started,
            now=self._clock.seconds(),
            requests=self.requests,
            errors=self.errors,
            in_flight=self.in_flight,
            mean_latency_ms=mean,
            draining=self.draining,
        )

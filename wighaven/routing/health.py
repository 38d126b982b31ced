"""Passive health: an upstream that keeps failing is left out for a while.

Rule (issue "many Spaces", part 5): C{threshold} (3) consecutive failures
(connect errors, resets, TLS failures, 502/503/504 answers) eject an
upstream for C{base} seconds (10). When its time is up it takes requests
again; one more failure ejects it at once for twice as long, and so on up
to C{cap} (5 minutes). One success clears the count and the backoff.

Why passive and per upstream: the requests themselves are the probe, so a
healthy Space is never woken or billed just to be checked; an ejected one
gets its chance again after a bounded time.

The clock is the reactor's (anything with C{seconds()}), so tests drive it
with task.Clock. This module decides; the balancer asks L{available}.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["PassiveHealth", "FAILING_STATUSES"]

# Answers that count as the upstream failing (its own 500s do not: the app
# answered, and another replica would likely answer the same).
FAILING_STATUSES = frozenset([502, 503, 504])


class PassiveHealth:
    """The passive health of one upstream."""

    def __init__(self, clock, threshold: int = 3, base: float = 10.0, cap: float = 300.0):
        self._clock = clock
        self._threshold = threshold
        self._base = base
        self._cap = cap
        self._failures = 0  # consecutive
        self._ejections = 0  # consecutive ejections, for the backoff
        self.ejected_until: Optional[float] = None
        self.last_error: Optional[str] = None
        # No failure counted, not ejected: a success changes nothing (the
        # forwarding path skips the call then).
        self.clean = True

    def available(self) -> bool:
        """May the upstream take a request now?"""
        until = self.ejected_until
        return until is None or self._clock.seconds() >= until

    def succeeded(self) -> None:
        """A request went through (any answer but 502/503/504)."""
        self._failures = 0
        self._ejections = 0
        self.ejected_until = None
        self.clean = True

    def failed(self, detail: str) -> None:
        """A connect error, reset, TLS failure or 502/503/504; C{detail} for the dashboard."""
        self.last_error = detail
        self.clean = False
        if not self.available():
            return  # tried in panic while ejected: the ejection stands as it is
        self._failures += 1
        # Back from an ejection, one failure is enough to go out again.
        if self._failures >= self._threshold or self._ejections:
            seconds = min(self._cap, self._base * (2 ** self._ejections))
            self._ejections += 1
            self._failures = 0
            self.ejected_until = self._clock.seconds() + seconds

    def answered(self, status: int) -> None:
        """Count an answer's status."""
        if status in FAILING_STATUSES:
            self.failed("answered %d" % status)
        else:
            self.succeeded()

    @property
    def state(self) -> str:
        """C{up}, or C{ejected} while left out."""
        return "up" if self.available() else "ejected"

"""When a failed request may be tried on another upstream.

Rule (issue "many Spaces", part 6): only GET, HEAD and OPTIONS without a
body, only when the failure came before any response header (connect
error, reset, TLS failure), never after a byte reached the client, at most
the route's C{retries} times, and within a budget: retries are at most a
fifth of the route's requests over the last 10 seconds (at least 3). The budget keeps a
failing route from doubling its own load (each request becoming two or
three) just when its upstreams are struggling.

The window is ten one-second buckets (requests, retries), so the budget
costs two additions per request and no timer; the clock is the reactor's.
"""

from __future__ import annotations

__all__ = ["RETRYABLE_METHODS", "RetryBudget", "may_retry"]

RETRYABLE_METHODS = frozenset([b"GET", b"HEAD", b"OPTIONS"])


def may_retry(method: bytes, has_body: bool, head_received: bool, client_got_bytes: bool,
              retries_made: int, retries: int) -> bool:
    """
    May a failed try of this request be made again on another upstream
    (the budget aside)? C{retries_made} of the route's C{retries} are spent.
    """
    return (method in RETRYABLE_METHODS and not has_body and not head_received
            and not client_got_bytes and retries_made < retries)


class RetryBudget:
    """Retries at most C{ratio} of the requests over the last C{window} seconds."""

    def __init__(self, clock, ratio: float = 0.2, window: int = 10, minimum: int = 3):
        self._clock = clock
        self._ratio = ratio
        self._window = window
        # A quiet route may still retry its rare failures: at least this many
        # retries per window, whatever the ratio says (3, as Envoy's budget:
        # enough to carry a quiet route over the 3 failures that eject a dead
        # upstream, so its users never see them).
        self._minimum = minimum
        self._requests = [0] * window
        self._retries = [0] * window
        self._seconds = [None] * window  # the second each bucket counts

    def _bucket(self) -> int:
        second = int(self._clock.seconds())
        i = second % self._window
        if self._seconds[i] != second:
            self._seconds[i] = second
            self._requests[i] = 0
            self._retries[i] = 0
        return i

    def _totals(self):
        now = int(self._clock.seconds())
        requests = retries = 0
        for i, second in enumerate(self._seconds):
            if second is not None and now - second < self._window:
                requests += self._requests[i]
                retries += self._retries[i]
        return requests, retries

    def request(self) -> None:
        """Count a request of the route (a first try)."""
        self._requests[self._bucket()] += 1

    def take(self) -> bool:
        """May one more retry be made now? If so, it is counted."""
        requests, retries = self._totals()
        if retries + 1 > max(self._minimum, requests * self._ratio):
            return False
        self._retries[self._bucket()] += 1
        return True

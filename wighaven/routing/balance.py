"""Which upstream of a route takes the next request.

Two policies, the config file's C{balance}:

- C{round_robin}: smooth weighted round robin, as nginx does it. Each pick
  adds every upstream's weight to its running score, takes the upstream
  with the highest score and takes the total weight off the winner. Over
  any window of C{sum(weights)} picks each upstream gets exactly its weight,
  spread out (weights 5, 1, 1 give a a b a c a a, not a a a a a b c).
- C{least_in_flight}: the fewer requests an upstream has in flight, the
  likelier it is picked: two upstreams drawn at random, the one with fewer
  in flight wins ("power of two choices": nearly as good as the least of
  all, without a scan, and two gateways' workers do not stampede onto the
  same one). Weights scale the count (in flight / weight).

Both skip upstreams that are not available (ejected or down, see health);
when none is, they pick among all of them ("panic": trying a doubtful
upstream beats refusing everything). An upstream here is any object the
caller tracks; availability and in-flight counts come from callables, so
this module keeps no state but the scores.
"""

from __future__ import annotations

import random
from typing import Callable, Optional, Sequence

__all__ = ["LeastInFlight", "SmoothWeightedRoundRobin", "balancer_for"]


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin over C{upstreams} with C{weights}."""

    def __init__(self, upstreams: Sequence, weights: Sequence[int]):
        if len(upstreams) != len(weights) or not upstreams:
            raise ValueError("one positive weight per upstream, at least one upstream")
        self._upstreams = tuple(upstreams)
        self._weights = tuple(weights)
        self._scores = [0] * len(upstreams)

    def pick(self, available: Callable[[object], bool] = lambda u: True):
        upstreams, weights, scores = self._upstreams, self._weights, self._scores
        candidates = [i for i, u in enumerate(upstreams) if available(u)]
        if not candidates:  # panic: every upstream is down, try them anyway
            candidates = range(len(upstreams))
        total = 0
        best: Optional[int] = None
        for i in candidates:
            scores[i] += weights[i]
            total += weights[i]
            if best is None or scores[i] > scores[best]:
                best = i
        scores[best] -= total
        return upstreams[best]


class LeastInFlight:
    """Power of two choices on C{in_flight(upstream) / weight}."""

    def __init__(self, upstreams: Sequence, weights: Sequence[int],
                 in_flight: Callable[[object], int], rng: Optional[random.Random] = None):
        if len(upstreams) != len(weights) or not upstreams:
            raise ValueError("one positive weight per upstream, at least one upstream")
        self._upstreams = tuple(upstreams)
        self._weights = dict(zip(map(id, upstreams), weights))
        self._in_flight = in_flight
        self._rng = rng or random.Random()

    def pick(self, available: Callable[[object], bool] = lambda u: True):
        candidates = [u for u in self._upstreams if available(u)] or self._upstreams
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(candidates, 2)
        load_a = self._in_flight(a) / self._weights[id(a)]
        load_b = self._in_flight(b) / self._weights[id(b)]
        return a if load_a <= load_b else b


def balancer_for(balance: str, upstreams: Sequence, weights: Sequence[int],
                 in_flight: Callable[[object], int], rng: Optional[random.Random] = None):
    """The balancer a route's C{balance} names, over C{upstreams} with C{weights}."""
    if balance == "least_in_flight":
        return LeastInFlight(upstreams, weights, in_flight, rng)
    return SmoothWeightedRoundRobin(upstreams, weights)

"""Failed logins slow down, per account and per client address.

Rule: the first C{free} (5) failures of an account, or from an address, cost
nothing; after that each attempt must wait C{base} seconds (1) doubling with
every further failure, up to C{cap} (15 minutes). A login is refused with
429 and Retry-After while either its account or its address must wait, so
guessing one account from many addresses and many accounts from one address
are both held back. A success clears its account's count (the address's
fades on its own: it may be guessing other accounts too).

Memory is bounded: at most C{max_entries} keys (the least recently failed
go first), and a key quiet for twice the cap is forgotten. The clock is the
reactor's (task.Clock in tests).
"""

from __future__ import annotations

import collections
import math

__all__ = ["LoginThrottle"]


class LoginThrottle:
    def __init__(self, clock, free: int = 5, base: float = 1.0, cap: float = 900.0,
                 max_entries: int = 100_000):
        self._clock = clock
        self._free = free
        self._base = base
        self._cap = cap
        self._max = max_entries
        self._failures = collections.OrderedDict()  # key -> (count, last failure time)

    def _wait(self, key) -> float:
        entry = self._failures.get(key)
        if entry is None:
            return 0.0
        count, last = entry
        now = self._clock.seconds()
        if now - last > 2 * self._cap:
            del self._failures[key]
            return 0.0
        if count < self._free:
            return 0.0
        delay = min(self._cap, self._base * (2 ** (count - self._free)))
        return max(0.0, last + delay - now)

    def retry_after(self, account: str, address: str) -> int:
        """Whole seconds this login must wait (0: it may be tried now)."""
        wait = max(self._wait(("user", account)), self._wait(("addr", address)))
        return int(math.ceil(wait))

    def failed(self, account: str, address: str) -> None:
        """Count a failed login (a wrong password, an unknown user, a bad code)."""
        now = self._clock.seconds()
        failures = self._failures
        for key in (("user", account), ("addr", address)):
            count = failures.pop(key, (0, now))[0]
            failures[key] = (count + 1, now)
        while len(failures) > self._max:
            failures.popitem(last=False)

    def succeeded(self, account: str) -> None:
        """A good login clears its account's failures."""
        self._failures.pop(("user", account), None)

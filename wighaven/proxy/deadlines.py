"""Deadlines: the gateway's many timeouts, checked by one periodic sweep.

Why: a callLater per timeout costs a DelayedCall, a heap insertion and, when
it is cancelled (what becomes of almost every timeout of a proxy: the
answer comes in time), a later heap clean-up. Each forwarded request used to
set three or four of them. A deadline is an attribute write instead.

Rule: an owner is anything with a C{deadline} attribute (the reactor's
seconds() at which it times out, or None for no timeout now) and a
C{deadline_passed()} method. It is watched (L{Deadlines.watch}) while it may
have a deadline and forgotten (L{Deadlines.forget}) when it ends; changing
its deadline is writing the attribute, at any time, as often as it likes.
Every C{resolution} seconds (one by default) the sweep looks at each watched
owner: one whose deadline is not after now has its deadline cleared, then
C{deadline_passed()} called. So a timeout never fires before its deadline
and at most one resolution after it: the README's timeouts are whole
seconds, and this is their precision.

The sweep's timer runs only while some owner is watched, so an idle gateway
wakes for nothing and no timer outlives the connections it serves
(L{stop} cancels it when the gateway stops).
"""

from __future__ import annotations

from twisted.logger import Logger

__all__ = ["Deadlines", "RESOLUTION"]

RESOLUTION = 1.0


class Deadlines:
    """The deadlines of one reactor's owners (see the module)."""

    _log = Logger()

    def __init__(self, reactor, resolution: float = RESOLUTION):
        self._reactor = reactor
        self._resolution = resolution
        self._owners = set()
        self._timer = None

    def watch(self, owner) -> None:
        """Check C{owner}'s deadline at every sweep from now on."""
        self._owners.add(owner)
        if self._timer is None:
            self._timer = self._reactor.callLater(self._resolution, self._sweep)

    def forget(self, owner) -> None:
        """C{owner} has ended: no more checks (nothing if it was not watched)."""
        owners = self._owners
        owners.discard(owner)
        if not owners and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __len__(self) -> int:
        return len(self._owners)

    def stop(self) -> None:
        """The gateway stops: no sweep any more."""
        self._owners.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self):
        self._timer = None
        now = self._reactor.seconds()
        passed = [
            owner for owner in self._owners
            if owner.deadline is not None and owner.deadline <= now
        ]
        for owner in passed:
            if owner.deadline is not None and owner.deadline <= now:
                owner.deadline = None
                try:
                    owner.deadline_passed()
                except Exception:
                    self._log.failure("A timeout's handling failed")
        if self._owners and self._timer is None:
            self._timer = self._reactor.callLater(self._resolution, self._sweep)

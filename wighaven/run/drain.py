"""Graceful drain: how the gateway stops without cutting what is in flight.

Rule, on SIGTERM (or any stop of the service):
1. stop accepting at once (the listening port closes);
2. /gateway-health answers 503 "draining", so a load balancer stops sending;
3. idle keep-alive connections are closed, and every connection busy with a
   request closes after its answer (sent with Connection: close);
4. requests and streams in flight (SSE, WebSocket tunnels, uploads) run on
   until they end or DRAIN_TIMEOUT passes; whatever is left is then cut;
5. the process exits 0. A second SIGTERM during the drain exits at once.
"""

from __future__ import annotations

import os
import signal

from twisted.internet import defer, task
from twisted.logger import Logger

__all__ = ["Drain", "drain_on_sigterm", "exit_now"]

POLL_INTERVAL = 0.05


class Drain:
    """
    The drain of one gateway: its site (open connections), counters (in
    flight) and a clock.
    """

    _log = Logger()

    def __init__(self, site, stats, reactor, timeout: float):
        self._site = site
        self._stats = stats
        self._reactor = reactor
        self._timeout = timeout
        self._done = None

    @property
    def started(self) -> bool:
        return self._done is not None

    def run(self, stop_listening) -> defer.Deferred:
        """
        Drain; C{stop_listening} closes the listening port (may return a
        Deferred). Fires when nothing is in flight any more, or at the timeout.
        Running it again returns the same Deferred.
        """
        if self._done is not None:
            return self._done
        self._stats.draining = True
        self._log.info(
            "draining: {in_flight} in flight, up to {timeout}s",
            in_flight=self._stats.in_flight,
            timeout=self._timeout,
        )
        self._done = defer.maybeDeferred(stop_listening)
        self._done.addCallback(lambda _: self._close_idle())
        self._done.addCallback(lambda _: self._wait())
        self._done.addCallback(lambda _: self._cut_the_rest())
        return self._done

    def _close_idle(self):
        for channel in list(self._site.channels):
            channel.close_if_idle()

    def _wait(self):
        deadline = self._reactor.seconds() + self._timeout

        def check():
            if self._stats.in_flight <= 0 or self._reactor.seconds() >= deadline:
                return None
            # A connection busy with a request now closes after its answer:
            # re-check for those that went idle in between.
            self._close_idle()
            return task.deferLater(self._reactor, POLL_INTERVAL, check)

        return check()

    def _cut_the_rest(self):
        left = [c for c in self._site.channels if c.transport is not None]
        if self._stats.in_flight > 0:
            self._log.warn(
                "drain timeout: cutting {in_flight} exchanges still in flight",
                in_flight=self._stats.in_flight,
            )
        else:
            self._log.info(
                "drain finished: nothing left in flight ({connections} idle connections closed)",
                connections=len(left),
            )
        for channel in left:
            channel.transport.abortConnection()


def drain_on_sigterm(reactor, draining, drain_then_stop, before_exit=None) -> None:
    """
    From now on, SIGTERM calls C{drain_then_stop} in the reactor; a second
    one, while C{draining()} is true, calls C{before_exit} (if given) and
    leaves at once with status 1. Installed once the reactor runs, so it
    replaces Twisted's own handler.
    """

    def on_sigterm(signum, frame):
        if draining():
            if before_exit is not None:
                before_exit()
            exit_now(1)
        reactor.callFromThread(drain_then_stop)

    signal.signal(signal.SIGTERM, on_sigterm)


def exit_now(code: int = 1):
    """Leave the process at once, without cleaning up (a second SIGTERM)."""
    os._exit(code)

"""SLOW_CLIENT_GRACE: a client that stops reading gives back its place.

Rule: a forwarded response holds one of the UPSTREAM_MAX_CONNECTIONS places
until its body is done. A client that stops reading a large download
(its connection's write buffer fills, so the gateway pauses the backend
connection) would hold that place for as long as it likes, and a handful
of such clients would make everyone else wait and then 504. So a response
that stays paused by its client for SLOW_CLIENT_GRACE seconds gives its
place back to the requests waiting in line, like an event stream does: it
goes on, outside the count, if the client reads again, and
STREAM_IDLE_TIMEOUT still cuts it if the client never does. A pause shorter
than the grace (the usual ebb and flow of a download) changes nothing.

Why a sweep and not a timer per pause: a fast download pauses and resumes
thousands of times a second; each pause costs here one dict insert, and
one periodic check (every quarter of the grace, at most every half second)
serves every paused exchange.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from zope.interface import implementer

__all__ = ["PacedProducer", "SlowClients"]


class SlowClients:
    """The responses paused by their clients, and the sweep that frees their places."""

    def __init__(self, clock, grace: float):
        self._clock = clock
        self._grace = grace
        self._paused = {}  # PacedProducer -> when it was paused
        self._loop = None
        self.released = 0  # places given back so far (for tests and figures)

    def paused(self, producer: "PacedProducer") -> None:
        self._paused[producer] = self._clock.seconds()
        if self._loop is None:
            self._loop = LoopingCall(self._sweep)
            self._loop.clock = self._clock
            self._loop.start(min(max(self._grace / 4.0, 0.05), 0.5), now=False)

    def resumed(self, producer: "PacedProducer") -> None:
        self._paused.pop(producer, None)

    def _sweep(self) -> None:
        now = self._clock.seconds()
        for producer, since in list(self._paused.items()):
            if now - since >= self._grace:
                del self._paused[producer]
                self.released += 1
                producer.release()
        if not self._paused:
            self.stop()

    def stop(self) -> None:
        """
        No more sweeps until the next pause. The sweep stops by itself once
        nothing is paused (lazily: a download pauses and resumes thousands
        of times a second, and a timer started and cancelled each time
        would cost more than the sweep); the service calls this on stop, so
        no timer outlives the gateway.
        """
        if self._loop is not None:
            self._loop.stop()
            self._loop = None


@implementer(IPushProducer)
class PacedProducer:
    """
    The backend connection as the producer of the client's response (its
    pauses are the client's backpressure), telling L{SlowClients} how long
    each pause lasts. C{release} gives the exchange's place back (once).
    """

    def __init__(self, upstream, slow_clients: SlowClients, release):
        self._upstream = upstream
        self._slow = slow_clients
        self.release = release

    def pauseProducing(self):
        self._slow.paused(self)
        self._upstream.pauseProducing()

    def resumeProducing(self):
        self._slow.resumed(self)
        self._upstream.resumeProducing()

    def stopProducing(self):
        self._slow.resumed(self)
        self._upstream.stopProducing()

    def done(self):
        """The body is over: nothing to release any more."""
        self._slow.resumed(self)

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
thousands of times a second. A response is watched by a
L{wighaven.proxy.deadlines.Deadlines} sweep of its own resolution (a quarter of
the grace, between 0.05 and 0.5 seconds) from its first pause to its end;
each pause then only sets its deadline and each resume clears it. A
response that never pauses (most of them) costs nothing here.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from .deadlines import Deadlines

__all__ = ["PacedProducer", "SlowClients"]


class SlowClients:
    """The responses paused by their clients, and the sweep that frees their places."""

    def __init__(self, clock, grace: float):
        self._clock = clock
        self._grace = grace
        self._deadlines = Deadlines(clock, resolution=min(max(grace / 4.0, 0.05), 0.5))
        self.released = 0  # places given back so far (for tests and figures)

    def paused(self, producer: "PacedProducer") -> None:
        producer.deadline = self._clock.seconds() + self._grace
        self._deadlines.watch(producer)

    def resumed(self, producer: "PacedProducer") -> None:
        producer.deadline = None

    def done(self, producer: "PacedProducer") -> None:
        producer.deadline = None
        self._deadlines.forget(producer)

    def gave_back(self, producer: "PacedProducer") -> None:
        self.released += 1
        producer.release()

    def stop(self) -> None:
        """The gateway stops: no sweep outlives it."""
        self._deadlines.stop()


@implementer(IPushProducer)
def _nothing():
    """The release of a response that is over."""


class PacedProducer:
    """
    The backend connection as the producer of the client's response (its
    pauses are the client's backpressure), telling L{SlowClients} how long
    each pause lasts. C{release} gives the exchange's place back (once).
    """

    deadline = None  # while paused: when its place is given back

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

    def deadline_passed(self):
        """Paused for SLOW_CLIENT_GRACE: the place goes back (once: the deadline is cleared)."""
        self._slow.gave_back(self)

    def done(self):
        """The body is over: nothing to release any more."""
        self._slow.done(self)
        self.release = _nothing  # and no cycle through the relay's bound method

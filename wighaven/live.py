"""The dashboard's live feed: a WebSocket at /_gateway/live.

Rule: one small JSON text message per second to each open dashboard, and
only while at least one is open (no watcher, no timer, no cost). The first
message after connecting ("hello") carries the last 300 seconds of history
so the chart can be drawn at once; each later one ("stats") carries the
newest complete second ("point") and the requests finished since the
previous message ("recent"). Messages are built from the metrics alone:
they never hold the token. The exact schema is in L{LiveMessages}.

Served with Twisted's own WebSocket server (twisted.web.websocket, over
wsproto): the gateway speaks the protocol itself here, unlike forwarded
WebSockets, which it only relays as bytes.
"""

from __future__ import annotations

import json

from twisted.internet.task import LoopingCall
from twisted.web.websocket import WebSocketResource

from . import __version__

__all__ = ["LiveFeed", "LiveMessages"]

RECENT_ON_PAGE = 20


def _ms(histogram, q):
    value = histogram.quantile(q)
    return None if value is None else round(value * 1000.0, 3)


class LiveMessages:
    """
    Builds the feed's messages from a route's metrics and the gateway's
    state. Every message has: type ("hello" or "stats"), time, status
    ("ok" or "draining"), version, backend (host[:port]), uptime_seconds,
    requests_per_second (last 10 s), latency_ms {p50, p95, p99} (last
    minute, null when no request), error_rate (last minute, 0..1),
    requests and errors (totals), in_flight, open_websockets, open_streams,
    bytes_in, bytes_out, recent [{time, method, path, status, ms}] and
    backend_status {reachable, last_error, last_error_at}. "hello" adds
    history [{t, requests, errors}] (300 s, oldest first); "stats" adds
    point (the newest complete second, same shape).
    """

    def __init__(self, route, stats, backend_host: str, clock):
        self._route = route
        self._stats = stats
        self._backend_host = backend_host
        self._clock = clock
        self._sent = route.recent_total  # recent entries already sent in "stats"

    def _common(self, kind, now):
        route = self._route
        window = route.window
        latency = window.latency(now, 60)
        backend = route.backend
        return {
            "type": kind,
            "time": now,
            "status": "draining" if self._stats.draining else "ok",
            "version": __version__,
            "backend": self._backend_host,
            "uptime_seconds": round(now - self._stats.started, 3),
            "requests_per_second": round(window.rate(now, 10), 3),
            "latency_ms": {"p50": _ms(latency, 0.5), "p95": _ms(latency, 0.95),
                           "p99": _ms(latency, 0.99)},
            "error_rate": round(window.error_rate(now, 60), 5),
            "requests": sum(route.requests.values()),
            "errors": route.errors,
            "in_flight": route.in_flight,
            "open_websockets": route.open_websockets,
            "open_streams": route.open_streams,
            "bytes_in": route.bytes_in,
            "bytes_out": route.bytes_out,
            "backend_status": {
                "reachable": backend.get("reachable"),
                "last_error": backend.get("last_error"),
                "last_error_at": backend.get("last_error_at"),
            },
        }

    def hello(self) -> dict:
        now = self._clock.seconds()
        message = self._common("hello", now)
        message["history"] = self._route.window.history(now, 300)
        # What the next "stats" will send is left out, so nothing shows twice.
        message["recent"] = self._recent(upto=self._sent)[-RECENT_ON_PAGE:]
        return message

    def _recent(self, upto: int, since: int = 0) -> list:
        """Entries number since+1..upto of the route's recent requests (still held)."""
        route = self._route
        held = list(route.recent)
        first = route.recent_total - len(held)  # number of the oldest held, minus one
        return held[max(since - first, 0): max(upto - first, 0)]

    def stats(self) -> dict:
        now = self._clock.seconds()
        message = self._common("stats", now)
        message["point"] = self._route.window.history(now, 2)[0]
        since, self._sent = self._sent, self._route.recent_total
        message["recent"] = self._recent(upto=self._sent, since=since)[-RECENT_ON_PAGE:]
        return message


class _Watcher:
    """One open dashboard (a WebSocketProtocol for Twisted's server)."""

    def __init__(self, feed: "LiveFeed"):
        self._feed = feed
        self.transport = None

    def negotiationStarted(self, transport):
        self.transport = transport

    def negotiationFinished(self):
        self._feed.joined(self)

    def send(self, text: str):
        self.transport.sendTextMessage(text)

    def textMessageReceived(self, message):
        pass  # the feed only talks

    def bytesMessageReceived(self, data):
        pass

    def pongReceived(self, payload):
        pass

    def connectionLost(self, reason):
        self._feed.left(self)


class LiveFeed:
    """The watchers of the feed and the once-a-second timer that serves them."""

    def __init__(self, messages: LiveMessages, clock, interval: float = 1.0):
        self._messages = messages
        self._clock = clock
        self._interval = interval
        self._watchers = set()
        self._loop = None

    @property
    def messages(self) -> LiveMessages:
        return self._messages

    def resource(self):
        return WebSocketResource(self)

    def buildProtocol(self, request):
        return _Watcher(self)

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def joined(self, watcher):
        self._watchers.add(watcher)
        watcher.send(json.dumps(self._messages.hello()))
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=False)

    def left(self, watcher):
        self._watchers.discard(watcher)
        if not self._watchers and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def _tick(self):
        text = json.dumps(self._messages.stats())
        for watcher in list(self._watchers):
            watcher.send(text)

    def close(self):
        """Close every watcher (the gateway is stopping)."""
        for watcher in list(self._watchers):
            watcher.transport.loseConnection()

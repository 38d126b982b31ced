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
from .metrics import Histogram

__all__ = ["LiveFeed", "LiveMessages"]

RECENT_ON_PAGE = 20
RATE_SECONDS = 10  # requests_per_second is averaged over this many seconds
HISTORY_SECONDS = 300
# With several workers, how many seconds later than its own the others'
# counts of a second are all in (each reports once a second, and hears
# back when it next reports): the chart's newest point waits for them.
PEER_LAG = 2
_RECENT_KEYS = ("time", "method", "path", "status", "ms")


def _ms(histogram, q):
    value = histogram.quantile(q)
    return None if value is None else round(value * 1000.0, 3)


class LiveMessages:
    """
    Builds the feed's messages from the gateway's figures
    (L{wighaven.stats.GatewayStats.figures}: this process's route, plus the
    other workers' when there are several) and the gateway's state. Every
    message has: type ("hello" or "stats"), time, status ("ok" or
    "draining"), version, backend (host[:port]), uptime_seconds,
    requests_per_second (last 10 s), latency_ms {p50, p95, p99} (last
    minute, null when no request), error_rate (last minute, 0..1),
    requests and errors (totals), in_flight, open_websockets, open_streams,
    bytes_in, bytes_out, recent [{time, method, path, status, ms}] and
    backend_status {reachable, last_error, last_error_at}. "hello" adds
    history [{t, requests, errors}] (300 s, oldest first); "stats" adds
    point (the newest complete second, same shape).
    """

    def __init__(self, route, stats, backend_host: str, clock):
        self._stats = stats
        self._backend_host = backend_host
        self._clock = clock
        # Per source process (None: this one), the number of the newest
        # recent entry already sent in a "stats" message.
        self._sent = {None: route.recent_total}

    def _common(self, kind, now, route):
        history = route["history"]
        minute = route["last_minute"]
        latency = Histogram.from_dict(minute["latency"])
        backend = route["backend"]
        span = min(RATE_SECONDS, len(history)) or 1
        return {
            "type": kind,
            "time": now,
            "status": "draining" if self._stats.draining else "ok",
            "version": __version__,
            "backend": self._backend_host,
            "uptime_seconds": round(now - self._stats.gateway_started, 3),
            "requests_per_second": round(
                sum(entry["requests"] for entry in history[-span:]) / span, 3
            ),
            "latency_ms": {"p50": _ms(latency, 0.5), "p95": _ms(latency, 0.95),
                           "p99": _ms(latency, 0.99)},
            "error_rate": round(minute["errors"] / minute["requests"], 5)
            if minute["requests"] else 0.0,
            "requests": sum(n for classes in route["requests"].values() for n in classes.values()),
            "errors": route["errors"],
            "in_flight": route["in_flight"],
            "open_websockets": route["open_websockets"],
            "open_streams": route["open_streams"],
            "bytes_in": route["bytes_in"],
            "bytes_out": route["bytes_out"],
            "backend_status": {
                "reachable": backend.get("reachable"),
                "last_error": backend.get("last_error"),
                "last_error_at": backend.get("last_error_at"),
            },
        }

    def hello(self) -> dict:
        now = self._clock.seconds()
        route = self._stats.route_figures(now)
        message = self._common("hello", now, route)
        message["history"] = route["history"][-HISTORY_SECONDS:]
        # What the next "stats" will send is left out, so nothing shows twice.
        sent = self._sent
        message["recent"] = _public(
            entry for entry in route["recent"] if entry["n"] <= sent.get(entry.get("src"), 0)
        )
        return message

    def stats(self) -> dict:
        now = self._clock.seconds()
        route = self._stats.route_figures(now)
        message = self._common("stats", now, route)
        # The newest second every worker has reported: the other workers'
        # figures reach this one up to PEER_LAG seconds after a second ends.
        back = 2 + (PEER_LAG if self._stats.peers is not None else 0)
        history = route["history"]
        message["point"] = history[-min(back, len(history))]
        sent = self._sent
        new = [entry for entry in route["recent"] if entry["n"] > sent.get(entry.get("src"), 0)]
        for entry in new:
            source = entry.get("src")
            sent[source] = max(sent.get(source, 0), entry["n"])
        message["recent"] = _public(new)
        return message


def _public(entries) -> list:
    """The newest RECENT_ON_PAGE entries, without their bookkeeping keys."""
    return [
        {key: entry[key] for key in _RECENT_KEYS} for entry in list(entries)[-RECENT_ON_PAGE:]
    ]


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

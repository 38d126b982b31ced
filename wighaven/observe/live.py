"""The dashboard's live feed: a WebSocket at /_gateway/live.

Rule: one small JSON text message per second to each open dashboard, and
only while at least one is open (no watcher, no timer, no cost). The first
message after connecting ("hello") carries the last 300 seconds of history
and the newest recent requests, so the page is whole at once; each later
one ("stats") carries the newest complete second ("point") and the
requests finished since the previous message ("recent"). Messages are
built from the metrics alone: they never hold the token. The exact schema
is in L{LiveMessages}.

What a viewer sees of a request: its time, method, status, duration and
route, and its path only when that viewer may see paths (C{show_paths}:
DASHBOARD_SHOW_PATHS for the public dashboard; an administrator's view
can pass True). A path may carry another visitor's secrets (an OAuth code,
a Gradio C{file=} path), so the recent entries keep it (without its query
string unless LOG_REDACT_QUERY=false: the site drops it before counting)
and each message is cut for its viewer at the last moment
(L{for_viewer}): one "stats" a second serves every kind of viewer.

Slow dashboards: each watcher is a push producer on its HTTP request, so
its connection pauses it when the write buffer passes Twisted's
C{bufferSize} (64 KiB) and resumes it once the buffer has drained. A
watcher still paused at the next tick (it took nothing for a whole
second) is dropped instead of sent more: its connection is aborted, since
a buffer nobody reads never drains, and the page reconnects by itself.
The kernel's send buffer of a watcher's socket is fixed at SEND_BUFFER
(Linux doubles it): left to grow by itself it would hold some 4 MiB for
a dashboard that does not read before Twisted's buffer even starts to
fill. So each dashboard holds at most about 200 KiB and one message.
Twisted's own C{attachProducer} of the WebSocket transport cannot serve
here: it registers on the TCP transport, where the HTTP channel is
registered already (RuntimeError).

At most C{max_watchers} are served at once (LIVE_MAX_WATCHERS):
L{LiveFeed.full} tells the gateway's pages to answer 503 before the
handshake, and the page retries with backoff.

Served with Twisted's own WebSocket server (twisted.web.websocket, over
wsproto): the gateway speaks the protocol itself here, unlike forwarded
WebSockets, which it only relays as bytes.
"""

from __future__ import annotations

import json
import socket

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.web.websocket import WebSocketResource
from zope.interface import implementer

from .. import __version__
from .metrics import Histogram, merge_route_figures

__all__ = ["LiveFeed", "LiveMessages", "for_viewer"]

RECENT_ON_PAGE = 20
RATE_SECONDS = 10  # requests_per_second is averaged over this many seconds
HISTORY_SECONDS = 300
# With several workers, how many seconds later than its own the others'
# counts of a second are all in (each reports once a second, and hears
# back at the supervisor's next tick): the chart's newest point waits for them.
PEER_LAG = 2
MAX_WATCHERS = 50
# Bytes of the kernel's send buffer of a watcher's socket: several seconds
# of messages, even those of long paths.
SEND_BUFFER = 64 * 1024
# What every viewer may see of a recent request; "path" only with show_paths.
_SHOWN = ("time", "method", "route", "status", "ms")
_SHOWN_WITH_PATHS = ("time", "method", "route", "path", "status", "ms")


def _bound_send_buffer(transport) -> None:
    """Fix the kernel's send buffer of C{transport}'s socket at SEND_BUFFER."""
    get_handle = getattr(transport, "getHandle", None)  # TCP transports have one
    if get_handle is not None:
        get_handle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


def _ms(histogram, q):
    value = histogram.quantile(q)
    return None if value is None else round(value * 1000.0, 3)


def _rate(history) -> float:
    """Requests per second over the newest RATE_SECONDS of C{history}."""
    span = min(RATE_SECONDS, len(history)) or 1
    return round(sum(entry["requests"] for entry in history[-span:]) / span, 3)


def _error_rate(minute) -> float:
    return round(minute["errors"] / minute["requests"], 5) if minute["requests"] else 0.0


def _upstream(label, upstream) -> dict:
    return {"label": label, "state": upstream.get("state"),
            "ejected_until": upstream.get("ejected_until"),
            "last_error": upstream.get("last_error"), "stage": upstream.get("stage")}


def _unused(route) -> bool:
    """
    A route's metrics with nothing in them: no upstream known, nothing ever
    counted (e.g. the environment's, made on first use by
    L{GatewayStats.route} in a gateway whose routes are all the file's).
    """
    return (not route.get("upstreams") and not route["in_flight"]
            and not any(n for classes in route["requests"].values() for n in classes.values()))


def _routes(routes) -> list:
    """
    Each route's row of the dashboard, by name: its rate (RATE_SECONDS),
    p95 and error rate (last minute), totals, and its upstreams' health.
    Metrics with nothing in them (L{_unused}) are no route of the table.
    """
    out = []
    for name in sorted(routes):
        route = routes[name]
        if _unused(route):
            continue
        minute = route["last_minute"]
        out.append({
            "name": name,
            "requests_per_second": _rate(route["history"]),
            "p95_ms": _ms(Histogram.from_dict(minute["latency"]), 0.95),
            "errors": route["errors"],
            "error_rate": _error_rate(minute),
            "in_flight": route["in_flight"],
            "upstreams": [_upstream(label, upstream)
                          for label, upstream in route.get("upstreams", {}).items()],
        })
    return out


def for_viewer(message: dict, show_paths: bool) -> dict:
    """
    C{message} (from L{LiveMessages}) as one viewer may see it: its newest
    RECENT_ON_PAGE recent requests without their bookkeeping, and without
    their paths unless C{show_paths}.
    """
    keys = _SHOWN_WITH_PATHS if show_paths else _SHOWN
    recent = message["recent"][-RECENT_ON_PAGE:]
    return dict(message, recent=[{key: entry.get(key) for key in keys} for entry in recent])


class LiveMessages:
    """
    Builds the feed's messages from the gateway's figures
    (L{wighaven.observe.stats.GatewayStats.figures}: this process's route, plus the
    other workers' when there are several) and the gateway's state. Every
    message has: type ("hello" or "stats"), time, status ("ok" or
    "draining"), version, backend (host[:port]), uptime_seconds,
    requests_per_second (last 10 s), latency_ms {p50, p95, p99} (last
    minute, null when no request), error_rate (last minute, 0..1),
    requests and errors (totals), in_flight, open_websockets, open_streams,
    bytes_in, bytes_out, recent [{time, method, route, status, ms}, plus
    path for a viewer who may see paths], backend_status {reachable,
    last_error, last_error_at} and routes: one entry per route of the
    metrics (but those with no upstream known and nothing counted), by
    name, [{name, requests_per_second (last 10 s), p95_ms
    (last minute, null when no request), errors (total), error_rate (last
    minute), in_flight, upstreams [{label (host[:port]), state ("up",
    "ejected", "down", or null when not known), ejected_until (epoch
    seconds while ejected, else null), last_error, stage (the Space's,
    when the Hub is asked)}]}]. "hello" adds history [{t, requests,
    errors}] (300 s, oldest first); "stats" adds point (the newest complete
    second, same shape).

    Which recent requests a message carries: each "stats" those finished
    since the previous one; a "hello" those the open watchers were sent
    already (the next "stats", which the new watcher gets too, brings the
    rest), so nothing shows twice. Requests are told apart by their number
    ("n") per source process ("src"; none: this one), so the other
    workers' requests, which reach this process a second or two late, are
    each shown once too.
    """

    def __init__(self, stats, backend_host: str, clock):
        self._stats = stats
        self._backend_host = backend_host
        self._clock = clock
        # Per source process (None: this one), the number of the newest
        # recent entry the open watchers have been sent (or that finished
        # before the feed existed).
        self._sent = {None: stats.metrics.recent_total}

    def _figures(self, now):
        """
        Every route's figures (one L{GatewayStats.figures} call) and all of
        them added up (the headline's, as L{GatewayStats.route_figures}).
        """
        routes = self._stats.figures(now)["routes"]
        return routes, merge_route_figures(routes.values(), self._clock, now)

    def _common(self, kind, now, route, routes):
        minute = route["last_minute"]
        latency = Histogram.from_dict(minute["latency"])
        backend = route["backend"]
        return {
            "type": kind,
            "time": now,
            "status": "draining" if self._stats.draining else "ok",
            "version": __version__,
            "backend": self._backend_host,
            "uptime_seconds": round(now - self._stats.gateway_started, 3),
            "requests_per_second": _rate(route["history"]),
            "latency_ms": {"p50": _ms(latency, 0.5), "p95": _ms(latency, 0.95),
                           "p99": _ms(latency, 0.99)},
            "error_rate": _error_rate(minute),
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
            "routes": _routes(routes),
        }

    def _is_sent(self, entry) -> bool:
        return entry["n"] <= self._sent.get(entry.get("src"), 0)

    def _mark_sent(self, entries) -> None:
        sent = self._sent
        for entry in entries:
            source = entry.get("src")
            sent[source] = max(sent.get(source, 0), entry["n"])

    def summary(self, now=None) -> dict:
        """The gateway's figures and each route's, as a message has them (no recent
        requests, no history): the admin API's status."""
        now = self._clock.seconds() if now is None else now
        routes, route = self._figures(now)
        return self._common("status", now, route, routes)

    def hello(self, show_paths: bool = False, *, opening: bool = False) -> dict:
        """
        The first message for a new watcher, as it may see it.

        @param opening: no watcher is open (the feed's timer is stopped), so
            the requests that finished meanwhile were sent to nobody and no
            "stats" will carry them: they count as sent now, and show here.
        """
        now = self._clock.seconds()
        routes, route = self._figures(now)
        message = self._common("hello", now, route, routes)
        message["history"] = route["history"][-HISTORY_SECONDS:]
        if opening:
            self._mark_sent(route["recent"])
        message["recent"] = [entry for entry in route["recent"] if self._is_sent(entry)]
        return for_viewer(message, show_paths)

    def next_stats(self) -> dict:
        """
        The next "stats" message, its recent requests whole: L{for_viewer}
        cuts it for each viewer. They count as sent from now on.
        """
        now = self._clock.seconds()
        routes, route = self._figures(now)
        message = self._common("stats", now, route, routes)
        # The newest second every worker has reported: the other workers'
        # figures reach this one up to PEER_LAG seconds after a second ends.
        back = 2 + (PEER_LAG if self._stats.peers is not None else 0)
        history = route["history"]
        message["point"] = history[-min(back, len(history))]
        new = [entry for entry in route["recent"] if not self._is_sent(entry)]
        self._mark_sent(new)
        message["recent"] = new
        return message

    def stats(self, show_paths: bool = False) -> dict:
        """The next "stats" message as one viewer may see it."""
        return for_viewer(self.next_stats(), show_paths)


@implementer(IPushProducer)
class _Watcher:
    """
    One open dashboard: a WebSocketProtocol for Twisted's server, and a
    push producer on its HTTP request, paused by the connection when the
    dashboard does not read what it is sent.
    """

    paused = False

    def __init__(self, feed: "LiveFeed", request, show_paths: bool):
        self._feed = feed
        self._request = request
        self.show_paths = show_paths
        self.transport = None

    def negotiationStarted(self, transport):
        self.transport = transport

    def negotiationFinished(self):
        _bound_send_buffer(self._request.transport)
        self._request.registerProducer(self, True)
        self._feed.joined(self)

    def send(self, text: str):
        self.transport.sendTextMessage(text)

    def pauseProducing(self):
        self.paused = True  # the connection's write buffer is full

    def resumeProducing(self):
        self.paused = False

    def stopProducing(self):
        pass  # the connection ends: connectionLost follows

    def drop(self):
        """
        Leave the feed and abort the connection (a dashboard that does not
        read would keep a closing one, and its buffer, for ever).
        """
        self._feed.left(self)
        self._request.transport.abortConnection()

    def textMessageReceived(self, message):
        pass  # the feed only talks

    def bytesMessageReceived(self, data):
        pass

    def pongReceived(self, payload):
        pass

    def connectionLost(self, reason):
        self._feed.left(self)


class _Door:
    """The WebSocket server factory of one viewer: may it see paths?"""

    def __init__(self, feed: "LiveFeed", show_paths: bool):
        self._feed = feed
        self._show_paths = show_paths

    def buildProtocol(self, request):
        return _Watcher(self._feed, request, self._show_paths)


class LiveFeed:
    """
    The watchers of the feed (C{max_watchers} at most) and the once-a-second
    timer that serves them.
    """

    def __init__(self, messages: LiveMessages, clock, interval: float = 1.0,
                 max_watchers: int = MAX_WATCHERS):
        self._messages = messages
        self._clock = clock
        self._interval = interval
        self._max_watchers = max_watchers
        self._watchers = set()
        self._loop = None

    def resource(self, show_paths: bool = False):
        """The WebSocket resource for a viewer who may see paths or not."""
        return WebSocketResource(_Door(self, show_paths))

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    @property
    def full(self) -> bool:
        """No room for another watcher: the gateway answers 503 instead."""
        return len(self._watchers) >= self._max_watchers

    def hello(self, show_paths: bool = False) -> dict:
        """A new watcher's first message (the dashboard's first paint too)."""
        return self._messages.hello(show_paths, opening=self._loop is None)

    def joined(self, watcher):
        text = json.dumps(self.hello(watcher.show_paths))
        self._watchers.add(watcher)
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=False)
        watcher.send(text)

    def left(self, watcher):
        self._watchers.discard(watcher)
        if not self._watchers and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def _tick(self):
        message = self._messages.next_stats()
        texts = {}  # one encoding per kind of viewer
        for watcher in list(self._watchers):
            if watcher.paused:  # it took nothing of the last message for a second
                watcher.drop()
                continue
            view = watcher.show_paths
            if view not in texts:
                texts[view] = json.dumps(for_viewer(message, view))
            watcher.send(texts[view])

    def close(self):
        """Close every watcher (the gateway is stopping)."""
        for watcher in list(self._watchers):
            watcher.transport.loseConnection()

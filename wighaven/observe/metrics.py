"""Per-route metrics: counters, gauges, latency histograms and a rate window.

Rule: the hot path touches only plain Python ints, floats and lists. One
L{RouteMetrics.request_ended} call per finished request updates everything
with a few additions and two or three C{bisect}s; no prometheus_client
object is touched per request, because its metrics take a lock on every
update. prometheus_client is used only at scrape time, by
L{GatewayCollector}, which turns a snapshot into metric families.

Why snapshots: a snapshot is a plain JSON-able dict, so the dashboard can
send it as is, and N worker processes can each send theirs to one place
where L{merge_snapshots} adds them up. Everything in a snapshot is therefore
additive (counts, sums, histogram buckets, per-second history, the last
minute's raw counts); derived values (rates, ratios, percentiles) are
computed from the (merged) raw numbers, never added.

Time comes from a clock passed in (anything with C{.seconds()}: the reactor,
or C{task.Clock} in tests).
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_left
from collections import deque

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

__all__ = [
    "LATENCY_BUCKETS",
    "RECENT_SIZE",
    "WINDOW_SECONDS",
    "GatewayCollector",
    "Histogram",
    "Metrics",
    "RouteMetrics",
    "Window",
    "exposition",
    "merge_snapshots",
    "normalise_method",
    "status_class",
]

#: Upper bounds (seconds) of the latency buckets; a +Inf bucket is implied.
#: From 1 ms (a cached or tiny answer) to 60 s (a slow model call).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)

#: Seconds of per-second history each route keeps.
WINDOW_SECONDS = 300

#: How many finished requests each route remembers for the dashboard.
RECENT_SIZE = 50

_METHOD_NAMES = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Both str and bytes (Twisted's request.method) map to the str name, so the
# hot path normalises with one dict lookup. Methods are case-sensitive
# (RFC 9110): "get" is OTHER.
_METHODS = {name: name for name in _METHOD_NAMES}
_METHODS.update({name.encode("ascii"): name for name in _METHOD_NAMES})
_CLASSES = (None, "1xx", "2xx", "3xx", "4xx", "5xx")

#: status_class of a request that got no (valid) status: aborted before any
#: answer was sent. Not "5xx": the gateway did not answer 5xx.
NO_STATUS = "error"


def normalise_method(method) -> str:
    """One of the seven common methods (str or bytes), else C{"OTHER"}.

    Bounded label values: a client may send any token as a method, and each
    distinct one would otherwise become a new time series.
    """
    return _METHODS.get(method, "OTHER")


def status_class(status) -> str:
    """C{"1xx"}..C{"5xx"} for a status in 100..599; C{"error"} for None or
    anything else (0, 600+): no real answer was sent."""
    if status is not None and 100 <= status < 600:
        return _CLASSES[status // 100]
    return NO_STATUS


class Histogram:
    """Counts of observations in fixed buckets, like a Prometheus histogram.

    C{counts[i]} counts values in (buckets[i-1], buckets[i]] (not cumulative,
    so that merging is element-wise addition); the last element is the +Inf
    bucket. C{observe} is one C{bisect} and three additions.
    """

    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets=LATENCY_BUCKETS):
        buckets = tuple(float(b) for b in buckets)
        if not buckets:
            raise ValueError("a histogram needs at least one finite bucket")
        if any(math.isinf(b) or math.isnan(b) for b in buckets):
            raise ValueError("buckets must be finite: +Inf is implied")
        if any(a >= b for a, b in zip(buckets, buckets[1:])):
            raise ValueError("buckets must be strictly increasing")
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le).
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def reset(self) -> None:
        """Back to empty, keeping the same lists (the window reuses slots)."""
        counts = self.counts
        for i in range(len(counts)):
            counts[i] = 0
        self.sum = 0.0
        self.count = 0

    def merge(self, other: "Histogram") -> "Histogram":
        """Add C{other}'s observations into this one, in place; returns self.

        Only histograms with the same buckets can be added.
        """
        if other.buckets != self.buckets:
            raise ValueError("cannot merge histograms with different buckets")
        counts = self.counts
        for i, n in enumerate(other.counts):
            counts[i] += n
        self.sum += other.sum
        self.count += other.count
        return self

    def cumulative(self) -> list:
        """Counts of values <= each bound, then the total (the +Inf bucket)."""
        result = []
        running = 0
        for n in self.counts:
            running += n
            result.append(running)
        return result

    def quantile(self, q: float):
        """Estimate the C{q}-quantile as Prometheus's histogram_quantile does.

        Linear interpolation inside the bucket holding the rank, assuming
        values spread evenly in it; the first bucket starts at 0. When the
        rank falls in the +Inf bucket the answer is the highest finite bound
        (the best the histogram knows). None when there are no observations
        (Prometheus gives NaN; None is what JSON and the dashboard can show).
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError("quantile must be between 0 and 1, not %r" % (q,))
        if self.count == 0:
            return None
        cumulative = self.cumulative()
        rank = q * self.count
        finite = len(self.buckets)
        # First finite bucket whose cumulative count reaches the rank, else +Inf.
        b = 0
        while b < finite and cumulative[b] < rank:
            b += 1
        if b == finite:
            return self.buckets[-1]
        if b == 0 and self.buckets[0] <= 0:
            return self.buckets[0]
        start = 0.0 if b == 0 else self.buckets[b - 1]
        end = self.buckets[b]
        below = 0 if b == 0 else cumulative[b - 1]
        in_bucket = cumulative[b] - below
        if in_bucket == 0:
            # Only for q == 0 with an empty first bucket (Prometheus: NaN).
            return start
        return start + (end - start) * ((rank - below) / in_bucket)

    def to_dict(self) -> dict:
        """Plain JSON-able form (finite bounds only: JSON has no Infinity)."""
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": self.sum,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Histogram":
        histogram = cls(data["buckets"])
        counts = [int(n) for n in data["counts"]]
        if len(counts) != len(histogram.counts):
            raise ValueError("%d counts for %d buckets (+Inf)" % (len(counts), len(histogram.counts)))
        histogram.counts = counts
        histogram.sum = float(data["sum"])
        histogram.count = int(data["count"])
        return histogram

    def __repr__(self):
        return "<Histogram count=%d sum=%g>" % (self.count, self.sum)


class Window:
    """The last C{size} seconds of requests, errors and latency, per second.

    A ring of C{size} slots; the slot for second C{s} is C{s % size} and
    remembers which second it holds. A slot still holding an older second is
    cleared when that index comes round again, so memory is fixed: C{size}
    slots whatever the traffic or uptime. Seconds are C{int(now)}.

    Every read covers C{seconds} whole seconds ending with the current one
    (which is still filling), clamped to C{size}; seconds nobody recorded
    (or that have been overwritten) count as zero.
    """

    def __init__(self, size: int = WINDOW_SECONDS, buckets=LATENCY_BUCKETS):
        if size < 1:
            raise ValueError("a window needs at least one second")
        self.size = size
        self.buckets = tuple(float(b) for b in buckets)
        self._seconds = [None] * size
        self._requests = [0] * size
        self._errors = [0] * size
        # Made on a slot's first use: a route that is seldom asked (a table
        # of 1,000 routes) keeps a few lists, not 300 empty histograms.
        self._latency = [None] * size

    def record(self, now: float, is_error: bool, seconds: float) -> None:
        second = int(now)
        i = second % self.size
        if self._seconds[i] != second:
            self._seconds[i] = second
            self._requests[i] = 0
            self._errors[i] = 0
            if self._latency[i] is not None:
                self._latency[i].reset()
        self._requests[i] += 1
        if is_error:
            self._errors[i] += 1
        latency = self._latency[i]
        if latency is None:
            latency = self._latency[i] = Histogram(self.buckets)
        latency.observe(seconds)

    def _slots(self, now: float, seconds: int):
        """(second, slot index or None) for the C{seconds} seconds up to now."""
        if seconds < 1:
            raise ValueError("seconds must be at least 1, not %r" % (seconds,))
        last = int(now)
        span = min(int(seconds), self.size)
        for second in range(last - span + 1, last + 1):
            i = second % self.size
            yield second, (i if self._seconds[i] == second else None)

    def totals(self, now: float, seconds: int = 60) -> tuple:
        """(requests, errors) over the last C{seconds} seconds."""
        requests = errors = 0
        for _, i in self._slots(now, seconds):
            if i is not None:
                requests += self._requests[i]
                errors += self._errors[i]
        return requests, errors

    def rate(self, now: float, seconds: int = 60) -> float:
        """Requests per second over the last C{seconds} seconds.

        Divides by the whole span, the current partial second included, so a
        steady rate reads slightly low during the first second of a window.
        """
        span = min(int(seconds), self.size)
        return self.totals(now, seconds)[0] / span

    def error_rate(self, now: float, seconds: int = 60) -> float:
        """Errors / requests over the last C{seconds} seconds; 0.0 when idle."""
        requests, errors = self.totals(now, seconds)
        return errors / requests if requests else 0.0

    def latency(self, now: float, seconds: int = 60) -> Histogram:
        """A new histogram of all latencies recorded in the last C{seconds}."""
        merged = Histogram(self.buckets)
        for _, i in self._slots(now, seconds):
            if i is not None and self._latency[i] is not None:
                merged.merge(self._latency[i])
        return merged

    def history(self, now: float, seconds: int = WINDOW_SECONDS) -> list:
        """[{"t", "requests", "errors"}] per second, oldest first, gaps as 0."""
        result = []
        for second, i in self._slots(now, seconds):
            if i is None:
                result.append({"t": second, "requests": 0, "errors": 0})
            else:
                result.append({"t": second, "requests": self._requests[i], "errors": self._errors[i]})
        return result


def _empty_backend() -> dict:
    return {"reachable": None, "last_error": None, "last_error_at": None, "last_ok_at": None}


class RouteMetrics:
    """Everything measured for one route, updated in place on the hot path.

    An error is a request that failed (broken off mid-exchange), got no
    status at all, or was answered 5xx.

    C{backend} holds C{"reachable"} (None until the first answer or failure),
    C{"last_error"}, C{"last_error_at"} and C{"last_ok_at"}; the last is kept
    so that merged snapshots of several workers can tell which news is newest.
    """

    def __init__(self, name: str, clock, window_seconds: int = WINDOW_SECONDS, sequence=None):
        self.name = name
        self._clock = clock
        # Numbers the recent entries: shared by every route of a process, so
        # that (process, n) names one request whichever route took it.
        self._sequence = sequence if sequence is not None else [0]
        # (method, status_class) -> count, e.g. ("GET", "2xx").
        self.requests = {}
        self.errors = 0
        self.in_flight = 0
        self.open_websockets = 0
        self.open_streams = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_connect_errors = 0
        self.upstream_timeouts = 0
        self.headers_latency = Histogram()
        self.total_latency = Histogram()
        self.window = Window(window_seconds)
        self.recent = deque(maxlen=RECENT_SIZE)
        self.backend = _empty_backend()
        # upstream label -> [requests, errors]; and who tells each upstream's health.
        self.upstreams = {}
        self.upstream_status = None  # a callable -> [LiveUpstream.status() dicts]
        # The label of a route's only upstream: its counts are the route's
        # since it became the only one (_lone_since), not counted twice.
        self.lone_upstream = None
        self._lone_since = (0, 0)

    # Gauges.

    def request_started(self) -> None:
        self.in_flight += 1

    def websocket_opened(self) -> None:
        self.open_websockets += 1

    def websocket_closed(self) -> None:
        self.open_websockets -= 1

    def stream_opened(self) -> None:
        self.open_streams += 1

    def stream_closed(self) -> None:
        self.open_streams -= 1

    # Upstream and backend news.

    def upstream_error(self, kind: str) -> None:
        """Count an upstream failure; C{kind} is C{"connect"} or C{"timeout"}."""
        if kind == "connect":
            self.upstream_connect_errors += 1
        elif kind == "timeout":
            self.upstream_timeouts += 1
        else:
            raise ValueError("unknown upstream error kind %r" % (kind,))

    def backend_ok(self) -> None:
        """A response arrived from the backend."""
        self.backend["reachable"] = True
        self.backend["last_ok_at"] = self._clock.seconds()

    def backend_failed(self, detail: str) -> None:
        """The backend could not be reached or answered nothing usable."""
        backend = self.backend
        backend["reachable"] = False
        backend["last_error"] = detail
        backend["last_error_at"] = self._clock.seconds()

    # The hot path.

    def request_ended(
        self,
        method,
        status,
        seconds_total: float,
        seconds_to_headers,
        bytes_in: int,
        bytes_out: int,
        failed: bool = False,
        *,
        path=None,
        upstream=None,
    ) -> None:
        """Count one finished request (one call per request_started).

        C{method} is str or bytes; C{status} None when no answer was sent;
        C{seconds_to_headers} None when no response headers came (then the
        headers histogram is left alone). C{path}
        (str or bytes), when given, adds the request to C{recent}, with
        this route's name: who may see which of its parts is the reader's
        choice (see L{wighaven.observe.live.for_viewer}).
        """
        self.in_flight -= 1
        if status is not None and 100 <= status < 600:
            cls = _CLASSES[status // 100]
            is_error = failed or status >= 500
        else:
            cls = NO_STATUS
            is_error = True
        key = (_METHODS.get(method, "OTHER"), cls)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        if is_error:
            self.errors += 1
        if upstream is not None:
            counts = self.upstreams.get(upstream)
            if counts is None:
                counts = self.upstreams[upstream] = [0, 0]
            counts[0] += 1
            if is_error:
                counts[1] += 1
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        if seconds_to_headers is not None:
            self.headers_latency.observe(seconds_to_headers)
        self.total_latency.observe(seconds_total)
        now = self._clock.seconds()
        self.window.record(now, is_error, seconds_total)
        if path is not None:
            if isinstance(method, bytes):
                method = method.decode("ascii", "replace")
            if isinstance(path, bytes):
                path = path.decode("latin-1")
            self._sequence[0] += 1
            self.recent.append(
                {
                    "n": self._sequence[0],
                    "time": now,
                    "method": method,
                    "route": self.name,
                    "path": path,
                    "status": status,
                    "ms": round(seconds_total * 1000.0, 3),
                }
            )

    # Reading.

    def snapshot(self, now=None) -> dict:
        """Everything above as a plain, JSON-able, additive dict.

        C{requests} is nested {method: {status_class: n}} (JSON keys must be
        strings); C{last_minute} holds the raw counts and latency histogram
        of the last 60 seconds, so ratios and percentiles can be computed
        after adding several workers' snapshots.
        """
        if now is None:
            now = self._clock.seconds()
        requests = {}
        for (method, cls), n in self.requests.items():
            requests.setdefault(method, {})[cls] = n
        minute_requests, minute_errors = self.window.totals(now, 60)
        return {
            "name": self.name,
            "requests": requests,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "open_websockets": self.open_websockets,
            "open_streams": self.open_streams,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "upstream_connect_errors": self.upstream_connect_errors,
            "upstream_timeouts": self.upstream_timeouts,
            "headers_latency": self.headers_latency.to_dict(),
            "total_latency": self.total_latency.to_dict(),
            "last_minute": {
                "requests": minute_requests,
                "errors": minute_errors,
                "latency": self.window.latency(now, 60).to_dict(),
            },
            "history": self.window.history(now, self.window.size),
            # "n" numbers each entry (1 = the process's first ever), so a reader
            # can tell which it has seen, even across several workers' snapshots.
            "recent": [dict(entry) for entry in self.recent],
            "backend": dict(self.backend),
            "upstreams": self._upstreams_snapshot(),
        }

    def lone_upstream_is(self, label) -> None:
        """From now on C{label} (or None) is the route's only upstream."""
        if label == self.lone_upstream:
            return
        for old, (requests, errors) in self._lone_counts().items():
            counts = self.upstreams.setdefault(old, [0, 0])
            counts[0] += requests
            counts[1] += errors
        self.lone_upstream = label
        self._lone_since = (sum(self.requests.values()), self.errors)

    def _lone_counts(self) -> dict:
        if self.lone_upstream is None:
            return {}
        requests, errors = self._lone_since
        return {self.lone_upstream: (sum(self.requests.values()) - requests, self.errors - errors)}

    def in_use(self) -> bool:
        """Has it anything to show: a request ever, one under way, an upstream not up?"""
        if self.requests or self.in_flight or self.open_websockets or self.open_streams:
            return True
        status = self.upstream_status
        return status is not None and any(u["state"] != "up" for u in status())

    def _upstreams_snapshot(self) -> dict:
        """label -> requests, errors and health (state, ejected_until, last_error, stage)."""
        out = {}
        for status in (self.upstream_status() if self.upstream_status is not None else ()):
            entry = dict(status)
            out[entry.pop("upstream")] = entry
        counts = {label: list(c) for label, c in self.upstreams.items()}
        for label, (requests, errors) in self._lone_counts().items():
            counts.setdefault(label, [0, 0])
            counts[label][0] += requests
            counts[label][1] += errors
        for label, (requests, errors) in counts.items():
            entry = out.setdefault(label, {"state": None})
            entry["requests"] = requests
            entry["errors"] = errors
        for entry in out.values():
            entry.setdefault("requests", 0)
            entry.setdefault("errors", 0)
        return out


class Metrics:
    """The gateway's metrics: one L{RouteMetrics} per route name."""

    def __init__(self, clock):
        self._clock = clock
        self.routes = {}
        self.sequence = [0]  # the recent entries' numbers, shared by the routes

    @property
    def recent_total(self) -> int:
        """Recent entries ever added, by every route: tells a reader what is new."""
        return self.sequence[0]

    def route(self, name: str) -> RouteMetrics:
        """The metrics of route C{name}, created on first use."""
        route = self.routes.get(name)
        if route is None:
            route = self.routes[name] = RouteMetrics(name, self._clock, sequence=self.sequence)
        return route

    def adopt(self, route: RouteMetrics) -> RouteMetrics:
        """Count C{route} (made elsewhere) among these; its numbering becomes theirs."""
        route._sequence = self.sequence
        self.routes[route.name] = route
        return route

    def snapshot(self) -> dict:
        now = self._clock.seconds()
        return {
            "time": now,
            "routes": {name: route.snapshot(now) for name, route in self.routes.items()},
        }


# Merging snapshots of several workers.

_ADDED = (
    "errors",
    "in_flight",
    "open_websockets",
    "open_streams",
    "bytes_in",
    "bytes_out",
    "upstream_connect_errors",
    "upstream_timeouts",
)


def _add_histograms(a: dict, b: dict) -> dict:
    return Histogram.from_dict(a).merge(Histogram.from_dict(b)).to_dict()


def _merge_history(a: list, b: list) -> list:
    """Add per-second entries by second; keep the longest span, ending at
    the newest second (workers snapshot at slightly different moments)."""
    if not a or not b:
        return copy.deepcopy(a or b)
    by_second = {}
    for entry in a + b:
        sums = by_second.setdefault(entry["t"], [0, 0])
        sums[0] += entry["requests"]
        sums[1] += entry["errors"]
    last = max(by_second)
    span = max(len(a), len(b))
    return [
        {"t": t, "requests": by_second.get(t, (0, 0))[0], "errors": by_second.get(t, (0, 0))[1]}
        for t in range(last - span + 1, last + 1)
    ]


def _merge_backend(a: dict, b: dict) -> dict:
    """The newest news wins for C{reachable}; the newest error is kept."""

    def latest(backend):
        times = [t for t in (backend.get("last_ok_at"), backend.get("last_error_at")) if t is not None]
        return max(times) if times else None

    la, lb = latest(a), latest(b)
    if lb is not None and (la is None or lb > la):
        newest = b
    elif la is not None:
        newest = a
    else:
        newest = a if a.get("reachable") is not None else b
    ea, eb = a.get("last_error_at"), b.get("last_error_at")
    error_from = b if eb is not None and (ea is None or eb > ea) else a
    oks = [t for t in (a.get("last_ok_at"), b.get("last_ok_at")) if t is not None]
    return {
        "reachable": newest.get("reachable"),
        "last_error": error_from.get("last_error"),
        "last_error_at": error_from.get("last_error_at"),
        "last_ok_at": max(oks) if oks else None,
    }


def _merge_route(a: dict, b: dict) -> dict:
    merged = {"name": a["name"]}
    requests = copy.deepcopy(a["requests"])
    for method, classes in b["requests"].items():
        target = requests.setdefault(method, {})
        for cls, n in classes.items():
            target[cls] = target.get(cls, 0) + n
    merged["requests"] = requests
    for key in _ADDED:
        merged[key] = a[key] + b[key]
    merged["headers_latency"] = _add_histograms(a["headers_latency"], b["headers_latency"])
    merged["total_latency"] = _add_histograms(a["total_latency"], b["total_latency"])
    merged["last_minute"] = {
        "requests": a["last_minute"]["requests"] + b["last_minute"]["requests"],
        "errors": a["last_minute"]["errors"] + b["last_minute"]["errors"],
        "latency": _add_histograms(a["last_minute"]["latency"], b["last_minute"]["latency"]),
    }
    merged["history"] = _merge_history(a["history"], b["history"])
    recent = sorted(a["recent"] + b["recent"], key=lambda entry: entry["time"])
    merged["recent"] = copy.deepcopy(recent[-RECENT_SIZE:])
    merged["backend"] = _merge_backend(a["backend"], b["backend"])
    merged["upstreams"] = _merge_upstreams(a.get("upstreams", {}), b.get("upstreams", {}))
    return merged


# The worse of two workers' views of an upstream wins: trouble must show.
_STATE_RANK = {None: 0, "up": 1, "ejected": 2, "down": 3}


def _merge_upstreams(a: dict, b: dict) -> dict:
    merged = copy.deepcopy(a)
    for label, theirs in b.items():
        mine = merged.get(label)
        if mine is None:
            merged[label] = copy.deepcopy(theirs)
            continue
        counts = {key: mine.get(key, 0) + theirs.get(key, 0)
                  for key in ("requests", "errors", "in_flight")}
        if _STATE_RANK.get(theirs.get("state"), 0) > _STATE_RANK.get(mine.get("state"), 0):
            mine = copy.deepcopy(theirs)
        mine.update(counts)
        merged[label] = mine
    return merged


def merge_route_figures(routes, clock, now) -> dict:
    """
    Route snapshots added up into one (the whole gateway's), named C{all},
    in one pass: a table of many routes is summed at a few microseconds a
    route, where folding L{_merge_route} copied the running total each time.
    C{upstreams} is left out (it belongs to each route).
    """
    routes = list(routes)
    if len(routes) == 1:
        return dict(routes[0], name="all")
    if not routes:
        return dict(RouteMetrics("all", clock).snapshot(now), name="all")
    requests = {}
    sums = dict.fromkeys(_ADDED, 0)
    headers = Histogram.from_dict(routes[0]["headers_latency"])
    total = Histogram.from_dict(routes[0]["total_latency"])
    minute = Histogram.from_dict(routes[0]["last_minute"]["latency"])
    minute_requests = minute_errors = 0
    by_second = {}
    span = 0
    recent = []
    backend = routes[0]["backend"]
    for i, route in enumerate(routes):
        for method, classes in route["requests"].items():
            target = requests.setdefault(method, {})
            for cls, n in classes.items():
                target[cls] = target.get(cls, 0) + n
        for key in _ADDED:
            sums[key] += route[key]
        if i:
            headers.merge(Histogram.from_dict(route["headers_latency"]))
            total.merge(Histogram.from_dict(route["total_latency"]))
            minute.merge(Histogram.from_dict(route["last_minute"]["latency"]))
            backend = _merge_backend(backend, route["backend"])
        minute_requests += route["last_minute"]["requests"]
        minute_errors += route["last_minute"]["errors"]
        history = route["history"]
        span = max(span, len(history))
        for entry in history:
            if entry["requests"] or entry["errors"] or entry["t"] not in by_second:
                counts = by_second.setdefault(entry["t"], [0, 0])
                counts[0] += entry["requests"]
                counts[1] += entry["errors"]
        recent.extend(route["recent"])
    last = max(by_second) if by_second else int(now)
    recent.sort(key=lambda entry: entry["time"])
    merged = {"name": "all", "requests": requests}
    merged.update(sums)
    merged.update({
        "headers_latency": headers.to_dict(),
        "total_latency": total.to_dict(),
        "last_minute": {"requests": minute_requests, "errors": minute_errors,
                        "latency": minute.to_dict()},
        "history": [
            {"t": t, "requests": by_second.get(t, (0, 0))[0], "errors": by_second.get(t, (0, 0))[1]}
            for t in range(last - span + 1, last + 1)
        ],
        "recent": recent[-RECENT_SIZE:],
        "backend": dict(backend),
        "upstreams": {},
    })
    return merged


def merge_snapshots(snapshots) -> dict:
    """One snapshot for several workers: counters, gauges, histograms and
    history added, recent requests interleaved by time (newest 50 kept),
    C{time} the latest. The inputs are not changed."""
    time = None
    routes = {}
    reloads = {}
    for snapshot in snapshots:
        if time is None or snapshot["time"] > time:
            time = snapshot["time"]
        # Every worker reloads the same file on the same SIGHUP: one reload, counted once.
        for result, n in snapshot.get("reloads", {}).items():
            reloads[result] = max(reloads.get(result, 0), n)
        for name, route in snapshot["routes"].items():
            if name in routes:
                routes[name] = _merge_route(routes[name], route)
            else:
                routes[name] = copy.deepcopy(route)
    merged = {"time": time, "routes": routes}
    if reloads:
        merged["reloads"] = reloads
    return merged


# Prometheus, at scrape time only.


# (family type, name, snapshot key, help) of the one-number-per-route families.
_SCALAR_FAMILIES = (
    (CounterMetricFamily, "wighaven_request_errors_total", "errors",
     "Finished requests that failed: 5xx, broken off, or no answer."),
    (GaugeMetricFamily, "wighaven_in_flight_requests", "in_flight", "Requests being proxied now."),
    (GaugeMetricFamily, "wighaven_open_websockets", "open_websockets", "WebSocket tunnels open now."),
    (GaugeMetricFamily, "wighaven_open_streams", "open_streams", "Streamed responses (e.g. SSE) open now."),
    (CounterMetricFamily, "wighaven_bytes_received_total", "bytes_in",
     "Request body bytes received from clients."),
    (CounterMetricFamily, "wighaven_bytes_sent_total", "bytes_out", "Response bytes sent to clients."),
    (CounterMetricFamily, "wighaven_upstream_connect_errors_total", "upstream_connect_errors",
     "Failures to connect to the backend."),
    (CounterMetricFamily, "wighaven_upstream_timeouts_total", "upstream_timeouts",
     "Backend requests that timed out."),
)

# (name, snapshot key, help) of the latency histograms.
_HISTOGRAM_FAMILIES = (
    ("wighaven_upstream_headers_seconds", "headers_latency",
     "Time from request start to the backend's response headers."),
    ("wighaven_request_duration_seconds", "total_latency",
     "Time from request start to the end of the response."),
)


def _bucket_samples(histogram: dict) -> list:
    """Cumulative (le, count) pairs as HistogramMetricFamily wants them."""
    counts = Histogram.from_dict(histogram).cumulative()
    les = [floatToGoString(bound) for bound in histogram["buckets"]] + ["+Inf"]
    return list(zip(les, counts))


class GatewayCollector:
    """A prometheus_client collector reading a snapshot on each scrape.

    C{source} is a L{Metrics} (its C{snapshot} is used) or any zero-argument
    callable returning a snapshot dict, e.g. one merging the snapshots of
    several workers. Every family carries a C{route} label.

    C{wighaven_backend_up} is 1 or 0 once the route's backend has answered
    or failed, and absent (no sample) while unknown: -1 would poison
    C{min}/C{avg} over routes, and C{absent()} states "unknown" precisely.

    Beyond the requested families, C{wighaven_request_errors_total} counts
    errors (5xx, broken-off, no answer) so C{rate()} ratios can be computed
    over any range, not only the 1-minute gauge.
    """

    def __init__(self, source):
        snapshot = getattr(source, "snapshot", None)
        self._snapshot = snapshot if callable(snapshot) else source
        if not callable(self._snapshot):
            raise TypeError("source must be a Metrics or a callable returning a snapshot")

    def describe(self):
        """The families' names, without taking a snapshot (for registration)."""
        return self._families({"routes": {}})

    def collect(self):
        return self._families(self._snapshot())

    def _families(self, snapshot: dict) -> list:
        requests = CounterMetricFamily(
            "wighaven_requests_total",
            "Finished proxied requests by method and status class (error: no answer sent).",
            labels=["route", "method", "status_class"],
        )
        scalars = [
            (kind(name, documentation, labels=["route"]), key)
            for kind, name, key, documentation in _SCALAR_FAMILIES
        ]
        histograms = [
            (HistogramMetricFamily(name, documentation, labels=["route"]), key)
            for name, key, documentation in _HISTOGRAM_FAMILIES
        ]
        error_ratio = GaugeMetricFamily(
            "wighaven_error_ratio_1m",
            "Errors / requests over the last minute (0 when idle).",
            labels=["route"],
        )
        backend_up = GaugeMetricFamily(
            "wighaven_backend_up",
            "1 if the backend answered last, 0 if it failed last; absent until known.",
            labels=["route"],
        )
        upstream_requests = CounterMetricFamily(
            "wighaven_upstream_requests_total", "Finished requests by the upstream that took them.",
            labels=["route", "upstream"],
        )
        upstream_errors = CounterMetricFamily(
            "wighaven_upstream_request_errors_total",
            "Finished requests that failed, by the upstream that took them.",
            labels=["route", "upstream"],
        )
        upstream_up = GaugeMetricFamily(
            "wighaven_upstream_up",
            "1 while the upstream takes requests, 0 while ejected (passive health) or down "
            "(active probe or Hub stage).",
            labels=["route", "upstream"],
        )
        for name, data in sorted(snapshot["routes"].items()):
            for method, classes in sorted(data["requests"].items()):
                for cls, n in sorted(classes.items()):
                    requests.add_metric([name, method, cls], n)
            for family, key in scalars:
                family.add_metric([name], data[key])
            for family, key in histograms:
                family.add_metric([name], _bucket_samples(data[key]), data[key]["sum"])
            minute = data["last_minute"]
            ratio = minute["errors"] / minute["requests"] if minute["requests"] else 0.0
            error_ratio.add_metric([name], ratio)
            reachable = data["backend"]["reachable"]
            if reachable is not None:
                backend_up.add_metric([name], 1 if reachable else 0)
            for label, upstream in sorted(data.get("upstreams", {}).items()):
                upstream_requests.add_metric([name, label], upstream["requests"])
                upstream_errors.add_metric([name, label], upstream["errors"])
                if upstream.get("state") is not None:
                    upstream_up.add_metric([name, label], 1 if upstream["state"] == "up" else 0)
        families = ([requests] + [f for f, _ in scalars] + [f for f, _ in histograms]
                    + [error_ratio, backend_up, upstream_requests, upstream_errors, upstream_up])
        if "reloads" in snapshot:
            reloads = CounterMetricFamily(
                "wighaven_config_reloads_total",
                "Config file reloads (SIGHUP) by result: ok, or error (the old routes kept).",
                labels=["result"],
            )
            for result, n in sorted(snapshot["reloads"].items()):
                reloads.add_metric([result], n)
            families.append(reloads)
        return families


def exposition(collector) -> tuple:
    """(body bytes, content type) of a scrape of C{collector} alone.

    A private registry per call: the global default registry would add the
    process collectors and refuse a second gateway in the same process
    (tests) with a duplicate-name error.
    """
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST

"""Tests for L{wighaven.observe.metrics}: histogram buckets, quantiles and merging;
the per-second window's rates, error ratio, history and fixed memory; one
route's bookkeeping per finished request; merging workers' snapshots; and
the Prometheus exposition parsed back with prometheus_client's own parser.
"""

import copy
import json

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.observe.stats import GatewayStats
from wighaven.observe.metrics import (
    LATENCY_BUCKETS,
    GatewayCollector,
    Histogram,
    Metrics,
    RouteMetrics,
    Window,
    exposition,
    merge_snapshots,
    normalise_method,
    status_class,
    _merge_route,
    merge_route_figures,
)


def uniform(n, low=0.0, high=1.0):
    """n values spread evenly over (low, high], the last one exactly high."""
    return [low + (high - low) * i / n for i in range(1, n + 1)]


def finish(route, method="GET", status=200, total=0.05, headers=0.01,
           bytes_in=0, bytes_out=0, failed=False, **kw):
    """One whole request through C{route}: started, then ended."""
    route.request_started()
    route.request_ended(method, status, total, headers, bytes_in, bytes_out, failed, **kw)


class HistogramTests(SynchronousTestCase):
    def test_empty(self):
        h = Histogram()
        self.assertEqual(h.buckets, LATENCY_BUCKETS)
        self.assertEqual(h.counts, [0] * (len(LATENCY_BUCKETS) + 1))
        self.assertEqual((h.sum, h.count), (0.0, 0))

    def test_latency_buckets_are_increasing_finite_seconds(self):
        self.assertEqual(LATENCY_BUCKETS[0], 0.001)
        self.assertEqual(LATENCY_BUCKETS[-1], 60)
        self.assertEqual(list(LATENCY_BUCKETS), sorted(set(LATENCY_BUCKETS)))

    def test_bound_belongs_to_its_bucket(self):
        """Buckets are "less or equal" (le), as in Prometheus."""
        h = Histogram((0.1, 1.0))
        for value in (0.0, 0.1, 0.10001, 1.0, 1.5, 1000.0):
            h.observe(value)
        self.assertEqual(h.counts, [2, 2, 2])
        self.assertEqual(h.count, 6)
        self.assertAlmostEqual(h.sum, 0.0 + 0.1 + 0.10001 + 1.0 + 1.5 + 1000.0)

    def test_cumulative(self):
        h = Histogram((0.1, 1.0))
        for value in (0.05, 0.5, 0.7, 3.0):
            h.observe(value)
        self.assertEqual(h.cumulative(), [1, 3, 4])

    def test_quantiles_of_uniform_latencies(self):
        """Uniform data over (0, 1] s: linear interpolation is exact."""
        h = Histogram()
        for value in uniform(1000):
            h.observe(value)
        self.assertEqual(h.count, 1000)
        self.assertAlmostEqual(h.quantile(0.5), 0.5)
        self.assertAlmostEqual(h.quantile(0.95), 0.95)
        self.assertAlmostEqual(h.quantile(0.99), 0.99)
        self.assertAlmostEqual(h.quantile(0.1), 0.1)
        self.assertAlmostEqual(h.quantile(1.0), 1.0)

    def test_quantiles_inside_one_bucket(self):
        """All values in (0.1, 0.25]: percentiles spread across that bucket."""
        h = Histogram()
        for value in uniform(100, 0.1, 0.25):
            h.observe(value)
        self.assertEqual(h.counts[LATENCY_BUCKETS.index(0.25)], 100)
        self.assertAlmostEqual(h.quantile(0.5), 0.175)
        self.assertAlmostEqual(h.quantile(0.9), 0.1 + 0.15 * 0.9)

    def test_quantile_first_bucket_starts_at_zero(self):
        h = Histogram((0.01, 0.025))
        for value in (0.002, 0.004, 0.008, 0.02):
            h.observe(value)
        # rank 2 of 3 in (0, 0.01]
        self.assertAlmostEqual(h.quantile(0.5), 0.01 * 2 / 3)
        # rank 4: the one value of (0.01, 0.025], at its top
        self.assertAlmostEqual(h.quantile(1.0), 0.025)

    def test_quantile_in_inf_bucket_is_highest_bound(self):
        h = Histogram()
        for _ in range(10):
            h.observe(0.01)
        for _ in range(90):
            h.observe(120.0)
        self.assertEqual(h.counts[-1], 90)
        self.assertEqual(h.quantile(0.99), 60.0)
        self.assertEqual(h.quantile(0.5), 60.0)
        self.assertAlmostEqual(h.quantile(0.05), 0.005 + 0.005 * 0.5)

    def test_quantile_empty_is_none(self):
        self.assertIsNone(Histogram().quantile(0.5))

    def test_quantile_zero(self):
        h = Histogram((0.1, 1.0))
        h.observe(0.5)
        self.assertEqual(h.quantile(0.0), 0.0)

    def test_quantile_out_of_range(self):
        h = Histogram()
        h.observe(0.1)
        self.assertRaises(ValueError, h.quantile, -0.1)
        self.assertRaises(ValueError, h.quantile, 1.01)

    def test_bad_buckets(self):
        self.assertRaises(ValueError, Histogram, ())
        self.assertRaises(ValueError, Histogram, (1.0, 0.5))
        self.assertRaises(ValueError, Histogram, (0.5, 0.5))
        self.assertRaises(ValueError, Histogram, (0.5, float("inf")))

    def test_merge_adds(self):
        a, b = Histogram(), Histogram()
        for value in (0.001, 0.3, 70.0):
            a.observe(value)
        for value in (0.3, 0.4, 2.0):
            b.observe(value)
        result = a.merge(b)
        self.assertIs(result, a)
        self.assertEqual(a.count, 6)
        self.assertAlmostEqual(a.sum, 0.001 + 0.3 + 70.0 + 0.3 + 0.4 + 2.0)
        expected = [0] * 16
        expected[0] = 1  # 0.001
        expected[LATENCY_BUCKETS.index(0.5)] = 3  # 0.3, 0.3, 0.4
        expected[LATENCY_BUCKETS.index(2.5)] = 1  # 2.0
        expected[-1] = 1  # 70
        self.assertEqual(a.counts, expected)
        # b is untouched
        self.assertEqual(b.count, 3)

    def test_merge_needs_same_buckets(self):
        self.assertRaises(ValueError, Histogram().merge, Histogram((0.1, 1.0)))

    def test_reset(self):
        h = Histogram()
        counts = h.counts
        h.observe(0.2)
        h.reset()
        self.assertIs(h.counts, counts)
        self.assertEqual(h.counts, [0] * 16)
        self.assertEqual((h.sum, h.count), (0.0, 0))

    def test_dict_round_trip_through_json(self):
        h = Histogram()
        for value in (0.003, 0.2, 0.2, 99.0):
            h.observe(value)
        data = json.loads(json.dumps(h.to_dict(), allow_nan=False))
        self.assertEqual(data["buckets"], list(LATENCY_BUCKETS))
        back = Histogram.from_dict(data)
        self.assertEqual(back.buckets, h.buckets)
        self.assertEqual(back.counts, h.counts)
        self.assertEqual((back.sum, back.count), (h.sum, h.count))
        self.assertEqual(back.quantile(0.5), h.quantile(0.5))

    def test_from_dict_checks_counts(self):
        data = Histogram().to_dict()
        data["counts"] = data["counts"][:-1]
        self.assertRaises(ValueError, Histogram.from_dict, data)


class WindowTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.window = Window()

    def record(self, is_error=False, seconds=0.05, times=1):
        for _ in range(times):
            self.window.record(self.clock.seconds(), is_error, seconds)

    def test_idle(self):
        self.assertEqual(self.window.rate(0), 0.0)
        self.assertEqual(self.window.error_rate(0), 0.0)
        self.assertEqual(self.window.latency(0).count, 0)

    def test_rate_with_the_clock_advancing(self):
        """One request per second for a minute: 1/s; then it fades out."""
        for _ in range(60):
            self.record()
            self.clock.advance(1)
        now = self.clock.seconds() - 1  # still inside second 59
        self.assertEqual(self.window.rate(now, seconds=60), 1.0)
        self.assertEqual(self.window.rate(now, seconds=10), 1.0)
        self.assertEqual(self.window.rate(now), 1.0)
        # 30 s later, half of the last minute had traffic
        self.assertEqual(self.window.rate(now + 30, seconds=60), 0.5)
        # a minute after the last request: none left in the last minute
        self.assertEqual(self.window.rate(now + 60, seconds=60), 0.0)
        # but the 300 s window still has them
        self.assertEqual(self.window.rate(now + 60, seconds=300), 60 / 300)

    def test_rate_counts_current_second(self):
        self.clock.advance(10.2)
        self.record(times=5)
        self.clock.advance(0.7)  # 10.9: same second
        self.record(times=5)
        self.assertEqual(self.window.rate(self.clock.seconds(), seconds=10), 1.0)
        self.assertEqual(self.window.rate(self.clock.seconds(), seconds=1), 10.0)

    def test_error_rate_over_the_last_minute(self):
        self.record(is_error=True)
        self.record(times=3)
        self.assertEqual(self.window.error_rate(self.clock.seconds()), 0.25)
        self.clock.advance(30)
        self.record(times=4)
        self.assertEqual(self.window.error_rate(self.clock.seconds()), 1 / 8)
        # second 0 leaves the last minute at second 60
        self.clock.advance(29)
        self.assertEqual(self.window.error_rate(self.clock.seconds()), 1 / 8)
        self.clock.advance(1)
        self.assertEqual(self.window.error_rate(self.clock.seconds()), 0.0)
        self.assertEqual(self.window.totals(self.clock.seconds()), (4, 0))
        self.clock.advance(30)
        self.assertEqual(self.window.error_rate(self.clock.seconds()), 0.0)
        self.assertEqual(self.window.totals(self.clock.seconds()), (0, 0))

    def test_latency_of_the_last_minute(self):
        self.record(seconds=50.0, times=10)  # slow, at second 0
        self.clock.advance(61)
        for value in uniform(100):
            self.window.record(self.clock.seconds(), False, value)
        latency = self.window.latency(self.clock.seconds())
        self.assertEqual(latency.count, 100)
        self.assertAlmostEqual(latency.quantile(0.5), 0.5)
        self.assertAlmostEqual(latency.quantile(0.99), 0.99)
        # the slow ones are still in the 5 minute view
        self.assertEqual(self.window.latency(self.clock.seconds(), seconds=300).count, 110)

    def test_history_with_gaps(self):
        self.clock.advance(10)
        self.record(times=2)
        self.clock.advance(2)
        self.record(is_error=True)
        self.clock.advance(1.5)
        self.assertEqual(
            self.window.history(self.clock.seconds(), seconds=5),
            [
                {"t": 9, "requests": 0, "errors": 0},
                {"t": 10, "requests": 2, "errors": 0},
                {"t": 11, "requests": 0, "errors": 0},
                {"t": 12, "requests": 1, "errors": 1},
                {"t": 13, "requests": 0, "errors": 0},
            ],
        )

    def test_history_default_is_300_seconds_oldest_first(self):
        self.clock.advance(1000)
        self.record()
        history = self.window.history(self.clock.seconds())
        self.assertEqual(len(history), 300)
        self.assertEqual([e["t"] for e in history], list(range(701, 1001)))
        self.assertEqual(history[-1], {"t": 1000, "requests": 1, "errors": 0})
        self.assertEqual(sum(e["requests"] for e in history), 1)

    def test_reads_clamped_to_window_size(self):
        window = Window(size=10)
        window.record(0, False, 0.1)
        self.assertEqual(len(window.history(5, seconds=300)), 10)
        self.assertEqual(window.rate(5, seconds=300), 1 / 10)
        self.assertRaises(ValueError, window.rate, 5, seconds=0)
        self.assertRaises(ValueError, Window, 0)

    def test_slot_reused_after_300_seconds(self):
        self.record(is_error=True, seconds=9.0, times=3)
        self.clock.advance(300)  # same slot (300 % 300 == 0)
        self.record(seconds=0.01)
        now = self.clock.seconds()
        self.assertEqual(self.window.totals(now, 300), (1, 0))
        latency = self.window.latency(now, 300)
        self.assertEqual(latency.count, 1)
        self.assertAlmostEqual(latency.sum, 0.01)
        self.assertEqual(self.window.history(now)[-1], {"t": 300, "requests": 1, "errors": 0})

    def test_stale_slot_not_read(self):
        """A slot from 300 s ago, not yet overwritten, is not counted."""
        self.clock.advance(5)
        self.record(times=7)
        self.clock.advance(300)
        now = self.clock.seconds()
        self.assertEqual(self.window.totals(now, 300), (0, 0))
        self.assertEqual(sum(e["requests"] for e in self.window.history(now)), 0)

    def test_memory_stays_bounded(self):
        self.assertEqual(self.window._latency, [None] * 300)  # unused: no histogram yet
        seconds = []
        slots = None
        for n in range(2000):
            if n == 1000:
                slots = list(self.window._latency)
            seconds.append(int(self.clock.seconds()))
            self.record(times=2, is_error=True)
            self.clock.advance(3.7)
        self.assertEqual(len(self.window._seconds), 300)
        self.assertEqual(len(self.window._requests), 300)
        self.assertEqual(len(self.window._errors), 300)
        self.assertEqual(len(self.window._latency), 300)
        # a slot's histogram, once made, is reset and reused
        self.assertTrue(all(a is b for a, b in zip(slots, self.window._latency) if a is not None))
        self.assertGreater(sum(a is not None for a in slots), 250)
        now = seconds[-1]
        recorded = 2 * sum(1 for s in seconds if s > now - 300)
        # one pair every 3.7 s: k * 3.7 >= 7097 for k = 1919..1999
        self.assertEqual(recorded, 2 * 81)
        self.assertEqual(self.window.totals(now, 300), (recorded, recorded))
        self.assertEqual(self.window.error_rate(now), 1.0)

    def test_memory_stays_bounded_counts_are_right(self):
        """After long uptime, the window holds exactly its last 300 s."""
        for second in range(5000):
            self.window.record(second + 0.5, second % 2 == 0, 0.1)
        now = 4999.5
        self.assertEqual(self.window.totals(now, 300), (300, 150))
        self.assertEqual(self.window.totals(now, 60), (60, 30))
        self.assertEqual(self.window.rate(now, 60), 1.0)
        self.assertEqual(self.window.error_rate(now), 0.5)
        self.assertEqual(self.window.latency(now, 300).count, 300)


class NormaliseTests(SynchronousTestCase):
    def test_methods(self):
        for name in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            self.assertEqual(normalise_method(name), name)
            self.assertEqual(normalise_method(name.encode("ascii")), name)
        for other in ("PROPFIND", b"BREW", "get", b"post", "", b"CONNECT", "TRACE"):
            self.assertEqual(normalise_method(other), "OTHER")

    def test_status_classes(self):
        cases = {
            100: "1xx", 101: "1xx", 200: "2xx", 204: "2xx", 299: "2xx", 301: "3xx",
            304: "3xx", 400: "4xx", 404: "4xx", 499: "4xx", 500: "5xx", 502: "5xx",
            504: "5xx", 599: "5xx", None: "error", 0: "error", 99: "error", 600: "error",
            -1: "error",
        }
        for status, expected in cases.items():
            self.assertEqual(status_class(status), expected, status)


class RouteMetricsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.route = RouteMetrics("backend", self.clock)

    def test_initial(self):
        r = self.route
        self.assertEqual(r.name, "backend")
        self.assertEqual(r.requests, {})
        for name in (
            "errors", "in_flight", "open_websockets", "open_streams", "bytes_in",
            "bytes_out", "upstream_connect_errors", "upstream_timeouts",
        ):
            self.assertEqual(getattr(r, name), 0, name)
        self.assertEqual(r.headers_latency.count, 0)
        self.assertEqual(r.total_latency.count, 0)
        self.assertEqual(list(r.recent), [])
        self.assertEqual(r.recent.maxlen, 50)
        self.assertEqual(
            r.backend, {"reachable": None, "last_error": None, "last_error_at": None, "last_ok_at": None}
        )

    def test_requests_by_method_and_status_class(self):
        finish(self.route, "GET", 200)
        finish(self.route, b"GET", 204)
        finish(self.route, b"POST", 302)
        finish(self.route, "PROPFIND", 207)
        finish(self.route, "get", 404)
        finish(self.route, "DELETE", 503)
        finish(self.route, "HEAD", 101)
        self.assertEqual(
            self.route.requests,
            {
                ("GET", "2xx"): 2,
                ("POST", "3xx"): 1,
                ("OTHER", "2xx"): 1,
                ("OTHER", "4xx"): 1,
                ("DELETE", "5xx"): 1,
                ("HEAD", "1xx"): 1,
            },
        )

    def test_no_status_is_error_class_not_5xx(self):
        finish(self.route, "GET", None, headers=None, failed=True)
        finish(self.route, "POST", 0, headers=None)
        self.assertEqual(self.route.requests, {("GET", "error"): 1, ("POST", "error"): 1})
        self.assertEqual(self.route.errors, 2)

    def test_errors(self):
        finish(self.route, status=200)
        finish(self.route, status=404)
        self.assertEqual(self.route.errors, 0)
        finish(self.route, status=500)
        finish(self.route, status=502)
        self.assertEqual(self.route.errors, 2)
        # broken off mid-stream: counted as an error, its class stays 2xx
        finish(self.route, status=200, failed=True)
        self.assertEqual(self.route.errors, 3)
        self.assertEqual(self.route.requests[("GET", "2xx")], 2)
        finish(self.route, status=None)
        self.assertEqual(self.route.errors, 4)
        now = self.clock.seconds()
        self.assertEqual(self.route.window.totals(now), (6, 4))
        self.assertAlmostEqual(self.route.window.error_rate(now), 4 / 6)

    def test_bytes(self):
        finish(self.route, bytes_in=100, bytes_out=2000)
        finish(self.route, "POST", bytes_in=5_000_000, bytes_out=7)
        finish(self.route, status=None, bytes_in=3, bytes_out=0, headers=None)
        self.assertEqual(self.route.bytes_in, 5_000_103)
        self.assertEqual(self.route.bytes_out, 2007)

    def test_in_flight_back_to_zero(self):
        r = self.route
        r.request_started()
        r.request_started()
        r.request_started()
        self.assertEqual(r.in_flight, 3)
        r.request_ended("GET", 200, 0.1, 0.05, 0, 10)
        self.assertEqual(r.in_flight, 2)
        r.request_ended("GET", None, 0.1, None, 0, 0, True)
        r.request_ended("POST", 502, 0.1, None, 10, 0)
        self.assertEqual(r.in_flight, 0)

    def test_websocket_and_stream_gauges(self):
        r = self.route
        r.websocket_opened()
        r.websocket_opened()
        r.stream_opened()
        self.assertEqual((r.open_websockets, r.open_streams), (2, 1))
        r.websocket_closed()
        r.stream_closed()
        self.assertEqual((r.open_websockets, r.open_streams), (1, 0))
        r.websocket_closed()
        self.assertEqual(r.open_websockets, 0)

    def test_latency_histograms(self):
        finish(self.route, total=0.3, headers=0.02)
        finish(self.route, total=45.0, headers=0.004)
        # no response headers ever came: total observed, headers not
        finish(self.route, status=None, total=12.0, headers=None)
        self.assertEqual(self.route.total_latency.count, 3)
        self.assertAlmostEqual(self.route.total_latency.sum, 57.3)
        self.assertEqual(self.route.headers_latency.count, 2)
        self.assertAlmostEqual(self.route.headers_latency.sum, 0.024)
        self.assertEqual(self.route.headers_latency.counts[LATENCY_BUCKETS.index(0.025)], 1)
        self.assertEqual(self.route.headers_latency.counts[LATENCY_BUCKETS.index(0.005)], 1)
        self.assertEqual(self.route.window.latency(self.clock.seconds()).count, 3)

    def test_window_fed(self):
        for _ in range(30):
            finish(self.route)
            self.clock.advance(2)
        self.assertEqual(self.route.window.rate(self.clock.seconds() - 2, 60), 0.5)

    def test_upstream_errors(self):
        self.route.upstream_error("connect")
        self.route.upstream_error("connect")
        self.route.upstream_error("timeout")
        self.assertEqual(self.route.upstream_connect_errors, 2)
        self.assertEqual(self.route.upstream_timeouts, 1)
        self.assertRaises(ValueError, self.route.upstream_error, "tls")

    def test_backend(self):
        r = self.route
        r.backend_failed("connection refused")
        self.assertEqual(
            r.backend,
            {"reachable": False, "last_error": "connection refused", "last_error_at": 1000.0, "last_ok_at": None},
        )
        self.clock.advance(5)
        r.backend_ok()
        self.assertEqual(
            r.backend,
            {"reachable": True, "last_error": "connection refused", "last_error_at": 1000.0, "last_ok_at": 1005.0},
        )

    def test_recent_only_with_path(self):
        finish(self.route, total=0.2)
        self.assertEqual(list(self.route.recent), [])
        finish(self.route, b"POST", 201, total=0.0123456, path=b"/gradio_api/queue/join")
        self.clock.advance(1.5)
        finish(self.route, "PROPFIND", None, total=1.0, headers=None, path="/caf\u00e9")
        self.assertEqual(
            list(self.route.recent),
            [
                {"n": 1, "time": 1000.0, "method": "POST", "route": "backend",
                 "path": "/gradio_api/queue/join", "status": 201, "ms": 12.346},
                {"n": 2, "time": 1001.5, "method": "PROPFIND", "route": "backend",
                 "path": "/caf\u00e9", "status": None, "ms": 1000.0},
            ],
        )

    def test_recent_keeps_last_50(self):
        for i in range(60):
            finish(self.route, path="/%d" % i)
        self.assertEqual(len(self.route.recent), 50)
        self.assertEqual(self.route.recent[0]["path"], "/10")
        self.assertEqual(self.route.recent[-1]["path"], "/59")

    def test_snapshot(self):
        r = self.route
        finish(r, "GET", 200, total=0.3, headers=0.1, bytes_in=1, bytes_out=2, path="/a")
        finish(r, "POST", 503, total=0.2, headers=0.2, bytes_in=3, bytes_out=4)
        r.request_started()
        r.websocket_opened()
        r.stream_opened()
        r.upstream_error("timeout")
        r.backend_ok()
        self.clock.advance(2)
        snap = r.snapshot()
        # JSON-able, and unchanged by a round trip
        self.assertEqual(json.loads(json.dumps(snap, allow_nan=False)), snap)
        self.assertEqual(snap["name"], "backend")
        self.assertEqual(snap["requests"], {"GET": {"2xx": 1}, "POST": {"5xx": 1}})
        self.assertEqual(snap["errors"], 1)
        self.assertEqual(snap["in_flight"], 1)
        self.assertEqual(snap["open_websockets"], 1)
        self.assertEqual(snap["open_streams"], 1)
        self.assertEqual((snap["bytes_in"], snap["bytes_out"]), (4, 6))
        self.assertEqual((snap["upstream_connect_errors"], snap["upstream_timeouts"]), (0, 1))
        self.assertEqual(snap["total_latency"], r.total_latency.to_dict())
        self.assertEqual(snap["headers_latency"]["count"], 2)
        self.assertEqual(snap["last_minute"]["requests"], 2)
        self.assertEqual(snap["last_minute"]["errors"], 1)
        self.assertEqual(snap["last_minute"]["latency"]["count"], 2)
        self.assertEqual(len(snap["history"]), 300)
        self.assertEqual(snap["history"][-1], {"t": 1002, "requests": 0, "errors": 0})
        self.assertEqual(snap["history"][-3], {"t": 1000, "requests": 2, "errors": 1})
        self.assertEqual([e["path"] for e in snap["recent"]], ["/a"])
        self.assertEqual(snap["backend"]["reachable"], True)
        # a copy: later requests do not change it
        finish(r, path="/b")
        self.assertEqual(len(snap["recent"]), 1)
        self.assertEqual(snap["requests"]["GET"]["2xx"], 1)


class MetricsTests(SynchronousTestCase):
    def test_route_created_once(self):
        metrics = Metrics(Clock())
        backend = metrics.route("backend")
        self.assertIsInstance(backend, RouteMetrics)
        self.assertIs(metrics.route("backend"), backend)
        other = metrics.route("other")
        self.assertEqual(metrics.routes, {"backend": backend, "other": other})

    def test_snapshot(self):
        clock = Clock()
        clock.advance(50)
        metrics = Metrics(clock)
        self.assertEqual(metrics.snapshot(), {"time": 50.0, "routes": {}})
        finish(metrics.route("backend"))
        snap = metrics.snapshot()
        self.assertEqual(snap["time"], 50.0)
        self.assertEqual(list(snap["routes"]), ["backend"])
        self.assertEqual(snap["routes"]["backend"]["requests"], {"GET": {"2xx": 1}})
        self.assertEqual(json.loads(json.dumps(snap, allow_nan=False)), snap)


class MergeSnapshotsTests(SynchronousTestCase):
    def workers(self):
        """Two workers' metrics, snapshot one second apart."""
        clock_a, clock_b = Clock(), Clock()
        clock_a.advance(1000)
        clock_b.advance(1000)
        a, b = Metrics(clock_a), Metrics(clock_b)
        ra, rb = a.route("backend"), b.route("backend")
        finish(ra, "GET", 200, total=0.3, headers=0.1, bytes_in=1, bytes_out=100, path="/a1")
        finish(ra, "GET", 502, total=0.02, headers=0.02, path="/a2")
        ra.request_started()
        ra.websocket_opened()
        ra.upstream_error("connect")
        ra.backend_failed("refused")
        clock_b.advance(0.5)
        finish(rb, "GET", 200, total=0.4, headers=0.2, bytes_in=2, bytes_out=50, path="/b1")
        finish(rb, "POST", None, total=5.0, headers=None, failed=True, path="/b2")
        rb.stream_opened()
        rb.upstream_error("timeout")
        rb.backend_ok()
        finish(b.route("other"), "PUT", 201, path="/o")
        clock_b.advance(0.5)
        return a, b

    def test_adds(self):
        a, b = self.workers()
        sa, sb = a.snapshot(), b.snapshot()
        merged = merge_snapshots([sa, sb])
        self.assertEqual(merged["time"], 1001.0)
        self.assertEqual(sorted(merged["routes"]), ["backend", "other"])
        m = merged["routes"]["backend"]
        self.assertEqual(m["requests"], {"GET": {"2xx": 2, "5xx": 1}, "POST": {"error": 1}})
        self.assertEqual(m["errors"], 2)
        self.assertEqual(m["in_flight"], 1)
        self.assertEqual(m["open_websockets"], 1)
        self.assertEqual(m["open_streams"], 1)
        self.assertEqual((m["bytes_in"], m["bytes_out"]), (3, 150))
        self.assertEqual((m["upstream_connect_errors"], m["upstream_timeouts"]), (1, 1))
        self.assertEqual(m["total_latency"]["count"], 4)
        self.assertAlmostEqual(m["total_latency"]["sum"], 0.3 + 0.02 + 0.4 + 5.0)
        self.assertEqual(
            m["total_latency"]["counts"],
            [x + y for x, y in zip(sa["routes"]["backend"]["total_latency"]["counts"],
                                   sb["routes"]["backend"]["total_latency"]["counts"])],
        )
        self.assertEqual(m["headers_latency"]["count"], 3)
        self.assertEqual(m["last_minute"]["requests"], 4)
        self.assertEqual(m["last_minute"]["errors"], 2)
        self.assertEqual(m["last_minute"]["latency"]["count"], 4)
        # the route only worker b has is copied
        self.assertEqual(merged["routes"]["other"], sb["routes"]["other"])
        self.assertEqual(json.loads(json.dumps(merged, allow_nan=False)), merged)

    def test_history_aligned_by_second(self):
        a, b = self.workers()
        merged = merge_snapshots([a.snapshot(), b.snapshot()])
        history = merged["routes"]["backend"]["history"]
        self.assertEqual(len(history), 300)
        self.assertEqual(history[-1], {"t": 1001, "requests": 0, "errors": 0})
        self.assertEqual(history[-2], {"t": 1000, "requests": 4, "errors": 2})
        self.assertEqual(history[0]["t"], 702)
        self.assertEqual(sum(e["requests"] for e in history), 4)

    def test_recent_by_time_newest_50(self):
        a, b = self.workers()
        merged = merge_snapshots([a.snapshot(), b.snapshot()])
        self.assertEqual(
            [e["path"] for e in merged["routes"]["backend"]["recent"]], ["/a1", "/a2", "/b1", "/b2"]
        )
        clock_a, clock_b = Clock(), Clock()
        wa, wb = Metrics(clock_a), Metrics(clock_b)
        for i in range(40):
            finish(wa.route("backend"), path="/a%d" % i)
            clock_a.advance(2)
            clock_b.advance(1)
            finish(wb.route("backend"), path="/b%d" % i)
            clock_b.advance(1)
        recent = merge_snapshots([wa.snapshot(), wb.snapshot()])["routes"]["backend"]["recent"]
        self.assertEqual(len(recent), 50)
        times = [e["time"] for e in recent]
        self.assertEqual(times, sorted(times))
        # 80 requests at seconds 0..79: the newest 50 are 30..79
        self.assertEqual(times, [float(t) for t in range(30, 80)])
        self.assertEqual(recent[-1]["path"], "/b39")
        self.assertEqual(recent[-2]["path"], "/a39")

    def test_backend_newest_news_wins(self):
        a, b = self.workers()
        # a failed at 1000.0, b answered at 1000.5: reachable
        m = merge_snapshots([a.snapshot(), b.snapshot()])["routes"]["backend"]["backend"]
        self.assertEqual(
            m, {"reachable": True, "last_error": "refused", "last_error_at": 1000.0, "last_ok_at": 1000.5}
        )
        # order of the inputs does not matter
        m2 = merge_snapshots([b.snapshot(), a.snapshot()])["routes"]["backend"]["backend"]
        self.assertEqual(m2, m)
        # now a fails again, later
        a._clock.advance(10)
        a.route("backend").backend_failed("timed out")
        m3 = merge_snapshots([b.snapshot(), a.snapshot()])["routes"]["backend"]["backend"]
        self.assertEqual(
            m3, {"reachable": False, "last_error": "timed out", "last_error_at": 1010.0, "last_ok_at": 1000.5}
        )

    def test_backend_unknown_everywhere(self):
        a, b = Metrics(Clock()), Metrics(Clock())
        a.route("backend")
        b.route("backend")
        m = merge_snapshots([a.snapshot(), b.snapshot()])["routes"]["backend"]["backend"]
        self.assertEqual(m, {"reachable": None, "last_error": None, "last_error_at": None, "last_ok_at": None})

    def test_inputs_unchanged(self):
        a, b = self.workers()
        sa, sb = a.snapshot(), b.snapshot()
        before = copy.deepcopy((sa, sb))
        merged = merge_snapshots([sa, sb])
        self.assertEqual((sa, sb), before)
        merged["routes"]["other"]["requests"]["PUT"]["2xx"] = 99
        self.assertEqual((sa, sb), before)

    def test_one_and_none(self):
        a, _ = self.workers()
        snap = a.snapshot()
        self.assertEqual(merge_snapshots([snap]), snap)
        self.assertEqual(merge_snapshots([]), {"time": None, "routes": {}})

    def test_three_workers(self):
        workers = []
        for n in range(3):
            metrics = Metrics(Clock())
            for _ in range(n + 1):
                finish(metrics.route("backend"), bytes_out=10)
            workers.append(metrics.snapshot())
        m = merge_snapshots(workers)["routes"]["backend"]
        self.assertEqual(m["requests"], {"GET": {"2xx": 6}})
        self.assertEqual(m["bytes_out"], 60)


def parse(body):
    """{(sample name, sorted label items): value} and {family name: type}."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, types


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


class ExpositionTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics(self.clock)
        self.route = self.metrics.route("backend")
        self.collector = GatewayCollector(self.metrics)

    def scrape(self, collector=None):
        body, content_type = exposition(collector or self.collector)
        self.assertIsInstance(body, bytes)
        self.assertEqual(content_type, CONTENT_TYPE_LATEST)
        return parse(body)

    def test_families_and_types(self):
        finish(self.route)
        _, types = self.scrape()
        self.assertEqual(
            types,
            {
                "wighaven_requests": "counter",
                "wighaven_request_errors": "counter",
                "wighaven_in_flight_requests": "gauge",
                "wighaven_open_websockets": "gauge",
                "wighaven_open_streams": "gauge",
                "wighaven_bytes_received": "counter",
                "wighaven_bytes_sent": "counter",
                "wighaven_upstream_connect_errors": "counter",
                "wighaven_upstream_timeouts": "counter",
                "wighaven_upstream_headers_seconds": "histogram",
                "wighaven_request_duration_seconds": "histogram",
                "wighaven_error_ratio_1m": "gauge",
                "wighaven_backend_up": "gauge",
                "wighaven_upstream_requests": "counter",
                "wighaven_upstream_request_errors": "counter",
                "wighaven_upstream_up": "gauge",
            },
        )

    def test_counters_move(self):
        finish(self.route, "GET", 200, bytes_in=10, bytes_out=1000)
        samples, _ = self.scrape()
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="backend", method="GET", status_class="2xx"), 1
        )
        self.assertEqual(value(samples, "wighaven_bytes_received_total", route="backend"), 10)
        self.assertEqual(value(samples, "wighaven_bytes_sent_total", route="backend"), 1000)
        self.assertEqual(value(samples, "wighaven_request_errors_total", route="backend"), 0)

        finish(self.route, "GET", 200, bytes_in=5, bytes_out=24)
        finish(self.route, b"BREW", 418)
        finish(self.route, "POST", None, headers=None, failed=True)
        finish(self.route, "GET", 504)
        self.route.upstream_error("connect")
        self.route.upstream_error("timeout")
        self.route.upstream_error("timeout")
        samples, _ = self.scrape()
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="backend", method="GET", status_class="2xx"), 2
        )
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="backend", method="OTHER", status_class="4xx"), 1
        )
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="backend", method="POST", status_class="error"), 1
        )
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="backend", method="GET", status_class="5xx"), 1
        )
        self.assertEqual(value(samples, "wighaven_bytes_received_total", route="backend"), 15)
        self.assertEqual(value(samples, "wighaven_bytes_sent_total", route="backend"), 1024)
        self.assertEqual(value(samples, "wighaven_upstream_connect_errors_total", route="backend"), 1)
        self.assertEqual(value(samples, "wighaven_upstream_timeouts_total", route="backend"), 2)
        self.assertEqual(value(samples, "wighaven_request_errors_total", route="backend"), 2)
        self.assertEqual(value(samples, "wighaven_error_ratio_1m", route="backend"), 2 / 5)

    def test_gauges(self):
        self.route.request_started()
        self.route.request_started()
        self.route.websocket_opened()
        self.route.stream_opened()
        self.route.stream_opened()
        samples, _ = self.scrape()
        self.assertEqual(value(samples, "wighaven_in_flight_requests", route="backend"), 2)
        self.assertEqual(value(samples, "wighaven_open_websockets", route="backend"), 1)
        self.assertEqual(value(samples, "wighaven_open_streams", route="backend"), 2)
        self.assertEqual(value(samples, "wighaven_error_ratio_1m", route="backend"), 0.0)
        self.route.request_ended("GET", 200, 0.1, 0.05, 0, 0)
        self.route.request_ended("GET", 200, 0.1, 0.05, 0, 0)
        self.route.websocket_closed()
        samples, _ = self.scrape()
        self.assertEqual(value(samples, "wighaven_in_flight_requests", route="backend"), 0)
        self.assertEqual(value(samples, "wighaven_open_websockets", route="backend"), 0)

    def test_histogram_buckets_move(self):
        samples, _ = self.scrape()
        name = "wighaven_request_duration_seconds"
        self.assertEqual(value(samples, name + "_count", route="backend"), 0)
        self.assertEqual(value(samples, name + "_bucket", route="backend", le="+Inf"), 0)

        finish(self.route, total=0.003, headers=0.002)
        finish(self.route, total=0.3, headers=0.2)
        finish(self.route, total=75.0, headers=0.02)
        samples, _ = self.scrape()
        buckets = {le: value(samples, name + "_bucket", route="backend", le=le) for le in
                   ("0.001", "0.0025", "0.005", "0.25", "0.5", "60.0", "+Inf")}
        self.assertEqual(
            buckets, {"0.001": 0, "0.0025": 0, "0.005": 1, "0.25": 1, "0.5": 2, "60.0": 2, "+Inf": 3}
        )
        self.assertEqual(value(samples, name + "_count", route="backend"), 3)
        self.assertAlmostEqual(value(samples, name + "_sum", route="backend"), 75.303)
        # every bound is there, cumulative counts never decrease
        les = [("%r" % float(b)) for b in LATENCY_BUCKETS] + ["+Inf"]
        counts = [value(samples, name + "_bucket", route="backend", le=le) for le in les]
        self.assertEqual(counts, sorted(counts))

        headers = "wighaven_upstream_headers_seconds"
        self.assertEqual(value(samples, headers + "_bucket", route="backend", le="0.0025"), 1)
        self.assertEqual(value(samples, headers + "_bucket", route="backend", le="0.025"), 2)
        self.assertEqual(value(samples, headers + "_bucket", route="backend", le="+Inf"), 3)
        finish(self.route, status=None, total=1.0, headers=None)
        samples, _ = self.scrape()
        self.assertEqual(value(samples, headers + "_count", route="backend"), 3)
        self.assertEqual(value(samples, name + "_count", route="backend"), 4)
        self.assertEqual(value(samples, name + "_bucket", route="backend", le="1.0"), 3)

    def test_backend_up(self):
        samples, _ = self.scrape()
        self.assertNotIn(
            "wighaven_backend_up", {n for (n, _) in samples}, "unknown backend state must be absent"
        )
        self.route.backend_ok()
        samples, _ = self.scrape()
        self.assertEqual(value(samples, "wighaven_backend_up", route="backend"), 1)
        self.route.backend_failed("refused")
        samples, _ = self.scrape()
        self.assertEqual(value(samples, "wighaven_backend_up", route="backend"), 0)

    def test_error_ratio_is_last_minute_only(self):
        finish(self.route, status=500)
        finish(self.route, status=200)
        samples, _ = self.scrape()
        self.assertEqual(value(samples, "wighaven_error_ratio_1m", route="backend"), 0.5)
        self.clock.advance(61)
        samples, _ = self.scrape()
        self.assertEqual(value(samples, "wighaven_error_ratio_1m", route="backend"), 0.0)
        # lifetime counters are unaffected
        self.assertEqual(value(samples, "wighaven_request_errors_total", route="backend"), 1)

    def test_several_routes(self):
        finish(self.route)
        finish(self.metrics.route("space-2"), "POST", 201)
        samples, _ = self.scrape()
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="backend", method="GET", status_class="2xx"), 1
        )
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="space-2", method="POST", status_class="2xx"), 1
        )
        self.assertEqual(value(samples, "wighaven_request_duration_seconds_count", route="space-2"), 1)

    def test_merged_snapshot_source(self):
        other = Metrics(Clock())
        finish(self.route, bytes_out=7)
        finish(other.route("backend"), bytes_out=8)
        finish(other.route("backend"), status=503)
        collector = GatewayCollector(lambda: merge_snapshots([self.metrics.snapshot(), other.snapshot()]))
        samples, _ = self.scrape(collector)
        self.assertEqual(
            value(samples, "wighaven_requests_total", route="backend", method="GET", status_class="2xx"), 2
        )
        self.assertEqual(value(samples, "wighaven_bytes_sent_total", route="backend"), 15)
        self.assertEqual(value(samples, "wighaven_request_duration_seconds_count", route="backend"), 3)
        self.assertAlmostEqual(value(samples, "wighaven_error_ratio_1m", route="backend"), 1 / 3)

    def test_snapshot_taken_at_scrape_time_only(self):
        calls = []

        def source():
            calls.append(1)
            return self.metrics.snapshot()

        collector = GatewayCollector(source)
        self.assertEqual(calls, [])
        exposition(collector)
        self.assertEqual(calls, [1])

    def test_private_registry(self):
        """The global registry is never touched; scraping twice works."""
        finish(self.route)
        self.scrape()
        self.scrape()
        self.assertNotIn(b"wighaven_", generate_latest(REGISTRY))

    def test_bad_source(self):
        self.assertRaises(TypeError, GatewayCollector, object())


class ManyRoutesTests(SynchronousTestCase):
    """The whole gateway's figures from many routes: right, and cheap."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(10_000)

    def test_adding_up_in_one_pass_is_folding_the_merge(self):
        routes = [RouteMetrics("r%d" % i, self.clock) for i in range(4)]
        for i, route in enumerate(routes):
            for n in range(i + 1):
                finish(route, "GET" if n % 2 else "POST", 200 if n else 503, total=0.01 * (n + 1),
                       bytes_in=n, bytes_out=10 * n, path="/%d/%d" % (i, n))
                self.clock.advance(0.7)
            route.backend_ok()
        snaps = [route.snapshot() for route in routes]
        folded = copy.deepcopy(snaps[0])
        for snap in snaps[1:]:
            folded = _merge_route(folded, snap)
        merged = merge_route_figures(snaps, self.clock, self.clock.seconds())
        for key in ("requests", "errors", "bytes_in", "bytes_out", "headers_latency",
                    "total_latency", "last_minute", "history", "recent", "backend"):
            self.assertEqual(merged[key], folded[key], key)
        self.assertEqual(merged["name"], "all")

    def test_a_big_idle_table_is_not_snapshot_every_time(self):
        stats = GatewayStats(self.clock)
        for i in range(1000):
            stats.metrics.route("r%d" % i)
        finish(stats.metrics.route("r7"), path="/x")
        troubled = stats.metrics.route("r9")
        troubled.upstream_status = lambda: [{"upstream": "a", "state": "ejected"}]
        self.assertEqual(set(stats.figures()["routes"]), {"r7", "r9"})
        small = GatewayStats(self.clock)
        for i in range(3):
            small.metrics.route("s%d" % i)
        self.assertEqual(set(small.figures()["routes"]), {"s0", "s1", "s2"})


class LoneUpstreamTests(SynchronousTestCase):
    """A route's only upstream is counted by the route itself, and handed over on change."""

    def test_counts_follow_the_lone_upstream(self):
        route = RouteMetrics("r", Clock())
        route.lone_upstream_is("a.example")
        finish(route)
        finish(route, status=502)
        route.lone_upstream_is(None)  # two upstreams now: counted apiece
        finish(route, upstream="b.example")
        finish(route, upstream="c.example", status=503)
        route.lone_upstream_is("c.example")
        finish(route)
        counts = {label: (u["requests"], u["errors"])
                  for label, u in route.snapshot()["upstreams"].items()}
        self.assertEqual(counts, {"a.example": (2, 1), "b.example": (1, 0), "c.example": (2, 1)})

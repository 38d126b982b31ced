"""Tests for L{wighaven.dashboard} and L{wighaven.stats}: uptime formatting,
the self-contained dashboard page (escaped backend host, the figures, no
external URL), and the counters of L{GatewayStats} driven by a task.Clock.
"""

import re

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.dashboard import format_uptime, render_dashboard
from wighaven.stats import GatewayStats, StatsSnapshot


def snapshot(**values):
    fields = dict(started=100.0, now=100.0, requests=0, errors=0, in_flight=0, mean_latency_ms=0.0)
    fields.update(values)
    return StatsSnapshot(**fields)


def render(snap=None, backend="user-space.hf.space", version="1.2.3", status="ok"):
    page = render_dashboard(snap or snapshot(), backend, version, "/gateway-health", status)
    return page.decode("utf-8")


def stat(page, name):
    """The text of the element with data-stat=C{name}."""
    match = re.search(r'data-stat="%s">([^<]*)<' % re.escape(name), page)
    assert match is not None, name
    return match.group(1)


class FormatUptimeTests(SynchronousTestCase):
    def test_two_largest_units(self):
        for seconds, text in [
            (0, "0s"),
            (0.9, "0s"),
            (12, "12s"),
            (59.99, "59s"),
            (60, "1m 0s"),
            (7 * 60 + 3, "7m 3s"),
            (3599, "59m 59s"),
            (3600, "1h 0m"),
            (2 * 3600 + 5 * 60 + 59, "2h 5m"),
            (86399, "23h 59m"),
            (86400, "1d 0h"),
            (3 * 86400 + 4 * 3600 + 59 * 60, "3d 4h"),
            (400 * 86400, "400d 0h"),
        ]:
            self.assertEqual(format_uptime(seconds), text, seconds)


class RenderDashboardTests(SynchronousTestCase):
    def test_html_document(self):
        page = render()
        self.assertTrue(page.startswith("<!doctype html>"))
        self.assertIn('<meta charset="utf-8">', page)
        self.assertIn("</html>", page)

    def test_figures(self):
        page = render(
            snapshot(now=100.0 + 3725, requests=1234, errors=5, in_flight=3, mean_latency_ms=12.345)
        )
        self.assertEqual(stat(page, "requests"), "1234")
        self.assertEqual(stat(page, "errors"), "5")
        self.assertEqual(stat(page, "in_flight"), "3")
        self.assertEqual(stat(page, "mean_latency_ms"), "12.3")
        self.assertEqual(stat(page, "uptime"), "1h 2m")
        self.assertEqual(stat(page, "version"), "1.2.3")
        self.assertEqual(stat(page, "status"), "ok")
        self.assertEqual(stat(page, "backend"), "user-space.hf.space")

    def test_errors_marked(self):
        self.assertIn('class="v bad" data-stat="errors"', render(snapshot(errors=1)))
        self.assertIn('class="v" data-stat="errors"', render(snapshot(errors=0)))

    def test_backend_host_escaped(self):
        page = render(backend='<script>alert("x")</script>&')
        self.assertNotIn("<script>alert", page)
        self.assertEqual(stat(page, "backend"), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;")

    def test_status_and_version_escaped(self):
        page = render(status="<b>down</b>", version='"><img src=x>')
        self.assertNotIn("<b>down</b>", page)
        self.assertNotIn("<img", page)

    def test_refreshes_from_health_path(self):
        self.assertIn('fetch("/gateway-health"', render())

    def test_no_external_url(self):
        page = render()
        self.assertNotIn("http://", page)
        self.assertNotIn("https://", page)
        self.assertIsNone(re.search(r"""(src|href)\s*=\s*["']?//""", page, re.IGNORECASE))
        self.assertIsNone(re.search(r"url\(", page))
        self.assertIsNone(re.search(r"@import", page))


class GatewayStatsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.stats = GatewayStats(self.clock)

    def test_initial(self):
        self.assertEqual(
            self.stats.snapshot(),
            StatsSnapshot(started=1000, now=1000, requests=0, errors=0, in_flight=0,
                          mean_latency_ms=0.0),
        )

    def test_uptime_follows_clock(self):
        self.clock.advance(90.5)
        self.assertEqual(self.stats.snapshot().uptime_seconds, 90.5)

    def test_uptime_never_negative(self):
        self.assertEqual(snapshot(started=10.0, now=5.0).uptime_seconds, 0.0)

    def test_in_flight(self):
        self.stats.request_started()
        self.stats.request_started()
        self.assertEqual(self.stats.snapshot().in_flight, 2)
        self.assertEqual(self.stats.snapshot().requests, 0)
        self.stats.request_ended(200, 0.1)
        snap = self.stats.snapshot()
        self.assertEqual((snap.in_flight, snap.requests), (1, 1))

    def test_errors(self):
        for status, failed in [(200, False), (302, False), (404, False), (499, False),
                               (500, False), (502, False), (504, False), (200, True)]:
            self.stats.request_started()
            self.stats.request_ended(status, 0.0, failed=failed)
        snap = self.stats.snapshot()
        self.assertEqual((snap.requests, snap.errors, snap.in_flight), (8, 4, 0))

    def test_mean_latency(self):
        for duration in (0.010, 0.020, 0.060):
            self.stats.request_started()
            self.stats.request_ended(200, duration)
        self.assertAlmostEqual(self.stats.snapshot().mean_latency_ms, 30.0)

    def test_snapshot_is_a_copy(self):
        before = self.stats.snapshot()
        self.stats.request_started()
        self.stats.request_ended(500, 1.0)
        self.assertEqual(before.requests, 0)
        self.assertEqual(self.stats.snapshot().requests, 1)

    def test_dashboard_from_stats(self):
        self.stats.request_started()
        self.stats.request_ended(502, 0.25)
        self.clock.advance(65)
        page = render_dashboard(
            self.stats.snapshot(), "b.example", "0", "/gateway-health"
        ).decode("utf-8")
        self.assertEqual(stat(page, "requests"), "1")
        self.assertEqual(stat(page, "errors"), "1")
        self.assertEqual(stat(page, "mean_latency_ms"), "250.0")
        self.assertEqual(stat(page, "uptime"), "1m 5s")

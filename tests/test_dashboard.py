"""Tests for L{wighaven.web.dashboard} and L{wighaven.observe.stats}: the formatters,
the chart, the self-contained dashboard page (its first paint from a
snapshot or a live message, paths only for who may see them, escaping, no
external URL, the script that opens the live feed, accessible markup), the
counters of L{GatewayStats} driven by a task.Clock, and the page as the
gateway serves it (L{wighaven.web.pages.GatewayPages}: rendered once a second,
its first paint's recent requests, the live feed's cap).

What the page does in a browser is in test_dashboard_browser.
"""

import json
import re
from html.parser import HTMLParser

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from twisted.web.websocket import WebSocketResource

from wighaven.web import pages as web_pages
from wighaven.config.settings import load_config

from wighaven.web.dashboard import (
    HISTORY_SECONDS,
    LIVE_PATH,
    chart,
    format_bytes,
    format_count,
    format_ms,
    format_percent,
    format_rate,
    format_uptime,
    render_dashboard,
)
from wighaven.observe.stats import GatewayStats, StatsSnapshot

DASH = "\u2014"


def ended(stats, status, seconds, failed=False, path=None):
    """One request of the environment's route ended (as the site counts it)."""
    stats.route.request_ended(b"GET", status, seconds, None, 0, 0, failed, path=path)


def snapshot(**values):
    fields = dict(started=100.0, now=100.0, requests=0, errors=0, in_flight=0, mean_latency_ms=0.0)
    fields.update(values)
    return StatsSnapshot(**fields)


def render(snap=None, backend="user-space.hf.space", version="1.2.3", status="ok", **kw):
    page = render_dashboard(snap or snapshot(), backend, version, "/gateway-health", status, **kw)
    return page.decode("utf-8")


class _Page(HTMLParser):
    """Collects the text of data-stat / data-unit elements, tags and attributes."""

    def __init__(self, page):
        super().__init__(convert_charrefs=True)
        self.stats, self.units, self.classes, self.tags = {}, {}, {}, []
        self._open = []  # (tag, key or None)
        self.rows = []  # the recent requests' rows, their cells' text
        self.route_rows = []  # the routes table's, its row headers included
        self._row = None
        self._rows = None  # the list the rows of the open tbody go to
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        key = None
        if "data-stat" in attrs:
            key = ("stat", attrs["data-stat"])
            self.stats[attrs["data-stat"]] = ""
            self.classes[attrs["data-stat"]] = attrs.get("class", "")
        elif "data-unit" in attrs:
            key = ("unit", attrs["data-unit"])
            self.units[attrs["data-unit"]] = ""
        if tag == "tbody":
            self._rows = {"recent-rows": self.rows, "route-rows": self.route_rows}.get(attrs.get("id"))
        if tag == "tr" and self._in_tbody() and self._rows is not None:
            self._row = []
            self._rows.append(self._row)
        if self._row is not None and (tag == "td" or tag == "th" and self._rows is self.route_rows):
            self._row.append("")
        if tag not in ("meta", "br", "img", "input", "link", "path", "rect"):
            self._open.append((tag, key))

    def _in_tbody(self):
        return any(tag == "tbody" for tag, _ in self._open)

    def handle_endtag(self, tag):
        while self._open:
            open_tag, _ = self._open.pop()
            if open_tag == tag:
                break
        if tag == "tbody":
            self._row = self._rows = None

    def handle_data(self, data):
        for _, key in self._open:
            if key is not None:
                (self.stats if key[0] == "stat" else self.units)[key[1]] += data
        if self._row is not None and self._row and any(t in ("td", "th") for t, _ in self._open):
            self._row[-1] += data


def stat(page, name):
    """The text of the element with data-stat=C{name}."""
    parsed = _Page(page)
    assert name in parsed.stats, name
    return parsed.stats[name]


def figure(page, name):
    parsed = _Page(page)
    unit = parsed.units.get(name, "")
    return parsed.stats[name] + (" " + unit if unit else "")


def hello(**changes):
    message = {
        "type": "hello",
        "time": 1700000100.5,
        "status": "ok",
        "version": "0.1.0",
        "backend": "user-space.hf.space",
        "uptime_seconds": 93784.2,
        "requests_per_second": 3.4,
        "latency_ms": {"p50": 12.3, "p95": 45.2, "p99": 1250.0},
        "error_rate": 0.0025,
        "requests": 1234567,
        "errors": 31,
        "in_flight": 2,
        "open_websockets": 3,
        "open_streams": 1,
        "bytes_in": 1258291,
        "bytes_out": 3 * 1024 ** 3,
        "history": [{"t": 1700000099 - i, "requests": 4, "errors": 1} for i in range(10)][::-1],
        "recent": [
            {"time": 1700000098.25, "method": "GET", "route": "backend", "path": "/first",
             "status": 200, "ms": 8.5},
            {"time": 1700000099.5, "method": "POST", "route": "backend", "path": "/second?q=1",
             "status": 502, "ms": 30012.0},
            {"time": 1700000100.0, "method": "GET", "route": "backend", "path": "/third",
             "status": None, "ms": 0.42},
        ],
        "backend_status": {"reachable": True, "last_error": None, "last_error_at": None},
    }
    message.update(changes)
    return message


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


class FormatterTests(SynchronousTestCase):
    """The Python twins of the page script's formatters (checked against it in the browser)."""

    def test_count(self):
        for value, text in [(0, "0"), (7, "7"), (1234, "1,234"), (1234567, "1,234,567"),
                            (None, DASH), ("12", DASH), (True, DASH), (float("nan"), DASH)]:
            self.assertEqual(format_count(value), text, value)

    def test_rate(self):
        for value, text in [(0, "0"), (0.0, "0"), (0.004, "0.00"), (0.35, "0.35"), (3.4, "3.40"),
                            (9.999, "10.00"), (12.34, "12.3"), (123.4, "123"), (1234.5, "1,235"),
                            (None, DASH), (float("inf"), DASH)]:
            self.assertEqual(format_rate(value), text, value)

    def test_ms(self):
        for value, pair in [(0, ("0.00", "ms")), (0.42, ("0.42", "ms")), (2.25, ("2.3", "ms")),
                            (12.3, ("12", "ms")), (999.4, ("999", "ms")), (1250.0, ("1.25", "s")),
                            (30012.0, ("30.0", "s")), (3_600_000, ("3,600.0", "s")),
                            (None, (DASH, ""))]:
            self.assertEqual(format_ms(value), pair, value)

    def test_percent(self):
        for value, pair in [(0, ("0", "%")), (0.0025, ("0.25", "%")), (0.025, ("2.5", "%")),
                            (0.2, ("20", "%")), (1, ("100", "%")), (None, (DASH, ""))]:
            self.assertEqual(format_percent(value), pair, value)

    def test_bytes(self):
        for value, pair in [(0, ("0", "B")), (1023, ("1023", "B")), (1024, ("1.0", "KiB")),
                            (1258291, ("1.2", "MiB")), (150 * 1024 ** 2, ("150", "MiB")),
                            (3 * 1024 ** 3, ("3.0", "GiB")), (2 * 1024 ** 6, ("2048", "PiB")),
                            (None, (DASH, ""))]:
            self.assertEqual(format_bytes(value), pair, value)

    def test_ties_round_like_javascript(self):
        # JavaScript's toFixed rounds an exact tie up; Python's % would give 2.2.
        self.assertEqual(format_ms(2.25)[0], "2.3")
        self.assertEqual(format_rate(0.125), "0.13")


class ChartTests(SynchronousTestCase):
    def points(self, path):
        return [tuple(float(n) for n in p.split()) for p in path[1:].split(" L")]

    def test_empty(self):
        drawn = chart([])
        line = self.points(drawn["requests_line"])
        self.assertEqual(len(line), HISTORY_SECONDS)
        self.assertEqual({y for _, y in line}, {100.0})
        self.assertEqual(drawn["scale"], "1")
        self.assertEqual(drawn["half"], "0.5")
        self.assertEqual(drawn["alt"], "No requests in the last 5 minutes.")

    def test_series_scale_and_alt(self):
        history = [{"t": 1000 + i, "requests": i, "errors": 1 if i == 7 else 0} for i in range(8)]
        drawn = chart(history)
        line = self.points(drawn["requests_line"])
        self.assertEqual(line[-1], (299.0, 32.8))  # the newest second at the right
        self.assertEqual(line[-8], (292.0, 100.0))
        self.assertEqual(drawn["scale"], "10")
        self.assertEqual(drawn["half"], "5")
        self.assertEqual(
            drawn["alt"],
            "Requests per second over the last 5 minutes: 28 requests, 1 error; "
            "peak 7 per second, latest 7 per second.",
        )
        self.assertTrue(drawn["requests_area"].endswith(" L299 100 L0 100 Z"))
        errors = self.points(drawn["errors_line"])
        self.assertEqual(errors[-1], (299.0, 90.4))

    def test_missing_seconds_are_zero_and_errors_never_exceed_requests(self):
        drawn = chart([{"t": 10, "requests": 5, "errors": 9}, {"t": 20, "requests": 5, "errors": 0}])
        line = self.points(drawn["requests_line"])
        self.assertEqual(line[-1][1], 4.0)
        self.assertEqual(line[-2][1], 100.0)
        self.assertEqual(line[-11][1], 4.0)
        self.assertEqual(self.points(drawn["errors_line"])[-11][1], 4.0)

    def test_nice_scales(self):
        for peak, scale in [(0.3, "1"), (1, "1"), (1.5, "2"), (3, "5"), (7, "10"), (10, "10"),
                            (11, "20"), (77, "100"), (250, "500"), (1200, "2,000")]:
            self.assertEqual(chart([{"t": 1, "requests": peak, "errors": 0}])["scale"], scale, peak)

    def test_end_given(self):
        drawn = chart([{"t": 100, "requests": 2, "errors": 0}], end=400)
        self.assertEqual({y for _, y in self.points(drawn["requests_line"])}, {100.0})

    def test_bad_points_ignored(self):
        drawn = chart([{"t": "x"}, {"requests": 3}, None, 7,
                       {"t": 5, "requests": "many", "errors": None}])
        self.assertEqual(drawn["alt"], "No requests in the last 5 minutes.")


class RenderDashboardTests(SynchronousTestCase):
    def test_account_shows_who_and_a_sign_out_form(self):
        self.assertNotIn("Signed in as", render())
        page = render(account=('<b>"x"', 'tok"en'))
        self.assertIn("Signed in as <b>&lt;b&gt;&quot;x&quot;</b>", page)
        self.assertIn('<input type="hidden" name="csrf" value="tok&quot;en">', page)
        self.assertIn('action="/_gateway/logout"', page)
        # A Bearer credential has no session to end: who, without a button.
        page = render(account=("alice", None))
        self.assertIn("Signed in as <b>alice</b>", page)
        self.assertNotIn('id="sign-out"', page)

    def test_html_document(self):
        page = render()
        self.assertTrue(page.startswith("<!doctype html>"))
        self.assertIn('<html lang="en">', page)
        self.assertIn('<meta charset="utf-8">', page)
        self.assertIn('<meta name="viewport" content="width=device-width, initial-scale=1">', page)
        self.assertIn("</html>", page)

    def test_figures_from_snapshot(self):
        page = render(
            snapshot(now=100.0 + 3725, requests=1234, errors=5, in_flight=3, mean_latency_ms=12.345)
        )
        self.assertEqual(stat(page, "requests"), "1,234")
        self.assertEqual(stat(page, "errors"), "5")
        self.assertEqual(stat(page, "in_flight"), "3")
        self.assertEqual(stat(page, "uptime"), "1h 2m")
        self.assertEqual(stat(page, "version"), "1.2.3")
        self.assertEqual(stat(page, "status"), "ok")
        self.assertEqual(stat(page, "backend"), "user-space.hf.space")
        # What a snapshot does not hold waits for the live feed.
        for name in ("requests_per_second", "latency_p50", "latency_p95", "latency_p99",
                     "error_rate", "open_websockets", "open_streams", "bytes_in", "bytes_out"):
            self.assertEqual(stat(page, name), DASH, name)
        self.assertEqual(stat(page, "reachable"), "not checked yet")
        self.assertEqual(_Page(page).rows, [["Recent requests appear here as they finish."]])

    def test_errors_marked(self):
        self.assertEqual(_Page(render(snapshot(errors=1))).classes["errors"], "num bad")
        self.assertEqual(_Page(render(snapshot(errors=0))).classes["errors"], "num")

    def test_draining(self):
        page = render(status="draining")
        self.assertEqual(stat(page, "status"), "draining")
        self.assertIn('<body data-status="draining"', page)

    def test_figures_from_live_message(self):
        page = render(live=hello(), show_paths=True)
        self.assertEqual(stat(page, "uptime"), "1d 2h")
        self.assertEqual(stat(page, "requests_per_second"), "3.40")
        self.assertEqual(figure(page, "latency_p50"), "12 ms")
        self.assertEqual(figure(page, "latency_p95"), "45 ms")
        self.assertEqual(figure(page, "latency_p99"), "1.25 s")
        self.assertEqual(figure(page, "error_rate"), "0.25 %")
        self.assertEqual(_Page(page).classes["error_rate"], "v warn")
        self.assertEqual(stat(page, "in_flight"), "2")
        self.assertEqual(stat(page, "open_websockets"), "3")
        self.assertEqual(stat(page, "open_streams"), "1")
        self.assertEqual(figure(page, "bytes_in"), "1.2 MiB")
        self.assertEqual(figure(page, "bytes_out"), "3.0 GiB")
        self.assertEqual(stat(page, "requests"), "1,234,567")
        self.assertEqual(stat(page, "errors"), "31")
        self.assertEqual(stat(page, "reachable"), "reachable")
        self.assertEqual(_Page(page).classes["reachable"], "badge ok")
        self.assertIn('id="last-error" hidden', page)
        # Newest first; times in UTC until the script repaints them locally.
        self.assertEqual(
            _Page(page).rows,
            [
                ["22:15:00", "GET", "/third", DASH + "no status (aborted)", "0.42 ms"],
                ["22:14:59", "POST", "/second?q=1", "502", "30.0 s"],
                ["22:14:58", "GET", "/first", "200", "8.5 ms"],
            ],
        )
        self.assertIn("peak 4 per second", page)
        self.assertIn("Gateway ok. Backend reachable. 3.40 requests per second, p95 latency 45 ms",
                      page)

    def test_paths_not_shown_by_default(self):
        """Without show_paths the list has each request's route, never its
        path, even one the message carries."""
        page = render(live=hello())
        for part in ("/first", "/second", "q=1", "/third"):
            self.assertNotIn(part, page)
        self.assertEqual(
            _Page(page).rows,
            [
                ["22:15:00", "GET", "backend", DASH + "no status (aborted)", "0.42 ms"],
                ["22:14:59", "POST", "backend", "502", "30.0 s"],
                ["22:14:58", "GET", "backend", "200", "8.5 ms"],
            ],
        )
        headers = re.findall(r'<th scope="col" class="(c-[\w-]+)">(\w+)</th>', page)
        self.assertEqual(headers, [("c-time", "Time"), ("c-method", "Method"), ("c-route", "Route"),
                                   ("c-status", "Status"), ("c-ms", "Duration")])
        self.assertIn("paths are not shown", page)
        config = re.search(r'id="dashboard-config">(.*?)</script>', page).group(1)
        self.assertIs(json.loads(config)["paths"], False)

    def test_paths_shown_to_who_may_see_them(self):
        page = render(live=hello(), show_paths=True)
        self.assertIn('<th scope="col" class="c-path">Path</th>', page)
        self.assertNotIn("paths are not shown", page)
        config = re.search(r'id="dashboard-config">(.*?)</script>', page).group(1)
        self.assertIs(json.loads(config)["paths"], True)

    def test_script_fills_the_route_column_without_paths(self):
        script = render()[render().index("<script>"):]
        self.assertIn('SHOW_PATHS = cfg.paths === true', script)
        self.assertIn('cell(tr, "c-route", str(r.route))', script)
        self.assertIn("path: SHOW_PATHS ? r.path : null", script)

    def test_live_message_keeps_the_newest_twenty(self):
        recent = [{"time": 1.0 + i, "method": "GET", "path": "/r/%d" % i, "status": 200, "ms": 1}
                  for i in range(30)]
        rows = _Page(render(live=hello(recent=recent), show_paths=True)).rows
        self.assertEqual([row[2] for row in rows], ["/r/%d" % i for i in range(29, 9, -1)])

    def test_live_message_with_unreachable_backend(self):
        page = render(live=hello(
            error_rate=0.2,
            backend_status={"reachable": False, "last_error": "connect <b>refused</b> & gone",
                            "last_error_at": 1700000000.0},
        ))
        self.assertEqual(stat(page, "reachable"), "unreachable")
        self.assertEqual(_Page(page).classes["reachable"], "badge bad")
        self.assertEqual(_Page(page).classes["error_rate"], "v bad")
        self.assertEqual(stat(page, "last_error"), "connect <b>refused</b> & gone")
        self.assertEqual(stat(page, "last_error_at"), "22:13:20")
        self.assertNotIn("<b>refused", page)
        self.assertIn('id="last-error">', page)

    def test_live_message_of_wrong_shape(self):
        page = render(live=hello(
            requests="many", latency_ms=None, history="no", recent=[None, 5, {"path": 3}],
            bytes_in=True, backend_status=[], in_flight=None,
        ), show_paths=True)
        self.assertEqual(stat(page, "requests"), DASH)
        self.assertEqual(stat(page, "latency_p95"), DASH)
        self.assertEqual(stat(page, "bytes_in"), DASH)
        self.assertEqual(stat(page, "in_flight"), DASH)
        self.assertEqual(stat(page, "reachable"), "not checked yet")
        self.assertEqual(_Page(page).rows, [[DASH, "", "3", DASH + "no status (aborted)", DASH]])

    def test_backend_host_escaped(self):
        page = render(backend='<script>alert("x")</script>&')
        self.assertNotIn("<script>alert", page)
        self.assertIn("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;", page)
        self.assertEqual(stat(page, "backend"), '<script>alert("x")</script>&')

    def test_status_and_version_escaped(self):
        page = render(status="<b>down</b>", version='"><img src=x>')
        self.assertNotIn("<b>down</b>", page)
        self.assertNotIn("<img", page)

    def test_recent_paths_escaped(self):
        hostile = '/x"><img src=x onerror=alert(1)></td><script>alert(2)</script>'
        page = render(live=hello(recent=[
            {"time": 1.0, "method": "<i>GET</i>", "path": hostile, "status": 200, "ms": 1.0}
        ]), show_paths=True)
        self.assertNotIn("<img", page)
        self.assertNotIn("<script>alert", page)
        self.assertNotIn("<i>GET", page)
        parsed = _Page(page)
        self.assertEqual(parsed.rows[0][1:3], ["<i>GET</i>", hostile])
        titles = [a["title"] for t, a in parsed.tags if t == "td" and "title" in a]
        self.assertEqual(titles, [hostile])

    def test_script_opens_the_live_feed(self):
        page = render()
        config = re.search(
            r'<script type="application/json" id="dashboard-config">(.*?)</script>', page
        ).group(1)
        self.assertEqual(json.loads(config)["live"], "/_gateway/live")
        self.assertEqual(LIVE_PATH, "/_gateway/live")
        # ws: or wss: like the page, on the page's own host, wherever the page is served.
        self.assertIn("new URL(cfg.live, location.href)", page)
        self.assertIn('u.protocol = u.protocol === "https:" ? "wss:" : "ws:";', page)
        self.assertIn("new WebSocket(liveUrl())", page)
        self.assertNotIn("fetch(", page)

    def test_live_path_is_safe_in_the_script(self):
        page = render(live_path="/_gateway/live</script><script>alert(1)</script>")
        self.assertNotIn("</script><script>alert", page)
        self.assertIn("\\u003c/script\\u003e", page)

    def test_without_a_live_feed(self):
        page = render(live_path=None)
        config = re.search(r'id="dashboard-config">(.*?)</script>', page).group(1)
        self.assertIsNone(json.loads(config)["live"])
        self.assertEqual(stat(page, "connection"), "live updates off")
        self.assertIn("Live updates are off", page)

    def test_script_writes_text_never_markup(self):
        page = render()
        script = page[page.index("<script>"):]
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                     "new Function", "setTimeout(\"", "createElementNS"):
            self.assertNotIn(sink, script, sink)
        self.assertIn("textContent", script)

    def test_no_external_url(self):
        for page in (render(), render(live=hello())):
            self.assertNotIn("http://", page)
            self.assertNotIn("https://", page)
            self.assertIsNone(re.search(r"""(src|href)\s*=\s*["']?\s*//""", page, re.IGNORECASE))
            self.assertIsNone(re.search(r"""url\(\s*["']?\s*(//|[a-z][a-z0-9+.-]*:)""", page,
                                        re.IGNORECASE))
            self.assertIsNone(re.search(r"@import", page))
            for tag, attrs in _Page(page).tags:
                self.assertNotIn(tag, ("link", "img", "iframe", "object", "embed", "image"))
                self.assertNotIn("src", attrs, tag)
                href = attrs.get("href")
                self.assertTrue(href is None or href.startswith("#"), href)

    def test_accessible_markup(self):
        page = render(live=hello())
        tags = _Page(page).tags
        names = [t for t, _ in tags]
        for landmark in ("header", "main", "footer"):
            self.assertEqual(names.count(landmark), 1, landmark)
        self.assertEqual(names.count("h1"), 1)
        self.assertGreaterEqual(names.count("h2"), 4)
        live = [a for _, a in tags if "aria-live" in a]
        self.assertEqual(live, [{"id": "summary", "class": "sr-only", "aria-live": "polite",
                                 "aria-atomic": "true"}])
        headers = [a for t, a in tags if t == "th"]
        self.assertEqual(len(headers), 5 + 6)  # recent requests, routes
        self.assertTrue(all(a.get("scope") == "col" for a in headers))
        self.assertEqual(names.count("caption"), 2)
        svg = [a for t, a in tags if t == "svg" and a.get("role") == "img"]
        self.assertEqual(len(svg), 1)
        self.assertEqual(svg[0]["aria-labelledby"], "chart-alt")
        self.assertIn('<figcaption id="chart-alt">', page)
        # Each region is named by its heading.
        heading_ids = {a["id"] for t, a in tags if t == "h2"}
        for _, a in tags:
            if "aria-labelledby" in a and a.get("role") != "img":
                self.assertIn(a["aria-labelledby"], heading_ids)
        self.assertIn("@media (prefers-reduced-motion: reduce)", page)
        self.assertIn("@media (max-width: 44rem)", page)


def routes():
    """Two routes of a live message: one all up, one with an ejected and a down upstream."""
    now = hello()["time"]
    return [
        {"name": "api", "requests_per_second": 0.35, "p95_ms": 1250.0, "errors": 0,
         "error_rate": 0.0, "in_flight": 0, "upstreams": [
             {"label": "user-api.hf.space", "state": "up", "ejected_until": None,
              "last_error": None, "stage": None}]},
        {"name": "chat", "requests_per_second": 12.5, "p95_ms": 45.2, "errors": 1234,
         "error_rate": 0.08, "in_flight": 3, "upstreams": [
             {"label": "user-chat-a.hf.space", "state": "ejected", "ejected_until": now + 7.2,
              "last_error": "answered 503", "stage": None},
             {"label": "user-chat-b.hf.space", "state": "down", "ejected_until": None,
              "last_error": "stage SLEEPING", "stage": "SLEEPING"},
             {"label": "user-chat-c.hf.space:8443", "state": "down", "ejected_until": None,
              "last_error": "the upstream refused the connection", "stage": None}]},
    ]


class RouteTableTests(SynchronousTestCase):
    """The routes table: a row per route, its figures and its upstreams' health."""

    def upstreams(self, page):
        """Per upstream: its item's title, its pill's class and text, and the rest."""
        out, item = [], None
        for tag, attrs in _Page(page).tags:
            if tag == "li" and attrs.get("class") == "ups-item":
                item = {"title": attrs.get("title")}
                out.append(item)
            elif item is not None and tag in ("span", "time", "code"):
                item.setdefault("parts", []).append((tag, attrs.get("class"), attrs.get("datetime")))
        return out

    def test_a_row_per_route(self):
        page = render(live=hello(routes=routes()))
        self.assertEqual(_Page(page).route_rows, [
            ["api1 of 1 up", "0.35", "1.25 s", "0%0 total", "0", "upuser-api.hf.space"],
            ["chat0 of 3 up", "12.5", "45 ms", "8.0%1,234 total", "3",
             "ejecteduser-chat-a.hf.spaceback in 8sanswered 503"
             "downuser-chat-b.hf.spaceSpace stage SLEEPING"
             "downuser-chat-c.hf.space:8443the upstream refused the connection"],
        ])
        # The recent requests are a table of their own.
        self.assertEqual(len(_Page(page).rows), 3)

    def test_header_caption_and_row_headers(self):
        page = render(live=hello(routes=routes()))
        self.assertEqual(
            re.findall(r'<th scope="col" class="r-[\w-]+">([^<]+)</th>', page),
            ["Route", "Req/s", "p95", "Errors", "In flight", "Upstreams"])
        self.assertIn("<caption class=\"sr-only\">Each route's traffic and the health of its "
                      "upstreams</caption>", page)
        row_headers = [a for t, a in _Page(page).tags if t == "th" and a.get("scope") == "row"]
        self.assertEqual(len(row_headers), 2)
        self.assertIn('aria-labelledby="routes-h"', page)
        self.assertIn('<h2 id="routes-h">Routes</h2>', page)
        # Each figure names itself for the phone layout, where the header row is hidden.
        labels = [a["data-label"] for t, a in _Page(page).tags if "data-label" in a]
        self.assertEqual(labels, ["Req/s", "p95", "Errors", "In flight"] * 2)

    def test_health_in_words_and_colour(self):
        page = render(live=hello(routes=routes()))
        items = self.upstreams(page)
        self.assertEqual([i["title"] for i in items], [
            None, "Last error: answered 503", "Last error: stage SLEEPING",
            "Last error: the upstream refused the connection"])
        pills = [i["parts"][0][1] for i in items]
        self.assertEqual(pills, ["ups-st s-up", "ups-st s-ejected", "ups-st s-down", "ups-st s-down"])
        # Ejected: when it is back, as a machine-readable time too.
        self.assertIn(("time", "ups-when", "2023-11-14T22:15:07Z"), items[1]["parts"])
        # The Space's stage is said once, not again as the error.
        self.assertNotIn("ups-note", [p[1] for p in items[2]["parts"]])
        # Trouble shows in the errors and in the count of upstreams up.
        self.assertIn('<span class="num bad">8.0%</span>', page)
        self.assertIn('<span class="r-sub bad">0 of 3 up</span>', page)
        self.assertIn('<span class="r-sub">1 of 1 up</span>', page)

    def test_ejected_for_a_while_or_nearly_back(self):
        def note(until):
            r = routes()[1]
            r["upstreams"] = [dict(r["upstreams"][0], ejected_until=until)]
            return _Page(render(live=hello(routes=[r]))).route_rows[0][-1]

        now = hello()["time"]
        self.assertEqual(note(now + 125), "ejecteduser-chat-a.hf.spaceback in 2m 5sanswered 503")
        self.assertEqual(note(now + 0.2), "ejecteduser-chat-a.hf.spaceback in 1sanswered 503")
        self.assertEqual(note(now - 1), "ejecteduser-chat-a.hf.spaceback any momentanswered 503")
        self.assertEqual(note(None), "ejecteduser-chat-a.hf.spaceback any momentanswered 503")

    def test_before_the_feed_and_without_routes(self):
        self.assertEqual(_Page(render()).route_rows,
                         [["Routes appear here with the live figures."]])
        self.assertEqual(_Page(render(live=hello())).route_rows, [["No routes yet."]])
        self.assertEqual(_Page(render(live=hello(routes=[]))).route_rows, [["No routes yet."]])

    def test_routes_of_wrong_shape(self):
        self.assertEqual(_Page(render(live=hello(routes="many"))).route_rows, [["No routes yet."]])
        page = render(live=hello(routes=[None, 5, {"name": "x", "upstreams": [None, {"state": []}],
                                                   "requests_per_second": "fast", "errors": True}]))
        self.assertEqual(_Page(page).route_rows,
                         [["x0 of 1 up", DASH, DASH, DASH + DASH + " total", DASH, "unknown"]])
        page = render(live=hello(routes=[{"name": "y", "upstreams": "a.hf.space"}]))
        self.assertEqual(_Page(page).route_rows[0][-1], "no upstreams")

    def test_escaped(self):
        hostile = '<img src=x onerror=alert(1)>"&'
        page = render(live=hello(routes=[{
            "name": hostile, "upstreams": [{"label": hostile, "state": "down",
                                            "last_error": hostile, "stage": hostile}]}]))
        self.assertNotIn("<img", page)
        row = _Page(page).route_rows[0]
        self.assertEqual(row[0], hostile + "0 of 1 up")
        self.assertEqual(row[-1], "down" + hostile + "Space stage " + hostile + hostile)
        self.assertEqual(self.upstreams(page)[0]["title"], "Last error: " + hostile)

    def test_script_paints_the_routes_too(self):
        page = render()
        script = page[page.index("<script>"):]
        self.assertIn("paintRoutes(m.routes, m.time)", script)
        self.assertIn('function ejectedNote(until, now)', script)


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
        self.stats.route.request_started()
        self.stats.route.request_started()
        self.assertEqual(self.stats.snapshot().in_flight, 2)
        self.assertEqual(self.stats.snapshot().requests, 0)
        ended(self.stats, 200, 0.1)
        snap = self.stats.snapshot()
        self.assertEqual((snap.in_flight, snap.requests), (1, 1))

    def test_errors(self):
        for status, failed in [(200, False), (302, False), (404, False), (499, False),
                               (500, False), (502, False), (504, False), (200, True)]:
            self.stats.route.request_started()
            ended(self.stats, status, 0.0, failed=failed)
        snap = self.stats.snapshot()
        self.assertEqual((snap.requests, snap.errors, snap.in_flight), (8, 4, 0))

    def test_mean_latency(self):
        for duration in (0.010, 0.020, 0.060):
            self.stats.route.request_started()
            ended(self.stats, 200, duration)
        self.assertAlmostEqual(self.stats.snapshot().mean_latency_ms, 30.0)

    def test_snapshot_is_a_copy(self):
        before = self.stats.snapshot()
        self.stats.route.request_started()
        ended(self.stats, 500, 1.0)
        self.assertEqual(before.requests, 0)
        self.assertEqual(self.stats.snapshot().requests, 1)

    def test_dashboard_from_stats(self):
        self.stats.route.request_started()
        ended(self.stats, 502, 0.25)
        self.stats.route.request_started()
        self.clock.advance(65)
        page = render_dashboard(
            self.stats.snapshot(), "b.example", "0", "/gateway-health"
        ).decode("utf-8")
        self.assertEqual(stat(page, "requests"), "1")
        self.assertEqual(stat(page, "errors"), "1")
        self.assertEqual(stat(page, "in_flight"), "1")
        self.assertEqual(stat(page, "uptime"), "1m 5s")


class GatewayPagesTests(SynchronousTestCase):
    """The dashboard as the gateway serves it, driven by a task.Clock."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.renders = 0
        real = web_pages.render_dashboard

        def counted(*args, **kwargs):
            self.renders += 1
            return real(*args, **kwargs)

        self.patch(web_pages, "render_dashboard", counted)

    def pages(self, **settings):
        env = {"PRIVATE_BACKEND_URL": "https://user-space.hf.space", "HF_TOKEN": "hf_x"}
        env.update(settings)
        self.stats = GatewayStats(self.clock)
        return web_pages.GatewayPages(load_config(env), self.stats, self.clock)

    def finish(self, path=b"/predict", n=1):
        for _ in range(n):
            self.stats.route.request_started()
            ended(self.stats, 200, 0.01, path=path)

    def get(self, pages):
        request = DummyRequest([b""])
        return pages.dashboard(request).decode("utf-8")

    def test_two_renders_within_a_second_do_the_work_once(self):
        pages = self.pages()
        self.finish(n=3)
        first = self.get(pages)
        self.assertEqual(stat(first, "requests"), "3")
        self.finish(n=2)
        self.clock.advance(0.99)
        self.assertEqual(self.get(pages), first)
        self.assertEqual(self.renders, 1)
        self.clock.advance(0.01)
        later = self.get(pages)
        self.assertEqual(self.renders, 2)
        self.assertEqual(stat(later, "requests"), "5")
        self.assertEqual(len(_Page(later).rows), 5)

    def test_draining_shows_at_once(self):
        pages = self.pages()
        self.get(pages)
        self.stats.draining = True
        self.assertEqual(stat(self.get(pages), "status"), "draining")
        self.assertEqual(self.renders, 2)

    def test_a_clock_gone_back_renders_again(self):
        pages = self.pages()
        self.get(pages)
        self.clock.rightNow -= 5  # the wall clock was set back
        self.get(pages)
        self.assertEqual(self.renders, 2)

    def test_first_paint_without_paths_by_default(self):
        pages = self.pages()
        self.finish(b"/login/callback?code=SECRET")
        self.finish(b"/gradio_api/file=/tmp/secret.png")
        page = self.get(pages)
        for part in ("SECRET", "secret.png", "file=", "callback"):
            self.assertNotIn(part, page)
        self.assertEqual([row[2] for row in _Page(page).rows], ["backend", "backend"])

    def test_first_paint_with_paths_when_shown(self):
        pages = self.pages(DASHBOARD_SHOW_PATHS="true")
        self.finish(b"/gradio_api/file=/tmp/secret.png")
        self.assertEqual(_Page(self.get(pages)).rows[0][2], "/gradio_api/file=/tmp/secret.png")

    def test_first_paint_lists_requests_finished_while_no_dashboard_was_open(self):
        """Not "No requests yet." beside "Requests 3"."""
        pages = self.pages(DASHBOARD_SHOW_PATHS="true")
        for path in (b"/a", b"/b", b"/c"):
            self.finish(path)
        page = self.get(pages)
        self.assertEqual(stat(page, "requests"), "3")
        self.assertEqual([row[2] for row in _Page(page).rows], ["/c", "/b", "/a"])

    def test_first_paint_has_a_row_per_route(self):
        pages = self.pages()
        chat = self.stats.metrics.route("chat")
        chat.upstream_status = lambda: [
            {"upstream": "user-chat-a.hf.space", "state": "ejected",
             "ejected_until": self.clock.seconds() + 20, "last_error": "answered 502",
             "stage": None, "space": None, "in_flight": 0}]
        for _ in range(30):
            chat.request_started()
            chat.request_ended(b"GET", 502, 0.2, 0.2, 0, 0, upstream="user-chat-a.hf.space")
        self.finish(n=10)
        rows = _Page(self.get(pages)).route_rows
        self.assertEqual(rows, [
            ["backend", "1.00", "9.8 ms", "0%0 total", "0", "no upstreams"],
            ["chat0 of 1 up", "3.00", "243 ms", "100%30 total", "0",
             "ejecteduser-chat-a.hf.spaceback in 20sanswered 502"],
        ])

    def test_live_feed_refused_past_its_watchers(self):
        pages = self.pages(LIVE_MAX_WATCHERS="2")
        self.assertIsInstance(pages.live_feed(DummyRequest([b""])), WebSocketResource)
        watchers = [_Watcher() for _ in range(2)]
        for watcher in watchers:
            pages.live.joined(watcher)
        request = DummyRequest([b""])
        body = pages.live_feed(request)
        self.assertEqual(request.responseCode, 503)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"Retry-After"), [b"5"])
        self.assertEqual(json.loads(body)["error"], "live_feed_full")
        pages.live.left(watchers[0])
        self.assertIsInstance(pages.live_feed(DummyRequest([b""])), WebSocketResource)


class _Watcher:
    """What the feed needs of a watcher."""

    show_paths = False
    paused = False

    def send(self, text):
        pass

"""The live dashboard in a real browser: headless Chromium (Debian's
/usr/bin/chromium driven by Playwright, as in test_apps_integration).

Two kinds of server:
  - a stub (L{StubFeed}): a Twisted web server in this process serving the
    page under the gateway's Content-Security-Policy and a WebSocket at
    /_gateway/live (twisted.web.websocket) that speaks the live feed's
    protocol from figures the test controls. It pins down the page itself:
    what each message paints, escaping, backoff, reconnection,
    accessibility, contrast, the phone layout;
  - the real gateway (L{RealGatewayTests}): a `twistd -n wighaven` process
    in front of the test backend, so the page, the CSP header, the route of
    the feed and the feed itself are the ones users get, including a
    restart of the gateway on the same port.

Playwright's sync API runs in one thread per test (deferToThread) while the
reactor serves the stub or the backend; the thread calls into the reactor
with blockingCallFromThread. Screenshots go to test-artifacts/.
"""

import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from unittest import mock

from twisted.internet import defer, endpoints, reactor
from twisted.internet.task import LoopingCall
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.websocket import WebSocketResource

from tests.support import gateway as gateway_support
from tests.support.backend import abort_open, start_backend, track_open
from tests.support.gateway import TOKEN, GatewayProcess
from tests.test_apps_integration import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from wighaven.web.dashboard import render_dashboard
from wighaven.observe.stats import StatsSnapshot

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'"
)
DASHBOARD = "/_gateway/"
# What every message of the live feed carries (besides history/point).
FEED_KEYS = {
    "type", "time", "status", "version", "backend", "uptime_seconds", "requests_per_second",
    "latency_ms", "error_rate", "requests", "errors", "in_flight", "open_websockets",
    "open_streams", "bytes_in", "bytes_out", "recent", "backend_status", "routes",
}
ROUTE_KEYS = {"name", "requests_per_second", "p95_ms", "errors", "error_rate", "in_flight",
              "upstreams"}
UPSTREAM_KEYS = {"label", "state", "ejected_until", "last_error", "stage"}
RECENT_TABLE = "The most recent requests through the gateway, newest first"
ROUTES_TABLE = "Each route's traffic and the health of its upstreams"

# Collected before any page script runs: CSP violations and script errors.
WATCH_PAGE = """
window.__problems = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__problems.push("csp " + e.violatedDirective + " " + e.blockedURI);
});
window.addEventListener("error", function (e) { window.__problems.push("error " + e.message); });
window.__sockets = [];  // when the page opened each WebSocket (ms)
(function (Native) {
  function Counted(url, protocols) {
    window.__sockets.push(performance.now());
    return protocols === undefined ? new Native(url) : new Native(url, protocols);
  }
  Counted.prototype = Native.prototype;
  ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (k) { Counted[k] = Native[k]; });
  window.WebSocket = Counted;
})(window.WebSocket);
"""

# The WCAG contrast ratio of every visible text element with its background.
CONTRAST = """
(selectors) => {
  function parse(c) {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function over(top, bottom) {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  }
  function background(el) {
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.push(parse(getComputedStyle(e).backgroundColor));
    let c = [255, 255, 255, 1];
    for (let i = chain.length - 1; i >= 0; i--) if (chain[i]) c = over(chain[i], c);
    return c;
  }
  function lum(c) {
    const v = c.slice(0, 3).map(x => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); });
    return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
  }
  const out = [];
  for (const sel of selectors) {
    for (const el of document.querySelectorAll(sel)) {
      if (!el.textContent.trim() || !el.getClientRects().length) continue;
      const style = getComputedStyle(el);
      if (style.visibility === "hidden" || el.closest(".sr-only")) continue;
      const bg = background(el), fg = over(parse(style.color), bg);
      const a = lum(fg), b = lum(bg);
      out.push([sel, el.textContent.trim().slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
    }
  }
  return out;
}
"""
TEXT_SELECTORS = [
    "h1", "h2", ".ver", ".conn", ".pill", "dt", ".card .v", ".unit", ".sub", ".sub b", "th",
    "td", "td code", ".method", ".st", ".badge", "figcaption", ".yl", ".xaxis span", "footer",
    "footer code", ".hint", ".legend li", ".last-error", ".last-error b", ".backend-host",
    ".route-name", ".r-sub", ".ups-st", ".ups-label", ".ups-stage", ".ups-when", ".ups-note",
]


def artifact(name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    return os.path.join(ARTIFACTS, name)


@contextmanager
def chromium():
    """A headless Chromium (the system's), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url, watch=True, on_websocket=None, **options):
    options.setdefault("viewport", {"width": 1100, "height": 800})
    options.setdefault("color_scheme", "dark")
    context = browser.new_context(**options)
    if watch:
        context.add_init_script(WATCH_PAGE)
    page = context.new_page()
    page.requests_seen = []
    page.on("request", lambda request: page.requests_seen.append(request.url))
    if on_websocket is not None:
        page.on("websocket", on_websocket)
    page.goto(url, wait_until="domcontentloaded", timeout=30000)
    return page


def assert_readable_in_both_schemes(testcase, page, light_screenshot):
    """
    Every text passes 4.5:1 contrast in the dark and the light scheme; the
    light one is kept as C{light_screenshot}; the page is left dark.
    """
    for scheme in ("dark", "light"):
        page.emulate_media(color_scheme=scheme)
        low = [c for c in page.evaluate(CONTRAST, TEXT_SELECTORS) if c[2] < 4.5]
        testcase.assertEqual(low, [], "text below 4.5:1 in the %s scheme" % scheme)
    page.screenshot(path=artifact(light_screenshot), full_page=True)
    page.emulate_media(color_scheme="dark")


def stat(page, name):
    return page.eval_on_selector('[data-stat="%s"]' % name, "e => e.textContent")


def figure(page, name):
    """The figure C{name} with its unit, e.g. '45 ms'."""
    return page.eval_on_selector(
        '[data-stat="%s"]' % name,
        "e => { const u = document.querySelector('[data-unit=\"' + e.dataset.stat + '\"]');"
        " return u && u.textContent ? e.textContent + ' ' + u.textContent : e.textContent; }",
    )


def stats_of(page):
    """Every data-stat and data-unit text on the page."""
    return page.evaluate(
        "() => { const o = {};"
        " document.querySelectorAll('[data-stat]').forEach(e => o[e.dataset.stat] = e.textContent);"
        " document.querySelectorAll('[data-unit]').forEach(e => o['unit:' + e.dataset.unit] = e.textContent);"
        " document.querySelectorAll('[data-path]').forEach(e => o['path:' + e.dataset.path] = e.getAttribute('d'));"
        " document.querySelectorAll('[data-chart]').forEach(e => o['chart:' + e.dataset.chart] = e.textContent);"
        " o.alt = document.getElementById('chart-alt').textContent;"
        " o.rows = Array.from(document.querySelectorAll('#recent-rows tr'), tr =>"
        "   Array.from(tr.cells, td => td.textContent).join(' | '));"
        " o.routes = " + ROUTE_ROWS_JS + ";"
        " o.upstreams = Array.from(document.querySelectorAll('#route-rows li'), li =>"
        "   [li.title, li.firstChild.className,"
        "    li.querySelector('time') ? li.querySelector('time').getAttribute('datetime') : '']"
        "   .join(' | '));"
        " return o; }"
    )


# The routes table's rows: each cell's text, row header first.
ROUTE_ROWS_JS = (
    "Array.from(document.querySelectorAll('#route-rows tr'), tr =>"
    " Array.from(tr.cells, c => c.textContent).join(' | '))"
)


def route_rows(page):
    return page.evaluate("() => " + ROUTE_ROWS_JS)


def route_row(page, name):
    """The cells of route C{name}'s row (None when it has none)."""
    return page.evaluate(
        "(name) => { const tr = Array.from(document.querySelectorAll('#route-rows tr'))"
        ".find(tr => tr.dataset.route === name);"
        " return tr ? Array.from(tr.cells, c => c.textContent) : null; }", name)


def upstream_items(page, name):
    """Route C{name}'s upstreams: [pill class, pill text, label, title, rest of the text]."""
    return page.evaluate(
        "(name) => Array.from(document.querySelectorAll('#route-rows tr[data-route=\"' + name +"
        " '\"] li'), li => [li.querySelector('.ups-st').className,"
        " li.querySelector('.ups-st').textContent, li.querySelector('.ups-label').textContent,"
        " li.title, li.querySelector('.ups-body').textContent])", name)


def recent_paths(page):
    return page.eval_on_selector_all("#recent-rows td.c-path", "tds => tds.map(td => td.textContent)")


def wait_until(predicate, timeout, interval=0.05):
    """Poll C{predicate} until it is true; returns the seconds it took, or None."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)


def conn_state(page):
    return page.evaluate("() => document.body.dataset.conn")


def problems(page):
    return page.evaluate("() => window.__problems")


# -- the stub feed ---------------------------------------------------------------


def base_routes(now=None):
    """Two routes: chat (one replica up, one ejected for 42 s), api (its Space asleep)."""
    now = time.time() if now is None else now
    return [
        {"name": "api", "requests_per_second": 0.35, "p95_ms": 180.0, "errors": 0,
         "error_rate": 0.0, "in_flight": 0, "upstreams": [
             {"label": "user-api.hf.space", "state": "down", "ejected_until": None,
              "last_error": "stage SLEEPING", "stage": "SLEEPING"}]},
        {"name": "chat", "requests_per_second": 3.05, "p95_ms": 45.2, "errors": 31,
         "error_rate": 0.0025, "in_flight": 2, "upstreams": [
             {"label": "user-chat-a.hf.space", "state": "up", "ejected_until": None,
              "last_error": None, "stage": "RUNNING"},
             {"label": "user-chat-b.hf.space", "state": "ejected", "ejected_until": now + 42.5,
              "last_error": "the upstream refused the connection", "stage": None}]},
    ]


def base_figures():
    return {
        "status": "ok",
        "version": "0.1.0",
        "backend": "user-space.hf.space",
        "uptime_seconds": 3725.4,
        "requests_per_second": 3.4,
        "latency_ms": {"p50": 12.3, "p95": 45.2, "p99": 1250.0},
        "error_rate": 0.0025,
        "requests": 12345,
        "errors": 31,
        "in_flight": 2,
        "open_websockets": 3,
        "open_streams": 1,
        "bytes_in": 1258291,
        "bytes_out": 3 * 1024 ** 3 + 5,
        "backend_status": {"reachable": True, "last_error": None, "last_error_at": None},
        "routes": base_routes(),
    }


def base_history(end):
    """300 seconds ending at C{end}: a 0..6 saw-tooth, an error every 50 s."""
    return [
        {"t": end - 299 + i, "requests": i % 7, "errors": 1 if i % 50 == 0 and i % 7 else 0}
        for i in range(300)
    ]


class _StubWatcher:
    """One open page, for twisted.web.websocket."""

    def __init__(self, feed):
        self.feed = feed
        self.transport = None

    def negotiationStarted(self, transport):
        self.transport = transport

    def negotiationFinished(self):
        self.feed.joined(self)

    def textMessageReceived(self, message):
        self.feed.received.append(message)

    def bytesMessageReceived(self, data):
        self.feed.received.append(data)

    def pongReceived(self, payload):
        pass

    def connectionLost(self, reason):
        self.feed.left(self)


class StubFeed:
    """
    Speaks the live feed's protocol: "hello" on connect, then "stats" every
    C{interval} seconds with the newest second in "point" and the requests
    queued with L{finish} in "recent". C{figures} is what every message
    carries; C{hello_override} replaces the hello message outright.
    """

    def __init__(self, interval=1.0):
        self.interval = interval
        self.figures = base_figures()
        self.end = int(time.time()) - 1
        self.history = base_history(self.end)
        self.hello_recent = [
            {"time": self.end - 3 + i, "method": m, "route": "backend", "path": p, "status": s,
             "ms": ms}
            for i, (m, p, s, ms) in enumerate([
                ("GET", "/", 200, 8.5), ("POST", "/gradio_api/queue/join", 200, 31.0),
                ("GET", "/file=missing.png", 404, 2.25),
            ])
        ]
        self.point_requests = 3
        # Each message's ejected upstreams are back EJECTED_FOR seconds after it
        # (so two paints of two messages agree); None: as in figures.
        self.ejected_for = 42.5
        self.queued = []
        self.hello_override = None
        self.watchers = set()
        self.received = []
        self.connects = []  # when each page connected (time.monotonic())
        self._loop = None

    def buildProtocol(self, request):
        return _StubWatcher(self)

    def message(self, kind, now):
        message = dict(self.figures, type=kind, time=now)
        if self.ejected_for is not None and isinstance(message.get("routes"), list):
            message["routes"] = [
                dict(route, upstreams=[
                    dict(u, ejected_until=now + self.ejected_for) if u["state"] == "ejected" else u
                    for u in route["upstreams"]])
                for route in message["routes"]]
        return message

    def hello(self):
        if self.hello_override is not None:
            return self.hello_override
        message = self.message("hello", time.time())
        message["history"] = self.history
        message["recent"] = self.hello_recent
        return message

    def stats(self):
        now = time.time()
        message = self.message("stats", now)
        second = int(now) - 1
        message["point"] = {"t": second, "requests": self.point_requests, "errors": 0}
        message["recent"], self.queued = self.queued, []
        return message

    def finish(self, method, path, status, ms):
        self.queued.append({"time": time.time(), "method": method, "route": "backend",
                            "path": path, "status": status, "ms": ms})

    def joined(self, watcher):
        self.connects.append(time.monotonic())
        self.watchers.add(watcher)
        watcher.transport.sendTextMessage(json.dumps(self.hello()))
        if self._loop is None:
            self._loop = LoopingCall(self.tick)
            self._loop.start(self.interval, now=False)

    def left(self, watcher):
        self.watchers.discard(watcher)
        if not self.watchers and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def tick(self):
        text = json.dumps(self.stats())
        for watcher in list(self.watchers):
            watcher.transport.sendTextMessage(text)


class _Refusing(resource.Resource):
    """The feed's path while the stub refuses WebSockets: counts the tries."""

    isLeaf = True

    def __init__(self, tries):
        super().__init__()
        self.tries = tries

    def render_GET(self, request):
        self.tries.append(time.monotonic())
        request.setResponseCode(503)
        return b"not now"


class _Page(resource.Resource):
    isLeaf = True

    def __init__(self, stub):
        super().__init__()
        self.stub = stub

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Security-Policy", CSP.encode("ascii"))
        return self.stub.render_page()


class _Feed(resource.Resource):
    isLeaf = True

    def __init__(self, stub):
        super().__init__()
        self.stub = stub

    def render_GET(self, request):
        if self.stub.refusing is not None:
            return _Refusing(self.stub.refusing).render_GET(request)
        return WebSocketResource(self.stub.feed).render_GET(request)


class _TrackingSite(server.Site):
    noisy = False

    def __init__(self, root):
        super().__init__(root)
        self.open = set()

    def buildProtocol(self, addr):
        return track_open(self.open, super().buildProtocol(addr))


class StubGateway:
    """The page (at / and /_gateway/) and the stub feed, on 127.0.0.1."""

    def __init__(self, feed):
        self.feed = feed
        self.first_paint = None  # a hello-shaped message for render_dashboard(live=...)
        self.refusing = None  # a list: the feed answers 503 and records each try
        self.show_paths = True  # the page as a viewer who may see paths has it
        page = _Page(self)
        gateway = resource.Resource()
        gateway.putChild(b"", page)
        gateway.putChild(b"live", _Feed(self))
        root = resource.Resource()
        root.putChild(b"", page)
        root.putChild(b"_gateway", gateway)
        self.site = _TrackingSite(root)
        self.port = None
        self.number = 0

    def render_page(self):
        snap = StatsSnapshot(started=100.0, now=100.0 + 3725, requests=12000, errors=30,
                             in_flight=1, mean_latency_ms=20.0)
        return render_dashboard(snap, "user-space.hf.space", "0.1.0", "/gateway-health",
                                status=self.feed.figures["status"], live=self.first_paint,
                                show_paths=self.show_paths)

    @defer.inlineCallbacks
    def start(self):
        endpoint = endpoints.TCP4ServerEndpoint(reactor, self.number, interface="127.0.0.1")
        self.port = yield endpoint.listen(self.site)
        self.number = self.port.getHost().port
        return self.number

    def stop(self):
        """Go away like a gateway that stops: no listener, every connection cut."""
        port, self.port = self.port, None
        abort_open(self.site.open)
        return port.stopListening() if port is not None else None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.number


class StubFeedTests(unittest.TestCase):
    """The page against a stub feed whose every figure the test chooses."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.feed = StubFeed()
        self.stub = StubGateway(self.feed)
        yield self.stub.start()
        self.addCleanup(self.stub.stop)
        self.addCleanup(self._stop_loop)

    def _stop_loop(self):
        if self.feed._loop is not None:
            self.feed._loop.stop()
            self.feed._loop = None

    def call(self, f, *args):
        """Run C{f} in the reactor thread (we are in the browser's)."""
        return blockingCallFromThread(reactor, f, *args)

    def live_page(self, browser, path=DASHBOARD, **options):
        page = open_page(browser, self.stub.url + path, **options)
        took = wait_until(lambda: conn_state(page) == "live", 5)
        self.assertIsNotNone(took, "the page never went live")
        return page

    def test_recent_requests_newest_first_whatever_their_arrival(self):
        """
        With several workers the other workers' requests reach the page a
        second or so after this worker's own: the list still reads newest
        first by the time each request ended, not by arrival.
        """

        def late_entry(path, ended):
            self.feed.queued.append({"time": ended, "method": "GET", "route": "backend",
                                     "path": path, "status": 200, "ms": 1.0})

        def scenario():
            with chromium() as browser:
                page = self.live_page(browser)
                before_own = time.time()
                self.call(self.feed.finish, "GET", "/own-newest", 200, 1.0)
                took = wait_until(lambda: recent_paths(page)[:1] == ["/own-newest"], 2.5)
                self.assertIsNotNone(took, recent_paths(page))
                # Ended before /own-newest (but after hello's), arrives after it.
                self.call(late_entry, "/peer-older", before_own - 0.5)
                took = wait_until(lambda: "/peer-older" in recent_paths(page), 2.5)
                self.assertIsNotNone(took, recent_paths(page))
                self.assertEqual(recent_paths(page)[:2], ["/own-newest", "/peer-older"])

        return deferToThread(scenario)

    def test_figures_chart_and_recent_requests(self):
        def scenario():
            with chromium() as browser:
                page = self.live_page(browser)
                self.assertEqual(stat(page, "status"), "ok")
                self.assertEqual(stat(page, "connection"), "live")
                self.assertEqual(stat(page, "backend"), "user-space.hf.space")
                self.assertEqual(stat(page, "reachable"), "reachable")
                self.assertEqual(stat(page, "version"), "0.1.0")
                self.assertEqual(stat(page, "uptime"), "1h 2m")
                self.assertEqual(stat(page, "requests_per_second"), "3.40")
                self.assertEqual(figure(page, "latency_p50"), "12 ms")
                self.assertEqual(figure(page, "latency_p95"), "45 ms")
                self.assertEqual(figure(page, "latency_p99"), "1.25 s")
                self.assertEqual(figure(page, "error_rate"), "0.25 %")
                self.assertEqual(page.get_attribute('[data-stat="error_rate"]', "class"), "v warn")
                self.assertEqual(stat(page, "in_flight"), "2")
                self.assertEqual(stat(page, "open_websockets"), "3")
                self.assertEqual(stat(page, "open_streams"), "1")
                self.assertEqual(figure(page, "bytes_in"), "1.2 MiB")
                self.assertEqual(figure(page, "bytes_out"), "3.0 GiB")
                self.assertEqual(stat(page, "requests"), "12,345")
                self.assertEqual(stat(page, "errors"), "31")
                self.assertFalse(page.is_visible("#last-error"))

                # The chart: 300 seconds of history, requests and errors.
                line = page.get_attribute('[data-path="requests_line"]', "d")
                self.assertEqual(line.count("L") + 1, 300)
                self.assertEqual(page.text_content('[data-chart="scale"]'), "10")
                errors_line = page.get_attribute('[data-path="errors_line"]', "d")
                self.assertNotEqual(set(re.findall(r" ([\d.]+)", errors_line)), {"100"})
                alt = page.text_content("#chart-alt")
                self.assertIn("peak 6 per second", alt)
                self.assertEqual(
                    page.get_by_role("img", name=alt).count(), 1, "the chart's text alternative"
                )

                # Recent requests from hello, newest first.
                self.assertEqual(
                    recent_paths(page), ["/file=missing.png", "/gradio_api/queue/join", "/"]
                )

                # New ones arrive on top; a hostile path is shown as text.
                hostile = '/x?<img src=x onerror="window.__xss=1">&q=</td><script>window.__xss=2</script>'
                self.call(self.feed.finish, "GET", "/dash-probe-1", 200, 3.2)
                self.call(self.feed.finish, "POST", hostile, None, 30012.0)
                took = wait_until(lambda: recent_paths(page)[:1] == [hostile], 2.5)
                self.assertIsNotNone(took, recent_paths(page))
                self.assertEqual(recent_paths(page)[:2], [hostile, "/dash-probe-1"])
                top = page.eval_on_selector_all(
                    "#recent-rows tr:first-child td", "tds => tds.map(td => td.textContent)")
                self.assertEqual(top[1:], ["POST", hostile, "\u2014no status (aborted)", "30.0 s"])
                self.assertEqual(page.eval_on_selector_all("#recent-rows img, #recent-rows script",
                                                           "e => e.length"), 0)
                self.assertIsNone(page.evaluate("() => window.__xss"))

                # Only the newest 20 are kept.
                for i in range(25):
                    self.call(self.feed.finish, "GET", "/burst/%d" % i, 200, 1.0)
                self.assertIsNotNone(
                    wait_until(lambda: recent_paths(page)[:1] == ["/burst/24"], 2.5))
                self.assertEqual(recent_paths(page), ["/burst/%d" % i for i in range(24, 4, -1)])

                # Each stats message appends its point to the chart.
                self.feed.point_requests = 77
                self.assertIsNotNone(wait_until(
                    lambda: page.text_content('[data-chart="scale"]') == "100", 2.5))
                self.assertIn("peak 77 per second", page.text_content("#chart-alt"))

                # Figures follow the messages; the backend's last error shows.
                self.feed.figures.update(
                    requests=20000, errors=900, error_rate=0.2, requests_per_second=123.4,
                    latency_ms={"p50": None, "p95": None, "p99": None},
                    backend_status={"reachable": False, "last_error": "connection refused <b>",
                                    "last_error_at": time.time()},
                )
                self.assertIsNotNone(wait_until(lambda: stat(page, "requests") == "20,000", 2.5))
                self.assertEqual(stat(page, "requests_per_second"), "123")
                self.assertEqual(figure(page, "latency_p95"), "\u2014")
                self.assertEqual(figure(page, "error_rate"), "20 %")
                self.assertEqual(page.get_attribute('[data-stat="error_rate"]', "class"), "v bad")
                self.assertEqual(stat(page, "reachable"), "unreachable")
                self.assertTrue(page.is_visible("#last-error"))
                self.assertEqual(stat(page, "last_error"), "connection refused <b>")

                self.assertEqual(problems(page), [])
                self.assertEqual({u for u in page.requests_seen if not u.startswith(self.stub.url)},
                                 set())
                self.assertEqual(self.feed.received, [], "the page sends nothing")
                page.screenshot(path=artifact("dashboard-stub.png"), full_page=True)

        return deferToThread(scenario)

    def test_first_paint_is_the_live_paint(self):
        """
        The page rendered from a hello message (no JavaScript) shows exactly
        what the script paints from that same message: the Python formatters
        and chart and their twins in the script agree.
        """
        hello = self.feed.hello()
        hello["recent"] = hello["recent"] + [
            {"time": self.feed.end, "method": "GET", "route": "backend", "path": "/a<b>&c",
             "status": None, "ms": 0.42}
        ]
        hello["latency_ms"]["p99"] = 15000.0
        self.feed.hello_override = self.stub.first_paint = hello
        self.feed.interval = 3600  # hello only

        def scenario():
            with chromium() as browser:
                options = dict(timezone_id="UTC", viewport={"width": 1100, "height": 800})
                static = open_page(browser, self.stub.url + DASHBOARD, java_script_enabled=False,
                                   watch=False, **options)
                first = stats_of(static)
                self.assertTrue(static.is_visible("noscript p, .note"))
                live = self.live_page(browser, **options)
                painted = stats_of(live)
                self.assertEqual(first.pop("connection"), "figures as of page load")
                self.assertEqual(painted.pop("connection"), "live")
                self.assertEqual(painted, first)
                self.assertEqual(first["latency_p99"] + first["unit:latency_p99"], "15.0s")
                self.assertEqual(len(first["routes"]), 2)
                self.assertIn("back in 43s", first["routes"][1])
                self.assertEqual(first["upstreams"][2].split(" | ")[:2],
                                 ["Last error: the upstream refused the connection",
                                  "ups-st s-ejected"])
                self.assertEqual(
                    first["rows"][0],
                    time.strftime("%H:%M:%S", time.gmtime(self.feed.end))
                    + " | GET | /a<b>&c | \u2014no status (aborted) | 0.42 ms",
                )
                self.assertEqual(problems(live), [])

        return deferToThread(scenario)

    def test_recent_requests_without_paths(self):
        """
        The public page by default: no path column, each request's route in
        its place. The table reads as one on a desktop and on a phone, and
        the server's first paint and the script's agree.
        """
        self.stub.show_paths = False
        self.feed.hello_recent = [
            {k: v for k, v in entry.items() if k != "path"} for entry in self.feed.hello_recent
        ]
        self.stub.first_paint = self.feed.hello()

        def no_path(method, status, ms):
            self.feed.queued.append({"time": time.time(), "method": method, "route": "backend",
                                     "status": status, "ms": ms})

        def scenario():
            with chromium() as browser:
                options = dict(timezone_id="UTC")
                static = open_page(browser, self.stub.url + DASHBOARD, java_script_enabled=False,
                                   watch=False, **options)
                first = stats_of(static)
                page = self.live_page(browser, **options)
                painted = stats_of(page)
                first.pop("connection")
                painted.pop("connection")
                # Two messages: the same "back in 43s", but a second or so apart.
                first.pop("upstreams")
                painted.pop("upstreams")
                self.assertEqual(painted, first)
                self.assertEqual(
                    page.get_by_role("table", name=RECENT_TABLE).get_by_role("columnheader")
                    .all_text_contents(),
                    ["Time", "Method", "Route", "Status", "Duration"])
                self.assertEqual([row.split(" | ")[1:] for row in painted["rows"]], [
                    ["GET", "backend", "404", "2.3 ms"],
                    ["POST", "backend", "200", "31 ms"],
                    ["GET", "backend", "200", "8.5 ms"],
                ])
                self.assertEqual(page.eval_on_selector_all(".c-path", "e => e.length"), 0)
                self.assertEqual(page.text_content(".area-recent .hint"),
                                 "newest first, the last 20; paths are not shown")

                # New requests arrive on top, as before.
                self.call(no_path, "GET", 200, 3.2)
                self.call(no_path, "POST", None, 30012.0)
                took = wait_until(lambda: stats_of(page)["rows"][0].split(" | ")[1:] == [
                    "POST", "backend", "\u2014no status (aborted)", "30.0 s"], 2.5)
                self.assertIsNotNone(took, stats_of(page)["rows"])
                self.assertEqual(stats_of(page)["rows"][1].split(" | ")[1:],
                                 ["GET", "backend", "200", "3.2 ms"])
                # The table fills its panel, its cells on one line each.
                fit = page.evaluate(
                    "() => { const t = document.querySelector('.area-recent table');"
                    " const rows = Array.from(t.querySelectorAll('tbody tr'), r => r.offsetHeight);"
                    " return [t.offsetWidth, t.parentElement.clientWidth, Math.max(...rows),"
                    " Math.min(...rows)]; }")
                self.assertEqual(fit[0], fit[1], fit)
                self.assertLessEqual(fit[2] - fit[3], 2, fit)
                time.sleep(1.8)  # let the new rows' highlight fade
                page.screenshot(path=artifact("dashboard-stub-no-paths.png"), full_page=True)
                assert_readable_in_both_schemes(self, page, "dashboard-stub-no-paths-light.png")
                page.set_viewport_size({"width": 360, "height": 740})
                self.assertLessEqual(page.evaluate("() => document.documentElement.scrollWidth"), 360)
                page.screenshot(path=artifact("dashboard-stub-no-paths-360.png"), full_page=True)
                self.assertEqual(problems(page), [])

        return deferToThread(scenario)

    def test_routes_table(self):
        """
        A row per route: its figures, and each upstream's health in words
        and colour; rows and upstreams are updated in place each second (a
        countdown for an ejected one), routes come and go, names are text.
        Readable in both schemes; on a phone each route is a block of its own.
        """
        desktop, phone = self.mktemp() + "-desktop.png", self.mktemp() + "-360.png"

        def scenario():
            with chromium() as browser:
                page = self.live_page(browser)
                self.assertEqual(route_rows(page), [
                    "api0 of 1 up | 0.35 | 180 ms | 0%0 total | 0"
                    " | downuser-api.hf.spaceSpace stage SLEEPING",
                    "chat1 of 2 up | 3.05 | 45 ms | 0.25%31 total | 2"
                    " | upuser-chat-a.hf.spaceSpace stage RUNNING"
                    "ejecteduser-chat-b.hf.spaceback in 43sthe upstream refused the connection",
                ])
                table = page.get_by_role("table", name=ROUTES_TABLE)
                self.assertEqual(table.get_by_role("columnheader").all_text_contents(),
                                 ["Route", "Req/s", "p95", "Errors", "In flight", "Upstreams"])
                self.assertEqual(table.get_by_role("rowheader").all_text_contents(),
                                 ["api0 of 1 up", "chat1 of 2 up"])
                self.assertEqual(upstream_items(page, "chat"), [
                    ["ups-st s-up", "up", "user-chat-a.hf.space", "",
                     "user-chat-a.hf.spaceSpace stage RUNNING"],
                    ["ups-st s-ejected", "ejected", "user-chat-b.hf.space",
                     "Last error: the upstream refused the connection",
                     "user-chat-b.hf.spaceback in 43sthe upstream refused the connection"],
                ])
                # The pills differ in colour as well as in words.
                colours = page.eval_on_selector_all(
                    "#route-rows .ups-st", "es => es.map(e => getComputedStyle(e).color)")
                self.assertEqual(len(set(colours)), 3, colours)
                time.sleep(1.8)
                page.screenshot(path=desktop, full_page=True)
                assert_readable_in_both_schemes(self, page, "dashboard-routes-light.png")

                # Updated in place: the same row and item, a countdown that runs.
                page.evaluate("() => { const tr = document.querySelector('tr[data-route=\"chat\"]');"
                              " tr.__kept = 1; tr.querySelectorAll('li')[1].__kept = 1; }")
                kept = ("() => { const tr = document.querySelector('tr[data-route=\"chat\"]');"
                        " return [tr.__kept, tr.querySelectorAll('li')[1].__kept]; }")
                chat = base_routes()[1]
                chat["upstreams"][1]["ejected_until"] = time.time() + 4.5
                chat["requests_per_second"] = 99.0
                self.feed.ejected_for = None
                self.feed.figures["routes"] = [base_routes()[0], chat]
                took = wait_until(lambda: route_row(page, "chat")[1] == "99.0", 2.5)
                self.assertIsNotNone(took, route_rows(page))
                first = upstream_items(page, "chat")[1][4]
                self.assertRegex(first, r"back in [345]s")
                self.assertIsNotNone(wait_until(
                    lambda: upstream_items(page, "chat")[1][4] != first, 2.5), first)
                self.assertEqual(page.evaluate(kept), [1, 1])
                self.assertIsNotNone(wait_until(
                    lambda: "back any moment" in upstream_items(page, "chat")[1][4], 6))

                # Back up: its pill and the count say so, in the same item.
                chat = base_routes()[1]
                chat["upstreams"][1].update(state="up", ejected_until=None)
                self.feed.figures["routes"] = [base_routes()[0], chat]
                took = wait_until(lambda: route_row(page, "chat")[0] == "chat2 of 2 up", 2.5)
                self.assertIsNotNone(took, route_rows(page))
                self.assertEqual(upstream_items(page, "chat")[1][:2], ["ups-st s-up", "up"])
                self.assertEqual(page.evaluate(kept), [1, 1])

                # Routes come and go; their names are text, never markup.
                hostile = '<img src=x onerror="window.__xss=1">'
                self.feed.figures["routes"] = [chat, dict(base_routes()[0], name=hostile)]
                took = wait_until(lambda: [r[0] for r in map(lambda n: route_row(page, n) or [None],
                                                             ("chat", hostile))]
                                  == ["chat2 of 2 up", hostile + "0 of 1 up"], 2.5)
                self.assertIsNotNone(took, route_rows(page))
                self.assertIsNone(route_row(page, "api"))
                self.assertEqual(page.eval_on_selector_all("#route-rows img", "e => e.length"), 0)
                self.assertIsNone(page.evaluate("() => window.__xss"))
                self.feed.figures["routes"] = []
                self.assertIsNotNone(
                    wait_until(lambda: route_rows(page) == ["No routes yet."], 2.5))
                self.feed.figures["routes"] = base_routes()
                self.feed.ejected_for = 42.5
                self.assertIsNotNone(wait_until(lambda: len(route_rows(page)) == 2, 2.5))

                # A 360 px phone: each route a block, its four figures labelled, nothing wider.
                page.set_viewport_size({"width": 360, "height": 740})
                self.assertLessEqual(page.evaluate("() => document.documentElement.scrollWidth"), 360)
                self.assertEqual(page.eval_on_selector_all(
                    "#route-rows td.r-num",
                    "tds => tds.map(td => getComputedStyle(td, '::before').content)"),
                    ['"Req/s" / ""', '"p95" / ""', '"Errors" / ""', '"In flight" / ""'] * 2)
                lefts = page.eval_on_selector_all(
                    "tr[data-route=\"chat\"] td.r-num",
                    "tds => tds.map(td => Math.round(td.getBoundingClientRect().top))")
                self.assertEqual(len(set(lefts)), 1, "the figures side by side: %r" % lefts)
                self.assertEqual(table.get_by_role("rowheader").count(), 2, "still a table")
                sizes = page.eval_on_selector_all(
                    ".area-routes *", "els => els.filter(e => e.getClientRects().length"
                    " && !e.closest('.sr-only')).map(e => parseFloat(getComputedStyle(e).fontSize))")
                self.assertGreaterEqual(min(sizes), 11.0)
                time.sleep(1.8)
                page.screenshot(path=phone, full_page=True)
                self.assertEqual(problems(page), [])

        return deferToThread(scenario)

    def test_reconnects_at_once_when_the_feed_drops_it(self):
        """
        The gateway drops a dashboard whose connection stays full (it aborts
        it): the page, which was live, comes back by itself within a
        second, from a new hello.
        """

        def drop_every_watcher():
            for watcher in list(self.feed.watchers):
                watcher.transport.transport.abortConnection()

        def scenario():
            with chromium() as browser:
                page = self.live_page(browser)
                self.assertEqual(len(self.feed.connects), 1)
                self.feed.figures["requests"] = 54321  # what the next hello says
                self.call(drop_every_watcher)
                took = wait_until(lambda: len(self.feed.connects) == 2, 2)
                self.assertIsNotNone(took, "the page did not come back within 2 s")
                self.assertLess(took, 1.0)
                self.assertIsNotNone(wait_until(lambda: conn_state(page) == "live", 1))
                self.assertEqual(stat(page, "requests"), "54,321")
                self.assertEqual(problems(page), [])

        return deferToThread(scenario)

    def test_first_paint_from_snapshot_only(self):
        def scenario():
            with chromium() as browser:
                page = open_page(browser, self.stub.url + "/", java_script_enabled=False, watch=False)
                shown = stats_of(page)
                self.assertEqual(shown["requests"], "12,000")
                self.assertEqual(shown["errors"], "30")
                self.assertEqual(shown["in_flight"], "1")
                self.assertEqual(shown["uptime"], "1h 2m")
                self.assertEqual(shown["requests_per_second"], "\u2014")
                self.assertEqual(shown["latency_p95"], "\u2014")
                self.assertEqual(shown["reachable"], "not checked yet")
                self.assertEqual(shown["rows"], ["Recent requests appear here as they finish."])

        return deferToThread(scenario)

    def test_reconnects_and_repaints_from_the_next_hello(self):
        def scenario():
            with chromium() as browser:
                page = self.live_page(browser, path="/")
                self.assertEqual(stat(page, "requests"), "12,345")
                self.call(self.stub.stop)
                self.assertIsNotNone(wait_until(lambda: stat(page, "status") == "reconnecting\u2026", 2))
                self.assertEqual(conn_state(page), "down")
                self.assertIn("offline since", stat(page, "connection"))
                self.assertEqual(page.text_content("#summary"),
                                 "Connection to the gateway lost; reconnecting.")
                # Stale figures look stale, and stay readable.
                muted = page.eval_on_selector(".facts dt", "e => getComputedStyle(e).color")
                self.assertEqual(
                    page.eval_on_selector('[data-stat="requests"]', "e => getComputedStyle(e).color"),
                    muted)
                # The routes' health too: no colour says "up" or "down" from old news.
                self.assertEqual(set(page.eval_on_selector_all(
                    "#route-rows :is(.ups-st, .r-sub, .ups-when, td)",
                    "es => es.map(e => getComputedStyle(e).color)")), {muted})
                low = [c for c in page.evaluate(CONTRAST, TEXT_SELECTORS) if c[2] < 4.5]
                self.assertEqual(low, [], "text below 4.5:1 while reconnecting")
                page.screenshot(path=artifact("dashboard-stub-reconnecting.png"))
                time.sleep(1.5)
                # A new "process": other figures, other history, no recent requests yet.
                self.feed.figures.update(requests=7, errors=0, uptime_seconds=2.0, status="draining")
                self.feed.history = [{"t": self.feed.end, "requests": 1, "errors": 0}]
                self.feed.hello_recent = []
                self.call(self.stub.start)
                took = wait_until(lambda: conn_state(page) == "live", 6)
                self.assertIsNotNone(took, "did not reconnect within 6 s")
                self.assertEqual(stat(page, "status"), "draining")
                self.assertEqual(stat(page, "requests"), "7")
                self.assertEqual(stat(page, "uptime"), "2s")
                self.assertEqual(page.text_content('[data-chart="scale"]'), "1")
                self.assertEqual(stats_of(page)["rows"], ["No requests yet."])
                self.feed.figures["status"] = "ok"
                self.assertIsNotNone(wait_until(lambda: stat(page, "status") == "ok", 2.5))
                self.assertEqual(problems(page), [])

        return deferToThread(scenario)

    def test_backoff_doubles_up_to_five_seconds(self):
        tries = []
        opened = []

        def scenario():
            with chromium() as browser:
                page = self.live_page(browser)
                self.stub.refusing = tries
                self.call(self.stub.stop)
                self.call(self.stub.start)
                self.assertIsNotNone(wait_until(lambda: conn_state(page) == "down", 2))
                time.sleep(16)
                opened.extend(page.evaluate("() => window.__sockets"))
                self.stub.refusing = None
                took = wait_until(lambda: conn_state(page) == "live", 6)
                self.assertIsNotNone(took, "did not reconnect within 6 s of the feed's return")
                self.assertEqual(stat(page, "status"), "ok")

        def check(_):
            # The page's own attempts after the drop (the first one opened it):
            # 250 ms, then 0.5, 1, 2, 4, 5, 5... s apart, each +-20%, never over 5 s.
            gaps = [(b - a) / 1000.0 for a, b in zip(opened[1:], opened[2:])]
            self.assertGreaterEqual(len(gaps), 5, gaps)
            for k, gap in enumerate(gaps):
                expected = min(5.0, 0.5 * 2 ** k)
                self.assertTrue(0.75 * expected <= gap <= min(5.0, 1.25 * expected) + 0.5,
                                (k, gap, gaps))
            self.assertGreater(max(gaps), 3.0, gaps)
            # And the server saw each of them.
            self.assertIn(len(tries), (len(opened) - 1, len(opened)), (tries, opened))

        return deferToThread(scenario).addCallback(check)

    def test_accessible_and_readable(self):
        def scenario():
            with chromium() as browser:
                page = self.live_page(browser)
                for role in ("banner", "main", "contentinfo"):
                    self.assertEqual(page.get_by_role(role).count(), 1, role)
                self.assertEqual(page.get_by_role("heading", level=1).all_text_contents(),
                                 ["WigHaven Gateway"])
                self.assertEqual(
                    page.get_by_role("heading", level=2).all_text_contents(),
                    ["Figures", "Routes", "Traffic", "Backend", "Connections and totals",
                     "Recent requests"],
                )
                for name in ("Figures", "Routes", "Traffic", "Backend", "Recent requests"):
                    self.assertEqual(page.get_by_role("region", name=name).count(), 1, name)
                table = page.get_by_role("table", name=RECENT_TABLE)
                self.assertEqual(table.get_by_role("columnheader").all_text_contents(),
                                 ["Time", "Method", "Path", "Status", "Duration"])
                # One polite live region, a summary; the figures themselves are not live.
                live = page.eval_on_selector_all(
                    "[aria-live]", "els => els.map(e => [e.id, e.getAttribute('aria-live')])")
                self.assertEqual(live, [["summary", "polite"]])
                self.assertIn("3.40 requests per second", page.text_content("#summary"))
                self.feed.figures["requests_per_second"] = 9.9  # the figures move meanwhile
                changes = page.evaluate(
                    """() => new Promise(done => {
                        let n = 0;
                        new MutationObserver(() => n++).observe(document.getElementById("summary"),
                          { childList: true, characterData: true, subtree: true });
                        setTimeout(() => done(n), 4500);
                    })"""
                )
                self.assertEqual(stat(page, "requests_per_second"), "9.90")
                self.assertEqual(changes, 0, "the summary must not speak every second")
                self.assertIn("3.40 requests per second", page.text_content("#summary"))
                self.assertEqual(page.get_by_role("img", name=page.text_content("#chart-alt")).count(), 1)

                # Keyboard: the skip link leads to the recent requests.
                page.keyboard.press("Tab")
                self.assertEqual(page.evaluate("() => document.activeElement.textContent"),
                                 "Skip to recent requests")
                page.keyboard.press("Enter")
                self.assertEqual(page.evaluate("() => document.activeElement.id"), "recent-h")

                assert_readable_in_both_schemes(self, page, "dashboard-light.png")

                # Motion only when the reader allows it.
                dot = ".pill .dot"
                self.assertEqual(page.eval_on_selector(dot, "e => getComputedStyle(e).animationName"),
                                 "pulse")
                page.emulate_media(reduced_motion="reduce")
                self.assertEqual(page.eval_on_selector(dot, "e => getComputedStyle(e).animationName"),
                                 "none")

                # A 360 px phone: nothing wider than the screen, figures two by two.
                page.set_viewport_size({"width": 360, "height": 740})
                self.assertLessEqual(page.evaluate("() => document.documentElement.scrollWidth"), 360)
                lefts = page.eval_on_selector_all(
                    ".card", "cs => cs.map(c => Math.round(c.getBoundingClientRect().left))")
                self.assertEqual(len(set(lefts)), 2, lefts)
                sizes = page.eval_on_selector_all(
                    "body *", "els => els.filter(e => e.getClientRects().length && !e.closest('.sr-only'))"
                    ".map(e => parseFloat(getComputedStyle(e).fontSize))")
                self.assertGreaterEqual(min(sizes), 11.0)
                page.screenshot(path=artifact("dashboard-stub-360.png"), full_page=True)
                self.assertEqual(problems(page), [])

        return deferToThread(scenario)


# -- the real gateway ------------------------------------------------------------------


class RealGatewayTests(unittest.TestCase):
    """
    The dashboard of a real `twistd -n wighaven` process (DASHBOARD_PATH
    moved to /_gateway/) in front of the test backend: requests sent through
    the gateway show up live, and the page reconnects by itself when the
    gateway restarts on the same port.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, self.origin = yield start_backend(self)
        self.log_dir = tempfile.mkdtemp(prefix="wighaven-dash-")
        self.addCleanup(shutil.rmtree, self.log_dir, True)
        self.gateway = self.start_gateway()
        self.addCleanup(lambda: self.gateway.stop())
        yield deferToThread(self.gateway.wait_ready)

    # Paths shown whole (query strings too): the probes are told apart by them.
    SETTINGS = dict(DASHBOARD_PATH=DASHBOARD, DASHBOARD_SHOW_PATHS="true", LOG_REDACT_QUERY="false")

    def start_gateway(self, port=None):
        log = os.path.join(self.log_dir, "gateway-%d.log" % len(os.listdir(self.log_dir)))
        if port is None:
            return GatewayProcess(self.origin, log, **self.SETTINGS)
        with mock.patch.object(gateway_support, "free_port", lambda: port):
            return GatewayProcess(self.origin, log, **self.SETTINGS)

    def get(self, path):
        with urllib.request.urlopen(self.gateway.url + path, timeout=10) as response:
            response.read()
            return response.status, response.headers

    def test_live_dashboard_of_the_gateway(self):
        def scenario():
            status, headers = self.get(DASHBOARD)
            self.assertEqual(status, 200)
            self.assertIn("connect-src 'self'", headers["Content-Security-Policy"])
            self.assertIn("default-src 'none'", headers["Content-Security-Policy"])
            with chromium() as browser:
                frames = []
                page = open_page(browser, self.gateway.url + DASHBOARD,
                                 on_websocket=lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
                took = wait_until(lambda: conn_state(page) == "live", 5)
                self.assertIsNotNone(took, "the page never went live: " + self.gateway.output())
                self.assertEqual(stat(page, "status"), "ok")
                self.assertEqual(stat(page, "backend"), self.origin.split("://", 1)[1])
                before = int(stat(page, "requests").replace(",", ""))

                probes = ["/echo/dash-probe-%d?n=%d" % (i, i) for i in (1, 2, 3)]
                for probe in probes:
                    self.assertEqual(self.get(probe)[0], 200)
                sent = time.monotonic()
                took = wait_until(lambda: set(probes) <= set(recent_paths(page)), 2.0)
                self.assertIsNotNone(
                    took, "probes not listed within 2 s of sending: %r" % recent_paths(page))
                self.assertLess(time.monotonic() - sent, 2.5)
                shown = recent_paths(page)
                self.assertEqual([p for p in shown if p in probes], probes[::-1], "newest first")
                rows = page.eval_on_selector_all(
                    "#recent-rows tr", "trs => trs.map(tr => Array.from(tr.cells, c => c.textContent))")
                for row in rows:
                    if row[2] in probes:
                        self.assertEqual(row[1], "GET")
                        self.assertEqual(row[3], "200")
                        self.assertRegex(row[4], r"^[\d.,]+ (ms|s)$")
                self.assertIsNotNone(
                    wait_until(lambda: int(stat(page, "requests").replace(",", "")) >= before + 3, 2),
                    stat(page, "requests"),
                )
                self.assertIsNotNone(wait_until(
                    lambda: stat(page, "requests_per_second") not in ("0", "\u2014")
                    and stat(page, "latency_p95") != "\u2014", 2.5),
                    (stat(page, "requests_per_second"), stat(page, "latency_p95")))
                # The chart counts complete seconds: the probes' second shows once it is over.
                self.assertIsNotNone(
                    wait_until(lambda: "3 requests" in page.text_content("#chart-alt"), 2.5),
                    page.text_content("#chart-alt"))

                # A little more traffic, of every kind, for the pictures.
                for target in ("/status/404", "/status/503", "/gzip", "/cookies",
                               "/sse?n=2&every=0.05", "/big?size=300000"):
                    try:
                        self.get(target)
                    except urllib.error.HTTPError:
                        pass
                self.assertIsNotNone(
                    wait_until(lambda: "/big?size=300000" in recent_paths(page), 2.5))
                time.sleep(1.8)  # let the new rows' highlight fade
                page.screenshot(path=artifact("dashboard-live.png"), full_page=True)
                page.emulate_media(color_scheme="light")
                page.screenshot(path=artifact("dashboard-live-light.png"), full_page=True)
                page.emulate_media(color_scheme="dark")
                page.set_viewport_size({"width": 390, "height": 844})
                self.assertLessEqual(page.evaluate("() => document.documentElement.scrollWidth"), 390)
                page.screenshot(path=artifact("dashboard-phone.png"), full_page=True)
                page.set_viewport_size({"width": 1100, "height": 800})

                # The feed kept its side of the contract, and never carried the token.
                self.assertNotIn(TOKEN, page.content())
                self.assertTrue(frames, "no frame seen")
                messages = [json.loads(f) for f in frames]
                self.assertEqual(messages[0]["type"], "hello")
                self.assertEqual({m["type"] for m in messages[1:]}, {"stats"})
                for m in messages:
                    self.assertNotIn(TOKEN, json.dumps(m))
                    self.assertLessEqual(FEED_KEYS, set(m), m["type"])
                    self.assertEqual(set(m["latency_ms"]), {"p50", "p95", "p99"})
                    self.assertEqual(set(m["backend_status"]),
                                     {"reachable", "last_error", "last_error_at"})
                    for entry in m["recent"]:
                        self.assertEqual(set(entry),
                                         {"time", "method", "route", "path", "status", "ms"})
                self.assertEqual(len(messages[0]["history"]), 300)
                self.assertEqual(set(messages[0]["history"][0]), {"t", "requests", "errors"})
                self.assertTrue(all(set(m["point"]) == {"t", "requests", "errors"}
                                    for m in messages[1:]))

                # The gateway restarts on the same port: the page comes back by itself.
                port = self.gateway.port
                self.gateway.stop()
                self.assertIsNotNone(
                    wait_until(lambda: stat(page, "status") == "reconnecting\u2026", 3),
                    stat(page, "status"))
                self.assertEqual(conn_state(page), "down")
                page.screenshot(path=artifact("dashboard-reconnecting.png"))
                self.gateway = self.start_gateway(port)
                self.gateway.wait_ready()
                took = wait_until(
                    lambda: conn_state(page) == "live" and stat(page, "status") == "ok", 6)
                self.assertIsNotNone(took, "no reconnection within 6 s: " + self.gateway.output())
                # Repainted from the new process's hello: its own counters.
                self.assertLess(int(stat(page, "requests").replace(",", "")), before + 3)
                self.assertEqual(problems(page), [])
                self.assertEqual(
                    {u for u in page.requests_seen if not u.startswith(self.gateway.url)}, set())

        return deferToThread(scenario)


ROUTES_TOML = """
[[routes]]
name = "chat"
path = "/chat"
retries = 1

[[routes.upstreams]]
url = "%s"

[[routes.upstreams]]
url = "%s"

[[routes]]
name = "api"
path = "/api"

[[routes.upstreams]]
url = "%s"
"""


class RealGatewayRoutesTests(unittest.TestCase):
    """
    The dashboard of a gateway (in this process) started from a config
    file of two routes in front of test backends: chat with two replicas,
    one of which listens nowhere, and api. Each route has its row, from the
    first paint on; requests to one move its figures only; the replica that
    refuses is ejected, live, with its countdown and its last error.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        _, _, chat = yield start_backend(self)
        _, _, api = yield start_backend(self)
        self.dead = "localhost:%d" % gateway_support.free_port()
        self.chat_label, self.api_label = chat.split("://")[1], api.split("://")[1]
        config = self.mktemp() + ".toml"
        with open(config, "w") as f:
            f.write(ROUTES_TOML % (chat, "https://" + self.dead, api))
        _, port = yield gateway_support.start_gateway(
            self, chat, PRIVATE_BACKEND_URL=None, WIGHAVEN_CONFIG=config,
            DASHBOARD_PATH=DASHBOARD)
        self.url = "http://127.0.0.1:%d" % port

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as e:
            e.read()
            return e.code

    def test_a_row_per_route_live(self):
        desktop, phone = self.mktemp() + "-desktop.png", self.mktemp() + "-360.png"

        def scenario():
            with urllib.request.urlopen(self.url + DASHBOARD, timeout=10) as response:
                first_paint = response.read().decode("utf-8")
            for name, label in (("api", self.api_label), ("chat", self.chat_label),
                                ("chat", self.dead)):
                self.assertIn('<tr data-route="%s">' % name, first_paint)
                self.assertIn('<code class="ups-label">%s</code>' % label, first_paint)

            with chromium() as browser:
                frames = []
                page = open_page(browser, self.url + DASHBOARD,
                                 on_websocket=lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
                self.assertIsNotNone(wait_until(lambda: conn_state(page) == "live", 5))
                self.assertEqual([row.split(" | ")[:2] for row in route_rows(page)],
                                 [["api1 of 1 up", "0"], ["chat2 of 2 up", "0"]])
                self.assertEqual([u[:3] for u in upstream_items(page, "chat")], [
                    ["ups-st s-up", "up", self.chat_label], ["ups-st s-up", "up", self.dead]])

                # Traffic to api moves api's row, not chat's.
                for i in range(20):
                    self.assertEqual(self.get("/api/echo/%d" % i), 200)
                took = wait_until(lambda: route_row(page, "api")[1] == "2.00", 2.5)
                self.assertIsNotNone(took, route_rows(page))
                api = route_row(page, "api")
                self.assertRegex(api[2], r"^[\d.]+ ms$")
                self.assertEqual(api[3], "0%0 total")
                self.assertEqual(route_row(page, "chat")[1:4], ["0", "\u2014", "0%0 total"])

                # Traffic to chat: its dead replica fails and is ejected.
                statuses = [self.get("/chat/echo/%d" % i) for i in range(10)]
                self.assertIn(200, statuses)
                took = wait_until(lambda: upstream_items(page, "chat")[1][0] == "ups-st s-ejected", 2.5)
                self.assertIsNotNone(took, upstream_items(page, "chat"))
                chat = route_row(page, "chat")
                self.assertEqual(chat[0], "chat1 of 2 up")
                self.assertNotEqual(chat[1], "0")
                dead = upstream_items(page, "chat")[1]
                self.assertEqual(dead[1:3], ["ejected", self.dead])
                self.assertRegex(dead[4], "^" + re.escape(self.dead) + r"back in \d+s")
                self.assertTrue(dead[3].startswith("Last error: "), dead)
                self.assertIsNotNone(wait_until(
                    lambda: upstream_items(page, "chat")[1][4] != dead[4], 2.5), "no countdown")
                self.assertEqual(upstream_items(page, "chat")[0][:2], ["ups-st s-up", "up"])

                time.sleep(1.8)  # let the new rows' highlight fade
                page.screenshot(path=desktop, full_page=True)
                page.set_viewport_size({"width": 360, "height": 740})
                self.assertLessEqual(page.evaluate("() => document.documentElement.scrollWidth"), 360)
                page.screenshot(path=phone, full_page=True)
                self.assertEqual(problems(page), [])

            messages = [json.loads(f) for f in frames]
            self.assertEqual(messages[0]["type"], "hello")
            for m in messages:
                self.assertEqual([r["name"] for r in m["routes"]], ["api", "chat"])
                for route in m["routes"]:
                    self.assertEqual(set(route), ROUTE_KEYS)
                    for upstream in route["upstreams"]:
                        self.assertEqual(set(upstream), UPSTREAM_KEYS)
            ejected = [u for m in messages for u in m["routes"][1]["upstreams"]
                       if u["state"] == "ejected"]
            self.assertTrue(ejected)
            self.assertEqual({u["label"] for u in ejected}, {self.dead})
            self.assertTrue(all(isinstance(u["ejected_until"], float) for u in ejected))

        return deferToThread(scenario)


class RealGatewayDefaultsTests(unittest.TestCase):
    """
    The dashboard of a real `twistd -n wighaven` with the default settings:
    other visitors' paths and query strings appear nowhere, neither in the
    page nor in what the feed sends it.
    """

    timeout = 120
    SECRETS = ("/login/callback?code=SECRET", "/gradio_api/file=/tmp/secret.png")

    @defer.inlineCallbacks
    def setUp(self):
        _, _, origin = yield start_backend(self)
        log_dir = tempfile.mkdtemp(prefix="wighaven-dash-defaults-")
        self.addCleanup(shutil.rmtree, log_dir, True)
        self.gateway = GatewayProcess(origin, os.path.join(log_dir, "gateway.log"),
                                      DASHBOARD_PATH=DASHBOARD)
        self.addCleanup(self.gateway.stop)
        yield deferToThread(self.gateway.wait_ready)

    def get(self, path):
        with urllib.request.urlopen(self.gateway.url + path, timeout=10) as response:
            return response.read()

    def test_no_path_and_no_query_of_anyone(self):
        def scenario():
            for target in self.SECRETS:
                self.get(target)
            with chromium() as browser:
                frames = []
                page = open_page(browser, self.gateway.url + DASHBOARD,
                                 on_websocket=lambda ws: ws.on("framereceived", lambda f: frames.append(f)))
                self.assertIsNotNone(wait_until(lambda: conn_state(page) == "live", 5),
                                     self.gateway.output())
                for target in self.SECRETS + ("/echo/more", "/status/404"):
                    try:
                        self.get(target)
                    except urllib.error.HTTPError:
                        pass
                rows = lambda: stats_of(page)["rows"]  # noqa: E731
                self.assertIsNotNone(wait_until(lambda: len(rows()) == 6, 3), rows())
                self.assertEqual([row.split(" | ")[1:3] for row in rows()],
                                 [["GET", "backend"]] * 6)
                self.assertEqual([row.split(" | ")[3] for row in rows()],
                                 ["404", "200", "200", "200", "200", "200"])
                self.assertEqual(page.get_by_role("table", name=RECENT_TABLE).get_by_role("columnheader")
                                 .all_text_contents(),
                                 ["Time", "Method", "Route", "Status", "Duration"])
                shown = page.content() + "".join(frames) + self.get(DASHBOARD).decode()
                for part in ("SECRET", "code=", "secret.png", "file=", "callback", "/echo/more"):
                    self.assertNotIn(part, shown)
                time.sleep(1.8)  # let the new rows' highlight fade
                page.screenshot(path=artifact("dashboard-live-no-paths.png"), full_page=True)
                self.assertEqual(problems(page), [])

        return deferToThread(scenario)


def child_pids(pid):
    """The processes C{pid} started that still run (Linux /proc)."""
    pids = set()
    try:
        for task in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                pids.update(int(p) for p in f.read().split())
    except OSError:
        pass
    return pids


def running(pid):
    """Whether C{pid} is alive (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class RealGatewayWorkersTests(unittest.TestCase):
    """
    The dashboard of a real `twistd -n wighaven --workers 2` in front of the
    test backend: whichever worker serves the page, its figures are the
    whole gateway's, the other worker's requests included.
    """

    timeout = 120
    REQUESTS = 40

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, self.origin = yield start_backend(self)
        self.log_dir = tempfile.mkdtemp(prefix="wighaven-dash-workers-")
        self.addCleanup(shutil.rmtree, self.log_dir, True)
        self.workers = set()
        # Runs after the gateway's stop (cleanups run last in, first out).
        self.addCleanup(self._reap_workers)
        self.gateway = GatewayProcess(
            self.origin, os.path.join(self.log_dir, "gateway.log"), args=("--workers", "2"),
            DASHBOARD_PATH=DASHBOARD, DASHBOARD_SHOW_PATHS="true",
        )
        self.addCleanup(self.gateway.stop)
        yield deferToThread(self.gateway.wait_ready)
        yield deferToThread(self._find_workers)

    def _find_workers(self):
        took = wait_until(lambda: len(child_pids(self.gateway.proc.pid)) == 2, 10)
        self.workers |= child_pids(self.gateway.proc.pid)
        if took is None:
            raise RuntimeError("not 2 workers: %r %s" % (self.workers, self.gateway.output()))

    def _reap_workers(self):
        """No worker outlives the test: killed if still there 5 s after the parent's end."""
        leftover = [pid for pid in self.workers if running(pid)]
        if wait_until(lambda: not any(running(pid) for pid in leftover), 5) is None:
            for pid in leftover:
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            self.fail("workers still running after the gateway stopped: %r" % leftover)

    def get(self, path):
        """One request on a connection of its own (urllib closes it after)."""
        with urllib.request.urlopen(self.gateway.url + path, timeout=10) as response:
            body = response.read()
            return response.status, response.headers, body

    def test_dashboard_counts_every_workers_requests(self):
        def scenario():
            health = json.loads(self.get("/gateway-health")[2])
            self.assertEqual(health["workers"], 2, health)
            with chromium() as browser:
                page = open_page(browser, self.gateway.url + DASHBOARD)
                took = wait_until(lambda: conn_state(page) == "live", 5)
                self.assertIsNotNone(took, "the page never went live: " + self.gateway.output())
                self.assertEqual(stat(page, "status"), "ok")
                before = int(stat(page, "requests").replace(",", ""))
                self.assertEqual(before, 0, "nothing forwarded yet (health and page aren't counted)")

                # At least REQUESTS, each on a new connection, and on until both workers
                # have served some (which worker accepts a connection is the kernel's say).
                prefixes = {}
                sent_count = 0
                while sent_count < self.REQUESTS or (len(prefixes) < 2 and sent_count < 300):
                    status, headers, _ = self.get("/echo/workers-probe-%d" % sent_count)
                    self.assertEqual(status, 200)
                    request_id = headers["X-Request-ID"]
                    self.assertRegex(request_id, r"^[0-9a-f]{24}$")
                    prefixes.setdefault(request_id[:12], []).append(sent_count)
                    sent_count += 1
                self.assertEqual(len(prefixes), 2, "both workers must serve some: %r" % prefixes)
                sent = time.monotonic()

                total = lambda: int(stat(page, "requests").replace(",", ""))  # noqa: E731
                took = wait_until(lambda: total() >= before + sent_count, 5)
                self.assertIsNotNone(
                    took, "the page shows %d requests, not %d, 5 s after the last one (%r)"
                    % (total(), before + sent_count, {p: len(n) for p, n in prefixes.items()}))
                self.assertLess(time.monotonic() - sent, 5.5)
                # Counted once each: not more once both workers' reports have gone round.
                time.sleep(2.5)
                self.assertEqual(total(), before + sent_count)
                health = json.loads(self.get("/gateway-health")[2])
                self.assertEqual(health["requests"], before + sent_count, health)

                # The chart counts both workers' requests too, once their
                # reports are in (its newest point waits for them).
                expected = "%d requests" % sent_count
                took = wait_until(lambda: expected in page.text_content("#chart-alt"), 6)
                self.assertIsNotNone(took, page.text_content("#chart-alt"))
                # Recent requests: newest first, whichever worker served them.
                times = page.eval_on_selector_all(
                    "#recent-rows time", "ts => ts.map(t => Date.parse(t.getAttribute('datetime')))")
                self.assertEqual(len(times), 20)
                self.assertEqual(times, sorted(times, reverse=True))
                paths = page.eval_on_selector_all(
                    "#recent-rows td.c-path", "tds => tds.map(td => td.textContent)")
                newest = range(sent_count - 1, sent_count - 21, -1)
                self.assertEqual(paths, ["/echo/workers-probe-%d" % i for i in newest])

                self.assertEqual(problems(page), [])
                self.assertEqual(
                    {u for u in page.requests_seen if not u.startswith(self.gateway.url)}, set())
                page.screenshot(path=artifact("dashboard-workers.png"), full_page=True)

        return deferToThread(scenario)

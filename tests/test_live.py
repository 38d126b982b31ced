"""Tests for L{wighaven.observe.live}: the messages of the dashboard's live feed,
built from a route's metrics (L{LiveMessages}), what each viewer may see of
them (no paths unless show_paths), and the feed itself (L{LiveFeed}): hello
at once with the newest requests, one stats a second, a timer that runs
only while someone watches, dashboards that do not read dropped, and a cap
on watchers. Driven with task.Clock and fake watchers; over real sockets in
test_live_integration.
"""

import json
import socket

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven import __version__
from wighaven.run.cluster import PeerFigures
from wighaven.observe.live import RECENT_ON_PAGE, SEND_BUFFER, LiveFeed, LiveMessages, for_viewer
from wighaven.observe.metrics import RouteMetrics, merge_snapshots
from wighaven.observe.stats import GatewayStats

START = 1000.0
# Paths that carry other visitors' secrets: an OAuth code, a Gradio file path.
SECRET_PATHS = (b"/login/callback?code=SECRET", b"/gradio_api/file=/tmp/secret.png")
SECRET_PARTS = ("SECRET", "secret.png", "file=", "callback", "code=")
COMMON_KEYS = {
    "type", "time", "status", "version", "backend", "uptime_seconds", "requests_per_second",
    "latency_ms", "error_rate", "requests", "errors", "in_flight", "open_websockets",
    "open_streams", "bytes_in", "bytes_out", "recent", "backend_status", "routes",
}
ROUTE_KEYS = {"name", "requests_per_second", "p95_ms", "errors", "error_rate", "in_flight",
              "upstreams"}
UPSTREAM_KEYS = {"label", "state", "ejected_until", "last_error", "stage"}


def finish(route, method=b"GET", status=200, total=0.05, headers=0.01, bytes_in=0,
           bytes_out=0, failed=False, path=b"/"):
    """One whole request through C{route}, as the site counts it."""
    route.request_started()
    route.request_ended(method, status, total, headers, bytes_in, bytes_out, failed, path=path)


def uniform(n, high=1.0):
    """n latencies spread evenly over (0, high], the last exactly high."""
    return [high * i / n for i in range(1, n + 1)]


class Fixture:
    def __init__(self, start=START):
        self.clock = Clock()
        self.clock.advance(start)
        self.route = RouteMetrics("backend", self.clock)
        self.stats = GatewayStats(self.clock, self.route)
        self.messages = LiveMessages(self.stats, "user-space.hf.space", self.clock)


class LiveMessagesTests(SynchronousTestCase):

    def setUp(self):
        self.f = Fixture()

    def test_hello_when_idle(self):
        f = self.f
        f.clock.advance(2.5)
        hello = f.messages.hello()
        self.assertEqual(set(hello), COMMON_KEYS | {"history"})
        self.assertEqual(hello["type"], "hello")
        self.assertEqual(hello["time"], START + 2.5)
        self.assertEqual(hello["status"], "ok")
        self.assertEqual(hello["version"], __version__)
        self.assertEqual(hello["backend"], "user-space.hf.space")
        self.assertEqual(hello["uptime_seconds"], 2.5)
        self.assertEqual(hello["requests_per_second"], 0)
        self.assertEqual(hello["latency_ms"], {"p50": None, "p95": None, "p99": None})
        self.assertEqual(hello["error_rate"], 0)
        for key in ("requests", "errors", "in_flight", "open_websockets", "open_streams",
                    "bytes_in", "bytes_out"):
            self.assertEqual(hello[key], 0, key)
        self.assertEqual(hello["recent"], [])
        self.assertEqual(
            hello["backend_status"], {"reachable": None, "last_error": None, "last_error_at": None}
        )
        self.assertEqual(hello["routes"], [])  # nothing known of the route yet
        finish(f.route, total=0.05)
        self.assertEqual(f.messages.stats()["routes"], [{
            "name": "backend", "requests_per_second": 0.1, "p95_ms": 48.75, "errors": 0,
            "error_rate": 0, "in_flight": 0, "upstreams": [],
        }])
        json.dumps(hello)  # JSON as it is

    def test_hello_history_is_300_seconds_oldest_first(self):
        f = self.f
        finish(f.route)  # second 1000
        f.clock.advance(1)
        finish(f.route, status=503)  # second 1001, an error
        finish(f.route)
        f.clock.advance(0.5)
        hello = f.messages.hello()
        history = hello["history"]
        self.assertEqual(len(history), 300)
        self.assertEqual([e["t"] for e in history], list(range(1001 - 299, 1002)))
        self.assertEqual(history[-2], {"t": 1000, "requests": 1, "errors": 0})
        self.assertEqual(history[-1], {"t": 1001, "requests": 2, "errors": 1})
        self.assertEqual(sum(e["requests"] for e in history[:-2]), 0)
        self.assertNotIn("point", hello)

    def test_figures_from_the_route(self):
        f = self.f
        # 1000 requests with latencies uniform over (0, 1] s: exact percentiles.
        for i, seconds in enumerate(uniform(1000)):
            status = 500 if i % 10 == 0 else 200  # 100 errors
            finish(f.route, method=b"POST" if i % 2 else b"GET", status=status, total=seconds,
                   bytes_in=3, bytes_out=7)
        f.route.request_started()  # one still in flight
        f.route.websocket_opened()
        f.route.stream_opened()
        f.route.stream_opened()
        f.clock.advance(0.25)
        message = f.messages.stats()
        self.assertEqual(message["type"], "stats")
        self.assertEqual(message["requests_per_second"], 100.0)  # 1000 over 10 s
        self.assertAlmostEqual(message["latency_ms"]["p50"], 500.0, places=2)
        self.assertAlmostEqual(message["latency_ms"]["p95"], 950.0, places=2)
        self.assertAlmostEqual(message["latency_ms"]["p99"], 990.0, places=2)
        self.assertEqual(message["error_rate"], 0.1)
        self.assertEqual(message["requests"], 1000)
        self.assertEqual(message["errors"], 100)
        self.assertEqual(message["in_flight"], 1)
        self.assertEqual(message["open_websockets"], 1)
        self.assertEqual(message["open_streams"], 2)
        self.assertEqual(message["bytes_in"], 3000)
        self.assertEqual(message["bytes_out"], 7000)

    def test_latency_in_milliseconds(self):
        f = self.f
        for _ in range(100):
            finish(f.route, total=0.05)  # all in the (25 ms, 50 ms] bucket
        latency = f.messages.hello()["latency_ms"]
        self.assertAlmostEqual(latency["p50"], 37.5)
        self.assertAlmostEqual(latency["p95"], 48.75)
        self.assertAlmostEqual(latency["p99"], 49.75)

    def test_rate_error_rate_and_latency_forget_old_seconds(self):
        f = self.f
        for _ in range(20):
            finish(f.route, status=500, total=2.0)
        f.clock.advance(30)
        for _ in range(10):
            finish(f.route, total=0.05)
        message = f.messages.stats()
        # 10 s window for the rate: only the later ten.
        self.assertEqual(message["requests_per_second"], 1.0)
        # One minute for the error rate and latency: both batches.
        self.assertAlmostEqual(message["error_rate"], 20 / 30, places=4)
        self.assertGreater(message["latency_ms"]["p99"], 1000)
        f.clock.advance(45)  # the errors are over a minute old now
        message = f.messages.stats()
        self.assertEqual(message["requests_per_second"], 0)
        self.assertEqual(message["error_rate"], 0)
        self.assertAlmostEqual(message["latency_ms"]["p50"], 37.5)
        # Totals never forget.
        self.assertEqual((message["requests"], message["errors"]), (30, 20))

    def test_stats_point_is_the_newest_complete_second(self):
        f = self.f
        finish(f.route)
        finish(f.route, status=502)
        f.clock.advance(1)
        finish(f.route)  # the current second, still filling
        f.clock.advance(0.5)
        message = f.messages.stats()
        self.assertEqual(message["point"], {"t": 1000, "requests": 2, "errors": 1})
        self.assertNotIn("history", message)

    def test_stats_point_waits_for_the_other_workers(self):
        """With several workers the newest point is PEER_LAG seconds older:
        the other workers' counts of a second reach this one that much later."""
        from wighaven.run.cluster import PeerFigures
        from wighaven.observe.live import PEER_LAG

        f = self.f
        f.stats.peers = PeerFigures()
        finish(f.route)
        f.clock.advance(1 + PEER_LAG)
        finish(f.route)
        f.clock.advance(0.5)
        message = f.messages.stats()
        self.assertEqual(message["point"], {"t": 1000, "requests": 1, "errors": 0})

    def test_stats_recent_only_since_the_previous_message(self):
        f = self.f
        f.clock.advance(0.1)
        finish(f.route, path=b"/a", total=0.012)
        first = f.messages.stats(show_paths=True)
        self.assertEqual(first["recent"], [
            {"time": START + 0.1, "method": "GET", "route": "backend", "path": "/a", "status": 200,
             "ms": 12.0}
        ])
        f.clock.advance(0.5)
        finish(f.route, method=b"POST", path=b"/b", status=404)
        f.clock.advance(0.5)
        second = f.messages.stats(show_paths=True)
        self.assertEqual([(e["method"], e["path"], e["status"]) for e in second["recent"]],
                         [("POST", "/b", 404)])
        f.clock.advance(1)
        self.assertEqual(f.messages.stats()["recent"], [])

    def test_stats_recent_keeps_the_newest_twenty(self):
        f = self.f
        for i in range(30):
            f.clock.advance(0.01)
            finish(f.route, path=b"/r%d" % i)
        recent = f.messages.stats(show_paths=True)["recent"]
        self.assertEqual(len(recent), RECENT_ON_PAGE)
        self.assertEqual([e["path"] for e in recent], ["/r%d" % i for i in range(10, 30)])

    def test_hello_recent_holds_what_was_sent_already(self):
        """A new watcher's hello shows the requests the feed has sent; the
        newer ones come with the next stats, so nothing shows twice."""
        f = self.f
        f.clock.advance(0.2)
        finish(f.route, path=b"/old")
        self.assertEqual(f.messages.hello()["recent"], [])  # not sent yet
        f.clock.advance(0.3)
        f.messages.stats()
        f.clock.advance(0.2)
        finish(f.route, path=b"/new")
        hello = f.messages.hello(show_paths=True)
        self.assertEqual([e["path"] for e in hello["recent"]], ["/old"])
        self.assertEqual([e["path"] for e in f.messages.stats(show_paths=True)["recent"]], ["/new"])

    def test_status_draining(self):
        f = self.f
        self.assertEqual(f.messages.stats()["status"], "ok")
        f.stats.draining = True
        self.assertEqual(f.messages.stats()["status"], "draining")
        self.assertEqual(f.messages.hello()["status"], "draining")

    def test_backend_status(self):
        f = self.f
        f.clock.advance(3)
        f.route.backend_failed("the backend refused the connection")
        self.assertEqual(f.messages.stats()["backend_status"], {
            "reachable": False,
            "last_error": "the backend refused the connection",
            "last_error_at": START + 3,
        })
        f.clock.advance(1)
        f.route.backend_ok()
        status = f.messages.hello()["backend_status"]
        self.assertEqual(status, {
            "reachable": True,
            "last_error": "the backend refused the connection",
            "last_error_at": START + 3,
        })


def status(label, state="up", ejected_until=None, last_error=None, stage=None, space=None):
    """One upstream's health, as LiveUpstream.status() tells it."""
    return {"upstream": label, "state": state, "ejected_until": ejected_until,
            "last_error": last_error, "stage": stage, "space": space, "in_flight": 0}


class RoutesTests(SynchronousTestCase):
    """
    Every message's "routes": a row per route of the metrics, by name, with
    its own rate, p95, errors and in-flight requests (not the gateway's),
    and each upstream's health as its route tells it.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.stats = GatewayStats(self.clock)
        self.chat = self.stats.metrics.route("chat")
        self.api = self.stats.metrics.route("api")
        self.chat.upstream_status = lambda: [
            status("user-chat-a.hf.space", stage="RUNNING", space="user/chat-a"),
            status("user-chat-b.hf.space", "ejected", ejected_until=START + 25.0,
                   last_error="answered 503"),
        ]
        self.api.upstream_status = lambda: [
            status("user-api.hf.space", "down", last_error="stage SLEEPING", stage="SLEEPING",
                   space="user/api"),
        ]
        self.messages = LiveMessages(self.stats, "user-space.hf.space", self.clock)
        # chat: 100 fast requests this second, 10 of them errors, one still going.
        for i in range(100):
            self.chat.request_started()
            self.chat.request_ended(b"GET", 503 if i % 10 == 0 else 200, 0.05, 0.01, 0, 0,
                                    path=b"/chat/x", upstream="user-chat-b.hf.space"
                                    if i % 10 == 0 else "user-chat-a.hf.space")
        self.chat.request_started()
        # api: 20 requests, latencies uniform over (0, 1] s, none failed.
        for seconds in uniform(20):
            finish(self.api, total=seconds, path=b"/api/v1")
        self.clock.advance(0.5)

    def rows(self, message):
        return {row["name"]: row for row in message["routes"]}

    def test_a_row_per_route_by_name(self):
        for message in (self.messages.hello(), self.messages.stats()):
            self.assertEqual([row["name"] for row in message["routes"]], ["api", "chat"])
            for row in message["routes"]:
                self.assertEqual(set(row), ROUTE_KEYS)
                for upstream in row["upstreams"]:
                    self.assertEqual(set(upstream), UPSTREAM_KEYS)
            json.dumps(message)

    def test_each_route_its_own_figures(self):
        message = self.messages.stats()
        chat, api = self.rows(message)["chat"], self.rows(message)["api"]
        # The headline rate (RATE_SECONDS) and error rate (last minute), per route.
        self.assertEqual(chat["requests_per_second"], 10.0)  # 100 over 10 s
        self.assertEqual(api["requests_per_second"], 2.0)
        self.assertEqual((chat["errors"], chat["error_rate"]), (10, 0.1))
        self.assertEqual((api["errors"], api["error_rate"]), (0, 0.0))
        self.assertEqual((chat["in_flight"], api["in_flight"]), (1, 0))
        self.assertAlmostEqual(chat["p95_ms"], 48.75)  # all in the (25 ms, 50 ms] bucket
        self.assertAlmostEqual(api["p95_ms"], 950.0, places=2)
        # The headline is still every route's added up.
        self.assertEqual(message["requests_per_second"], 12.0)
        self.assertEqual((message["requests"], message["errors"], message["in_flight"]),
                         (120, 10, 1))

    def test_upstreams_health(self):
        rows = self.rows(self.messages.hello())
        self.assertEqual(rows["chat"]["upstreams"], [
            {"label": "user-chat-a.hf.space", "state": "up", "ejected_until": None,
             "last_error": None, "stage": "RUNNING"},
            {"label": "user-chat-b.hf.space", "state": "ejected", "ejected_until": START + 25.0,
             "last_error": "answered 503", "stage": None},
        ])
        self.assertEqual(rows["api"]["upstreams"], [
            {"label": "user-api.hf.space", "state": "down", "ejected_until": None,
             "last_error": "stage SLEEPING", "stage": "SLEEPING"},
        ])

    def test_metrics_with_nothing_in_them_are_no_route(self):
        """The environment's route's metrics, made on first use in a gateway
        whose routes are all the config file's, have no row; a route with an
        upstream, or a request, has one."""
        self.stats.route  # GatewayStats makes "backend" when asked for it
        names = lambda: [r["name"] for r in self.messages.stats()["routes"]]  # noqa: E731
        self.assertEqual(names(), ["api", "chat"])
        self.stats.metrics.route("idle").upstream_status = lambda: [status("idle.hf.space")]
        self.assertEqual(names(), ["api", "chat", "idle"])
        self.stats.route.request_started()
        self.assertEqual(names(), ["api", "backend", "chat", "idle"])

    def test_an_upstream_counted_but_not_known(self):
        """An upstream the metrics counted that no route tells the health of
        (a route gone by a reload): its state is not known."""
        self.api.upstream_status = None
        self.api.request_started()
        self.api.request_ended(b"GET", 200, 0.01, 0.01, 0, 0, upstream="old.hf.space")
        self.assertEqual(self.rows(self.messages.stats())["api"]["upstreams"], [
            {"label": "old.hf.space", "state": None, "ejected_until": None, "last_error": None,
             "stage": None},
        ])

    def test_rates_forget_old_seconds_per_route(self):
        self.clock.advance(30)
        finish(self.api, path=b"/api/v1")
        rows = self.rows(self.messages.stats())
        self.assertEqual(rows["chat"]["requests_per_second"], 0)
        self.assertEqual(rows["api"]["requests_per_second"], 0.1)
        self.clock.advance(61)
        rows = self.rows(self.messages.stats())
        self.assertEqual(rows["chat"]["error_rate"], 0)
        self.assertIsNone(rows["chat"]["p95_ms"])
        self.assertEqual(rows["chat"]["errors"], 10)  # totals never forget

    def test_the_figures_once_per_message(self):
        calls = []
        figures = self.stats.figures
        self.stats.figures = lambda now=None: calls.append(now) or figures(now)
        self.messages.hello()
        self.assertEqual(calls, [START + 0.5])
        self.messages.stats()
        self.assertEqual(calls, [START + 0.5] * 2)

    def test_every_viewer_sees_the_routes_never_a_path(self):
        message = self.messages.next_stats()
        for show_paths in (False, True):
            self.assertEqual(for_viewer(message, show_paths)["routes"], message["routes"])
        hidden = json.dumps(for_viewer(message, False))
        self.assertNotIn("/chat/x", hidden)
        self.assertNotIn("/api/v1", hidden)

    def test_the_other_workers_counted_in(self):
        """With several workers each route's row is the whole gateway's, and
        the worse view of an upstream shows."""
        other = RouteMetrics("chat", self.clock)
        other.upstream_status = lambda: [
            status("user-chat-a.hf.space", "down", last_error="connection refused"),
        ]
        for _ in range(50):
            finish(other, status=502, path=b"/chat/y")
        self.stats.peers = PeerFigures()
        self.stats.peers.update({"others": {"time": self.clock.seconds(),
                                            "routes": {"chat": other.snapshot()}},
                                 "started": START, "workers": 2})
        chat = self.rows(self.messages.stats())["chat"]
        self.assertEqual(chat["requests_per_second"], 15.0)
        self.assertEqual(chat["errors"], 60)
        self.assertEqual(chat["error_rate"], 0.4)
        self.assertEqual([(u["label"], u["state"], u["last_error"]) for u in chat["upstreams"]], [
            ("user-chat-a.hf.space", "down", "connection refused"),
            ("user-chat-b.hf.space", "ejected", "answered 503"),
        ])


class FakeTransport:
    def __init__(self):
        self.lost = 0
        self.aborted = 0
        self.text = []

    def loseConnection(self):
        self.lost += 1

    def abortConnection(self):
        self.aborted += 1

    def sendTextMessage(self, text):
        self.text.append(text)


class FakeRequest:
    """What a watcher needs of its HTTP request: a consumer and a transport."""

    def __init__(self):
        self.producer = None
        self.streaming = None
        self.transport = FakeTransport()

    def registerProducer(self, producer, streaming):
        self.producer, self.streaming = producer, streaming


class FakeWatcher:
    """What the feed needs of a watcher: send(text), a transport, its view."""

    paused = False

    def __init__(self, show_paths=False):
        self.show_paths = show_paths
        self.sent = []
        self.transport = FakeTransport()

    def send(self, text):
        self.sent.append(json.loads(text))

    def types(self):
        return [m["type"] for m in self.sent]


class LiveFeedTests(SynchronousTestCase):

    def setUp(self):
        self.f = Fixture()
        self.clock = self.f.clock
        self.feed = LiveFeed(self.f.messages, self.clock)

    def test_no_watcher_no_timer(self):
        self.assertEqual(self.feed.watchers, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_hello_at_once_then_one_stats_a_second(self):
        watcher = FakeWatcher()
        self.feed.joined(watcher)
        self.assertEqual(watcher.types(), ["hello"])
        self.assertEqual(len(watcher.sent[0]["history"]), 300)
        self.assertEqual(self.feed.watchers, 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.99)
        self.assertEqual(watcher.types(), ["hello"])
        self.clock.advance(0.01)
        self.assertEqual(watcher.types(), ["hello", "stats"])
        self.assertEqual(watcher.sent[1]["time"], START + 1)
        self.clock.pump([1, 1, 1])
        self.assertEqual(watcher.types(), ["hello"] + ["stats"] * 4)
        self.assertEqual([m["time"] for m in watcher.sent[1:]], [START + s for s in (1, 2, 3, 4)])

    def test_stats_carry_new_requests(self):
        watcher = FakeWatcher(show_paths=True)
        self.feed.joined(watcher)
        self.clock.advance(0.4)
        finish(self.f.route, path=b"/predict")
        self.clock.advance(0.6)
        stats = watcher.sent[-1]
        self.assertEqual(stats["type"], "stats")
        self.assertEqual([e["path"] for e in stats["recent"]], ["/predict"])
        self.assertEqual(stats["requests"], 1)
        self.clock.advance(1)
        self.assertEqual(watcher.sent[-1]["recent"], [])

    def test_one_timer_for_all_watchers(self):
        a, b = FakeWatcher(), FakeWatcher()
        self.feed.joined(a)
        self.clock.advance(0.5)
        self.feed.joined(b)
        self.assertEqual(b.types(), ["hello"])
        self.assertEqual(self.feed.watchers, 2)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.5)
        # Both get the same stats message, on the shared tick.
        self.assertEqual(a.types(), ["hello", "stats"])
        self.assertEqual(b.types(), ["hello", "stats"])
        self.assertEqual(a.sent[-1], b.sent[-1])

    def test_timer_stops_with_the_last_watcher(self):
        a, b = FakeWatcher(), FakeWatcher()
        self.feed.joined(a)
        self.feed.joined(b)
        self.clock.advance(1)
        self.feed.left(a)
        self.assertEqual(self.feed.watchers, 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1)
        self.assertEqual(a.types(), ["hello", "stats"])
        self.assertEqual(b.types(), ["hello", "stats", "stats"])
        self.feed.left(b)
        self.assertEqual(self.feed.watchers, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        self.assertEqual(b.types(), ["hello", "stats", "stats"])

    def test_timer_starts_again_with_a_new_watcher(self):
        a = FakeWatcher()
        self.feed.joined(a)
        self.feed.left(a)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10.5)
        b = FakeWatcher()
        self.feed.joined(b)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1)
        self.assertEqual(b.types(), ["hello", "stats"])
        self.assertEqual(b.sent[-1]["time"], START + 11.5)
        self.assertEqual(a.types(), ["hello"])
        self.feed.left(b)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_leaving_twice_is_harmless(self):
        a = FakeWatcher()
        self.feed.joined(a)
        self.feed.left(a)
        self.feed.left(a)
        self.assertEqual(self.feed.watchers, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_closes_every_watcher(self):
        watchers = [FakeWatcher() for _ in range(3)]
        for watcher in watchers:
            self.feed.joined(watcher)
        self.feed.close()
        self.assertEqual([w.transport.lost for w in watchers], [1, 1, 1])
        # Their connections end: each leaves, and the timer stops.
        for watcher in watchers:
            self.feed.left(watcher)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def real_watcher(self, show_paths=False):
        """The protocol the feed's WebSocket resource builds, over a fake request."""
        request = FakeRequest()
        return self.feed.resource(show_paths).factory.buildProtocol(request), request

    def test_a_real_watcher_protocol(self):
        """The protocol the WebSocket server builds: hello once negotiated,
        stats through its transport, and leaving when its connection ends."""
        watcher, request = self.real_watcher()
        transport = FakeTransport()
        watcher.negotiationStarted(transport)
        self.assertEqual(transport.text, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        watcher.negotiationFinished()
        self.assertEqual([json.loads(t)["type"] for t in transport.text], ["hello"])
        self.assertEqual(self.feed.watchers, 1)
        watcher.textMessageReceived("ignored")  # the feed only talks
        self.clock.advance(1)
        self.assertEqual([json.loads(t)["type"] for t in transport.text], ["hello", "stats"])
        self.feed.close()
        self.assertEqual(transport.lost, 1)
        watcher.connectionLost(None)
        self.assertEqual(self.feed.watchers, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TiedTimesTests(SynchronousTestCase):
    """A request ending at the very time of a tick still reaches the next stats."""

    def test_request_at_tick_time_sent_once(self):
        f = Fixture()
        f.clock.advance(1)
        f.messages.stats()  # the tick at START + 1
        finish(f.route, path=b"/tied")  # ends at START + 1 too
        first = f.messages.stats(show_paths=True)
        second = f.messages.stats()
        self.assertEqual([e["path"] for e in first["recent"]], ["/tied"])
        self.assertEqual(second["recent"], [])


class ViewerTests(SynchronousTestCase):
    """What a viewer sees of the recent requests: no path unless it may."""

    def setUp(self):
        self.f = Fixture()
        for path in SECRET_PATHS:
            self.f.clock.advance(0.1)
            finish(self.f.route, path=path, status=302, total=0.004)

    def assertNoPath(self, message):
        text = json.dumps(message)
        for part in SECRET_PARTS:
            self.assertNotIn(part, text)
        self.assertEqual(len(message["recent"]), 2)
        for entry in message["recent"]:
            self.assertEqual(set(entry), {"time", "method", "route", "status", "ms"})
            self.assertEqual((entry["method"], entry["route"], entry["status"], entry["ms"]),
                             ("GET", "backend", 302, 4.0))

    def test_no_path_in_hello_or_stats_by_default(self):
        self.assertNoPath(self.f.messages.hello(opening=True))
        for path in SECRET_PATHS:
            finish(self.f.route, path=path, status=302, total=0.004)
        self.assertNoPath(self.f.messages.stats())

    def test_paths_for_a_viewer_who_may_see_them(self):
        hello = self.f.messages.hello(show_paths=True, opening=True)
        self.assertEqual([e["path"] for e in hello["recent"]],
                         [p.decode() for p in SECRET_PATHS])
        self.assertEqual(set(hello["recent"][0]), {"time", "method", "route", "path", "status", "ms"})

    def test_one_message_cut_for_each_viewer(self):
        message = self.f.messages.next_stats()
        hidden, shown = for_viewer(message, False), for_viewer(message, True)
        self.assertNoPath(hidden)
        self.assertEqual([e["path"] for e in shown["recent"]], [p.decode() for p in SECRET_PATHS])
        # The bookkeeping stays out of both, and the message itself is left whole.
        self.assertNotIn("n", shown["recent"][0])
        self.assertEqual(message["recent"][0]["n"], 1)
        self.assertEqual({k: v for k, v in hidden.items() if k != "recent"},
                         {k: v for k, v in message.items() if k != "recent"})


class FirstMessageTests(SynchronousTestCase):
    """
    The first message shows the newest requests, those that finished while
    no dashboard was open included; what it shows no stats repeats, and
    what it leaves out the next stats brings.
    """

    def setUp(self):
        self.f = Fixture()
        self.clock = self.f.clock
        self.feed = LiveFeed(self.f.messages, self.clock)

    def paths(self, message):
        return [e["path"] for e in message["recent"]]

    def test_requests_finished_while_nobody_watched(self):
        for i in range(3):
            self.clock.advance(0.1)
            finish(self.f.route, path=b"/before%d" % i)
        watcher = FakeWatcher(show_paths=True)
        self.feed.joined(watcher)
        hello = watcher.sent[0]
        self.assertEqual(hello["requests"], 3)
        self.assertEqual(self.paths(hello), ["/before0", "/before1", "/before2"])
        self.clock.advance(1)
        self.assertEqual(self.paths(watcher.sent[1]), [])  # not twice
        finish(self.f.route, path=b"/after")
        self.clock.advance(1)
        self.assertEqual(self.paths(watcher.sent[2]), ["/after"])

    def test_after_the_last_watcher_left(self):
        a = FakeWatcher(show_paths=True)
        self.feed.joined(a)
        finish(self.f.route, path=b"/seen")
        self.clock.advance(1)
        self.feed.left(a)
        self.clock.advance(30)
        finish(self.f.route, path=b"/unseen1")
        finish(self.f.route, path=b"/unseen2")
        b = FakeWatcher(show_paths=True)
        self.feed.joined(b)
        self.assertEqual(self.paths(b.sent[0]), ["/seen", "/unseen1", "/unseen2"])
        self.clock.advance(1)
        self.assertEqual(self.paths(b.sent[1]), [])

    def test_the_newest_twenty(self):
        for i in range(35):
            finish(self.f.route, path=b"/r%d" % i)
        watcher = FakeWatcher(show_paths=True)
        self.feed.joined(watcher)
        self.assertEqual(self.paths(watcher.sent[0]), ["/r%d" % i for i in range(15, 35)])

    def test_joining_an_open_feed(self):
        a = FakeWatcher(show_paths=True)
        self.feed.joined(a)
        finish(self.f.route, path=b"/one")
        self.clock.advance(1)
        finish(self.f.route, path=b"/two")  # the next stats' to send
        self.clock.advance(0.5)
        b = FakeWatcher(show_paths=True)
        self.feed.joined(b)
        self.assertEqual(self.paths(b.sent[0]), ["/one"])
        self.clock.advance(0.5)
        self.assertEqual(self.paths(a.sent[-1]), ["/two"])
        self.assertEqual(b.sent[-1], a.sent[-1])

    def test_the_page_takes_nothing_from_open_watchers(self):
        """The dashboard's first paint uses the feed's hello: while watchers
        are open it shows what they were sent, and leaves the rest to them."""
        a = FakeWatcher(show_paths=True)
        self.feed.joined(a)
        self.clock.advance(1)
        finish(self.f.route, path=b"/meanwhile")
        self.assertEqual(self.paths(self.feed.hello(show_paths=True)), [])
        self.clock.advance(1)
        self.assertEqual(self.paths(a.sent[-1]), ["/meanwhile"])

    def test_the_page_with_nobody_watching(self):
        finish(self.f.route, path=b"/x")
        self.assertEqual(self.paths(self.feed.hello(show_paths=True)), ["/x"])
        self.assertEqual(self.feed.hello()["recent"][0]["route"], "backend")
        watcher = FakeWatcher(show_paths=True)
        self.feed.joined(watcher)
        self.assertEqual(self.paths(watcher.sent[0]), ["/x"])
        self.clock.advance(1)
        self.assertEqual(self.paths(watcher.sent[1]), [])


class FirstMessageWithWorkersTests(SynchronousTestCase):
    """
    With several workers, the others' requests reach this one late, by the
    parent: across dashboards opening and closing, each request a watcher
    is sent shows once, and none is missing.
    """

    def setUp(self):
        self.f = Fixture()
        self.clock = self.f.clock
        self.f.stats.peers = PeerFigures()
        self.others = {7: RouteMetrics("backend", self.clock), 8: RouteMetrics("backend", self.clock)}
        self.feed = LiveFeed(self.f.messages, self.clock)

    def parent_says(self):
        """The parent's answer: the other workers' latest snapshots, merged."""
        snapshots = []
        for src, route in self.others.items():
            snapshot = route.snapshot()
            for entry in snapshot["recent"]:
                entry["src"] = src
            snapshots.append({"time": self.clock.seconds(), "routes": {"backend": snapshot}})
        self.f.stats.peers.update(
            {"others": merge_snapshots(snapshots), "started": START, "workers": 3})

    def shown(self, watcher):
        return [e["path"] for m in watcher.sent for e in m["recent"]]

    def traffic(self, i):
        """One request through each worker: this one (own) and workers 7 and 8."""
        for name, route in (("own", self.f.route), ("w7", self.others[7]), ("w8", self.others[8])):
            finish(route, path=b"/%s-%d" % (name.encode(), i))
        return {"/%s-%d" % (name, i) for name in ("own", "w7", "w8")}

    def session(self, rounds):
        """A dashboard open for C{rounds} seconds of traffic, the parent
        reporting every other second, then a last report and tick."""
        watcher = FakeWatcher(show_paths=True)
        self.feed.joined(watcher)
        done = set()
        for i in rounds:
            done |= self.traffic(i)
            self.clock.advance(0.5)
            if i % 2:
                self.parent_says()
            self.clock.advance(0.5)
        self.parent_says()
        self.clock.advance(1)
        self.feed.left(watcher)
        shown = [e["path"] for m in watcher.sent for e in m["recent"]]
        self.assertEqual(len(shown), len(set(shown)), "shown twice: %r" % shown)
        return watcher, set(shown), done

    def test_each_once_nothing_missing(self):
        before = self.traffic(0)
        self.parent_says()
        before |= self.traffic(1)  # the others' not reported yet when the page opens
        first, shown, during = self.session(range(2, 5))
        self.assertEqual({e["path"] for e in first.sent[0]["recent"]},
                         {"/own-0", "/w7-0", "/w8-0", "/own-1"})
        self.assertEqual(shown, before | during)  # the late ones by stats, once

        self.clock.advance(30)  # nobody watching
        meanwhile = self.traffic(5)
        self.parent_says()
        second, shown, during = self.session(range(6, 8))
        # Its hello: the newest 20 of the 18 requests so far; no stats repeats them.
        hello = {e["path"] for e in second.sent[0]["recent"]}
        self.assertEqual(hello, before | self.traffic_paths(2, 5) | meanwhile)
        self.assertEqual(shown, hello | during)

    def traffic_paths(self, first, end):
        return {"/%s-%d" % (name, i) for i in range(first, end) for name in ("own", "w7", "w8")}


class BackpressureTests(SynchronousTestCase):
    """A dashboard that does not read is dropped; the feed serves few enough."""

    def setUp(self):
        self.f = Fixture()
        self.clock = self.f.clock
        self.feed = LiveFeed(self.f.messages, self.clock, max_watchers=3)

    def real_watcher(self):
        request = FakeRequest()
        watcher = self.feed.resource().factory.buildProtocol(request)
        transport = FakeTransport()
        watcher.negotiationStarted(transport)
        watcher.negotiationFinished()
        return watcher, request, transport

    def test_a_push_producer_on_its_request(self):
        watcher, request, _ = self.real_watcher()
        self.assertIs(request.producer, watcher)
        self.assertTrue(request.streaming)
        self.assertTrue(IPushProducer.providedBy(watcher))

    def test_a_small_kernel_send_buffer(self):
        """Left to autotune, the kernel would queue megabytes for a dashboard
        that does not read before Twisted's buffer even fills."""
        options = []

        class Socket:
            def setsockopt(self, *option):
                options.append(option)

        request = FakeRequest()
        request.transport.getHandle = Socket
        watcher = self.feed.resource().factory.buildProtocol(request)
        watcher.negotiationStarted(FakeTransport())
        watcher.negotiationFinished()
        self.assertEqual(options, [(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)])

    def test_still_paused_at_the_next_tick_dropped(self):
        watcher, request, transport = self.real_watcher()
        other, _, other_transport = self.real_watcher()
        self.clock.advance(1)
        self.assertEqual(len(transport.text), 2)
        watcher.pauseProducing()  # its write buffer passed the bound
        self.clock.advance(1)
        self.assertEqual(len(transport.text), 2, "nothing more for a dashboard that does not read")
        self.assertEqual(request.transport.aborted, 1)  # aborted: it would never drain
        self.assertEqual(self.feed.watchers, 1)
        self.assertEqual(len(other_transport.text), 3)
        watcher.connectionLost(None)  # the abort ends the connection
        self.assertEqual(self.feed.watchers, 1)
        self.feed.left(other)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_the_last_watcher_dropped_stops_the_timer(self):
        watcher, request, _ = self.real_watcher()
        watcher.pauseProducing()
        self.clock.advance(1)
        self.assertEqual(request.transport.aborted, 1)
        self.assertEqual(self.feed.watchers, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_paused_then_drained_stays(self):
        """One message over the bound (a big hello) is no reason to drop:
        only a buffer still full a second later is."""
        watcher, request, transport = self.real_watcher()
        watcher.pauseProducing()
        self.clock.advance(0.5)
        watcher.resumeProducing()
        self.clock.advance(0.5)
        self.assertEqual(len(transport.text), 2)
        self.assertEqual(request.transport.aborted, 0)
        self.assertEqual(self.feed.watchers, 1)

    def test_full_at_max_watchers(self):
        self.assertFalse(self.feed.full)
        watchers = [self.real_watcher()[0] for _ in range(3)]
        self.assertTrue(self.feed.full)
        watchers[0].connectionLost(None)
        self.assertFalse(self.feed.full)

    def test_each_view_encoded_once(self):
        hidden, shown = FakeWatcher(), FakeWatcher(show_paths=True)
        self.feed.joined(hidden)
        self.feed.joined(shown)
        finish(self.f.route, path=SECRET_PATHS[0])
        self.clock.advance(1)
        self.assertEqual(shown.sent[-1]["recent"][0]["path"], SECRET_PATHS[0].decode())
        self.assertNotIn("SECRET", json.dumps(hidden.sent))
        self.assertEqual(hidden.sent[-1]["recent"][0]["status"], 200)

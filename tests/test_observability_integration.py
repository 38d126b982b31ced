"""Observability over real sockets: the Prometheus endpoint, request ids
from client to backend and back, the JSON access log and LOG_BODIES of a
real `twistd -n wighaven` process, and the dashboard's live feed at
/_gateway/live spoken to by a real WebSocket client.
"""

import json
import os
import re
import tempfile
import time

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.backend import start_backend
from tests.support.client import fetch
from tests.support.gateway import TOKEN, GatewayProcess, free_port, start_gateway
from wighaven.observe.live import LiveFeed

GENERATED_ID = re.compile(r"^[0-9a-f]{24}$")
LIVE = "/_gateway/live"
MESSAGE_KEYS = {
    "type", "time", "status", "version", "backend", "uptime_seconds", "requests_per_second",
    "latency_ms", "error_rate", "requests", "errors", "in_flight", "open_websockets",
    "open_streams", "bytes_in", "bytes_out", "recent", "backend_status", "routes",
}


def samples(text):
    """{(sample name, ((label, value), ...)): value} of a Prometheus text scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def families(text):
    return {family.name: family for family in text_string_to_metric_families(text)}


def requests_total(scrape, method, status_class):
    key = ("wighaven_requests_total",
           (("method", method), ("route", "backend"), ("status_class", status_class)))
    return scrape.get(key)


def route_value(scrape, name, **labels):
    labels["route"] = "backend"
    return scrape.get((name, tuple(sorted(labels.items()))))


def echoed_headers(reply, name):
    return [v for n, v in reply.json()["headers"] if n.lower() == name.lower()]


def live_loops():
    """The live feed's once-a-second timers now scheduled on the reactor."""
    return [
        call for call in reactor.getDelayedCalls()
        if isinstance(getattr(getattr(call.func, "f", None), "__self__", None), LiveFeed)
    ]


@defer.inlineCallbacks
def wait_until(predicate, timeout=3.0, step=0.02):
    """Let the reactor run until C{predicate()} is true; False at the timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        yield task.deferLater(reactor, step, lambda: None)
    return True


def ws_connect(port, path=LIVE):
    return connect("ws://127.0.0.1:%d%s" % (port, path), open_timeout=10, compression=None)


class PrometheusTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        _, _, origin = yield start_backend(self)
        self.service, self.port = yield start_gateway(self, origin)

    @defer.inlineCallbacks
    def scrape(self):
        reply = yield fetch(self.port, "GET", "/_gateway/metrics")
        self.assertEqual(reply.status, 200)
        return reply

    @defer.inlineCallbacks
    def test_counts_histograms_and_content_type(self):
        sent = []
        for method, target, body in [
            ("GET", "/echo", None), ("GET", "/echo?x=1", None), ("GET", "/status/404", None),
            ("GET", "/status/500", None), ("POST", "/echo", b"twelve bytes"),
        ]:
            reply = yield fetch(self.port, method, target, body=body)
            sent.append((reply, body))
        self.assertEqual([r.status for r, _ in sent], [200, 200, 404, 500, 200])

        reply = yield self.scrape()
        content_type = reply.get("Content-Type")
        self.assertTrue(content_type.startswith("text/plain; version="), content_type)
        self.assertIn("charset=utf-8", content_type)
        self.assertEqual(reply.get("Cache-Control"), "no-store")
        text = reply.body.decode("utf-8")
        scrape = samples(text)

        self.assertEqual(requests_total(scrape, "GET", "2xx"), 2)
        self.assertEqual(requests_total(scrape, "GET", "4xx"), 1)
        self.assertEqual(requests_total(scrape, "GET", "5xx"), 1)
        self.assertEqual(requests_total(scrape, "POST", "2xx"), 1)
        self.assertIsNone(requests_total(scrape, "GET", "3xx"))
        self.assertEqual(route_value(scrape, "wighaven_request_errors_total"), 1)
        self.assertEqual(route_value(scrape, "wighaven_in_flight_requests"), 0)
        self.assertEqual(route_value(scrape, "wighaven_open_websockets"), 0)
        self.assertEqual(route_value(scrape, "wighaven_open_streams"), 0)
        self.assertEqual(route_value(scrape, "wighaven_bytes_received_total"), 12)
        self.assertEqual(route_value(scrape, "wighaven_bytes_sent_total"),
                         sum(len(r.body) for r, _ in sent))
        self.assertEqual(route_value(scrape, "wighaven_backend_up"), 1)
        self.assertAlmostEqual(route_value(scrape, "wighaven_error_ratio_1m"), 1 / 5)

        found = families(text)
        for name in ("wighaven_request_duration_seconds", "wighaven_upstream_headers_seconds"):
            self.assertEqual(found[name].type, "histogram")
            buckets = [
                (s.labels["le"], s.value) for s in found[name].samples
                if s.name == name + "_bucket"
            ]
            self.assertGreater(len(buckets), 10)
            self.assertEqual(buckets[-1], ("+Inf", 5))
            counts = [value for _, value in buckets]
            self.assertEqual(counts, sorted(counts))  # cumulative
            self.assertEqual(route_value(scrape, name + "_count"), 5)
            self.assertGreater(route_value(scrape, name + "_sum"), 0)
            self.assertLess(route_value(scrape, name + "_sum"), 10)

        # The gateway's own pages (this scrape included) are not counted;
        # more forwarded requests move the counters.
        for _ in range(3):
            yield fetch(self.port, "GET", "/echo")
        yield fetch(self.port, "DELETE", "/status/503")
        later = samples((yield self.scrape()).body.decode("utf-8"))
        self.assertEqual(requests_total(later, "GET", "2xx"), 5)
        self.assertEqual(requests_total(later, "GET", "4xx"), 1)
        self.assertEqual(requests_total(later, "GET", "5xx"), 1)
        self.assertEqual(requests_total(later, "DELETE", "5xx"), 1)
        self.assertEqual(route_value(later, "wighaven_request_errors_total"), 2)
        self.assertEqual(route_value(later, "wighaven_request_duration_seconds_count"), 9)
        self.assertEqual(
            route_value(later, "wighaven_request_duration_seconds_bucket", le="+Inf"), 9
        )
        self.assertAlmostEqual(route_value(later, "wighaven_error_ratio_1m"), 2 / 9)

    @defer.inlineCallbacks
    def test_head_of_metrics(self):
        reply = yield fetch(self.port, "HEAD", "/_gateway/metrics")
        self.assertEqual(reply.status, 200)
        self.assertTrue(reply.get("Content-Type").startswith("text/plain; version="))
        self.assertEqual(reply.body, b"")

    @defer.inlineCallbacks
    def test_upstream_connect_errors_counted(self):
        _, port = yield start_gateway(self, "https://localhost:%d" % free_port())
        reply = yield fetch(port, "GET", "/anything")
        self.assertEqual(reply.status, 502)
        scrape = samples((yield fetch(port, "GET", "/_gateway/metrics")).body.decode("utf-8"))
        self.assertEqual(requests_total(scrape, "GET", "5xx"), 1)
        self.assertEqual(route_value(scrape, "wighaven_upstream_connect_errors_total"), 1)
        self.assertEqual(route_value(scrape, "wighaven_backend_up"), 0)


class MetricsOffTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        _, _, origin = yield start_backend(self)
        self.service, self.port = yield start_gateway(self, origin, METRICS="off")

    @defer.inlineCallbacks
    def test_metrics_endpoint_is_404(self):
        reply = yield fetch(self.port, "GET", "/echo")
        self.assertEqual(reply.status, 200)  # forwarding works as ever
        reply = yield fetch(self.port, "GET", "/_gateway/metrics")
        self.assertEqual(reply.status, 404)
        self.assertNotIn(b"wighaven_requests_total", reply.body)
        self.assertEqual(reply.json()["error"], "not_found")

    @defer.inlineCallbacks
    def test_live_feed_not_upgraded(self):
        def talk():
            try:
                ws = ws_connect(self.port)
            except InvalidStatus as e:
                return e.response.status_code
            ws.close()
            return 101

        status = yield deferToThread(talk)
        self.assertEqual(status, 404)
        self.assertEqual(live_loops(), [])


class RequestIdTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, origin = yield start_backend(self)
        self.service, self.port = yield start_gateway(self, origin)

    @defer.inlineCallbacks
    def test_sane_id_reaches_backend_and_comes_back(self):
        for given in ["req-42", "a.b_c:d+e=f@g/h-i", "Z" * 128, "0"]:
            reply = yield fetch(self.port, "GET", "/echo", headers={"X-Request-ID": given})
            self.assertEqual(reply.status, 200)
            self.assertEqual(reply.get_all("X-Request-ID"), [given])
            self.assertEqual(echoed_headers(reply, "X-Request-ID"), [given])

    @defer.inlineCallbacks
    def test_insane_id_replaced_by_a_generated_one(self):
        for given in ["a b", "x" * 129, "say\"hi\"", "<script>", "semi;colon", "caf\xe9", ""]:
            reply = yield fetch(self.port, "GET", "/echo", headers={"X-Request-ID": given})
            self.assertEqual(reply.status, 200)
            returned = reply.get_all("X-Request-ID")
            self.assertEqual(len(returned), 1, given)
            self.assertRegex(returned[0], GENERATED_ID)
            # The backend sees the same id, and only that one.
            self.assertEqual(echoed_headers(reply, "X-Request-ID"), returned, given)

    @defer.inlineCallbacks
    def test_no_id_gets_a_fresh_one_each_time(self):
        ids = []
        for _ in range(3):
            reply = yield fetch(self.port, "GET", "/echo")
            [rid] = reply.get_all("X-Request-ID")
            self.assertRegex(rid, GENERATED_ID)
            self.assertEqual(echoed_headers(reply, "X-Request-ID"), [rid])
            ids.append(rid)
        self.assertEqual(len(set(ids)), 3)

    @defer.inlineCallbacks
    def test_backend_error_statuses_carry_the_id(self):
        reply = yield fetch(self.port, "GET", "/status/500", headers={"X-Request-ID": "e-500"})
        self.assertEqual(reply.status, 500)
        self.assertEqual(reply.get_all("X-Request-ID"), ["e-500"])

    @defer.inlineCallbacks
    def test_502_body_has_the_request_id(self):
        _, port = yield start_gateway(self, "https://localhost:%d" % free_port())
        reply = yield fetch(port, "GET", "/predict")
        self.assertEqual(reply.status, 502)
        [rid] = reply.get_all("X-Request-ID")
        self.assertRegex(rid, GENERATED_ID)
        body = reply.json()
        self.assertEqual(body["error"], "bad_gateway")
        self.assertEqual(body["request_id"], rid)

        reply = yield fetch(port, "GET", "/predict", headers={"X-Request-ID": "client-7"})
        self.assertEqual(reply.status, 502)
        self.assertEqual(reply.get_all("X-Request-ID"), ["client-7"])
        self.assertEqual(reply.json()["request_id"], "client-7")

        reply = yield fetch(port, "GET", "/predict", headers={"X-Request-ID": "bad id"})
        [rid] = reply.get_all("X-Request-ID")
        self.assertRegex(rid, GENERATED_ID)
        self.assertEqual(reply.json()["request_id"], rid)

    @defer.inlineCallbacks
    def test_gateway_answers_carry_the_id(self):
        reply = yield fetch(self.port, "TRACE", "/echo", headers={"X-Request-ID": "t-1"})
        self.assertEqual(reply.status, 405)
        self.assertEqual(reply.get_all("X-Request-ID"), ["t-1"])
        self.assertEqual(reply.json()["request_id"], "t-1")
        reply = yield fetch(self.port, "GET", "/_gateway/nothing-here")
        self.assertEqual(reply.status, 404)
        [rid] = reply.get_all("X-Request-ID")
        self.assertEqual(reply.json()["request_id"], rid)


def json_lines(output):
    """Every line of the output parsed as JSON (fails on the first that isn't)."""
    lines = [line for line in output.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError("not a JSON line: %r" % (line,))
    return parsed


def access_lines(events):
    """The access lines: one per request, with method and duration."""
    return [e for e in events if "method" in e and "duration_ms" in e]


def exchange_lines(events):
    """The LOG_BODIES events: one per forwarded exchange."""
    return [e for e in events if "method" in e and "request_headers" in e]


class JsonLogTests(unittest.TestCase):

    timeout = 60

    @defer.inlineCallbacks
    def start(self, **settings):
        _, _, origin = yield start_backend(self)
        log_dir = tempfile.mkdtemp(prefix="wighaven-obs-")
        gateway = GatewayProcess(origin, os.path.join(log_dir, "gateway.log"), **settings)
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        return gateway

    @defer.inlineCallbacks
    def stop(self, gateway):
        """SIGTERM, from a thread: the backend lives on this reactor and must
        keep answering while the gateway closes its connections to it."""
        yield deferToThread(gateway.stop)
        self.assertEqual(gateway.proc.returncode, 0, gateway.output())

    @defer.inlineCallbacks
    def test_client_behind_a_trusted_proxy(self):
        """The access line names the visitor the proxy vouches for, beside the peer."""
        gateway = yield self.start(LOG_FORMAT="json", TRUST_PROXY="127.0.0.0/8")
        reply = yield fetch(gateway.port, "GET", "/echo", headers={
            "X-Request-ID": "behind-1", "X-Forwarded-For": "6.6.6.6, 198.51.100.7",
        })
        self.assertEqual(reply.status, 200)
        yield self.stop(gateway)
        line = {e["request_id"]: e for e in access_lines(json_lines(gateway.output()))}["behind-1"]
        self.assertEqual((line["peer"], line["client"]), ("127.0.0.1", "198.51.100.7"))

    @defer.inlineCallbacks
    def test_access_lines(self):
        gateway = yield self.start(LOG_FORMAT="json", LOG_REDACT_QUERY="false")
        port = gateway.port
        ok = yield fetch(port, "GET", "/echo?q=secret-ish&x=1",
                         headers={"User-Agent": "obs-test/1.0", "X-Request-ID": "json-1"})
        missing = yield fetch(port, "GET", "/status/404", headers={"X-Request-ID": "bad id!"})
        posted = yield fetch(port, "POST", "/upload", body=b"p" * 1000)
        self.assertEqual((ok.status, missing.status, posted.status), (200, 404, 200))
        yield self.stop(gateway)

        output = gateway.output()
        events = json_lines(output)
        self.assertNotIn(TOKEN, output)
        self.assertNotIn(TOKEN[3:], output)
        by_id = {e["request_id"]: e for e in access_lines(events)}

        line = by_id["json-1"]
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["path"], "/echo?q=secret-ish&x=1")
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["bytes_out"], len(ok.body))
        self.assertEqual(line["bytes_in"], 0)
        self.assertIsInstance(line["duration_ms"], float)
        self.assertGreater(line["duration_ms"], 0)
        self.assertLess(line["duration_ms"], 10000)
        self.assertIsInstance(line["upstream_ms"], float)
        self.assertLessEqual(line["upstream_ms"], line["duration_ms"])
        self.assertEqual(line["peer"], "127.0.0.1")
        self.assertEqual(line["client"], "127.0.0.1")
        self.assertEqual(line["user_agent"], "obs-test/1.0")
        self.assertEqual(line["level"], "info")
        self.assertIn("GET /echo?q=secret-ish&x=1 200", line["event"])

        [generated] = missing.get_all("X-Request-ID")
        self.assertRegex(generated, GENERATED_ID)
        line = by_id[generated]
        self.assertEqual((line["path"], line["status"]), ("/status/404", 404))
        self.assertEqual(line["bytes_out"], len(missing.body))
        self.assertEqual(line["user_agent"], "-")

        [posted_id] = posted.get_all("X-Request-ID")
        line = by_id[posted_id]
        self.assertEqual((line["method"], line["path"], line["status"]), ("POST", "/upload", 200))
        self.assertEqual(line["bytes_in"], 1000)

        # The readiness probes are logged too; every access line has the fields.
        self.assertTrue(any(e["path"] == "/gateway-health" for e in access_lines(events)))
        for line in access_lines(events):
            for key in ("time", "level", "namespace", "event", "method", "path", "status",
                        "bytes_in", "bytes_out", "duration_ms", "upstream_ms", "peer",
                        "request_id", "user_agent"):
                self.assertIn(key, line)
        self.assertEqual(exchange_lines(events), [])  # LOG_BODIES is off

    @defer.inlineCallbacks
    def test_redact_query(self):
        gateway = yield self.start(LOG_FORMAT="json", LOG_REDACT_QUERY="true")
        reply = yield fetch(gateway.port, "GET", "/echo?email=someone@example.com&x=1",
                            headers={"X-Request-ID": "redact-1"})
        self.assertEqual(reply.status, 200)
        yield self.stop(gateway)
        output = gateway.output()
        events = json_lines(output)
        [line] = [e for e in access_lines(events) if e["request_id"] == "redact-1"]
        self.assertEqual(line["path"], "/echo")
        self.assertNotIn("someone@example.com", output)
        self.assertNotIn("?", "".join(e["path"] for e in access_lines(events)))

    @defer.inlineCallbacks
    def test_log_bodies_full(self):
        gateway = yield self.start(LOG_FORMAT="json", LOG_BODIES="full", LOG_BODIES_MAX="64",
                                   LOG_REDACT_QUERY="true")
        port = gateway.port
        echoed = yield fetch(port, "GET", "/echo", headers={
            "Authorization": "Bearer client-credential-xyz", "Cookie": "session=s3ss10n-value",
            "X-Request-ID": "bodies-1",
        })
        self.assertEqual(echoed.status, 200)
        self.assertIn(TOKEN.encode(), echoed.body)  # the backend echoes the token it got
        # A target the backend echoes within the first 64 bytes: the token
        # is cut short by the capture limit there.
        in_target = yield fetch(port, "GET", "/echo?k=" + TOKEN,
                                headers={"X-Request-ID": "bodies-2"})
        self.assertEqual(in_target.status, 200)
        uploaded = yield fetch(port, "POST", "/echo", headers={"X-Request-ID": "bodies-3"},
                               body=b"token=" + TOKEN.encode() + b"&again=" + TOKEN.encode()
                               + b"&end")
        self.assertEqual(uploaded.status, 200)
        yield self.stop(gateway)

        output = gateway.output()
        events = json_lines(output)
        self.assertNotIn(TOKEN, output)
        self.assertNotIn(TOKEN[:12], output)
        self.assertNotIn(TOKEN[3:], output)
        self.assertNotIn("client-credential-xyz", output)
        self.assertNotIn("s3ss10n-value", output)
        exchanges = {e["request_id"]: e for e in exchange_lines(events)}

        first = exchanges["bodies-1"]
        self.assertEqual((first["method"], first["path"], first["status"]), ("GET", "/echo", 200))
        request_headers = {name.lower(): value for name, value in first["request_headers"]}
        self.assertEqual(request_headers["authorization"], "[redacted]")
        self.assertEqual(request_headers["cookie"], "[redacted]")
        self.assertEqual(request_headers["x-request-id"], "bodies-1")
        response_headers = {name.lower(): value for name, value in first["response_headers"]}
        self.assertEqual(response_headers["content-type"], "application/json")
        self.assertEqual(first["request_body"], "")
        self.assertEqual(first["response_body"], echoed.body[:64].decode())
        self.assertEqual(len(first["response_body"]), 64)

        second = exchanges["bodies-2"]
        self.assertEqual(second["path"], "/echo")
        # What the backend sent: the token starts at byte 34, so byte 64 cuts it.
        self.assertEqual(in_target.body[:64],
                         b'{"method": "GET", "uri": "/echo?k=' + TOKEN[:30].encode())
        self.assertEqual(second["response_body"], '{"method": "GET", "uri": "/echo?k=[redacted]')

        third = exchanges["bodies-3"]
        self.assertEqual(third["request_body"], "token=[redacted]&again=[redacted]")
        self.assertEqual(third["response_body"], uploaded.body[:64].decode())

        # The access lines are there as well, with the query left out.
        access = {e["request_id"]: e for e in access_lines(events)}
        self.assertEqual(access["bodies-2"]["path"], "/echo")
        self.assertEqual(access["bodies-3"]["bytes_in"], len(b"token=&again=&end") + 2 * len(TOKEN))


class LiveFeedTests(unittest.TestCase):

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        _, _, origin = yield start_backend(self)
        # Whole paths, query strings included: each request is told apart by them.
        self.service, self.port = yield start_gateway(
            self, origin, DASHBOARD_SHOW_PATHS="true", LOG_REDACT_QUERY="false")
        self.clients = []
        self.addCleanup(self._close_clients)

    def _close_clients(self):
        return deferToThread(lambda: [ws.close() for ws in self.clients])

    def connect(self):
        ws = ws_connect(self.port)
        self.clients.append(ws)
        return ws, json.loads(ws.recv(timeout=5))

    @defer.inlineCallbacks
    def test_hello_then_stats_with_the_new_requests(self):
        self.assertEqual(live_loops(), [])  # nobody watching: no timer
        ws, hello = yield deferToThread(self.connect)
        self.assertEqual(set(hello), MESSAGE_KEYS | {"history"})
        self.assertEqual(hello["type"], "hello")
        self.assertEqual(hello["status"], "ok")
        self.assertEqual(len(hello["history"]), 300)
        self.assertEqual(hello["requests"], 0)
        self.assertEqual(hello["backend"], self.service.config.backend_netloc)
        self.assertEqual(len(live_loops()), 1)

        targets = ["/echo?live=1", "/echo?live=2", "/status/404?live=3"]
        for target in targets:
            yield fetch(self.port, "GET", target)

        def collect():
            seen, stats = [], []
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not set(targets) <= {e["path"] for e in seen}:
                try:
                    message = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
                except TimeoutError:
                    break
                stats.append(message)
                seen.extend(message["recent"])
            return seen, stats

        seen, stats = yield deferToThread(collect)
        self.assertTrue(stats)
        for message in stats:
            self.assertEqual(message["type"], "stats")
            self.assertEqual(set(message), MESSAGE_KEYS | {"point"})
            self.assertEqual(set(message["point"]), {"t", "requests", "errors"})
        mine = [e for e in seen if e["path"] in targets]
        self.assertEqual(sorted(e["path"] for e in mine), sorted(targets))  # each exactly once
        by_path = {e["path"]: e for e in mine}
        self.assertEqual(by_path["/echo?live=1"]["status"], 200)
        self.assertEqual(by_path["/status/404?live=3"]["status"], 404)
        self.assertEqual(by_path["/echo?live=2"]["method"], "GET")
        self.assertGreater(by_path["/echo?live=2"]["ms"], 0)
        self.assertEqual(stats[-1]["requests"], 3)
        self.assertEqual(stats[-1]["backend_status"]["reachable"], True)

        yield deferToThread(ws.close)
        stopped = yield wait_until(lambda: live_loops() == [])
        self.assertTrue(stopped, "the feed's timer still runs with nobody watching")

    @defer.inlineCallbacks
    def test_timer_runs_until_the_last_watcher_leaves(self):
        (a, _), (b, _) = yield deferToThread(lambda: (self.connect(), self.connect()))
        self.assertEqual(len(live_loops()), 1)  # one timer for both
        yield deferToThread(a.close)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(len(live_loops()), 1)
        message = yield deferToThread(lambda: json.loads(b.recv(timeout=3)))
        self.assertEqual(message["type"], "stats")
        yield deferToThread(b.close)
        stopped = yield wait_until(lambda: live_loops() == [])
        self.assertTrue(stopped, "the feed's timer still runs with nobody watching")

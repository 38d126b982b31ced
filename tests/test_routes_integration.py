"""The route table over real sockets: several TLS backends, each with its
own token, behind one gateway started from a config file; matching,
prefixes, balancing, affinity, health, retries and live reload."""

import json
import os
import signal
import subprocess
import sys
import time

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from twisted.web import resource, server
from websockets.sync.client import connect

from wighaven.config.settings import load_config
from wighaven.run.service import GatewayService

from tests.support.backend import start_backend
from tests.support.certs import pki
from tests.support.client import fetch
from tests.support.gateway import ROOT, GatewayProcess, free_port, gateway_env
from tests.support.waiting import wait_until
from tests.support.ws_backend import WebSocketBackend

TOKENS = {
    "TOKEN_A": "hf_route_a_0123456789abcdefA",
    "TOKEN_B": "hf_route_b_0123456789abcdefB",
    "TOKEN_C": "hf_route_c_0123456789abcdefC",
}


def route_toml(name, upstreams, **keys):
    """One [[routes]] table of TOML: C{upstreams} is a list of (url, token env name)."""
    lines = ["[[routes]]", 'name = "%s"' % name]
    for key, value in keys.items():
        lines.append("%s = %s" % (key, json.dumps(value)))
    for url, token in upstreams:
        lines += ["", "[[routes.upstreams]]", 'url = "%s"' % url]
        if token:
            lines.append('token = "env:%s"' % token)
    return "\n".join(lines) + "\n\n"


def header(record, name):
    return [v for n, v in record["headers"] if n.lower() == name.lower()]


class RoutedGateway:
    """A gateway in this process, started from a config file written by the test."""

    def __init__(self, testcase, text, **settings):
        self.path = os.path.join(testcase.mktemp() + ".toml")
        self.write(text)
        self.env = gateway_env(None, WIGHAVEN_CONFIG=self.path, PRIVATE_BACKEND_URL=None,
                               **dict(TOKENS, **settings))
        self.config = load_config(self.env)
        self.service = GatewayService(self.config, reactor, env=self.env)
        testcase.addCleanup(self.service.stopService)

    def write(self, text):
        with open(self.path, "w") as f:
            f.write(text)

    @defer.inlineCallbacks
    def start(self):
        self.service.startService()
        port = yield self.service.listening
        self.port = port.getHost().port
        return self

    def reload(self, text=None):
        if text is not None:
            self.write(text)
        return self.service.reloader.reload()

    def get(self, target="/", host=None, method="GET", headers=None, body=None):
        headers = dict(headers or {})
        if host is not None:
            headers["Host"] = host
        return fetch(self.port, method, target, headers, body)


class MatchingAndTokensTests(unittest.TestCase):
    """Three TLS backends, three tokens, three ways to match."""

    @defer.inlineCallbacks
    def setUp(self):
        self.a, _, a = yield start_backend(self)
        self.b, _, b = yield start_backend(self)
        self.c, _, c = yield start_backend(self)
        text = (route_toml("host-a", [(a, "TOKEN_A")], hosts=["a.example.org"])
                + route_toml("wild", [(a, "TOKEN_A")], hosts=["*.wild.example.org"])
                + route_toml("prefix-b", [(b, "TOKEN_B")], path="/b")
                + route_toml("whole-b", [(b, "TOKEN_B")], path="/keep", strip_path=False)
                + route_toml("rest-c", [(c, "TOKEN_C")]))
        self.gw = yield RoutedGateway(self, text).start()

    @defer.inlineCallbacks
    def test_each_upstream_sees_only_its_own_token(self):
        for target, host in [("/x", "a.example.org"), ("/b/y", None), ("/z", None),
                             ("/q", "deep.wild.example.org"), ("/keep/k", None)]:
            reply = yield self.gw.get(target, host)
            self.assertEqual(reply.status, 200, (target, host, reply.body))
        self.assertEqual([r["uri"] for r in self.a.requests], [b"/x", b"/q"])
        self.assertEqual([r["uri"] for r in self.b.requests], [b"/y", b"/keep/k"])
        self.assertEqual([r["uri"] for r in self.c.requests], [b"/z"])
        for backend, name in ((self.a, "TOKEN_A"), (self.b, "TOKEN_B"), (self.c, "TOKEN_C")):
            others = [t for n, t in TOKENS.items() if n != name]
            for record in backend.requests:
                self.assertEqual(header(record, "Authorization"), ["Bearer " + TOKENS[name]])
                seen = json.dumps(record["headers"])
                for other in others:
                    self.assertNotIn(other, seen)

    @defer.inlineCallbacks
    def test_prefix_is_stripped_and_forwarded(self):
        yield self.gw.get("/b/deep/path?q=1")
        yield self.gw.get("/keep/k")
        stripped, whole = self.b.requests
        self.assertEqual(stripped["uri"], b"/deep/path?q=1")
        self.assertEqual(header(stripped, "X-Forwarded-Prefix"), ["/b"])
        self.assertEqual(whole["uri"], b"/keep/k")
        self.assertEqual(header(whole, "X-Forwarded-Prefix"), [])

    @defer.inlineCallbacks
    def test_segment_boundaries(self):
        yield self.gw.get("/bee")  # not /b: the catch-all
        self.assertEqual([r["uri"] for r in self.c.requests], [b"/bee"])
        self.assertEqual(self.b.requests, [])

    @defer.inlineCallbacks
    def test_bare_prefix_is_sent_to_its_slash(self):
        reply = yield self.gw.get("/b?x=1")
        self.assertEqual(reply.status, 308)
        self.assertEqual(reply.get("Location"), "/b/?x=1")
        self.assertEqual(self.b.requests, [])
        posted = yield self.gw.get("/b", method="POST", body=b"{}")
        self.assertEqual(posted.status, 200)
        self.assertEqual(self.b.requests[-1]["uri"], b"/")

    @defer.inlineCallbacks
    def test_redirects_land_under_the_prefix(self):
        reply = yield self.gw.get("/b/redirect-internal", "gw.example:8080")
        self.assertEqual(reply.status, 302)
        self.assertEqual(reply.get("Location"), "http://gw.example:8080/b/landed?x=1")
        outside = yield self.gw.get("/b/redirect-external")
        self.assertEqual(outside.get("Location"), "https://elsewhere.example/landed")

    @defer.inlineCallbacks
    def test_health_lists_every_route(self):
        yield self.gw.get("/b/1")
        reply = yield self.gw.get("/gateway-health")
        routes = {r["name"]: r for r in reply.json()["routes"]}
        self.assertEqual(set(routes), {"host-a", "wild", "prefix-b", "whole-b", "rest-c"})
        self.assertEqual(routes["prefix-b"]["path"], "/b")
        self.assertEqual(routes["prefix-b"]["requests"], 1)
        [upstream] = routes["prefix-b"]["upstreams"]
        self.assertEqual(upstream["state"], "up")
        self.assertEqual(upstream["upstream"], self.b.origin.split("//")[1])
        body = reply.body.decode()
        for token in TOKENS.values():
            self.assertNotIn(token, body)


class NoRouteTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_unmatched_request_gets_404_no_route(self):
        _, _, a = yield start_backend(self)
        gw = yield RoutedGateway(self, route_toml("only", [(a, "TOKEN_A")],
                                                  hosts=["only.example.org"])).start()
        reply = yield gw.get("/anything", "other.example.org")
        self.assertEqual(reply.status, 404)
        body = reply.json()
        self.assertEqual(body["error"], "no_route")
        self.assertEqual(body["request_id"], reply.get("X-Request-ID"))
        matched = yield gw.get("/anything", "only.example.org:7860")
        self.assertEqual(matched.status, 200)


class BalancingTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.one, _, one = yield start_backend(self)
        self.two, _, two = yield start_backend(self)
        self.urls = (one, two)

    def table(self, **keys):
        return route_toml("pair", [(self.urls[0], "TOKEN_A"), (self.urls[1], "TOKEN_B")], **keys)

    @defer.inlineCallbacks
    def test_round_robin_alternates(self):
        gw = yield RoutedGateway(self, self.table()).start()
        for _ in range(6):
            reply = yield gw.get("/r")
            self.assertEqual(reply.status, 200)
        self.assertEqual((len(self.one.requests), len(self.two.requests)), (3, 3))

    @defer.inlineCallbacks
    def test_cookie_affinity_keeps_a_browser_on_one_upstream(self):
        gw = yield RoutedGateway(self, self.table(affinity="cookie")).start()
        first = yield gw.get("/page")
        cookie = first.get("Set-Cookie")
        self.assertTrue(cookie.startswith("wh_aff_pair="), cookie)
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=Lax", cookie)
        self.assertIn("Path=/", cookie)
        value = cookie.split(";")[0]
        for url in self.urls:  # the tag says nothing of the URL
            self.assertNotIn(url.split("//")[1], value)
        served_first = self.one if self.one.requests else self.two
        for _ in range(6):
            reply = yield gw.get("/again", headers={"Cookie": "other=1; " + value})
            self.assertIsNone(reply.get("Set-Cookie"))
        self.assertEqual(len(served_first.requests), 7)
        forged = yield gw.get("/x", headers={"Cookie": "wh_aff_pair=forged"})
        self.assertIsNotNone(forged.get("Set-Cookie"))

    @defer.inlineCallbacks
    def test_the_cookie_is_secure_when_the_client_came_over_https(self):
        gw = yield RoutedGateway(self, self.table(affinity="cookie"), TRUST_PROXY="true").start()
        plain = yield gw.get("/page")
        self.assertNotIn("Secure", plain.get("Set-Cookie"))
        https = yield gw.get("/page", headers={"X-Forwarded-Proto": "https"})
        self.assertIn("; Secure", https.get("Set-Cookie"))

    @defer.inlineCallbacks
    def test_gradio_session_hash_keeps_a_client_on_one_replica(self):
        gw = yield RoutedGateway(self, self.table(affinity="gradio")).start()
        join = json.dumps({"data": [], "fn_index": 0, "session_hash": "abc123"}).encode()
        yield gw.get("/gradio_api/queue/join", method="POST", body=join,
                     headers={"Content-Type": "application/json"})
        joined = self.one if self.one.requests else self.two
        for _ in range(5):
            yield gw.get("/gradio_api/queue/data?session_hash=abc123")
            yield gw.get("/gradio_api/heartbeat/abc123")
        self.assertEqual(len(joined.requests), 11)
        self.assertEqual(joined.requests[0]["method"], b"POST")


class HealthAndRetryTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.alive, _, alive = yield start_backend(self)
        self.dead = "https://localhost:%d" % free_port()  # nothing listens
        self.gw = yield RoutedGateway(self, route_toml(
            "flaky", [(self.dead, "TOKEN_A"), (alive, "TOKEN_B")], retries=1)).start()

    @defer.inlineCallbacks
    def test_idempotent_requests_are_retried_and_the_dead_upstream_ejected(self):
        for _ in range(8):
            reply = yield self.gw.get("/r")
            self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(len(self.alive.requests), 8)
        health = yield self.gw.get("/gateway-health")
        [route] = health.json()["routes"]
        states = {u["upstream"]: u for u in route["upstreams"]}
        dead = states[self.dead.split("//")[1]]
        self.assertEqual(dead["state"], "ejected")
        self.assertGreater(dead["ejected_until"], time.time())
        self.assertEqual(dead["last_error"], "the backend refused the connection")

    @defer.inlineCallbacks
    def test_other_methods_are_not_retried(self):
        statuses = []
        for _ in range(2):
            reply = yield self.gw.get("/p", method="POST", body=b"x")
            statuses.append(reply.status)
        self.assertEqual(sorted(statuses), [200, 502])


def _sse_lines(port, path, count):
    """Read C{count} events of an event stream through the gateway."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    events = []
    try:
        while len(events) < count:
            line = response.fp.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                events.append(line.strip())
    except ConnectionResetError:  # cut by the gateway
        pass
    conn.close()
    return response.status, events


class ReloadTests(unittest.TestCase):
    """SIGHUP's work: streams and WebSockets stay open across reloads."""

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, self.url = yield start_backend(self)
        self.ws = WebSocketBackend(TOKENS["TOKEN_A"])
        self.addCleanup(self.ws.stop)
        self.base = (route_toml("live", [(self.url, "TOKEN_A")], path="/live")
                     + route_toml("ws", [(self.ws.origin, "TOKEN_A")], path="/ws"))
        self.gw = yield RoutedGateway(self, self.base, DRAIN_TIMEOUT="1").start()

    def other_routes(self, i):
        """A different set of other routes for reload C{i}: added, changed, removed."""
        text = ""
        for n in range(i % 3 + 1):
            text += route_toml("other-%d" % n, [(self.url, "TOKEN_B")],
                               path="/other-%d" % n, retries=i % 2)
        return text

    @defer.inlineCallbacks
    def test_sse_and_websocket_survive_five_reloads(self):
        stream = deferToThread(_sse_lines, self.gw.port, "/live/sse?n=12&every=0.25", 12)
        opened = []

        def talk():
            with connect("ws://127.0.0.1:%d/ws/echo" % self.gw.port, open_timeout=10) as ws:
                opened.append(True)
                answers = []
                for i in range(6):
                    while len(reloads_done) < i:
                        time.sleep(0.02)
                    ws.send("after reload %d" % i)
                    answers.append(ws.recv(timeout=5))
                return answers

        reloads_done = []
        talking = deferToThread(talk)
        yield wait_until(lambda: opened and self.backend.requests)
        for i in range(5):
            self.assertTrue(self.gw.reload(self.base + self.other_routes(i)))
            reloads_done.append(i)
            reply = yield self.gw.get("/other-0/x")
            self.assertEqual(reply.status, 200)
            yield deferToThread(time.sleep, 0.3)
        status, events = yield stream
        answers = yield talking
        self.assertEqual(status, 200)
        self.assertEqual(events, [b"data: event %d" % i for i in range(12)])
        self.assertEqual(answers, ["after reload %d" % i for i in range(6)])
        metrics = yield self.gw.get("/_gateway/metrics")
        self.assertIn(b'wighaven_config_reloads_total{result="ok"} 5.0', metrics.body)

    @defer.inlineCallbacks
    def test_a_bad_file_keeps_the_old_table(self):
        self.assertFalse(self.gw.reload(self.base + '[[routes]]\nname = "Bad Name"\n'))
        reply = yield self.gw.get("/live/x")
        self.assertEqual(reply.status, 200)
        metrics = yield self.gw.get("/_gateway/metrics")
        self.assertIn(b'wighaven_config_reloads_total{result="error"} 1.0', metrics.body)

    @defer.inlineCallbacks
    def test_a_removed_route_closes_its_websockets_after_drain_timeout(self):
        opened = []

        def talk():
            with connect("ws://127.0.0.1:%d/ws/echo" % self.gw.port, open_timeout=10) as ws:
                ws.send("before")
                answers = [ws.recv(timeout=5)]
                opened.append(time.monotonic())
                try:
                    ws.recv(timeout=10)
                except Exception as e:  # closed by the gateway
                    return answers, type(e).__name__, time.monotonic()
                return answers, None, time.monotonic()

        talking = deferToThread(talk)
        yield wait_until(lambda: opened)
        removed_at = time.monotonic()
        self.gw.reload(route_toml("live", [(self.url, "TOKEN_A")], path="/live"))
        answers, closed, at = yield talking
        self.assertEqual(answers, ["before"])
        self.assertIsNotNone(closed)
        self.assertGreaterEqual(at - removed_at, 0.9)  # DRAIN_TIMEOUT is 1 s
        self.assertLess(at - removed_at, 5)

    @defer.inlineCallbacks
    def test_a_removed_route_cuts_its_streams_after_drain_timeout(self):
        stream = deferToThread(_sse_lines, self.gw.port, "/live/sse?n=100&every=0.2", 100)
        yield wait_until(lambda: self.backend.requests)
        started = time.monotonic()
        self.gw.reload(route_toml("ws", [(self.ws.origin, "TOKEN_A")], path="/ws"))
        status, events = yield stream
        self.assertEqual(status, 200)
        self.assertLess(len(events), 100)
        self.assertLess(time.monotonic() - started, 5)
        gone = yield self.gw.get("/live/x")
        self.assertEqual(gone.status, 404)


class ProcessTests(unittest.TestCase):
    """The real twistd: --check-config and SIGHUP."""

    def write(self, text):
        path = os.path.abspath(self.mktemp()) + ".toml"
        with open(path, "w") as f:
            f.write(text)
        return path

    def check(self, path, **env):
        full = dict(os.environ, WIGHAVEN_CONFIG=path, PYTHONPATH=ROOT, **env)
        full.pop("PRIVATE_BACKEND_URL", None)
        return subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "--pidfile=", "wighaven", "--check-config"],
            env=full, cwd=ROOT, capture_output=True, text=True, timeout=60)

    def test_check_config(self):
        good = self.write(route_toml("chat", [("https://chat.example.org", "TOKEN_A")]))
        done = self.check(good, TOKEN_A="hf_x")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.count("\n"), 1)
        self.assertIn("valid", done.stdout)
        missing = self.check(good)
        self.assertEqual(missing.returncode, 1)
        self.assertEqual(missing.stderr.strip().splitlines(), [
            "wighaven: route 'chat': upstreams[0].token: environment variable TOKEN_A is not set"])
        literal = self.write(
            '[[routes]]\nname = "chat"\n[[routes.upstreams]]\nurl = "https://c.example"\n'
            'token = "hf_literal_secret"\n')
        refused = self.check(literal)
        self.assertEqual(refused.returncode, 1)
        self.assertNotIn("hf_literal_secret", refused.stderr + refused.stdout)
        self.assertIn("upstreams[0].token", refused.stderr)

    @defer.inlineCallbacks
    def test_sighup_reloads_a_running_gateway(self):
        _, _, url = yield start_backend(self)
        path = self.write(route_toml("first", [(url, "TOKEN_A")], path="/first"))
        gateway = GatewayProcess(None, self.mktemp() + ".log", WIGHAVEN_CONFIG=path,
                                 PRIVATE_BACKEND_URL=None, BACKEND_CA_BUNDLE=pki().ca_pem,
                                 **TOKENS)
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        before = yield fetch(gateway.port, "GET", "/second/x")
        self.assertEqual(before.status, 404)
        with open(path, "a") as f:
            f.write(route_toml("second", [(url, "TOKEN_B")], path="/second"))
        os.kill(gateway.proc.pid, signal.SIGHUP)
        yield wait_until(lambda: "config reloaded" in gateway.output(), timeout=10)
        after = yield fetch(gateway.port, "GET", "/second/x")
        self.assertEqual(after.status, 200)
        self.assertIn("added: second", gateway.output())


class _FakeHub(resource.Resource):
    """The Hub's runtime API: a stage per Space, and who asked with which token."""

    isLeaf = True

    def __init__(self, stages):
        super().__init__()
        self.stages = stages
        self.asked = []

    def render_GET(self, request):
        self.asked.append((request.path, request.getHeader(b"authorization")))
        space = request.path.decode()[len("/api/spaces/"):-len("/runtime")]
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"stage": self.stages[space]}).encode()


class ActiveHealthTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_the_hub_stage_and_the_health_path_decide(self):
        hub = _FakeHub({"user/sleepy": "SLEEPING", "user/awake": "RUNNING"})
        port = reactor.listenTCP(0, server.Site(hub), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        sleepy, _, sleepy_url = yield start_backend(self)
        awake, _, awake_url = yield start_backend(self)
        probed, _, probed_url = yield start_backend(self)
        text = (route_toml("spaces", [(sleepy_url, "TOKEN_A"), (awake_url, "TOKEN_B")])
                .replace('token = "env:TOKEN_A"', 'token = "env:TOKEN_A"\nspace = "user/sleepy"')
                .replace('token = "env:TOKEN_B"', 'token = "env:TOKEN_B"\nspace = "user/awake"')
                + route_toml("probed", [(probed_url, "TOKEN_C")], path="/probed",
                             health_path="/status/503", health_interval=1))
        gw = yield RoutedGateway(
            self, text, HF_ENDPOINT="http://127.0.0.1:%d" % port.getHost().port).start()

        def states():
            return fetch(gw.port, "GET", "/gateway-health").addCallback(
                lambda r: {(route["name"], u["space"]): u for route in r.json()["routes"]
                           for u in route["upstreams"]})

        yield wait_until(lambda: len(hub.asked) >= 2 and probed.requests, timeout=10)
        seen = yield states()
        self.assertEqual(seen[("spaces", "user/sleepy")]["state"], "down")
        self.assertEqual(seen[("spaces", "user/sleepy")]["stage"], "SLEEPING")
        self.assertEqual(seen[("spaces", "user/awake")]["state"], "up")
        self.assertEqual(seen[("spaces", "user/awake")]["stage"], "RUNNING")
        self.assertEqual(seen[("probed", None)]["state"], "down")
        self.assertEqual(seen[("probed", None)]["last_error"], "answered 503")
        # The Hub was asked with each upstream's own token; the Spaces were never probed.
        self.assertEqual(set(hub.asked), {
            (b"/api/spaces/user/awake/runtime", b"Bearer " + TOKENS["TOKEN_B"].encode()),
            (b"/api/spaces/user/sleepy/runtime", b"Bearer " + TOKENS["TOKEN_A"].encode()),
        })
        self.assertEqual((sleepy.requests, awake.requests), ([], []))
        self.assertEqual(header(probed.requests[0], "Authorization"),
                         ["Bearer " + TOKENS["TOKEN_C"]])
        # A sleeping replica takes nothing while the running one is there.
        for _ in range(4):
            reply = yield gw.get("/x")
            self.assertEqual(reply.status, 200)
        self.assertEqual((len(sleepy.requests), len(awake.requests)), (0, 4))


class WorkersReloadTests(unittest.TestCase):
    """With WORKERS above 1, SIGHUP to the supervisor reaches every worker."""

    @defer.inlineCallbacks
    def test_every_worker_reloads(self):
        _, _, url = yield start_backend(self)
        path = os.path.abspath(self.mktemp()) + ".toml"
        with open(path, "w") as f:
            f.write(route_toml("first", [(url, "TOKEN_A")], path="/first"))
        gateway = GatewayProcess(None, self.mktemp() + ".log", args=["--workers", "2"],
                                 WIGHAVEN_CONFIG=path, PRIVATE_BACKEND_URL=None,
                                 BACKEND_CA_BUNDLE=pki().ca_pem, **TOKENS)
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        with open(path, "a") as f:
            f.write(route_toml("second", [(url, "TOKEN_B")], path="/second"))
        os.kill(gateway.proc.pid, signal.SIGHUP)
        yield wait_until(lambda: gateway.output().count("config reloaded") == 2, timeout=10)
        # New connections land on either worker: every one of them knows the new route.
        for _ in range(10):
            reply = yield fetch(gateway.port, "GET", "/second/x")
            self.assertEqual(reply.status, 200)
        self.assertEqual(gateway.proc.poll(), None)

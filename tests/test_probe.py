"""Active health (wighaven.routing.probe): the schedule and state on a fake
clock, then both kinds of check over real sockets on 127.0.0.1 (a fake Hub
answering per-space stages, a fake upstream with a health path), and that
the token goes where it belongs and nowhere else."""

import json

from twisted.internet import defer, reactor
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server

from tests.support.backend import CountingSite, serve_locally, start_backend
from tests.support.certs import pki
from tests.support.waiting import wait_until
from wighaven.config.routes import Route, Upstream
from wighaven.proxy.tls import BackendTLSPolicy
from wighaven.routing.probe import (
    ActiveHealth,
    CheckResult,
    check_for,
    hub_runtime_check,
    path_check,
    probe_timeout,
)

TOKEN = "hf_probeSecretToken42"


class FakeCheck:
    """A check whose probes the test answers by hand (each call: a new Deferred)."""

    def __init__(self):
        self.calls = []

    def __call__(self):
        d = defer.Deferred()
        self.calls.append(d)
        return d

    def answer(self, result):
        self.calls[-1].callback(result)


UP = CheckResult(True)
DOWN = CheckResult(False, "answered 503")


class ScheduleTests(SynchronousTestCase):
    """When probes run: at once, every interval, never two at a time."""

    def setUp(self):
        self.clock = Clock()
        self.check = FakeCheck()
        self.health = ActiveHealth(self.clock, self.check, interval=10.0, name="chat[0]")
        self.addCleanup(self.health.stop)

    def test_first_probe_at_once_then_every_interval(self):
        self.health.start()
        self.assertEqual(len(self.check.calls), 1)
        self.check.answer(UP)
        self.clock.advance(9.9)
        self.assertEqual(len(self.check.calls), 1)
        self.clock.advance(0.1)
        self.assertEqual(len(self.check.calls), 2)
        self.check.answer(UP)
        self.clock.advance(10)
        self.assertEqual(len(self.check.calls), 3)

    def test_default_interval_is_ten_seconds(self):
        health = ActiveHealth(self.clock, self.check)
        health.start()
        self.addCleanup(health.stop)
        self.check.answer(UP)
        self.clock.advance(9.99)
        self.assertEqual(len(self.check.calls), 1)
        self.clock.advance(0.01)
        self.assertEqual(len(self.check.calls), 2)

    def test_a_probe_still_running_skips_the_turn(self):
        self.health.start()
        self.clock.advance(10)
        self.clock.advance(10)
        self.clock.advance(10)
        self.assertEqual(len(self.check.calls), 1)
        self.assertEqual(self.health.skipped, 3)
        self.check.answer(UP)  # late, at t=30
        self.assertEqual(len(self.check.calls), 1)  # nothing queued up meanwhile
        self.clock.advance(10)
        self.assertEqual(len(self.check.calls), 2)

    def test_start_twice_is_one_schedule(self):
        self.health.start()
        self.health.start()
        self.assertEqual(len(self.check.calls), 1)

    def test_stop_cancels_the_schedule_and_the_running_probe(self):
        self.health.start()
        running = self.check.calls[0]
        self.health.stop()
        # Cancelled, and its CancelledError swallowed (no unhandled error).
        self.assertIsNone(self.successResultOf(running))
        self.assertEqual(self.health.state, "unknown")  # the cancel is not an answer
        self.clock.advance(100)
        self.assertEqual(len(self.check.calls), 1)
        self.health.stop()  # idempotent

    def test_stop_before_start_and_restart(self):
        self.health.stop()
        self.health.start()
        self.check.answer(DOWN)
        self.health.stop()
        self.health.start()
        self.assertEqual(len(self.check.calls), 2)
        self.check.answer(UP)
        self.assertEqual(self.health.state, "up")

    def test_what_a_cancelled_probe_gives_is_ignored(self):
        """A check may answer as it is cancelled (here: up); stopped, that is no answer."""

        def check():
            return defer.Deferred(lambda d: d.callback(UP))

        health = ActiveHealth(self.clock, check)
        health.start()
        health.stop()
        self.assertEqual(health.state, "unknown")
        self.assertIsNone(health.checked_at)


class StateTests(SynchronousTestCase):
    """What the answers make of the state, and what gets logged."""

    def setUp(self):
        self.clock = Clock()
        self.check = FakeCheck()
        self.health = ActiveHealth(self.clock, self.check, interval=5.0, name="chat[0]")
        self.addCleanup(self.health.stop)

    def probe(self, result):
        """Answer the probe now running, then move to the next turn."""
        self.check.answer(result)
        self.clock.advance(5)

    def test_unknown_until_the_first_answer(self):
        self.assertEqual(self.health.state, "unknown")
        self.assertTrue(self.health.available())
        self.health.start()
        self.assertEqual(self.health.state, "unknown")
        self.assertTrue(self.health.available())
        self.assertEqual(
            self.health.snapshot(),
            {"state": "unknown", "last_error": None, "stage": None, "checked_at": None},
        )

    def test_up_down_up(self):
        self.clock.advance(100)
        self.health.start()
        self.probe(UP)
        self.assertEqual(self.health.state, "up")
        self.assertTrue(self.health.available())
        self.assertEqual(self.health.checked_at, 100)
        self.probe(CheckResult(False, "stage SLEEPING", stage="SLEEPING"))
        self.assertEqual(self.health.state, "down")
        self.assertFalse(self.health.available())
        self.assertEqual(self.health.last_error, "stage SLEEPING")
        self.assertEqual(self.health.stage, "SLEEPING")
        self.assertEqual(self.health.checked_at, 105)
        self.probe(CheckResult(True, stage="RUNNING"))
        self.assertEqual(self.health.state, "up")
        self.assertTrue(self.health.available())
        self.assertEqual(self.health.stage, "RUNNING")
        # The last error stays for the dashboard: what went wrong, and when
        # it was last checked (now, and fine).
        self.assertEqual(
            self.health.snapshot(),
            {"state": "up", "last_error": "stage SLEEPING", "stage": "RUNNING", "checked_at": 110},
        )

    def test_an_errback_is_down_by_its_kind_only(self):
        health = ActiveHealth(self.clock, lambda: defer.fail(ValueError("carrying " + TOKEN)))
        health.start()
        self.addCleanup(health.stop)
        self.assertEqual(health.state, "down")
        self.assertEqual(health.last_error, "check failed: ValueError")

    def test_a_check_that_raises_is_down(self):
        def check():
            raise RuntimeError(TOKEN)

        health = ActiveHealth(self.clock, check)
        health.start()
        self.addCleanup(health.stop)
        self.assertEqual(health.last_error, "check failed: RuntimeError")
        self.clock.advance(10)  # and the schedule goes on
        self.assertEqual(health.checked_at, 10)

    def test_a_result_that_is_not_a_check_result_is_down(self):
        self.health.start()
        self.probe(True)
        self.assertEqual(self.health.state, "down")
        self.assertEqual(self.health.last_error, "check gave bool, not a CheckResult")

    def test_one_log_line_per_change(self):
        with capturedLogs() as events:
            self.health.start()
            for result in (UP, UP, DOWN, DOWN, CheckResult(False, "timeout after 5s"), UP, UP):
                self.probe(result)
        lines = [(e["log_level"], formatEvent(e)) for e in events]
        self.assertEqual(
            lines,
            [
                (LogLevel.warn, "upstream chat[0] is down: answered 503"),
                (LogLevel.info, "upstream chat[0] is up again"),
            ],
        )

    def test_down_from_the_start_is_logged(self):
        with capturedLogs() as events:
            self.health.start()
            self.probe(DOWN)
            self.probe(DOWN)
        self.assertEqual(
            [formatEvent(e) for e in events], ["upstream chat[0] is down: answered 503"]
        )

    def test_repr(self):
        self.assertEqual(repr(self.health), "<ActiveHealth chat[0] unknown>")


class ChoiceTests(SynchronousTestCase):
    """Which check an upstream gets."""

    def upstream(self, space=None):
        return Upstream(
            url="https://user-chat-a.hf.space", scheme="https", host="user-chat-a.hf.space",
            port=443, token=TOKEN, token_ref="env:HF_TOKEN_CHAT", space=space,
        )

    def route(self, upstream, health_path=None):
        return Route(name="chat", upstreams=(upstream,), health_path=health_path)

    def choose(self, route):
        policy = BackendTLSPolicy()
        return check_for(
            reactor, route, route.upstreams[0], "https://huggingface.co/", policy, policy, 5.0
        )

    def test_health_path_wins_over_space(self):
        check = self.choose(self.route(self.upstream("user/chat-a"), "/healthz"))
        self.assertEqual(check.target, "https://user-chat-a.hf.space/healthz")
        self.assertEqual(repr(check), "<path check GET https://user-chat-a.hf.space/healthz>")

    def test_space_asks_the_hub(self):
        check = self.choose(self.route(self.upstream("user/chat-a")))
        self.assertEqual(check.target, "https://huggingface.co/api/spaces/user/chat-a/runtime")
        self.assertNotIn(TOKEN, repr(check))

    def test_neither_is_no_check(self):
        self.assertIsNone(self.choose(self.route(self.upstream())))

    def test_probe_timeout(self):
        self.assertEqual(probe_timeout(10), 10)
        self.assertEqual(probe_timeout(30), 10)
        self.assertEqual(probe_timeout(2), 2)

    def test_a_bad_token_is_refused_without_being_echoed(self):
        for token in ("caf\u00e9-" + TOKEN, TOKEN + "\r\nX-Evil: 1"):
            with self.assertRaises(ValueError) as caught:
                path_check(reactor, "https://a.example", "/h", token, BackendTLSPolicy(), 1)
            self.assertNotIn(TOKEN, str(caught.exception))


# -- integration: real sockets on 127.0.0.1 --------------------------------------

RUNTIME = {
    "user/chat-a": {"stage": "RUNNING", "hardware": {"current": "cpu-basic"}},
    "user/sleepy": {"stage": "SLEEPING", "hardware": {"current": None}},
    "user/building": {"stage": "BUILDING"},
    "user/nostage": {"hardware": {}},
}


class FakeHub(resource.Resource):
    """GET /api/spaces/{owner}/{name}/runtime, answering per space."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.requests = []

    def render_GET(self, request):
        self.requests.append({
            "uri": request.uri.decode(),
            "headers": [
                (name.decode().lower(), value.decode())
                for name, values in request.requestHeaders.getAllRawHeaders()
                for value in values
            ],
        })
        parts = request.path.decode().split("/")
        if len(parts) != 6 or parts[1:3] != ["api", "spaces"] or parts[5] != "runtime":
            request.setResponseCode(404)
            return b'{"error": "not found"}'
        space = parts[3] + "/" + parts[4]
        request.setHeader(b"Content-Type", b"application/json")
        if space == "user/private":
            request.setResponseCode(401)
            return b'{"error": "Invalid credentials in Authorization header"}'
        if space == "user/garbled":
            return b"<html>not json</html>"
        if space == "user/huge":
            return json.dumps({"stage": "RUNNING", "pad": "x" * 100000}).encode()
        if space == "user/stuck":
            return server.NOT_DONE_YET
        if space not in RUNTIME:
            request.setResponseCode(404)
            return b'{"error": "Repository not found"}'
        return json.dumps(RUNTIME[space]).encode()


@defer.inlineCallbacks
def start_hub(testcase, tls=True, identity="good"):
    """A FakeHub on 127.0.0.1 for the test's duration; fires with (hub, site, origin)."""
    hub = FakeHub()
    site = CountingSite(hub)
    origin = yield serve_locally(testcase, site, tls, identity)
    return hub, site, origin


def trusted():
    """The policy that trusts the test CA, as BACKEND_CA_BUNDLE would."""
    return BackendTLSPolicy(pki().ca_pem)


def carrying(headers, secret):
    """The names of the headers whose value holds C{secret}."""
    return [name for name, value in headers if secret in value]


class HubRuntimeTests(TestCase):
    """Spaces with no health path: the Hub's word on the stage, never the app."""

    timeout = 20

    @defer.inlineCallbacks
    def ask(self, space, token=TOKEN, tls=True, timeout=2.0):
        self.hub, self.site, origin = yield start_hub(self, tls=tls)
        self.origin = origin
        check = hub_runtime_check(reactor, origin, space, token, trusted(), timeout)
        result = yield check()
        return result

    @defer.inlineCallbacks
    def test_running_is_up_over_verified_tls(self):
        result = yield self.ask("user/chat-a")
        self.assertEqual(result, CheckResult(True, stage="RUNNING"))
        [request] = self.hub.requests
        self.assertEqual(request["uri"], "/api/spaces/user/chat-a/runtime")
        self.assertIn(("authorization", "Bearer " + TOKEN), request["headers"])
        self.assertEqual(carrying(request["headers"], TOKEN), ["authorization"])
        self.assertNotIn(TOKEN, request["uri"])

    @defer.inlineCallbacks
    def test_other_stages_are_down_with_the_stage(self):
        result = yield self.ask("user/sleepy", tls=False)
        self.assertEqual(result, CheckResult(False, "stage SLEEPING", stage="SLEEPING"))
        result = yield hub_runtime_check(
            reactor, self.origin, "user/building", TOKEN, trusted(), 2.0
        )()
        self.assertEqual(result, CheckResult(False, "stage BUILDING", stage="BUILDING"))

    @defer.inlineCallbacks
    def test_refused_credentials(self):
        result = yield self.ask("user/private")
        self.assertEqual(result, CheckResult(False, "Hub answered 401"))

    @defer.inlineCallbacks
    def test_unknown_space(self):
        result = yield self.ask("user/missing")
        self.assertEqual(result, CheckResult(False, "Hub answered 404"))

    @defer.inlineCallbacks
    def test_bad_json(self):
        result = yield self.ask("user/garbled")
        self.assertEqual(result, CheckResult(False, "Hub answer is not JSON"))

    @defer.inlineCallbacks
    def test_no_stage(self):
        result = yield self.ask("user/nostage")
        self.assertEqual(result, CheckResult(False, "Hub answer has no stage"))

    @defer.inlineCallbacks
    def test_an_answer_over_the_cap_is_not_read(self):
        result = yield self.ask("user/huge")
        self.assertEqual(result, CheckResult(False, "answer over 64 KiB"))

    @defer.inlineCallbacks
    def test_a_hub_that_never_answers(self):
        result = yield self.ask("user/stuck", timeout=0.5)
        self.assertEqual(result, CheckResult(False, "timeout after 0.5s"))

    @defer.inlineCallbacks
    def test_no_token_no_authorization(self):
        result = yield self.ask("user/chat-a", token=None)
        self.assertTrue(result.up)
        names = [name for name, _ in self.hub.requests[0]["headers"]]
        self.assertNotIn("authorization", names)

    @defer.inlineCallbacks
    def test_an_untrusted_hub_gets_no_token(self):
        self.hub, self.site, origin = yield start_hub(self, identity="untrusted")
        result = yield hub_runtime_check(reactor, origin, "user/chat-a", TOKEN, trusted(), 2.0)()
        self.assertEqual(result, CheckResult(False, "TLS: certificate verify failed"))
        self.assertEqual(self.hub.requests, [])

    @defer.inlineCallbacks
    def test_the_spaces_app_is_never_probed(self):
        hub, _, hub_origin = yield start_hub(self)
        app, app_site, app_origin = yield start_backend(self)
        upstream = Upstream(
            url=app_origin, scheme="https", host="localhost",
            port=int(app_origin.rsplit(":", 1)[1]),
            token=TOKEN, space="user/chat-a",
        )
        route = Route(name="chat", upstreams=(upstream,))
        check = check_for(reactor, route, upstream, hub_origin, trusted(), trusted(), 2.0)
        result = yield check()
        self.assertEqual(result, CheckResult(True, stage="RUNNING"))
        self.assertEqual(len(hub.requests), 1)
        self.assertEqual(app_site.connections, 0)
        self.assertEqual(app.requests, [])


class PathProbeTests(TestCase):
    """Routes with a health path: GET it on the upstream; 2xx/3xx is up."""

    timeout = 20

    @defer.inlineCallbacks
    def probe(self, path, timeout=2.0, token_header="authorization", **backend):
        self.backend, self.site, origin = yield start_backend(self, **backend)
        check = path_check(
            reactor, origin, path, TOKEN, trusted(), timeout, token_header=token_header
        )
        self.origin = origin
        result = yield check()
        return result

    @defer.inlineCallbacks
    def test_200_is_up_with_the_token_and_host(self):
        result = yield self.probe("/status/200")
        self.assertEqual(result, CheckResult(True))
        [request] = self.backend.requests
        self.assertEqual(request["uri"], b"/status/200")
        headers = [(name.lower(), value) for name, value in request["headers"]]
        self.assertIn(("authorization", "Bearer " + TOKEN), headers)
        self.assertEqual(carrying(headers, TOKEN), ["authorization"])
        self.assertIn(("host", self.origin.split("://")[1]), headers)

    @defer.inlineCallbacks
    def test_the_token_header_is_a_parameter(self):
        yield self.probe("/status/204", token_header="X-HF-Authorization")
        headers = [(name.lower(), value) for name, value in self.backend.requests[0]["headers"]]
        self.assertEqual(carrying(headers, TOKEN), ["x-hf-authorization"])
        self.assertIn(("x-hf-authorization", "Bearer " + TOKEN), headers)

    @defer.inlineCallbacks
    def test_503_is_down(self):
        result = yield self.probe("/status/503")
        self.assertEqual(result, CheckResult(False, "answered 503"))

    @defer.inlineCallbacks
    def test_a_redirect_is_up_and_not_followed(self):
        result = yield self.probe("/redirect-internal")
        self.assertEqual(result, CheckResult(True))
        self.assertEqual([r["uri"] for r in self.backend.requests], [b"/redirect-internal"])

    @defer.inlineCallbacks
    def test_a_big_body_does_not_matter(self):
        result = yield self.probe("/big?size=1048576")
        self.assertEqual(result, CheckResult(True))

    @defer.inlineCallbacks
    def test_an_upstream_that_never_answers(self):
        started = reactor.seconds()
        result = yield self.probe("/hang", timeout=0.5)
        self.assertEqual(result, CheckResult(False, "timeout after 0.5s"))
        self.assertLess(reactor.seconds() - started, 3)
        yield wait_until(lambda: not self.site.open)  # the connection was closed

    @defer.inlineCallbacks
    def test_a_body_that_stalls_after_its_head(self):
        """The whole probe is bounded, body included; the connection is cut."""
        result = yield self.probe("/sse?n=100&every=5", timeout=0.5)
        self.assertEqual(result, CheckResult(False, "timeout after 0.5s"))
        yield wait_until(lambda: not self.site.open)

    @defer.inlineCallbacks
    def test_connection_refused(self):
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        check = path_check(reactor, "http://127.0.0.1:%d" % number, "/healthz", TOKEN, trusted(), 2)
        result = yield check()
        self.assertEqual(result, CheckResult(False, "connection refused"))

    @defer.inlineCallbacks
    def test_an_untrusted_certificate(self):
        result = yield self.probe("/status/200", identity="untrusted")
        self.assertEqual(result, CheckResult(False, "TLS: certificate verify failed"))
        self.assertEqual(self.backend.requests, [])

    @defer.inlineCallbacks
    def test_a_certificate_for_another_host(self):
        result = yield self.probe("/status/200", identity="wrong_host")
        self.assertEqual(result, CheckResult(False, "TLS: certificate does not match the host"))
        self.assertEqual(self.backend.requests, [])


class SecretTests(TestCase):
    """The token shows up in no log line, repr, snapshot or last_error."""

    timeout = 30

    @defer.inlineCallbacks
    def test_no_token_anywhere(self):
        _, _, origin = yield start_backend(self)
        _, _, untrusted = yield start_backend(self, identity="untrusted")
        _, _, hub = yield start_hub(self)
        closed = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        refused = "http://127.0.0.1:%d" % closed.getHost().port
        yield closed.stopListening()
        checks = [
            path_check(reactor, origin, "/status/503", TOKEN, trusted(), 2),
            path_check(reactor, origin, "/hang", TOKEN, trusted(), 0.3),
            path_check(reactor, origin, "/status/200", TOKEN, trusted(), 2),
            path_check(reactor, refused, "/healthz", TOKEN, trusted(), 2),
            path_check(reactor, untrusted, "/healthz", TOKEN, trusted(), 2),
            hub_runtime_check(reactor, hub, "user/private", TOKEN, trusted(), 2),
            hub_runtime_check(reactor, hub, "user/sleepy", TOKEN, trusted(), 2),
            hub_runtime_check(reactor, hub, "user/garbled", TOKEN, trusted(), 2),
            hub_runtime_check(reactor, untrusted, "user/chat-a", TOKEN, trusted(), 2),
        ]
        healths = [
            ActiveHealth(reactor, check, interval=0.2, name="chat[%d]" % i)
            for i, check in enumerate(checks)
        ]
        with capturedLogs() as events:
            for health in healths:
                health.start()
                self.addCleanup(health.stop)
            yield wait_until(lambda: all(h.checked_at is not None for h in healths), timeout=10)
            for health in healths:
                health.stop()
        self.assertEqual(
            [h.state for h in healths], ["down", "down", "up"] + ["down"] * 6
        )
        for health, check in zip(healths, checks):
            self.assertNotIn(TOKEN, repr(check))
            self.assertNotIn(TOKEN, repr(health))
            self.assertNotIn(TOKEN, json.dumps(health.snapshot()))
            self.assertNotIn(TOKEN, health.last_error or "")
        downs = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertGreaterEqual(len(downs), 8)
        for event in events:
            self.assertNotIn(TOKEN, formatEvent(event))
            self.assertNotIn(TOKEN, repr(event))

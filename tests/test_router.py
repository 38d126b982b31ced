"""The live route table (wighaven.routing.router) with fakes: picking the
upstream, affinity that follows health, targets under a prefix, and
reloads that keep what is unchanged and cut only what was removed."""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from wighaven.config.routes import Route, Upstream
from wighaven.config.trust import NO_PROXY, ONE_HOP
from wighaven.observe.metrics import Metrics
from wighaven.routing.affinity import uploaded_files_from_answer
from wighaven.routing.router import Router, upstream_labels


def upstream(name, weight=1, port=443):
    return Upstream(url="https://%s.example:%d" % (name, port), scheme="https",
                    host="%s.example" % name, port=port, token="tok-" + name, weight=weight)


def route(name="r", names=("a", "b"), **keys):
    return Route(name=name, upstreams=tuple(upstream(n) for n in names), **keys)


def make_router(routes, trust_proxy=NO_PROXY, **options):
    """A Router over C{routes} with no agents, its own clock and metrics."""
    clock = options.pop("clock", None) or Clock()
    metrics = Metrics(clock)
    return Router(routes, clock=clock, make_agent=lambda model, source: None,
                  metrics_for=lambda r: metrics.route(r.name), affinity_secret=b"s" * 32,
                  trust_proxy=trust_proxy, **options)


class FakeRequest:
    def __init__(self, path=b"/", method=b"GET", host=b"gw.example", cookie=None, query=b""):
        self.path = path
        self.uri = path + (b"?" + query if query else b"")
        self.method = method
        self.requestHeaders = Headers({b"host": [host]})
        if cookie:
            self.requestHeaders.setRawHeaders(b"cookie", [cookie])
        self.affinity_cookie = None
        self.channel = FakeChannel()

    def isSecure(self):
        return True

    def getClientAddress(self):
        return None


class FakeChannel:
    def __init__(self):
        self.transport = self
        self.aborted = False

    def abortConnection(self):
        self.aborted = True


class RouterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.metrics = Metrics(self.clock)
        self.agents = []
        self.sources = []
        self.open = []  # the requests under way, as the site would list them

    def router(self, routes):
        def make_agent(model, source):
            self.agents.append(model)
            self.sources.append(source)
            return ("agent", model.host)

        return Router(routes, clock=self.clock, make_agent=make_agent,
                      metrics_for=lambda r: self.metrics.route(r.name),
                      affinity_secret=b"s" * 32, trust_proxy=NO_PROXY, drain_timeout=5,
                      open_requests=lambda: self.open)

    def test_one_catch_all_route_needs_no_lookup(self):
        router = self.router([route(names=("a",))])
        self.assertIs(router.route_for(FakeRequest(host=b"anything")), router.only)
        self.assertIs(router.only.choose(FakeRequest()), router.only.upstreams[0])

    def test_weights_and_health(self):
        live = self.router([route(names=("a", "b"))]).routes[0]
        picks = [live.choose(FakeRequest()).label for _ in range(4)]
        self.assertEqual(sorted(picks), ["a.example", "a.example", "b.example", "b.example"])
        a = live.upstreams[0]
        for _ in range(3):
            a.health.failed("refused")
        self.assertEqual({live.choose(FakeRequest()).label for _ in range(4)}, {"b.example"})
        live.upstreams[1].health.failed("x")
        for _ in range(2):
            live.upstreams[1].health.failed("x")
        # Every upstream down: panic, both are tried again.
        self.assertEqual({live.choose(FakeRequest()).label for _ in range(4)},
                         {"a.example", "b.example"})

    def test_cookie_affinity_follows_health(self):
        live = self.router([route(affinity="cookie")]).routes[0]
        first = FakeRequest()
        bound = live.choose(first)
        cookie = first.affinity_cookie.split(b";")[0]
        for _ in range(5):
            again = FakeRequest(cookie=b"x=1; " + cookie)
            self.assertIs(live.choose(again), bound)
            self.assertIsNone(again.affinity_cookie)  # bound already: no new cookie
        for _ in range(3):
            bound.health.failed("refused")
        moved = FakeRequest(cookie=cookie)
        other = live.choose(moved)
        self.assertIsNot(other, bound)  # its session moves to a healthy one...
        self.assertIsNotNone(moved.affinity_cookie)  # ...and the browser is told

    def test_gradio_sessions_follow_their_replica_and_move_when_it_fails(self):
        live = self.router([route(affinity="gradio")]).routes[0]
        body = b'{"data": [], "session_hash": "s1"}'
        join = FakeRequest(b"/gradio_api/queue/join", b"POST")
        replica = live.choose(join, body)
        for _ in range(4):
            self.assertIs(live.choose(FakeRequest(b"/gradio_api/queue/data",
                                                  query=b"session_hash=s1")), replica)
            self.assertIs(live.choose(FakeRequest(b"/gradio_api/heartbeat/s1")), replica)
        live.learn(b"e:ev1", replica)
        self.assertIs(live.choose(FakeRequest(b"/gradio_api/call/predict/ev1")), replica)
        for _ in range(3):
            replica.health.failed("reset")
        moved = live.choose(FakeRequest(b"/gradio_api/heartbeat/s1"))
        self.assertIsNot(moved, replica)
        self.assertIs(live.choose(FakeRequest(b"/gradio_api/heartbeat/s1")), moved)

    def test_retry_leaves_out_what_was_tried(self):
        live = self.router([route(names=("a", "b", "c"))]).routes[0]
        a, b, c = live.upstreams
        for _ in range(10):
            self.assertIn(live.choose(FakeRequest(), tried=(a,)), (b, c))
        self.assertIn(live.choose(FakeRequest(), tried=(a, b, c)), (a, b, c))

    def test_targets_under_a_prefix(self):
        live = self.router([route(path="/chat")]).routes[0]
        self.assertEqual(live.upstream_target(b"/chat/x?y=1"), b"/x?y=1")
        self.assertEqual(live.upstream_target(b"/chat"), b"/")
        self.assertEqual(live.upstream_target(b"/chat?q"), b"/?q")
        self.assertTrue(live.wants_slash(FakeRequest(b"/chat")))
        self.assertFalse(live.wants_slash(FakeRequest(b"/chat/")))
        self.assertFalse(live.wants_slash(FakeRequest(b"/chat", b"POST")))
        kept = self.router([route(path="/chat", strip_path=False)]).routes[0]
        self.assertEqual(kept.upstream_target(b"/chat/x"), b"/chat/x")
        self.assertFalse(kept.wants_slash(FakeRequest(b"/chat")))

    def test_only_a_small_join_is_read_first(self):
        live = self.router([route(affinity="gradio")]).routes[0]
        join = FakeRequest(b"/gradio_api/queue/join", b"POST")
        join.requestHeaders.setRawHeaders(b"content-length", [b"100"])
        self.assertTrue(live.needs_body(join))
        join.requestHeaders.setRawHeaders(b"content-length", [b"%d" % (65 * 1024)])
        self.assertFalse(live.needs_body(join))
        plain = self.router([route()]).routes[0]
        join.requestHeaders.setRawHeaders(b"content-length", [b"100"])
        self.assertFalse(plain.needs_body(join))

    def test_reload_keeps_unchanged_routes_and_upstreams(self):
        router = self.router([route("keep"), route("change", path="/c")])
        keep, change = router.routes
        made = len(self.agents)
        changes = router.replace([route("keep"), route("change", path="/c", retries=2),
                                  route("new", path="/n", names=("z",))])
        self.assertEqual(changes, {"added": ["new"], "changed": ["change"], "removed": []})
        self.assertIs(router.table.by_name["keep"], keep)
        changed = router.table.by_name["change"]
        self.assertIsNot(changed, change)
        self.assertEqual([u for u in changed.upstreams], list(change.upstreams))  # health kept
        self.assertEqual(len(self.agents), made + 1)  # only the new upstream's agent

    def test_a_removed_route_cuts_what_it_has_open_after_drain_timeout(self):
        router = self.router([route("stay"), route("go", path="/go")])
        request = FakeRequest(b"/go/stream")
        request.live_route = router.table.by_name["go"]
        stay_request = FakeRequest()
        stay_request.live_route = router.table.by_name["stay"]
        self.open = [request, stay_request]
        router.replace([route("stay")])
        self.clock.advance(4.9)
        self.assertFalse(request.channel.aborted)
        self.clock.advance(0.2)
        self.assertTrue(request.channel.aborted)
        self.assertFalse(stay_request.channel.aborted)

    def test_a_changed_route_lets_its_streams_run(self):
        router = self.router([route("r", path="/r")])
        request = FakeRequest(b"/r/stream")
        request.live_route = router.routes[0]
        self.open = [request]
        router.replace([route("r", path="/r", retries=1)])
        self.clock.advance(60)
        self.assertFalse(request.channel.aborted)

    def test_matching_by_host_then_path(self):
        router = self.router([route("any"), route("host", hosts=("a.example.org",)),
                              route("pre", path="/p")])
        self.assertEqual(router.route_for(FakeRequest(b"/p/x", host=b"A.example.org:80")).name,
                         "host")
        self.assertEqual(router.route_for(FakeRequest(b"/p/x")).name, "pre")
        self.assertEqual(router.route_for(FakeRequest(b"/q")).name, "any")

    def test_upstream_labels_are_bounded_and_secret_free(self):
        ups = (upstream("a"), upstream("a"), upstream("b", port=8443))
        self.assertEqual(upstream_labels(ups), ["a.example", "a.example#2", "b.example:8443"])


class ProbeReloadTests(SynchronousTestCase):
    """A reload that changes a route's probe gives its kept upstreams the new one."""

    def test_new_probe_for_a_kept_upstream(self):
        made = []

        class Check:
            def __init__(self, route):
                self.route, self.running = route, False

            def start(self):
                self.running = True

            def stop(self):
                self.running = False

        def make_check(route, model):
            check = Check(route)
            made.append(check)
            return check if route.health_path else None

        router = make_router([route("r", health_path="/a")], make_check=make_check)
        first = list(router.routes[0].upstreams)
        self.assertEqual([c.running for c in made], [True, True])
        router.replace([route("r", health_path="/a", retries=1)])  # probe unchanged
        self.assertEqual(len(made), 2)
        router.replace([route("r", health_path="/b")])
        self.assertEqual(list(router.routes[0].upstreams), first)  # passive health kept
        self.assertEqual([c.running for c in made], [False, False, True, True])
        self.assertEqual([u.active.route.health_path for u in first], ["/b", "/b"])


class GradioUploadTests(SynchronousTestCase):
    """A cookie-less upload carries no session: the join follows the file it names."""

    def test_join_goes_where_its_file_was_uploaded(self):
        live = make_router([route(affinity="gradio")]).routes[0]
        for i in range(6):
            upload = FakeRequest(b"/gradio_api/upload", b"POST")
            replica = live.choose(upload)
            path = "/tmp/gradio/%d/up.txt" % i
            for key in uploaded_files_from_answer(json.dumps([path]).encode()):
                live.learn(key, replica)
            join = json.dumps({"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}],
                               "session_hash": "sess%d" % i}).encode()
            self.assertIs(live.choose(FakeRequest(b"/gradio_api/queue/join", b"POST"), join),
                          replica)
            data = FakeRequest(b"/gradio_api/queue/data", query=b"session_hash=sess%d" % i)
            self.assertIs(live.choose(data), replica)


class ForwardedHostTests(SynchronousTestCase):
    """Hosts match X-Forwarded-Host only when TRUST_PROXY trusts the peer."""

    def router(self, trust):
        return make_router(
            [route("any", names=("a",)), route("chat", hosts=("chat.example.org",))], trust)

    def request(self):
        request = FakeRequest(host=b"internal:7860")
        request.requestHeaders.setRawHeaders(b"x-forwarded-host", [b"Chat.Example.org"])
        request.getClientAddress = lambda: IPv4Address("TCP", "10.0.0.5", 40000)
        return request

    def test_trusted_proxy(self):
        self.assertEqual(self.router(ONE_HOP).route_for(self.request()).name, "chat")

    def test_untrusted_client(self):
        self.assertEqual(self.router(NO_PROXY).route_for(self.request()).name, "any")


class SessionsAcrossReloadTests(SynchronousTestCase):
    def test_a_changed_gradio_route_keeps_its_sessions(self):
        router = make_router([route(affinity="gradio")])
        live = router.routes[0]
        replica = live.choose(FakeRequest(b"/gradio_api/heartbeat/s1"))
        router.replace([route(affinity="gradio", retries=2)])  # changed: a new LiveRoute
        changed = router.routes[0]
        self.assertIsNot(changed, live)
        for _ in range(4):
            self.assertIs(changed.choose(FakeRequest(b"/gradio_api/heartbeat/s1")), replica)

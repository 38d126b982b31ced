"""Changes through the admin API are applied live and drop nothing: an event
stream and a WebSocket stay open, and keep flowing, through 20 changes of
the routes (their own included); with WORKERS=2 every worker serves a new
route within a second of the API's answer."""

import http.client
import json
import os
import re
import ssl
import time

from twisted.internet import defer, task
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.backend import start_backend
from tests.support.client import fetch
from tests.support.gateway import TOKEN
from tests.test_auth_integration import (
    ADMIN_PASSWORD, SECRET_KEY, AuthGateway, private_database,
)

API = "/_gateway/api/v1"
CHANGES = 20


def read_events(port, target, headers, count):
    """The data lines of an event stream, read as they come (at most C{count})."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        assert response.status == 200, response.status
        events = []
        while len(events) < count:
            line = response.fp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                events.append((time.monotonic(), line[6:].strip().decode()))
        return events
    finally:
        conn.close()


def talk(url, headers, rounds, pause):
    """Send and receive C{rounds} messages on one WebSocket, C{pause} seconds apart."""
    from websockets.sync.client import connect

    heard = []
    context = ssl.create_default_context()
    with connect(url, additional_headers=headers, open_timeout=10,
                 ssl=context if url.startswith("wss") else None) as ws:
        for i in range(rounds):
            ws.send("message %d" % i)
            heard.append(ws.recv(timeout=5))
            time.sleep(pause)
    return heard


class LiveChangesTests(unittest.TestCase):
    timeout = 90

    @defer.inlineCallbacks
    def test_a_stream_and_a_websocket_stay_open_through_20_changes(self):
        from tests.support.ws_backend import WebSocketBackend

        backend, _, origin = yield start_backend(self)
        sockets = WebSocketBackend(TOKEN)
        self.addCleanup(sockets.stop)
        gateway = yield AuthGateway(self, origin, ALLOW_PRIVATE_UPSTREAMS="true").start()
        reply = yield gateway.token("admin", ADMIN_PASSWORD)
        admin = {"Authorization": "Bearer " + reply.json()["access_token"]}

        def api(method, path, body=None):
            headers = dict(admin)
            data = None
            if body is not None:
                headers["Content-Type"] = "application/json"
                data = json.dumps(body).encode()
            return gateway.fetch(method, API + path, headers, data)

        for name, url in (("events", origin), ("sockets", sockets.origin)):
            reply = yield api("POST", "/routes", {"name": name, "path": "/" + name,
                                                  "upstreams": [{"url": url, "token": TOKEN}]})
            self.assertEqual(reply.status, 201, reply.body)

        stream = deferToThread(read_events, gateway.port, "/events/sse?n=30&every=0.15",
                               admin, 30)
        socket = deferToThread(talk, "ws://127.0.0.1:%d/sockets/echo" % gateway.port, admin,
                               30, 0.15)
        applied = []
        for i in range(CHANGES):
            yield task.deferLater(reactor, 0.1, lambda: None)
            kind = i % 4
            if kind == 0:  # the stream's own route changes
                reply = yield api("PATCH", "/routes/events", {"retries": i % 3})
            elif kind == 1:  # the WebSocket's own route changes
                reply = yield api("PATCH", "/routes/sockets", {"health_interval": 10 + i})
            elif kind == 2:  # another route comes...
                reply = yield api("POST", "/routes", {"name": "other-%d" % i,
                                                      "path": "/other-%d" % i,
                                                      "upstreams": [{"url": origin}]})
            else:  # ...and goes
                reply = yield api("DELETE", "/routes/other-%d" % (i - 1))
            self.assertIn(reply.status, (200, 201, 204), reply.body)
            applied.append(reply.status)
            check = yield gateway.fetch("GET", "/events/echo", admin)
            self.assertEqual(check.status, 200)  # the next request is served all along
        events = yield stream
        heard = yield socket
        self.assertEqual(len(applied), CHANGES)
        self.assertEqual([text for _, text in events], ["event %d" % i for i in range(30)])
        # Events flowed while the changes were made, not in a burst after them.
        gaps = [b[0] - a[0] for a, b in zip(events, events[1:])]
        self.assertLess(max(gaps), 1.0, gaps)
        self.assertEqual(heard, ["message %d" % i for i in range(30)])


def workers_serving(output, path_pattern):
    """
    The workers (their request ids' 12-hex-digit prefixes, one per process)
    that served a GET of C{path_pattern} (a regular expression) with 200.
    """
    return set(re.findall(r"GET %s 200 .* ([0-9a-f]{12})[0-9a-f]{12}$" % path_pattern,
                          output, re.M))


class WorkersApplyTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def start_workers(self):
        """(a gateway of two workers with AUTH on, an admin's Bearer header, the backend's origin)."""
        from tests.support.gateway import GatewayProcess
        from tests.support.waiting import wait_until

        _, _, origin = yield start_backend(self)
        folder, database_url = private_database(self)
        gateway = GatewayProcess(
            origin, os.path.join(folder, "gateway.log"), args=["--workers", "2"], AUTH="on",
            SECRET_KEY=SECRET_KEY, DATABASE_URL=database_url, ADMIN_USERNAME="admin",
            ADMIN_PASSWORD=ADMIN_PASSWORD, ALLOW_PRIVATE_UPSTREAMS="true")
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        yield wait_until(lambda: gateway.output().count("access control: AUTH on") == 2,
                         timeout=20)
        reply = yield fetch(gateway.port, "POST", "/_gateway/auth/token", {
            "Content-Type": "application/json"},
            json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode())
        bearer = {"Authorization": "Bearer " + reply.json()["access_token"]}
        return gateway, bearer, origin

    @defer.inlineCallbacks
    def serve_in_both(self, gateway, bearer, prefix):
        """GET C{prefix}0, C{prefix}1... (bounded) until both workers have served some: the paths."""
        paths = []
        for i in range(300):
            paths.append("%s%d" % (prefix, i))
            reply = yield fetch(gateway.port, "GET", paths[-1], bearer)
            self.assertEqual(reply.status, 200)
            if len(workers_serving(gateway.output(), re.escape(prefix) + r"\d+")) == 2:
                return paths
        self.fail("one worker took every connection:\n" + gateway.output()[-3000:])

    @defer.inlineCallbacks
    def test_every_worker_serves_a_new_route_within_a_second(self):
        gateway, bearer, origin = yield self.start_workers()
        reply = yield fetch(gateway.port, "POST", API + "/routes", dict(bearer, **{
            "Content-Type": "application/json"}), json.dumps({
                "name": "fresh", "path": "/fresh",
                "upstreams": [{"url": origin, "token": TOKEN}]}).encode())
        self.assertEqual(reply.status, 201, reply.body)
        answered = time.monotonic()
        yield task.deferLater(reactor, 1.0, lambda: None)

        # From a second after the answer on, every request on a new connection, in
        # either worker, is the new route's (bounded: until both have served some).
        for _ in range(300):
            reply = yield fetch(gateway.port, "GET", "/fresh/landed", bearer)
            self.assertEqual(reply.status, 200, (reply.status, time.monotonic() - answered))
            if len(workers_serving(gateway.output(), "/fresh/landed")) == 2:
                break
        else:
            self.fail("one worker took every connection:\n" + gateway.output()[-3000:])
        self.assertEqual(gateway.output().count("stored routes applied"), 2)

    @defer.inlineCallbacks
    def test_the_recent_requests_and_log_lines_are_every_workers(self):
        """
        Whichever worker answers the admin API, the Requests and Logs lists
        hold both workers' exchanges and lines, in order, each once; following
        the log sees the new lines of both, none twice.
        """
        gateway, bearer, _ = yield self.start_workers()
        paths = yield self.serve_in_both(gateway, bearer, "/seen/")
        for round_ in range(100):  # each on a new connection, until both workers have answered
            reply = yield fetch(gateway.port, "GET", API + "/requests?limit=500", bearer)
            self.assertEqual(reply.status, 200, reply.body)
            items = reply.json()["items"]
            ids = [item["id"] for item in items]
            self.assertEqual(ids, sorted(set(ids), reverse=True))
            seen = [item for item in items if item["path"].startswith("/seen/")]
            self.assertEqual(sorted(item["path"] for item in seen), sorted(paths))
            self.assertEqual(len({item["request_id"][:12] for item in seen}), 2)
            # Each exchange reads whole through either worker.
            one = yield fetch(gateway.port, "GET", API + "/requests/%d" % seen[-1]["id"], bearer)
            self.assertEqual(one.status, 200, one.body)
            self.assertEqual(one.json()["path"], seen[-1]["path"])
            answered_by = workers_serving(gateway.output(), re.escape(API) + "/requests(?:/\\d+)?")
            if round_ >= 3 and len(answered_by) == 2:
                break
        else:
            self.fail("the API was answered by one worker only")

        reply = yield fetch(gateway.port, "GET", API + "/logs?text=GET%20/seen/&limit=500", bearer)
        self.assertEqual(reply.status, 200, reply.body)
        page = reply.json()
        lines = " ".join(line["text"] for line in page["items"])
        for path in paths:
            self.assertEqual(len(re.findall(re.escape(path) + r"\b", lines)), 1, path)
        # Following from there: the lines of both workers' new exchanges, each once.
        after, followed = page["last_id"], []
        later = yield self.serve_in_both(gateway, bearer, "/later/")
        for _ in range(50):
            reply = yield fetch(gateway.port, "GET",
                                API + "/logs?text=GET%%20/later/&after=%d" % after, bearer)
            self.assertEqual(reply.status, 200, reply.body)
            body = reply.json()
            followed.extend(reversed(body["items"]))
            self.assertGreaterEqual(body["last_id"], after)
            after = body["last_id"]
            if len(followed) >= len(later):
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        texts = [line["text"] for line in followed]
        self.assertEqual(len(texts), len(later), texts)
        for path in later:
            self.assertEqual(sum(1 for text in texts if re.search(re.escape(path) + r"\b", text)),
                             1, (path, texts))
        ids = [line["id"] for line in followed]
        self.assertEqual(ids, sorted(set(ids)))

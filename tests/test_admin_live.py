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


class WorkersApplyTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_every_worker_serves_a_new_route_within_a_second(self):
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
        reply = yield fetch(gateway.port, "POST", API + "/routes", dict(bearer, **{
            "Content-Type": "application/json"}), json.dumps({
                "name": "fresh", "path": "/fresh",
                "upstreams": [{"url": origin, "token": TOKEN}]}).encode())
        self.assertEqual(reply.status, 201, reply.body)
        answered = time.monotonic()
        yield task.deferLater(reactor, 1.0, lambda: None)

        def workers_serving():
            # A request id starts with its process's own random prefix (12 hex digits).
            return set(re.findall(r"GET /fresh/landed 200 .* ([0-9a-f]{12})[0-9a-f]{12}$",
                                  gateway.output(), re.M))

        # From a second after the answer on, every request on a new connection, in
        # either worker, is the new route's (bounded: until both have served some).
        for _ in range(300):
            reply = yield fetch(gateway.port, "GET", "/fresh/landed", bearer)
            self.assertEqual(reply.status, 200, (reply.status, time.monotonic() - answered))
            if len(workers_serving()) == 2:
                break
        else:
            self.fail("one worker took every connection:\n" + gateway.output()[-3000:])
        self.assertEqual(gateway.output().count("stored routes applied"), 2)

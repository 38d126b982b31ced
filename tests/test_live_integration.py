"""The dashboard and its live feed over real sockets: what a visitor sees of
other visitors' requests (no path, no query string by default), dashboards
that never read what they are sent (dropped, the gateway's memory
bounded, a new one served), and LIVE_MAX_WATCHERS (503 before the
handshake).
"""

import base64
import json
import os
import select
import shutil
import socket
import tempfile
import time

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.support.backend import start_backend
from tests.support.client import _fetch, fetch
from tests.support.gateway import GatewayProcess, start_gateway

LIVE = "/_gateway/live"
# Paths that carry another visitor's secrets: an OAuth code, a Gradio file.
SECRET_TARGETS = ("/login/callback?code=SECRET", "/gradio_api/file=/tmp/secret.png")
SECRET_PARTS = ("SECRET", "secret.png", "file=", "callback", "code=")


def ws_connect(port):
    return connect("ws://127.0.0.1:%d%s" % (port, LIVE), open_timeout=10, compression=None,
                   max_size=None)


def recent(messages):
    return [entry for message in messages for entry in message["recent"]]


class WhatVisitorsSeeTests(unittest.TestCase):
    """
    Requests with secrets in their paths, then what anyone sees: the page
    (server-rendered), the feed's hello, and a stats message carrying two
    more such requests.
    """

    timeout = 30

    @defer.inlineCallbacks
    def seen(self, **settings):
        _, _, origin = yield start_backend(self)
        _, port = yield start_gateway(self, origin, **settings)
        for target in SECRET_TARGETS:
            yield fetch(port, "GET", target)
        page = yield fetch(port, "GET", "/")

        def watch():
            with ws_connect(port) as ws:
                hello = json.loads(ws.recv(timeout=5))
                for target in SECRET_TARGETS:
                    _fetch(port, "GET", target, None, None, 10)
                stats = []
                deadline = time.monotonic() + 5
                while len(recent(stats)) < 2 and time.monotonic() < deadline:
                    stats.append(json.loads(ws.recv(timeout=5)))
                return hello, stats

        hello, stats = yield deferToThread(watch)
        self.assertEqual(len(hello["recent"]), 2, "the hello lists the requests before it")
        self.assertEqual(len(recent(stats)), 2, stats)
        self.assertEqual({e["status"] for e in hello["recent"] + recent(stats)}, {200})
        return page.body.decode("utf-8"), hello, stats

    @defer.inlineCallbacks
    def test_no_path_and_no_query_by_default(self):
        page, hello, stats = yield self.seen()
        for part in SECRET_PARTS:
            self.assertNotIn(part, page)
            self.assertNotIn(part, json.dumps(hello))
            self.assertNotIn(part, json.dumps(stats))
        for entry in hello["recent"] + recent(stats):
            self.assertEqual(set(entry), {"time", "method", "route", "status", "ms"})
            self.assertEqual((entry["method"], entry["route"]), ("GET", "backend"))
        self.assertIn('<td class="c-route">backend</td>', page)
        self.assertIn('"paths":false', page)

    @defer.inlineCallbacks
    def test_paths_without_query_with_show_paths(self):
        page, hello, stats = yield self.seen(DASHBOARD_SHOW_PATHS="true")
        paths = ["/login/callback", "/gradio_api/file=/tmp/secret.png"]
        self.assertEqual([e["path"] for e in hello["recent"]], paths)
        self.assertEqual([e["path"] for e in recent(stats)], paths)
        for path in paths:
            self.assertIn(path, page)
        for text in (page, json.dumps(hello), json.dumps(stats)):
            self.assertNotIn("SECRET", text)
            self.assertNotIn("code=", text)

    @defer.inlineCallbacks
    def test_query_too_when_not_redacted(self):
        page, hello, stats = yield self.seen(DASHBOARD_SHOW_PATHS="true", LOG_REDACT_QUERY="false")
        self.assertEqual([e["path"] for e in recent(stats)], list(SECRET_TARGETS))
        self.assertEqual([e["path"] for e in hello["recent"]], list(SECRET_TARGETS))
        self.assertIn("/login/callback?code=SECRET", page)


def handshake(port, rcvbuf=4096):
    """
    A WebSocket client of the feed that never reads after the 101: its
    receive buffer is small, so the gateway's side fills quickly.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    sock.sendall(
        ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (LIVE, port, key))
        .encode("ascii")
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # one byte at a time: nothing after the head is read
    return sock, head


def cut_off(sock) -> bool:
    """Has the gateway closed or reset this connection? (Without reading it.)"""
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    return bool(poller.poll(0))


class SlowDashboardTests(unittest.TestCase):
    """
    A real `twistd -n wighaven` with dashboards that connect and never read.
    Paths are shown and long (4 KiB), and 40 requests a second go through,
    so each stats message is some 80 KiB: without backpressure each of them
    would take that much more of the gateway's memory every second (after
    the 3 MiB or so the kernel would queue first).
    """

    timeout = 120
    WATCHERS = 10

    @defer.inlineCallbacks
    def setUp(self):
        _, _, origin = yield start_backend(self)
        log_dir = tempfile.mkdtemp(prefix="wighaven-live-")
        self.addCleanup(shutil.rmtree, log_dir, True)
        self.gateway = GatewayProcess(
            origin, os.path.join(log_dir, "gateway.log"),
            DASHBOARD_SHOW_PATHS="true", LIVE_MAX_WATCHERS=str(self.WATCHERS + 2),
        )
        self.addCleanup(self.gateway.stop)
        yield deferToThread(self.gateway.wait_ready)
        self.sockets = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])

    @defer.inlineCallbacks
    def test_dropped_memory_bounded_and_a_new_dashboard_served(self):
        port = self.gateway.port
        long_path = "/echo/" + "p" * 4096

        def scenario():
            for _ in range(self.WATCHERS):
                sock, head = handshake(port)
                self.sockets.append(sock)
                self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
            baseline = self.gateway.rss_kib()
            deadline = time.monotonic() + 40
            sent = 0
            while time.monotonic() < deadline and not all(map(cut_off, self.sockets)):
                second = time.monotonic() + 1
                for i in range(40):
                    status = _fetch(port, "GET", "%s/%d" % (long_path, sent), None, None, 10).status
                    self.assertEqual(status, 200)
                    sent += 1
                time.sleep(max(0.0, second - time.monotonic()))
            took = 40 - (deadline - time.monotonic())
            dropped = sum(map(cut_off, self.sockets))
            growth = self.gateway.peak_rss_kib() - baseline
            # Each dashboard held 64 KiB and a message at most before it was dropped.
            self.assertEqual(dropped, self.WATCHERS, "after %.0f s and %d requests" % (took, sent))
            self.assertLess(growth, 20 * 1024, "%d KiB more after %.0f s" % (growth, took))
            # A dashboard that reads is served, also after the drops (the page reconnects).
            with ws_connect(port) as client:
                self.assertEqual(json.loads(client.recv(timeout=5))["type"], "hello")
                self.assertEqual(json.loads(client.recv(timeout=5))["type"], "stats")

        yield deferToThread(scenario)


class MaxWatchersTests(unittest.TestCase):
    """LIVE_MAX_WATCHERS dashboards are served; the next is answered 503."""

    timeout = 30

    @defer.inlineCallbacks
    def test_one_more_gets_503_before_the_handshake(self):
        _, _, origin = yield start_backend(self)
        _, port = yield start_gateway(self, origin, LIVE_MAX_WATCHERS="3")
        clients = []
        self.addCleanup(lambda: deferToThread(lambda: [c.close() for c in clients]))

        def scenario():
            for _ in range(3):
                clients.append(ws_connect(port))
                self.assertEqual(json.loads(clients[-1].recv(timeout=5))["type"], "hello")
            with self.assertRaises(InvalidStatus) as refused:
                ws_connect(port)
            response = refused.exception.response
            self.assertEqual(response.status_code, 503)
            self.assertEqual(response.headers["Retry-After"], "5")
            self.assertEqual(json.loads(response.body)["error"], "live_feed_full")
            clients.pop().close()

        yield deferToThread(scenario)
        # One left: there is room again.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                client = yield deferToThread(ws_connect, port)
            except InvalidStatus:
                yield deferToThread(time.sleep, 0.05)
                continue
            clients.append(client)
            break
        hello = yield deferToThread(lambda: json.loads(clients[-1].recv(timeout=5)))
        self.assertEqual(hello["type"], "hello")
        self.assertEqual(len(clients), 3)

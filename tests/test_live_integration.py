"""The dashboard and its live feed over real sockets: what a visitor sees of
other visitors' requests (no path, no query string by default).
"""

import json
import time

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from websockets.sync.client import connect

from tests.support.backend import start_backend
from tests.support.client import _fetch, fetch
from tests.support.gateway import start_gateway

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

"""Tests for L{wighaven.observe.recent}: the rings of the last log lines and
the last exchanges. Both stay bounded under ten times their capacity, give
consecutive ids, filter (level minimum, text; route, status class, user)
and page by cursor both ways without duplicates or gaps. Log lines: the
subscribers get each new line, one that raises is dropped without harm,
a failure shows only its message, long texts are cut, secrets are
redacted. Exchanges: credentials in headers are redacted (other headers
and duplicates kept), with or without access control and a route.
"""

import json

from twisted.logger import Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from wighaven.observe.recent import (
    CUT_MARKER,
    MAX_TEXT,
    SECRET_HEADERS,
    LogRing,
    RequestRing,
    exchange_summary,
    redact_headers,
)

TOKEN = b"hf_testtoken_S3cr3t_0123456789abcdef"
LEVEL_NAMES = ["debug", "info", "warn", "error", "critical"]


class Clock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        self.now += 1.0
        return self.now


def logger(ring, namespace="wighaven.test"):
    return Logger(namespace=namespace, observer=ring)


def walk_older(list_page, limit, **filters):
    """Every entry, newest first, by pages of C{limit} with C{before}."""
    seen, cursor, pages = [], None, 0
    while True:
        items, cursor = list_page(before=cursor, limit=limit, **filters)
        pages += 1
        assert len(items) <= limit
        seen.extend(items)
        if cursor is None:
            return seen, pages
        assert pages < 10000


def walk_newer(list_page, limit, start=0, **filters):
    """Every entry after C{start}, oldest first, by pages of C{limit} with C{after}."""
    seen, cursor = [], start
    while True:
        items, next_cursor = list_page(after=cursor, limit=limit, **filters)
        assert len(items) <= limit
        assert items == sorted(items, key=lambda e: -e["id"])  # newest first
        seen.extend(reversed(items))
        if next_cursor == cursor:
            return seen, cursor
        cursor = next_cursor


class LogRingTests(SynchronousTestCase):

    def setUp(self):
        self.clock = Clock()
        self.ring = LogRing(size=50, clock=self.clock)
        self.log = logger(self.ring)

    def emit(self, count, level_of=lambda n: "info"):
        for n in range(count):
            self.log.emit(LogLevel.levelWithName(level_of(n)), "line {n} {word}", n=n,
                          word="Apple" if n % 3 == 0 else "pear")

    def test_bounded_under_ten_times_capacity(self):
        self.emit(500)
        self.assertEqual(len(self.ring), 50)
        items, _ = self.ring.lines(limit=1000)
        self.assertEqual(len(items), 50)
        self.assertEqual([line["id"] for line in items], list(range(500, 450, -1)))
        self.assertEqual(items[0]["text"], "line 499 pear")
        self.assertEqual(self.ring.last_id, 500)

    def test_ids_increase_and_fields(self):
        self.emit(5)
        items, _ = self.ring.lines()
        ids = [line["id"] for line in reversed(items)]
        self.assertEqual(ids, [1, 2, 3, 4, 5])
        line = items[-1]
        self.assertEqual(set(line), {"id", "time", "level", "namespace", "text"})
        self.assertEqual(line["level"], "info")
        self.assertEqual(line["namespace"], "wighaven.test")
        self.assertEqual(line["text"], "line 0 Apple")
        self.assertIsInstance(line["time"], float)
        json.dumps(items)

    def test_time_from_the_event_else_the_clock(self):
        self.ring({"log_format": "x", "log_level": LogLevel.warn, "log_time": 12.5})
        self.ring({"log_format": "y"})
        older, newer = reversed(self.ring.lines()[0])
        self.assertEqual(older["time"], 12.5)
        self.assertEqual(older["level"], "warn")
        self.assertEqual(newer["time"], 1001.0)
        self.assertEqual(newer["level"], "info")
        self.assertEqual(newer["namespace"], "-")

    def test_level_minimum(self):
        self.emit(25, level_of=lambda n: LEVEL_NAMES[n % 5])
        for rank, name in enumerate(LEVEL_NAMES):
            items, _ = self.ring.lines(level=name)
            self.assertEqual(len(items), 5 * (5 - rank))
            self.assertTrue(all(LEVEL_NAMES.index(line["level"]) >= rank for line in items))
        self.assertRaises(ValueError, self.ring.lines, level="loud")

    def test_text_case_insensitive(self):
        self.emit(30)
        items, _ = self.ring.lines(text="aPPLE")
        self.assertEqual([line["text"] for line in items],
                         ["line %d Apple" % n for n in range(27, -1, -3)])
        self.assertEqual(self.ring.lines(text="cherry"), ([], None))

    def test_pages_to_older_without_duplicates_or_gaps(self):
        self.emit(120)  # ids 71..120 kept
        everything, _ = self.ring.lines(limit=50)
        for limit in (1, 7, 10, 49, 50, 200):
            seen, _ = walk_older(self.ring.lines, limit)
            self.assertEqual(seen, everything)
        apples = [line for line in everything if "Apple" in line["text"]]
        for limit in (1, 4, 17):
            seen, _ = walk_older(self.ring.lines, limit, text="apple")
            self.assertEqual(seen, apples)

    def test_follows_newer_without_duplicates_or_gaps(self):
        self.emit(30)
        everything = list(reversed(self.ring.lines(limit=50)[0]))
        for limit in (1, 7, 30, 100):
            seen, cursor = walk_newer(self.ring.lines, limit)
            self.assertEqual(seen, everything)
            self.assertEqual(cursor, 30)
        # Following with a filter: the cursor moves past the lines filtered out.
        seen, cursor = walk_newer(self.ring.lines, 3, text="apple")
        self.assertEqual(seen, [line for line in everything if "Apple" in line["text"]])
        self.assertEqual(cursor, 30)
        self.emit(4)  # ids 31..34, "Apple" at 31 and 34
        items, cursor = self.ring.lines(after=cursor, text="apple")
        self.assertEqual([line["id"] for line in items], [34, 31])
        self.assertEqual(cursor, 34)
        self.assertEqual(self.ring.lines(after=34), ([], 34))

    def test_follower_far_behind_resumes_at_the_oldest_kept(self):
        self.emit(100)
        items, cursor = self.ring.lines(after=10, limit=5)
        self.assertEqual([line["id"] for line in items], [55, 54, 53, 52, 51])
        self.assertEqual(cursor, 55)

    def test_both_cursors_a_window(self):
        self.emit(20)
        items, _ = self.ring.lines(after=5, before=10)
        self.assertEqual([line["id"] for line in items], [9, 8, 7, 6])

    def test_empty_and_bad_limits(self):
        self.assertEqual(self.ring.lines(), ([], None))
        self.assertEqual(self.ring.lines(after=0), ([], 0))
        self.assertEqual(self.ring.last_id, 0)
        self.emit(3)
        self.assertRaises(ValueError, self.ring.lines, limit=0)
        self.assertEqual(self.ring.lines(before=1), ([], None))

    def test_subscribers_get_new_lines(self):
        got, other = [], []
        unsubscribe = self.ring.subscribe(got.append)
        self.ring.subscribe(other.append)
        self.emit(3)
        self.assertEqual([line["id"] for line in got], [1, 2, 3])
        self.assertEqual(got[0]["text"], "line 0 Apple")
        unsubscribe()
        unsubscribe()
        self.emit(1)
        self.assertEqual(len(got), 3)
        self.assertEqual(len(other), 4)

    def test_raising_subscriber_dropped(self):
        got, calls = [], []

        def broken(line):
            calls.append(line)
            raise RuntimeError("socket gone")

        self.ring.subscribe(broken)
        self.ring.subscribe(got.append)
        self.emit(3)
        self.assertEqual(len(calls), 1)
        self.assertEqual([line["id"] for line in got], [1, 2, 3])
        self.assertEqual(len(self.ring), 3)  # nothing logged about it
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_subscriber_that_logs_does_not_recurse(self):
        got = []

        def chatty(line):
            got.append(line["id"])
            self.log.info("sent {id}", id=line["id"])

        self.ring.subscribe(chatty)
        self.emit(2)
        self.assertEqual(got, [1, 3])  # its own lines are kept, not pushed
        self.assertEqual([line["text"] for line in reversed(self.ring.lines()[0])],
                         ["line 0 Apple", "sent 1", "line 1 pear", "sent 3"])

    def test_failure_only_its_message(self):
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("computing {what}", what="ratio")
        [line], _ = self.ring.lines()
        self.assertEqual(line["level"], "critical")
        self.assertEqual(line["text"], "computing ratio: ZeroDivisionError: division by zero")
        self.assertNotIn("Traceback", line["text"])
        json.dumps(line)

    def test_long_lines_cut(self):
        self.log.info("{x}", x="a" * (MAX_TEXT + 1000))
        self.log.info("{x}", x="b" * MAX_TEXT)
        long_one, exact = reversed(self.ring.lines()[0])
        self.assertEqual(long_one["text"], "a" * MAX_TEXT + CUT_MARKER % 1000)
        self.assertEqual(exact["text"], "b" * MAX_TEXT)

    def test_secrets_redacted(self):
        ring = LogRing(secrets=(TOKEN, "pw-Secret", b""))
        log = logger(ring)
        log.info("token {t} and pw-Secret", t=TOKEN.decode())
        try:
            raise ValueError("bad " + TOKEN.decode())
        except ValueError:
            log.failure("oops")
        # A token across the cut: redacted before cutting, so no start of it stays.
        log.info("{x}", x="c" * (MAX_TEXT - 5) + TOKEN.decode() + "d" * 10)
        ring.set_secrets(["new-one"])
        log.info("new-one and pw-Secret")
        texts = [line["text"] for line in reversed(ring.lines()[0])]
        self.assertEqual(texts[0], "token [redacted] and [redacted]")
        self.assertEqual(texts[1], "oops: ValueError: bad [redacted]")
        self.assertTrue(texts[2].startswith("c" * (MAX_TEXT - 5) + "[red"))
        self.assertNotIn(TOKEN.decode()[:5], texts[2])
        self.assertEqual(texts[3], "[redacted] and pw-Secret")

    def test_the_current_tokens_of_a_source_are_redacted_too(self):
        tokens = []
        ring = LogRing(secrets=("pw-Secret",))
        ring.set_secrets_source(lambda: tokens)
        log = logger(ring)
        log.info("kept as fields: {t}", t=TOKEN.decode())  # formatted when read
        log.info("formatted at once: {t!r}", t=object())  # not plain: formatted now
        tokens.append(TOKEN)  # a route made with this token, before anyone read the line
        log.info("after: {t} and pw-Secret", t=TOKEN.decode())
        texts = [line["text"] for line in reversed(ring.lines()[0])]
        self.assertEqual(texts[0], "kept as fields: [redacted]")
        self.assertTrue(texts[1].startswith("formatted at once: <object"))
        self.assertEqual(texts[2], "after: [redacted] and [redacted]")

        def broken():
            raise RuntimeError("the table is being swapped")

        ring.set_secrets_source(broken)  # a source that fails loses no line
        log.info("still {t}", t="here")
        self.assertEqual(ring.lines()[0][0]["text"], "still here")
        ring.set_secrets_source(None)
        log.info("{t}", t=TOKEN.decode())
        self.assertEqual(ring.lines()[0][0]["text"], TOKEN.decode())

    def test_behind_the_log_level_filter(self):
        log = logger(self.ring.filtered("warn"))
        log.debug("d")
        log.info("i")
        log.warn("w")
        log.error("e")
        self.assertEqual([line["text"] for line in self.ring.lines()[0]], ["e", "w"])


class FakeIdentity:
    def __init__(self, user):
        self.user = user


class FakeSeen:
    def __init__(self, identity):
        self.identity = identity


class FakeRoute:
    def __init__(self, name):
        self.name = name


class FakeAddress:
    host = "10.0.0.7"


class FakeRequest:
    """What exchange_summary reads of a GatewayRequest."""

    method = b"POST"
    request_id = b"req-123"
    headers_at = None
    exchange = None

    def __init__(self, request_headers=(), response_headers=()):
        self.requestHeaders = Headers()
        for name, values in request_headers:
            self.requestHeaders.setRawHeaders(name, values)
        self.responseHeaders = Headers()
        for name, values in response_headers:
            self.responseHeaders.setRawHeaders(name, values)

    def getClientAddress(self):
        return FakeAddress()


SECRET_REQUEST_HEADERS = [
    (b"Authorization", [b"Bearer " + TOKEN]),
    (b"Cookie", [b"wh_session=abc", b"theme=dark"]),
    (b"X-API-Key", [b"wh_key_1"]),
    (b"X-HF-Authorization", [b"Bearer hf_client"]),
    (b"Proxy-Authorization", [b"Basic cHJveHk6cHc="]),
    (b"Accept", [b"text/html", b"application/json"]),
    (b"X-Echo", [b"carries " + TOKEN]),
]


class RedactHeadersTests(SynchronousTestCase):

    def test_secret_headers(self):
        self.assertEqual(
            SECRET_HEADERS,
            {b"authorization", b"proxy-authorization", b"cookie", b"set-cookie",
             b"x-hf-authorization", b"x-api-key"},
        )

    def test_values_replaced_others_kept_with_duplicates(self):
        raw = SECRET_REQUEST_HEADERS + [
            (b"set-COOKIE", [b"a=1", b"b=2"]),
            (b"x-api-KEY", [b"wh_other"]),
            ("Authorization", ["Basic x"]),
        ]
        self.assertEqual(redact_headers(raw, [TOKEN]), [
            ["Authorization", "[redacted]"],
            ["Cookie", "[redacted]"],
            ["Cookie", "[redacted]"],
            ["X-API-Key", "[redacted]"],
            ["X-HF-Authorization", "[redacted]"],
            ["Proxy-Authorization", "[redacted]"],
            ["Accept", "text/html"],
            ["Accept", "application/json"],
            ["X-Echo", "carries [redacted]"],
            ["set-COOKIE", "[redacted]"],
            ["set-COOKIE", "[redacted]"],
            ["x-api-KEY", "[redacted]"],
            ["Authorization", "[redacted]"],
        ])


class ExchangeSummaryTests(SynchronousTestCase):

    def test_without_gate_or_route(self):
        request = FakeRequest(
            SECRET_REQUEST_HEADERS,
            [(b"Set-Cookie", [b"wh_session=new", b"x=1"]), (b"Content-Type", [b"text/html"])],
        )
        summary = exchange_summary(request, 401, 0.0125, b"/_gateway/login", secrets=[TOKEN])
        self.assertEqual(summary["id"], None)
        self.assertEqual(summary["time"], None)
        self.assertEqual(summary["request_id"], "req-123")
        self.assertEqual(summary["method"], "POST")
        self.assertEqual(summary["path"], "/_gateway/login")
        self.assertEqual(summary["route"], None)
        self.assertEqual(summary["user"], None)
        self.assertEqual(summary["status"], 401)
        self.assertEqual(summary["duration_ms"], 12.5)
        self.assertEqual(summary["client"], "10.0.0.7")
        shown = dict((name.lower(), value) for name, value in summary["request_headers"])
        for name in ("authorization", "cookie", "x-api-key", "x-hf-authorization",
                     "proxy-authorization"):
            self.assertEqual(shown[name], "[redacted]")
        self.assertIn(["Accept", "text/html"], summary["request_headers"])
        self.assertIn(["Accept", "application/json"], summary["request_headers"])
        self.assertIn(["X-Echo", "carries [redacted]"], summary["request_headers"])
        self.assertEqual(sorted(summary["response_headers"]), [
            ["Content-Type", "text/html"], ["Set-Cookie", "[redacted]"],
            ["Set-Cookie", "[redacted]"],
        ])
        self.assertNotIn(TOKEN.decode(), json.dumps(summary))
        self.assertNotIn("wh_session", json.dumps(summary))

    def test_with_gate_and_route(self):
        request = FakeRequest([(b"User-Agent", [b"curl/8"])])
        request.live_route = FakeRoute("chat")
        request.gate_seen = FakeSeen(FakeIdentity("hf:alice"))
        summary = exchange_summary(request, 200, 0.5, "/chat?x=1", client="203.0.113.9")
        self.assertEqual(summary["route"], "chat")
        self.assertEqual(summary["user"], "hf:alice")
        self.assertEqual(summary["client"], "203.0.113.9")
        self.assertEqual(summary["path"], "/chat?x=1")
        self.assertEqual(summary["request_headers"], [["User-Agent", "curl/8"]])
        json.dumps(summary)

    def test_gate_seen_without_identity(self):
        request = FakeRequest()
        request.gate_seen = FakeSeen(None)
        self.assertEqual(exchange_summary(request, 403, 0, b"/")["user"], None)

    def test_forwarded_answer_headers_absent_unless_captured(self):
        request = FakeRequest(response_headers=[(b"Connection", [b"close"])])
        request.live_route = FakeRoute("chat")
        request.headers_at = 12.0  # the backend answered
        self.assertEqual(exchange_summary(request, 200, 0.1, b"/")["response_headers"], None)

        class Captured:
            response_headers = [["Set-Cookie", "[redacted]"], ["X-Echo", TOKEN.decode()]]

        request.exchange = Captured()
        self.assertEqual(
            exchange_summary(request, 200, 0.1, b"/", secrets=[TOKEN])["response_headers"],
            [["Set-Cookie", "[redacted]"], ["X-Echo", "[redacted]"]],
        )

    def test_cut_before_an_answer(self):
        request = FakeRequest(response_headers=[(b"Content-Type", [b"text/plain"])])
        summary = exchange_summary(request, None, 2.0, b"/upload")
        self.assertEqual(summary["status"], None)
        self.assertEqual(summary["response_headers"], None)


def summary_for(n):
    request = FakeRequest([(b"Cookie", [b"s=%d" % n])])
    if n % 4:
        request.live_route = FakeRoute("route-%d" % (n % 2))
    if n % 5 == 0:
        request.gate_seen = FakeSeen(FakeIdentity("alice"))
    status = [200, 404, 502, None, 201][n % 5]
    return exchange_summary(request, status, 0.001 * n, b"/p/%d" % n)


class RequestRingTests(SynchronousTestCase):

    def setUp(self):
        self.ring = RequestRing(size=40, clock=Clock())

    def record(self, count):
        return [self.ring.record(summary_for(n)) for n in range(count)]

    def test_bounded_under_ten_times_capacity(self):
        self.record(400)
        self.assertEqual(len(self.ring), 40)
        items, _ = self.ring.list(limit=1000)
        self.assertEqual([entry["id"] for entry in items], list(range(400, 360, -1)))
        self.assertEqual(items[0]["path"], "/p/399")

    def test_ids_time_and_get(self):
        summary = summary_for(1)
        first = self.ring.record(summary)
        self.assertIsNone(summary["id"])  # the summary itself is left alone
        self.assertEqual((first["id"], first["time"]), (1, 1001.0))
        self.record(3)
        self.assertEqual(self.ring.get(1), first)
        self.assertEqual(self.ring.get("4")["path"], "/p/2")
        self.assertIsNone(self.ring.get(5))
        self.assertIsNone(self.ring.get(0))
        self.assertIsNone(self.ring.get("nope"))
        self.record(50)
        self.assertIsNone(self.ring.get(1))  # evicted
        self.assertEqual(self.ring.get(54)["id"], 54)
        json.dumps(self.ring.list(limit=40))

    def test_filters(self):
        self.record(40)
        items, _ = self.ring.list(route="route-1", limit=40)
        self.assertEqual(len(items), 20)
        self.assertTrue(all(entry["route"] == "route-1" for entry in items))
        items, _ = self.ring.list(status_class="5xx", limit=40)
        self.assertEqual({entry["status"] for entry in items}, {502})
        self.assertEqual(len(items), 8)
        items, _ = self.ring.list(status_class="2XX", limit=40)
        self.assertEqual({entry["status"] for entry in items}, {200, 201})
        items, _ = self.ring.list(user="alice", limit=40)
        self.assertEqual([entry["path"] for entry in items],
                         ["/p/%d" % n for n in range(35, -1, -5)])
        items, _ = self.ring.list(user="alice", route="route-1", status_class="2xx", limit=40)
        self.assertEqual([entry["path"] for entry in items], ["/p/35", "/p/25", "/p/15", "/p/5"])
        self.assertEqual(self.ring.list(route="none")[0], [])
        self.assertRaises(ValueError, self.ring.list, status_class="6xx")
        self.assertRaises(ValueError, self.ring.list, status_class="ok")

    def test_pages_both_ways_without_duplicates_or_gaps(self):
        self.record(90)  # ids 51..90 kept
        everything, _ = self.ring.list(limit=40)
        for limit in (1, 3, 13, 40):
            seen, _ = walk_older(self.ring.list, limit)
            self.assertEqual(seen, everything)
            seen, cursor = walk_newer(self.ring.list, limit, start=50)
            self.assertEqual(seen, list(reversed(everything)))
            self.assertEqual(cursor, 90)
        fives = [entry for entry in everything if entry["status"] == 502]
        seen, _ = walk_older(self.ring.list, 2, status_class="5xx")
        self.assertEqual(seen, fives)
        seen, _ = walk_newer(self.ring.list, 2, start=50, status_class="5xx")
        self.assertEqual(seen, list(reversed(fives)))

"""The gateway as users run it: a real `twistd -n wighaven` process.

Start-up validation, the memory bounds of streaming (measured on the
gateway process's resident set), and the promise that the token never
shows up in a response or a log line.
"""

import hashlib
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import ROOT, TOKEN, GatewayProcess

MiB = 1024 * 1024
MEMORY_BOUND_KIB = 64 * 1024


def run_twistd(env_overrides, args=()):
    env = {k: v for k, v in os.environ.items() if k not in ("PRIVATE_BACKEND_URL", "HF_TOKEN")}
    env.update(env_overrides)
    env["PYTHONPATH"] = ROOT
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "wighaven", *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
    )


class StartupTests(unittest.TestCase):
    """Missing or bad configuration stops start-up with one clear line."""

    def assertOneLineRefusal(self, env, fragment, args=()):
        result = run_twistd(env, args)
        self.assertNotEqual(result.returncode, 0)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(fragment, lines[0])
        self.assertNotIn("Traceback", lines[0])

    def test_missing_backend_url(self):
        self.assertOneLineRefusal(
            {}, "PRIVATE_BACKEND_URL must be set (the private Space's URL, e.g. https://user-space.hf.space)"
        )

    def test_empty_backend_url(self):
        self.assertOneLineRefusal({"PRIVATE_BACKEND_URL": "  "}, "PRIVATE_BACKEND_URL must be set")

    def test_backend_url_not_http(self):
        self.assertOneLineRefusal({"PRIVATE_BACKEND_URL": "ftp://x.example"}, "http:// or https://")

    def test_backend_url_with_userinfo(self):
        self.assertOneLineRefusal(
            {"PRIVATE_BACKEND_URL": "https://u:p@x.example", "HF_TOKEN": TOKEN}, "user:password@"
        )

    def test_port_in_use_stops_startup(self):
        import socket

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_twistd(
                {"PRIVATE_BACKEND_URL": "https://x.example", "INTERFACE": "127.0.0.1"},
                ["--port", str(port)],
            )
        self.assertEqual(result.returncode, 1)
        self.assertIn("wighaven: cannot listen on 127.0.0.1:%d: Address already in use" % port,
                      result.stdout + result.stderr)

    def test_option_is_validated_like_the_variable(self):
        self.assertOneLineRefusal(
            {"PRIVATE_BACKEND_URL": "https://x.example"}, "UPSTREAM_TIMEOUT",
            args=["--upstream-timeout", "soon"],
        )


def _download(port, target, read_size, stall_after=None, stall_seconds=0.0, on_stall=None):
    """Read a response in C{read_size} pieces; optionally stop reading for a while."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", target)
    resp = conn.getresponse()
    total = 0
    while True:
        block = resp.read(read_size)
        if not block:
            break
        total += len(block)
        if stall_after is not None and total >= stall_after:
            time.sleep(stall_seconds)
            on_stall()
            break
    conn.close()
    return total


def _upload(port, size, chunk=MiB):
    """POST C{size} bytes of a fixed pseudo-random pattern; returns (reply, sha256)."""
    block = hashlib.sha256(b"seed").digest() * (chunk // 32)
    digest = hashlib.sha256()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.putrequest("POST", "/upload")
    conn.putheader("Content-Length", str(size))
    conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    sent = 0
    while sent < size:
        piece = block[: min(chunk, size - sent)]
        conn.send(piece)
        digest.update(piece)
        sent += len(piece)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, digest.hexdigest()


class MemoryTests(unittest.TestCase):
    """Bodies stream through the gateway: its RSS stays flat whatever their size."""

    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, self.backend_site, origin = yield start_backend(self)
        self.log_dir = tempfile.mkdtemp(prefix="wighaven-mem-")
        self.gateway = GatewayProcess(origin, os.path.join(self.log_dir, "gateway.log"))
        self.addCleanup(self.gateway.stop)
        yield deferToThread(self.gateway.wait_ready)
        # Warm up: pool, TLS session and code paths, so the baseline is honest.
        for _ in range(5):
            yield fetch(self.gateway.port, "GET", "/big?size=1048576")
        self.baseline_kib = self.gateway.rss_kib()

    def growth_kib(self):
        return self.gateway.peak_rss_kib() - self.baseline_kib

    def report(self, what, kib):
        sys.stdout.write("\n[memory] %s: gateway RSS grew %.1f MiB (baseline %.1f MiB)\n"
                         % (what, kib / 1024.0, self.baseline_kib / 1024.0))

    @defer.inlineCallbacks
    def test_512mib_download_keeps_rss_flat(self):
        size = 512 * MiB
        started = time.monotonic()
        got = yield deferToThread(_download, self.gateway.port, "/big?size=%d" % size, MiB)
        elapsed = time.monotonic() - started
        self.assertEqual(got, size)
        growth = self.growth_kib()
        self.report("512 MiB download in %.1fs" % elapsed, growth)
        self.assertLess(growth, MEMORY_BOUND_KIB)

    @defer.inlineCallbacks
    def test_client_that_stops_reading_pauses_backend(self):
        size = 512 * MiB
        seen = {}

        def stalled():
            seen["backend_left"] = self.backend_producers_left()
            seen["growth"] = self.growth_kib()

        yield deferToThread(
            _download, self.gateway.port, "/big?size=%d" % size, 64 * 1024,
            stall_after=4 * MiB, stall_seconds=3.0, on_stall=stalled,
        )
        self.report("client stalled mid-download", seen["growth"])
        self.assertLess(seen["growth"], MEMORY_BOUND_KIB)
        # The backend was paused: most of the body was never produced.
        self.assertGreater(seen["backend_left"], size - 128 * MiB)

    def backend_producers_left(self):
        from tests.support import backend as backend_module

        return max(p.left for p in backend_module.live_producers())

    @defer.inlineCallbacks
    def test_300mib_upload_keeps_rss_flat(self):
        size = 300 * MiB
        status, body, digest = yield deferToThread(_upload, self.gateway.port, size)
        self.assertEqual(status, 200)
        import json

        self.assertEqual(json.loads(body), {"length": size, "sha256": digest})
        growth = self.growth_kib()
        self.report("300 MiB upload", growth)
        self.assertLess(growth, MEMORY_BOUND_KIB)


    @defer.inlineCallbacks
    def test_slow_backend_slows_the_uploading_client(self):
        """The backend stops reading for 3 s: the client waits, the gateway holds no pile."""
        self.backend_site.stall_uploads_for = 3.0
        size = 200 * MiB
        started = time.monotonic()
        status, body, digest = yield deferToThread(_upload, self.gateway.port, size)
        elapsed = time.monotonic() - started
        self.assertEqual(status, 200)
        import json

        self.assertEqual(json.loads(body), {"length": size, "sha256": digest})
        self.assertGreater(elapsed, 2.5)
        growth = self.growth_kib()
        self.report("200 MiB upload to a backend stalled 3 s", growth)
        self.assertLess(growth, MEMORY_BOUND_KIB)


class SecretTests(unittest.TestCase):
    """The token reaches the backend and nothing else: no response, no log line."""

    timeout = 120

    @defer.inlineCallbacks
    def test_token_never_in_responses_or_logs(self):
        backend, _, origin = yield start_backend(self)
        log_dir = tempfile.mkdtemp(prefix="wighaven-secret-")
        gateway = GatewayProcess(
            origin, os.path.join(log_dir, "gateway.log"), LOG_LEVEL="debug", UPSTREAM_TIMEOUT="0.5"
        )
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        port = gateway.port
        seen = []
        for method, target in [
            ("GET", "/cookies"), ("GET", "/gzip"), ("GET", "/redirect-internal"),
            ("GET", "/status/500"), ("GET", "/hang"), ("GET", "/"), ("GET", "/gateway-health"),
            ("GET", "/_gateway/x"), ("TRACE", "/"), ("POST", "/upload"), ("GET", "/die"),
        ]:
            try:
                reply = yield fetch(port, method, target, body=b"x" if method == "POST" else None)
                seen.append(repr(reply.headers).encode() + reply.body)
            except http.client.IncompleteRead as e:  # /die breaks off on purpose
                seen.append(e.partial)
            except ConnectionResetError:
                pass
        seen.append((yield raw(port, b"GET @x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")))
        seen.append((yield raw(port, b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n")))

        # The backend did get the token on every forwarded request.
        auth = [v for r in backend.requests for n, v in r["headers"] if n.lower() == "authorization"]
        self.assertTrue(auth)
        self.assertEqual(set(auth), {"Bearer " + TOKEN})

        yield deferToThread(gateway.stop)
        log = gateway.output()
        self.assertIn("GET /cookies 200", log)
        self.assertIn("did not answer in time", log)
        for blob in seen:
            self.assertNotIn(TOKEN.encode(), blob)
        self.assertNotIn(TOKEN, log)
        self.assertNotIn(TOKEN[3:], log)

    @defer.inlineCallbacks
    def test_log_level_error_silences_access_lines(self):
        _, _, origin = yield start_backend(self)
        log_dir = tempfile.mkdtemp(prefix="wighaven-level-")
        gateway = GatewayProcess(origin, os.path.join(log_dir, "gateway.log"), LOG_LEVEL="error")
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        reply = yield fetch(gateway.port, "GET", "/cookies")
        self.assertEqual(reply.status, 200)
        yield deferToThread(gateway.stop)
        log = gateway.output()
        self.assertNotIn("GET /cookies", log)
        self.assertNotIn("listening on", log)


def _open_stream(port, target):
    """Start reading a response; returns (connection, response)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", target)
    return conn, conn.getresponse()


class DrainTests(unittest.TestCase):
    """SIGTERM: stop accepting, finish what is in flight, exit 0."""

    timeout = 120
    ARGS = ()  # extra twistd options

    @defer.inlineCallbacks
    def start(self, **settings):
        self.backend, _, origin = yield start_backend(self)
        log_dir = tempfile.mkdtemp(prefix="wighaven-drain-")
        self.gateway = GatewayProcess(
            origin, os.path.join(log_dir, "gateway.log"), args=self.ARGS, **settings
        )
        self.addCleanup(self.gateway.stop)
        yield deferToThread(self.gateway.wait_ready)

    def connect_refused(self):
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.gateway.port), timeout=2).close()
        except (ConnectionRefusedError, ConnectionResetError):
            # Reset: it was in the listening socket's queue when that closed, never taken.
            return True
        return False

    @defer.inlineCallbacks
    def test_streams_in_flight_finish_then_exit_0(self):
        yield self.start()
        port = self.gateway.port
        # An idle keep-alive connection and a busy one with a 2.4 s event stream.
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        idle.request("GET", "/gateway-health")
        idle.getresponse().read()
        conn, stream = yield deferToThread(_open_stream, port, "/sse?n=9&every=0.3")
        first = yield deferToThread(stream.read1, 100)
        self.assertIn(b"event 0", first)
        started = time.monotonic()
        self.gateway.proc.send_signal(signal.SIGTERM)

        refused = yield deferToThread(_poll, self.connect_refused, 2.0)
        self.assertTrue(refused, "still accepting after SIGTERM")
        health = yield deferToThread(_poll_health, idle)
        self.assertIn(health, ("closed", 503))

        rest = yield deferToThread(stream.read)
        conn.close()
        self.assertEqual((first + rest).count(b"data: event"), 9)
        code = yield deferToThread(self.gateway.proc.wait, 30)
        elapsed = time.monotonic() - started
        self.assertEqual(code, 0, self.gateway.output())
        self.assertGreater(elapsed, 2.0)
        self.assertLess(elapsed, 10.0)

    @defer.inlineCallbacks
    def test_drain_timeout_cuts_what_is_left(self):
        yield self.start(DRAIN_TIMEOUT="1")
        conn, stream = yield deferToThread(_open_stream, self.gateway.port, "/sse?n=1000&every=0.2")
        yield deferToThread(stream.read1, 100)
        started = time.monotonic()
        self.gateway.proc.send_signal(signal.SIGTERM)
        code = yield deferToThread(self.gateway.proc.wait, 30)
        self.assertEqual(code, 0, self.gateway.output())
        self.assertLess(time.monotonic() - started, 5.0)
        with self.assertRaises(http.client.IncompleteRead):
            yield deferToThread(stream.read)
        conn.close()

    @defer.inlineCallbacks
    def test_second_sigterm_exits_at_once(self):
        yield self.start(DRAIN_TIMEOUT="60")
        conn, stream = yield deferToThread(_open_stream, self.gateway.port, "/sse?n=1000&every=0.2")
        yield deferToThread(stream.read1, 100)
        self.gateway.proc.send_signal(signal.SIGTERM)
        yield deferToThread(time.sleep, 0.5)
        self.assertIsNone(self.gateway.proc.poll())  # draining, not gone
        started = time.monotonic()
        self.gateway.proc.send_signal(signal.SIGTERM)
        code = yield deferToThread(self.gateway.proc.wait, 10)
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual(code, 1)
        conn.close()


class WorkersDrainTests(DrainTests):
    """
    The same drain with two workers: SIGTERM to the supervisor drains every
    worker (the stream runs to its end on whichever worker serves it), the
    port refuses new connections, and the supervisor exits as one process
    would; a second SIGTERM ends all at once.
    """

    ARGS = ("--workers", "2")


def _poll(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _poll_health(conn):
    """Ask an open keep-alive connection for health: its status, or 'closed'."""
    try:
        conn.request("GET", "/gateway-health")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (http.client.HTTPException, OSError):
        return "closed"

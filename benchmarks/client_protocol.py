#!/usr/bin/env python3
"""The upstream client alone: Twisted's Agent against wighaven.proxy.upstream_protocol.

Runs N sequential GETs, then M more with C in flight, of a 1 KiB body from a
local backend on 127.0.0.1 (nginx when it is installed, else a canned-answer
Python server), through

  (a) Twisted's Agent + HTTPConnectionPool + readBody, and
  (b) UpstreamProtocol in the same kind of pool, connections taken with
      take_idle (new_connection only when none is idle),

and prints requests/s and CPU microseconds per request: the user+system
time of this process (the client only; the backend is another process)
over each run, divided by its requests.

Usage, from the project root:

    python benchmarks/client_protocol.py
    python benchmarks/client_protocol.py --sequential 2000 --concurrent 10000 --in-flight 64
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet import defer, reactor  # noqa: E402
from twisted.web.client import URI, Agent, HTTPConnectionPool, readBody  # noqa: E402
from twisted.web.http_headers import Headers  # noqa: E402

from wighaven.proxy.upstream_protocol import new_connection, take_idle, upstream_pool  # noqa: E402

# Twisted's own readBody warns about the transport of Agent's responses.
warnings.filterwarnings("ignore", "Using readBody with a transport", DeprecationWarning)
BODY_SIZE = 1024
NGINX_CONF = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
    uwsgi_temp_path {dir}; scgi_temp_path {dir};
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "{body}"; }}
    }}
}}
"""
# The fallback backend: answers every request head it reads with the same 1 KiB.
CANNED = r"""
import asyncio, sys
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % {size} + b"x" * {size}
class Canned(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        heads = self.buffer.count(b"\r\n\r\n")
        if heads:
            self.buffer = self.buffer[self.buffer.rindex(b"\r\n\r\n") + 4:]
            self.transport.write(ANSWER * heads)
async def main():
    server = await asyncio.get_running_loop().create_server(Canned, "127.0.0.1", {port})
    await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_backend(port: int, workdir: str):
    """(process, name) of a backend answering 1 KiB on 127.0.0.1:port."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx:
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=workdir, port=port, body="x" * BODY_SIZE))
        log = os.path.join(workdir, "error.log")
        argv, name = [nginx, "-p", workdir, "-c", conf, "-e", log], "nginx"
    else:
        argv, name = [sys.executable, "-c", CANNED.format(port=port, size=BODY_SIZE)], "python canned"
    process = subprocess.Popen(argv)
    for _ in range(100):  # at most 5 s
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, name
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("benchmarks: the backend did not start")


class Run:
    """How many requests are left, and how many went wrong."""

    def __init__(self, requests: int):
        self.left = requests
        self.errors = 0

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class AgentWorker:
    """(a): one request at a time through Agent, readBody."""

    def __init__(self, agent, url, host, run):
        self.agent, self.url, self.headers, self.run = agent, url, Headers({b"host": [host]}), run

    @defer.inlineCallbacks
    def go(self):
        while self.run.take():
            try:
                response = yield self.agent.request(b"GET", self.url, self.headers)
                body = yield readBody(response)
                if response.code != 200 or len(body) != BODY_SIZE:
                    self.run.errors += 1
            except Exception:
                self.run.errors += 1


class ProtocolWorker:
    """(b): one request at a time, the next sent from response_done (the
    worker is its own sink: no Deferred per request)."""

    def __init__(self, pool, key, endpoint, host, run):
        self.pool, self.key, self.endpoint, self.run = pool, key, endpoint, run
        self.headers = [(b"Host", [host])]
        self.finished = defer.Deferred()
        self.status = self.size = 0

    def go(self):
        self.next()
        return self.finished

    def next(self):
        if not self.run.take():
            self.finished.callback(None)
            return
        connection = take_idle(self.pool, self.key)
        if connection is None:
            d = new_connection(self.pool, self.key, self.endpoint)
            d.addCallbacks(self.send, self.connect_failed)
        else:
            self.send(connection)

    def send(self, connection):
        self.status = self.size = 0
        connection.send(b"GET", b"/", self.headers, None, self)

    def connect_failed(self, failure):
        self.run.errors += 1
        self.next()

    def response_head(self, status, reason, headers):
        self.status = status

    def response_body(self, data):
        self.size += len(data)

    def response_done(self):
        if self.status != 200 or self.size != BODY_SIZE:
            self.run.errors += 1
        self.next()

    def response_failed(self, reason):
        self.run.errors += 1
        self.next()


@defer.inlineCallbacks
def measure(workers):
    """Seconds and CPU seconds for C{workers} to go through their run."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    yield defer.gatherResults([w.go() for w in workers])
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return seconds, used


@defer.inlineCallbacks
def bench(kind, port, phases):
    """Rows of (client, phase, requests, errors, seconds, cpu seconds)."""
    origin = b"http://127.0.0.1:%d" % port
    uri = URI.fromBytes(origin + b"/")
    host = uri.netloc
    if kind == "protocol":
        pool = upstream_pool(reactor)
    else:
        pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = max(in_flight for _, _, in_flight in phases)
    agent = Agent(reactor, pool=pool)
    endpoint = agent._getEndpoint(uri)
    key = (uri.scheme, uri.host, uri.port)
    rows = []
    for phase, requests, in_flight in phases:
        run = Run(requests)
        if kind == "protocol":
            workers = [ProtocolWorker(pool, key, endpoint, host, run) for _ in range(in_flight)]
        else:
            workers = [AgentWorker(agent, origin + b"/", host, run) for _ in range(in_flight)]
        seconds, cpu = yield measure(workers)
        rows.append((kind, phase, requests, run.errors, seconds, cpu))
    yield pool.closeCachedConnections()
    return rows


CLIENTS = {
    "agent": "(a) Agent + pool + readBody",
    "protocol": "(b) UpstreamProtocol + pool + take_idle",
}


@defer.inlineCallbacks
def main(args):
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="wighaven-client-bench-")
    process, backend = start_backend(port, workdir)
    try:
        phases = [("warm-up", args.warmup, args.in_flight),
                  ("sequential", args.sequential, 1),
                  ("concurrent x%d" % args.in_flight, args.concurrent, args.in_flight)]
        rows = []
        for kind in ("agent", "protocol"):
            rows += (yield bench(kind, port, phases))
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    print("backend: %s on 127.0.0.1:%d, %d-byte body" % (backend, port, BODY_SIZE))
    print("| client | phase | requests | errors | requests/s | CPU us/request |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, phase, requests, errors, seconds, cpu in rows:
        if phase != "warm-up":
            print("| %s | %s | %d | %d | %s | %.0f |" % (
                CLIENTS[kind], phase, requests, errors, "{:,.0f}".format(requests / seconds),
                cpu / requests * 1e6))


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=2000, help="GETs one after the other")
    parser.add_argument("--concurrent", type=int, default=10000, help="GETs with --in-flight at once")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=500)
    return parser.parse_args()


if __name__ == "__main__":
    options = arguments()
    failures = []
    main(options).addErrback(failures.append).addBoth(lambda _: reactor.stop())
    reactor.run()
    if failures:
        failures[0].printTraceback()
        sys.exit(1)

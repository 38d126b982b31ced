#!/usr/bin/env python3
"""The forwarding path's own cost, without sockets: microseconds of Python per
forwarded request, steady enough to compare small changes.

Loaded machines make wrk figures swing by a tenth or more from run to run;
this drives the whole gateway (GatewaySite, channel, forwarding resource,
BackendAgent, UpstreamProtocol, pool) in one process over StringTransports:
a keep-alive client connection sends GET /small again and again, and the
backend's answer (nginx's head for a 1 KiB file) is fed to the pooled
upstream connection. No system call is made, so the figure is the Python
work per request alone; the kernel's share comes on top in real runs.

Usage, from the project root:

    python benchmarks/inprocess.py                  # the working tree
    python benchmarks/inprocess.py /tmp/base        # another tree
    python benchmarks/inprocess.py --profile 25     # and cProfile's top 25 (tottime)
    python benchmarks/inprocess.py --auth jwt       # AUTH=on, a Bearer JWT on each request
                                                    # (and the recent exchanges kept, as then)
    python benchmarks/inprocess.py --auth key       # AUTH=on, an X-API-Key on each request

Bounded: --requests requests (default 20,000) after 2,000 of warm-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# This directory holds profile.py, which would shadow the standard library's.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
import cProfile  # noqa: E402
import pstats  # noqa: E402

REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:7860\r\nUser-Agent: wrk\r\n\r\n"
BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 22:40:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 1024\r\n"
    b"Last-Modified: Tue, 01 Dec 2026 22:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "674cdc20-400"\r\nAccept-Ranges: bytes\r\n\r\n' + BODY
)


def access_control(folder):
    """(the path of a store with one user and an API key of it, that key)."""
    from wighaven.auth import keys
    from wighaven.store import SqliteStore

    path = os.path.join(folder, "bench.sqlite3")
    setup = SqliteStore.open(path, sync=True)
    user_id = setup.add_user("bench", roles=["team"])
    key_id, key, digest = keys.new_key()
    setup.add_key(key_id, user_id, digest)
    setup.close()
    return path, key


def build(tree, auth=None):
    """(send one request, its check) over a site of the gateway in C{tree};
    C{auth}: None, or AUTH=on with a "jwt" or "key" on every request."""
    sys.path.insert(0, os.path.abspath(tree))
    from twisted.internet.address import IPv4Address
    from twisted.internet.defer import succeed
    from twisted.internet.testing import MemoryReactorClock, StringTransport

    from wighaven.config.settings import load_config
    from wighaven.run.service import build_site
    from wighaven.proxy.tls import BackendTLSPolicy
    from wighaven.proxy.upstream import BackendAgent
    from wighaven.proxy.upstream_protocol import upstream_pool

    class Backend:
        """An endpoint whose connections are StringTransports."""

        def __init__(self):
            self.connections = []

        def connect(self, factory):
            connection = factory.buildProtocol(None)
            connection.makeConnection(StringTransport())
            self.connections.append(connection)
            return succeed(connection)

    clock = MemoryReactorClock()
    clock.advance(time.time())  # tokens carry real times
    env = {"PRIVATE_BACKEND_URL": "http://backend", "HF_TOKEN": "hf_x", "LOG_LEVEL": "warn"}
    control = None
    request = REQUEST
    if auth is not None:
        import tempfile

        from wighaven.auth.control import AccessControl
        from wighaven.store import SqliteStore

        path, key = access_control(tempfile.mkdtemp(prefix="wighaven-bench-"))
        env.update(AUTH="on", SECRET_KEY="bench-secret-key-0123456789abcdefghij",
                   DATABASE_URL="sqlite:///" + path)
    config = load_config(env)
    if auth is not None:
        control = AccessControl(config.auth, SqliteStore.open(path, clock), clock)
        user = control.view.users[1]
        credential = (b"X-API-Key: " + key.encode() if auth == "key" else
                      b"Authorization: Bearer " + control.access_tokens.issue(
                          "bench", 3600, uid=user["id"], ver=user["token_version"]).encode())
        request = REQUEST.replace(b"\r\n\r\n", b"\r\n" + credential + b"\r\n\r\n")
    pool = upstream_pool(clock)
    agent = BackendAgent(clock, b"http://backend", pool, BackendTLSPolicy())
    backend = agent.endpoint = Backend()
    site = build_site(config, agent, clock, control=control)
    if control is not None and hasattr(site, "keep_recent_requests"):
        # As the gateway does with AUTH on: the admin panel's recent exchanges.
        site.keep_recent_requests()
    address = IPv4Address("TCP", "127.0.0.1", 7860)
    channel = site.buildProtocol(address)
    client = StringTransport(hostAddress=address, peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
    channel.makeConnection(client)

    def one():
        channel.dataReceived(request)
        upstream = backend.connections[-1]
        upstream.transport.clear()
        upstream.dataReceived(RESPONSE)
        clock.advance(0)  # what a tree puts off to the next reactor turn
        answer = client.value()
        client.clear()
        return answer

    # The threads' pools stopped (no reactor here to take their answers).
    one.close = ((lambda: (control.passwords.close(), control.store.close()))
                 if control is not None else (lambda: None))
    return one, backend


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", nargs="?", default=".")
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--profile", type=int, default=0, help="show cProfile's top N functions")
    ap.add_argument("--auth", choices=("jwt", "key"), help="AUTH=on, this credential on each request")
    args = ap.parse_args()
    one, backend = build(args.tree, args.auth)
    for _ in range(2000):
        answer = one()
    if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(BODY):
        sys.exit("inprocess: unexpected answer %r" % answer[:200])
    if len(backend.connections) != 1:
        sys.exit("inprocess: the upstream connection was not reused")
    best = None
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(args.requests):
            one()
        took = (time.perf_counter() - start) / args.requests * 1e6
        best = took if best is None else min(best, took)
    print("tree %s%s: %.1f us of Python per forwarded request (best of 3 x %d)"
          % (args.tree, " AUTH=on with a %s" % args.auth if args.auth else "", best, args.requests))
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.requests // 4):
            one()
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    one.close()


if __name__ == "__main__":
    main()

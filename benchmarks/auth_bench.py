#!/usr/bin/env python3
"""What access control costs on the forwarding path, and whether a flood of
logins can starve it. Two parts, one run.

1. The comparison: three gateways from the same tree, all forwarding to the
   same nginx backend (bench.py's configuration, local_backend.py), loaded
   in turn round by round:

     A  AUTH off, PRIVATE_BACKEND_URL only (the yardstick);
     B  AUTH=on, every request carrying `Authorization: Bearer <JWT>`: one
        access token from the gateway's own POST /_gateway/auth/token for the
        user ADMIN_USERNAME/ADMIN_PASSWORD makes at start (JWT_TTL long
        enough for the run);
     C  AUTH=on, every request carrying `X-API-Key: wh_...`: a key made for
        that user through the store, synchronous, from this script
        (keys.new_key() -> store.add_key()) after the gateway started, so
        the gateway takes it in by its revision file as it would from the
        console command.

   B and C each have a SQLite database of their own in the run's temporary
   folder (DATABASE_URL=sqlite:////...), a SECRET_KEY made for the run, and
   ACCESS left at its default (signed_in), so every request goes through
   the gate (wighaven/auth/gate.py, from ForwardResource._refusal) and the
   credential is taken out before the request goes upstream. Before the
   rounds the script checks that A answers GET /small 200 without any
   credential, and that B and C answer 200 with theirs and 401 without, so
   what is measured is authenticated forwarding, not refusals; after the
   rounds it reports any non-2xx answer or socket error wrk counted.

   Load: wrk as bench.py's "small" scenario (GET /small, 1 KiB answers, 1
   thread, --connections 64), the credential given with -H. Round n starts
   at gateway n mod 3 (as routes_bench.py), so none is always first.
   Figures are medians over rounds: requests/s, p50, p99, and CPU
   microseconds per request (the gateway process's user + system time over
   its runs, from /proc, divided by its requests). Printed: B/A and C/A of
   throughput (the target: at least 0.9 each) and of CPU per request, with
   the spread of the per-round ratios. On a small shared machine the ratio
   of two processes swings by up to a tenth from run to run: a ratio within
   0.1 of the floor is flagged as such.

2. The flood ("a login flood cannot starve forwarding"): one more AUTH=on
   gateway. wrk loads it with a modest load (--flood-connections 8, 1
   thread, the Bearer JWT) for --duration seconds, alternately with no
   flood and while this script sends --flood-rate (50) POST
   /_gateway/auth/token per second, paced (open loop: one every 1/rate s,
   whatever the answers), at most --flood-in-flight (32) at once (a login
   due while that many are pending is skipped and counted, never queued
   here). --flood-wrong (5) of every --flood-rate have a wrong password,
   for varied users (made through the store before start) from varied
   loopback addresses (127.0.2.x, bound as the source address): the
   throttle counts failures per account AND per client address, and after
   5 of either it answers 429 without any Argon2 work; failures from
   127.0.0.1 would soon have it refuse the right logins too, so each
   (user, address) pair gets at most 4 failures over the run and the
   right logins (ADMIN_USERNAME's) come from 127.0.0.1, which never fails.
   The flood starts 1 s before wrk (Argon2's threads busy) and stops when
   wrk ends; its pending logins are waited for before the next phase. The
   order alternates per round (quiet, flood, then flood, quiet). Printed
   side by side: req/s, p50, p90, p99 of the forwarded requests, and the
   gateway's CPU (cores) in each phase; the logins' own latency (p50, p90,
   p99, max) and how many got each status (200, 401, 429, ...), beside that
   of a few logins one at a time with no load.

Usage, from the project root (needs nginx and wrk, and bench.py: see run.py):

    python benchmarks/auth_bench.py                          # both parts
    python benchmarks/auth_bench.py --rounds 5 --duration 5 --flood-rounds 3
    python benchmarks/auth_bench.py --no-flood               # only part 1
    python benchmarks/auth_bench.py --flood                  # only part 2
    python benchmarks/run.py --auth                          # both, JSON in results/

The figures are written as JSON to --json, or else to
benchmarks/results/<date>-auth.json (<date>-auth-flood.json with --flood).
Every gateway runs from its tree (--tree, default this project), first on
PYTHONPATH and as its working directory (nothing installed is used; checked
before the rounds); the JSON records the tree's commit and its changed files
under wighaven/, and a warning is printed (and tree_changed_during_run set)
when its sources changed while the run went on. No secret (the JWT, the key,
the passwords) is written to the JSON. Loops are bounded; everything is on 127.0.0.1 (and 127.0.2.x
for the wrong logins' source addresses); the processes and the temporary
folder are cleaned up at the end (the folder is kept, with the logs, when
the run stops short).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import http.client
import json
import math
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, HERE)
from local_backend import gateway_argv, load_bench, start_backend  # noqa: E402  (not a package)
from routes_bench import check_tree, cpu_seconds  # noqa: E402

FLOOR = 0.9  # B/A and C/A throughput, the target
NOISE = 0.1  # how far two processes' ratio swings on a small shared machine
USERNAME = "bench-admin"
PASSWORD = "bench-password-" + secrets.token_hex(4)
WRONG_USER = "bench-wrong-%d"
MAX_FAILURES_PER_PAIR = 4  # the throttle's free failures are 5 per account and per address
# Settings of the environment a gateway must not inherit from ours.
_CLEARED = ("WIGHAVEN_CONFIG", "AUTH", "ACCESS", "DATABASE_URL", "SECRET_KEY",
            "SECRET_KEY_PREVIOUS", "JWT_TTL", "ADMIN_USERNAME", "ADMIN_PASSWORD",
            "ADMIN_PASSWORD_HASH", "METRICS_TOKEN", "TRUST_PROXY")


# wrk, with headers.

def run_wrk(bench, url, connections, duration, headers=(), timeout_s=10):
    """wrk -t1 at C{url} with C{headers} (-H each); bench.py's figures plus p75 and p90."""
    argv = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % duration, "--latency",
            "--timeout=%ds" % timeout_s]
    for header in headers:
        argv += ["-H", header]
    argv.append(url)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120).stdout
    result = bench.parse_wrk(out)
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    for pct in ("75", "90"):
        m = re.search(r"\s%s(?:\.000)?%%\s+([\d.]+)(us|ms|s)" % pct, out)
        if m:
            result["p%s_ms" % pct] = float(m.group(1)) * unit[m.group(2)]
    return result


# Talking to a gateway.

def http_call(port, method, path, headers=None, body=None, source="127.0.0.1", timeout=30):
    """(status, body bytes) of one request to the gateway on C{port}, from C{source}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def login(port, username, password, source="127.0.0.1"):
    """(status, the answer's JSON or None) of POST /_gateway/auth/token."""
    status, body = http_call(port, "POST", "/_gateway/auth/token",
                             {"Content-Type": "application/json"},
                             json.dumps({"username": username, "password": password}), source)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def header_dict(header):
    name, _, value = header.partition(":")
    return {name.strip(): value.strip()}


def expect(port, name, header, small):
    """Exit unless GET /small answers the backend's 1 KiB with C{header} and 401 without."""
    status, body = http_call(port, "GET", "/small", header_dict(header) if header else None)
    if status != 200 or body != small:
        sys.exit("auth_bench: gateway %s answered GET /small %s with %d (%d bytes), not the "
                 "backend's 200" % (name, "with " + header.split(":")[0] if header
                                    else "without a credential", status, len(body)))
    if header:
        status, _ = http_call(port, "GET", "/small")
        if status != 401:
            sys.exit("auth_bench: gateway %s answered GET /small without a credential with %d, "
                     "not 401" % (name, status))
        return {"with_credential": 200, "without": 401}
    return {"without": 200}


# The gateways.

class Gateways:
    """The run's temporary folder, its nginx backend, and the gateways started in it."""

    def __init__(self, bench, tree, prefix):
        self.bench = bench
        self.tree = os.path.abspath(tree)
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.backend, proc = start_backend(bench, self.dir)
        self.procs = [proc]
        self.secret_key = secrets.token_urlsafe(32)

    def database(self, name):
        return os.path.join(self.dir, name + ".sqlite3")

    def start(self, name, auth, jwt_ttl=3600):
        """Start a gateway (AUTH=on with its own database when C{auth}); its description."""
        env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        env.update(PRIVATE_BACKEND_URL=self.backend, HF_TOKEN=self.bench.TOKEN,
                   LOG_LEVEL="warn", PYTHONPATH=self.tree)
        if auth:
            env.update(AUTH="on", SECRET_KEY=self.secret_key, JWT_TTL=str(jwt_ttl),
                       DATABASE_URL="sqlite:///" + self.database(name),
                       ADMIN_USERNAME=USERNAME, ADMIN_PASSWORD=PASSWORD)
        check_tree(self.tree, env)
        port = self.bench.free_port()
        started = time.monotonic()
        proc = self.bench.Proc("gateway-" + name, gateway_argv("--port", str(port)), env=env,
                               cwd=self.tree, logdir=self.dir)
        self.procs.append(proc)
        if self.bench.wait_http("http://127.0.0.1:%d/gateway-health" % port, timeout=60) is None:
            sys.exit("auth_bench: gateway %s did not answer; see %s" % (name, self.dir))
        return {"port": port, "pid": proc.p.pid, "tree": self.tree, "auth": "on" if auth else "off",
                "startup_s": time.monotonic() - started,
                "url": "http://127.0.0.1:%d/small" % port,
                "rss_idle_kib": self.bench.rss_kib(proc.p.pid)[0]}

    def stop(self, ok):
        for proc in reversed(self.procs):
            proc.stop()
        if ok:
            shutil.rmtree(self.dir, ignore_errors=True)


def import_tree(tree):
    """The tree's wighaven, for its store and keys (this process, like the gateways, uses it)."""
    sys.path.insert(0, os.path.abspath(tree))
    import wighaven

    if not wighaven.__file__.startswith(os.path.join(os.path.abspath(tree), "")):
        sys.exit("auth_bench: this Python imports wighaven from %s, not %s"
                 % (wighaven.__file__, tree))


def access_token(port):
    status, answer = login(port, USERNAME, PASSWORD)
    if status != 200 or not answer or "access_token" not in answer:
        sys.exit("auth_bench: POST /_gateway/auth/token answered %d" % status)
    return answer["access_token"]


def make_key(database):
    """A new API key of USERNAME, through the store in sync mode: the whole key (shown once)."""
    from wighaven.auth import keys
    from wighaven.store import SqliteStore

    store = SqliteStore.open(database, sync=True)
    try:
        user = store.user(USERNAME)
        key_id, whole, digest = keys.new_key()
        store.add_key(key_id, user["id"], digest, name="auth_bench")
    finally:
        store.close()
    return whole


def make_wrong_users(database, count):
    """C{count} users for the flood's wrong passwords (their right one is never sent)."""
    from wighaven.auth.passwords import hash_password
    from wighaven.store import SqliteStore

    store = SqliteStore.open(database, sync=True)
    try:
        digest = hash_password(secrets.token_urlsafe(16))  # one hash: the work is the check's
        for i in range(count):
            store.add_user(WRONG_USER % i, password_hash=digest)
    finally:
        store.close()


# Part 1: AUTH off, Bearer JWT, X-API-Key.

def compare(bench, gateways, rounds, duration, connections):
    """The interleaved comparison of A, B and C (module docstring, part 1); its figures."""
    described, headers = {}, {}
    for name, auth in (("A", False), ("B", True), ("C", True)):
        described[name] = gateways.start(name, auth, jwt_ttl=max(3600, 4 * rounds * duration * 3))
    headers["A"] = None
    headers["B"] = "Authorization: Bearer " + access_token(described["B"]["port"])
    headers["C"] = "X-API-Key: " + make_key(gateways.database("C"))
    shown = {"A": None, "B": "Authorization: Bearer <JWT from /_gateway/auth/token>",
             "C": "X-API-Key: wh_<id>_<secret> (made through the store)"}
    for name, g in described.items():
        g["header"] = shown[name]
        g["checked"] = expect(g["port"], name, headers[name], bench.SMALL)
    print("checked: A answers 200 without a credential; B and C answer 200 with theirs "
          "and 401 without", flush=True)
    names = ["A", "B", "C"]
    for name in names:  # warm-up: pooled backend connections, the gate's cache
        run_wrk(bench, described[name]["url"], connections, 1, [headers[name]] if headers[name] else ())
    figures = {name: [] for name in names}
    for n in range(rounds):
        order = names[n % len(names):] + names[:n % len(names)]
        for name in order:
            g = described[name]
            before = cpu_seconds(g["pid"])
            result = run_wrk(bench, g["url"], connections, duration,
                             [headers[name]] if headers[name] else ())
            result["cpu_us"] = (cpu_seconds(g["pid"]) - before) / max(result["requests"], 1) * 1e6
            figures[name].append(result)
        print("round %d/%d: %s" % (n + 1, rounds, ", ".join(
            "%s %.0f req/s" % (name, figures[name][-1]["rps"]) for name in names)), flush=True)
        time.sleep(0.5)

    medians = {}
    print("\nbackend %s; load: wrk -t1 -c%d GET /small, %d rounds of %d s, order rotated per round"
          % (gateways.backend, connections, rounds, duration))
    print("%-3s %-8s %-14s %8s %8s %10s %8s %8s %11s %7s %8s" % (
        "gw", "AUTH", "credential", "start s", "rss MiB", "req/s", "p50 ms", "p99 ms",
        "CPU us/req", "non2xx", "sock err"))
    for name in names:
        rows, g = figures[name], described[name]
        medians[name] = {key: statistics.median(r.get(key, 0) for r in rows)
                         for key in ("rps", "p50_ms", "p99_ms", "cpu_us")}
        medians[name]["non2xx"] = sum(r["non2xx"] for r in rows)
        medians[name]["sock_err"] = sum(r["sock_err"] for r in rows)
        print("%-3s %-8s %-14s %8.2f %8.1f %10.0f %8.2f %8.2f %11.1f %7d %8d" % (
            name, g["auth"], {"A": "none", "B": "Bearer JWT", "C": "X-API-Key"}[name],
            g["startup_s"], g["rss_idle_kib"] / 1024, medians[name]["rps"],
            medians[name]["p50_ms"], medians[name]["p99_ms"], medians[name]["cpu_us"],
            medians[name]["non2xx"], medians[name]["sock_err"]))
    for name in names:
        if medians[name]["non2xx"] or medians[name]["sock_err"]:
            print("WARNING: gateway %s: wrk counted %d non-2xx answers and %d socket errors"
                  % (name, medians[name]["non2xx"], medians[name]["sock_err"]))
    print()
    ratios = {}
    for new in ("B", "C"):
        rps = medians[new]["rps"] / medians["A"]["rps"] if medians["A"]["rps"] else 0.0
        cpu = medians[new]["cpu_us"] / medians["A"]["cpu_us"] if medians["A"]["cpu_us"] else 0.0
        per_round = [b["rps"] / a["rps"] for a, b in zip(figures["A"], figures[new]) if a["rps"]]
        ratios["%s/A" % new] = {"throughput": rps, "cpu_per_request": cpu,
                                "throughput_per_round": per_round}
        verdict = "ok" if rps >= FLOOR else "BELOW"
        if abs(rps - FLOOR) <= NOISE:
            verdict += ", but within %.1f of it: two processes' ratio swings that much here" % NOISE
        print("%s/A (%s): throughput %.3f (at least %.2f: %s), CPU per request %.3f; "
              "per round %s" % (new, "Bearer JWT" if new == "B" else "X-API-Key", rps, FLOOR,
                                verdict, cpu, " ".join("%.3f" % r for r in per_round)))
    return {"backend": gateways.backend, "rounds": rounds, "duration": duration,
            "connections": connections, "floor": FLOOR,
            "gateways": {name: dict(described[name], rounds=figures[name],
                                    medians=medians[name]) for name in names},
            "ratios": ratios}


# Part 2: the login flood.

class WrongPairs:
    """(user, source address) pairs for wrong passwords, each used at most a few times."""

    def __init__(self, count):
        self.count = count
        self.next = 0
        self.lock = threading.Lock()

    @staticmethod
    def address(i):
        return "127.0.%d.%d" % (2 + i // 250, 1 + i % 250)

    def take(self):
        with self.lock:
            i = self.next % self.count
            self.next += 1
        return WRONG_USER % i, self.address(i)


class LoginFlood(threading.Thread):
    """
    POST /_gateway/auth/token at C{rate} a second for at most C{seconds}
    (or until L{finish}), C{wrong} of every C{rate} with a wrong password;
    at most C{in_flight} pending (the rest skipped). Each login's (wrong?,
    status, seconds) is in C{done}.
    """

    def __init__(self, port, rate, wrong, seconds, pairs, in_flight):
        super().__init__(name="login-flood", daemon=True)
        self.port, self.rate, self.wrong, self.seconds = port, rate, wrong, seconds
        self.pairs = pairs
        self.slots = threading.BoundedSemaphore(in_flight)
        self.in_flight = in_flight
        self.stopping = threading.Event()
        self.done = []
        self.skipped = 0
        self.due = 0
        self.elapsed = 0.0

    def _is_wrong(self, i):
        per = self.rate
        return (i * self.wrong) // per != ((i + 1) * self.wrong) // per

    def _one(self, wrong):
        try:
            if wrong:
                user, source = self.pairs.take()
                password = "not-the-password"
            else:
                user, source, password = USERNAME, "127.0.0.1", PASSWORD
            started = time.monotonic()
            try:
                status, _ = login(self.port, user, password, source)
            except Exception as e:  # a refused or timed-out login is a figure too
                status = "error:" + type(e).__name__
            self.done.append((wrong, status, time.monotonic() - started))
        finally:
            self.slots.release()

    def run(self):
        started = time.monotonic()
        total = int(self.rate * self.seconds)
        with ThreadPoolExecutor(self.in_flight, thread_name_prefix="login") as pool:
            for i in range(total):
                wait = started + i / self.rate - time.monotonic()
                if wait > 0 and self.stopping.wait(wait):
                    break
                if self.stopping.is_set():
                    break
                self.due += 1
                if not self.slots.acquire(blocking=False):
                    self.skipped += 1
                    continue
                pool.submit(self._one, self._is_wrong(i))
            self.elapsed = time.monotonic() - started
        # (leaving the with: every pending login has been answered or has timed out)

    def finish(self):
        self.stopping.set()
        self.join(timeout=120)


def percentiles(seconds):
    """p50, p90, p99, max in ms of C{seconds} (nearest rank), or {} when empty."""
    if not seconds:
        return {}
    ordered = sorted(seconds)

    def rank(p):
        return ordered[min(len(ordered) - 1, max(0, int(math.ceil(p / 100 * len(ordered))) - 1))]

    return {"p50_ms": rank(50) * 1e3, "p90_ms": rank(90) * 1e3, "p99_ms": rank(99) * 1e3,
            "max_ms": ordered[-1] * 1e3, "count": len(ordered)}


def flood(bench, gateways, rounds, duration, connections, rate, wrong, in_flight):
    """The login flood against one AUTH=on gateway (module docstring, part 2); its figures."""
    lead = 1.0  # the flood starts this long before wrk
    planned_wrong = int(math.ceil(rounds * (duration + lead + 1) * wrong)) + wrong
    pairs = WrongPairs(max(1, int(math.ceil(planned_wrong / MAX_FAILURES_PER_PAIR))))
    make_wrong_users(gateways.database("F"), pairs.count)
    g = gateways.start("F", True, jwt_ttl=max(3600, 4 * rounds * (duration + 5) * 2))
    port = g["port"]
    header = "Authorization: Bearer " + access_token(port)
    g["checked"] = expect(port, "F", header, bench.SMALL)
    status, _ = login(port, WRONG_USER % 0, "not-the-password", pairs.address(pairs.count))
    if status != 401:
        sys.exit("auth_bench: a wrong password from %s answered %d, not 401"
                 % (pairs.address(pairs.count), status))
    alone = []
    for _ in range(10):  # a login's own cost, one at a time, no load
        started = time.monotonic()
        status, _ = login(port, USERNAME, PASSWORD)
        if status != 200:
            sys.exit("auth_bench: a right login answered %d" % status)
        alone.append(time.monotonic() - started)
    run_wrk(bench, g["url"], connections, 1, [header])  # warm-up
    print("\nflood: gateway F (AUTH=on), wrk -t1 -c%d GET /small with a Bearer JWT, %d s; "
          "logins %d/s (%d wrong, from %d users at as many addresses), at most %d pending"
          % (connections, duration, rate, wrong, pairs.count, in_flight), flush=True)
    phases = {"quiet": [], "flood": []}
    logins = []
    for n in range(rounds):
        for phase in (("quiet", "flood") if n % 2 == 0 else ("flood", "quiet")):
            flooder = None
            if phase == "flood":
                flooder = LoginFlood(port, rate, wrong, duration + lead + 1, pairs, in_flight)
                flooder.start()
                time.sleep(lead)
            before, wall = cpu_seconds(g["pid"]), time.monotonic()
            result = run_wrk(bench, g["url"], connections, duration, [header])
            result["gateway_cores"] = (cpu_seconds(g["pid"]) - before) / (time.monotonic() - wall)
            if flooder is not None:
                flooder.finish()
                statuses = collections.Counter(str(s) for _, s, _ in flooder.done)
                result["logins"] = {"due": flooder.due, "skipped": flooder.skipped,
                                    "answered": len(flooder.done),
                                    "rate_sent": (flooder.due - flooder.skipped)
                                    / max(flooder.elapsed, 1e-9),
                                    "statuses": dict(statuses)}
                logins.extend(flooder.done)
            phases[phase].append(result)
            print("round %d/%d %-5s: %7.0f req/s, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, "
                  "gateway %.2f cores%s" % (
                      n + 1, rounds, phase, result["rps"], result.get("p50_ms", 0),
                      result.get("p90_ms", 0), result.get("p99_ms", 0), result["gateway_cores"],
                      "; logins: %s (%d skipped)" % (
                          ", ".join("%s %d" % kv for kv in sorted(result["logins"]["statuses"].items())),
                          result["logins"]["skipped"]) if flooder else ""), flush=True)
            time.sleep(0.5)

    medians = {phase: {key: statistics.median(r.get(key, 0) for r in rows)
                       for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "gateway_cores")}
               for phase, rows in phases.items()}
    for phase, rows in phases.items():
        medians[phase]["non2xx"] = sum(r["non2xx"] for r in rows)
        medians[phase]["sock_err"] = sum(r["sock_err"] for r in rows)
    statuses = collections.Counter(str(s) for _, s, _ in logins)
    by_kind = {
        "right": dict(collections.Counter(str(s) for w, s, _ in logins if not w)),
        "wrong": dict(collections.Counter(str(s) for w, s, _ in logins if w)),
    }
    latency = {"alone": percentiles(alone), "all": percentiles([t for _, _, t in logins]),
               "200": percentiles([t for _, s, t in logins if s == 200]),
               "401": percentiles([t for _, s, t in logins if s == 401])}
    due = sum(r["logins"]["due"] for r in phases["flood"])
    skipped = sum(r["logins"]["skipped"] for r in phases["flood"])

    print("\nforwarded GET /small (medians over %d rounds)   no flood   login flood   flood/none"
          % rounds)
    for key, label, fmt in (("rps", "requests/s", "%10.0f"), ("p50_ms", "p50 ms", "%10.2f"),
                            ("p90_ms", "p90 ms", "%10.2f"), ("p99_ms", "p99 ms", "%10.2f"),
                            ("gateway_cores", "gateway CPU, cores", "%10.2f")):
        q, f = medians["quiet"][key], medians["flood"][key]
        print("  %-43s %s  %s   %10s" % (label, fmt % q, fmt % f,
                                         "%.3f" % (f / q) if q else "n/a"))
    for phase in ("quiet", "flood"):
        if medians[phase]["non2xx"] or medians[phase]["sock_err"]:
            print("WARNING: %s: wrk counted %d non-2xx answers and %d socket errors"
                  % (phase, medians[phase]["non2xx"], medians[phase]["sock_err"]))
    print("logins sent: %d due, %d skipped (%d pending already); statuses: %s" % (
        due, skipped, in_flight, ", ".join("%s %d" % kv for kv in sorted(statuses.items()))))
    print("  right password: %s; wrong password: %s" % (
        ", ".join("%s %d" % kv for kv in sorted(by_kind["right"].items())) or "none",
        ", ".join("%s %d" % kv for kv in sorted(by_kind["wrong"].items())) or "none"))
    for label, key in (("one at a time, no load", "alone"), ("during the flood, all", "all"),
                       ("during the flood, 200", "200"), ("during the flood, 401", "401")):
        p = latency[key]
        if p:
            print("  login latency, %-24s p50 %7.1f ms, p90 %7.1f ms, p99 %7.1f ms, max %7.1f ms "
                  "(%d)" % (label, p["p50_ms"], p["p90_ms"], p["p99_ms"], p["max_ms"], p["count"]))
    return {"gateway": g, "rounds": rounds, "duration": duration, "connections": connections,
            "rate": rate, "wrong_per_rate": wrong, "in_flight": in_flight,
            "wrong_pairs": pairs.count, "lead_s": lead,
            "phases": phases, "medians": medians,
            "logins": {"due": due, "skipped": skipped, "statuses": dict(statuses),
                       "by_kind": by_kind, "latency": latency}}


def tree_state(tree):
    """The tree's commit, its changed files under wighaven/, and the newest source's mtime."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", tree] + list(args), capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    newest = 0.0
    for folder, _, files in os.walk(os.path.join(tree, "wighaven")):
        for name in files:
            if name.endswith(".py"):
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime)
    return {"commit": git("rev-parse", "HEAD") or None,
            "changed": git("status", "--porcelain", "--", "wighaven").splitlines(),
            "newest_source_mtime": newest}


def run(bench_path, tree=ROOT, rounds=5, duration=5, connections=64, part="both",
        flood_rounds=3, flood_connections=8, rate=50, wrong=5, in_flight=32, json_path=None):
    """
    Run part 1, part 2 or both (C{part}: "both", "compare", "flood"); print
    the figures; return them (also written to C{json_path} when given).
    """
    if not 0 <= wrong <= rate or rate < 1:
        sys.exit("auth_bench: --flood-wrong must be between 0 and --flood-rate (at least 1)")
    bench = load_bench(bench_path)
    import_tree(tree)
    result = {"date": datetime.date.today().isoformat(),
              "machine": "%s, %d cores, Python %s" % (platform.platform(), os.cpu_count() or 0,
                                                     platform.python_version()),
              "tree": os.path.abspath(tree), "tree_state": tree_state(tree)}
    gateways = Gateways(bench, tree, "wighaven-auth-")
    ok = False
    try:
        result["backend"] = gateways.backend
        if part in ("both", "compare"):
            result["compare"] = compare(bench, gateways, rounds, duration, connections)
        if part in ("both", "flood"):
            result["flood"] = flood(bench, gateways, flood_rounds, duration, flood_connections,
                                    rate, wrong, in_flight)
        ok = True
    finally:
        gateways.stop(ok)
    after = tree_state(tree)
    result["tree_changed_during_run"] = (
        after["newest_source_mtime"] != result["tree_state"]["newest_source_mtime"]
        or after["commit"] != result["tree_state"]["commit"])
    if result["tree_changed_during_run"]:
        print("\nWARNING: wighaven/ changed during the run (commit %s -> %s): gateways started "
              "at different times may run different code" % (
                  (result["tree_state"]["commit"] or "?")[:10], (after["commit"] or "?")[:10]))
    return write_result(result, json_path)


def add_tree_options(ap, default_json: str) -> None:
    """--tree, --bench and --json (its default named by C{default_json}) of a script."""
    ap.add_argument("--tree", default=ROOT, help="the source tree the gateways run from")
    ap.add_argument("--bench", help="path of bench.py (default: as run.py finds it)")
    ap.add_argument("--json", help="write the figures here (default: benchmarks/results/%s)"
                    % default_json)


def result_path(given, name: str) -> str:
    """C{given}, or benchmarks/results/<date>-C{name}.json (its folder made)."""
    if given:
        return given
    os.makedirs(RESULTS, exist_ok=True)
    return os.path.join(RESULTS, "%s-%s.json" % (datetime.date.today().isoformat(), name))


def write_result(result: dict, json_path) -> dict:
    """Write C{result} as JSON to C{json_path} (when given) and say so; C{result}."""
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
        print("\nwrote %s" % json_path)
    return result


def main():
    from run import find_bench  # benchmarks/ is not a package

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of part 1")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (both parts)")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections of part 1")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--flood", action="store_true", help="only part 2, the login flood")
    which.add_argument("--no-flood", action="store_true", help="only part 1, the comparison")
    ap.add_argument("--flood-rounds", type=int, default=3, help="rounds (no flood, flood) of part 2")
    ap.add_argument("--flood-connections", type=int, default=8, help="wrk connections of part 2")
    ap.add_argument("--flood-rate", type=int, default=50, help="logins sent per second")
    ap.add_argument("--flood-wrong", type=int, default=5,
                    help="of every --flood-rate logins, how many have a wrong password")
    ap.add_argument("--flood-in-flight", type=int, default=32,
                    help="logins pending at most (one due beyond that is skipped)")
    add_tree_options(ap, "<date>-auth.json, -auth-flood.json with --flood")
    args = ap.parse_args()
    json_path = result_path(args.json, "auth-flood" if args.flood else "auth")
    run(find_bench(args.bench), tree=args.tree, rounds=args.rounds, duration=args.duration,
        connections=args.connections,
        part="flood" if args.flood else "compare" if args.no_flood else "both",
        flood_rounds=args.flood_rounds, flood_connections=args.flood_connections,
        rate=args.flood_rate, wrong=args.flood_wrong, in_flight=args.flood_in_flight,
        json_path=json_path)


if __name__ == "__main__":
    main()

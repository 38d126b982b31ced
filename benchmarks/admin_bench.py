#!/usr/bin/env python3
"""What the admin API costs the forwarding path, and how long a change made
through it takes to be in force. Two parts, one run, built on auth_bench.py
(its gateways, its wrk, its login; nothing of it is copied here).

1. "The panel costs the forwarding path nothing measurable". One AUTH=on
   gateway (WORKERS=1, or --panel-workers: above 1 its CPU is the
   supervisor's plus every worker's, and the panel's lists of recent log
   lines and requests ask every worker; its own SQLite database, a SECRET_KEY made for the
   run) forwards GET /small to the nginx backend (bench.py's configuration,
   local_backend.py), every request carrying `Authorization: Bearer <JWT>`
   (the access token of the user ADMIN_USERNAME/ADMIN_PASSWORD, from the
   gateway's own POST /_gateway/auth/token): auth_bench.py's gateway B.
   Before the rounds the script checks that GET /small answers the backend's
   1 KiB with the token and 401 without it, and that the three polls below
   answer 200. Load: wrk -t1 --connections 64 for --duration seconds, as
   auth_bench.py. Each round has two phases, in an order flipped every round
   (closed, open; then open, closed):

     closed  wrk alone;
     open    wrk while --panels (3) simulated admin panels poll the gateway,
             one thread each in this script, on a keep-alive connection of
             their own (http.client; a new one only when the gateway closes
             it, counted), with the same Bearer token: every 2 s, GET
             /_gateway/api/v1/status, GET /_gateway/api/v1/logs?after=<last_id>
             &limit=500 (last_id: the highest id seen, as the UI's log screen
             follows; limit=500 as it asks too) and GET
             /_gateway/api/v1/requests?limit=50, one after the other. As the
             UI's timers, a poll still under way when the next is due makes
             that one skipped (counted), never queued. The panels start
             2/panels s apart, so their polls do not all land at once; they
             start just before wrk and stop when it ends.

   Figures: medians over rounds of req/s, p50 and p99 of each phase and of
   CPU microseconds per forwarded request (the gateway process's user +
   system time over the wrk run, from /proc, divided by wrk's requests: in
   the open phase that includes serving the panels, which is the point);
   open/closed of each, with the per-round ratios (open over closed of the
   same round) and their spread (min, max). The polls: how many were made
   and how many answered 200 (all must: anything else is a warning), their
   latency (median, p95, max) per endpoint, and the size of their answers.
   The gateways run with auth_bench.py's LOG_LEVEL=warn, so the log lines
   the logs poll gets are few (an empty answer, mostly); the requests poll
   carries 50 full exchanges (about 17 KB) every time. On a small shared
   machine two runs of one process swing by several percent, and more: a
   ratio is "nothing measurable" only as far as the spread of the per-round
   ratios says; read it beside that spread. Hence one more figure, which the
   noise touches far less: before the rounds (after wrk's warm-up has filled
   the recent requests) one panel makes --alone-cycles (100) poll cycles one
   after the other with no load, and the gateway's CPU over them (from /proc)
   divided by their number is the CPU one cycle costs; times --panels /
   2 s, it is the CPU the panels take each second, printed as a share of the
   CPU the gateway spent forwarding per second in the closed phase: what
   forwarding would lose with the panels open if the gateway is CPU-bound.

2. "How long a change takes to apply". Two more AUTH=on gateways, WORKERS=2
   and WORKERS=1, each with its own database and with ALLOW_PRIVATE_UPSTREAMS
   and ALLOW_HTTP_UPSTREAMS=true (so a route may point at the loopback, plain
   http nginx). --changes (20) times, alternating the two gateways (order
   flipped every change), the script POSTs a new route /_gateway/api/v1/routes
   {"name": "rN", "path": "/rN", "upstreams": [{"url": <backend>}]} (each
   name used once) with the Bearer token on a connection opened beforehand,
   and from the moment the POST is sent (the clock starts just before it is
   written) it sends GET /rN/small, with the token, each on a new connection,
   one after the other as fast as answers come, until 5 s after the POST at
   most. Before the route exists, GET /rN/small goes to PRIVATE_BACKEND_URL's
   catch-all route and the backend answers 404; only the new route (path
   stripped: /small) answers 200 with the backend's 1 KiB (checked: body too).
   Recorded, in ms from sending the POST:

     (a) post_ms        its 201 answer (the route is applied in the worker
                        that made it before it answers; the audit entry is
                        written before it answers, too);
     (b) first_200_ms   the first GET answered 200 on a new connection;
     (c) all_workers_ms (WORKERS=2 only) the last of 20 consecutive
                        new-connection GETs all answered 200: the workers
                        accept from one shared socket, so new connections
                        land on either, and 20 in a row show both have it
                        (the other learns of it by the store's revision
                        file, looked at every 0.2 s: wighaven/run/reload.py).

   Also counted: the GETs sent, their statuses, and "flips" (a non-200 after
   a 200: a new connection that reached the worker not yet up to date, the
   sign that (b) and (c) differ for a reason). Then the route is deleted
   (DELETE with If-Match: its etag; 204 expected) and the script waits 0.5 s.
   To show that new connections do reach both workers, before the changes 40
   new connections are made to the WORKERS=2 gateway one after the other as
   the probes' (GET /gateway-health on each, answered before the next), and
   before each is closed the script finds from /proc (each worker's socket
   inodes against /proc/net/tcp) which worker accepted it; a worker that took
   fewer than 5 is a warning ((c) then proves less), and the chance that 20
   in a row all miss the less-chosen one, (1 - its share) ** 20, is printed.
   Printed for each gateway: median, p95 (nearest rank) and max of (a), (b)
   and (c). The probing thread and the POST's thread share this Python (its
   switch interval is set to 0.5 ms so one does not hold the other back by
   more than that).

Usage, from the project root (needs nginx and wrk, and bench.py: see run.py):

    python benchmarks/admin_bench.py                       # both parts
    python benchmarks/admin_bench.py --rounds 3 --duration 5 --changes 10
    python benchmarks/admin_bench.py --no-changes          # only part 1
    python benchmarks/admin_bench.py --changes-only        # only part 2
    python benchmarks/run.py --admin                       # both, JSON in results/

The figures are written as JSON to --json, or else to
benchmarks/results/<date>-admin.json. As in auth_bench.py, every gateway runs
from its tree (--tree, default this project), first on PYTHONPATH and as its
working directory (checked before it starts); the JSON records the tree's
commit and changed files under wighaven/, and tree_changed_during_run (with a
warning) when its sources changed while the run went on. The settings
auth_bench.py's Gateways.start does not set (WORKERS, INTERFACE=127.0.0.1, the
ALLOW_* ones) reach the gateway through this process's environment, set for
the moment it starts. No secret (the JWT, the passwords, the SECRET_KEY) is
written to the JSON. Loops are bounded; everything is on 127.0.0.1 (the
gateways too: INTERFACE); the processes and the temporary folder are cleaned
up at the end (the folder is kept, with the logs, when the run stops short).
The machine's other work is not stopped: run it on an idle machine for
figures to quote, and look at the spreads either way.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import http.client
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from auth_bench import (Gateways, access_token, expect, http_call, import_tree,  # noqa: E402
                        run_wrk, tree_state, write_result, add_tree_options, result_path)
from local_backend import load_bench  # noqa: E402  (not a package)
from routes_bench import cpu_seconds  # noqa: E402

API = "/_gateway/api/v1"
POLL_S = 2.0  # the UI's POLL_MS (wighaven/web/admin_ui/admin.js)
LATE_S = 0.1  # a poll due this long ago while the previous one went on is skipped
LOOPBACK = "127.0.0.1"
CHANGE_TIMEOUT_S = 5.0
CONSECUTIVE = 20  # new-connection 200s in a row that show every worker has a change
SPREAD_CONNECTIONS = 40
SPREAD_FLOOR = 5


def nearest_rank(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(math.ceil(p / 100 * len(ordered))) - 1))]


def spread(values):
    """Median, p95 (nearest rank), min and max of C{values} ({"count": 0} when empty)."""
    if not values:
        return {"count": 0}
    return {"median": statistics.median(values), "p95": nearest_rank(values, 95),
            "min": min(values), "max": max(values), "count": len(values)}


@contextlib.contextmanager
def environment(**settings):
    """C{settings} in os.environ meanwhile: auth_bench's Gateways.start passes our environment
    on (but for its own settings), so this is how a gateway gets WORKERS and the like."""
    before = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bearer(token):
    return {"Authorization": "Bearer " + token}


# Part 1: simulated admin panels.

class Panel(threading.Thread):
    """One admin panel: the three polls every POLL_S on one keep-alive connection,
    from C{delay} s after start until L{finish}."""

    PATHS = ("status", "logs", "requests")

    def __init__(self, port, token, delay):
        super().__init__(name="panel", daemon=True)
        self.port, self.headers, self.delay = port, bearer(token), delay
        self.stopping = threading.Event()
        self.last_id = 0
        self.polls = []  # (endpoint, status, seconds, bytes)
        self.skipped = self.connections = 0
        self.conn = None

    def _get(self, path):
        for attempt in (1, 2):  # once more on a new connection when the kept one was closed
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.connections += 1
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
                if response.will_close:
                    self.conn.close()
                    self.conn = None
                return response.status, body
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def poll(self):
        for endpoint in self.PATHS:
            path = {"status": API + "/status",
                    "logs": API + "/logs?after=%d&limit=500" % self.last_id,
                    "requests": API + "/requests?limit=50"}[endpoint]
            started = time.monotonic()
            try:
                status, body = self._get(path)
            except Exception as e:  # a refused or timed-out poll is a figure too
                status, body = "error:" + type(e).__name__, b""
            self.polls.append((endpoint, status, time.monotonic() - started, len(body)))
            if endpoint == "logs" and status == 200:
                answer = json.loads(body)
                ids = [line.get("id") or 0 for line in answer.get("items", [])]
                self.last_id = max([self.last_id, answer.get("last_id") or 0] + ids)

    def run(self):
        if self.stopping.wait(self.delay):
            return
        started = time.monotonic()
        for n in range(100000):  # bounded: 2 s apart, far beyond any run
            due = started + n * POLL_S
            if time.monotonic() > due + LATE_S:  # the previous poll was under way when due
                self.skipped += 1
                continue
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                break
            self.poll()
        if self.conn is not None:
            self.conn.close()

    def finish(self):
        self.stopping.set()
        self.join(timeout=120)


def start_panels(port, token, count):
    panels = [Panel(port, token, i * POLL_S / count) for i in range(count)]
    for panel in panels:
        panel.start()
    return panels


def panel_figures(polls, skipped, connections):
    """The figures of C{polls} ((endpoint, status, seconds, bytes) each)."""
    return {"polls": len(polls), "ok": sum(1 for p in polls if p[1] == 200),
            "statuses": dict(collections.Counter(str(p[1]) for p in polls)),
            "skipped": skipped, "connections": connections,
            "by_endpoint": {endpoint: {
                "count": sum(1 for p in polls if p[0] == endpoint),
                "latency_ms": spread([p[2] * 1e3 for p in polls if p[0] == endpoint]),
                "bytes_mean": statistics.mean([p[3] for p in polls if p[0] == endpoint] or [0])}
                for endpoint in Panel.PATHS}}


def panel_cost(bench, gateways, rounds, duration, connections, panel_count, alone_cycles=100,
               workers=1):
    """Forwarding with the panels closed and open (module docstring, part 1); its figures."""
    with environment(WORKERS=str(workers), INTERFACE=LOOPBACK):
        g = gateways.start("P", True, jwt_ttl=max(3600, 4 * rounds * (duration + 5) * 2))
    g["workers"] = workers
    if workers > 1:
        # Every worker's CPU, and the supervisor's (it passes the panel's questions on).
        g["workers_pids"] = worker_pids(g["pid"])

    def cpu_seconds_of_gateway():
        return sum(cpu_seconds(pid) for pid in [g["pid"]] + g.get("workers_pids", []))

    port = g["port"]
    token = access_token(port)
    header = "Authorization: Bearer " + token
    g["header"] = "Authorization: Bearer <JWT from /_gateway/auth/token>"
    g["checked"] = expect(port, "P", header, bench.SMALL)
    probe = Panel(port, token, 0)
    probe.poll()
    if any(status != 200 for _, status, _, _ in probe.polls):
        sys.exit("admin_bench: the panel's polls answered %s, not 200 each"
                 % [status for _, status, _, _ in probe.polls])
    g["checked"]["panel_polls"] = 200
    run_wrk(bench, g["url"], connections, 1, [header])  # warm-up
    alone_cycles = max(1, alone_cycles)
    alone = Panel(port, token, 0)
    before, wall = cpu_seconds_of_gateway(), time.monotonic()
    for _ in range(alone_cycles):
        alone.poll()
    cycle = {"cycles": alone_cycles,
             "cpu_ms": (cpu_seconds_of_gateway() - before) / max(alone_cycles, 1) * 1e3,
             "wall_ms": (time.monotonic() - wall) / max(alone_cycles, 1) * 1e3,
             "statuses": dict(collections.Counter(str(p[1]) for p in alone.polls))}
    if cycle["statuses"] != {"200": 3 * alone_cycles}:
        sys.exit("admin_bench: the polls with no load answered %s" % cycle["statuses"])
    print("panel: gateway P (AUTH=on, WORKERS=%d), wrk -t1 -c%d GET /small with a Bearer JWT, "
          "%d s per phase; open = %d panels polling status, logs, requests every %.0f s"
          % (workers, connections, duration, panel_count, POLL_S), flush=True)
    phases = {"closed": [], "open": []}
    for n in range(rounds):
        for phase in (("closed", "open") if n % 2 == 0 else ("open", "closed")):
            panels = start_panels(port, token, panel_count) if phase == "open" else []
            before = cpu_seconds_of_gateway()
            result = run_wrk(bench, g["url"], connections, duration, [header])
            result["cpu_us"] = (cpu_seconds_of_gateway() - before) / max(result["requests"], 1) * 1e6
            for panel in panels:
                panel.finish()
            if panels:
                result["panels_raw"] = [p for panel in panels for p in panel.polls]
                result["panels"] = panel_figures(result["panels_raw"],
                                                 sum(panel.skipped for panel in panels),
                                                 sum(panel.connections for panel in panels))
            phases[phase].append(result)
            print("round %d/%d %-6s: %7.0f req/s, p50 %.2f ms, p99 %.2f ms, %.1f CPU us/req%s"
                  % (n + 1, rounds, phase, result["rps"], result.get("p50_ms", 0),
                     result.get("p99_ms", 0), result["cpu_us"],
                     "; polls %d/%d answered 200" % (result["panels"]["ok"],
                                                      result["panels"]["polls"])
                     if panels else ""), flush=True)
            time.sleep(0.5)

    keys = ("rps", "p50_ms", "p99_ms", "cpu_us")
    medians = {phase: {key: statistics.median(r.get(key, 0) for r in rows) for key in keys}
               for phase, rows in phases.items()}
    for phase, rows in phases.items():
        medians[phase]["non2xx"] = sum(r["non2xx"] for r in rows)
        medians[phase]["sock_err"] = sum(r["sock_err"] for r in rows)
    ratios = {}
    for key in keys:
        per_round = [o[key] / c[key] for c, o in zip(phases["closed"], phases["open"])
                     if c.get(key)]
        ratios[key] = {"of_medians": medians["open"][key] / medians["closed"][key]
                       if medians["closed"][key] else None,
                       "per_round": per_round,
                       "min": min(per_round) if per_round else None,
                       "max": max(per_round) if per_round else None}
    raw = [p for r in phases["open"] for p in r.pop("panels_raw")]
    polls = panel_figures(raw, sum(r["panels"]["skipped"] for r in phases["open"]),
                          sum(r["panels"]["connections"] for r in phases["open"]))

    print("\nforwarded GET /small (medians over %d rounds)  panel closed  panel open  open/closed"
          "   per round (min..max)" % rounds)
    for key, label, fmt in (("rps", "requests/s", "%12.0f"), ("p50_ms", "p50 ms", "%12.2f"),
                            ("p99_ms", "p99 ms", "%12.2f"),
                            ("cpu_us", "gateway CPU us per request", "%12.1f")):
        r = ratios[key]
        print("  %-42s %s %s %12s   %s (%s..%s)" % (
            label, fmt % medians["closed"][key], fmt % medians["open"][key],
            "%.3f" % r["of_medians"] if r["of_medians"] else "n/a",
            " ".join("%.3f" % x for x in r["per_round"]),
            "%.3f" % r["min"] if r["min"] else "?", "%.3f" % r["max"] if r["max"] else "?"))
    for phase in ("closed", "open"):
        if medians[phase]["non2xx"] or medians[phase]["sock_err"]:
            print("WARNING: %s: wrk counted %d non-2xx answers and %d socket errors"
                  % (phase, medians[phase]["non2xx"], medians[phase]["sock_err"]))
    forwarding_cores = medians["closed"]["cpu_us"] * medians["closed"]["rps"] / 1e6
    cycle["panels_cores"] = panel_count / POLL_S * cycle["cpu_ms"] / 1e3
    cycle["share_of_forwarding"] = (cycle["panels_cores"] / forwarding_cores
                                    if forwarding_cores else None)
    print("one poll cycle alone (%d, no load): %.2f ms of gateway CPU, %.2f ms wall; %d panels: "
          "%.4f cores, %s of the %.2f cores the gateway spent forwarding (closed, medians)" % (
              alone_cycles, cycle["cpu_ms"], cycle["wall_ms"], panel_count,
              cycle["panels_cores"], "%.2f%%" % (100 * cycle["share_of_forwarding"])
              if cycle["share_of_forwarding"] is not None else "n/a", forwarding_cores))
    print("panel polls: %d answered 200 of %d (%s); %d skipped (the previous still under way); "
          "%d connections" % (polls["ok"], polls["polls"], ", ".join(
              "%s %d" % kv for kv in sorted(polls["statuses"].items())), polls["skipped"],
              polls["connections"]))
    for endpoint, e in polls["by_endpoint"].items():
        lat = e["latency_ms"]
        if lat["count"]:
            print("  %-9s %4d polls, p50 %7.2f ms, p95 %7.2f ms, max %7.2f ms, %7.0f bytes on "
                  "average" % (endpoint, e["count"], lat["median"], lat["p95"], lat["max"],
                               e["bytes_mean"]))
    if polls["ok"] != polls["polls"]:
        print("WARNING: %d panel polls were not answered 200" % (polls["polls"] - polls["ok"]))
    return {"gateway": g, "rounds": rounds, "duration": duration, "connections": connections,
            "panels": panel_count, "poll_interval_s": POLL_S,
            "phases": phases, "medians": medians, "ratios": ratios, "polls": polls,
            "cycle_alone": cycle}


# Part 2: how long a change takes.

def worker_pids(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def socket_inodes(pid):
    inodes = set()
    folder = "/proc/%d/fd" % pid
    for fd in os.listdir(folder):
        try:
            target = os.readlink(os.path.join(folder, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def accepted_by(port, client_ports):
    """{client port: inode} of the gateway's end of our connections, from /proc/net/tcp."""
    found = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = (int(fields[i].split(":")[1], 16) for i in (1, 2))
            if local == port and remote in client_ports:
                found[remote] = int(fields[9])
    return found


def accept_spread(port, supervisor, token):
    """Which worker answered each of SPREAD_CONNECTIONS new connections made one after the
    other as the probes' (a GET on each, answered before the next): {pid: count}."""
    workers = worker_pids(supervisor)
    counts = dict.fromkeys(workers, 0)
    counts["unaccounted"] = 0
    for _ in range(SPREAD_CONNECTIONS):
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            conn.request("GET", "/gateway-health", headers=bearer(token))
            conn.getresponse().read()  # the gateway keeps the connection open: find its end
            inode = accepted_by(port, {conn.sock.getsockname()[1]}).get(
                conn.sock.getsockname()[1])
            owner = next((pid for pid in workers if inode in socket_inodes(pid)), "unaccounted")
            counts[owner] += 1
        finally:
            conn.close()
    return counts


class Post(threading.Thread):
    """POST C{path} with C{body} on a connection opened beforehand; C{sent} is set (and
    C{t0} taken) just before the request is written."""

    def __init__(self, port, token, path, body):
        super().__init__(name="post", daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.conn.connect()
        self.path, self.body = path, json.dumps(body)
        self.headers = dict(bearer(token), **{"Content-Type": "application/json"})
        self.sent = threading.Event()
        self.t0 = self.answered = self.status = None
        self.answer = b""

    def run(self):
        try:
            self.t0 = time.monotonic()
            self.sent.set()
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
            response = self.conn.getresponse()
            self.answer = response.read()
            self.answered, self.status = time.monotonic(), response.status
        except Exception as e:
            self.status = "error:" + type(e).__name__
        finally:
            self.sent.set()
            self.conn.close()


def one_change(port, token, backend, name, small, consecutive):
    """Add route C{name}, probe it until it answers (module docstring, part 2), delete it."""
    post = Post(port, token, API + "/routes",
                {"name": name, "path": "/" + name, "upstreams": [{"url": backend}]})
    post.start()
    post.sent.wait(30)
    t0 = post.t0
    deadline = t0 + CHANGE_TIMEOUT_S
    statuses = collections.Counter()
    first = full = None
    run = flips = probes = 0
    while time.monotonic() < deadline and probes < 100000:
        probes += 1
        try:
            status, body = http_call(port, "GET", "/%s/small" % name, bearer(token),
                                     timeout=max(0.05, deadline - time.monotonic()))
        except Exception as e:
            status, body = "error:" + type(e).__name__, b""
        now = time.monotonic()
        ok = status == 200 and body == small
        statuses[str(status) if ok or status != 200 else "200-wrong-body"] += 1
        if ok:
            run += 1
            if first is None:
                first = now - t0
            if run >= consecutive:
                full = now - t0
                break
        else:
            if first is not None:
                flips += 1
            run = 0
    post.join(60)
    item = {}
    if post.status == 201:
        item = json.loads(post.answer)
        status, _ = http_call(port, "DELETE", API + "/routes/" + name,
                              dict(bearer(token), **{"If-Match": item.get("etag", "*")}))
    else:
        status = None
    return {"name": name, "post_status": post.status,
            "post_ms": (post.answered - t0) * 1e3 if post.answered else None,
            "first_200_ms": first * 1e3 if first is not None else None,
            "all_workers_ms": full * 1e3 if full is not None and consecutive > 1 else None,
            "probes": probes, "statuses": dict(statuses), "flips": flips,
            "delete_status": status}


def change_latency(bench, gateways, changes, workers_list=(2, 1)):
    """The changes against gateways of WORKERS=2 and 1 (module docstring, part 2); figures."""
    sys.setswitchinterval(0.0005)
    described, tokens = {}, {}
    for workers in workers_list:
        name = "W%d" % workers
        with environment(WORKERS=str(workers), INTERFACE=LOOPBACK,
                         ALLOW_PRIVATE_UPSTREAMS="true", ALLOW_HTTP_UPSTREAMS="true"):
            g = described[name] = gateways.start(name, True, jwt_ttl=3600)
        g["workers"] = workers
        tokens[name] = access_token(g["port"])
        g["checked"] = expect(g["port"], name, "Authorization: Bearer " + tokens[name],
                              bench.SMALL)
        status, _ = http_call(g["port"], "GET", "/r-none/small", bearer(tokens[name]))
        g["checked"]["unknown_route"] = status
        if status == 200:
            sys.exit("admin_bench: GET /r-none/small answered 200 before any route was made")
        if workers > 1:
            g["workers_pids"] = worker_pids(g["pid"])
            g["accept_spread"] = accept_spread(g["port"], g["pid"], tokens[name])
            counts = [v for k, v in g["accept_spread"].items() if k != "unaccounted"]
            print("%s: of %d new connections the workers accepted %s" % (
                name, SPREAD_CONNECTIONS, ", ".join(str(c) for c in counts)), flush=True)
            share = min(counts) / max(sum(counts), 1) if len(counts) >= workers else 0.0
            g["miss_chance"] = (1 - share) ** CONSECUTIVE  # all in a row on the other worker
            print("%s: so %d new connections in a row all miss the less-chosen worker with a "
                  "chance of about %.1f%%" % (name, CONSECUTIVE, 100 * g["miss_chance"]))
            if len(counts) < workers or min(counts) < SPREAD_FLOOR:
                print("WARNING: %s: a worker accepted fewer than %d of %d new connections: "
                      "%d in a row answered 200 proves less" % (
                          name, SPREAD_FLOOR, SPREAD_CONNECTIONS, CONSECUTIVE))
    names = list(described)
    rows = {name: [] for name in names}
    print("\nchanges: %d routes added through the API on each gateway (%s), alternately, probed "
          "on new connections for up to %.0f s" % (changes, ", ".join(names), CHANGE_TIMEOUT_S),
          flush=True)
    for i in range(changes):
        for name in (names if i % 2 == 0 else names[::-1]):
            g = described[name]
            row = one_change(g["port"], tokens[name], gateways.backend, "r%d" % (i + 1),
                             bench.SMALL, CONSECUTIVE if g["workers"] > 1 else 1)
            rows[name].append(row)
            time.sleep(0.5)
        print("change %d/%d: %s" % (i + 1, changes, "; ".join(
            "%s POST %s ms, first 200 %s ms%s" % (
                name, fmt_ms(rows[name][-1]["post_ms"]), fmt_ms(rows[name][-1]["first_200_ms"]),
                ", %d in a row %s ms" % (CONSECUTIVE, fmt_ms(rows[name][-1]["all_workers_ms"]))
                if described[name]["workers"] > 1 else "") for name in names)), flush=True)

    summary = {}
    print("\nms from sending the POST    %s" % "".join("%-36s" % (
        "%s (WORKERS=%d)" % (n, described[n]["workers"])) for n in names))
    print("                            %s" % ("median     p95     max       " * len(names)))
    for key, label in (("post_ms", "(a) 201 answer"), ("first_200_ms", "(b) first 200"),
                       ("all_workers_ms", "(c) %d in a row 200" % CONSECUTIVE)):
        cells = []
        for name in names:
            s = spread([r[key] for r in rows[name] if r[key] is not None])
            summary.setdefault(name, {})[key] = s
            cells.append("%8.1f %8.1f %8.1f      " % (s["median"], s["p95"], s["max"])
                         if s["count"] else "%-36s" % "n/a")
        print("  %-26s%s" % (label, "".join(cells)))
    for name in names:
        bad = [r for r in rows[name] if r["post_status"] != 201 or r["delete_status"] != 204
               or r["first_200_ms"] is None
               or (described[name]["workers"] > 1 and r["all_workers_ms"] is None)]
        flips = sum(r["flips"] for r in rows[name])
        summary[name]["flips"] = flips
        summary[name]["probes"] = sum(r["probes"] for r in rows[name])
        summary[name]["statuses"] = dict(sum((collections.Counter(r["statuses"])
                                              for r in rows[name]), collections.Counter()))
        print("%s: %d GETs (%s); %d non-200 after a first 200" % (
            name, summary[name]["probes"], ", ".join(
                "%s %d" % kv for kv in sorted(summary[name]["statuses"].items())), flips))
        for r in bad:
            print("WARNING: %s %s: POST %s, DELETE %s, first 200 %s, in a row %s" % (
                name, r["name"], r["post_status"], r["delete_status"],
                fmt_ms(r["first_200_ms"]), fmt_ms(r["all_workers_ms"])))
    return {"changes": changes, "timeout_s": CHANGE_TIMEOUT_S, "consecutive": CONSECUTIVE,
            "gateways": {name: dict(described[name], changes=rows[name],
                                    summary=summary[name]) for name in names}}


def fmt_ms(value):
    return "%.1f" % value if value is not None else "n/a"


def source_drift(before, after):
    """What changed under wighaven/ between two tree_state()s (None: nothing)."""
    if after["commit"] != before["commit"]:
        return "the commit moved from %s to %s" % ((before["commit"] or "?")[:10],
                                                   (after["commit"] or "?")[:10])
    if after["newest_source_mtime"] != before["newest_source_mtime"]:
        return "a source file was written (same commit %s)" % (after["commit"] or "?")[:10]
    return None


def run(bench_path, tree=ROOT, rounds=5, duration=5, connections=64, panels=3, changes=20,
        alone_cycles=100, part="both", json_path=None, panel_workers=1):
    """
    Run part 1, part 2 or both (C{part}: "both", "panel", "changes"); print
    the figures; return them (also written to C{json_path} when given).
    """
    bench = load_bench(bench_path)
    import_tree(tree)
    started = tree_state(tree)
    result = {"date": datetime.date.today().isoformat(), "tree": os.path.abspath(tree),
              "machine": "%s, %d cores, Python %s" % (
                  platform.platform(), os.cpu_count() or 0, platform.python_version()),
              "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
              "tree_state": started}
    gateways = Gateways(bench, tree, "wighaven-admin-")
    finished = False
    try:
        result["backend"] = gateways.backend
        if part != "changes":
            result["panel"] = panel_cost(bench, gateways, rounds, duration, connections, panels,
                                         alone_cycles, panel_workers)
        if part != "panel":
            result["changes"] = change_latency(bench, gateways, changes)
        finished = True
    finally:
        gateways.stop(finished)
    drift = source_drift(started, tree_state(tree))
    result["tree_changed_during_run"] = drift is not None
    result["tree_change"] = drift
    if drift:
        print("\nWARNING: wighaven/ changed while the run went on (%s): the gateways, started "
              "one after the other, may not all run the same code" % drift)
    return write_result(result, json_path)


def main():
    from run import find_bench  # benchmarks/ is not a package

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="rounds (closed, open) of part 1")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections of part 1")
    ap.add_argument("--panels", type=int, default=3, help="simulated admin panels, part 1")
    ap.add_argument("--alone-cycles", type=int, default=100,
                    help="poll cycles made one after the other with no load, part 1")
    ap.add_argument("--panel-workers", type=int, default=1,
                    help="WORKERS of part 1's gateway (above 1: the panel's lists ask every "
                         "worker)")
    ap.add_argument("--changes", type=int, default=20, help="routes added per gateway, part 2")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--no-changes", action="store_true", help="only part 1, the panels")
    which.add_argument("--changes-only", action="store_true", help="only part 2, the changes")
    add_tree_options(ap, "<date>-admin.json")
    args = ap.parse_args()
    json_path = result_path(args.json, "admin")
    run(find_bench(args.bench), tree=args.tree, rounds=args.rounds, duration=args.duration,
        connections=args.connections, panels=args.panels, changes=args.changes,
        alone_cycles=args.alone_cycles, panel_workers=args.panel_workers,
        part="changes" if args.changes_only else "panel" if args.no_changes else "both",
        json_path=json_path)


if __name__ == "__main__":
    main()

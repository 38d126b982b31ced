#!/usr/bin/env python3
"""What a big route table costs: one gateway with only PRIVATE_BACKEND_URL
(one route, `default`) against the same tree with a WIGHAVEN_CONFIG file of
N generated routes, and optionally an older tree with PRIVATE_BACKEND_URL
only, all interleaved round by round in one run.

The generated file (written in a temporary folder) has N//2 host routes
(`h<i>`, hosts = ["h<i>.bench.invalid"], path /) and N - N//2 prefix routes
(`p<i>`, path = "/p<i>", no hosts), every one with one upstream: the run's
backend, with token = "env:HF_TOKEN". It has no route at / without hosts, so
PRIVATE_BACKEND_URL (the same backend) stays the route `default`, the
catch-all.

Which way the load goes (--via):

  default  (the default) GET /small with Host 127.0.0.1:<port>, as bench.py
           sends it: the exact-host dict misses (500 hosts, none of them
           127.0.0.1), then the prefix dict of the routes without hosts
           misses (/small is none of the 500 /p<i>), then the catch-all
           `default` takes it. The gateways do the same work but the lookup:
           with PRIVATE_BACKEND_URL alone there is nothing to look up (the
           router's one-route shortcut), so this measures the whole table's
           cost.
  host     GET /small with Host h<N/4>.bench.invalid: a host route.
  prefix   GET /p<N/4>/small: a prefix route (strip_path: the backend gets
           /small, plus X-Forwarded-Prefix), so it also measures the prefix
           rewriting, not only the lookup.

For host and prefix only the N-route gateway gets that request; the others
still get GET /small. After the rounds the script reads each gateway's
/_gateway/metrics and prints which routes took the requests (there the route
`default` keeps its older name, `backend`), so the path the load took is
shown, not assumed.

Order: round n starts at gateway n mod k of k (A, B then B, A, as ab.py
does), so that none is always first. Figures are medians over rounds:
requests/s, p99, CPU microseconds per request (the gateway process's user +
system time over its runs divided by its requests); start-up time and idle
RSS (after start, before any load) are shown beside them. wrk runs as bench.py's
"small" scenario: 1 thread, --connections (64) connections, 1 KiB answers.

Each gateway runs from its tree, that tree first on PYTHONPATH and as its
working directory (nothing installed is used; checked before the rounds).
Usage, from the project root (needs nginx and wrk, and bench.py: see run.py):

    python benchmarks/routes_bench.py                       # 1 route vs 1,000
    python benchmarks/routes_bench.py --routes 1000 --rounds 7 --duration 5
    git worktree add --detach /tmp/wighaven-base HEAD       # or: mkdir /tmp/wighaven-base &&
                                                            # git archive HEAD | tar -x -C /tmp/wighaven-base
    python benchmarks/routes_bench.py --base-tree /tmp/wighaven-base

With --base-tree, the ratios printed are 1-route/base (the env-only setup
against that tree: the issue wants at least 0.97) and N-routes/1-route (at
least 0.95). `python benchmarks/run.py --compare` runs the same thing.
write_routes() is what run.py's --routes uses for bench.py's gateway.
Loops are bounded; everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from local_backend import gateway_argv, load_bench, start_backend  # noqa: E402  (not a package)

HOST_SUFFIX = ".bench.invalid"
# The floors: the env-only setup against the previous tree, N routes against one.
FLOOR_BASE = 0.97
FLOOR_ROUTES = 0.95


def routes_toml(n, origin, token_env="HF_TOKEN"):
    """The text of a route file: n//2 host routes, n - n//2 prefix routes, all to C{origin}."""
    upstream = '\n[[routes.upstreams]]\nurl = "%s"\ntoken = "env:%s"\n' % (origin, token_env)
    parts = ["# %d routes for the benchmark, all to %s; no route at / without hosts, so\n"
             "# PRIVATE_BACKEND_URL stays the catch-all route 'default'.\n" % (n, origin)]
    for i in range(n // 2):
        parts.append('\n[[routes]]\nname = "h%d"\nhosts = ["h%d%s"]\n' % (i, i, HOST_SUFFIX) + upstream)
    for i in range(n - n // 2):
        parts.append('\n[[routes]]\nname = "p%d"\npath = "/p%d"\n' % (i, i) + upstream)
    return "".join(parts)


def write_routes(path, n, origin):
    """Write L{routes_toml} to C{path}; returns C{path}."""
    with open(path, "w") as f:
        f.write(routes_toml(n, origin))
    return path


def cpu_seconds(pid):
    """User plus system CPU seconds of C{pid} so far (from /proc), as ab.py counts them."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_by_route(port):
    """{route: finished requests} from the gateway's /_gateway/metrics ({} when unreadable)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/_gateway/metrics" % port, timeout=10) as r:
            text = r.read().decode("utf-8", "replace")
    except Exception:
        return {}
    counts = {}
    for line in text.splitlines():
        if line.startswith("wighaven_requests_total{"):
            m = re.search(r'route="([^"]*)"', line)
            name = m.group(1) if m else "?"
            counts[name] = counts.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return {name: int(n) for name, n in counts.items() if n}


def route_count(port):
    """How many routes /gateway-health lists (None when it lists none: an older gateway)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/gateway-health" % port, timeout=10) as r:
            routes = json.load(r).get("routes")
    except Exception:
        return None
    return len(routes) if routes else None


def check_tree(tree, env):
    """Exit unless a Python with C{env}, in C{tree}, imports wighaven from C{tree}."""
    out = subprocess.run([sys.executable, "-c", "import wighaven; print(wighaven.__file__)"],
                         env=env, cwd=tree, capture_output=True, text=True, timeout=60)
    where = out.stdout.strip()
    if not where.startswith(os.path.join(tree, "")):
        sys.exit("routes_bench: in %s wighaven comes from %r, not that tree" % (tree, where or out.stderr))


def compare(bench_path, routes=1000, base_tree=None, tree=ROOT, rounds=5, duration=5,
            connections=64, via="default", extra_env=(), json_path=None):
    """
    Run the comparison (see the module docstring); print the table and the
    ratios; return the figures (also written to C{json_path} when given).
    """
    if routes < 1 or (via == "host" and routes < 2):
        sys.exit("routes_bench: --routes must be at least 1 (2 with --via host)")
    bench = load_bench(bench_path)
    d = tempfile.mkdtemp(prefix="wighaven-routes-")
    backend, backend_proc = start_backend(bench, d)
    config = write_routes(os.path.join(d, "routes.toml"), routes, backend)
    many = "%d-routes" % routes
    variants = []  # (name, tree, WIGHAVEN_CONFIG or None)
    if base_tree:
        variants.append(("base", os.path.abspath(base_tree), None))
    variants += [("1-route", os.path.abspath(tree), None), (many, os.path.abspath(tree), config)]
    target = routes // 4
    loads = {name: ("/small", None) for name, _, _ in variants}
    if via == "host":
        script = os.path.join(d, "host.lua")
        with open(script, "w") as f:
            f.write('wrk.headers["Host"] = "h%d%s"\n' % (target % (routes // 2), HOST_SUFFIX))
        loads[many] = ("/small", script)
    elif via == "prefix":
        loads[many] = ("/p%d/small" % (target % (routes - routes // 2)), None)
    procs = [backend_proc]
    try:
        gateways = {}
        for name, src, config_file in variants:
            env = {k: v for k, v in os.environ.items() if k != "WIGHAVEN_CONFIG"}
            env.update(PRIVATE_BACKEND_URL=backend, HF_TOKEN=bench.TOKEN, LOG_LEVEL="warn",
                       PYTHONPATH=src)
            for kv in extra_env:
                key, _, value = kv.partition("=")
                env[key] = value
            if config_file:
                env["WIGHAVEN_CONFIG"] = config_file
            check_tree(src, env)
            port = bench.free_port()
            started = time.monotonic()
            proc = bench.Proc("gateway-" + name, gateway_argv("--port", str(port)), env=env,
                              cwd=src, logdir=d)
            procs.append(proc)
            path, script = loads[name]
            if bench.wait_http("http://127.0.0.1:%d/small" % port, timeout=60) is None:
                sys.exit("routes_bench: gateway %s did not answer; see %s" % (name, d))
            gateways[name] = {"port": port, "pid": proc.p.pid, "tree": src,
                              "startup_s": time.monotonic() - started,
                              "url": "http://127.0.0.1:%d%s" % (port, path), "script": script,
                              "routes": route_count(port), "rss_idle_kib": bench.rss_kib(proc.p.pid)[0]}
            if via != "default" and name == many:
                # The request the load sends must reach the backend through its route.
                r, _ = bench.run_wrk(gateways[name]["url"], 1, 1, 1, script=script)
                if not r["requests"] or r["non2xx"] or r["sock_err"]:
                    sys.exit("routes_bench: %s via %s: %r; see %s" % (name, via, r, d))
        for g in gateways.values():  # warm-up: pooled backend connections, caches
            bench.run_wrk(g["url"], connections, 1, 1, script=g["script"])
        names = [name for name, _, _ in variants]
        figures = {name: [] for name in names}
        for n in range(rounds):
            order = names[n % len(names):] + names[:n % len(names)]
            for name in order:
                g = gateways[name]
                before = cpu_seconds(g["pid"])
                result, _ = bench.run_wrk(g["url"], connections, 1, duration, script=g["script"])
                result["cpu_us"] = (cpu_seconds(g["pid"]) - before) / max(result["requests"], 1) * 1e6
                figures[name].append(result)
            print("round %d/%d: %s" % (n + 1, rounds, ", ".join(
                "%s %.0f req/s" % (name, figures[name][-1]["rps"]) for name in names)), flush=True)
            time.sleep(0.5)
        for name in names:
            gateways[name]["by_route"] = requests_by_route(gateways[name]["port"])
    finally:
        for proc in reversed(procs):
            proc.stop()

    medians = {}
    print("\nbackend %s; load: wrk -t1 -c%d, %d rounds of %d s, via %s" % (
        backend, connections, rounds, duration, via))
    print("%-12s %-28s %7s %8s %8s %10s %8s %10s %7s" % (
        "gateway", "tree", "routes", "start s", "rss MiB", "req/s", "p99 ms", "CPU us/req", "errors"))
    for name in names:
        rows, g = figures[name], gateways[name]
        medians[name] = {key: statistics.median(r.get(key, 0) for r in rows)
                         for key in ("rps", "p99_ms", "cpu_us")}
        medians[name]["errors"] = sum(r["sock_err"] + r["non2xx"] for r in rows)
        print("%-12s %-28s %7s %8.2f %8.1f %10.0f %8.2f %10.1f %7d" % (
            name, g["tree"][-28:], g["routes"] if g["routes"] is not None else "?", g["startup_s"],
            g["rss_idle_kib"] / 1024,
            medians[name]["rps"], medians[name]["p99_ms"], medians[name]["cpu_us"],
            medians[name]["errors"]))
    print("\nrequests by route, warm-up included (each gateway's /_gateway/metrics, where "
          "PRIVATE_BACKEND_URL's route `default` is counted as `backend`):")
    for name in names:
        by_route = gateways[name]["by_route"]
        print("  %-12s %s" % (name, ", ".join("%s %d" % kv for kv in sorted(by_route.items()))
                              or "(metrics not readable)"))
    ratios = {}
    print()
    for new, old, floor in ([("1-route", "base", FLOOR_BASE)] if base_tree else []) + [
            (many, "1-route", FLOOR_ROUTES)]:
        rps = medians[new]["rps"] / medians[old]["rps"] if medians[old]["rps"] else 0.0
        cpu = medians[new]["cpu_us"] / medians[old]["cpu_us"] if medians[old]["cpu_us"] else 0.0
        ratios["%s/%s" % (new, old)] = {"throughput": rps, "cpu_per_request": cpu}
        print("%s/%s: throughput %.3f (%s: at least %.2f), CPU per request %.3f" % (
            new, old, rps, "ok" if rps >= floor else "BELOW", floor, cpu))
    result = {"backend": backend, "via": via, "routes": routes, "rounds": rounds,
              "duration": duration, "connections": connections,
              "gateways": {name: dict(gateways[name], rounds=figures[name],
                                      medians=medians[name]) for name in names},
              "ratios": ratios}
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
    shutil.rmtree(d, ignore_errors=True)  # kept (logs) only when the run stopped short
    return result


def add_arguments(ap):
    """The comparison's options (shared with run.py --compare)."""
    ap.add_argument("--base-tree", metavar="TREE",
                    help="also run this source tree with PRIVATE_BACKEND_URL only (e.g. a worktree "
                         "of the previous main commit) and print 1-route/base")
    ap.add_argument("--via", choices=("default", "host", "prefix"), default="default",
                    help="which route the N-route gateway's load takes (default: the catch-all, "
                         "after a host miss and a prefix miss)")
    ap.add_argument("--connections", type=int, default=64)


def main():
    from run import find_bench  # benchmarks/ is not a package; run.py imports this module

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=1000, help="routes in the generated file")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    add_arguments(ap)
    ap.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every gateway (repeatable), e.g. METRICS=off")
    ap.add_argument("--bench", help="path of bench.py (default: as run.py finds it)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--write", metavar="PATH",
                    help="only write the route file for --routes and --origin to PATH, then exit")
    ap.add_argument("--origin", default="http://127.0.0.1:8080", help="the routes' upstream, for --write")
    args = ap.parse_args()
    if args.write:
        write_routes(args.write, args.routes, args.origin)
        return
    compare(find_bench(args.bench), routes=args.routes, base_tree=args.base_tree,
            rounds=args.rounds, duration=args.duration, connections=args.connections,
            via=args.via, extra_env=args.gateway_env, json_path=args.json)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reproduce the README's "Performance" table.

Runs the side-by-side proxy benchmark (bench.py: a loopback nginx backend,
wrk as the load, and as proxies nginx, Node Express + http-proxy-middleware,
Twisted's stock proxy and this gateway, interleaved round by round) three
times:

  1. one gateway process, every scenario: latency, small, big, upload, c10k;
  2. the gateway with --workers N (default 2) against Node, small requests;
  3. one gateway process whose backend speaks TLS (an nginx serving the same
     locations over https with a certificate from a CA made for the run, the
     way a Hugging Face Space is reached), against nginx over plain http as
     the yardstick: latency, small, big, upload (--no-tls skips it).

Each run's raw figures are saved as JSON under benchmarks/results/, and the
table the README shows is printed in Markdown at the end.

Usage, from the project root (needs nginx, wrk and node; Debian:
apt-get install nginx-light wrk nodejs npm):

    pip install . && python benchmarks/run.py
    python benchmarks/run.py --rounds 3 --duration 5   # quicker, noisier
    python benchmarks/run.py --bench /path/to/bench.py

bench.py is looked for in --bench, then $WIGHAVEN_BENCH, then
../shared/bench/bench.py next to the project. bench.py starts its gateway
with `twistd`, i.e. the copy of the gateway installed in the active Python
(hence `pip install .` first).

--only and --scenarios narrow every run (bench.py's targets: direct, nginx,
node, naive, gateway; scenarios: latency, small, big, upload, c10k); a run
left with no target or scenario is skipped. --results DIR puts the JSON
elsewhere (a smoke run need not touch benchmarks/results/).

Many routes (README "Many Spaces: the config file"):

  --routes N   every gateway of the runs above serves a WIGHAVEN_CONFIG file
               of N generated routes (benchmarks/routes_bench.py writes it in
               a temporary folder): N//2 host routes, hosts = ["h<i>.bench.invalid"],
               and N - N//2 prefix routes, path = "/p<i>", each with one
               upstream, the gateway's backend. bench.py picks its backend's
               port itself, so for these runs run.py starts the same nginx
               backend (bench.py's configuration, benchmarks/local_backend.py)
               and hands the gateway both PRIVATE_BACKEND_URL (that backend)
               and WIGHAVEN_CONFIG through bench.py's --gateway-env KEY=VALUE;
               the peers keep bench.py's own backend. The file has no route at
               / without hosts, so PRIVATE_BACKEND_URL stays the catch-all
               route `default` and bench.py's requests (GET /small, /big,
               POST /upload on Host 127.0.0.1:<port>) take the whole lookup:
               a miss among the 500 exact hosts, a miss among the 500
               prefixes, then `default`. The JSON files get a -routes-N suffix.

  --compare    instead of the runs above, one interleaved run (routes_bench.py)
               of the gateway with PRIVATE_BACKEND_URL only (1 route) and the
               same tree with the N-route file (--routes, default 1000), both
               forwarding to one backend, small requests (GET /small, 64
               connections), round n starting with gateway n mod k; prints
               medians and N-routes/1-route (the issue: at least 0.95).
               --base-tree TREE adds an older tree with PRIVATE_BACKEND_URL
               only and prints 1-route/base too (the issue: at least 0.97).
               Each gateway runs from its tree (first on PYTHONPATH, and its
               working directory), nothing installed. --via host|prefix sends
               the N-route gateway's load to a host or a prefix route instead.

The issue's two figures from one run, on an idle machine:

    mkdir /tmp/wighaven-base && git archive PREVIOUS_MAIN | tar -x -C /tmp/wighaven-base
    # (or: git worktree add --detach /tmp/wighaven-base PREVIOUS_MAIN)
    python benchmarks/run.py --compare --routes 1000 --base-tree /tmp/wighaven-base \
        --rounds 7 --duration 5

and the README's table with 1,000 routes: python benchmarks/run.py --routes 1000.
(benchmarks/ab.py TREE_A TREE_B compares two trees too, but it starts its
gateways in the current directory, whose own wighaven/ Python imports before
PYTHONPATH: run from the project root, both of its gateways run the working
tree. Run it from elsewhere, e.g. cd /tmp && python /path/to/benchmarks/ab.py
/tmp/wighaven-base /path/to/project, or use --compare --base-tree.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
GATEWAY_CMD = "twistd -n --pidfile= wighaven --port {port}"
SCENARIOS = "latency,small,big,upload,c10k"
PEERS = (("nginx", "nginx"), ("node", "Node (Express + http-proxy-middleware)"),
         ("naive", "Twisted's stock proxy"))


def find_bench(given):
    for path in (given, os.environ.get("WIGHAVEN_BENCH"),
                 os.path.join(ROOT, "..", "shared", "bench", "bench.py")):
        if path and os.path.isfile(path):
            return os.path.abspath(path)
    sys.exit("benchmarks: bench.py not found; pass --bench PATH or set WIGHAVEN_BENCH")


def run_bench(bench, out, args, extra):
    argv = [sys.executable, bench, "--rounds", str(args.rounds), "--duration",
            str(args.duration), "--json", out] + extra
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, cwd=ROOT)
    with open(out) as f:
        return json.load(f)


def tls_backend(bench_path, workdir):
    """
    Start an nginx serving bench.py's backend locations over TLS (certificate
    for localhost from the tests' own CA). Returns (origin, CA bundle path,
    the process to stop).
    """
    sys.path.insert(0, ROOT)
    from local_backend import load_bench, start_backend
    from tests.support.certs import pki

    tls = pki()
    origin, proc = start_backend(load_bench(bench_path), workdir, certificate=tls.good)
    return origin, tls.ca_pem, proc


def figure(row, scenario, key):
    return (row or {}).get(scenario, {}).get(key)


def ratio(mine, theirs):
    return "%.2fx" % (mine / theirs) if mine and theirs else "n/a"


def tls_table(tls):
    """The TLS-upstream run, in Markdown: the gateway beside nginx over plain http."""
    gateway = tls["targets"].get("gateway", {})
    nginx = tls["targets"].get("nginx", {})
    direct = figure(tls["targets"].get("direct"), "latency", "lat_mean_ms") or 0.0
    lines = ["| Scenario (backend over TLS) | Gateway | nginx, plain-http backend |",
             "| --- | --- | --- |"]
    for label, scenario, key, unit in [
        ("GET 1 KiB, 64 connections", "small", "rps", "req/s"),
        ("GET 1 MiB, 8 connections", "big", "mbps", "MB/s"),
        ("POST 1 MiB, 8 connections", "upload", "rps", "req/s"),
    ]:
        mine, theirs = figure(gateway, scenario, key), figure(nginx, scenario, key)
        lines.append("| %s | %s %s | %s (gateway %s) |" % (
            label, format(mine or 0, ",.0f"), unit, format(theirs or 0, ",.0f"),
            ratio(mine, theirs)))
    mine, theirs = figure(gateway, "latency", "lat_mean_ms"), figure(nginx, "latency", "lat_mean_ms")
    lines.append("| added latency, 1 connection | %s | %s |" % tuple(
        "%.2f ms" % (m - direct) if m is not None else "n/a" for m in (mine, theirs)))
    return "\n".join(lines)


def table(one, many, workers):
    """The README's table, in Markdown."""
    targets = one["targets"]
    gateway = targets.get("gateway", {})
    direct = figure(targets.get("direct"), "latency", "lat_mean_ms") or 0.0
    lines = ["| Scenario | Gateway | " + " | ".join(name for _, name in PEERS) + " |",
             "| --- | --- |" + " --- |" * len(PEERS)]

    def row(label, scenario, key, unit, fmt="{:,.0f}"):
        mine = figure(gateway, scenario, key)
        cells = [label, (fmt.format(mine) + " " + unit) if mine is not None else "n/a"]
        for peer, _ in PEERS:
            theirs = figure(targets.get(peer), scenario, key)
            cells.append("%s (gateway %s)" % (fmt.format(theirs), ratio(mine, theirs))
                         if theirs is not None else "n/a")
        lines.append("| " + " | ".join(cells) + " |")

    row("GET 1 KiB, 64 connections", "small", "rps", "req/s")
    row("GET 1 MiB, 8 connections", "big", "mbps", "MB/s")
    row("POST 1 MiB, 8 connections", "upload", "rps", "req/s")
    cells = ["added latency, 1 connection"]
    for name in ["gateway"] + [peer for peer, _ in PEERS]:
        mean = figure(targets.get(name), "latency", "lat_mean_ms")
        cells.append("%.2f ms" % (mean - direct) if mean is not None else "n/a")
    lines.append("| " + " | ".join(cells) + " |")
    cells = ["GET 1 KiB, 10,000 connections"]
    for name in ["gateway"] + [peer for peer, _ in PEERS]:
        rps = figure(targets.get(name), "c10k", "rps")
        errors = figure(targets.get(name), "c10k", "sock_err")
        cells.append("%s req/s, %s errors" % (format(rps, ",.0f"), errors)
                     if rps is not None else "n/a")
    lines.append("| " + " | ".join(cells) + " |")
    cells = ["idle RSS / start-up"]
    for name in ["gateway"] + [peer for peer, _ in PEERS]:
        t = targets.get(name)
        cells.append("%.0f MiB / %.2f s" % (t["rss_idle_kib"] / 1024, t["startup_s"])
                     if t and "rss_idle_kib" in t else "n/a")
    lines.append("| " + " | ".join(cells) + " |")
    if many:
        mt = many["targets"]
        mine, node = figure(mt.get("gateway"), "small", "rps"), figure(mt.get("node"), "small", "rps")
        lines += [
            "",
            "| Scenario | Gateway, `--workers %d` | Node (Express + http-proxy-middleware) |"
            % workers,
            "| --- | --- | --- |",
            "| GET 1 KiB, 64 connections | %s req/s | %s (gateway %s) |"
            % (format(mine or 0, ",.0f"), format(node or 0, ",.0f"), ratio(mine, node)),
        ]
    return "\n".join(lines)


def narrowed(wanted, allowed):
    """The items of the comma-separated C{allowed} that C{wanted} (or None: all) keeps."""
    keep = [item for item in allowed.split(",") if wanted is None or item in wanted.split(",")]
    return ",".join(keep)


class Routes:
    """
    --routes N for bench.py's runs: a backend of our own (bench.py's port is
    not known before it starts) and the route files pointing at it.
    """

    def __init__(self, bench, n):
        sys.path.insert(0, HERE)
        from local_backend import load_bench, start_backend

        self.n = n
        self.files = 0
        self.workdir = tempfile.mkdtemp(prefix="wighaven-routes-")
        self.origin, self.backend = start_backend(load_bench(bench), self.workdir)

    def gateway_env(self, origin=None):
        """bench.py options: the gateway forwards to C{origin} (ours by default) with N routes."""
        from routes_bench import write_routes

        origin = origin or self.origin
        self.files += 1
        path = os.path.join(self.workdir, "routes-%d.toml" % self.files)
        write_routes(path, self.n, origin)
        return ["--gateway-env", "WIGHAVEN_CONFIG=" + path] + (
            [] if origin != self.origin else ["--gateway-env", "PRIVATE_BACKEND_URL=" + origin])

    def stop(self):
        self.backend.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Details and the many-routes modes: see below.",
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="path of bench.py")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--workers", type=int, default=2, help="workers for the second run (0: skip it)")
    ap.add_argument("--no-tls", action="store_true", help="skip the run over a TLS backend")
    ap.add_argument("--only", help="bench.py targets to keep in every run (comma-separated)")
    ap.add_argument("--scenarios", help="scenarios to keep in every run (comma-separated)")
    ap.add_argument("--results", default=RESULTS, help="folder of the JSON files (default: %(default)s)")
    ap.add_argument("--routes", type=int, default=0, metavar="N",
                    help="the gateway serves a generated file of N routes (N/2 host, N/2 prefix); "
                         "0: PRIVATE_BACKEND_URL only, as the README's table")
    ap.add_argument("--compare", action="store_true",
                    help="only the interleaved comparison: 1 route against --routes N (default "
                         "1000), small requests (benchmarks/routes_bench.py)")
    ap.add_argument("--auth", action="store_true",
                    help="only the access-control run (benchmarks/auth_bench.py): AUTH off "
                         "against AUTH=on with a Bearer JWT and with an X-API-Key, small "
                         "requests, interleaved (B/A and C/A: at least 0.9), then forwarding "
                         "with and without a login flood")
    ap.add_argument("--admin", action="store_true",
                    help="only the admin API run (benchmarks/admin_bench.py): AUTH=on forwarding "
                         "with the admin panels closed and open (3 panels polling every 2 s), "
                         "interleaved, then how long a route added through the API takes to "
                         "answer, with WORKERS=2 and 1")
    sys.path.insert(0, HERE)
    import routes_bench

    routes_bench.add_arguments(ap)
    args = ap.parse_args()
    bench = find_bench(args.bench)
    os.makedirs(args.results, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    if args.auth:
        import auth_bench

        auth_bench.run(
            bench, rounds=args.rounds, duration=args.duration, connections=args.connections,
            json_path=os.path.join(args.results, "%s-auth.json" % stamp))
        return
    if args.admin:
        import admin_bench

        admin_bench.run(
            bench, rounds=args.rounds, duration=args.duration, connections=args.connections,
            json_path=os.path.join(args.results, "%s-admin.json" % stamp))
        return
    if args.compare:
        n = args.routes or 1000
        routes_bench.compare(
            bench, routes=n, base_tree=args.base_tree, rounds=args.rounds,
            duration=args.duration, connections=args.connections, via=args.via,
            json_path=os.path.join(args.results, "%s-routes-%d-compare%s.json" % (
                stamp, n, "" if args.via == "default" else "-via-" + args.via)))
        return
    if args.base_tree or args.via != "default":
        ap.error("--base-tree and --via go with --compare")
    suffix = "-routes-%d" % args.routes if args.routes else ""
    routes = Routes(bench, args.routes) if args.routes else None
    try:
        runs = run_all(bench, args, stamp, suffix, routes)
    finally:
        if routes is not None:
            routes.stop()
    one, many, tls = runs
    print()
    print("Machine: %s, %d cores, Python %s; %s" % (
        platform.platform(), os.cpu_count() or 0, platform.python_version(), stamp))
    if routes is not None:
        print("Gateway: %d routes from a generated WIGHAVEN_CONFIG file (%d host, %d prefix), "
              "plus PRIVATE_BACKEND_URL's `default`, which takes bench.py's requests."
              % (args.routes, args.routes // 2, args.routes - args.routes // 2))
    if one is not None:
        print()
        print(table(one, many, args.workers))
    if tls is not None:
        print()
        print(tls_table(tls))


def run_all(bench, args, stamp, suffix, routes):
    """The three bench.py runs (each None when skipped): one process, --workers, TLS backend."""
    gateway_env = routes.gateway_env() if routes is not None else []
    one = many = tls = None
    only, scenarios = narrowed(args.only, "direct,nginx,node,naive,gateway"), narrowed(
        args.scenarios, SCENARIOS)
    if only and scenarios:
        one = run_bench(bench, os.path.join(args.results, stamp + "-one-process%s.json" % suffix),
                        args, ["--only", only, "--scenarios", scenarios,
                               "--gateway-cmd", GATEWAY_CMD] + gateway_env)
    only, scenarios = narrowed(args.only, "node,gateway"), narrowed(args.scenarios, "small")
    if args.workers > 1 and "gateway" in only and scenarios:
        many = run_bench(
            bench, os.path.join(args.results, "%s-workers-%d%s.json" % (stamp, args.workers, suffix)),
            args, ["--only", only, "--scenarios", scenarios,
                   "--gateway-cmd", GATEWAY_CMD + " --workers %d" % args.workers] + gateway_env,
        )
    only = narrowed(args.only, "direct,nginx,gateway")
    scenarios = narrowed(args.scenarios, "latency,small,big,upload")
    if not args.no_tls and only and scenarios:
        workdir = tempfile.mkdtemp(prefix="wighaven-tls-backend-")
        origin, ca_bundle, backend = tls_backend(bench, workdir)
        try:
            tls = run_bench(
                bench, os.path.join(args.results, stamp + "-tls-upstream%s.json" % suffix), args,
                ["--only", only, "--scenarios", scenarios,
                 "--gateway-cmd", GATEWAY_CMD,
                 "--gateway-env", "PRIVATE_BACKEND_URL=" + origin,
                 "--gateway-env", "BACKEND_CA_BUNDLE=" + ca_bundle]
                + (routes.gateway_env(origin) if routes is not None else []),
            )
        finally:
            backend.stop()
    return one, many, tls


if __name__ == "__main__":
    main()

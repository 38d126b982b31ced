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
../shared/bench/bench.py next to the project.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", help="path of bench.py")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--workers", type=int, default=2, help="workers for the second run (0: skip it)")
    ap.add_argument("--no-tls", action="store_true", help="skip the run over a TLS backend")
    args = ap.parse_args()
    bench = find_bench(args.bench)
    os.makedirs(RESULTS, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    one = run_bench(bench, os.path.join(RESULTS, stamp + "-one-process.json"), args,
                    ["--scenarios", SCENARIOS, "--gateway-cmd", GATEWAY_CMD])
    many = None
    if args.workers > 1:
        many = run_bench(
            bench, os.path.join(RESULTS, "%s-workers-%d.json" % (stamp, args.workers)), args,
            ["--only", "node,gateway", "--scenarios", "small",
             "--gateway-cmd", GATEWAY_CMD + " --workers %d" % args.workers],
        )
    tls = None
    if not args.no_tls:
        workdir = tempfile.mkdtemp(prefix="wighaven-tls-backend-")
        origin, ca_bundle, backend = tls_backend(bench, workdir)
        try:
            tls = run_bench(
                bench, os.path.join(RESULTS, stamp + "-tls-upstream.json"), args,
                ["--only", "direct,nginx,gateway", "--scenarios", "latency,small,big,upload",
                 "--gateway-cmd", GATEWAY_CMD,
                 "--gateway-env", "PRIVATE_BACKEND_URL=" + origin,
                 "--gateway-env", "BACKEND_CA_BUNDLE=" + ca_bundle],
            )
        finally:
            backend.stop()
    print()
    print("Machine: %s, %d cores, Python %s; %s" % (
        platform.platform(), os.cpu_count() or 0, platform.python_version(), stamp))
    print()
    print(table(one, many, args.workers))
    if tls is not None:
        print()
        print(tls_table(tls))


if __name__ == "__main__":
    main()

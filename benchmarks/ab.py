#!/usr/bin/env python3
"""A/B: what a change costs on the request path, two source trees side by side.

bench.py compares the gateway with its peers; this compares the gateway with
itself. Two gateways, one per source tree (say a `git worktree` of the last
release and the working tree), forward to the same nginx backend, and wrk
loads them in turn, round after round (A, B, then B, A, ...), so that a
machine that drifts slows both alike and neither is always second. On a
shared machine one gateway process can also run faster than the other for
its whole life: swap the trees and run again before believing a difference
of less than a tenth. Figures are medians over rounds: requests/s,
p99, and CPU microseconds per request (the gateway process's user+system
time over the round divided by its requests).

Usage, from the project root (needs nginx and wrk, and bench.py for its
backend configuration: see run.py):

    git worktree add /tmp/base HEAD~5
    python benchmarks/ab.py /tmp/base .
    python benchmarks/ab.py /tmp/base . --rounds 7 --duration 5 --path /small

Each tree is put first on PYTHONPATH of its gateway (as the tests do), so
neither needs installing. Loops are bounded; everything is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from local_backend import gateway_argv, load_bench, start_backend  # noqa: E402
from run import find_bench  # noqa: E402  (benchmarks/ is not a package)


def cpu_seconds(pid) -> float:
    """User plus system CPU seconds of C{pid} so far (from /proc)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree_a")
    ap.add_argument("tree_b")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--bench", help="path of bench.py (default: as run.py finds it)")
    args = ap.parse_args()
    bench = load_bench(find_bench(args.bench))

    d = tempfile.mkdtemp(prefix="wighaven-ab-")
    backend, backend_proc = start_backend(bench, d)
    procs = [backend_proc]
    try:
        gateways = {}
        for name, tree in (("A", args.tree_a), ("B", args.tree_b)):
            port = bench.free_port()
            env = dict(os.environ, PRIVATE_BACKEND_URL=backend, HF_TOKEN=bench.TOKEN,
                       LOG_LEVEL="warn", PYTHONPATH=os.path.abspath(tree))
            # Run from the tree itself: Python puts the working directory before
            # PYTHONPATH, so from anywhere else a tree inside it would win.
            proc = bench.Proc("gateway-" + name, gateway_argv("--port", str(port)), env=env,
                              cwd=os.path.abspath(tree), logdir=d)
            procs.append(proc)
            if bench.wait_http("http://127.0.0.1:%d%s" % (port, args.path)) is None:
                sys.exit("ab: gateway %s did not answer; see %s" % (name, d))
            gateways[name] = (port, proc.p.pid)
        figures = {name: [] for name in gateways}
        for n in range(args.rounds):
            # A, B then B, A: the second run of a round was measured about 5%
            # faster than the first even with A and B the same tree.
            order = ("A", "B") if n % 2 == 0 else ("B", "A")
            for name in order:
                port, pid = gateways[name]
                before = cpu_seconds(pid)
                result, _ = bench.run_wrk("http://127.0.0.1:%d%s" % (port, args.path),
                                          args.connections, 2, args.duration)
                cpu = cpu_seconds(pid) - before
                result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
                figures[name].append(result)
            print("round %d/%d: A %.0f req/s, B %.0f req/s" % (
                n + 1, args.rounds, figures["A"][-1]["rps"], figures["B"][-1]["rps"]), flush=True)
            time.sleep(0.5)
        print("\n%-4s %-40s %10s %8s %10s %7s" % ("", "tree", "req/s", "p99 ms", "CPU us/req", "errors"))
        medians = {}
        for name, tree in (("A", args.tree_a), ("B", args.tree_b)):
            rows = figures[name]
            medians[name] = {key: statistics.median(r.get(key, 0) for r in rows)
                             for key in ("rps", "p99_ms", "cpu_us")}
            errors = sum(r["sock_err"] + r["non2xx"] for r in rows)
            print("%-4s %-40s %10.0f %8.2f %10.1f %7d" % (
                name, tree, medians[name]["rps"], medians[name]["p99_ms"],
                medians[name]["cpu_us"], errors))
        print("\nB/A: throughput %.3f, CPU per request %.3f" % (
            medians["B"]["rps"] / medians["A"]["rps"],
            medians["B"]["cpu_us"] / medians["A"]["cpu_us"]))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Where one gateway's time goes under small requests: CPU per request, garbage
collections per 10,000 requests, and a py-spy profile (top self-time functions).

One gateway (from a source tree: the working tree by default) forwards to a
loopback nginx backend (bench.py's configuration) while wrk sends 1 KiB GETs
over 64 connections; py-spy samples the gateway during a second run of the
same load. The gateway runs under a small wrapper that writes, at exit, its
garbage collector's per-generation collection counts and its CPU time, and
every request it served is counted (warm-up included), so the figures are
per request exactly.

Usage, from the project root (needs nginx, wrk, and py-spy: pip install py-spy):

    python benchmarks/profile.py                 # the working tree
    python benchmarks/profile.py /tmp/base --top 25 --duration 10

Bounded: two wrk runs of --duration seconds and a 2 s warm-up, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from local_backend import load_bench, start_backend  # noqa: E402  (not a package)
from run import find_bench  # noqa: E402

# Runs twistd; at exit writes gc collections and CPU seconds to $WIGHAVEN_PROFILE_REPORT.
WRAPPER = """
import atexit, gc, json, os, resource, sys

def report():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["WIGHAVEN_PROFILE_REPORT"], "w") as f:
        json.dump({"collections": [s["collections"] for s in gc.get_stats()],
                   "cpu_seconds": usage.ru_utime + usage.ru_stime}, f)

atexit.register(report)
from twisted.scripts.twistd import run
sys.argv = ["twistd"] + sys.argv[1:]
run()
"""


def stacks(raw_path):
    """(function names from the root to the leaf, samples) of each line of py-spy's raw output."""
    with open(raw_path) as f:
        for line in f:
            stack, _, samples = line.rstrip().rpartition(" ")
            if stack and samples.isdigit():
                yield [re.sub(r" \(.*", "", frame) for frame in stack.split(";")], int(samples)


def top_self_time(raw_path, count):
    """(percent, function) of the C{count} functions with most self time in py-spy's raw output."""
    leaves = collections.Counter()
    total = 0
    for frames, samples in stacks(raw_path):
        total += samples
        leaves[frames[-1] or "(native)"] += samples
    return [(100.0 * n / total, name) for name, n in leaves.most_common(count)], total


def inclusive_time(raw_path, count):
    """(percent, function) of the C{count} functions on most samples' stacks (self plus callees)."""
    on_stack = collections.Counter()
    total = 0
    for frames, samples in stacks(raw_path):
        total += samples
        for name in set(frames):
            on_stack[name] += samples
    return [(100.0 * n / total, name) for name, n in on_stack.most_common(count)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree", nargs="?", default=".")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--inclusive", type=int, default=0,
                    help="also list this many functions by inclusive time")
    ap.add_argument("--bench", help="path of bench.py (default: as run.py finds it)")
    args = ap.parse_args()
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        sys.exit("profile: py-spy not found (pip install py-spy)")
    bench = load_bench(find_bench(args.bench))

    d = tempfile.mkdtemp(prefix="wighaven-profile-")
    wrapper = os.path.join(d, "wrapper.py")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    report = os.path.join(d, "report.json")
    backend, backend_proc = start_backend(bench, d)
    procs = [backend_proc]
    try:
        port = bench.free_port()
        env = dict(os.environ, PRIVATE_BACKEND_URL=backend, HF_TOKEN=bench.TOKEN,
                   LOG_LEVEL="warn", PYTHONPATH=os.path.abspath(args.tree),
                   WIGHAVEN_PROFILE_REPORT=report)
        gateway = bench.Proc("gateway", [sys.executable, wrapper, "-n", "--pidfile=", "wighaven",
                                         "--port", str(port)], env=env, logdir=d)
        procs.append(gateway)
        url = "http://127.0.0.1:%d/small" % port
        if bench.wait_http(url) is None:
            sys.exit("profile: the gateway did not answer; see " + d)
        requests = 1  # wait_http's
        warm, _ = bench.run_wrk(url, 64, 2, 2)
        measured, _ = bench.run_wrk(url, 64, 2, args.duration)
        raw = os.path.join(d, "profile.raw")
        spy = subprocess.Popen([py_spy, "record", "-p", str(gateway.p.pid), "-d", str(args.duration),
                                "-r", "250", "-f", "raw", "-o", raw, "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        profiled, _ = bench.run_wrk(url, 64, 2, args.duration)
        spy.wait(args.duration + 30)
        requests += warm["requests"] + measured["requests"] + profiled["requests"]
        gateway.stop()  # SIGTERM: a drain, then the wrapper's report at exit
        with open(report) as f:
            figures = json.load(f)
        print("tree %s: %.0f req/s (64 connections, %d s), %d requests in all"
              % (args.tree, measured["rps"], args.duration, requests))
        print("CPU per request: %.1f us" % (figures["cpu_seconds"] / requests * 1e6))
        per = [n * 10000.0 / requests for n in figures["collections"]]
        print("garbage collections per 10,000 requests: gen0 %.0f, gen1 %.1f, gen2 %.2f" % tuple(per))
        if os.path.exists(raw):
            rows, samples = top_self_time(raw, args.top)
            print("\npy-spy, top self time (%d samples):" % samples)
            for percent, name in rows:
                print("  %5.1f%%  %s" % (percent, name))
            if args.inclusive:
                print("\npy-spy, top inclusive time:")
                for percent, name in inclusive_time(raw, args.inclusive):
                    print("  %5.1f%%  %s" % (percent, name))
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()

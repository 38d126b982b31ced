"""The backend the benchmark scripts forward to: bench.py's own nginx
configuration (its /small, /big, /upload and /authcheck locations), started
in a folder of its own, over plain http or over TLS.

Shared by ab.py, profile.py and run.py's TLS run, so that every figure they
print is measured against the very backend bench.py uses.
"""

from __future__ import annotations

import importlib.util
import os
import sys

NGINX = "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else "nginx"


def load_bench(path):
    """bench.py (the side-by-side benchmark) as a module."""
    spec = importlib.util.spec_from_file_location("bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def start_backend(bench, workdir, certificate=None):
    """
    Start nginx in C{workdir} serving bench.py's locations, over TLS when
    C{certificate} (a PEM file holding key and certificate for localhost) is
    given. Returns (origin, the bench.Proc to stop); exits when it does not
    answer.
    """
    os.makedirs(os.path.join(workdir, "www"), exist_ok=True)
    with open(os.path.join(workdir, "www", "small.json"), "wb") as f:
        f.write(bench.SMALL)
    with open(os.path.join(workdir, "www", "big.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    port = bench.free_port()
    conf = bench.BACKEND_CONF.format(d=workdir, port=port, token=bench.TOKEN)
    if certificate is not None:
        plain = "listen 127.0.0.1:%d backlog=8192;" % port
        if plain not in conf:
            sys.exit("benchmarks: bench.py's backend configuration changed; update local_backend.py")
        conf = conf.replace(plain, "listen 127.0.0.1:%d ssl backlog=8192; ssl_certificate %s; "
                            "ssl_certificate_key %s;" % (port, certificate, certificate))
    path = os.path.join(workdir, "backend.conf")
    with open(path, "w") as f:
        f.write(conf)
    proc = bench.Proc("backend", [NGINX, "-c", path], logdir=workdir)
    if certificate is None:
        origin = "http://127.0.0.1:%d" % port
        if bench.wait_http(origin + "/small") is None:
            proc.stop()
            sys.exit("benchmarks: the nginx backend did not start; see " + workdir)
    else:
        origin = "https://localhost:%d" % port  # the name the certificate is for
    return origin, proc


def gateway_argv(*options):
    """This Python's twistd running the gateway plugin, with C{options}."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "wighaven"] + list(options)

"""Start the gateway for a test: in this process (fast, same reactor) or as
a real `twistd -n wighaven` subprocess (for memory, logs and start-up)."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

from twisted.internet import defer, reactor

from wighaven.config.settings import load_config
from wighaven.run.service import GatewayService

from .certs import pki

TOKEN = "hf_testtoken_S3cr3t_0123456789abcdef"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gateway_env(backend_url, **settings):
    env = {
        "PRIVATE_BACKEND_URL": backend_url,
        "HF_TOKEN": TOKEN,
        "BACKEND_CA_BUNDLE": pki().ca_pem,
        "INTERFACE": "127.0.0.1",
        "PORT": "0",
    }
    env.update({k: str(v) for k, v in settings.items() if v is not None})
    for k in [k for k, v in settings.items() if v is None]:
        env.pop(k, None)
    return env


@defer.inlineCallbacks
def start_gateway(testcase, backend_url, **settings):
    """
    Run a gateway in this process for the duration of C{testcase}.

    @param settings: environment-style overrides (UPSTREAM_TIMEOUT="1"...);
        a value of None removes that setting.
    @return: a Deferred firing with (GatewayService, port number).
    """
    config = load_config(gateway_env(backend_url, **settings))
    service = GatewayService(config, reactor)
    service.startService()
    testcase.addCleanup(service.stopService)
    port = yield service.listening
    return service, port.getHost().port


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayProcess:
    """A real `twistd -n wighaven` process, its output captured to a file."""

    def __init__(self, backend_url, log_path, args=(), port=None, **settings):
        """C{args}: extra `twistd wighaven` options (e.g. ["--workers", "2"]);
        C{port}: one chosen before (another server must know it), else a free one."""
        self.port = port or free_port()
        env = dict(os.environ)
        env.update(gateway_env(backend_url, PORT=self.port, **settings))
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "wighaven", *args],
            env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def wait_ready(self, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited: " + self.output())
            try:
                with urllib.request.urlopen(self.url + "/gateway-health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("gateway did not start: " + self.output())

    def _status_kib(self, field):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError("no " + field)

    def rss_kib(self):
        """Resident memory now."""
        return self._status_kib("VmRSS")

    def peak_rss_kib(self):
        """The highest resident memory the process has had (VmHWM)."""
        return self._status_kib("VmHWM")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def output(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

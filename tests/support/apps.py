"""Real Space apps for tests: a Gradio app and a Streamlit app, each behind a
local TLS front (nginx, Debian's nginx-light) that behaves like Hugging
Face's: it answers 404 to any request without the owner's token.

    client -> gateway (http) -> nginx front (https, token check) -> app (http)

Every process runs on 127.0.0.1 and is stopped by the test that started it.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from .certs import pki
from .gateway import free_port

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")

_FRONT_CONF = """
daemon off; master_process off; worker_processes 1;
pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/cbt; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
  uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {crt}; ssl_certificate_key {key};
    client_max_body_size 0;
    location / {{
      if ($http_authorization != "Bearer {token}") {{ return 404 "Space not found\\n"; }}
      proxy_pass http://127.0.0.1:{app_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
    }}
  }}
}}
"""


def nginx_binary():
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def _wait_http(url, timeout, proc, log, headers=None, expect=200):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited early:\n%s" % (url, _tail(log)))
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as r:
                if r.status == expect:
                    return
        except urllib.error.HTTPError as e:
            if e.code == expect:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("%s did not come up:\n%s" % (url, _tail(log)))


def _tail(path):
    with open(path, "rb") as f:
        return f.read()[-3000:].decode("utf-8", "replace")


class Process:
    """A subprocess with its output in a log file; stop() ends its process group."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True,
        )

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._log.close()


class PrivateSpace:
    """An app behind a token-checking TLS front; C{origin} is the front's."""

    def __init__(self, kind, token):
        self.dir = tempfile.mkdtemp(prefix="wighaven-%s-" % kind)
        self.app_port = free_port()
        self.port = free_port()
        self.origin = "https://localhost:%d" % self.port
        self._processes = []
        try:
            self._start_app(kind)
            self._start_front(token)
        except Exception:
            self.stop()
            raise

    def _start_app(self, kind):
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                   HF_HUB_DISABLE_TELEMETRY="1", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
        log = os.path.join(self.dir, kind + ".log")
        if kind == "gradio":
            argv = [sys.executable, os.path.join(APPS, "gradio_app.py"), str(self.app_port)]
        else:
            argv = [
                sys.executable, "-m", "streamlit", "run", os.path.join(APPS, "streamlit_app.py"),
                "--server.port", str(self.app_port), "--server.address", "127.0.0.1",
                "--server.headless", "true", "--browser.gatherUsageStats", "false",
            ]
        app = Process(argv, log, env=env, cwd=self.dir)
        self._processes.append(app)
        health = "/" if kind == "gradio" else "/_stcore/health"
        _wait_http("http://127.0.0.1:%d%s" % (self.app_port, health), 90, app.proc, log)

    def _start_front(self, token):
        nginx = nginx_binary()
        if nginx is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        conf = os.path.join(self.dir, "front.conf")
        with open(conf, "w") as f:
            f.write(_FRONT_CONF.format(
                d=self.dir, port=self.port, app_port=self.app_port, token=token,
                crt=pki().good[:-4] + ".crt", key=pki().good[:-4] + ".key",
            ))
        log = os.path.join(self.dir, "front.log")
        front = Process([nginx, "-c", conf, "-e", os.path.join(self.dir, "error.log")], log)
        self._processes.append(front)
        import ssl

        context = ssl.create_default_context(cafile=pki().ca_pem)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(self.origin + "/", timeout=2, context=context)
                raise RuntimeError("the front let a request without the token through")
            except urllib.error.HTTPError as e:
                if e.code == 404:  # up, and refusing a request without the token
                    return
                raise
            except OSError:
                if front.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx front did not start:\n" + _tail(log))
                time.sleep(0.1)

    def stop(self):
        for process in reversed(self._processes):
            process.stop()


class PrivateGradioReplica(PrivateSpace):
    """
    A Gradio app (C{script} in tests/apps) behind its own token-checking
    front, with its own GRADIO_TEMP_DIR (what one replica keeps, another
    does not have) and extra environment C{env} (REPLICA_NAME,
    GRADIO_ROOT_PATH...).
    """

    def __init__(self, token, script="gradio_replica_app.py", env=None):
        self._script = script
        self._extra_env = dict(env or {})
        super().__init__("gradio", token)

    def _start_app(self, kind):
        self.temp_dir = os.path.join(self.dir, "gradio-tmp")
        os.makedirs(self.temp_dir)
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                   HF_HUB_DISABLE_TELEMETRY="1", GRADIO_TEMP_DIR=self.temp_dir)
        env.pop("GRADIO_ROOT_PATH", None)
        env.update(self._extra_env)
        log = os.path.join(self.dir, "gradio.log")
        argv = [sys.executable, os.path.join(APPS, self._script), str(self.app_port)]
        app = Process(argv, log, env=env, cwd=self.dir)
        self._processes.append(app)
        _wait_http("http://127.0.0.1:%d/" % self.app_port, 90, app.proc, log)

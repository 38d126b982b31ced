"""A plain HTTP client for tests, run in a thread so the reactor keeps
serving the gateway and the backend meanwhile.

It is deliberately not treq: treq would decode gzip and keep cookies,
hiding exactly what the tests must see. http.client gives the raw status,
every header line as sent (duplicates kept) and the undecoded body.
"""

import http.client
import socket

from twisted.internet.threads import deferToThread


class Reply:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), in order, duplicates kept
        self.body = body

    def get_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name, default=None):
        values = self.get_all(name)
        return values[0] if values else default

    def json(self):
        import json

        return json.loads(self.body)


def _fetch(port, method, target, headers, body, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host="Host" in (headers or {}),
                        skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            for v in value if isinstance(value, list) else [value]:
                conn.putheader(name, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, resp.reason, resp.getheaders(), data)
    finally:
        conn.close()


def fetch(port, method="GET", target="/", headers=None, body=None, timeout=20):
    """Deferred firing with the L{Reply} to one request on a new connection."""
    return deferToThread(_fetch, port, method, target, headers, body, timeout)


def _raw(port, data, timeout):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def raw(port, data, timeout=10):
    """Send raw bytes on a new connection; Deferred firing with all bytes read until close."""
    return deferToThread(_raw, port, data, timeout)


def read_head(sock) -> bytes:
    """Bytes read from C{sock} until the end of a response head (or its close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data

"""Keeping a session on one upstream of a route (the config file's C{affinity}).

- C{cookie}: the first answer to a browser sets a cookie naming its
  upstream by a tag: an HMAC of the route and the upstream's URL under a
  secret, so the value can be neither guessed nor read back into a URL.
  Later requests (WebSocket handshakes and uploads included) carrying it go
  to that upstream while it is available.
- C{gradio}: the cookie, plus cookie-less API clients (gradio_client):
  Gradio names a session by the C{session_hash} the client makes up (in
  C{queue/join}'s JSON body, C{queue/data?session_hash=...},
  C{heartbeat/<session_hash>}) and a call by the C{event_id} its answer
  returns (C{call/<api>} answers C{{"event_id": ...}}, then
  C{call/<api>/<event_id>} streams the result). The gateway learns which
  upstream served each and sends the rest of the session there. An upload
  (C{upload}) carries neither: its answer lists the paths the files got on
  that replica, and a later join that names one of them (in its C{data})
  goes where the file is.

Memory is bounded: L{Sessions} is an LRU of at most C{max_entries} keys,
each forgotten C{ttl} seconds after its last use. A join body is looked at
only up to L{MAX_JOIN_BODY} bytes (never more is held), and only when it is
complete within them.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import re
from typing import Iterable, Optional
from urllib.parse import parse_qs

__all__ = [
    "AffinityCookie", "MAX_JOIN_BODY", "Sessions", "event_id_from_answer", "file_keys_from_join",
    "gradio_keys", "session_hash_from_join", "uploaded_files_from_answer",
]

MAX_JOIN_BODY = 64 * 1024
_HEARTBEAT = re.compile(rb"/heartbeat/([A-Za-z0-9_-]{1,128})$")
_CALL_RESULT = re.compile(rb"/call/[^/]+/([A-Za-z0-9_-]{1,128})$")
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class AffinityCookie:
    """The affinity cookie of one route over its upstreams (objects with C{url})."""

    def __init__(self, secret: bytes, route_name: str, upstreams: Iterable, path: str):
        self.name = ("wh_aff_" + route_name.replace("-", "_")).encode("ascii")
        self._path = path.encode("ascii")
        self._tags = {}
        self._by_tag = {}
        for upstream in upstreams:
            mac = hmac.new(secret, ("%s\0%s" % (route_name, upstream.url)).encode(),
                           hashlib.sha256).digest()
            tag = base64.urlsafe_b64encode(mac[:18]).rstrip(b"=")
            self._tags[id(upstream)] = tag
            self._by_tag[tag] = upstream

    def upstream_for(self, cookie_value: Optional[bytes]):
        """The upstream a request's cookie value names, or None."""
        return self._by_tag.get(cookie_value) if cookie_value else None

    def set_cookie(self, upstream, secure: bool) -> bytes:
        """The Set-Cookie value binding a browser to C{upstream}."""
        return b"%s=%s; Path=%s; HttpOnly; SameSite=Lax%s" % (
            self.name, self._tags[id(upstream)], self._path, b"; Secure" if secure else b"")


def gradio_keys(path: bytes, query: bytes) -> list:
    """The Gradio session and event keys a request's path and query name."""
    keys = []
    match = _HEARTBEAT.search(path)
    if match:
        keys.append(b"s:" + match.group(1))
    match = _CALL_RESULT.search(path)
    if match:
        keys.append(b"e:" + match.group(1))
    if query and b"session_hash=" in query:
        try:
            values = parse_qs(query.decode("ascii"), max_num_fields=32).get("session_hash", [])
        except (UnicodeDecodeError, ValueError):
            values = []
        keys.extend(b"s:" + v.encode() for v in values[:1] if _KEY.match(v))
    return keys


def session_hash_from_join(body: bytes) -> Optional[bytes]:
    """The C{session_hash} of a C{queue/join} body, when whole within MAX_JOIN_BODY."""
    return _key_in_json(body, "session_hash", b"s:")


def event_id_from_answer(body: bytes) -> Optional[bytes]:
    """The C{event_id} of a C{call/<api>} or C{queue/join} answer."""
    return _key_in_json(body, "event_id", b"e:")


MAX_FILES = 32  # file paths learnt from one answer, or looked for in one join
_MAX_PATH = 1024


def uploaded_files_from_answer(body: bytes) -> list:
    """The file keys of an C{upload} answer: a JSON list of the paths the files got."""
    document = _json(body)
    if not isinstance(document, list):
        return []
    return [_file_key(path) for path in document[:MAX_FILES] if _is_path(path)]


def file_keys_from_join(body: bytes) -> list:
    """The file keys a C{queue/join} body's C{data} names (C{{"path": ...}} objects)."""
    document = _json(body)
    if not isinstance(document, dict):
        return []
    keys = []
    stack = [document.get("data")]
    seen = 0
    while stack and len(keys) < MAX_FILES and seen < 10_000:
        item = stack.pop()
        seen += 1
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            path = item.get("path")
            if _is_path(path):
                keys.append(_file_key(path))
            stack.extend(v for v in item.values() if isinstance(v, (list, dict)))
    return keys


def _is_path(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_PATH


def _file_key(path: str) -> bytes:
    return b"f:" + path.encode("utf-8", "replace")


def _json(body: bytes):
    if not body or len(body) > MAX_JOIN_BODY:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _key_in_json(body: bytes, field: str, prefix: bytes) -> Optional[bytes]:
    document = _json(body)
    value = document.get(field) if isinstance(document, dict) else None
    if isinstance(value, str) and _KEY.match(value):
        return prefix + value.encode()
    return None


class Sessions:
    """Session and event keys -> upstream: an LRU with a time to live."""

    def __init__(self, clock, max_entries: int = 10_000, ttl: float = 3600.0):
        self._clock = clock
        self._max = max_entries
        self._ttl = ttl
        self._entries = collections.OrderedDict()  # key -> (upstream, expires)

    def __len__(self):
        return len(self._entries)

    def learn(self, key: bytes, upstream) -> None:
        entries = self._entries
        entries[key] = (upstream, self._clock.seconds() + self._ttl)
        entries.move_to_end(key)
        while len(entries) > self._max:
            entries.popitem(last=False)

    def lookup(self, key: bytes):
        """The upstream C{key} was served by, or None (unknown or expired)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        upstream, expires = entry
        now = self._clock.seconds()
        if now >= expires:
            del self._entries[key]
            return None
        self._entries[key] = (upstream, now + self._ttl)
        self._entries.move_to_end(key)
        return upstream

"""CORS answered by the gateway, when CORS_ALLOW_ORIGINS is set.

Rule: with no allowed origins configured the gateway adds nothing and the
backend's own CORS headers pass through untouched. With a list (or C{*}),
preflights (OPTIONS with Origin and Access-Control-Request-Method) from an
allowed origin are answered by the gateway with 204 and never forwarded;
other responses to an allowed origin get Access-Control-Allow-Origin (the
origin itself, so credentials work) and Vary: Origin, replacing the
backend's. A disallowed origin gets no CORS headers, so browsers block it.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .headers import HeaderList

__all__ = ["CorsPolicy"]

_ALLOWED_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_MAX_AGE = b"600"
_BACKEND_CORS = frozenset(
    [
        b"access-control-allow-origin",
        b"access-control-allow-credentials",
        b"access-control-expose-headers",
    ]
)


class CorsPolicy:
    """The gateway's CORS answers for a fixed list of allowed origins."""

    def __init__(self, origins: Sequence[str]):
        self._any = "*" in origins
        self._origins = frozenset(o.encode("ascii").lower() for o in origins if o != "*")

    def allows(self, origin: Optional[bytes]) -> bool:
        if not origin:
            return False
        return self._any or origin.rstrip(b"/").lower() in self._origins

    @staticmethod
    def is_preflight(method: bytes, origin: Optional[bytes], request_method: Optional[bytes]) -> bool:
        return method == b"OPTIONS" and bool(origin) and bool(request_method)

    def preflight_headers(self, origin: bytes, request_headers: Optional[bytes]) -> HeaderList:
        """Headers of the 204 answer to an allowed preflight."""
        headers = [
            (b"Access-Control-Allow-Origin", [origin]),
            (b"Access-Control-Allow-Credentials", [b"true"]),
            (b"Access-Control-Allow-Methods", [_ALLOWED_METHODS]),
            (b"Access-Control-Max-Age", [_MAX_AGE]),
            (b"Vary", [b"Origin"]),
        ]
        if request_headers:
            headers.append((b"Access-Control-Allow-Headers", [request_headers]))
        return headers

    def response_headers(self, headers: HeaderList, origin: Optional[bytes]) -> HeaderList:
        """The backend's response headers with the gateway's CORS headers in place."""
        if not self.allows(origin):
            return headers
        out = [(n, v) for n, v in headers if n.lower() not in _BACKEND_CORS]
        out.append((b"Access-Control-Allow-Origin", [origin]))
        out.append((b"Access-Control-Allow-Credentials", [b"true"]))
        for i, (name, values) in enumerate(out):
            if name.lower() == b"vary":
                listed = {t.strip().lower() for v in values for t in v.split(b",")}
                if not listed & {b"origin", b"*"}:
                    out[i] = (name, values + [b"Origin"])
                return out
        out.append((b"Vary", [b"Origin"]))
        return out

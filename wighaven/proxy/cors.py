"""CORS answered by the gateway, when CORS_ALLOW_ORIGINS is set.

Rule: with no allowed origins configured the gateway adds nothing and the
backend's own CORS headers pass through untouched. Otherwise the gateway
answers for the backend, in the two forms the Fetch standard defines and
never a mix of them:
- an origin listed by name gets itself back in Access-Control-Allow-Origin
  with Access-Control-Allow-Credentials: true: that site may read
  responses made with the visitor's cookies;
- with C{*} any other origin gets the wildcard C{Access-Control-Allow-Origin: *}
  and never credentials: any site may read responses, but browsers then
  send no cookies, so no visitor's session can be read that way (echoing
  any Origin with credentials would let every website on the internet
  read what the visitor sees).
Preflights (OPTIONS with Origin and Access-Control-Request-Method) from an
allowed origin are answered with 204 and never forwarded; the request
headers they may ask for are those of CORS_ALLOW_HEADERS, never copied
blindly from the request. Every answer the gateway shapes says
C{Vary: Origin}. A disallowed origin gets no CORS headers, so browsers
block it.
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
_WILDCARD = b"*"


class CorsPolicy:
    """
    The gateway's CORS answers for a fixed list of allowed origins.

    @param origins: origins like C{https://app.example}, and/or C{*}.
    @param allowed_headers: lower-cased request header names a preflight may ask for.
    """

    def __init__(self, origins: Sequence[str], allowed_headers: Sequence[str] = ()):
        self._any = "*" in origins
        self._origins = frozenset(o.encode("ascii").lower() for o in origins if o != "*")
        self._allowed_headers = frozenset(h.encode("ascii").lower() for h in allowed_headers)

    def _named(self, origin: Optional[bytes]) -> bool:
        return bool(origin) and origin.rstrip(b"/").lower() in self._origins

    def allows(self, origin: Optional[bytes]) -> bool:
        if not origin:
            return False
        return self._any or self._named(origin)

    def _allow_origin(self, origin: bytes) -> HeaderList:
        """Allow-Origin (and Allow-Credentials) for an allowed C{origin}."""
        if self._named(origin):
            return [
                (b"Access-Control-Allow-Origin", [origin]),
                (b"Access-Control-Allow-Credentials", [b"true"]),
            ]
        return [(b"Access-Control-Allow-Origin", [_WILDCARD])]

    @staticmethod
    def is_preflight(method: bytes, origin: Optional[bytes], request_method: Optional[bytes]) -> bool:
        return method == b"OPTIONS" and bool(origin) and bool(request_method)

    def preflight_headers(self, origin: bytes, request_headers: Optional[bytes]) -> HeaderList:
        """Headers of the 204 answer to an allowed preflight."""
        headers = self._allow_origin(origin) + [
            (b"Access-Control-Allow-Methods", [_ALLOWED_METHODS]),
            (b"Access-Control-Max-Age", [_MAX_AGE]),
            (b"Vary", [b"Origin"]),
        ]
        allowed = self.allowed_request_headers(request_headers)
        if allowed:
            headers.append((b"Access-Control-Allow-Headers", [b", ".join(allowed)]))
        return headers

    def allowed_request_headers(self, request_headers: Optional[bytes]) -> list:
        """The names asked for in Access-Control-Request-Headers that are allowed."""
        if not request_headers:
            return []
        asked = [name.strip().lower() for name in request_headers.split(b",") if name.strip()]
        return [name for name in asked if name in self._allowed_headers]

    def response_headers(self, headers: HeaderList, origin: Optional[bytes]) -> HeaderList:
        """The backend's response headers with the gateway's CORS headers in place."""
        if not self.allows(origin):
            return headers
        out = [(n, v) for n, v in headers if n.lower() not in _BACKEND_CORS]
        out.extend(self._allow_origin(origin))
        for i, (name, values) in enumerate(out):
            if name.lower() == b"vary":
                listed = {t.strip().lower() for v in values for t in v.split(b",")}
                if not listed & {b"origin", b"*"}:
                    out[i] = (name, values + [b"Origin"])
                return out
        out.append((b"Vary", [b"Origin"]))
        return out

"""Browser sessions: the signed session cookie, its CSRF token, and the
same-origin check of state-changing requests.

Rules:
  - The cookie is C{__Host-wh_session}: HttpOnly, Secure, SameSite=Lax,
    Path=/, no Domain (the C{__Host-} prefix makes browsers enforce the
    last three). Its value is a JWT of its own audience
    (C{wighaven:session}: an access token can't pass for one, nor the
    reverse) naming the user, its token version and a random session id.
    It is checked from memory; revoking it server-side is the session id's
    row (revoked_at) or the user's token version moving.
  - Plain-http loopback development (http://127.0.0.1, http://localhost,
    http://[::1]) gets C{wh_session} without Secure instead: browsers
    refuse a C{__Host-} cookie without Secure, and a Secure cookie is not
    sent back over http. That name is only believed on such an origin.
  - The CSRF token is an HMAC of the session id under a key of its own
    (derived from SECRET_KEY): nothing to store, and it dies with the
    session. State-changing endpoints authenticated by the cookie need it
    (form field C{csrf} or header C{X-CSRF-Token}) and a same-origin
    Origin (else Referer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Iterable, Optional
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .tokens import TokenKeys

__all__ = [
    "SESSION_COOKIE", "DEV_SESSION_COOKIE", "SessionTokens", "cookie_value", "is_loopback_http",
    "new_session_id", "same_origin", "session_cookie_name", "set_cookie", "session_id_hash",
    "without_cookies",
]

SESSION_COOKIE = b"__Host-wh_session"
DEV_SESSION_COOKIE = b"wh_session"
SESSION_AUDIENCE = "wighaven:session"
_LOOPBACK_HOSTS = frozenset([b"127.0.0.1", b"localhost", b"[::1]"])


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


def session_id_hash(session_id: str) -> bytes:
    """What the store keeps of a session id (never the id itself)."""
    return hashlib.sha256(session_id.encode("ascii")).digest()


class SessionTokens:
    """Signs and checks session cookies, and derives their CSRF tokens."""

    def __init__(self, secret: str, previous: Iterable[str] = (), clock=None):
        kwargs = {"clock": clock} if clock is not None else {}
        self._keys = TokenKeys(secret, tuple(previous), audience=SESSION_AUDIENCE, **kwargs)
        self._csrf_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                              info=b"wighaven csrf v1").derive(secret.encode("utf-8"))

    def issue(self, username: str, user_id: int, token_version: int, session_id: str,
              via: str, ttl: float, orgs=()) -> str:
        return self._keys.issue(username, ttl, uid=user_id, ver=token_version, sid=session_id,
                                via=via, orgs=list(orgs))

    def verify(self, value: str) -> dict:
        """The claims of a good cookie value; InvalidToken otherwise."""
        return self._keys.verify(value)

    def csrf_token(self, session_id: str) -> str:
        mac = hmac.new(self._csrf_key, session_id.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def csrf_ok(self, session_id: Optional[str], presented: Optional[str]) -> bool:
        if not session_id or not presented:
            return False
        return hmac.compare_digest(self.csrf_token(session_id).encode(), presented.encode())


def is_loopback_http(origin: Optional[bytes]) -> bool:
    """Is C{origin} (C{http://host[:port]}) plain http on this machine?"""
    if not origin or not origin.startswith(b"http://"):
        return False
    host = origin[len(b"http://"):]
    if host.startswith(b"["):
        host = host[:host.find(b"]") + 1]
    else:
        host = host.split(b":", 1)[0]
    return host.lower() in _LOOPBACK_HOSTS


def session_cookie_name(origin: Optional[bytes]) -> bytes:
    """The session cookie's name for a client that sees the gateway at C{origin}."""
    return DEV_SESSION_COOKIE if is_loopback_http(origin) else SESSION_COOKIE


def set_cookie(name: bytes, value: bytes, max_age: int) -> bytes:
    """A Set-Cookie value: HttpOnly, SameSite=Lax, Path=/; Secure for a C{__Host-} name
    (the others are the plain-http loopback development names)."""
    secure = b"; Secure" if name.startswith(b"__Host-") else b""
    return b"%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s" % (name, value, max_age, secure)


def cookie_value(cookie_headers: Optional[Iterable[bytes]], name: bytes) -> Optional[bytes]:
    """
    The first value of cookie C{name} in the Cookie headers, or None. A
    search for C{name=} at a pair's start, not a parse of every pair: a
    browser sends its cookies with every request, a Gradio page's assets
    included.
    """
    if not cookie_headers:
        return None
    needle = name + b"="
    for header in cookie_headers:
        start = header.find(needle)
        while start != -1:
            before = header[:start].rstrip(b" \t")
            if not before or before.endswith(b";"):  # a pair's start, not inside a value
                begin = start + len(needle)
                end = header.find(b";", begin)
                return header[begin:].strip() if end == -1 else header[begin:end].strip()
            start = header.find(needle, start + 1)
    return None


def without_cookies(cookie_headers: Iterable[bytes], names) -> list:
    """The Cookie header values with the cookies C{names} taken out (empty ones dropped)."""
    out = []
    for header in cookie_headers:
        if not any(name in header for name in names):
            out.append(header)
            continue
        kept = [pair.strip() for pair in header.split(b";")
                if pair.strip() and pair.strip().partition(b"=")[0] not in names]
        if kept:
            out.append(b"; ".join(kept))
    return out


def _origin_of_url(url: bytes) -> Optional[bytes]:
    try:
        parts = urlsplit(url.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return ("%s://%s" % (parts.scheme, parts.netloc)).lower().encode("ascii")


def same_origin(headers, origins: Iterable[Optional[bytes]]) -> bool:
    """
    Does the request come from one of C{origins} (the gateway's own)? Its
    Origin says, else Sec-Fetch-Site, else its Referer; with none it does not (a browser
    sends Origin with every cross-site POST, so only a non-browser lacks
    both, and such a client has no business with cookie-authenticated
    endpoints).
    """
    wanted = {o.lower() for o in origins if o}
    origin = headers.getRawHeaders(b"origin", [None])[0]
    if origin is not None and origin != b"null":
        return origin.lower() in wanted
    # A page under Referrer-Policy no-referrer (the dashboard) posts with
    # Origin: null and no Referer; the browser's own Sec-Fetch-Site, which
    # no page can set, still says where the request comes from.
    fetch_site = headers.getRawHeaders(b"sec-fetch-site", [None])[0]
    if fetch_site is not None:
        return fetch_site == b"same-origin"
    referer = headers.getRawHeaders(b"referer", [None])[0]
    return referer is not None and _origin_of_url(referer) in wanted

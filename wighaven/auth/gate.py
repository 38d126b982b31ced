"""The gate: who a request comes from, whether it may pass, and what the
Space is told about it.

Rules:
  - Credentials, in this order: C{Authorization: Bearer} with a gateway
    access token (JWT) or an API key (C{wh_...}), C{X-API-Key: wh_...},
    then the session cookie. The first good one decides; a bad or expired
    one counts as none (the client is told C{invalid_token}).
  - Everything is checked from memory: tokens by their signature (each
    verified once, then remembered until it expires), keys by their hash
    in the L{IdentityView}, and every identity against the view's user
    (enabled, same token version). The verdict on a request's credential
    headers (Authorization, X-API-Key, Cookie, as sent) is kept until the
    credential expires (a minute for one that proved nobody) or the view
    reloads, so a request presenting the same ones as another costs three
    header reads and a dict lookup.
  - The gateway's own credentials never reach a Space: a gateway JWT or
    key in Authorization or X-API-Key, and the session cookie, are taken
    out of the upstream request. What the Space learns is set by the
    gateway: X-Forwarded-User, X-Forwarded-Email (when known) and
    X-Forwarded-Groups (the roles). Client-sent copies of those three are
    always dropped (L{wighaven.proxy.headers}), AUTH on or off.
  - Refusals: nobody signed in -> a browser's GET (Accept text/html) is
    sent to the login page with C{next}; anything else 401 JSON with
    C{WWW-Authenticate: Bearer}. Signed in but not allowed -> 403.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from typing import Optional
from urllib.parse import quote

import attrs

from ..proxy import errors
from . import keys
from .policy import Identity
from .sessions import (
    DEV_SESSION_COOKIE, SESSION_COOKIE, cookie_value, is_loopback_http, session_id_hash,
    without_cookies,
)
from .tokens import InvalidToken

__all__ = ["Gate", "UpstreamAuth", "LOGIN_PATH", "answer_refusal"]

LOGIN_PATH = "/_gateway/login"
SIGN_IN_REQUIRED = errors.GatewayError(
    401, "unauthorized", "sign in first, or send an access token or API key")
INVALID_CREDENTIAL = errors.GatewayError(
    401, "invalid_token", "the access token, API key or session is invalid, expired or revoked")
FORBIDDEN = errors.GatewayError(403, "forbidden", "your account may not use this route")
WRONG_ROUTE = errors.GatewayError(403, "forbidden", "this API key is for another route")
_CACHE_SIZE = 10_000
_CACHED_HEADERS_MAX = 4096  # bytes of credential headers a kept verdict may hold
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]{1,256}$")
_COOKIE_NAMES = (SESSION_COOKIE, DEV_SESSION_COOKIE)


@attrs.frozen
class UpstreamAuth:
    """What changes in a request's headers on their way to the Space
    (applied by L{wighaven.proxy.headers.upstream_headers})."""

    drop: frozenset  # lower-cased names of headers carrying gateway credentials
    strip_cookie: bool  # take the session cookie out of Cookie
    add: tuple  # (name, [value]) headers naming the identity

    # The names not copied as they are (Cookie is copied without ours).
    skip: frozenset = attrs.field(
        init=False, default=attrs.Factory(
            lambda self: self.drop | {b"cookie"} if self.strip_cookie else self.drop,
            takes_self=True))

    @staticmethod
    def cookies_without_ours(values) -> list:
        return without_cookies(values, _COOKIE_NAMES)


def _identity_headers(identity: Optional[Identity]) -> tuple:
    if identity is None:
        return ()
    headers = [(b"X-Forwarded-User", [identity.user.encode("ascii")])]
    if identity.email and _HEADER_VALUE.fullmatch(identity.email):
        headers.append((b"X-Forwarded-Email", [identity.email.encode("ascii")]))
    if identity.roles:
        headers.append((b"X-Forwarded-Groups", [",".join(identity.roles).encode("ascii")]))
    return tuple(headers)


class _Seen(object):
    """What the gate made of one request's credentials (shared by the requests
    that present the same ones: never changed once made)."""

    __slots__ = ("identity", "presented", "upstream", "key_id")

    def __init__(self, identity, presented, upstream, key_id=None):
        self.identity = identity
        self.presented = presented  # a credential was sent, good or not
        self.upstream = upstream
        self.key_id = key_id  # the API key used, for its last-used time


_NOBODY = _Seen(None, False, UpstreamAuth(frozenset(), False, ()))


class Gate:
    """
    @param view: the L{wighaven.auth.identities.IdentityView}.
    @param access_tokens: a L{wighaven.auth.tokens.TokenKeys} of access tokens.
    @param sessions: a L{wighaven.auth.sessions.SessionTokens}.
    @param clock: C{seconds()}.
    @param metrics_token: METRICS_TOKEN, or None.
    """

    def __init__(self, view, access_tokens, sessions, clock, metrics_token: Optional[str] = None):
        self._view = view
        self._access = access_tokens
        self._sessions = sessions
        self._clock = clock
        self._metrics_token = metrics_token.encode("utf-8") if metrics_token else None
        self._seen_cache = {}  # credential headers -> (not_after, _Seen)
        self._foreign = set()  # Bearer tokens seen that are not the gateway's
        self._generation = None
        self.key_uses = {}  # key id -> last used, flushed to the store now and then

    # Who.

    def seen(self, request) -> _Seen:
        """What the request's credentials say (worked out once per request)."""
        seen = getattr(request, "gate_seen", None)
        if seen is None:
            seen = request.gate_seen = self._look(request)
        return seen

    def identify(self, request) -> Optional[Identity]:
        return self.seen(request).identity

    def _look(self, request) -> _Seen:
        view = self._view.fresh()
        if view.generation != self._generation:
            self._seen_cache.clear()
            self._generation = view.generation
        headers = request.requestHeaders
        authorization = headers.getRawHeaders(b"authorization")
        api_key = headers.getRawHeaders(b"x-api-key")
        cookies = headers.getRawHeaders(b"cookie")
        if authorization is None and api_key is None and cookies is None:
            return _NOBODY
        # The same credentials as a request before: its verdict, while it holds.
        key = (authorization and tuple(authorization), api_key and tuple(api_key),
               cookies and (tuple(cookies), self._loopback_http(request)))
        now = self._clock.seconds()
        hit = self._seen_cache.get(key)
        if hit is not None and now < hit[0]:
            seen = hit[1]
            if seen.key_id is not None:
                self.key_uses[seen.key_id] = now
            return seen
        not_after, seen = self._examine(authorization, api_key, cookies, key[2], now)
        # Kept only when small: 10,000 verdicts on 16 KiB cookie piles would be 160 MiB.
        if sum(len(v) for values in (authorization, api_key, cookies) for v in values or ()) \
                <= _CACHED_HEADERS_MAX:
            if len(self._seen_cache) >= _CACHE_SIZE:
                self._seen_cache.clear()
            self._seen_cache[key] = (not_after, seen)
        return seen

    def _examine(self, authorization, api_key, cookies, cookie_key, now):
        """(until when it holds, the L{_Seen}) of a request's credential headers."""
        drop = set()
        found = None
        presented = False
        for value in authorization or ():
            if value[:7].lower() == b"bearer ":
                token = value[7:].strip()
                if self._is_ours(token):
                    drop.add(b"authorization")
                    presented = True
                    found = found or self._verify(token.decode("latin-1"), b"bearer", now)
        for value in api_key or ():
            token = value.strip()
            if keys.parse(token.decode("latin-1")) is not None:
                drop.add(b"x-api-key")
                presented = True
                found = found or self._verify(token.decode("latin-1"), b"key", now)
        strip = bool(cookies) and any(name in c for c in cookies for name in _COOKIE_NAMES)
        if strip and found is None:
            value = cookie_value(cookies, SESSION_COOKIE)
            if value is None and cookie_key[1]:  # plain-http loopback: the development name
                value = cookie_value(cookies, DEV_SESSION_COOKIE)
            if value is not None:
                presented = True
                found = self._verify(value.decode("latin-1"), b"session", now)
        # No identity: asked again a minute later at the latest (a change of the
        # view clears every verdict at once anyway).
        not_after, identity = found if found is not None else (now + 60.0, None)
        return not_after, _Seen(identity, presented,
                                UpstreamAuth(frozenset(drop), strip, _identity_headers(identity)),
                                getattr(identity, "key_id", None))

    def _loopback_http(self, request) -> bool:
        if request.isSecure():
            return False
        host = request.requestHeaders.getRawHeaders(b"host", [b""])[0]
        return is_loopback_http(b"http://" + host)

    def _is_ours(self, token: bytes) -> bool:
        """
        Is C{token} one of the gateway's API keys or shaped as one of its JWTs
        (whatever its validity)? A token that is not (a Space's own, sent on)
        is remembered as such.
        """
        if keys.parse(token.decode("latin-1")) is not None:
            return True
        if token in self._foreign or token.count(b".") != 2:
            return False
        kid = _unverified_kid(token)
        if self._access.knows_kid(kid):
            return True
        if len(self._foreign) >= _CACHE_SIZE:
            self._foreign.clear()
        self._foreign.add(token)
        return False

    def _verify(self, token: str, kind: bytes, now: float):
        view = self._view
        if kind != b"session" and keys.parse(token) is not None:
            key_id, secret = keys.parse(token)
            key = view.keys.get(key_id)
            if key is None or not keys.matches(secret, key["secret_hash"]):
                return None
            if key["expires_at"] is not None and now >= key["expires_at"]:
                return None
            user = view.user(key["user_id"])
            if user is None:
                return None
            self.key_uses[key_id] = now
            return key["expires_at"] or float("inf"), _KeyIdentity(
                user=user["username"], user_id=user["id"], roles=tuple(user["roles"]),
                via="api_key", email=user.get("email"), key_route=key["route"], key_id=key_id)
        checker = self._sessions if kind == b"session" else self._access
        try:
            claims = checker.verify(token)
        except InvalidToken:
            return None
        user = view.current(claims.get("uid"), claims.get("ver"))
        if user is None:
            return None
        if kind == b"session":
            session_id = claims.get("sid")
            if not session_id or session_id_hash(session_id) in view.revoked_sessions:
                return None
            return claims["exp"], Identity(
                user=user["username"], user_id=user["id"], roles=tuple(user["roles"]),
                via=claims.get("via", "session"), email=user.get("email"),
                orgs=tuple(o.lower() for o in claims.get("orgs", ())), session_id=session_id)
        return claims["exp"], Identity(
            user=user["username"], user_id=user["id"], roles=tuple(user["roles"]), via="jwt",
            email=user.get("email"))

    def metrics_token_ok(self, request) -> bool:
        """Does the request carry METRICS_TOKEN as its Bearer token?"""
        if self._metrics_token is None:
            return False
        for value in request.requestHeaders.getRawHeaders(b"authorization", ()):
            if value[:7].lower() == b"bearer " and hmac.compare_digest(
                    value[7:].strip(), self._metrics_token):
                return True
        return False

    # Whether.

    def refusal(self, request, access, route_name) -> Optional[errors.GatewayError]:
        """None when the request may use a route of C{access}; else the refusal."""
        if access.public:
            return None
        seen = self.seen(request)
        identity = seen.identity
        if identity is None:
            return INVALID_CREDENTIAL if seen.presented else SIGN_IN_REQUIRED
        if not identity.may_use(route_name):
            return WRONG_ROUTE
        if not access.allows(identity):
            return FORBIDDEN
        return None

    def admin_refusal(self, request) -> Optional[errors.GatewayError]:
        """None for an administrator (not through a route-scoped key); else the refusal."""
        seen = self.seen(request)
        identity = seen.identity
        if identity is None:
            return INVALID_CREDENTIAL if seen.presented else SIGN_IN_REQUIRED
        if not identity.is_admin or not identity.may_use(None):
            return errors.GatewayError(403, "forbidden", "this page is for administrators")
        return None


def _unverified_kid(token: bytes):
    """
    The C{kid} of a JWT's header, read without any check (only to tell the
    gateway's tokens from others: a cut or forged one of ours still has our
    kid, and is taken out and refused rather than sent on to the Space).
    """
    segment = token.split(b".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


@attrs.frozen
class _KeyIdentity(Identity):
    """An identity proved by an API key: which key, for its last-used time."""

    key_id: str = ""


def wants_html(request) -> bool:
    """Is this a browser asking for a page (a GET or HEAD accepting text/html)?"""
    if request.method not in (b"GET", b"HEAD"):
        return False
    accept = b",".join(request.requestHeaders.getRawHeaders(b"accept", ()))
    return b"text/html" in accept


def login_location(request) -> bytes:
    """The login page, with C{next} the path (and query) the browser asked for."""
    return (LOGIN_PATH + "?next=" + quote(request.uri.decode("latin-1"), safe="")).encode("ascii")


def answer_refusal(request, refusal: errors.GatewayError, render_forbidden=None) -> bytes:
    """
    Answer C{refusal} (from L{Gate.refusal}) on C{request}; the body to write.
    C{render_forbidden(request, refusal)}, when given, makes a browser's 403
    page (its status and headers set).
    """
    browser = wants_html(request)
    if refusal.status == 401:
        if browser:
            request.setResponseCode(303)
            request.responseHeaders.setRawHeaders(b"Location", [login_location(request)])
            request.responseHeaders.setRawHeaders(b"Cache-Control", [b"no-store"])
            request.responseHeaders.setRawHeaders(b"Content-Length", [b"0"])
            return b""
        body = errors.respond_with_error(request, refusal)
        challenge = b'Bearer realm="wighaven"'
        if refusal is INVALID_CREDENTIAL:
            challenge += b', error="invalid_token"'
        request.responseHeaders.setRawHeaders(b"WWW-Authenticate", [challenge])
        return body
    if browser and render_forbidden is not None:
        body = render_forbidden(request, refusal)  # sets the status and the page's headers
        request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
        return body
    return errors.respond_with_error(request, refusal)

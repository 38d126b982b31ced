"""The gateway's sign-in endpoints, on the Klein app of its own pages (AUTH on).

Browsers:
  - C{GET /_gateway/login}: the sign-in page (C{next}: where to go after).
  - C{POST /_gateway/login}: form C{username}, C{password}, C{otp}, C{next}
    -> the session cookie and 303 to C{next} (a path of this gateway only:
    no open redirect). Same-origin only (Origin, else Referer).
  - C{POST /_gateway/logout}: ends the user's sessions and tokens; with a
    session cookie it needs the same origin and the CSRF token.
  - C{GET /_gateway/login/huggingface} and its C{/callback}: Sign in with
    Hugging Face (OpenID Connect; L{wighaven.auth.oidc}).
Programs:
  - C{POST /_gateway/auth/token}: JSON C{{"username", "password", "otp"?}}
    -> C{{"access_token", "token_type", "expires_in", "refresh_token"}}.
  - C{POST /_gateway/auth/refresh}: JSON C{{"refresh_token"}} -> a new pair.
  - C{GET /_gateway/auth/me}: C{{"user", "roles", "via"}}, or 401.
  - C{GET /_gateway/auth/csrf}: C{{"csrf"}} of the session cookie.

Rules: JSON endpoints take only C{application/json} (415 otherwise), answer
JSON errors C{{"error", "detail"}} and are never cached. No answer and no
log line carries a password, token, code or secret.
"""

from __future__ import annotations

import json
from typing import Optional
from urllib.parse import quote

from twisted.internet import defer
from twisted.logger import Logger

from .. import __version__
from ..auth.gate import LOGIN_PATH, answer_refusal
from ..auth.policy import SIGNED_IN
from ..auth.sessions import (
    cookie_value, is_loopback_http, same_origin, session_cookie_name, set_cookie,
)
from ..auth.tokens import InvalidToken, TokenKeys
from ..proxy import errors
from .login_page import render_login_page, render_message_page

__all__ = ["AuthPages", "safe_next"]

LOGOUT_PATH = "/_gateway/logout"
TOKEN_PATH = "/_gateway/auth/token"
REFRESH_PATH = "/_gateway/auth/refresh"
ME_PATH = "/_gateway/auth/me"
CSRF_PATH = "/_gateway/auth/csrf"
HF_LOGIN_PATH = "/_gateway/login/huggingface"
HF_CALLBACK_PATH = HF_LOGIN_PATH + "/callback"
OAUTH_COOKIE = b"__Host-wh_oauth"
DEV_OAUTH_COOKIE = b"wh_oauth"
OAUTH_TTL = 600  # seconds a Hugging Face sign-in may take
PAGE_CSP = (b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
            b"frame-ancestors 'none'")
_MESSAGES = {
    "wrong": "Wrong username or password.",
    "otp_wrong": "That authentication code is not right (or was used already).",
    "otp_needed": "Enter the 6-digit code from your authenticator app.",
    "missing": "Enter your username and password.",
    "busy": "Many people are signing in right now. Try again in a moment.",
}
_COOKIE_SESSIONS = ("session", "huggingface")


def safe_next(value) -> str:
    """C{value} when it is a path of this gateway (no scheme, host or line break), else /."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if (not isinstance(value, str) or not value.startswith("/") or value.startswith("//")
            or "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value)
            or len(value) > 2048):
        return "/"
    return value


def _arg(request, name: bytes) -> str:
    values = request.args.get(name) or [b""]
    return values[0].decode("utf-8", "replace")


def _json_answer(request, status: int, body: dict) -> bytes:
    data = json.dumps(body).encode("utf-8")
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return data


def _json_error(request, status: int, code: str, detail: str, retry_after=None) -> bytes:
    return errors.respond_with_error(
        request, errors.GatewayError(status, code, detail, retry_after=retry_after))


class AuthPages:
    """
    @param app: the Klein app of the gateway's pages (routes are added to it).
    @param control: the L{wighaven.auth.control.AccessControl}.
    @param origin_of: C{origin_of(request)}: the gateway's origin as the client saw it.
    @param client_address: C{client_address(request)}: the visitor's address.
    @param hf: an L{wighaven.auth.oidc.OpenIDClient} and its rules, or None.
    """

    _log = Logger()

    def __init__(self, app, control, settings, origin_of, client_address, hf=None):
        self._control = control
        self._gate = control.gate
        self._settings = settings
        self._origin_of = origin_of
        self._address = client_address
        self._hf, self._hf_rules = hf if hf is not None else (None, None)
        self._oauth_keys = TokenKeys(settings.secret_key, settings.secret_key_previous,
                                     audience="wighaven:oauth", clock=control.clock.seconds)
        app.route(LOGIN_PATH, methods=["GET", "HEAD"])(self.login_page)
        app.route(LOGIN_PATH, methods=["POST"])(self.login)
        app.route(LOGOUT_PATH, methods=["POST"])(self.logout)
        app.route(TOKEN_PATH, methods=["POST"])(self.token)
        app.route(REFRESH_PATH, methods=["POST"])(self.refresh)
        app.route(ME_PATH, methods=["GET"])(self.me)
        app.route(CSRF_PATH, methods=["GET"])(self.csrf)
        app.route(HF_LOGIN_PATH, methods=["GET"])(self.hf_login)
        app.route(HF_CALLBACK_PATH, methods=["GET"])(self.hf_callback)

    # Pages.

    @property
    def _hf_offered(self) -> bool:
        return self._hf is not None and self._hf_rules.configured

    def _page(self, request, status: int, body: bytes) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"Referrer-Policy", b"same-origin")
        request.setHeader(b"Content-Security-Policy", PAGE_CSP)
        return body

    def _login_form(self, request, status: int, next_path: str, error: Optional[str] = None,
                    username: str = "", otp_wanted: bool = False, notice: Optional[str] = None):
        hf_url = (HF_LOGIN_PATH + "?next=" + quote(next_path, safe="")) if self._hf_offered else None
        return self._page(request, status, render_login_page(
            action=LOGIN_PATH, next_path=next_path, error=error, username=username,
            hf_url=hf_url, otp_wanted=otp_wanted, notice=notice, version=__version__))

    def message(self, request, status: int, title: str, text: str, actions=(), post_actions=()):
        return self._page(request, status, render_message_page(
            title=title, message=text, actions=list(actions), post_actions=list(post_actions),
            version=__version__))

    def forbidden_page(self, request, refusal) -> bytes:
        """A browser's page for a signed-in person who may not go where they asked."""
        identity = self._gate.identify(request)
        post_actions = []
        if identity is not None and identity.session_id:
            post_actions.append(("Sign out", LOGOUT_PATH,
                                 {"csrf": self._control.sessions.csrf_token(identity.session_id)}))
        who = (" You are signed in as %s." % identity.user) if identity is not None else ""
        return self._page(request, refusal.status, render_message_page(
            title="You don't have access", message=refusal.detail.capitalize() + "." + who,
            status_label="403",
            actions=[("Sign in as someone else", LOGIN_PATH + "?next="
                      + quote(request.uri.decode("latin-1"), safe=""))],
            post_actions=post_actions, version=__version__))

    def login_page(self, request):
        notice = "You have signed out." if _arg(request, b"signed_out") else None
        return self._login_form(request, 200, safe_next(_arg(request, b"next")), notice=notice)

    def same_origin(self, request) -> bool:
        return same_origin(request.requestHeaders, [
            self._origin_of(request),
            self._settings.public_url.encode("ascii") if self._settings.public_url else None])

    @defer.inlineCallbacks
    def login(self, request):
        next_path = safe_next(_arg(request, b"next"))
        if not self.same_origin(request):
            return self.message(request, 403, "Sign-in refused",
                                "This form must be sent from the gateway's own sign-in page.",
                                actions=[("Go to the sign-in page", LOGIN_PATH)])
        username = _arg(request, b"username").strip()
        password = _arg(request, b"password")
        otp = _arg(request, b"otp").strip() or None
        if not username or not password:
            return self._login_form(request, 400, next_path, _MESSAGES["missing"], username)
        outcome = yield self._control.sign_in(username, password, otp, self._address(request),
                                              "password")
        if outcome.failure == "throttled":
            request.setHeader(b"Retry-After", b"%d" % outcome.retry_after)
            return self._login_form(
                request, 429, next_path, "Too many failed attempts. Try again in %d seconds."
                % outcome.retry_after, username)
        if outcome.failure == "busy":
            request.setHeader(b"Retry-After", b"1")
            return self._login_form(request, 503, next_path, _MESSAGES["busy"], username)
        if outcome.failure is not None:
            wanted = outcome.failure in ("otp_needed", "otp_wrong")
            return self._login_form(request, 401, next_path, _MESSAGES[outcome.failure],
                                    username, otp_wanted=wanted)
        yield self._signed_in(request, outcome.user, "session", next_path)
        return b""

    @defer.inlineCallbacks
    def _signed_in(self, request, user, via, next_path, orgs=()):
        value = yield self._control.start_session(
            user, via, self._address(request),
            request.requestHeaders.getRawHeaders(b"user-agent", [b""])[0].decode("latin-1"),
            orgs)
        name = session_cookie_name(self._origin_of(request))
        request.responseHeaders.addRawHeader(
            b"Set-Cookie", set_cookie(name, value.encode("ascii"), self._settings.session_ttl))
        request.setResponseCode(303)
        request.setHeader(b"Location", next_path.encode("utf-8"))
        request.setHeader(b"Cache-Control", b"no-store")

    def cookie_refusal(self, request, identity) -> Optional[bytes]:
        """None when a cookie-authenticated change request is same-origin with its CSRF token."""
        if identity.via not in _COOKIE_SESSIONS:
            return None  # a Bearer credential: no ambient authority, no CSRF
        presented = (request.requestHeaders.getRawHeaders(b"x-csrf-token", [None])[0]
                     or (request.args.get(b"csrf") or [None])[0])
        presented = presented.decode("latin-1") if presented else None
        if self.same_origin(request) and self._control.sessions.csrf_ok(
                identity.session_id, presented):
            return None
        return _json_error(request, 403, "csrf", "missing or wrong CSRF token, or another origin")

    @defer.inlineCallbacks
    def logout(self, request):
        identity = self._gate.identify(request)
        if identity is not None:
            refused = self.cookie_refusal(request, identity)
            if refused is not None:
                return refused
            yield self._control.sign_out(identity, self._address(request))
        name = session_cookie_name(self._origin_of(request))
        request.responseHeaders.addRawHeader(b"Set-Cookie", set_cookie(name, b"", 0))
        if request.args.get(b"csrf") is not None or b"text/html" in b",".join(
                request.requestHeaders.getRawHeaders(b"accept", ())):
            request.setResponseCode(303)
            request.setHeader(b"Location", LOGIN_PATH.encode() + b"?signed_out=1")
            return b""
        request.setResponseCode(204)
        return b""

    # Programs.

    def _json_body(self, request):
        """(the request's JSON object, None) or (None, the error answer)."""
        content_type = request.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if content_type.split(b";")[0].strip().lower() != b"application/json":
            return None, _json_error(request, 415, "unsupported_media_type",
                                     "send Content-Type: application/json")
        try:
            body = json.loads(request.content.read().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, _json_error(request, 400, "bad_json", "the body is not valid JSON")
        if not isinstance(body, dict):
            return None, _json_error(request, 400, "bad_json", "the body must be a JSON object")
        return body, None

    @defer.inlineCallbacks
    def token(self, request):
        body, refused = self._json_body(request)
        if refused is not None:
            return refused
        username, password, otp = body.get("username"), body.get("password"), body.get("otp")
        if not (isinstance(username, str) and username and isinstance(password, str)
                and (otp is None or isinstance(otp, str))):
            return _json_error(request, 400, "bad_request",
                               'send {"username": "...", "password": "..."} (and "otp" if set up)')
        outcome = yield self._control.sign_in(username, password, otp, self._address(request),
                                              "token")
        if outcome.failure == "throttled":
            return _json_error(request, 429, "too_many_attempts",
                               "too many failed sign-ins; wait before trying again",
                               retry_after=outcome.retry_after)
        if outcome.failure == "busy":
            return _json_error(request, 503, "busy", "too many sign-ins at once; try again",
                               retry_after=1)
        if outcome.failure == "otp_needed":
            return _json_error(request, 401, "otp_required", 'this account needs "otp"')
        if outcome.failure is not None:
            return _json_error(request, 401, "invalid_grant", "wrong username, password or otp")
        answer = yield self._control.issue_tokens(outcome.user)
        return _json_answer(request, 200, answer)

    @defer.inlineCallbacks
    def refresh(self, request):
        body, refused = self._json_body(request)
        if refused is not None:
            return refused
        answer = yield self._control.refresh(body.get("refresh_token"), self._address(request))
        if answer is None:
            return _json_error(request, 401, "invalid_grant",
                               "the refresh token is unknown, used, expired or revoked")
        return _json_answer(request, 200, answer)

    def me(self, request):
        identity = self._gate.identify(request)
        if identity is None:
            return answer_refusal(request, self._gate.refusal(request, SIGNED_IN, None))
        return _json_answer(request, 200, {"user": identity.user, "roles": list(identity.roles),
                                           "via": identity.via})

    def csrf(self, request):
        identity = self._gate.identify(request)
        if identity is None or identity.via not in _COOKIE_SESSIONS:
            return _json_error(request, 401, "unauthorized", "no session cookie")
        origin = request.requestHeaders.getRawHeaders(b"origin", [None])[0]
        fetch_site = request.requestHeaders.getRawHeaders(b"sec-fetch-site", [b"same-origin"])[0]
        if (origin is not None and not self.same_origin(request)) or fetch_site not in (
                b"same-origin", b"none"):
            return _json_error(request, 403, "csrf", "asked from another origin")
        return _json_answer(request, 200, {"csrf": self._control.sessions.csrf_token(
            identity.session_id)})

    # Sign in with Hugging Face.

    def _public_origin(self, request) -> str:
        if self._settings.public_url:
            return self._settings.public_url
        return (self._origin_of(request) or b"").decode("ascii")

    def _oauth_cookie_name(self, request) -> bytes:
        return DEV_OAUTH_COOKIE if is_loopback_http(self._origin_of(request)) else OAUTH_COOKIE

    @defer.inlineCallbacks
    def hf_login(self, request):
        if not self._hf_offered:
            return errors.respond_with_error(request, errors.NOT_FOUND)
        redirect_uri = self._public_origin(request) + HF_CALLBACK_PATH
        try:
            url, pending = yield self._hf.start(redirect_uri)
        except Exception as e:  # a fixed phrase (SignInRefused) or the provider unreachable
            return self._hf_failed(request, e)
        state = self._oauth_keys.issue("oauth", OAUTH_TTL, pending=pending,
                                       next=safe_next(_arg(request, b"next")))
        request.responseHeaders.addRawHeader(b"Set-Cookie", set_cookie(
            self._oauth_cookie_name(request), state.encode("ascii"), OAUTH_TTL))
        request.setResponseCode(302)
        request.setHeader(b"Location", url.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    def _hf_failed(self, request, e):
        from ..auth.oidc import SignInRefused

        text = str(e) if isinstance(e, SignInRefused) else "Hugging Face could not be reached."
        if not isinstance(e, SignInRefused):
            self._log.warn("Sign in with Hugging Face failed: {kind}", kind=type(e).__name__)
        return self.message(request, 400, "Sign-in failed", text[:1].upper() + text[1:],
                            actions=[("Try again", LOGIN_PATH)])

    @defer.inlineCallbacks
    def hf_callback(self, request):
        if not self._hf_offered:
            return errors.respond_with_error(request, errors.NOT_FOUND)
        name = self._oauth_cookie_name(request)
        value = cookie_value(request.requestHeaders.getRawHeaders(b"cookie"), name)
        request.responseHeaders.addRawHeader(b"Set-Cookie", set_cookie(name, b"", 0))
        try:
            claims = self._oauth_keys.verify(value.decode("ascii")) if value else None
        except (InvalidToken, UnicodeDecodeError):
            claims = None
        if claims is None:
            return self.message(request, 400, "Sign-in expired",
                                "The sign-in took too long or was started elsewhere. Try again.",
                                actions=[("Try again", LOGIN_PATH)])
        params = {k.decode("latin-1"): v[0].decode("utf-8", "replace")
                  for k, v in request.args.items() if v}
        redirect_uri = self._public_origin(request) + HF_CALLBACK_PATH
        address = self._address(request)
        try:
            hf_user = yield self._hf.finish(redirect_uri, params, claims["pending"])
        except Exception as e:
            yield self._control.audit("login.failed", None, address, how="huggingface",
                                      reason="refused")
            return self._hf_failed(request, e)
        if not self._hf_rules.admits(hf_user):
            yield self._control.audit("login.failed", "hf:" + hf_user.username.lower(), address,
                                      how="huggingface", reason="not_allowed")
            return self.message(
                request, 403, "You don't have access",
                "Your Hugging Face account @%s may not use this gateway. Ask its owner to add "
                "you, or sign in with another account." % hf_user.username,
                actions=[("Sign in again", LOGIN_PATH)])
        user = yield self._control.hugging_face_user(hf_user, self._hf_rules.roles(hf_user),
                                                     address)
        if user is None:
            return self.message(request, 403, "Account disabled",
                                "This account has been disabled by the gateway's owner.")
        yield self._signed_in(request, user, "huggingface", claims.get("next") or "/",
                              orgs=hf_user.orgs)
        return b""


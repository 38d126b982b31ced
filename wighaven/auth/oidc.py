"""Sign in with Hugging Face: OpenID Connect, authorization code with PKCE.

Rules:
  - The flow is the authorization code one with PKCE (S256), a C{state} and
    a C{nonce}: L{OpenIDClient.start} makes the three secrets (the caller
    keeps them in a signed, short-lived cookie, never in server memory) and
    the authorize URL; L{OpenIDClient.finish} checks the callback's state
    against the cookie's (in constant time), trades the code for tokens
    (client_secret_basic), validates the ID token and reads the userinfo.
  - The ID token is validated by joserfc, never by hand: its signature
    against the provider's JWKS (RS256 or ES256 only: never HS*, never
    none), C{iss} equal to the discovered issuer, C{aud} holding our
    client_id (and C{azp}, when present, equal to it), C{exp} in the
    future, C{iat} present, C{nonce} equal to the cookie's; 60 s of clock
    difference allowed.
  - The discovery document is cached an hour, and its C{issuer} must be the
    configured provider URL (one trailing slash aside): a document naming
    another issuer is refused, not followed. The JWKS is cached an hour; a
    token naming an unknown kid (the provider rotated its key) refetches
    it once, at most once a minute.
  - Plain http only to a loopback host (tests); https is verified against
    the system trust store. Every call to the provider has a timeout
    (L{TIMEOUT}) covering its answer's body too, every body is read up to
    L{BODY_CAP} and the connection cut past it, and redirects are never
    followed (the client secret and the access token go only where they
    were sent).
  - A refusal is a L{SignInRefused} whose text is one of a few fixed
    phrases, safe to show a user: never an error's message, a code, a
    token or the secret. Its C{detail} (for the log) is built from fixed
    strings, status codes and error type names only. Nothing here logs a
    code, a token, the secret or the verifier.
  - Who may sign in is L{HfAccessRules}' business: accounts, organisations
    (Hugging Face's userinfo lists the user's orgs) and admins; none
    configured means nobody (the gateway then hides the button).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Callable, Iterable, Optional
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import attrs
import treq
from treq.client import HTTPClient
from joserfc import jwt
from joserfc.errors import ClaimError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

__all__ = [
    "BODY_CAP", "HfAccessRules", "HfUser", "OpenIDClient", "SignInRefused", "TIMEOUT",
]

TIMEOUT = 10.0  # seconds, per call to the provider, body included
BODY_CAP = 1024 * 1024  # bytes of any answer's body
METADATA_TTL = 3600.0  # the discovery document and the JWKS are cached this long
JWKS_REFETCH_INTERVAL = 60.0  # an unknown kid refetches the JWKS at most this often
LEEWAY = 60  # seconds of clock difference allowed in the ID token's times
ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = ("RSA", "EC")
_LOOPBACK = frozenset(["127.0.0.1", "::1", "localhost"])
_USER_AGENT = "WigHaven-Gateway sign-in"
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,40}$")  # an OAuth error code is safe to log


class SignInRefused(Exception):
    """
    The sign-in did not succeed. C{str()} is one of the fixed phrases below
    (anything else given is replaced by L{UNVERIFIED}), so a page may show
    it as it is; C{detail} is for the log, secret-free.
    """

    CANCELLED = "the sign-in was cancelled"
    EXPIRED = "the sign-in expired, try again"
    UNVERIFIED = "Hugging Face's answer could not be verified"
    NO_ANSWER = "Hugging Face did not answer; try again"
    REFUSED = "Hugging Face refused the sign-in"
    NO_USERNAME = "this Hugging Face account has no username"
    PHRASES = frozenset([CANCELLED, EXPIRED, UNVERIFIED, NO_ANSWER, REFUSED, NO_USERNAME])

    def __init__(self, phrase: str = UNVERIFIED, detail: Optional[str] = None):
        if phrase not in self.PHRASES:
            phrase = self.UNVERIFIED
        super().__init__(phrase)
        self.phrase = phrase
        self.detail = detail or phrase

    def __str__(self) -> str:
        return self.phrase


@attrs.frozen
class HfUser:
    """Who signed in: the Hugging Face account, as its userinfo describes it."""

    username: str
    name: Optional[str]
    email: Optional[str]
    orgs: tuple = attrs.field(default=(), converter=tuple)
    subject: str = ""


class HfAccessRules:
    """
    Which Hugging Face accounts may sign in, and which are admins.

    @param allowed_users: usernames; C{*} admits every account.
    @param allowed_orgs: org handles whose members are admitted.
    @param admin_users: usernames admitted with the admin role.

    Compares are case-insensitive (Hugging Face handles are).
    """

    def __init__(self, allowed_users: Iterable[str] = (), allowed_orgs: Iterable[str] = (),
                 admin_users: Iterable[str] = ()):
        self._users = _folded(allowed_users)
        self._orgs = _folded(allowed_orgs)
        self._admins = _folded(admin_users)

    def __repr__(self) -> str:
        return "<HfAccessRules users=%d orgs=%d admins=%d>" % (
            len(self._users), len(self._orgs), len(self._admins))

    @property
    def configured(self) -> bool:
        """False when nothing is configured: then nobody may sign in with Hugging Face."""
        return bool(self._users or self._orgs or self._admins)

    def admits(self, user: HfUser) -> bool:
        """May C{user} sign in? By name, by admin, by org, or by C{*}."""
        name = user.username.casefold()
        if name in self._users or name in self._admins or "*" in self._users:
            return True
        return any(org.casefold() in self._orgs for org in user.orgs)

    def roles(self, user: HfUser) -> tuple:
        """The roles C{user} gets: C{("admin",)} for an admin, else none."""
        return ("admin",) if user.username.casefold() in self._admins else ()


def _folded(values: Iterable[str]) -> frozenset:
    if isinstance(values, str):
        values = [values]
    return frozenset(v.strip().casefold() for v in values if v and v.strip())


def _check_url(url: str, what: str) -> str:
    """C{url} when it is https, or http to a loopback host; ValueError otherwise."""
    if not isinstance(url, str) or not url:
        raise ValueError("%s must be a URL" % what)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("%s must be an absolute URL" % what)
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and host in _LOOPBACK:
        return url
    if parts.scheme == "http":
        raise ValueError("%s must use https (plain http is only for 127.0.0.1, ::1 and "
                         "localhost)" % what)
    raise ValueError("%s must be an https URL" % what)


def _one_slash_less(url: str) -> str:
    return url[:-1] if url.endswith("/") else url


def _challenge(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier)), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _same(a: str, b: str) -> bool:
    """Constant-time equality of two strings."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _with_query(url: str, params: dict) -> str:
    """C{url} with C{params} added to whatever query it already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


class _TooBig(Exception):
    """The answer's body went over the cap."""


class _WatchedBody:
    """
    A response handed to treq's C{collect} that remembers the body
    protocol, so that a deadline can cut the connection: treq's collection
    cannot be cancelled by itself.
    """

    def __init__(self, response):
        self._response = response
        self._protocol = None
        self.length = response.length

    def deliverBody(self, protocol) -> None:
        self._protocol = protocol
        self._response.deliverBody(protocol)

    def abort(self) -> None:
        transport = getattr(self._protocol, "transport", None)
        if transport is not None:
            transport.loseConnection()


def _read_capped(response, cap: int) -> defer.Deferred:
    """The body of C{response}, at most C{cap} bytes (else _TooBig); cancelling cuts it."""
    parts = []
    size = [0]
    watched = _WatchedBody(response)

    def collector(data: bytes) -> None:
        size[0] += len(data)
        if size[0] > cap:
            raise _TooBig()
        parts.append(data)

    result = defer.Deferred(lambda _: watched.abort())

    def done(outcome):
        if result.called:
            return None  # cancelled meanwhile: the outcome is nobody's
        if isinstance(outcome, Failure):
            result.errback(outcome)
        else:
            result.callback(b"".join(parts))
        return None

    treq.collect(watched, collector).addBoth(done)
    return result


class _Deadline:
    """One timeout over a whole exchange: the answer's head, then its body."""

    def __init__(self, reactor, seconds: float):
        self.expired = False
        self._current: Optional[defer.Deferred] = None
        self._call = reactor.callLater(seconds, self._expire)

    def watch(self, d: defer.Deferred) -> defer.Deferred:
        self._current = d
        if self.expired:
            d.cancel()
        return d

    def _expire(self) -> None:
        self.expired = True
        if self._current is not None:
            self._current.cancel()

    def stop(self) -> None:
        if self._call.active():
            self._call.cancel()


class _SingleFlight:
    """At most one fetch in flight; callers arriving meanwhile wait for its outcome."""

    def __init__(self):
        self._waiters: Optional[list] = None

    def __call__(self, fetch: Callable[[], defer.Deferred]) -> defer.Deferred:
        d = defer.Deferred()
        if self._waiters is not None:
            self._waiters.append(d)
            return d
        self._waiters = [d]
        defer.maybeDeferred(fetch).addBoth(self._done)
        return d

    def _done(self, outcome) -> None:
        waiters, self._waiters = self._waiters, None
        for d in waiters:
            if d.called:
                continue  # that caller cancelled
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)
        return None


def _json_object(body: bytes, what: str) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        raise SignInRefused(SignInRefused.UNVERIFIED, "%s is not JSON" % what) from None
    if not isinstance(value, dict):
        raise SignInRefused(SignInRefused.UNVERIFIED, "%s is not a JSON object" % what)
    return value


def _text(value) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _orgs(value) -> tuple:
    """The org handles of a userinfo C{orgs} list (preferred_username, else name)."""
    if not isinstance(value, list):
        return ()
    handles = []
    for entry in value:
        if not isinstance(entry, dict):
            continue
        handle = _text(entry.get("preferred_username")) or _text(entry.get("name"))
        if handle and handle not in handles:
            handles.append(handle)
    return tuple(handles)


def _user(claims: dict) -> HfUser:
    username = _text(claims.get("preferred_username"))
    if username is None:
        raise SignInRefused(SignInRefused.NO_USERNAME, "no preferred_username")
    return HfUser(
        username=username,
        name=_text(claims.get("name")),
        email=_text(claims.get("email")),
        orgs=_orgs(claims.get("orgs")),
        subject=claims["sub"],
    )


def _describe(failure: Failure) -> str:
    """A secret-free line about an unexpected failure: its type, never its text."""
    return "unexpected %s" % failure.type.__name__


class OpenIDClient:
    """
    The gateway's side of "Sign in with Hugging Face".

    @param reactor: the reactor (timeouts; the default HTTP client's Agent).
    @param provider_url: e.g. C{https://huggingface.co}; its discovery
        document is C{<provider_url>/.well-known/openid-configuration}.
    @param client_id, client_secret: the OAuth app's.
    @param scopes: the scopes asked for; must hold C{openid}.
    @param http_client: a treq C{HTTPClient}; by default one over an Agent
        of its own (system trust store) that keeps no cookies.
    @param clock: a zero-argument callable giving the time in seconds
        (caches and the ID token's times); C{time.time} by default.
    """

    _log = Logger()

    def __init__(self, reactor, provider_url: str, client_id: str, client_secret: str,
                 scopes: str = "openid profile", http_client=None,
                 clock: Optional[Callable[[], float]] = None):
        _check_url(provider_url, "the OpenID provider URL")
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("the OAuth client_id is missing")
        if not isinstance(client_secret, str) or not client_secret:
            raise ValueError("the OAuth client_secret is missing")
        if "openid" not in scopes.split():
            raise ValueError("the OAuth scopes must include openid")
        self._reactor = reactor
        self.provider_url = provider_url
        self.discovery_url = provider_url.rstrip("/") + "/.well-known/openid-configuration"
        self.client_id = client_id
        self._secret = client_secret
        self.scopes = scopes
        self._pool = None
        if http_client is None:
            self._pool = HTTPConnectionPool(reactor)
            # No cookie jar worth the name: the provider's cookies would be
            # shared by every user's sign-in.
            http_client = HTTPClient(
                Agent(reactor, pool=self._pool),
                cookiejar=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            )
        self._http = http_client
        self._clock = clock or time.time
        self.timeout = TIMEOUT
        self.body_cap = BODY_CAP
        self._metadata: Optional[dict] = None
        self._metadata_at = 0.0
        self._discovering = _SingleFlight()
        self._keys: Optional[KeySet] = None
        self._keys_at = 0.0
        self._fetching_keys = _SingleFlight()

    def __repr__(self) -> str:
        return "<OpenIDClient %s client_id=%s>" % (self.provider_url, self.client_id)

    def close(self) -> defer.Deferred:
        """Close the default client's cached connections (a no-op with a given client)."""
        if self._pool is None:
            return defer.succeed(None)
        return self._pool.closeCachedConnections()

    # -- discovery ---------------------------------------------------------

    def discover(self) -> defer.Deferred:
        """
        The provider's metadata (a dict), cached for L{METADATA_TTL}
        seconds; fails with L{SignInRefused} only.
        """
        return self._discover().addErrback(self._refused)

    def _discover(self) -> defer.Deferred:
        if self._metadata is not None and self._clock() - self._metadata_at < METADATA_TTL:
            return defer.succeed(dict(self._metadata))
        return self._discovering(self._fetch_metadata).addCallback(dict)

    @defer.inlineCallbacks
    def _fetch_metadata(self):
        code, body = yield self._exchange("GET", self.discovery_url)
        if code != 200:
            raise SignInRefused(SignInRefused.NO_ANSWER, "discovery answered %d" % code)
        metadata = _json_object(body, "the discovery document")
        issuer = metadata.get("issuer")
        if not isinstance(issuer, str) or (
                _one_slash_less(issuer) != _one_slash_less(self.provider_url)):
            raise SignInRefused(SignInRefused.UNVERIFIED,
                                "discovery names another issuer than the provider URL")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            self._endpoint(metadata, name, required=True)
        self._endpoint(metadata, "userinfo_endpoint", required=False)
        self._metadata = metadata
        self._metadata_at = self._clock()
        return metadata

    @staticmethod
    def _endpoint(metadata: dict, name: str, required: bool) -> None:
        """Check that C{metadata[name]} is a URL we may call (https, or http to loopback)."""
        url = metadata.get(name)
        if url is None and not required:
            return
        try:
            _check_url(url, name)
        except ValueError:
            raise SignInRefused(SignInRefused.UNVERIFIED,
                                "discovery: %s missing or not https" % name) from None

    # -- the two halves of a sign-in ------------------------------------------

    def start(self, redirect_uri: str) -> defer.Deferred:
        """
        Begin a sign-in: fires with C{(authorize_url, pending)}. C{pending}
        (state, nonce, verifier) is JSON-able; the caller keeps it in a
        signed short-lived cookie and hands it back to L{finish}. Fails
        with L{SignInRefused} only (discovery did not go well).
        """
        return defer.maybeDeferred(self._start, redirect_uri).addErrback(self._refused)

    @defer.inlineCallbacks
    def _start(self, redirect_uri: str):
        metadata = yield self._discover()
        pending = {
            "state": secrets.token_urlsafe(32),
            "nonce": secrets.token_urlsafe(32),
            "verifier": secrets.token_urlsafe(32),
        }
        url = _with_query(metadata["authorization_endpoint"], {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.scopes,
            "state": pending["state"],
            "nonce": pending["nonce"],
            "code_challenge": _challenge(pending["verifier"]),
            "code_challenge_method": "S256",
        })
        return url, pending

    def finish(self, redirect_uri: str, params: dict, pending) -> defer.Deferred:
        """
        End a sign-in from the callback's query C{params}: fires with the
        L{HfUser}, or fails with L{SignInRefused} (and nothing else).
        """
        d = defer.maybeDeferred(self._finish, redirect_uri, params, pending)
        return d.addErrback(self._refused)

    def _refused(self, failure: Failure):
        """Any failure as a L{SignInRefused}, logged once by its secret-free detail."""
        if failure.check(defer.CancelledError):
            return failure  # cancelled by the caller: not a refusal
        if failure.check(SignInRefused):
            refusal = failure.value
        else:
            refusal = SignInRefused(SignInRefused.UNVERIFIED, _describe(failure))
        quiet = refusal.phrase in (SignInRefused.CANCELLED, SignInRefused.EXPIRED)
        emit = self._log.info if quiet else self._log.warn
        emit("Hugging Face sign-in refused: {detail}", detail=refusal.detail)
        raise refusal

    @defer.inlineCallbacks
    def _finish(self, redirect_uri: str, params: dict, pending):
        state, nonce, verifier = self._pending(pending)
        if params.get("error") is not None:
            error = params.get("error")
            shown = error if isinstance(error, str) and _OAUTH_ERROR.match(error) else "?"
            raise SignInRefused(SignInRefused.CANCELLED, "the provider said %s" % shown)
        given = params.get("state")
        if not isinstance(given, str) or not _same(given, state):
            raise SignInRefused(SignInRefused.EXPIRED, "state missing or not this sign-in's")
        code = params.get("code")
        if not isinstance(code, str) or not code:
            raise SignInRefused(SignInRefused.UNVERIFIED, "no code in the callback")
        metadata = yield self._discover()
        tokens = yield self._redeem(metadata, redirect_uri, code, verifier)
        claims = yield self._verify(metadata, tokens["id_token"], nonce)
        userinfo_url = metadata.get("userinfo_endpoint")
        if userinfo_url is not None:
            extra = yield self._userinfo(userinfo_url, tokens.get("access_token"), claims["sub"])
            claims = dict(claims, **{k: v for k, v in extra.items() if k != "sub"})
        return _user(claims)

    @staticmethod
    def _pending(pending) -> tuple:
        """The (state, nonce, verifier) of the cookie's dict; EXPIRED if it is not one."""
        if not isinstance(pending, dict):
            raise SignInRefused(SignInRefused.EXPIRED, "no pending sign-in")
        values = tuple(pending.get(k) for k in ("state", "nonce", "verifier"))
        if not all(isinstance(v, str) and v for v in values):
            raise SignInRefused(SignInRefused.EXPIRED, "the pending sign-in is malformed")
        return values

    @defer.inlineCallbacks
    def _redeem(self, metadata: dict, redirect_uri: str, code: str, verifier: str):
        """Trade the code for tokens at the token endpoint (client_secret_basic)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": self.client_id,
        }
        # RFC 6749 2.3.1: both are form-encoded before going into Basic.
        auth = (quote_plus(self.client_id), quote_plus(self._secret))
        status, body = yield self._exchange(
            "POST", metadata["token_endpoint"], data=form, auth=auth)
        if status != 200:
            raise SignInRefused(SignInRefused.REFUSED, "the token endpoint answered %d%s"
                                % (status, self._oauth_error(body)))
        tokens = _json_object(body, "the token answer")
        if not isinstance(tokens.get("id_token"), str):
            raise SignInRefused(SignInRefused.UNVERIFIED, "the token answer has no id_token")
        return tokens

    @staticmethod
    def _oauth_error(body: bytes) -> str:
        """C{" (invalid_grant)"} when the body names an OAuth error code, else nothing."""
        try:
            error = json.loads(body).get("error")
        except (ValueError, AttributeError):
            return ""
        return " (%s)" % error if isinstance(error, str) and _OAUTH_ERROR.match(error) else ""

    @defer.inlineCallbacks
    def _userinfo(self, url: str, access_token, subject: str):
        if not isinstance(access_token, str) or not access_token:
            raise SignInRefused(SignInRefused.UNVERIFIED, "the token answer has no access_token")
        status, body = yield self._exchange(
            "GET", url, headers={"Authorization": "Bearer " + access_token})
        if status != 200:
            raise SignInRefused(SignInRefused.REFUSED, "userinfo answered %d" % status)
        info = _json_object(body, "the userinfo")
        if info.get("sub") != subject:
            raise SignInRefused(SignInRefused.UNVERIFIED, "userinfo is about another sub")
        return info

    # -- the ID token -------------------------------------------------------

    @defer.inlineCallbacks
    def _verify(self, metadata: dict, id_token: str, nonce: str):
        """The ID token's claims, once joserfc has checked signature and claims."""
        keys = yield self._key_set(metadata)
        try:
            token = self._decode(id_token, keys)
        except InvalidKeyIdError:
            if self._clock() - self._keys_at < JWKS_REFETCH_INTERVAL:
                raise SignInRefused(SignInRefused.UNVERIFIED,
                                    "id token: unknown kid (JWKS fetched under a minute ago)")
            keys = yield self._key_set(metadata, refresh=True)
            token = self._decode(id_token, keys)
        self._check_claims(metadata["issuer"], token.claims, nonce)
        return token.claims

    @staticmethod
    def _decode(id_token: str, keys: KeySet):
        """joserfc's decode: the signature, with the allowed algorithms only."""
        try:
            return jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
        except InvalidKeyIdError:
            raise
        except (JoseError, ValueError, KeyError, TypeError) as e:
            raise SignInRefused(SignInRefused.UNVERIFIED,
                                "id token: %s" % type(e).__name__) from None

    def _check_claims(self, issuer: str, claims: dict, nonce: str) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": self.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except ClaimError as e:
            raise SignInRefused(SignInRefused.UNVERIFIED, "id token: %s %s"
                                % (type(e).__name__, e.claim)) from None
        # joserfc lets a list claim match one of its elements: the nonce is one string.
        if not isinstance(claims["nonce"], str):
            raise SignInRefused(SignInRefused.UNVERIFIED, "id token: nonce is not a string")
        if "azp" in claims and claims["azp"] != self.client_id:
            raise SignInRefused(SignInRefused.UNVERIFIED, "id token: azp is another client")

    def _key_set(self, metadata: dict, refresh: bool = False) -> defer.Deferred:
        """The provider's keys: cached for L{METADATA_TTL}, refetched when asked."""
        fresh = self._clock() - self._keys_at < METADATA_TTL
        if self._keys is not None and fresh and not refresh:
            return defer.succeed(self._keys)
        return self._fetching_keys(lambda: self._fetch_keys(metadata["jwks_uri"]))

    @defer.inlineCallbacks
    def _fetch_keys(self, url: str):
        status, body = yield self._exchange("GET", url)
        if status != 200:
            raise SignInRefused(SignInRefused.NO_ANSWER, "JWKS answered %d" % status)
        document = _json_object(body, "the JWKS")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise SignInRefused(SignInRefused.UNVERIFIED, "the JWKS has no keys")
        # Only the key types of the allowed algorithms: a symmetric "oct"
        # entry has no business in a provider's public keys.
        usable = [k for k in entries if isinstance(k, dict) and k.get("kty") in _KEY_TYPES]
        try:
            keys = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, KeyError, TypeError) as e:
            raise SignInRefused(SignInRefused.UNVERIFIED,
                                "the JWKS: %s" % type(e).__name__) from None
        self._keys = keys
        self._keys_at = self._clock()
        return keys

    # -- HTTP ---------------------------------------------------------------

    @defer.inlineCallbacks
    def _exchange(self, method: str, url: str, headers=None, **kwargs):
        """
        One call to the provider: fires with (status, body). A timeout (head
        and body), a body over the cap or any transport error is
        L{SignInRefused.NO_ANSWER}, described by its type only.
        """
        headers = dict(headers or {})
        headers.setdefault("Accept", "application/json")
        headers.setdefault("User-Agent", _USER_AGENT)
        deadline = _Deadline(self._reactor, self.timeout)
        try:
            response = yield deadline.watch(self._http.request(
                method, url, headers=headers, allow_redirects=False, unbuffered=True,
                reactor=self._reactor, **kwargs))
            body = yield deadline.watch(_read_capped(response, self.body_cap))
        except _TooBig:
            raise SignInRefused(SignInRefused.NO_ANSWER,
                                "an answer over %d KiB" % (self.body_cap // 1024)) from None
        except Exception as e:
            if isinstance(e, defer.CancelledError) and not deadline.expired:
                raise  # the caller cancelled: theirs to handle
            if deadline.expired:
                detail = "no answer in %gs" % self.timeout
            else:
                detail = "the call failed: %s" % type(e).__name__
            raise SignInRefused(SignInRefused.NO_ANSWER, detail) from None
        finally:
            deadline.stop()
        return response.code, body

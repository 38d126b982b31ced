"""A small fake OpenID provider for the sign-in tests, over real HTTP on
127.0.0.1, shaped like Hugging Face's (discovery, /oauth/authorize,
/oauth/token, /oauth/userinfo with the user's orgs, a JWKS).

The authorize endpoint checks the request and redirects straight back, as
if the user had clicked "allow"; the token endpoint checks client_secret_basic,
the code (single use), the redirect_uri and PKCE (S256). Everything it
receives is recorded, so tests can check that PKCE and client
authentication happened. Switches make it misbehave: a wrong nonce,
audience or issuer in the ID token, an expired one, one signed with
another key, with HS256 (keyed with the public key, the classic confusion)
or unsigned (alg none), a discovery document naming another issuer, a
denied sign-in, answers that stall or are too big.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from twisted.internet import defer
from twisted.web import resource, server

from .backend import CountingSite, serve_locally

CLIENT_ID = "wighaven-test-client"
CLIENT_SECRET = "client-secret-d3adb33f-not-for-logs"
REDIRECT_URI = "https://gateway.example/_gateway/oauth/callback"
ACME = {"sub": "61fa1c2e0e4e5a0001acme0", "name": "Acme Corp", "preferred_username": "acme",
        "isEnterprise": False}


def s256(verifier: str) -> str:
    """PKCE S256, as a provider computes it."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: dict) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


class FakeProvider(resource.Resource):
    """
    The provider's single resource; the path picks the endpoint.

    Every option is an attribute tests may change between sign-ins:
    the user (C{username}, C{name}, C{email}, C{orgs}, C{subject}) and the
    misbehaviours (C{nonce}, C{audience}, C{expired}, C{sign_with_other_key},
    C{issuer}, C{discovery_issuer}, C{alg} ("RS256", "ES256", "HS256",
    "none"), C{deny}, C{userinfo}, C{userinfo_sub}, C{azp}, C{omit_claims}
    (names left out of the ID token), C{claims_override} (name -> value, or
    a callable given the claims built so far), C{stall} (an
    endpoint's name: it never answers), C{stall_body} (it answers its head
    and a little of its body, then nothing), C{huge} (it answers 2 MiB)).
    """

    isLeaf = True

    def __init__(self, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                 redirect_uris=(REDIRECT_URI,), username="alice", name="Alice Liddell",
                 email="alice@example.com", orgs=(ACME,), subject="65f0c0ffee0000000a11ce00",
                 nonce=None, audience=None, expired=False, sign_with_other_key=False,
                 issuer=None, discovery_issuer=None, alg="RS256", deny=False, userinfo=True,
                 userinfo_sub=None, azp=None, omit_claims=(), claims_override=None,
                 stall=None, stall_body=None, huge=None):
        super().__init__()
        self.origin = None  # set once listening
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = tuple(redirect_uris)
        self.username = username
        self.name = name
        self.email = email
        self.orgs = [dict(o) if isinstance(o, dict) else {"sub": "org-" + o, "name": o,
                                                         "preferred_username": o}
                     for o in orgs]
        self.subject = subject
        self.nonce = nonce
        self.audience = audience
        self.expired = expired
        self.sign_with_other_key = sign_with_other_key
        self.issuer = issuer
        self.discovery_issuer = discovery_issuer
        self.alg = alg
        self.deny = deny
        self.userinfo = userinfo
        self.userinfo_sub = userinfo_sub
        self.azp = azp
        self.omit_claims = tuple(omit_claims)
        self.claims_override = dict(claims_override or {})
        self.stall = stall
        self.stall_body = stall_body
        self.huge = huge
        self.key = RSAKey.generate_key(2048, auto_kid=True)
        self.ec_key = ECKey.generate_key("P-256", auto_kid=True)
        self.other_key = RSAKey.generate_key(2048, auto_kid=True)
        self._codes = {}  # code -> what the authorize request said
        self._access = {}  # access token -> subject
        # What it received:
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        self.authorize_requests = []  # the query of each, as a dict
        self.token_requests = []  # {"form", "body", "authorization", "outcome"}
        self.userinfo_requests = []  # the Authorization header of each
        self.issued = []  # {"code", "access_token", "id_token"} handed out
        self.stalled = []  # requests left hanging (cleanup cuts their connections)

    # -- test helpers ----------------------------------------------------------

    def rotate_key(self):
        """A new signing key with a new kid; the JWKS serves only the new one."""
        self.key = RSAKey.generate_key(2048, auto_kid=True)
        return self.key.kid

    @property
    def last_token_request(self):
        return self.token_requests[-1] if self.token_requests else None

    def secrets_seen(self):
        """Every secret string of the exchanges so far (codes, tokens, client secret)."""
        found = [self.client_secret]
        for entry in self.issued:
            found.extend(v for v in entry.values() if v)
        return found

    # -- dispatch -----------------------------------------------------------------

    def render(self, request):
        path = request.path.decode("ascii", "replace")
        routes = {
            "/.well-known/openid-configuration": ("discovery", self.do_discovery),
            "/.well-known/jwks.json": ("jwks", self.do_jwks),
            "/oauth/authorize": ("authorize", self.do_authorize),
            "/oauth/token": ("token", self.do_token),
            "/oauth/userinfo": ("userinfo", self.do_userinfo),
        }
        if path not in routes:
            request.setResponseCode(404)
            return b"not found"
        name, handler = routes[path]
        if self.stall == name:
            self.stalled.append(request)
            return server.NOT_DONE_YET
        if self.huge == name:
            request.setHeader(b"content-type", b"application/json")
            return b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        if self.stall_body == name:
            request.setHeader(b"content-type", b"application/json")
            request.setHeader(b"content-length", b"1000")
            request.write(b'{"pad": "')
            self.stalled.append(request)
            return server.NOT_DONE_YET
        return handler(request)

    def _json(self, request, value, code=200):
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(value).encode("utf-8")

    # -- endpoints ---------------------------------------------------------------

    def do_discovery(self, request):
        self.discovery_fetches += 1
        origin = self.origin
        document = {
            "issuer": self.discovery_issuer or origin,
            "authorization_endpoint": origin + "/oauth/authorize",
            "token_endpoint": origin + "/oauth/token",
            "jwks_uri": origin + "/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email"],
        }
        if self.userinfo:
            document["userinfo_endpoint"] = origin + "/oauth/userinfo"
        return self._json(request, document)

    def do_jwks(self, request):
        self.jwks_fetches += 1
        keys = [self.key.as_dict(private=False, use="sig", alg="RS256"),
                self.ec_key.as_dict(private=False, use="sig", alg="ES256")]
        return self._json(request, {"keys": keys})

    def do_authorize(self, request):
        query = {k.decode(): v[0].decode() for k, v in request.args.items()}
        self.authorize_requests.append(query)
        problem = None
        if query.get("client_id") != self.client_id:
            problem = "unknown client_id"
        elif query.get("redirect_uri") not in self.redirect_uris:
            problem = "redirect_uri not registered"
        elif query.get("response_type") != "code":
            problem = "response_type must be code"
        elif query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problem = "PKCE S256 required"
        elif "openid" not in query.get("scope", "").split():
            problem = "scope must include openid"
        if problem is not None:
            request.setResponseCode(400)
            return problem.encode("ascii")
        answer = {"state": query.get("state", "")}
        if self.deny:
            answer = {"error": "access_denied", "error_description": "The user said no",
                      **answer}
        else:
            code = secrets.token_urlsafe(24)
            self._codes[code] = query
            answer = {"code": code, **answer}
        request.setResponseCode(302)
        request.setHeader(b"location", _with_query(query["redirect_uri"], answer).encode())
        return b""

    def do_token(self, request):
        body = request.content.read()
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        authorization = (request.getHeader(b"authorization") or b"").decode("latin-1")
        entry = {"form": form, "body": body, "authorization": authorization,
                 "content_type": (request.getHeader(b"content-type") or b"").decode(),
                 "outcome": None}
        self.token_requests.append(entry)
        if request.method != b"POST":
            entry["outcome"] = "not a POST"
            return self._json(request, {"error": "invalid_request"}, 405)
        if not self._client_authenticated(authorization):
            entry["outcome"] = "client authentication failed"
            return self._json(request, {"error": "invalid_client"}, 401)
        granted = self._codes.pop(form.get("code", ""), None)  # single use, whatever follows
        if form.get("grant_type") != "authorization_code" or granted is None:
            entry["outcome"] = "unknown or used code"
            return self._json(request, {"error": "invalid_grant"}, 400)
        if form.get("redirect_uri") != granted["redirect_uri"]:
            entry["outcome"] = "redirect_uri differs"
            return self._json(request, {"error": "invalid_grant"}, 400)
        if form.get("client_id", self.client_id) != self.client_id:
            entry["outcome"] = "client_id differs"
            return self._json(request, {"error": "invalid_grant"}, 400)
        verifier = form.get("code_verifier")
        if not verifier or s256(verifier) != granted["code_challenge"]:
            entry["outcome"] = "PKCE verifier does not match"
            return self._json(request, {"error": "invalid_grant"}, 400)
        entry["outcome"] = "ok"
        access_token = "hf_oauth_" + secrets.token_urlsafe(24)
        self._access[access_token] = self.subject
        id_token = self.id_token(granted.get("nonce"))
        self.issued.append({"code": form["code"], "access_token": access_token,
                            "id_token": id_token})
        return self._json(request, {
            "access_token": access_token, "token_type": "bearer", "expires_in": 28800,
            "id_token": id_token, "scope": granted.get("scope", ""),
        })

    def do_userinfo(self, request):
        authorization = (request.getHeader(b"authorization") or b"").decode("latin-1")
        self.userinfo_requests.append(authorization)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or token not in self._access:
            request.setHeader(b"www-authenticate", b'Bearer error="invalid_token"')
            return self._json(request, {"error": "invalid_token"}, 401)
        info = {"sub": self.userinfo_sub or self._access[token], "isPro": False,
                "orgs": self.orgs, "picture": "https://example.invalid/avatar.png"}
        info.update(self._profile())
        return self._json(request, info)

    # -- pieces --------------------------------------------------------------------

    def _client_authenticated(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except ValueError:
            return False
        return (hmac.compare_digest(unquote_plus(user), self.client_id)
                and hmac.compare_digest(unquote_plus(password), self.client_secret))

    def _profile(self) -> dict:
        profile = {}
        if self.username is not None:
            profile["preferred_username"] = self.username
        if self.name is not None:
            profile["name"] = self.name
        if self.email is not None:
            profile["email"] = self.email
            profile["email_verified"] = True
        return profile

    def claims(self, nonce):
        """The ID token's claims for a sign-in whose authorize request said C{nonce}."""
        now = int(time.time())
        issued = now - 1200 if self.expired else now
        claims = {
            "iss": self.issuer or self.origin,
            "sub": self.subject,
            "aud": self.audience or self.client_id,
            "exp": issued + 600 if self.expired else now + 3600,
            "iat": issued,
            "auth_time": issued,
        }
        nonce = self.nonce if self.nonce is not None else nonce
        if nonce is not None:
            claims["nonce"] = nonce
        if self.azp is not None:
            claims["azp"] = self.azp
        profile = self._profile()
        profile.pop("email", None)  # the email comes with the userinfo, as with HF
        profile.pop("email_verified", None)
        claims.update(profile)
        for name, value in self.claims_override.items():
            claims[name] = value(claims) if callable(value) else value
        for name in self.omit_claims:
            claims.pop(name, None)
        return claims

    def id_token(self, nonce):
        """The ID token, signed the way the switches say."""
        claims = self.claims(nonce)
        if self.alg == "none":
            return "%s.%s." % (_segment({"alg": "none", "typ": "JWT"}), _segment(claims))
        if self.alg == "HS256":
            # The algorithm confusion attack: HMAC keyed with the public key
            # a careless verifier would hand to HMAC.
            header = {"alg": "HS256", "typ": "JWT", "kid": self.key.kid}
            signing_input = "%s.%s" % (_segment(header), _segment(claims))
            secret = self.key.as_pem(private=False)
            mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
            return signing_input + "." + _b64(mac)
        if self.alg == "ES256":
            return jwt.encode({"alg": "ES256", "kid": self.ec_key.kid}, claims, self.ec_key)
        key = self.other_key if self.sign_with_other_key else self.key
        # The header names the published key whatever signed it: the
        # signature itself must be what gives a forgery away.
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, key)


def _with_query(url: str, params: dict) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


@defer.inlineCallbacks
def start_provider(testcase, **options):
    """
    Start a L{FakeProvider} on 127.0.0.1 (plain HTTP) for the duration of
    C{testcase}; C{options} go to its constructor. Fires with the provider,
    its C{origin} set (also its issuer unless told otherwise).
    """
    provider = FakeProvider(**options)
    site = CountingSite(provider)
    provider.origin = yield serve_locally(testcase, site, tls=False)
    return provider

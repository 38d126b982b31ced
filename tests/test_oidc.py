"""Sign in with Hugging Face (wighaven.auth.oidc): whole sign-ins over real
HTTP against a fake OpenID provider (tests/support/oidc_provider.py),
driven as a browser would (start, follow the authorize URL without
following its redirect, read the code and state from the Location, finish),
then each way the provider's answer can be wrong, and the access rules."""

import time
from urllib.parse import parse_qsl, urlsplit

from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from tests.support.oidc_provider import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    s256,
    start_provider,
)
from wighaven.auth.oidc import HfAccessRules, HfUser, OpenIDClient, SignInRefused


class _Clock:
    """A wall clock the test can move forward."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset


class SignInTestCase(TestCase):
    """Starts providers and clients, and drives sign-ins like a browser."""

    def setUp(self):
        self.browser = HTTPClient(
            Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    @defer.inlineCallbacks
    def provider(self, **options):
        provider = yield start_provider(self, **options)
        return provider

    def client(self, provider, secret=CLIENT_SECRET, url=None, **kwargs):
        client = OpenIDClient(reactor, url or provider.origin, CLIENT_ID, secret, **kwargs)
        self.addCleanup(client.close)
        return client

    @defer.inlineCallbacks
    def authorize(self, url):
        """What the browser brings back to the callback: the Location's query."""
        response = yield self.browser.get(url, allow_redirects=False)
        yield response.content()
        self.assertEqual(response.code, 302)
        location = response.headers.getRawHeaders("location")[0]
        self.assertTrue(location.startswith(REDIRECT_URI + "?"), location)
        return dict(parse_qsl(urlsplit(location).query))

    @defer.inlineCallbacks
    def sign_in(self, client, tamper_params=None, tamper_pending=None):
        url, pending = yield client.start(REDIRECT_URI)
        params = yield self.authorize(url)
        if tamper_params:
            tamper_params(params)
        if tamper_pending:
            tamper_pending(pending)
        user = yield client.finish(REDIRECT_URI, params, pending)
        return user

    @defer.inlineCallbacks
    def assertRefused(self, d, phrase):
        try:
            yield d
        except SignInRefused as e:
            self.assertEqual(str(e), phrase)
            return e
        self.fail("the sign-in was not refused")


class GoodSignInTests(SignInTestCase):

    @defer.inlineCallbacks
    def test_good_sign_in(self):
        """A sign-in gives the user with its orgs; PKCE and client auth happened."""
        provider = yield self.provider()
        client = self.client(provider)
        url, pending = yield client.start(REDIRECT_URI)
        self.assertEqual(sorted(pending), ["nonce", "state", "verifier"])
        params = yield self.authorize(url)
        user = yield client.finish(REDIRECT_URI, params, pending)

        self.assertEqual(user, HfUser(username="alice", name="Alice Liddell",
                                      email="alice@example.com", orgs=("acme",),
                                      subject=provider.subject))
        asked = provider.authorize_requests[-1]
        self.assertEqual(asked["response_type"], "code")
        self.assertEqual(asked["client_id"], CLIENT_ID)
        self.assertEqual(asked["redirect_uri"], REDIRECT_URI)
        self.assertEqual(asked["scope"], "openid profile")
        self.assertEqual(asked["state"], pending["state"])
        self.assertEqual(asked["nonce"], pending["nonce"])
        self.assertEqual(asked["code_challenge_method"], "S256")
        self.assertEqual(asked["code_challenge"], s256(pending["verifier"]))
        self.assertNotIn(pending["verifier"], url)

        token = provider.last_token_request
        self.assertEqual(token["outcome"], "ok")
        self.assertTrue(token["authorization"].startswith("Basic "))
        self.assertEqual(token["content_type"], "application/x-www-form-urlencoded")
        self.assertEqual(token["form"]["grant_type"], "authorization_code")
        self.assertEqual(token["form"]["code_verifier"], pending["verifier"])
        self.assertEqual(token["form"]["redirect_uri"], REDIRECT_URI)
        self.assertEqual(token["form"]["client_id"], CLIENT_ID)
        self.assertNotIn(CLIENT_SECRET.encode(), token["body"])  # Basic, not the form
        self.assertEqual(provider.userinfo_requests,
                         ["Bearer " + provider.issued[-1]["access_token"]])

    def test_pending_is_fresh_each_time(self):
        """Each start makes new secrets of 32 random bytes each."""
        pendings = []

        @defer.inlineCallbacks
        def run():
            provider = yield self.provider()
            client = self.client(provider)
            for _ in range(2):
                _, pending = yield client.start(REDIRECT_URI)
                pendings.append(pending)
            return provider

        d = run()

        def check(provider):
            first, second = pendings
            for name in ("state", "nonce", "verifier"):
                self.assertNotEqual(first[name], second[name])
                self.assertGreaterEqual(len(first[name]), 43)
            self.assertEqual(provider.discovery_fetches, 1)  # cached

        return d.addCallback(check)

    @defer.inlineCallbacks
    def test_es256_token(self):
        """An ES256 ID token from a key of the JWKS is accepted too."""
        provider = yield self.provider(alg="ES256")
        user = yield self.sign_in(self.client(provider))
        self.assertEqual(user.username, "alice")

    @defer.inlineCallbacks
    def test_audience_list_with_azp(self):
        """Several audiences, ours among them, with azp naming us: accepted."""
        provider = yield self.provider(claims_override={"aud": [CLIENT_ID, "other"]},
                                       azp=CLIENT_ID)
        user = yield self.sign_in(self.client(provider))
        self.assertEqual(user.username, "alice")

    @defer.inlineCallbacks
    def test_small_clock_difference(self):
        """Our clock 50 s behind the provider's (iat in our future): within the leeway."""
        provider = yield self.provider()
        clock = _Clock()
        clock.offset = -50
        user = yield self.sign_in(self.client(provider, clock=clock))
        self.assertEqual(user.username, "alice")

    @defer.inlineCallbacks
    def test_provider_url_trailing_slash(self):
        """The provider URL and the issuer may differ by one trailing slash."""
        provider = yield self.provider()
        user = yield self.sign_in(self.client(provider, url=provider.origin + "/"))
        self.assertEqual(user.username, "alice")

    @defer.inlineCallbacks
    def test_without_userinfo_endpoint(self):
        """No userinfo endpoint: the user is the ID token's (no email, no orgs there)."""
        provider = yield self.provider(userinfo=False)
        user = yield self.sign_in(self.client(provider))
        self.assertEqual((user.username, user.name, user.email, user.orgs),
                         ("alice", "Alice Liddell", None, ()))
        self.assertEqual(provider.userinfo_requests, [])

    @defer.inlineCallbacks
    def test_org_without_handle_falls_back_to_name(self):
        provider = yield self.provider(orgs=[{"sub": "x", "name": "Big Org"}, "beta"])
        user = yield self.sign_in(self.client(provider))
        self.assertEqual(user.orgs, ("Big Org", "beta"))

    @defer.inlineCallbacks
    def test_jwks_cached(self):
        """Two sign-ins fetch discovery and the JWKS once."""
        provider = yield self.provider()
        client = self.client(provider)
        yield self.sign_in(client)
        yield self.sign_in(client)
        self.assertEqual(provider.jwks_fetches, 1)
        self.assertEqual(provider.discovery_fetches, 1)

    @defer.inlineCallbacks
    def test_jwks_refetched_on_unknown_kid(self):
        """The provider rotated its key: the unknown kid refetches the JWKS, once a minute."""
        provider = yield self.provider()
        clock = _Clock()
        client = self.client(provider, clock=clock)
        yield self.sign_in(client)
        provider.rotate_key()
        clock.offset += 61
        user = yield self.sign_in(client)
        self.assertEqual(user.username, "alice")
        self.assertEqual(provider.jwks_fetches, 2)
        # Another rotation within the minute: refused, and the JWKS not asked again.
        provider.rotate_key()
        yield self.assertRefused(self.sign_in(client), SignInRefused.UNVERIFIED)
        self.assertEqual(provider.jwks_fetches, 2)

    @defer.inlineCallbacks
    def test_caches_expire(self):
        """After an hour, discovery and the JWKS are fetched again."""
        provider = yield self.provider()
        clock = _Clock()
        client = self.client(provider, clock=clock)
        yield self.sign_in(client)
        clock.offset += 3601
        yield self.sign_in(client)
        self.assertEqual((provider.discovery_fetches, provider.jwks_fetches), (2, 2))


class RefusedSignInTests(SignInTestCase):

    @defer.inlineCallbacks
    def refused_with(self, phrase=SignInRefused.UNVERIFIED, detail=None, **options):
        """A sign-in against a provider with C{options} is refused with C{phrase}, for C{detail}."""
        provider = yield self.provider(**options)
        error = yield self.assertRefused(self.sign_in(self.client(provider)), phrase)
        if detail is not None:
            self.assertIn(detail, error.detail)
        return provider, error

    @defer.inlineCallbacks
    def test_pkce_verifier_checked(self):
        """A verifier that is not the challenge's: the provider refuses the code."""
        provider = yield self.provider()
        client = self.client(provider)

        def other_verifier(pending):
            pending["verifier"] = "x" * 43

        yield self.assertRefused(self.sign_in(client, tamper_pending=other_verifier),
                                 SignInRefused.REFUSED)
        self.assertEqual(provider.last_token_request["outcome"], "PKCE verifier does not match")

    @defer.inlineCallbacks
    def test_code_single_use(self):
        provider = yield self.provider()
        client = self.client(provider)
        url, pending = yield client.start(REDIRECT_URI)
        params = yield self.authorize(url)
        yield client.finish(REDIRECT_URI, params, pending)
        yield self.assertRefused(client.finish(REDIRECT_URI, params, pending),
                                 SignInRefused.REFUSED)
        self.assertEqual(provider.last_token_request["outcome"], "unknown or used code")

    @defer.inlineCallbacks
    def test_wrong_client_secret(self):
        provider = yield self.provider()
        yield self.assertRefused(self.sign_in(self.client(provider, secret="nope")),
                                 SignInRefused.REFUSED)
        self.assertEqual(provider.last_token_request["outcome"], "client authentication failed")

    @defer.inlineCallbacks
    def test_state_mismatch(self):
        """Another state, or none: refused before the code is redeemed."""
        provider = yield self.provider()
        client = self.client(provider)

        def other(params):
            params["state"] = params["state"][:-1] + ("A" if params["state"][-1] != "A" else "B")

        def missing(params):
            del params["state"]

        for tamper in (other, missing):
            yield self.assertRefused(self.sign_in(client, tamper_params=tamper),
                                     SignInRefused.EXPIRED)
        self.assertEqual(provider.token_requests, [])

    @defer.inlineCallbacks
    def test_no_pending(self):
        """No cookie (or a malformed one): the sign-in expired."""
        provider = yield self.provider()
        client = self.client(provider)
        for pending in (None, {}, {"state": "s", "nonce": 1, "verifier": "v"}):
            yield self.assertRefused(
                client.finish(REDIRECT_URI, {"code": "c", "state": "s"}, pending),
                SignInRefused.EXPIRED)

    @defer.inlineCallbacks
    def test_access_denied(self):
        provider, _ = yield self.refused_with(SignInRefused.CANCELLED, deny=True)
        self.assertEqual(provider.token_requests, [])

    def test_wrong_nonce(self):
        return self.refused_with(detail="nonce", nonce="wrong")

    def test_wrong_audience(self):
        return self.refused_with(detail="aud", audience="other")

    def test_other_azp(self):
        return self.refused_with(detail="azp", azp="another-client")

    def test_expired(self):
        return self.refused_with(detail="ExpiredTokenError", expired=True)

    def test_signed_with_other_key(self):
        return self.refused_with(detail="BadSignatureError", sign_with_other_key=True)

    def test_wrong_issuer_in_token(self):
        return self.refused_with(detail="iss", issuer="http://elsewhere")

    def test_hs256_token(self):
        """HS256 keyed with the public key (algorithm confusion): refused."""
        return self.refused_with(detail="UnsupportedAlgorithmError", alg="HS256")

    def test_alg_none_token(self):
        return self.refused_with(detail="UnsupportedAlgorithmError", alg="none")

    def test_no_iat(self):
        return self.refused_with(detail="iat", omit_claims=["iat"])

    def test_no_nonce(self):
        return self.refused_with(detail="nonce", omit_claims=["nonce"])

    def test_no_exp(self):
        return self.refused_with(detail="exp", omit_claims=["exp"])

    def test_nonce_in_a_list(self):
        """joserfc lets a list hold the expected value; a nonce must be the string itself."""
        return self.refused_with(detail="nonce", claims_override={"nonce": lambda c: [c["nonce"]]})

    def test_issued_in_the_future(self):
        return self.refused_with(detail="iat", claims_override={"iat": lambda c: c["iat"] + 600})

    def test_audience_list_without_us(self):
        return self.refused_with(detail="aud", claims_override={"aud": ["a", "b"]})

    def test_userinfo_about_someone_else(self):
        return self.refused_with(detail="another sub", userinfo_sub="someone-else")

    def test_no_username(self):
        return self.refused_with(SignInRefused.NO_USERNAME, username=None)

    @defer.inlineCallbacks
    def test_discovery_issuer_mismatch(self):
        """Discovery naming another issuer: refused before anything is asked of the user."""
        provider = yield self.provider(discovery_issuer="http://elsewhere")
        yield self.assertRefused(self.client(provider).start(REDIRECT_URI),
                                 SignInRefused.UNVERIFIED)
        self.assertEqual(provider.authorize_requests, [])

    @defer.inlineCallbacks
    def test_token_endpoint_stalls(self):
        provider = yield self.provider(stall="token")
        client = self.client(provider)
        client.timeout = 0.5
        yield self.assertRefused(self.sign_in(client), SignInRefused.NO_ANSWER)

    @defer.inlineCallbacks
    def test_body_stalls(self):
        """The timeout covers the body too: a head and then silence is no answer."""
        provider = yield self.provider(stall_body="discovery")
        client = self.client(provider)
        client.timeout = 0.5
        started = time.monotonic()
        yield self.assertRefused(client.start(REDIRECT_URI), SignInRefused.NO_ANSWER)
        self.assertLess(time.monotonic() - started, 5)

    def test_jwks_too_big(self):
        return self.refused_with(SignInRefused.NO_ANSWER, "over 1024 KiB", huge="jwks")

    @defer.inlineCallbacks
    def test_refusals_reveal_no_secret(self):
        """Neither a refusal's text nor the log holds a code, a token, the secret or a verifier."""
        provider = yield self.provider()
        client = self.client(provider)
        pendings = []

        def keep(pending):
            pendings.append(dict(pending))

        def other_verifier(pending):
            keep(pending)
            pending["verifier"] = "y" * 43

        cases = [  # (provider switches, tamper_pending, what the refusal says)
            ({}, other_verifier, SignInRefused.REFUSED),
            ({"nonce": "wrong"}, keep, SignInRefused.UNVERIFIED),
            ({"userinfo_sub": "someone-else"}, keep, SignInRefused.UNVERIFIED),
            ({"alg": "none"}, keep, SignInRefused.UNVERIFIED),
            ({"deny": True}, keep, SignInRefused.CANCELLED),
        ]
        texts = []
        with capturedLogs() as events:
            for switches, tamper, phrase in cases:
                before = {name: getattr(provider, name) for name in switches}
                for name, value in switches.items():
                    setattr(provider, name, value)
                error = yield self.assertRefused(self.sign_in(client, tamper_pending=tamper),
                                                 phrase)
                texts.extend([str(error), repr(error), error.detail])
                for name, value in before.items():
                    setattr(provider, name, value)
        ours = [e for e in events if e.get("log_namespace", "").startswith("wighaven.")]
        texts.extend(formatEvent(e) for e in ours)
        texts.extend(repr(e) for e in ours)
        self.assertEqual(len(ours), len(cases))  # each refusal logged, once
        self.assertEqual(len(provider.issued), 3)  # tokens were handed out and refused
        secrets = provider.secrets_seen() + [v for p in pendings for v in p.values()]
        secrets.append("y" * 43)
        for text in texts:
            for secret in secrets:
                self.assertNotIn(secret, text)


class ConstructionTests(SynchronousTestCase):

    def test_plain_http_only_to_loopback(self):
        for url in ("http://huggingface.co", "http://10.0.0.1:8080", "ftp://127.0.0.1",
                    "huggingface.co", ""):
            with self.assertRaises(ValueError, msg=url):
                OpenIDClient(reactor, url, CLIENT_ID, CLIENT_SECRET)
        for url in ("https://huggingface.co", "http://127.0.0.1:8080", "http://[::1]:1",
                    "http://localhost:9/"):
            OpenIDClient(reactor, url, CLIENT_ID, CLIENT_SECRET)

    def test_plain_http_error_is_one_line(self):
        with self.assertRaises(ValueError) as caught:
            OpenIDClient(reactor, "http://huggingface.co", CLIENT_ID, CLIENT_SECRET)
        self.assertNotIn("\n", str(caught.exception))
        self.assertIn("https", str(caught.exception))

    def test_needs_credentials_and_openid(self):
        with self.assertRaises(ValueError):
            OpenIDClient(reactor, "https://huggingface.co", "", CLIENT_SECRET)
        with self.assertRaises(ValueError):
            OpenIDClient(reactor, "https://huggingface.co", CLIENT_ID, "")
        with self.assertRaises(ValueError):
            OpenIDClient(reactor, "https://huggingface.co", CLIENT_ID, CLIENT_SECRET,
                         scopes="profile")

    def test_repr_has_no_secret(self):
        client = OpenIDClient(reactor, "https://huggingface.co", CLIENT_ID, CLIENT_SECRET)
        self.assertNotIn(CLIENT_SECRET, repr(client))
        self.assertEqual(client.discovery_url,
                         "https://huggingface.co/.well-known/openid-configuration")

    def test_refusal_text_is_fixed(self):
        """Any other text given to SignInRefused becomes the generic phrase."""
        error = SignInRefused("hf_oauth_leaked_token")
        self.assertEqual(str(error), SignInRefused.UNVERIFIED)
        self.assertEqual(str(SignInRefused(SignInRefused.CANCELLED)), "the sign-in was cancelled")


def _user(username="alice", orgs=()):
    return HfUser(username=username, name=None, email=None, orgs=tuple(orgs), subject="s")


class AccessRulesTests(SynchronousTestCase):

    def test_nothing_configured(self):
        rules = HfAccessRules()
        self.assertFalse(rules.configured)
        self.assertFalse(rules.admits(_user()))
        self.assertEqual(rules.roles(_user()), ())

    def test_allowed_user_case_insensitive(self):
        rules = HfAccessRules(allowed_users=["Alice"])
        self.assertTrue(rules.configured)
        self.assertTrue(rules.admits(_user("alice")))
        self.assertTrue(rules.admits(_user("ALICE")))
        self.assertFalse(rules.admits(_user("bob")))
        self.assertEqual(rules.roles(_user("alice")), ())

    def test_allowed_org(self):
        rules = HfAccessRules(allowed_orgs=["ACME"])
        self.assertTrue(rules.configured)
        self.assertTrue(rules.admits(_user("bob", orgs=["other", "acme"])))
        self.assertFalse(rules.admits(_user("bob", orgs=["other"])))
        self.assertFalse(rules.admits(_user("acme")))  # a user named like the org is not in it

    def test_admins(self):
        rules = HfAccessRules(admin_users=["root"])
        self.assertTrue(rules.configured)
        self.assertTrue(rules.admits(_user("Root")))
        self.assertEqual(rules.roles(_user("Root")), ("admin",))
        self.assertFalse(rules.admits(_user("alice")))
        self.assertEqual(rules.roles(_user("alice")), ())

    def test_star_admits_everyone(self):
        rules = HfAccessRules(allowed_users=["*"], admin_users=["root"])
        self.assertTrue(rules.admits(_user("anyone")))
        self.assertEqual(rules.roles(_user("anyone")), ())
        self.assertEqual(rules.roles(_user("root")), ("admin",))

    def test_star_in_orgs_is_not_a_wildcard(self):
        self.assertFalse(HfAccessRules(allowed_orgs=["*"]).admits(_user("x", orgs=["acme"])))

"""Sign in with Hugging Face through a real gateway (in this process, AUTH=on,
its store a real SQLite file) against the fake OpenID provider
(tests/support/oidc_provider.py), both over real HTTP on 127.0.0.1.

The flow is walked as a browser would, one hop at a time, no redirect
followed by the client and every cookie carried by hand:

    GET /_gateway/login/huggingface?next=...   -> 302 to the provider (+ wh_oauth)
    GET <provider>/oauth/authorize?...          -> 302 to the gateway's callback
    GET /_gateway/login/huggingface/callback    -> 303 to next (+ wh_session)

then what the session is good for: /_gateway/auth/me, the Space (which is
told X-Forwarded-User and never sees the cookie), routes of hf_org access,
the dashboard for HF_OAUTH_ADMIN_USERS; and every way it is refused.
"""

import json
import os
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.backend import start_backend
from tests.support.client import fetch
from tests.support.gateway import free_port
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, start_provider
from tests.test_auth_integration import AuthGateway, header, session_cookie

LOGIN = "/_gateway/login"
HF_LOGIN = "/_gateway/login/huggingface"
HF_CALLBACK = HF_LOGIN + "/callback"
ME = "/_gateway/auth/me"
DASHBOARD = "/_gateway/dashboard"
HTML = {"Accept": "text/html"}


def oauth_cookie(reply):
    """The name=value of the wh_oauth cookie a reply sets (loopback http), or None."""
    for value in reply.get_all("Set-Cookie"):
        if value.startswith("wh_oauth="):
            return value.split(";", 1)[0]
    return None


def set_cookie_line(reply, name):
    """The whole Set-Cookie value for cookie C{name}, or None."""
    for value in reply.get_all("Set-Cookie"):
        if value.startswith(name + "="):
            return value
    return None


def target_of(url):
    """The path and query of an absolute URL (what goes on the request line)."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


class Walk:
    """What each hop of one sign-in answered."""

    def __init__(self):
        self.start = self.authorize = self.callback = None
        self.oauth_cookie = None

    @property
    def session(self):
        """The session cookie (name=value) the callback set, or None."""
        return session_cookie(self.callback) if self.callback is not None else None

    @property
    def callback_query(self):
        return dict(parse_qsl(urlsplit(self.authorize.get("Location")).query))


class HfSignInTestCase(unittest.TestCase):
    """A test backend, the fake provider, and gateways told to use it."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, self.backend_origin = yield start_backend(self)
        self.provider = yield start_provider(self)
        self.provider_port = urlsplit(self.provider.origin).port

    def hf_settings(self, space_names=False, **settings):
        """The settings of Sign in with Hugging Face at the fake provider, plus C{settings}."""
        if space_names:  # what a Space with hf_oauth: true is given
            names = {"OAUTH_CLIENT_ID": CLIENT_ID, "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
                     "OPENID_PROVIDER_URL": self.provider.origin}
        else:
            names = {"HF_OAUTH_CLIENT_ID": CLIENT_ID, "HF_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
                     "HF_OAUTH_PROVIDER_URL": self.provider.origin}
        names.update(settings)
        return names

    @defer.inlineCallbacks
    def start_gateway(self, hf=True, space_names=False, backend=True, **settings):
        """
        A gateway with AUTH=on (Sign in with Hugging Face at the fake provider
        unless C{hf} is false); the provider is told its callback URL.
        """
        if hf:
            settings = self.hf_settings(space_names, **settings)
        settings.setdefault("DASHBOARD_PATH", DASHBOARD)
        gateway = yield AuthGateway(
            self, self.backend_origin if backend else None, **settings).start()
        public = settings.get("PUBLIC_URL") or gateway.origin
        self.provider.redirect_uris = (public + HF_CALLBACK,)
        self.gateway = gateway
        return gateway

    @defer.inlineCallbacks
    def walk(self, next_path="/echo/after", cookie=True, tamper=None):
        """
        One sign-in, hop by hop. C{cookie}: send wh_oauth back to the callback;
        C{tamper(query)}: change the callback's query before it is sent.
        """
        walk = Walk()
        walk.start = yield self.gateway.fetch(
            target=HF_LOGIN + "?next=" + quote(next_path, safe=""), headers=HTML)
        self.assertEqual(walk.start.status, 302, walk.start.body)
        walk.oauth_cookie = oauth_cookie(walk.start)
        self.assertIsNotNone(walk.oauth_cookie, walk.start.headers)
        location = walk.start.get("Location")
        self.assertTrue(location.startswith(self.provider.origin + "/oauth/authorize?"), location)
        walk.authorize = yield fetch(self.provider_port, "GET", target_of(location))
        self.assertEqual(walk.authorize.status, 302, walk.authorize.body)
        back = walk.authorize.get("Location")
        public = self.provider.redirect_uris[0]
        self.assertTrue(back.startswith(public + "?"), back)
        query = dict(parse_qsl(urlsplit(back).query))
        if tamper is not None:
            tamper(query)
        headers = dict(HTML)
        if cookie:
            headers["Cookie"] = walk.oauth_cookie
        walk.callback = yield self.gateway.fetch(
            target=HF_CALLBACK + "?" + urlencode(query), headers=headers)
        return walk

    @defer.inlineCallbacks
    def signed_in(self, next_path="/echo/after"):
        """A good sign-in: the session cookie (name=value)."""
        walk = yield self.walk(next_path)
        self.assertEqual(walk.callback.status, 303, walk.callback.body)
        self.assertEqual(walk.callback.get("Location"), next_path)
        self.assertIsNotNone(walk.session, walk.callback.headers)
        return walk.session

    @defer.inlineCallbacks
    def me(self, cookie):
        reply = yield self.gateway.fetch(target=ME, headers={"Cookie": cookie})
        return reply

    def events(self, kind):
        return self.gateway.store().audit_events(limit=50, kind=kind)


class AllowedTests(HfSignInTestCase):
    @defer.inlineCallbacks
    def test_an_org_member_signs_in_and_the_space_knows_only_who(self):
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme")
        walk = yield self.walk("/echo/after")
        self.assertEqual(walk.callback.status, 303, walk.callback.body)
        self.assertEqual(walk.callback.get("Location"), "/echo/after")
        # The authorize request named our callback, PKCE S256 and the client id.
        asked = self.provider.authorize_requests[-1]
        self.assertEqual(asked["redirect_uri"], self.gateway.origin + HF_CALLBACK)
        self.assertEqual(asked["client_id"], CLIENT_ID)
        self.assertEqual(asked["code_challenge_method"], "S256")
        self.assertEqual(self.provider.last_token_request["outcome"], "ok")
        # The session cookie: loopback http, so wh_session without Secure.
        line = set_cookie_line(walk.callback, "wh_session")
        for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
            self.assertIn(attribute, line)
        self.assertNotIn("Secure", line)
        self.assertIsNone(set_cookie_line(walk.callback, "__Host-wh_session"))
        # The one-time wh_oauth cookie is cleared by the callback.
        cleared = set_cookie_line(walk.callback, "wh_oauth")
        self.assertIn("Max-Age=0", cleared)
        oauth_line = set_cookie_line(walk.start, "wh_oauth")
        self.assertIn("HttpOnly", oauth_line)

        me = yield self.me(walk.session)
        self.assertEqual(me.status, 200, me.body)
        self.assertEqual(me.json(), {"user": "hf:alice", "roles": [], "via": "huggingface"})

        reply = yield self.gateway.fetch(target="/echo", headers={
            "Cookie": "theme=dark; " + walk.session, "X-Forwarded-User": "mallory"})
        self.assertEqual(reply.status, 200, reply.body)
        seen = reply.json()
        self.assertEqual(header(seen, "X-Forwarded-User"), ["hf:alice"])
        self.assertEqual(header(seen, "X-Forwarded-Email"), ["alice@example.com"])
        self.assertEqual(header(seen, "Cookie"), ["theme=dark"])
        self.assertNotIn(walk.session.split("=", 1)[1], json.dumps(seen))
        # Nothing of the provider's exchange reaches the Space either.
        for secret in self.provider.secrets_seen():
            self.assertNotIn(secret, json.dumps(seen))

        succeeded = self.events("login.succeeded")
        self.assertEqual([e["actor"] for e in succeeded], ["hf:alice"])
        self.assertEqual(succeeded[0]["detail"].get("how"), "huggingface")
        user = self.gateway.store().user("hf:alice")
        self.assertEqual((user["roles"], user["email"]), ([], "alice@example.com"))

    @defer.inlineCallbacks
    def test_allowed_by_name_without_any_org(self):
        self.provider.orgs = []
        yield self.start_gateway(HF_OAUTH_ALLOWED_USERS="bob, Alice")  # case-insensitive
        cookie = yield self.signed_in()
        me = yield self.me(cookie)
        self.assertEqual(me.json(), {"user": "hf:alice", "roles": [], "via": "huggingface"})
        reply = yield self.gateway.fetch(target="/echo", headers={"Cookie": cookie})
        self.assertEqual(reply.status, 200)
        self.assertEqual(header(reply.json(), "X-Forwarded-User"), ["hf:alice"])

    @defer.inlineCallbacks
    def test_admin_users_get_the_admin_role_and_the_dashboard(self):
        yield self.start_gateway(HF_OAUTH_ADMIN_USERS="alice")
        cookie = yield self.signed_in()
        me = yield self.me(cookie)
        self.assertEqual(me.json(), {"user": "hf:alice", "roles": ["admin"],
                                     "via": "huggingface"})
        reply = yield self.gateway.fetch(target=DASHBOARD, headers=dict(HTML, Cookie=cookie))
        self.assertEqual(reply.status, 200, reply.body)
        # A member admitted by org only is no admin.
        self.provider.username = "carol"
        self.provider.subject = "carol-sub"
        gateway = self.gateway
        yield self.start_gateway(HF_OAUTH_ADMIN_USERS="alice", HF_OAUTH_ALLOWED_ORGS="acme")
        cookie = yield self.signed_in()
        reply = yield self.gateway.fetch(target=DASHBOARD, headers=dict(HTML, Cookie=cookie))
        self.assertEqual(reply.status, 403)
        self.assertIn(b"You don&#x27;t have access", reply.body)
        self.assertIsNot(gateway, self.gateway)

    @defer.inlineCallbacks
    def test_next_survives_the_round_trip_and_never_leaves_the_gateway(self):
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme")
        deep = "/echo/deep/path?x=1&y=two%20words&z=%C3%A9"
        cookie = yield self.signed_in(deep)
        reply = yield self.gateway.fetch(target=deep, headers={"Cookie": cookie})
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["uri"], deep)
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            walk = yield self.walk(evil)
            self.assertEqual(walk.callback.status, 303, evil)
            self.assertEqual(walk.callback.get("Location"), "/", evil)

    @defer.inlineCallbacks
    def test_the_anonymous_browser_is_sent_round_to_where_it_asked(self):
        """A protected page -> the login page -> its HF link -> back on the page."""
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme")
        reply = yield self.gateway.fetch(target="/echo/page?q=1", headers=HTML)
        self.assertEqual(reply.status, 303)
        login = reply.get("Location")
        self.assertEqual(login, LOGIN + "?next=%2Fecho%2Fpage%3Fq%3D1")
        page = yield self.gateway.fetch(target=login, headers=HTML)
        self.assertEqual(page.status, 200)
        self.assertIn(b'id="sign-in-hf"', page.body)
        self.assertIn(('href="%s?next=%%2Fecho%%2Fpage%%3Fq%%3D1"' % HF_LOGIN).encode(),
                      page.body)
        cookie = yield self.signed_in("/echo/page?q=1")
        reply = yield self.gateway.fetch(target="/echo/page?q=1", headers={"Cookie": cookie})
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json()["uri"], "/echo/page?q=1")

    @defer.inlineCallbacks
    def test_space_style_variable_names_work_the_same(self):
        yield self.start_gateway(space_names=True, HF_OAUTH_ALLOWED_ORGS="acme")
        self.assertEqual(self.gateway.config.auth.hf.provider_url, self.provider.origin)
        cookie = yield self.signed_in()
        me = yield self.me(cookie)
        self.assertEqual(me.json(), {"user": "hf:alice", "roles": [], "via": "huggingface"})
        reply = yield self.gateway.fetch(target="/echo", headers={"Cookie": cookie})
        self.assertEqual(header(reply.json(), "X-Forwarded-User"), ["hf:alice"])
        page = yield self.gateway.fetch(target=LOGIN, headers=HTML)
        self.assertIn(b'id="sign-in-hf"', page.body)

    @defer.inlineCallbacks
    def test_public_url_names_the_callback(self):
        port = free_port()
        public = "http://localhost:%d" % port
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme", PORT=port, PUBLIC_URL=public)
        walk = yield self.walk()
        self.assertEqual(self.provider.authorize_requests[-1]["redirect_uri"],
                         public + HF_CALLBACK)
        self.assertEqual(walk.callback.status, 303, walk.callback.body)
        me = yield self.me(walk.session)
        self.assertEqual(me.json()["user"], "hf:alice")


class RefusedTests(HfSignInTestCase):
    @defer.inlineCallbacks
    def test_neither_allowed_by_name_nor_by_org(self):
        yield self.start_gateway(HF_OAUTH_ALLOWED_USERS="bob", HF_OAUTH_ALLOWED_ORGS="other-org")
        walk = yield self.walk()
        self.assertEqual(walk.callback.status, 403, walk.callback.body)
        self.assertIn(b"You don&#x27;t have access", walk.callback.body)
        self.assertIn(b"@alice", walk.callback.body)
        self.assertIsNone(walk.session)
        self.assertIn("Max-Age=0", set_cookie_line(walk.callback, "wh_oauth"))
        failed = self.events("login.failed")
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0]["actor"], "hf:alice")
        self.assertEqual(failed[0]["detail"].get("reason"), "not_allowed")
        self.assertEqual(failed[0]["detail"].get("how"), "huggingface")
        self.assertEqual(failed[0]["source"], "127.0.0.1")
        self.assertIsNone(self.gateway.store().user("hf:alice"))  # no account made
        self.assertEqual(self.events("login.succeeded"), [])
        self.assertEqual(self.backend.requests, [])
        # Nothing secret in the audit trail.
        trail = json.dumps(self.gateway.store().audit_events(limit=50))
        for secret in self.provider.secrets_seen():
            self.assertNotIn(secret, trail)

    @defer.inlineCallbacks
    def test_a_wrong_state_is_refused(self):
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme")

        def wrong(query):
            query["state"] = query["state"][:-2] + ("AA" if query["state"][-2:] != "AA" else "BB")

        walk = yield self.walk(tamper=wrong)
        self.assertEqual(walk.callback.status, 400, walk.callback.body)
        self.assertIsNone(walk.session)
        self.assertEqual(self.provider.token_requests, [])  # the code was never redeemed
        self.assertEqual(self.events("login.succeeded"), [])
        reasons = [e["detail"].get("reason") for e in self.events("login.failed")]
        self.assertEqual(reasons, ["refused"])

    @defer.inlineCallbacks
    def test_another_sign_ins_state_is_refused(self):
        """The callback of sign-in B with the cookie of sign-in A (a login CSRF)."""
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme")
        first = yield self.gateway.fetch(target=HF_LOGIN, headers=HTML)
        walk = yield self.walk(cookie=False)
        self.assertEqual(walk.callback.status, 400)
        reply = yield self.gateway.fetch(
            target=HF_CALLBACK + "?" + urlencode(walk.callback_query),
            headers=dict(HTML, Cookie=oauth_cookie(first)))
        self.assertEqual(reply.status, 400, reply.body)
        self.assertIsNone(session_cookie(reply))

    @defer.inlineCallbacks
    def test_a_callback_without_the_oauth_cookie_is_refused(self):
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme")
        walk = yield self.walk(cookie=False)
        self.assertEqual(walk.callback.status, 400, walk.callback.body)
        self.assertIn(b"Sign-in expired", walk.callback.body)
        self.assertIsNone(walk.session)
        self.assertEqual(self.provider.token_requests, [])
        # A forged cookie is no better.
        reply = yield self.gateway.fetch(
            target=HF_CALLBACK + "?" + urlencode(walk.callback_query),
            headers=dict(HTML, Cookie="wh_oauth=eyJhbGciOiJIUzI1NiJ9.e30.AAAA"))
        self.assertEqual(reply.status, 400)
        self.assertIsNone(session_cookie(reply))
        # The callback with no query at all, and with the good cookie but no code.
        reply = yield self.gateway.fetch(target=HF_CALLBACK, headers=HTML)
        self.assertEqual(reply.status, 400)
        self.assertIsNone(session_cookie(reply))
        self.assertEqual(self.events("login.succeeded"), [])

    @defer.inlineCallbacks
    def test_a_route_for_an_org_admits_its_members_only(self):
        path = os.path.abspath(self.mktemp()) + ".toml"
        with open(path, "w") as f:
            for name, access in (("acme", ["hf_org:acme"]), ("members", "signed_in")):
                f.write('[[routes]]\nname = "%s"\npath = "/%s"\naccess = %s\n\n'
                        '[[routes.upstreams]]\nurl = "%s"\ntoken = "env:HF_TOKEN"\n\n'
                        % (name, name, json.dumps(access), self.backend_origin))
        yield self.start_gateway(backend=False, WIGHAVEN_CONFIG=path, PRIVATE_BACKEND_URL=None,
                                 HF_OAUTH_ALLOWED_ORGS="acme", HF_OAUTH_ALLOWED_USERS="carol")
        alice = yield self.signed_in("/acme/")
        reply = yield self.gateway.fetch(target="/acme/echo", headers={"Cookie": alice})
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(header(reply.json(), "X-Forwarded-User"), ["hf:alice"])

        # carol: let in by name, in no org.
        self.provider.username = "carol"
        self.provider.subject = "carol-sub"
        self.provider.email = "carol@example.com"
        self.provider.orgs = []
        carol = yield self.signed_in("/members/")
        me = yield self.me(carol)
        self.assertEqual(me.json()["user"], "hf:carol")
        reply = yield self.gateway.fetch(target="/members/echo", headers={"Cookie": carol})
        self.assertEqual(reply.status, 200)
        before = len(self.backend.requests)
        reply = yield self.gateway.fetch(target="/acme/echo", headers={"Cookie": carol})
        self.assertEqual(reply.status, 403, reply.body)
        self.assertEqual(reply.json()["error"], "forbidden")
        reply = yield self.gateway.fetch(target="/acme/page", headers=dict(HTML, Cookie=carol))
        self.assertEqual(reply.status, 403)
        self.assertIn(b"You don&#x27;t have access", reply.body)
        self.assertIn(b"hf:carol", reply.body)
        self.assertEqual(len(self.backend.requests), before)
        # alice's session still works beside carol's.
        reply = yield self.gateway.fetch(target="/acme/echo", headers={"Cookie": alice})
        self.assertEqual(reply.status, 200)

    @defer.inlineCallbacks
    def test_a_disabled_user_is_refused_at_once_and_at_its_next_sign_in(self):
        yield self.start_gateway(HF_OAUTH_ALLOWED_ORGS="acme")
        cookie = yield self.signed_in()
        reply = yield self.gateway.fetch(target="/echo", headers={"Cookie": cookie})
        self.assertEqual(reply.status, 200)
        self.gateway.store().update_user("hf:alice", disabled=True)  # as the console does
        reply = yield self.gateway.fetch(target="/echo", headers={"Cookie": cookie})
        self.assertEqual(reply.status, 401, reply.body)
        reply = yield self.gateway.fetch(target="/echo/x", headers=dict(HTML, Cookie=cookie))
        self.assertEqual(reply.status, 303)
        self.assertTrue(reply.get("Location").startswith(LOGIN + "?next="))
        me = yield self.me(cookie)
        self.assertEqual(me.status, 401)
        walk = yield self.walk()
        self.assertEqual(walk.callback.status, 403, walk.callback.body)
        self.assertIn(b"Account disabled", walk.callback.body)
        self.assertIsNone(walk.session)
        reasons = [e["detail"].get("reason") for e in self.events("login.failed")]
        self.assertEqual(reasons, ["disabled"])
        self.assertTrue(self.gateway.store().user("hf:alice")["disabled"])  # still disabled


class LoginPageTests(HfSignInTestCase):
    @defer.inlineCallbacks
    def login_page(self, **settings):
        yield self.start_gateway(**settings)
        reply = yield self.gateway.fetch(target=LOGIN + "?next=%2Fecho", headers=HTML)
        self.assertEqual(reply.status, 200)
        return reply

    @defer.inlineCallbacks
    def test_button_shown_when_someone_may_sign_in(self):
        for setting in ("HF_OAUTH_ALLOWED_USERS", "HF_OAUTH_ALLOWED_ORGS",
                        "HF_OAUTH_ADMIN_USERS"):
            page = yield self.login_page(**{setting: "someone"})
            self.assertIn(b'id="sign-in-hf"', page.body, setting)
            self.assertIn(b'href="/_gateway/login/huggingface?next=%2Fecho"', page.body)

    @defer.inlineCallbacks
    def test_no_button_when_nobody_is_allowed(self):
        page = yield self.login_page()  # the OAuth app is set, nobody allowed
        self.assertNotIn(b"sign-in-hf", page.body)
        reply = yield self.gateway.fetch(target=HF_LOGIN, headers=HTML)
        self.assertEqual(reply.status, 404)
        self.assertIsNone(oauth_cookie(reply))
        reply = yield self.gateway.fetch(target=HF_CALLBACK + "?code=x&state=y", headers=HTML)
        self.assertEqual(reply.status, 404)
        self.assertEqual(self.provider.authorize_requests, [])

    @defer.inlineCallbacks
    def test_no_button_without_hugging_face(self):
        page = yield self.login_page(hf=False, HF_OAUTH_ALLOWED_ORGS="acme")
        self.assertNotIn(b"sign-in-hf", page.body)
        self.assertIn(b'id="username"', page.body)
        reply = yield self.gateway.fetch(target=HF_LOGIN, headers=HTML)
        self.assertEqual(reply.status, 404)

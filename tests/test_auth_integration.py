"""Access control over real sockets: a gateway with AUTH=on in front of a
TLS backend, its store a real SQLite file; sign-in by form and by token,
refresh rotation and reuse, API keys, roles per route, CSRF, throttling,
revocation from another process, the admin-only pages, and what the Space
is (and is not) told."""

import json
import os
import re
from urllib.parse import quote

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from wighaven.auth import keys
from wighaven.auth.passwords import hash_password
from wighaven.config.settings import ConfigError, load_config
from wighaven.run.service import GatewayService
from wighaven.store import SqliteStore, sqlite_path

from tests.support.backend import start_backend
from tests.support.client import fetch, raw
from tests.support.gateway import gateway_env

SECRET_KEY = "test-secret-key-0123456789abcdefghijklmnop"
ADMIN_PASSWORD = "admin-pass-S3cret!"
ALICE_PASSWORD = "alice-pass-S3cret!"
METRICS_TOKEN = "metrics-token-0123456789"
ORIGIN_HEADER = "Origin"


def header(record, name):
    return [v for n, v in record["headers"] if n.lower() == name.lower()]


def session_cookie(reply):
    """The name=value of the session cookie a reply sets (loopback: wh_session)."""
    for value in reply.get_all("Set-Cookie"):
        if value.startswith("wh_session="):
            return value.split(";", 1)[0]
    return None


def private_database(testcase):
    """(a new folder of the test's, the DATABASE_URL of a store in it)."""
    folder = os.path.abspath(testcase.mktemp())
    os.makedirs(folder)
    return folder, "sqlite:///" + os.path.join(folder, "wighaven.sqlite3")


class AuthGateway:
    """A gateway with AUTH=on in this process, its database in the test's folder."""

    def __init__(self, testcase, backend_url, **settings):
        self.testcase = testcase
        _, self.database_url = private_database(testcase)
        self.env = gateway_env(
            backend_url, AUTH="on", SECRET_KEY=SECRET_KEY, DATABASE_URL=self.database_url,
            ADMIN_USERNAME="admin", ADMIN_PASSWORD=ADMIN_PASSWORD, METRICS_TOKEN=METRICS_TOKEN,
            **settings)

    @defer.inlineCallbacks
    def start(self):
        self.config = load_config(self.env)
        self.service = GatewayService(self.config, reactor, env=self.env)
        self.service.startService()
        self.testcase.addCleanup(self.service.stopService)
        port = yield self.service.listening
        self.port = port.getHost().port
        self.origin = "http://127.0.0.1:%d" % self.port
        return self

    def store(self):
        """The same database, as another process (the console command) opens it."""
        store = SqliteStore.open(sqlite_path(self.database_url), sync=True)
        self.testcase.addCleanup(store.close)
        return store

    def add_user(self, name, password, roles=()):
        store = self.store()
        store.add_user(name, password_hash=hash_password(password), roles=roles)
        return store.user(name)

    def fetch(self, method="GET", target="/echo", headers=None, body=None):
        return fetch(self.port, method, target, headers, body)

    @defer.inlineCallbacks
    def token(self, username, password, otp=None):
        body = {"username": username, "password": password}
        if otp is not None:
            body["otp"] = otp
        reply = yield self.fetch("POST", "/_gateway/auth/token",
                                 {"Content-Type": "application/json"}, json.dumps(body).encode())
        return reply

    @defer.inlineCallbacks
    def sign_in(self, username, password, next_path="/", otp=""):
        form = "username=%s&password=%s&otp=%s&next=%s" % (
            quote(username), quote(password), quote(otp), quote(next_path))
        reply = yield self.fetch("POST", "/_gateway/login", {
            "Content-Type": "application/x-www-form-urlencoded", ORIGIN_HEADER: self.origin,
            "Accept": "text/html"}, form.encode())
        return reply


class AuthTestCase(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, origin = yield start_backend(self)
        self.gateway = yield AuthGateway(self, origin, **self.settings()).start()
        self.alice = self.gateway.add_user("alice", ALICE_PASSWORD, roles=["team"])

    def settings(self):
        return {"DASHBOARD_PATH": "/_gateway/dashboard"}

    @defer.inlineCallbacks
    def bearer(self, username="alice", password=ALICE_PASSWORD):
        reply = yield self.gateway.token(username, password)
        self.assertEqual(reply.status, 200, reply.body)
        return reply.json()


class AnonymousTests(AuthTestCase):
    @defer.inlineCallbacks
    def test_browser_is_sent_to_the_login_page_with_next(self):
        reply = yield self.gateway.fetch(target="/echo/x?a=1", headers={"Accept": "text/html"})
        self.assertEqual(reply.status, 303)
        self.assertEqual(reply.get("Location"), "/_gateway/login?next=%2Fecho%2Fx%3Fa%3D1")
        self.assertEqual(self.backend.requests, [])

    @defer.inlineCallbacks
    def test_program_gets_401_json_with_bearer_challenge(self):
        reply = yield self.gateway.fetch(target="/echo")
        self.assertEqual(reply.status, 401)
        self.assertEqual(reply.json()["error"], "unauthorized")
        self.assertTrue(reply.get("WWW-Authenticate").startswith("Bearer"))
        reply = yield self.gateway.fetch(target="/echo", headers={
            "Authorization": "Bearer wh_0123456789abcdef_" + "A" * 43})
        self.assertEqual(reply.status, 401)
        self.assertEqual(reply.json()["error"], "invalid_token")
        self.assertIn('error="invalid_token"', reply.get("WWW-Authenticate"))
        self.assertEqual(self.backend.requests, [])

    @defer.inlineCallbacks
    def test_a_refused_upload_is_not_read(self):
        # 4 MiB announced, 1 KiB sent: the answer comes without the rest.
        answer = yield raw(self.gateway.port, b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (4 << 20, b"x" * 1024))
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), answer)
        self.assertIn(b"Connection: close", answer)
        self.assertIn(b'WWW-Authenticate: Bearer realm="wighaven"', answer)
        self.assertEqual(self.backend.requests, [])

    @defer.inlineCallbacks
    def test_websocket_handshake_is_checked(self):
        reply = yield self.gateway.fetch(target="/ws", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        self.assertEqual(reply.status, 401)
        self.assertEqual(self.backend.requests, [])

    @defer.inlineCallbacks
    def test_gateway_pages_are_for_admins_and_health_says_only_status(self):
        for target in ("/_gateway/dashboard", "/_gateway/metrics", "/_gateway/live"):
            reply = yield self.gateway.fetch(target=target)
            self.assertEqual(reply.status, 401, target)
        reply = yield self.gateway.fetch(target="/gateway-health")
        self.assertEqual(reply.status, 200)
        self.assertEqual(reply.json(), {"status": "ok"})
        reply = yield self.gateway.fetch(target="/_gateway/metrics", headers={
            "Authorization": "Bearer " + METRICS_TOKEN})
        self.assertEqual(reply.status, 200)
        self.assertIn(b"wighaven_requests_total", reply.body)


class TokenTests(AuthTestCase):
    @defer.inlineCallbacks
    def test_token_works_and_never_reaches_the_space(self):
        tokens = yield self.bearer()
        self.assertEqual(tokens["token_type"], "Bearer")
        self.assertEqual(tokens["expires_in"], 900)
        reply = yield self.gateway.fetch(target="/echo", headers={
            "Authorization": "Bearer " + tokens["access_token"],
            "X-Forwarded-User": "mallory", "X-Forwarded-Groups": "admin"})
        self.assertEqual(reply.status, 200, reply.body)
        seen = reply.json()
        self.assertEqual(header(seen, "X-Forwarded-User"), ["alice"])
        self.assertEqual(header(seen, "X-Forwarded-Groups"), ["team"])
        authorization = header(seen, "Authorization")
        self.assertEqual(len(authorization), 1)  # the owner's HF token, not the gateway's JWT
        self.assertNotIn(tokens["access_token"], json.dumps(seen))
        me = yield self.gateway.fetch(target="/_gateway/auth/me", headers={
            "Authorization": "Bearer " + tokens["access_token"]})
        self.assertEqual(me.json(), {"user": "alice", "roles": ["team"], "via": "jwt"})

    @defer.inlineCallbacks
    def test_refresh_rotates_and_a_reused_token_revokes_its_family(self):
        first = yield self.bearer()

        def refresh(token):
            return self.gateway.fetch("POST", "/_gateway/auth/refresh", {
                "Content-Type": "application/json"},
                json.dumps({"refresh_token": token}).encode())

        second = yield refresh(first["refresh_token"])
        self.assertEqual(second.status, 200, second.body)
        second = second.json()
        self.assertNotEqual(second["refresh_token"], first["refresh_token"])
        reused = yield refresh(first["refresh_token"])
        self.assertEqual(reused.status, 401)
        self.assertEqual(reused.json()["error"], "invalid_grant")
        # The thief's reuse also ends the newest token of the family.
        latest = yield refresh(second["refresh_token"])
        self.assertEqual(latest.status, 401)
        kinds = [e["kind"] for e in self.gateway.store().audit_events(limit=20)]
        self.assertIn("token.reused", kinds)

    @defer.inlineCallbacks
    def test_bad_requests_get_clear_4xx(self):
        reply = yield self.gateway.fetch("POST", "/_gateway/auth/token", {
            "Content-Type": "text/plain"}, b'{"username": "a", "password": "b"}')
        self.assertEqual(reply.status, 415)
        reply = yield self.gateway.fetch("POST", "/_gateway/auth/token", {
            "Content-Type": "application/json"}, b"{not json")
        self.assertEqual(reply.status, 400)
        reply = yield self.gateway.fetch("POST", "/_gateway/auth/token", {
            "Content-Type": "application/json"}, b'{"username": 1}')
        self.assertEqual(reply.status, 400)
        reply = yield self.gateway.token("alice", "wrong password")
        self.assertEqual(reply.status, 401)
        self.assertEqual(reply.json()["error"], "invalid_grant")

    @defer.inlineCallbacks
    def test_too_many_waiting_checks_get_503_at_once(self):
        self.gateway.service.control.passwords._max_waiting = 0  # as if 64 were waiting
        reply = yield self.gateway.token("alice", ALICE_PASSWORD)
        self.assertEqual((reply.status, reply.json()["error"]), (503, "busy"))
        self.assertEqual(reply.get("Retry-After"), "1")
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD)
        self.assertEqual(reply.status, 503)
        self.assertIn(b"Try again in a moment", reply.body)
        # Nor more sign-ins under way than MAX_SIGNING_IN (each a store read first).
        from wighaven.auth.control import MAX_SIGNING_IN

        control = self.gateway.service.control
        control.passwords._max_waiting = 64
        control._signing_in = MAX_SIGNING_IN
        reply = yield self.gateway.token("alice", ALICE_PASSWORD)
        self.assertEqual(reply.status, 503)
        control._signing_in = 0
        reply = yield self.gateway.token("alice", ALICE_PASSWORD)
        self.assertEqual(reply.status, 200)

    @defer.inlineCallbacks
    def test_disabling_a_user_elsewhere_ends_its_token_at_the_next_request(self):
        tokens = yield self.bearer()
        headers = {"Authorization": "Bearer " + tokens["access_token"]}
        reply = yield self.gateway.fetch(headers=headers)
        self.assertEqual(reply.status, 200)
        self.gateway.store().update_user("alice", disabled=True)  # as the console command does
        reply = yield self.gateway.fetch(headers=headers)
        self.assertEqual(reply.status, 401)

    @defer.inlineCallbacks
    def test_failed_logins_are_throttled_and_audited(self):
        for _ in range(5):
            reply = yield self.gateway.token("alice", "wrong")
            self.assertEqual(reply.status, 401)
        for _ in range(4):  # refused without any work, and audited once
            reply = yield self.gateway.token("alice", ALICE_PASSWORD)
            self.assertEqual(reply.status, 429)
            self.assertGreaterEqual(int(reply.get("Retry-After")), 1)
        events = self.gateway.store().audit_events(limit=20)
        self.assertEqual([e["kind"] for e in events].count("login.throttled"), 1)
        failed = [e for e in events if e["kind"] == "login.failed"]
        self.assertEqual(len(failed), 5)
        self.assertEqual(failed[0]["actor"], "alice")
        self.assertEqual(failed[0]["source"], "127.0.0.1")
        self.assertNotIn("wrong", json.dumps(events))


class SessionTests(AuthTestCase):
    @defer.inlineCallbacks
    def test_form_sign_in_sets_a_session_the_space_never_sees(self):
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD, next_path="/echo/after")
        self.assertEqual(reply.status, 303, reply.body)
        self.assertEqual(reply.get("Location"), "/echo/after")
        cookie = session_cookie(reply)
        set_cookie = [v for v in reply.get_all("Set-Cookie") if v.startswith("wh_session=")][0]
        for attribute in ("HttpOnly", "SameSite=Lax", "Path=/"):
            self.assertIn(attribute, set_cookie)
        reply = yield self.gateway.fetch(target="/echo", headers={
            "Cookie": "theme=dark; " + cookie + "; lang=en"})
        self.assertEqual(reply.status, 200)
        seen = reply.json()
        self.assertEqual(header(seen, "Cookie"), ["theme=dark; lang=en"])
        self.assertEqual(header(seen, "X-Forwarded-User"), ["alice"])
        me = yield self.gateway.fetch(target="/_gateway/auth/me", headers={"Cookie": cookie})
        self.assertEqual(me.json()["via"], "session")

    @defer.inlineCallbacks
    def test_login_needs_same_origin_and_never_redirects_away(self):
        form = b"username=alice&password=" + quote(ALICE_PASSWORD).encode() + b"&next=/"
        reply = yield self.gateway.fetch("POST", "/_gateway/login", {
            "Content-Type": "application/x-www-form-urlencoded"}, form)
        self.assertEqual(reply.status, 403)
        reply = yield self.gateway.fetch("POST", "/_gateway/login", {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example"}, form)
        self.assertEqual(reply.status, 403)
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD, next_path=evil)
            self.assertEqual(reply.status, 303)
            self.assertEqual(reply.get("Location"), "/")

    @defer.inlineCallbacks
    def test_wrong_password_shows_the_form_again_with_the_error(self):
        reply = yield self.gateway.sign_in("alice", "not it", next_path="/x")
        self.assertEqual(reply.status, 401)
        self.assertIn(b"Wrong username or password", reply.body)
        self.assertNotIn(b"not it", reply.body)
        self.assertIsNone(session_cookie(reply))

    @defer.inlineCallbacks
    def test_a_second_factor_is_asked_for_and_each_code_is_good_once(self):
        import pyotp

        secret = pyotp.random_base32()
        self.gateway.store().update_user("alice", totp_secret=secret)
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD)
        self.assertEqual(reply.status, 401)
        self.assertIn(b"Enter the 6-digit code", reply.body)
        self.assertRegex(reply.body.decode(), r'<input[^>]*id="otp"[^>]*required')
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD, otp="000000")
        self.assertEqual(reply.status, 401)
        code = pyotp.TOTP(secret).now()
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD, otp=code)
        self.assertEqual(reply.status, 303)
        self.assertIsNotNone(session_cookie(reply))
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD, otp=code)
        self.assertEqual(reply.status, 401)  # seen over a shoulder: no use
        reply = yield self.gateway.token("alice", ALICE_PASSWORD)
        self.assertEqual((reply.status, reply.json()["error"]), (401, "otp_required"))

    @defer.inlineCallbacks
    def test_logout_needs_the_csrf_token_then_ends_every_session_and_token(self):
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD)
        cookie = session_cookie(reply)
        tokens = yield self.bearer()
        origin = {"Origin": self.gateway.origin}
        reply = yield self.gateway.fetch("POST", "/_gateway/logout", dict(origin, Cookie=cookie))
        self.assertEqual(reply.status, 403)
        self.assertEqual(reply.json()["error"], "csrf")
        csrf = yield self.gateway.fetch(target="/_gateway/auth/csrf", headers={"Cookie": cookie})
        self.assertEqual(csrf.status, 200)
        token = csrf.json()["csrf"]
        reply = yield self.gateway.fetch("POST", "/_gateway/logout", {
            "Cookie": cookie, "X-CSRF-Token": token, "Origin": "https://evil.example"})
        self.assertEqual(reply.status, 403)
        reply = yield self.gateway.fetch("POST", "/_gateway/logout", dict(
            origin, Cookie=cookie, **{"X-CSRF-Token": token}))
        self.assertEqual(reply.status, 204)
        # Within one request: the session and the token issued before are both over.
        reply = yield self.gateway.fetch(headers={"Cookie": cookie})
        self.assertEqual(reply.status, 401)
        reply = yield self.gateway.fetch(headers={
            "Authorization": "Bearer " + tokens["access_token"]})
        self.assertEqual(reply.status, 401)

    @defer.inlineCallbacks
    def test_a_signed_in_non_admin_is_refused_the_dashboard(self):
        reply = yield self.gateway.sign_in("alice", ALICE_PASSWORD)
        cookie = session_cookie(reply)
        reply = yield self.gateway.fetch(target="/_gateway/dashboard", headers={
            "Cookie": cookie, "Accept": "text/html"})
        self.assertEqual(reply.status, 403)
        self.assertIn(b"You don&#x27;t have access", reply.body)
        reply = yield self.gateway.sign_in("admin", ADMIN_PASSWORD)
        admin = session_cookie(reply)
        reply = yield self.gateway.fetch(target="/_gateway/dashboard", headers={
            "Cookie": admin, "Accept": "text/html"})
        self.assertEqual(reply.status, 200)
        self.assertIn(b"Signed in as <b>admin</b>", reply.body)
        # Its sign-out button posts the session's CSRF token, which signs out.
        csrf = re.search(rb'name="csrf" value="([^"]+)"', reply.body).group(1).decode()
        reply = yield self.gateway.fetch("POST", "/_gateway/logout", {
            "Cookie": admin, "Origin": self.gateway.origin,
            "Content-Type": "application/x-www-form-urlencoded"}, ("csrf=" + csrf).encode())
        self.assertEqual(reply.status, 303)
        self.assertEqual(reply.get("Location"), "/_gateway/login?signed_out=1")
        reply = yield self.gateway.fetch(target="/_gateway/dashboard", headers={
            "Cookie": admin, "Accept": "text/html"})
        self.assertEqual(reply.status, 303)


class AuditRetentionTests(AuthTestCase):
    def settings(self):
        return {"AUDIT_RETENTION_DAYS": "30"}

    @defer.inlineCallbacks
    def test_events_older_than_the_retention_go_at_the_sweep(self):
        now = reactor.seconds()
        old = SqliteStore.open(sqlite_path(self.gateway.database_url), sync=True,
                               clock=lambda: now - 31 * 86400)
        self.addCleanup(old.close)
        old.audit("login.failed", actor="ancient")
        recent = SqliteStore.open(sqlite_path(self.gateway.database_url), sync=True,
                                  clock=lambda: now - 29 * 86400)
        self.addCleanup(recent.close)
        recent.audit("login.failed", actor="recent")
        yield self.gateway.service.control.purge_expired()
        actors = {e["actor"] for e in self.gateway.store().audit_events(limit=100)}
        self.assertIn("recent", actors)
        self.assertNotIn("ancient", actors)


class ApiKeyTests(AuthTestCase):
    def new_key(self, route=None, expires_at=None):
        key_id, key, digest = keys.new_key()
        self.gateway.store().add_key(key_id, self.alice["id"], digest, route=route,
                                     expires_at=expires_at)
        return key_id, key

    @defer.inlineCallbacks
    def test_key_in_either_header_and_never_upstream(self):
        key_id, key = self.new_key()
        for headers in ({"Authorization": "Bearer " + key}, {"X-API-Key": key}):
            reply = yield self.gateway.fetch(headers=headers)
            self.assertEqual(reply.status, 200, reply.body)
            self.assertNotIn(key, reply.body.decode())
            self.assertEqual(header(reply.json(), "X-Forwarded-User"), ["alice"])
        me = yield self.gateway.fetch(target="/_gateway/auth/me", headers={"X-API-Key": key})
        self.assertEqual(me.json()["via"], "api_key")

    @defer.inlineCallbacks
    def test_revoked_expired_and_other_route_keys_are_refused(self):
        key_id, key = self.new_key()
        reply = yield self.gateway.fetch(headers={"X-API-Key": key})
        self.assertEqual(reply.status, 200)
        self.gateway.store().revoke_key(key_id)
        reply = yield self.gateway.fetch(headers={"X-API-Key": key})
        self.assertEqual(reply.status, 401)
        _, expired = self.new_key(expires_at=1.0)
        reply = yield self.gateway.fetch(headers={"X-API-Key": expired})
        self.assertEqual(reply.status, 401)
        _, scoped = self.new_key(route="elsewhere")
        reply = yield self.gateway.fetch(headers={"X-API-Key": scoped})
        self.assertEqual(reply.status, 403)
        _, scoped = self.new_key(route="default")
        reply = yield self.gateway.fetch(headers={"X-API-Key": scoped})
        self.assertEqual(reply.status, 200)

    @defer.inlineCallbacks
    def test_last_used_is_written(self):
        key_id, key = self.new_key()
        yield self.gateway.fetch(headers={"X-API-Key": key})
        yield self.gateway.service.control.flush_key_uses()
        [listed] = [k for k in self.gateway.store().keys() if k["id"] == key_id]
        self.assertIsNotNone(listed["last_used_at"])


class RouteAccessTests(unittest.TestCase):
    """Each route's `access` from the config file."""

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        _, _, origin = yield start_backend(self)
        path = os.path.abspath(self.mktemp()) + ".toml"
        routes = [("open", "public"), ("members", "signed_in"), ("team", ["role:team"]),
                  ("bob", ["user:bob"]), ("acme", ["hf_org:acme"])]
        with open(path, "w") as f:
            for name, access in routes:
                f.write('[[routes]]\nname = "%s"\npath = "/%s"\naccess = %s\n\n'
                        '[[routes.upstreams]]\nurl = "%s"\ntoken = "env:HF_TOKEN"\n\n'
                        % (name, name, json.dumps(access), origin))
        self.gateway = yield AuthGateway(self, None, WIGHAVEN_CONFIG=path,
                                         PRIVATE_BACKEND_URL=None).start()
        self.gateway.add_user("alice", ALICE_PASSWORD, roles=["team"])
        self.gateway.add_user("bob", ALICE_PASSWORD)

    @defer.inlineCallbacks
    def statuses(self, username):
        headers = {}
        if username is not None:
            reply = yield self.gateway.token(username, ALICE_PASSWORD if username != "admin"
                                             else ADMIN_PASSWORD)
            headers = {"Authorization": "Bearer " + reply.json()["access_token"]}
        out = {}
        for name in ("open", "members", "team", "bob", "acme"):
            reply = yield self.gateway.fetch(target="/%s/echo" % name, headers=headers)
            out[name] = reply.status
        return out

    @defer.inlineCallbacks
    def test_each_route_lets_in_whom_it_names(self):
        anonymous = yield self.statuses(None)
        self.assertEqual(anonymous, {"open": 200, "members": 401, "team": 401, "bob": 401,
                                     "acme": 401})
        alice = yield self.statuses("alice")
        self.assertEqual(alice, {"open": 200, "members": 200, "team": 200, "bob": 403,
                                 "acme": 403})
        bob = yield self.statuses("bob")
        self.assertEqual(bob, {"open": 200, "members": 200, "team": 403, "bob": 200,
                               "acme": 403})
        admin = yield self.statuses("admin")
        self.assertEqual(set(admin.values()), {200})


class AuthOffTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_client_identity_headers_are_dropped_even_with_auth_off(self):
        from tests.support.gateway import start_gateway

        _, _, origin = yield start_backend(self)
        _, port = yield start_gateway(self, origin)
        reply = yield fetch(port, "GET", "/echo", {
            "X-Forwarded-User": "admin", "X-Forwarded-Email": "a@b.c",
            "X-Forwarded-Groups": "admin"})
        seen = reply.json()
        for name in ("X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"):
            self.assertEqual(header(seen, name), [], name)


class StartUpTests(unittest.TestCase):
    def env(self, **settings):
        return gateway_env("https://example.org", AUTH="on", **settings)

    def test_auth_on_needs_a_long_secret_key(self):
        with self.assertRaisesRegex(ConfigError, "SECRET_KEY of at least 32"):
            load_config(self.env())
        with self.assertRaisesRegex(ConfigError, "SECRET_KEY of at least 32"):
            load_config(self.env(SECRET_KEY="short"))

    def test_bad_access_and_admin_settings_say_what_to_fix(self):
        with self.assertRaisesRegex(ConfigError, "^ACCESS "):
            load_config(self.env(SECRET_KEY=SECRET_KEY, ACCESS="everyone"))
        with self.assertRaisesRegex(ConfigError, "ADMIN_PASSWORD"):
            load_config(self.env(SECRET_KEY=SECRET_KEY, ADMIN_USERNAME="root"))
        with self.assertRaisesRegex(ConfigError, "Argon2id"):
            load_config(self.env(SECRET_KEY=SECRET_KEY, ADMIN_USERNAME="root",
                                 ADMIN_PASSWORD_HASH="plain"))

    def test_a_space_with_hf_oauth_needs_no_extra_setting(self):
        config = load_config(dict(self.env(SECRET_KEY=SECRET_KEY, HF_OAUTH_ALLOWED_ORGS="acme"),
                                  OAUTH_CLIENT_ID="cid", OAUTH_CLIENT_SECRET="csecret",
                                  OPENID_PROVIDER_URL="https://huggingface.co",
                                  OAUTH_SCOPES="openid profile email"))
        hf = config.auth.hf
        self.assertEqual((hf.client_id, hf.client_secret, hf.scopes),
                         ("cid", "csecret", "openid profile email"))
        self.assertNotIn("csecret", repr(config))
        self.assertNotIn(SECRET_KEY, repr(config))

    def test_restart_keeps_the_admin_signed_in(self):
        from wighaven.auth.control import ensure_admin

        path = os.path.abspath(self.mktemp()) + ".sqlite3"
        config = load_config(self.env(SECRET_KEY=SECRET_KEY, ADMIN_USERNAME="root",
                                      ADMIN_PASSWORD=ADMIN_PASSWORD,
                                      DATABASE_URL="sqlite:///" + path))
        store = SqliteStore.open(path, sync=True)
        self.addCleanup(store.close)
        ensure_admin(store, config.auth)
        first = store.user("root")
        self.assertEqual(first["roles"], ["admin"])
        ensure_admin(store, config.auth)
        self.assertEqual(store.user("root")["token_version"], first["token_version"])
        store.update_user("root", disabled=True, roles=[])
        ensure_admin(store, config.auth)
        again = store.user("root")
        self.assertEqual((again["disabled"], again["roles"]), (False, ["admin"]))


class WorkersTests(unittest.TestCase):
    """With WORKERS=2, both workers share the store: a change made by another
    process (the console command) holds in each at its next request."""

    timeout = 90

    @defer.inlineCallbacks
    def test_a_disabled_user_is_out_in_every_worker_at_once(self):
        from tests.support.gateway import GatewayProcess
        from tests.support.waiting import wait_until

        _, _, origin = yield start_backend(self)
        folder, database_url = private_database(self)
        gateway = GatewayProcess(
            origin, os.path.join(folder, "gateway.log"), args=["--workers", "2"], AUTH="on",
            SECRET_KEY=SECRET_KEY, DATABASE_URL=database_url, ADMIN_USERNAME="admin",
            ADMIN_PASSWORD=ADMIN_PASSWORD)
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)
        # Each worker made sure of the admin at its start; one of them made it.
        yield wait_until(lambda: gateway.output().count("access control: AUTH on") == 2,
                         timeout=20)
        store = SqliteStore.open(sqlite_path(database_url), sync=True)
        self.addCleanup(store.close)
        self.assertEqual([u["username"] for u in store.users()], ["admin"])
        reply = yield fetch(gateway.port, "POST", "/_gateway/auth/token", {
            "Content-Type": "application/json"},
            json.dumps({"username": "admin", "password": ADMIN_PASSWORD}).encode())
        self.assertEqual(reply.status, 200, reply.body)
        bearer = {"Authorization": "Bearer " + reply.json()["access_token"]}

        def workers_answering(status):
            # A request id starts with its process's own random prefix (12 hex digits).
            return set(re.findall(r"GET /landed %d .* ([0-9a-f]{12})[0-9a-f]{12}$" % status,
                                  gateway.output(), re.M))

        @defer.inlineCallbacks
        def until_both_workers_answered(status):
            # Each request on a new connection, until each worker has taken some (bounded).
            for _ in range(300):
                reply = yield fetch(gateway.port, "GET", "/landed", bearer)
                self.assertEqual(reply.status, status)
                if len(workers_answering(status)) == 2:
                    return
            self.fail("one worker took every connection:\n" + gateway.output()[-3000:])

        yield until_both_workers_answered(200)
        store.update_user("admin", disabled=True)
        # From the first request after the change on, in either worker: refused.
        yield until_both_workers_answered(401)


class WebSocketSessionTests(unittest.TestCase):
    """A page's WebSocket (Streamlit's, say) carries the session cookie: with it the
    handshake passes, and the Space sees the user but not the cookie."""

    timeout = 60

    @defer.inlineCallbacks
    def test_a_signed_in_socket_passes_and_an_anonymous_one_does_not(self):
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        from tests.support.gateway import TOKEN
        from tests.support.ws_backend import WebSocketBackend

        space = WebSocketBackend(TOKEN)
        self.addCleanup(space.stop)
        gateway = yield AuthGateway(self, space.origin).start()
        gateway.add_user("alice", ALICE_PASSWORD)
        reply = yield gateway.sign_in("alice", ALICE_PASSWORD)
        cookie = session_cookie(reply)
        url = "ws://127.0.0.1:%d/echo" % gateway.port

        def talk(headers):
            with connect(url, additional_headers=headers, open_timeout=10) as ws:
                ws.send("through the gate")
                return ws.recv(timeout=5)

        said = yield deferToThread(talk, {"Cookie": "theme=dark; " + cookie})
        self.assertEqual(said, "through the gate")
        [handshake] = space.handshakes
        seen = {name.lower(): value for name, value in handshake}
        self.assertEqual(seen["x-forwarded-user"], "alice")
        self.assertEqual(seen["cookie"], "theme=dark")
        refused = yield deferToThread(lambda: self.assertRaises(InvalidStatus, talk, {}))
        self.assertEqual(refused.response.status_code, 401)
        self.assertEqual(len(space.handshakes), 1)  # the refused one never reached the Space

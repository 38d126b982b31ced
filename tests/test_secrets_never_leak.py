"""No secret leaks: a real `twistd -n wighaven` with AUTH=on, LOG_LEVEL=debug
and LOG_BODIES=full (the most it ever writes), driven through every
access-control endpoint (sign-in by form and token, wrong passwords, TOTP,
refresh and its reuse, API keys, CSRF, sign-out, the admin pages, metrics,
Sign in with Hugging Face, bad input), and the console command beside it.
Then every line the gateway logged, every response it gave, every request
the Space got and the database file itself are searched for every secret: passwords, SECRET_KEY,
METRICS_TOKEN, the owner's HF token, the OAuth client secret, TOTP secrets,
API keys' secrets, refresh tokens, access tokens and session cookies.

Tokens and keys legitimately appear in the one answer that hands them out
(and a TOTP secret in the console command's one enrolment line); nowhere
else."""

import http.client
import io
import json
import os
from urllib.parse import parse_qs, quote, urlsplit

import pyotp
from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from wighaven import cli
from wighaven.store import SqliteStore, sqlite_path

from tests.support.backend import start_backend
from tests.support.gateway import TOKEN, GatewayProcess, free_port
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, start_provider
from tests.test_auth_integration import (
    ADMIN_PASSWORD, ALICE_PASSWORD, METRICS_TOKEN, SECRET_KEY, private_database,
)

BOB_PASSWORD = "bob-pass-Qw3rty!!"
WRONG_PASSWORD = "wrong-pass-Zx9!!"


class Recorder:
    """A blocking HTTP client (run in a thread) that keeps every answer it got."""

    def __init__(self, port):
        self.port = port
        self.answers = []  # (what was asked, status, headers, body)

    def __call__(self, method, target, headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        try:
            conn.request(method, target, body=body, headers=headers or {})
            reply = conn.getresponse()
            data = reply.read()
        finally:
            conn.close()
        self.answers.append(("%s %s" % (method, target), reply.status, reply.getheaders(), data))
        headers = {}
        for name, value in reply.getheaders():
            headers.setdefault(name.lower(), []).append(value)
        return reply.status, headers, data

    def text_of(self, index):
        asked, status, headers, body = self.answers[index]
        return "\n".join("%s: %s" % h for h in headers) + "\n" + body.decode("utf-8", "replace")


class SecretsNeverLeakTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_no_secret_in_any_log_line_response_or_database_byte(self):
        space, _, backend = yield start_backend(self)
        folder, database_url = private_database(self)
        # The provider must know the gateway's callback before the gateway starts.
        port = free_port()
        callback = "http://127.0.0.1:%d/_gateway/login/huggingface/callback" % port
        provider = yield start_provider(self, redirect_uris=(callback,))
        gateway = GatewayProcess(
            backend, os.path.join(folder, "gateway.log"), port=port, AUTH="on",
            SECRET_KEY=SECRET_KEY, DATABASE_URL=database_url, ADMIN_USERNAME="admin",
            ADMIN_PASSWORD=ADMIN_PASSWORD, METRICS_TOKEN=METRICS_TOKEN, LOG_LEVEL="debug",
            LOG_BODIES="full", DASHBOARD_PATH="/_gateway/dashboard",
            HF_OAUTH_CLIENT_ID=CLIENT_ID, HF_OAUTH_CLIENT_SECRET=CLIENT_SECRET,
            HF_OAUTH_ALLOWED_ORGS="acme", HF_OAUTH_PROVIDER_URL=provider.origin)
        self.addCleanup(gateway.stop)
        yield deferToThread(gateway.wait_ready)

        console_out = io.StringIO()

        def console(*argv, stdin=""):
            code = cli.main(list(argv), env={"DATABASE_URL": database_url},
                            stdin=io.StringIO(stdin), stdout=console_out, stderr=console_out)
            self.assertEqual(code, 0, console_out.getvalue())

        console("users", "add", "alice", "--role", "team", "--password-stdin",
                stdin=ALICE_PASSWORD + "\n")
        console("users", "add", "bob", "--password-stdin", stdin=BOB_PASSWORD + "\n")
        before = len(console_out.getvalue())
        console("users", "totp", "bob")
        totp_secret = _after(console_out.getvalue()[before:], "secret: ")
        before = len(console_out.getvalue())
        console("keys", "create", "--user", "alice")
        api_key = console_out.getvalue()[before:].splitlines()[0].strip()
        console("users", "list")
        console("keys", "list")

        ask = Recorder(port)
        secrets = yield deferToThread(self.drive, ask, port, api_key, totp_secret)
        yield deferToThread(gateway.stop)

        fixed = {
            "ADMIN_PASSWORD": ADMIN_PASSWORD, "alice's password": ALICE_PASSWORD,
            "bob's password": BOB_PASSWORD, "a wrong password": WRONG_PASSWORD,
            "SECRET_KEY": SECRET_KEY, "METRICS_TOKEN": METRICS_TOKEN, "HF_TOKEN": TOKEN,
            "the OAuth client secret": CLIENT_SECRET, "the TOTP secret": totp_secret,
            # wh_<id>_<secret>: the secret itself may hold "_", so split from the left.
            "the API key's secret": api_key.split("_", 2)[2],
        }
        handed_out = dict(secrets["handed_out"])
        everything = dict(fixed, **handed_out)
        log = gateway.output()
        self.assertIn("access control: AUTH on", log)  # it is the gateway's log indeed
        self.assertIn("exchange ", log)  # with LOG_BODIES=full: headers and bodies logged
        for name, secret in everything.items():
            self.assertNotIn(secret, log, "%s in the gateway's log" % name)
        # Every answer: none holds a fixed secret; each handed-out one only where handed out.
        for index, (asked, _, _, _) in enumerate(ask.answers):
            text = ask.text_of(index)
            for name, secret in fixed.items():
                self.assertNotIn(secret, text, "%s in the answer to %s" % (name, asked))
            for name, secret in handed_out.items():
                if secrets["where"][name] != index:
                    self.assertNotIn(secret, text, "%s in the answer to %s" % (name, asked))
        # The Space got the owner's token, and none of the gateway's credentials.
        upstream = json.dumps([r["headers"] for r in space.requests])
        self.assertIn(TOKEN, upstream)
        for name, secret in dict(handed_out, **{"the API key": api_key}).items():
            self.assertNotIn(secret, upstream, "%s reached the Space" % name)
        # The console command shows a key and a TOTP secret once, at creation.
        console_text = console_out.getvalue()
        for name in ("alice's password", "bob's password"):
            self.assertNotIn(fixed[name], console_text)
        self.assertEqual(console_text.count(api_key), 1)
        self.assertEqual(console_text.count(totp_secret), 2)  # the secret line, the URI line
        # The database keeps hashes, never the values (TOTP secrets must be kept to check codes).
        store = SqliteStore.open(sqlite_path(database_url), sync=True)
        store.close()
        raw = b""
        for suffix in ("", "-wal"):
            path = sqlite_path(database_url) + suffix
            if os.path.exists(path):
                with open(path, "rb") as f:
                    raw += f.read()
        for name, secret in everything.items():
            if name == "the TOTP secret":
                continue
            self.assertNotIn(secret.encode(), raw, "%s in the database file" % name)
        audit = json.dumps(SqliteStore.open(sqlite_path(database_url), sync=True)
                           .audit_events(limit=500))
        self.assertIn("login.failed", audit)
        for name, secret in everything.items():
            self.assertNotIn(secret, audit, "%s in the audit trail" % name)

    def drive(self, ask, port, api_key, totp_secret):
        """Every endpoint, as a browser and as programs would; the secrets handed out."""
        origin = "http://127.0.0.1:%d" % port
        form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}
        as_json = {"Content-Type": "application/json"}
        handed_out, where = {}, {}

        def keep(name, value):
            handed_out[name] = value
            where[name] = len(ask.answers) - 1

        def login_form(username, password, otp=""):
            return ("username=%s&password=%s&otp=%s&next=/echo" % (
                quote(username), quote(password), quote(otp))).encode()

        ask("GET", "/landed", {"Accept": "text/html"})
        ask("GET", "/_gateway/login?next=/echo")
        ask("POST", "/_gateway/login", form, login_form("alice", WRONG_PASSWORD))
        ask("POST", "/_gateway/login", {"Content-Type": "application/x-www-form-urlencoded"},
            login_form("alice", ALICE_PASSWORD))  # no Origin: refused
        status, headers, _ = ask("POST", "/_gateway/login", form, login_form("alice",
                                                                            ALICE_PASSWORD))
        assert status == 303, status
        cookie = _cookie(headers)
        keep("alice's session cookie", cookie.split("=", 1)[1])
        ask("GET", "/landed", {"Cookie": cookie + "; theme=dark"})
        ask("POST", "/upload", {"Cookie": cookie, "Content-Type": "text/plain"}, b"a body")
        ask("GET", "/_gateway/auth/me", {"Cookie": cookie})
        ask("POST", "/_gateway/logout", {"Cookie": cookie, "Origin": origin})  # no CSRF: 403
        _, _, body = ask("GET", "/_gateway/auth/csrf", {"Cookie": cookie})
        csrf = json.loads(body)["csrf"]
        keep("alice's CSRF token", csrf)
        # bob has a second factor: without it, with a wrong one, with a good one.
        ask("POST", "/_gateway/auth/token", as_json,
            json.dumps({"username": "bob", "password": BOB_PASSWORD}).encode())
        ask("POST", "/_gateway/auth/token", as_json,
            json.dumps({"username": "bob", "password": BOB_PASSWORD, "otp": "000000"}).encode())
        code = pyotp.TOTP(totp_secret).now()
        status, _, body = ask("POST", "/_gateway/auth/token", as_json, json.dumps(
            {"username": "bob", "password": BOB_PASSWORD, "otp": code}).encode())
        assert status == 200, body
        tokens = json.loads(body)
        keep("bob's access token", tokens["access_token"])
        handed_out["bob's refresh token"] = tokens["refresh_token"]
        where["bob's refresh token"] = where["bob's access token"]
        bearer = {"Authorization": "Bearer " + tokens["access_token"]}
        ask("GET", "/landed", bearer)
        ask("GET", "/_gateway/dashboard", dict(bearer, Accept="text/html"))  # bob: no admin
        status, _, body = ask("POST", "/_gateway/auth/refresh", as_json,
                              json.dumps({"refresh_token": tokens["refresh_token"]}).encode())
        assert status == 200, body
        rotated = json.loads(body)
        keep("bob's second access token", rotated["access_token"])
        handed_out["bob's second refresh token"] = rotated["refresh_token"]
        where["bob's second refresh token"] = where["bob's second access token"]
        ask("POST", "/_gateway/auth/refresh", as_json,  # reused: the family is revoked
            json.dumps({"refresh_token": tokens["refresh_token"]}).encode())
        ask("POST", "/_gateway/auth/token", {"Content-Type": "text/plain"}, b"{}")
        ask("POST", "/_gateway/auth/token", as_json, b"{broken")
        for header in ({"Authorization": "Bearer " + api_key}, {"X-API-Key": api_key}):
            ask("GET", "/landed", header)
        ask("GET", "/landed", {"X-API-Key": api_key[:-2] + "xx"})
        ask("GET", "/_gateway/metrics", {"Authorization": "Bearer " + METRICS_TOKEN})
        ask("GET", "/_gateway/metrics", {"Authorization": "Bearer " + METRICS_TOKEN[:-1]})
        status, headers, _ = ask("POST", "/_gateway/login", form,
                                 login_form("admin", ADMIN_PASSWORD))
        admin_cookie = _cookie(headers)
        keep("the admin's session cookie", admin_cookie.split("=", 1)[1])
        ask("GET", "/_gateway/dashboard", {"Cookie": admin_cookie, "Accept": "text/html"})
        ask("GET", "/_gateway/metrics", {"Cookie": admin_cookie})
        ask("GET", "/gateway-health")
        # Sign in with Hugging Face, the redirects followed by hand.
        status, headers, _ = ask("GET", "/_gateway/login/huggingface?next=/echo")
        assert status == 302, status
        oauth_cookie = _cookie(headers, "wh_oauth=")
        keep("the OAuth state cookie", oauth_cookie.split("=", 1)[1])
        authorize = urlsplit(headers["location"][0])
        conn = http.client.HTTPConnection(authorize.hostname, authorize.port, timeout=20)
        conn.request("GET", authorize.path + "?" + authorize.query)
        back = conn.getresponse().getheader("Location")
        conn.close()
        back = urlsplit(back)
        query = parse_qs(back.query)
        status, headers, body = ask("GET", back.path + "?" + back.query, {"Cookie": oauth_cookie})
        assert status == 303, body
        hf_cookie = _cookie(headers)
        keep("the Hugging Face sign-in's session cookie", hf_cookie.split("=", 1)[1])
        handed_out["the authorization code"] = query["code"][0]
        where["the authorization code"] = -1
        ask("GET", "/_gateway/auth/me", {"Cookie": hf_cookie})
        ask("POST", "/_gateway/logout", {"Cookie": cookie, "Origin": origin,
                                         "X-CSRF-Token": csrf})
        ask("GET", "/landed", {"Cookie": cookie})
        return {"handed_out": handed_out, "where": where}


def _cookie(headers, prefix="wh_session="):
    """name=value of the cookie a reply sets (on loopback http: the wh_ names)."""
    [value] = [c for c in headers.get("set-cookie", []) if c.startswith(prefix)]
    return value.split(";", 1)[0]


def _after(text, marker):
    for line in text.splitlines():
        if line.startswith(marker):
            return line[len(marker):].strip()
    raise AssertionError("no %r in %r" % (marker, text))

"""Access control in a real browser: headless Chromium (Debian's
/usr/bin/chromium driven by Playwright, as the other browser tests) in
front of a gateway with AUTH=on (in this process, its store a real SQLite
file) and a real Gradio app behind a token-checking nginx TLS front:

    Chromium -> gateway (AUTH=on) -> nginx front (https, the owner's token) -> Gradio

  - a local user: the Space's URL lands on the sign-in page, a wrong
    password shows the error, signing in goes back to the Space whose UI
    then works; the session cookie is HttpOnly; signing out (fetch() from
    the page with the CSRF token) sends the next reload to the sign-in page;
  - Sign in with Hugging Face against the fake OpenID provider
    (tests/support/oidc_provider.py), which redirects straight back;
  - a signed-in user refused a route (access ["role:team"]) sees the 403
    page, and its Sign out button works.

Playwright's sync API runs in a thread (deferToThread) while the reactor
serves the gateway and the provider. The Gradio app (seconds to start) is
started on first use, shared by the tests of this module and stopped when
the run ends. Screenshots go to test-artifacts/.
"""

import atexit
import json
import os
import shutil
import tempfile
import threading
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.apps import PrivateGradioReplica
from tests.support.gateway import TOKEN
from tests.support.oidc_provider import CLIENT_ID, CLIENT_SECRET, start_provider
from tests.test_apps_integration import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.test_auth_integration import ADMIN_PASSWORD, ALICE_PASSWORD, AuthGateway
from tests.test_routes_apps_integration import text_file, use_gradio_page, wait_for_value

TIMEOUT = 60  # seconds any one page load or wait in the browser may take
LOGIN = "/_gateway/login"
HF_CALLBACK = "/_gateway/login/huggingface/callback"
REPLICA = "private-space"  # what the app calls itself in its answers
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}

_space = []  # the one Gradio app of this module, once started
_space_lock = threading.Lock()


def _stop_space():
    for space in _space:
        space.stop()
        shutil.rmtree(space.dir, ignore_errors=True)


atexit.register(_stop_space)


def gradio_space():
    """The Gradio app behind its front (demanding TOKEN, the gateway's HF_TOKEN)."""
    with _space_lock:
        if not _space:
            _space.append(PrivateGradioReplica(TOKEN, env={
                "REPLICA_NAME": REPLICA, "FRONT_TOKEN": TOKEN}))
        return _space[0]


def shot(page, name):
    """Screenshot the page into test-artifacts/C{name}."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, name)
    page.screenshot(path=path, full_page=True)
    return path


def in_chromium(actions):
    """
    Run C{actions(context)} in a fresh headless Chromium (its own profile),
    off the reactor thread; a Deferred firing with what it returned.
    """
    def run():
        from playwright.sync_api import sync_playwright

        profile = tempfile.mkdtemp(prefix="wighaven-chromium-")
        try:
            with sync_playwright() as p:
                context = p.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                    viewport=DESKTOP)
                try:
                    context.set_default_timeout(TIMEOUT * 1000)
                    context.set_default_navigation_timeout(TIMEOUT * 1000)
                    return actions(context)
                finally:
                    context.close()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    return deferToThread(run)


def on_login_page(page, origin):
    """Is C{page} on the gateway's sign-in page (with its form)?"""
    page.wait_for_url(lambda url: url.startswith(origin + LOGIN))
    page.locator("#username").wait_for()
    return urlsplit(page.url).path == LOGIN


def sign_in(page, username, password):
    page.locator("#username").fill(username)
    page.locator("#password").fill(password)
    page.locator("#sign-in").click()


FETCH_JSON = """async (path) => {
  const r = await fetch(path, {headers: {"Accept": "application/json"}});
  return {status: r.status, body: await r.text()};
}"""

SIGN_OUT = """async () => {
  const c = await fetch("/_gateway/auth/csrf");
  if (c.status !== 200) return {step: "csrf", status: c.status, body: await c.text()};
  const token = (await c.json()).csrf;
  const r = await fetch("/_gateway/logout", {method: "POST", headers: {"X-CSRF-Token": token}});
  return {step: "logout", status: r.status, body: await r.text()};
}"""


def fetch_json(page, path):
    answer = page.evaluate(FETCH_JSON, path)
    return answer["status"], (json.loads(answer["body"]) if answer["body"] else None)


def say(page, word):
    """The replica app's whoami with C{word}: what it answered."""
    page.locator("#text textarea").wait_for()
    page.locator("#text textarea").fill(word)
    page.locator("#whoami").click()
    return wait_for_value(page.locator("#said textarea"),
                          lambda v: v.endswith(" says " + word), timeout=TIMEOUT)[-1]


class BrowserTestCase(unittest.TestCase):
    """The Gradio app, the fake provider, and a gateway with AUTH=on in front."""

    timeout = 400  # the first test waits for Gradio to start (90 s at most)

    @defer.inlineCallbacks
    def setUp(self):
        self.space = yield deferToThread(gradio_space)
        self.provider = yield start_provider(self)
        settings = {
            "HF_OAUTH_CLIENT_ID": CLIENT_ID, "HF_OAUTH_CLIENT_SECRET": CLIENT_SECRET,
            "HF_OAUTH_PROVIDER_URL": self.provider.origin, "HF_OAUTH_ALLOWED_ORGS": "acme",
            "DASHBOARD_PATH": "/_gateway/dashboard",
        }
        settings.update(self.settings())
        backend = None if "WIGHAVEN_CONFIG" in settings else self.space.origin
        self.gateway = yield AuthGateway(self, backend, **settings).start()
        self.origin = self.gateway.origin
        self.provider.redirect_uris = (self.origin + HF_CALLBACK,)
        self.gateway.add_user("alice", ALICE_PASSWORD)

    def settings(self):
        return {}


class PasswordSignInTests(BrowserTestCase):
    @defer.inlineCallbacks
    def test_sign_in_use_the_space_sign_out(self):
        origin = self.origin
        upload = text_file("behind the gate")

        def actions(context):
            out = {}
            page = context.new_page()
            page.goto(origin + "/", wait_until="domcontentloaded")
            out["landed"] = on_login_page(page, origin)
            out["login_url"] = page.url
            out["hf_button"] = page.locator("#sign-in-hf").is_visible()
            out["focused"] = page.evaluate("document.activeElement && document.activeElement.id")
            shot(page, "auth-login.png")
            page.set_viewport_size(PHONE)
            out["phone_overflow"] = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            out["phone_button_width"] = page.locator("#sign-in").bounding_box()["width"]
            shot(page, "auth-login-phone.png")
            page.set_viewport_size(DESKTOP)

            sign_in(page, "alice", "not the password")
            error = page.locator("#login-error")
            error.wait_for()
            out["error"] = error.inner_text()
            out["error_url"] = page.url
            out["username_kept"] = page.locator("#username").input_value()
            out["password_kept"] = page.locator("#password").input_value()
            shot(page, "auth-login-error.png")

            sign_in(page, "alice", ALICE_PASSWORD)
            page.wait_for_url(origin + "/")
            out["gradio"] = use_gradio_page(page, ["hello", "again"], upload, pieces=4)
            out["document_cookie"] = page.evaluate("document.cookie")
            out["cookies"] = {c["name"]: c for c in context.cookies(origin)}
            out["me"] = fetch_json(page, "/_gateway/auth/me")
            shot(page, "auth-signed-in-space.png")

            out["sign_out"] = page.evaluate(SIGN_OUT)
            out["me_after"] = fetch_json(page, "/_gateway/auth/me")[0]
            page.reload(wait_until="domcontentloaded")
            out["back_to_login"] = on_login_page(page, origin)
            out["reload_url"] = page.url
            out["cookies_after"] = [c["name"] for c in context.cookies(origin)]
            return out

        out = yield in_chromium(actions)
        self.assertTrue(out["landed"], out)
        self.assertEqual(out["login_url"], origin + LOGIN + "?next=%2F")
        self.assertTrue(out["hf_button"])
        self.assertEqual(out["focused"], "username")
        self.assertLessEqual(out["phone_overflow"], 0, "the phone layout scrolls sideways")
        self.assertLessEqual(out["phone_button_width"], PHONE["width"])
        self.assertEqual(out["error"].strip(), "Wrong username or password.")
        self.assertEqual(out["username_kept"], "alice")
        self.assertEqual(out["password_kept"], "")

        said = out["gradio"]["said"]
        self.assertEqual(said, ["%s says hello" % REPLICA, "%s says again" % REPLICA])
        self.assertEqual(out["gradio"]["pieces"][-1], "%s piece 3" % REPLICA)
        self.assertEqual(out["gradio"]["content"], "%s read: behind the gate" % REPLICA)

        # The session cookie: HttpOnly (the page's scripts cannot read it), Lax, no Secure
        # (plain-http loopback).
        cookie = out["cookies"]["wh_session"]
        self.assertTrue(cookie["httpOnly"], cookie)
        self.assertEqual(cookie["sameSite"], "Lax")
        self.assertFalse(cookie["secure"])
        self.assertNotIn("wh_session", out["document_cookie"])
        self.assertEqual(out["me"], (200, {"user": "alice", "roles": [], "via": "session"}))

        self.assertEqual(out["sign_out"]["step"], "logout", out["sign_out"])
        self.assertEqual(out["sign_out"]["status"], 204, out["sign_out"])
        self.assertEqual(out["me_after"], 401)
        self.assertTrue(out["back_to_login"], out)
        self.assertEqual(out["reload_url"], origin + LOGIN + "?next=%2F")
        self.assertNotIn("wh_session", out["cookies_after"])
        kinds = [e["kind"] for e in self.gateway.store().audit_events(limit=20)]
        for kind in ("login.failed", "login.succeeded", "logout"):
            self.assertIn(kind, kinds)


    @defer.inlineCallbacks
    def test_the_sign_in_form_as_served(self):
        """The sign-in form as the gateway serves it: Chromium sends its real Origin."""
        origin = self.origin

        def actions(context):
            page = context.new_page()
            sent = []
            page.on("request", lambda r: sent.append(r.all_headers().get("origin"))
                    if r.method == "POST" else None)
            page.goto(origin + "/", wait_until="domcontentloaded")
            on_login_page(page, origin)
            with page.expect_navigation() as navigation:
                sign_in(page, "alice", ALICE_PASSWORD)
            page.wait_for_load_state("domcontentloaded")
            answer = navigation.value
            shot(page, "auth-login-as-served.png")
            return {"status": answer.status if answer else None, "url": page.url,
                    "origins": sent}

        out = yield in_chromium(actions)
        self.assertEqual(out["url"], origin + "/", out)  # back on the Space
        # The page's Referrer-Policy (same-origin) lets Chromium say where the form is from.
        self.assertEqual(out["origins"], [origin], out)

    @defer.inlineCallbacks
    def test_an_admin_signs_out_from_the_dashboard(self):
        """The dashboard (Referrer-Policy no-referrer: its form posts Origin: null) signs out
        by its button; Sec-Fetch-Site vouches for it."""
        origin = self.origin

        def actions(context):
            page = context.new_page()
            page.goto(origin + "/_gateway/dashboard", wait_until="domcontentloaded")
            on_login_page(page, origin)
            sign_in(page, "admin", ADMIN_PASSWORD)
            page.wait_for_url(origin + "/_gateway/dashboard")
            who = page.locator(".who").inner_text()
            shot(page, "auth-dashboard-admin.png")
            page.locator("#sign-out").click()
            page.wait_for_url(lambda url: url.startswith(origin + LOGIN))
            notice = page.locator("body").inner_text()
            page.goto(origin + "/_gateway/dashboard", wait_until="domcontentloaded")
            return {"who": who, "notice": notice, "again": on_login_page(page, origin)}

        out = yield in_chromium(actions)
        self.assertEqual(out["who"], "Signed in as admin")
        self.assertIn("You have signed out.", out["notice"])
        self.assertTrue(out["again"])


class HuggingFaceSignInTests(BrowserTestCase):
    @defer.inlineCallbacks
    def test_sign_in_with_hugging_face(self):
        origin = self.origin

        def actions(context):
            page = context.new_page()
            out = {}
            navigations = []
            page.on("framenavigated",
                    lambda frame: navigations.append(frame.url) if frame == page.main_frame
                    else None)
            page.goto(origin + "/", wait_until="domcontentloaded")
            out["landed"] = on_login_page(page, origin)
            page.locator("#sign-in-hf").click()
            page.wait_for_url(origin + "/")
            out["said"] = say(page, "hugging")
            out["me"] = fetch_json(page, "/_gateway/auth/me")
            out["document_cookie"] = page.evaluate("document.cookie")
            other = context.new_page()  # the same browser, another tab
            other.goto(origin + "/_gateway/auth/me")
            out["me_tab"] = json.loads(other.locator("body").inner_text())
            out["navigations"] = list(navigations)
            out["cookies"] = [c["name"] for c in context.cookies(origin)]
            shot(page, "auth-hf-signed-in-space.png")
            return out

        out = yield in_chromium(actions)
        self.assertTrue(out["landed"], out)
        self.assertEqual(out["said"], "%s says hugging" % REPLICA)
        self.assertEqual(out["me"], (200, {"user": "hf:alice", "roles": [],
                                           "via": "huggingface"}))
        self.assertEqual(out["me_tab"]["via"], "huggingface")
        self.assertNotIn("wh_session", out["document_cookie"])
        self.assertIn("wh_session", out["cookies"])
        self.assertNotIn("wh_oauth", out["cookies"])  # used once, then cleared
        # The browser went through the provider and back to the Space.
        self.assertEqual(len(self.provider.authorize_requests), 1)
        self.assertEqual(self.provider.authorize_requests[0]["redirect_uri"],
                         origin + HF_CALLBACK)
        self.assertEqual(self.provider.last_token_request["outcome"], "ok")
        self.assertEqual(out["navigations"][-1], origin + "/")
        events = self.gateway.store().audit_events(limit=20, kind="login.succeeded")
        self.assertEqual([e["actor"] for e in events], ["hf:alice"])


class ForbiddenTests(BrowserTestCase):
    def settings(self):
        path = os.path.abspath(self.mktemp()) + ".toml"
        with open(path, "w") as f:
            for name, prefix, access in (("team", "/team", ["role:team"]),
                                         ("space", "/", "signed_in")):
                f.write('[[routes]]\nname = "%s"\npath = "%s"\naccess = %s\n\n'
                        '[[routes.upstreams]]\nurl = "%s"\ntoken = "env:HF_TOKEN"\n\n'
                        % (name, prefix, json.dumps(access), self.space.origin))
        return {"WIGHAVEN_CONFIG": path, "PRIVATE_BACKEND_URL": None}

    @defer.inlineCallbacks
    def test_a_route_the_user_may_not_use_shows_the_403_page(self):
        origin = self.origin

        def actions(context):
            out = {}
            page = context.new_page()
            page.goto(origin + "/team/", wait_until="domcontentloaded")
            out["landed"] = on_login_page(page, origin)
            out["login_url"] = page.url
            sign_in(page, "alice", ALICE_PASSWORD)
            page.wait_for_url(origin + "/team/")
            heading = page.locator("h1")
            heading.wait_for()
            out["heading"] = heading.inner_text()
            out["text"] = page.locator("body").inner_text()
            out["status"] = page.evaluate(
                "performance.getEntriesByType('navigation')[0].responseStatus")
            out["buttons"] = page.locator("a.btn, button").all_inner_texts()
            shot(page, "auth-forbidden.png")
            page.set_viewport_size(PHONE)
            out["phone_overflow"] = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            shot(page, "auth-forbidden-phone.png")
            page.set_viewport_size(DESKTOP)
            # The route open to every signed-in user still works.
            space = context.new_page()
            space.goto(origin + "/", wait_until="domcontentloaded")
            out["said"] = say(space, "allowed")
            space.close()
            # The page's own Sign out button (a form with the CSRF token).
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(lambda url: url.startswith(origin + LOGIN))
            out["signed_out_url"] = page.url
            out["signed_out_text"] = page.locator("body").inner_text()
            page.goto(origin + "/team/", wait_until="domcontentloaded")
            out["again"] = on_login_page(page, origin)
            return out

        out = yield in_chromium(actions)
        self.assertTrue(out["landed"], out)
        self.assertEqual(out["login_url"], origin + LOGIN + "?next=%2Fteam%2F")
        self.assertEqual(out["heading"], "You don't have access")
        self.assertEqual(out["status"], 403)
        self.assertIn("signed in as alice", out["text"])
        self.assertIn("Sign out", out["buttons"])
        self.assertIn("Sign in as someone else", out["buttons"])
        self.assertLessEqual(out["phone_overflow"], 0, "the phone layout scrolls sideways")
        self.assertEqual(out["said"], "%s says allowed" % REPLICA)
        self.assertEqual(out["signed_out_url"], origin + LOGIN + "?signed_out=1")
        self.assertIn("You have signed out.", out["signed_out_text"])
        self.assertTrue(out["again"])

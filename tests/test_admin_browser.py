"""The admin panel in a real browser: headless Chromium (Debian's, driven by
Playwright) against a gateway with AUTH=on in this process and a TLS
backend (the test CA) standing in for a private Space.

One walk-through, as an owner would go: sign in, add a Space (test its
connection first) and use it through the gateway, edit it while an event
stream through it stays open, switch it off and on, create a user with a
password and sign in as them in another browser, invite one, create an API
key (shown once), use it and revoke it, revoke a session, read the audit
trail, the logs and the requests, export and preview an import. Every
screen is photographed, at 1280 px and at 360 px, into test-artifacts/admin-*.png;
no screen may log a JavaScript error or a Content-Security-Policy
violation."""

import time

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.backend import start_backend
from tests.support.client import _fetch
from tests.support.gateway import TOKEN
from tests.test_admin_live import read_events
from tests.test_auth_browser import DESKTOP, PHONE, in_chromium, on_login_page, sign_in
from tests.test_auth_browser import shot as save_shot
from tests.test_auth_integration import ADMIN_PASSWORD, AuthGateway

ADMIN = "/_gateway/admin/"
SCREENS = ("overview", "spaces", "users", "keys", "sessions", "audit", "logs", "requests",
           "config")


def shot(page, name):
    """
    Screenshot the screen as it stands, from its top (a full-page picture
    of a scrolled page draws the sticky header in its middle): the notices
    of earlier actions (which go by themselves after 6 s, and the walk is
    faster) dismissed first, so that each picture shows its own screen.
    """
    page.evaluate("document.querySelectorAll('#notices > *').forEach((n) => n.remove());"
                  " window.scrollTo(0, 0)")
    return save_shot(page, name)


def tid(page, name):
    return page.get_by_test_id(name)


def watch_console(page, problems):
    """JavaScript errors and CSP violations; not the API's 4xx answers the walk provokes
    on purpose (Chromium logs each as "Failed to load resource")."""
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and not
            m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))


def open_screen(page, origin, screen):
    page.goto(origin + ADMIN + "#/" + screen)
    tid(page, "screen-title").wait_for()
    page.wait_for_function("() => !document.querySelector('[data-testid=loading]')")


def confirm(page):
    dialog = tid(page, "confirm-dialog")
    dialog.wait_for()
    tid(dialog, "confirm").click()
    dialog.wait_for(state="hidden")


class AdminPanelTests(unittest.TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_an_owner_walks_every_screen(self):
        backend, _, origin = yield start_backend(self)
        gateway = yield AuthGateway(self, origin, ALLOW_PRIVATE_UPSTREAMS="true").start()
        base = gateway.origin
        results = {}

        def walk(context):
            problems = []
            page = context.new_page()
            watch_console(page, problems)
            # An anonymous browser is sent to the sign-in page, and back after it.
            page.goto(base + ADMIN)
            assert on_login_page(page, base)
            sign_in(page, "admin", ADMIN_PASSWORD)
            page.wait_for_url(base + ADMIN + "**")
            tid(page, "screen-title").wait_for()
            results["who"] = tid(page, "who").inner_text()

            # Spaces: add one by URL, testing the connection first.
            open_screen(page, base, "spaces")
            shot(page, "admin-spaces-empty.png")
            tid(page, "add-space").click()
            page.locator("#sf-name").fill("chat")
            page.locator("#sf-path").fill("/chat")
            page.locator("input[name=sf-up-0-kind][value=url]").check()
            page.locator("#sf-up-0-url").fill("http://" + origin.split("://")[1])
            page.locator("#sf-up-0-token").fill(TOKEN)
            tid(page, "save").click()
            error = tid(page, "field-error-upstreams[0].url")
            error.wait_for()
            results["url_error"] = error.inner_text()
            shot(page, "admin-space-error.png")
            page.locator("#sf-up-0-url").fill(origin)
            # Edited, the field drops its error, and the banner goes with the last one.
            results["errors_after_edit"] = (tid(page, "field-error-upstreams[0].url").count(),
                                            tid(page, "form-errors").count())
            tid(page, "test-connection-0").click()
            outcome = tid(page, "test-result-0")
            page.wait_for_function(
                "() => document.querySelector('[data-testid=\"test-result-0\"]')"
                ".dataset.ok !== undefined")
            results["test_ok"] = outcome.get_attribute("data-ok")
            results["test_text"] = outcome.inner_text()
            shot(page, "admin-add-space.png")
            tid(page, "save").click()
            tid(page, "space-row-chat").wait_for()
            shot(page, "admin-spaces.png")
            return problems, page

        def use_space(context, page):
            reply = context.request.get(base + "/chat/echo")
            results["through"] = reply.status
            results["seen_token"] = any(
                ["Authorization", "Bearer " + TOKEN] == h
                for h in backend.requests[-1]["headers"])

        def edit_while_streaming(page, problems):
            page.goto(base + ADMIN + "#/spaces/chat")
            page.locator("#sf-retries").wait_for(state="attached")
            page.locator("details#sf-advanced").evaluate("d => d.open = true")
            page.locator("#sf-retries").fill("1")
            tid(page, "save").click()
            tid(page, "space-row-chat").wait_for()
            tid(page, "space-toggle-chat").click()
            confirm_if_asked(page)

        def confirm_if_asked(page):
            dialog = tid(page, "confirm-dialog")
            try:
                dialog.wait_for(timeout=3000)
            except Exception:
                return
            tid(dialog, "confirm").click()
            dialog.wait_for(state="hidden")

        def people(context, page):
            open_screen(page, base, "users")
            tid(page, "add-user").click()
            dialog = tid(page, "user-dialog")
            dialog.wait_for()
            page.locator("#nu-username").fill("bob")
            page.locator("#nu-roles").fill("team")
            page.locator("input[name=nu-method][value=password]").check()
            page.locator("#nu-password").fill("bob-pass-1234")
            tid(dialog, "save").click()
            tid(page, "user-row-bob").wait_for()
            shot(page, "admin-users.png")
            # Bob signs in in a browser of his own.
            other = context.browser.new_context() if context.browser else None
            bob = (other or context).new_page()
            bob.goto(base + "/_gateway/login")
            sign_in(bob, "bob", "bob-pass-1234")
            bob.wait_for_load_state()
            results["bob_landed"] = bob.url
            if other:
                other.close()
            # An invitation: the link is shown once.
            tid(page, "add-user").click()
            dialog = tid(page, "user-dialog")
            dialog.wait_for()
            page.locator("#nu-username").fill("carol")
            page.locator("input[name=nu-method][value=invite]").check()
            tid(dialog, "save").click()
            secret = tid(page, "secret-dialog")
            secret.wait_for()
            results["invite"] = tid(secret, "secret-once").inner_text()
            shot(page, "admin-invite.png")
            tid(secret, "close").click()
            secret.wait_for(state="detached")
            results["invite_left_in_page"] = results["invite"] in page.content()

        def keys(context, page):
            open_screen(page, base, "keys")
            shot(page, "admin-keys-empty.png")
            tid(page, "create-key").click()
            dialog = tid(page, "key-dialog")
            dialog.wait_for()
            page.locator("#ck-name").fill("ci")
            page.locator("#ck-days").fill("30")
            tid(dialog, "save").click()
            secret = tid(page, "secret-dialog")
            secret.wait_for()
            key = tid(secret, "secret-once").inner_text().strip()
            shot(page, "admin-key-once.png")
            tid(secret, "close").click()
            secret.wait_for(state="detached")
            results["key_left_in_page"] = key in page.content()
            # Without the browser's cookie: the key alone.
            results["key_used"] = _fetch(gateway.port, "GET", "/echo",
                                         {"Authorization": "Bearer " + key}, None, 10).status
            row = page.locator("tr[data-testid^=key-row-]").first
            key_id = row.get_attribute("data-testid")[len("key-row-"):]
            shot(page, "admin-key-listed.png")
            tid(page, "revoke-key-" + key_id).click()
            confirm(page)
            # Revoked is deleted: the row goes (the audit trail keeps key.revoked).
            page.wait_for_selector('tr[data-testid="key-row-%s"]' % key_id, state="detached")
            results["key_after"] = _fetch(gateway.port, "GET", "/echo",
                                          {"Authorization": "Bearer " + key}, None, 10).status

        def the_rest(page):
            for screen in SCREENS:
                open_screen(page, base, screen)
                shot(page, "admin-%s.png" % screen)
            open_screen(page, base, "audit")
            page.locator("tr[data-testid^=audit-row-]").first.wait_for()
            results["audit"] = page.locator("[data-testid=screen]").inner_text() \
                if page.locator("[data-testid=screen]").count() else page.inner_text("main")
            open_screen(page, base, "requests")
            link = page.locator("a[data-testid^=request-link-]").first
            link.click()
            tid(page, "request-headers").wait_for()
            results["request_headers"] = tid(page, "request-headers").inner_text()
            shot(page, "admin-request.png")
            open_screen(page, base, "config")
            page.wait_for_function(
                "() => document.querySelector('#config-export').value.includes('[[routes]]')")
            results["export"] = page.locator("#config-export").input_value()
            page.locator("#config-import").fill(results["export"].replace(
                'path = "/chat"', 'path = "/talk"'))
            tid(page, "preview").click()
            tid(page, "diff-changed").wait_for()
            results["diff"] = tid(page, "diff").inner_text()
            shot(page, "admin-config.png")
            page.set_viewport_size(PHONE)
            for screen in ("overview", "spaces", "users"):
                open_screen(page, base, screen)
                shot(page, "admin-phone-%s.png" % screen)
            page.set_viewport_size(DESKTOP)
            page.emulate_media(color_scheme="dark")
            open_screen(page, base, "overview")
            shot(page, "admin-dark-overview.png")

        def everything(context):
            problems, page = walk(context)
            use_space(context, page)
            stream = {}

            cookie = cookie_of(context)

            def streaming():
                try:
                    stream["events"] = read_events(gateway.port, "/chat/sse?n=20&every=0.2",
                                                   {"Cookie": cookie}, 20)
                except Exception as e:  # told by the assertion below
                    stream["error"] = repr(e)

            import threading
            reader = threading.Thread(target=streaming)
            reader.start()
            time.sleep(0.5)
            edit_while_streaming(page, problems)
            reader.join(30)
            results["stream"] = [text for _, text in stream.get("events", [])] or stream
            results["disabled"] = context.request.get(base + "/chat/echo").status
            tid(page, "space-toggle-chat").click()
            confirm_if_asked(page)
            page.wait_for_timeout(300)
            results["enabled_again"] = context.request.get(base + "/chat/echo").status
            people(context, page)
            keys(context, page)
            the_rest(page)
            results["problems"] = problems

        def cookie_of(context):
            return "; ".join("%s=%s" % (c["name"], c["value"]) for c in context.cookies())

        yield in_chromium(everything)
        self.assertEqual(results["who"].strip().endswith("admin"), True, results["who"])
        self.assertIn("https://", results["url_error"])
        self.assertEqual(results["errors_after_edit"], (0, 0))
        self.assertEqual(results["test_ok"], "true", results["test_text"])
        self.assertEqual(results["through"], 200)
        self.assertTrue(results["seen_token"])
        self.assertEqual(results["stream"], ["event %d" % i for i in range(20)])
        self.assertEqual(results["disabled"], 503)
        self.assertEqual(results["enabled_again"], 200)
        self.assertNotIn("/_gateway/login", results["bob_landed"])
        self.assertIn("/_gateway/invite?token=", results["invite"])
        self.assertFalse(results["invite_left_in_page"])
        self.assertEqual(results["key_used"], 200)
        self.assertEqual(results["key_after"], 401)
        self.assertFalse(results["key_left_in_page"])
        for kind in ("route.created", "route.updated", "user.created", "key.created",
                     "key.revoked"):
            self.assertIn(kind, results["audit"])
        self.assertIn("[redacted]", results["request_headers"])
        self.assertNotIn(TOKEN, results["export"])
        self.assertIn("chat", results["diff"])
        self.assertEqual(results["problems"], [])

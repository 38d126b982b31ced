"""Tests for L{wighaven.web.login_page}: the sign-in page (its form's exact
fields and ids, the username put back and the password never, the code
field required only when wanted, the Hugging Face button, the error and
notice banners with their roles, no form when there are no local users)
and the message pages (heading, paragraphs, link and form buttons); for
both, every argument escaped, no script, no external URL, the style sheet
inlined.
"""

import re
from html.parser import HTMLParser

from twisted.trial import unittest

from wighaven.web import login_page
from wighaven.web.login_page import (
    CONTENT_SECURITY_POLICY,
    render_login_page,
    render_message_page,
)

EVIL = '"><script>alert(1)</script><x a=\'b\' & c'
HF = "https://huggingface.co/oauth/authorize?client_id=abc&state=xyz"

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
        "source", "track", "wbr"}


class Element:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children = []
        self.text = []

    def text_content(self):
        return "".join(self.text + [c.text_content() for c in self.children])

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class Page(HTMLParser):
    """A page's element tree, and a check that it is well nested."""

    def __init__(self, body: bytes):
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.current = self.root
        self.all = []
        self.data = []
        self.feed(body.decode("utf-8"))
        self.close()
        if self.current is not self.root:
            raise AssertionError("unclosed <%s>" % self.current.tag)

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self.current)
        self.current.children.append(element)
        self.all.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag, attrs):
        element = Element(tag, dict(attrs), self.current)
        self.current.children.append(element)
        self.all.append(element)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.current.tag != tag:
            raise AssertionError("</%s> closes <%s>" % (tag, self.current.tag))
        self.current = self.current.parent

    def handle_data(self, data):
        self.current.text.append(data)
        self.data.append(data)

    def find(self, tag=None, **attrs):
        return [e for e in self.all if (tag is None or e.tag == tag)
                and all(e.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def one(self, tag=None, **attrs):
        found = self.find(tag, **attrs)
        if len(found) != 1:
            raise AssertionError("%d <%s %r>, not one" % (len(found), tag, attrs))
        return found[0]

    def by_id(self, ident):
        return self.one(id=ident)


def login(**kw):
    args = dict(action="/_gateway/login", next_path="/chat/", version="1.2.3")
    args.update(kw)
    body = render_login_page(**args)
    return body, Page(body)


def message(**kw):
    args = dict(title="You don't have access", message="Ask the owner.", version="1.2.3")
    args.update(kw)
    body = render_message_page(**args)
    return body, Page(body)


class SelfContainedMixin:
    """What every page must be: a full document, no script, nothing fetched."""

    def assertSelfContained(self, body, page, allowed=()):
        self.assertIsInstance(body, bytes)
        text = body.decode("utf-8")
        self.assertTrue(text.lower().startswith("<!doctype html>"))
        self.assertEqual(page.one("html").attrs.get("lang"), "en")
        self.assertTrue(page.one("title").text_content().strip())
        self.assertEqual(page.one("meta", charset="utf-8").tag, "meta")
        self.assertIn("width=device-width", page.one("meta", name="viewport").attrs["content"])
        self.assertNotIn("<script", text.lower())
        self.assertEqual(page.find("script"), [])
        self.assertEqual(page.find("link"), [])
        self.assertEqual(page.find("img"), [])
        self.assertEqual(page.find("iframe"), [])
        for element in page.all:
            for name, value in element.attrs.items():
                self.assertFalse(name.startswith("on"), (element.tag, name))
                if name in ("src", "href", "action", "srcset", "style"):
                    value = value or ""
                    if value in allowed:
                        continue
                    self.assertNotIn("http://", value, (element.tag, name))
                    self.assertNotIn("https://", value, (element.tag, name))
                    self.assertNotIn("//", value.split("?")[0], (element.tag, name))
        # Nothing outside the allowed URLs names another origin, even in the CSS.
        stripped = text
        for url in allowed:
            stripped = stripped.replace(url.replace("&", "&amp;"), "")
        self.assertNotIn("https://", stripped)
        self.assertNotIn("http://", stripped.replace('xmlns="http://www.w3.org/2000/svg"', ""))
        self.assertNotIn("@import", text)
        self.assertNotIn("url(", text)
        # The style sheet is inlined, whole.
        style = page.one("style").text_content()
        self.assertEqual(style, login_page._STYLE)
        self.assertIn("prefers-color-scheme: light", style)
        self.assertIn(":focus-visible", style)


class LoginPageTests(SelfContainedMixin, unittest.SynchronousTestCase):

    def test_form_fields(self):
        """A POST form to the action with exactly username, password, otp and next."""
        body, page = login()
        form = page.one("form")
        self.assertEqual(form.attrs["method"], "post")
        self.assertEqual(form.attrs["action"], "/_gateway/login")
        names = sorted(e.attrs["name"] for e in page.all
                       if e.tag in ("input", "select", "textarea") and form in e.ancestors())
        self.assertEqual(names, ["next", "otp", "password", "username"])
        nxt = page.one("input", name="next")
        self.assertEqual(nxt.attrs["type"], "hidden")
        self.assertEqual(nxt.attrs["value"], "/chat/")

        user = page.by_id("username")
        self.assertEqual((user.tag, user.attrs["name"], user.attrs["type"]),
                         ("input", "username", "text"))
        self.assertEqual(user.attrs["autocomplete"], "username")
        self.assertIn("required", user.attrs)
        self.assertEqual(user.attrs["value"], "")

        password = page.by_id("password")
        self.assertEqual((password.attrs["name"], password.attrs["type"]), ("password", "password"))
        self.assertEqual(password.attrs["autocomplete"], "current-password")
        self.assertNotIn("value", password.attrs)

        otp = page.by_id("otp")
        self.assertEqual(otp.attrs["name"], "otp")
        self.assertEqual(otp.attrs["autocomplete"], "one-time-code")
        self.assertEqual(otp.attrs["inputmode"], "numeric")

        button = page.by_id("sign-in")
        self.assertEqual(button.tag, "button")
        self.assertEqual(button.attrs["type"], "submit")
        self.assertEqual(button.text_content().strip(), "Sign in")
        self.assertIn(form, button.ancestors())
        self.assertSelfContained(body, page)

    def test_labels(self):
        """Every visible field has its label; the code's says it is optional."""
        _, page = login()
        for ident in ("username", "password", "otp"):
            label = page.one("label", for_=ident)
            self.assertTrue(label.text_content().strip())
        self.assertEqual(" ".join(page.one("label", for_="otp").text_content().split()),
                         "Authentication code (if you set one up)")
        self.assertEqual(page.one("label", for_="username").text_content(), "Username")
        self.assertEqual(page.one("label", for_="password").text_content(), "Password")
        self.assertEqual(page.one("h1").text_content(), "Sign in")

    def test_otp_optional(self):
        """The code field is there but neither required nor focused by default."""
        _, page = login()
        otp = page.by_id("otp")
        self.assertNotIn("required", otp.attrs)
        self.assertNotIn("autofocus", otp.attrs)
        self.assertIn("autofocus", page.by_id("username").attrs)
        self.assertEqual(page.find(id="otp-hint"), [])

    def test_otp_wanted(self):
        """When a code is wanted the field is required, focused and has a hint."""
        _, page = login(otp_wanted=True, username="alice")
        otp = page.by_id("otp")
        self.assertIn("required", otp.attrs)
        self.assertIn("autofocus", otp.attrs)
        self.assertIn("otp-hint", otp.attrs["aria-describedby"].split())
        self.assertTrue(page.by_id("otp-hint").text_content().strip())
        self.assertNotIn("(if you set one up)", page.one("label", for_="otp").text_content())
        focused = [e.attrs.get("id") for e in page.all if "autofocus" in e.attrs]
        self.assertEqual(focused, ["otp"])

    def test_username_prefilled(self):
        """After an error the username comes back; the cursor goes to the password."""
        _, page = login(error="Wrong username or password.", username="alice")
        self.assertEqual(page.by_id("username").attrs["value"], "alice")
        self.assertNotIn("value", page.by_id("password").attrs)
        focused = [e.attrs.get("id") for e in page.all if "autofocus" in e.attrs]
        self.assertEqual(focused, ["password"])
        self.assertEqual(page.by_id("password").attrs["aria-describedby"], "login-error")

    def test_error_banner(self):
        """The error is an alert, above the form."""
        body, page = login(error="Wrong username or password.")
        banner = page.by_id("login-error")
        self.assertEqual(banner.attrs["role"], "alert")
        self.assertEqual(banner.text_content().strip(), "Wrong username or password.")
        text = body.decode("utf-8")
        self.assertLess(text.index('id="login-error"'), text.index("<form"))
        self.assertEqual(page.find(role="status"), [])

    def test_no_error_banner(self):
        _, page = login()
        self.assertEqual(page.find(id="login-error"), [])
        self.assertEqual(page.find(role="alert"), [])
        self.assertEqual(page.find(role="status"), [])

    def test_notice_banner(self):
        """A notice is a status, not an alert."""
        _, page = login(notice="You have signed out.")
        banner = page.one(role="status")
        self.assertEqual(banner.text_content().strip(), "You have signed out.")
        self.assertEqual(page.find(role="alert"), [])
        self.assertEqual(page.find(id="login-error"), [])
        self.assertNotIn("error", banner.attrs.get("class", ""))

    def test_hf_button(self):
        """With an HF URL, a link to it after an "or"; the form is still there."""
        body, page = login(hf_url=HF)
        link = page.by_id("sign-in-hf")
        self.assertEqual(link.tag, "a")
        self.assertEqual(link.attrs["href"], HF)
        self.assertEqual(link.text_content().strip(), "Sign in with Hugging Face")
        self.assertIn("btn-secondary", link.attrs["class"].split())
        self.assertEqual(len(page.find("form")), 1)
        self.assertIn("or", [d.strip() for d in page.data])
        self.assertEqual([s.attrs.get("aria-hidden") for s in link.children if s.tag == "svg"],
                         ["true"])
        self.assertSelfContained(body, page, allowed=(HF,))

    def test_no_hf_button(self):
        body, page = login()
        self.assertEqual(page.find(id="sign-in-hf"), [])
        self.assertNotIn("Hugging Face", body.decode("utf-8"))
        self.assertNotIn("or", [d.strip() for d in page.data])

    def test_hf_only(self):
        """No local users: no form, no fields, only the HF button."""
        body, page = login(password_login=False, hf_url="/_gateway/login/hf?next=%2Fchat%2F")
        self.assertEqual(page.find("form"), [])
        self.assertEqual(page.find("input"), [])
        self.assertEqual(page.find(id="sign-in"), [])
        self.assertEqual(page.by_id("sign-in-hf").attrs["href"], "/_gateway/login/hf?next=%2Fchat%2F")
        self.assertNotIn("or", [d.strip() for d in page.data])
        self.assertSelfContained(body, page)

    def test_no_way_in(self):
        """Neither a form nor HF: a page that says so, rather than a failure."""
        body, page = login(password_login=False)
        self.assertEqual(page.find("form"), [])
        self.assertEqual(page.find("a"), [])
        self.assertIn("no way of signing in", body.decode("utf-8"))

    def test_escaping(self):
        """No argument can break out of its attribute or element."""
        body, page = login(action="/_gateway/login?x=" + EVIL, next_path=EVIL, error=EVIL,
                           username=EVIL, notice=EVIL, version=EVIL,
                           hf_url="/_gateway/login/hf?next=" + EVIL)
        text = body.decode("utf-8")
        self.assertNotIn("<script", text)
        self.assertNotIn("<x ", text)
        self.assertEqual(page.find("script"), [])
        self.assertEqual(page.find("x"), [])
        self.assertEqual(page.one("form").attrs["action"], "/_gateway/login?x=" + EVIL)
        self.assertEqual(page.one("input", name="next").attrs["value"], EVIL)
        self.assertEqual(page.by_id("username").attrs["value"], EVIL)
        self.assertEqual(page.by_id("sign-in-hf").attrs["href"], "/_gateway/login/hf?next=" + EVIL)
        self.assertEqual(page.by_id("login-error").text_content().strip(), EVIL)
        self.assertEqual(page.one(role="status").text_content().strip(), EVIL)
        self.assertEqual(page.one("footer").text_content().strip(), "WigHaven Gateway " + EVIL)
        # The escaped forms, quotes included.
        self.assertIn("&quot;&gt;&lt;script&gt;", text)
        self.assertIn("&#x27;b&#x27;", text)
        self.assertIn("&amp; c", text)

    def test_next_only_in_hidden_field(self):
        """next_path goes in the hidden field and nowhere else."""
        marker = "/only-here-7f3a"
        body, page = login(next_path=marker, hf_url="/_gateway/login/hf")
        self.assertEqual(body.decode("utf-8").count(marker), 1)
        self.assertEqual(page.one("input", name="next").attrs["value"], marker)

    def test_unsafe_urls_refused(self):
        """A javascript: URL is never put in a link or a form's action."""
        for url in ("javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x",
                    "vbscript:x", "/ok\nx"):
            self.assertRaises(ValueError, render_login_page, action="/_gateway/login",
                              next_path="/", hf_url=url)
            self.assertRaises(ValueError, render_login_page, action=url, next_path="/")

    def test_footer(self):
        _, page = login(version="1.2.3")
        self.assertEqual(page.one("footer").text_content().strip(), "WigHaven Gateway 1.2.3")
        _, page = login(version="")
        self.assertEqual(page.one("footer").text_content().strip(), "WigHaven Gateway")

    def test_title_and_landmarks(self):
        _, page = login()
        self.assertEqual(page.one("title").text_content(), "Sign in \u00b7 WigHaven Gateway")
        self.assertEqual(len(page.find("main")), 1)
        self.assertEqual(len(page.find("h1")), 1)

    def test_all_combinations_well_formed(self):
        """Every combination of options renders a well-nested, self-contained page."""
        for password_login in (True, False):
            for hf in (None, "/_gateway/login/hf"):
                for otp_wanted in (False, True):
                    for error in (None, "Nope"):
                        for notice in (None, "Signed out"):
                            body, page = login(password_login=password_login, hf_url=hf,
                                               otp_wanted=otp_wanted, error=error,
                                               notice=notice, username="bob")
                            self.assertSelfContained(body, page)
                            self.assertEqual(bool(page.find("form")), password_login)
                            self.assertEqual(bool(page.find(id="sign-in-hf")), hf is not None)
                            self.assertEqual(len(page.find(role="alert")), int(bool(error)))
                            self.assertEqual(len(page.find(role="status")), int(bool(notice)))
                            ids = [e.attrs["id"] for e in page.all if "id" in e.attrs]
                            self.assertEqual(len(ids), len(set(ids)))
                            for e in page.all:
                                for ref in e.attrs.get("aria-describedby", "").split():
                                    page.by_id(ref)

    def test_csp_constant(self):
        self.assertEqual(
            CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            "form-action 'self'; frame-ancestors 'none'",
        )

    def test_inline_style_only_in_style_element(self):
        """No style attributes: all the CSS is the one inlined sheet."""
        _, page = login(hf_url="/hf", error="x", notice="y")
        self.assertEqual([e.tag for e in page.all if "style" in e.attrs], [])
        self.assertEqual(len(page.find("style")), 1)
        self.assertIn("head", [a.tag for a in page.one("style").ancestors()])


class MessagePageTests(SelfContainedMixin, unittest.SynchronousTestCase):

    def test_heading_and_message(self):
        body, page = message(status_label="403")
        self.assertEqual(page.one("h1").text_content(), "You don't have access")
        self.assertEqual(page.one("p", class_="text").text_content(), "Ask the owner.")
        self.assertEqual(page.one("title").text_content(),
                         "You don't have access \u00b7 WigHaven Gateway")
        self.assertIn("403", [e.text_content() for e in page.all if e.tag == "p"])
        self.assertEqual(page.find("form"), [])
        self.assertEqual(page.one("footer").text_content().strip(), "WigHaven Gateway 1.2.3")
        self.assertSelfContained(body, page)

    def test_paragraphs(self):
        _, page = message(message="First one.\n\nSecond\none.")
        self.assertEqual([p.text_content() for p in page.find("p", class_="text")],
                         ["First one.", "Second one."])

    def test_no_status_label(self):
        _, page = message()
        self.assertEqual([e for e in page.all if "pill" in e.attrs.get("class", "")], [])

    def test_actions(self):
        """Links as buttons, the first the primary one; post actions as forms."""
        body, page = message(
            actions=[("Sign in as someone else", "/_gateway/login?next=%2Fchat%2F"), ("Back", "/")],
            post_actions=[("Sign out", "/_gateway/logout", {"csrf": "tok123"})],
        )
        links = page.find("a")
        self.assertEqual([(a.text_content(), a.attrs["href"]) for a in links],
                         [("Sign in as someone else", "/_gateway/login?next=%2Fchat%2F"), ("Back", "/")])
        self.assertIn("btn-primary", links[0].attrs["class"].split())
        self.assertIn("btn-secondary", links[1].attrs["class"].split())
        form = page.one("form")
        self.assertEqual(form.attrs["method"], "post")
        self.assertEqual(form.attrs["action"], "/_gateway/logout")
        hidden = page.one("input", name="csrf")
        self.assertEqual((hidden.attrs["type"], hidden.attrs["value"]), ("hidden", "tok123"))
        self.assertIn(form, hidden.ancestors())
        button = page.one("button")
        self.assertEqual(button.text_content(), "Sign out")
        self.assertEqual(button.attrs["type"], "submit")
        self.assertIn("btn-secondary", button.attrs["class"].split())
        self.assertSelfContained(body, page)

    def test_post_action_alone_is_primary(self):
        _, page = message(post_actions=[("Sign out", "/_gateway/logout", {})])
        self.assertIn("btn-primary", page.one("button").attrs["class"].split())
        self.assertEqual(page.find("input"), [])

    def test_no_actions(self):
        _, page = message()
        self.assertEqual(page.find("a"), [])
        self.assertEqual(page.find("button"), [])
        self.assertEqual(page.find(class_="actions"), [])

    def test_escaping(self):
        body, page = message(
            title=EVIL, message=EVIL, status_label=EVIL, version=EVIL,
            actions=[(EVIL, "/x?" + EVIL)],
            post_actions=[(EVIL, "/y?" + EVIL, {EVIL: EVIL})],
        )
        text = body.decode("utf-8")
        self.assertNotIn("<script", text)
        self.assertNotIn("<x ", text)
        self.assertEqual(page.find("script"), [])
        self.assertEqual(page.one("h1").text_content(), EVIL)
        self.assertEqual(page.one("title").text_content(), EVIL + " \u00b7 WigHaven Gateway")
        self.assertEqual(page.one("p", class_="text").text_content(), " ".join(EVIL.split()))
        self.assertEqual(page.one("a").attrs["href"], "/x?" + EVIL)
        self.assertEqual(page.one("a").text_content(), EVIL)
        self.assertEqual(page.one("form").attrs["action"], "/y?" + EVIL)
        hidden = page.one("input")
        self.assertEqual((hidden.attrs["name"], hidden.attrs["value"]), (EVIL, EVIL))
        self.assertEqual(page.one("button").text_content(), EVIL)
        self.assertEqual(page.one("footer").text_content().strip(), "WigHaven Gateway " + EVIL)

    def test_percent_in_urls(self):
        """Percent-encoded URLs and labels with % come through untouched."""
        _, page = message(actions=[("100% sure", "/_gateway/login?next=%2Fa%20b")],
                          post_actions=[("50%", "/out?x=%25s", {"k": "%s"})])
        self.assertEqual(page.one("a").attrs["href"], "/_gateway/login?next=%2Fa%20b")
        self.assertEqual(page.one("a").text_content(), "100% sure")
        self.assertEqual(page.one("form").attrs["action"], "/out?x=%25s")
        self.assertEqual(page.one("input").attrs["value"], "%s")

    def test_unsafe_urls_refused(self):
        self.assertRaises(ValueError, render_message_page, title="t", message="m",
                          actions=[("Go", "javascript:alert(1)")])
        self.assertRaises(ValueError, render_message_page, title="t", message="m",
                          post_actions=[("Go", "javascript:alert(1)", {})])


class StyleSheetTests(unittest.SynchronousTestCase):

    def test_loaded_once(self):
        """The sheet is read at import, from the package's own file."""
        self.assertIsInstance(login_page._STYLE, str)
        self.assertGreater(len(login_page._STYLE), 1000)
        self.assertIn("prefers-color-scheme", login_page._STYLE)

    def test_system_fonts_only(self):
        self.assertNotIn("@font-face", login_page._STYLE)
        self.assertNotRegex(login_page._STYLE, re.compile(r"url\s*\("))
        self.assertIn("system-ui", login_page._STYLE)

    def test_narrow_screens(self):
        self.assertIn("@media (max-width: 30rem)", login_page._STYLE)

"""The admin panel's page at C{/_gateway/admin/}, and the invitation page at
C{/_gateway/invite}.

The panel is one static page (C{admin_ui/}: index.html, admin.css,
admin.js, vanilla JavaScript, nothing fetched from elsewhere) built on the
admin API and nothing else. It is served only to administrators, like the
API (a browser that is not signed in is sent to the sign-in page), under a
strict Content-Security-Policy: no inline script or style, no other origin.
Any path below C{/_gateway/admin/} that is not one of its files is the page
itself (the panel routes by the URL's fragment).

An invitation link (made by the API's C{POST /users/{u}/invite}) opens a
page where its person sets their password; it works once, before it
expires, and says so plainly otherwise. Setting it is same-origin only, and
an audit event.
"""

from __future__ import annotations

from importlib.resources import files

from twisted.internet import defer

from .. import __version__
from ..auth.gate import LOGIN_PATH, answer_refusal
from ..auth.passwords import Busy
from .admin_people import INVITE_PATH, MAX_PASSWORD, MIN_PASSWORD, invite_hash
from .auth_pages import PAGE_CSP, _arg
from .login_page import render_message_page, render_password_page

__all__ = ["ADMIN_PATH", "AdminPages", "ADMIN_CSP"]

ADMIN_PATH = "/_gateway/admin/"
ADMIN_CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
             b"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_ASSETS = {
    "admin.js": b"text/javascript; charset=utf-8",
    "admin.css": b"text/css; charset=utf-8",
}
_FOLDER = files(__package__).joinpath("admin_ui")


def _asset(name: str) -> bytes:
    return _FOLDER.joinpath(name).read_bytes()


class AdminPages:
    """
    @param same_origin: C{same_origin(request)}: does a form come from the gateway's origin?
    @param address_of: C{address_of(request)}: the visitor's address (for the audit).
    """

    def __init__(self, app, control, forbidden_page, same_origin, address_of):
        self._control = control
        self._forbidden_page = forbidden_page
        self._same_origin = same_origin
        self._address_of = address_of
        self._files = {}  # read at first use, then kept
        app.route(ADMIN_PATH.rstrip("/"), methods=["GET", "HEAD"])(self.to_slash)
        app.route(ADMIN_PATH, methods=["GET", "HEAD"], branch=True)(self.panel)
        app.route(INVITE_PATH, methods=["GET", "HEAD"])(self.invite_page)
        app.route(INVITE_PATH, methods=["POST"])(self.accept_invite)

    def to_slash(self, request):
        request.setResponseCode(301)
        request.setHeader(b"Location", ADMIN_PATH.encode("ascii"))
        return b""

    def panel(self, request):
        refusal = self._control.gate.admin_refusal(request)
        if refusal is not None:
            return answer_refusal(request, refusal, self._forbidden_page)
        name = request.path.decode("latin-1")[len(ADMIN_PATH):]
        content_type = _ASSETS.get(name)
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Referrer-Policy", b"same-origin")
        if content_type is not None:
            request.setHeader(b"Content-Type", content_type)
            return self._file(name)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Content-Security-Policy", ADMIN_CSP)
        request.setHeader(b"X-Frame-Options", b"DENY")
        return self._file("index.html")

    def _file(self, name: str) -> bytes:
        data = self._files.get(name)
        if data is None:
            data = self._files[name] = _asset(name)
        return data

    # Invitations.

    def _page(self, request, status: int, body: bytes) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Frame-Options", b"DENY")
        request.setHeader(b"Referrer-Policy", b"no-referrer")  # the link holds its token
        request.setHeader(b"Content-Security-Policy", PAGE_CSP)
        return body

    def _spent(self, request):
        return self._page(request, 410, render_message_page(
            title="This invitation can't be used",
            message="The link has expired or was used already. Ask the gateway's "
                    "administrator for a new one.",
            status_label="410", actions=[("Go to the sign-in page", LOGIN_PATH)],
            version=__version__))

    @staticmethod
    def _token(request) -> str:
        token = _arg(request, b"token")
        return token if 20 <= len(token) <= 100 and token.isascii() else ""

    @defer.inlineCallbacks
    def invite_page(self, request):
        token = self._token(request)
        username = (yield self._control.store.invite(invite_hash(token))) if token else None
        if username is None:
            return self._spent(request)
        return self._page(request, 200, render_password_page(
            action=INVITE_PATH, token=token, username=username, version=__version__))

    @defer.inlineCallbacks
    def accept_invite(self, request):
        if not self._same_origin(request):
            return self._page(request, 403, render_message_page(
                title="Refused", message="This form must be sent from the invitation's page.",
                status_label="403", version=__version__))
        token = self._token(request)
        store = self._control.store
        username = (yield store.invite(invite_hash(token))) if token else None
        if username is None:
            return self._spent(request)
        password, confirm = _arg(request, b"password"), _arg(request, b"confirm")
        error = None
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            error = "The password needs %d to %d characters." % (MIN_PASSWORD, MAX_PASSWORD)
        elif password != confirm:
            error = "The two passwords are not the same."
        if error is not None:
            return self._page(request, 400, render_password_page(
                action=INVITE_PATH, token=token, username=username, error=error,
                version=__version__))
        try:
            password_hash = yield self._control.passwords.hash(password)
        except Busy:
            return self._page(request, 503, render_password_page(
                action=INVITE_PATH, token=token, username=username,
                error="The gateway is busy; try again in a moment.", version=__version__))
        username = yield store.use_invite(invite_hash(token), password_hash)
        if username is None:
            return self._spent(request)
        yield self._control.audit("invite.used", username, self._address_of(request))
        return self._page(request, 200, render_message_page(
            title="Your password is set",
            message="You can sign in now as %s." % username,
            actions=[("Sign in", LOGIN_PATH)], version=__version__))

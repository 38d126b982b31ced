"""The sign-in page and the gateway's small message pages ("You don't have
access", "Signed out", "Sign-in failed"): server-rendered HTML documents
with no JavaScript at all, in the dashboard's visual language (its palette,
dark or light by C{prefers-color-scheme}, type, brand mark and focus ring).

Each page is self-contained: the style sheet (C{login.css}, beside this
module) is inlined into a C{<style>} element and the marks are inline SVG,
so the pages work under the Content-Security-Policy they are served with
(L{CONTENT_SECURITY_POLICY}) and fetch nothing from anywhere.

Every interpolated value is HTML-escaped (C{html.escape(..., quote=True)});
the URLs the caller gives (the form's action, the Hugging Face link, the
message pages' buttons) must be relative or http(s), anything else (a
C{javascript:} URL) is refused with C{ValueError}.
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import Iterable, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

__all__ = [
    "CONTENT_SECURITY_POLICY", "render_login_page", "render_message_page", "render_password_page",
]

#: The header these pages are meant to be served with.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'self'; frame-ancestors 'none'"
)

_STYLE = files(__package__).joinpath("login.css").read_text(encoding="utf-8")

# The dashboard's brand mark (wighaven.web.dashboard), a little smaller.
_LOGO = (
    '<svg width="28" height="28" viewBox="0 0 32 32" aria-hidden="true" focusable="false">'
    '<rect width="32" height="32" rx="8" fill="#2453c9"/>'
    '<path d="M7 10l3.6 12L16 12l5.4 10L25 10" fill="none" stroke="#fff" stroke-width="2.6" '
    'stroke-linecap="round" stroke-linejoin="round"/></svg>'
)

# A plain smiling face for "Sign in with Hugging Face" (no emoji, no asset).
_HF_MARK = (
    '<svg width="22" height="22" viewBox="0 0 24 24" aria-hidden="true" focusable="false">'
    '<circle cx="12" cy="12" r="11" fill="#ffd21e"/>'
    '<circle cx="8.2" cy="9.6" r="1.5" fill="#3a2c0f"/>'
    '<circle cx="15.8" cy="9.6" r="1.5" fill="#3a2c0f"/>'
    '<path d="M7.4 13.6c1 2.3 2.7 3.5 4.6 3.5s3.6-1.2 4.6-3.5" fill="none" stroke="#3a2c0f" '
    'stroke-width="1.7" stroke-linecap="round"/></svg>'
)

_ICON_ERROR = (
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true" focusable="false">'
    '<circle cx="10" cy="10" r="8.25" fill="none" stroke="currentColor" stroke-width="1.8"/>'
    '<path d="M10 5.8v5" stroke="currentColor" stroke-width="2" stroke-linecap="round"/>'
    '<circle cx="10" cy="14.1" r="1.15" fill="currentColor"/></svg>'
)

_ICON_INFO = (
    '<svg width="18" height="18" viewBox="0 0 20 20" aria-hidden="true" focusable="false">'
    '<circle cx="10" cy="10" r="8.25" fill="none" stroke="currentColor" stroke-width="1.8"/>'
    '<path d="M10 9v5.2" stroke="currentColor" stroke-width="2" stroke-linecap="round"/>'
    '<circle cx="10" cy="5.9" r="1.15" fill="currentColor"/></svg>'
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark light">
<meta name="referrer" content="same-origin">
<meta name="robots" content="noindex, nofollow">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main class="shell">
<div class="card{card_class}">
<div class="brand">{logo}<span>WigHaven Gateway</span></div>
{body}
</div>
<footer class="foot">{footer}</footer>
</main>
</body>
</html>
"""


def _e(value) -> str:
    return escape(str(value), quote=True)


def _url(url: str) -> str:
    """C{url}, escaped for an attribute, if it is relative or http(s)."""
    url = str(url)
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme not in ("", "http", "https") or any(c in url for c in "\r\n\t\0"):
        raise ValueError("not a URL a page may link to: %r" % (url,))
    return _e(url)


def _document(title: str, body: str, version: str, card_class: str = "") -> bytes:
    footer = "WigHaven Gateway" + (" " + _e(version) if version else "")
    return _PAGE.format(
        title=_e(title) + " &middot; WigHaven Gateway" if title else "WigHaven Gateway",
        style=_STYLE,
        logo=_LOGO,
        card_class=card_class,
        body=body,
        footer=footer,
    ).encode("utf-8")


def _banner(kind: str, text: str, ident: str = "") -> str:
    role, icon = ("alert", _ICON_ERROR) if kind == "error" else ("status", _ICON_INFO)
    return '<div class="banner %s"%s role="%s">%s<span>%s</span></div>\n' % (
        kind, ' id="%s"' % ident if ident else "", role, icon, _e(text))


def render_login_page(
    *,
    action: str,
    next_path: str,
    error: Optional[str] = None,
    username: str = "",
    hf_url: Optional[str] = None,
    otp_wanted: bool = False,
    password_login: bool = True,
    notice: Optional[str] = None,
    version: str = "",
) -> bytes:
    """
    The sign-in page, UTF-8 bytes of a full HTML5 document.

    With C{password_login}, a form posting C{username}, C{password}, C{otp}
    (optional unless C{otp_wanted}) and a hidden C{next} (C{next_path}) to
    C{action}; with C{hf_url}, a "Sign in with Hugging Face" link to it
    (the caller has put C{next} in it), after an "or" when there is a form
    too; with neither, a page saying no way of signing in is set up.
    C{error} is shown in an alert above the form, C{notice} (such as "You
    have signed out.") in a neutral status banner. C{username} is put back
    in its field after an error; a password never is.

    The cursor starts in the code field when C{otp_wanted}, else in the
    password field when C{username} is given, else in the username field;
    that field is described by the error (C{aria-describedby}).
    """
    parts = ['<h1>Sign in</h1>\n']
    if password_login:
        lede = "This site is private. Sign in to continue."
    elif hf_url is not None:
        lede = "This site is private. Sign in with your Hugging Face account to continue."
    else:
        lede = "This site is private, and no way of signing in is set up yet."
    parts.append('<p class="lede">%s</p>\n<div class="stack">\n' % lede)
    if notice:
        parts.append(_banner("notice", notice))
    if error:
        parts.append(_banner("error", error, "login-error"))
    if password_login:
        # The field the cursor starts in; it is described by the error, so a
        # screen reader reads the two together.
        first = "otp" if otp_wanted else ("password" if username else "username")
        focus = {}
        for name in ("username", "password", "otp"):
            ids = [i for i, on in (("login-error", error and name == first),
                                   ("otp-hint", otp_wanted and name == "otp")) if on]
            focus[name] = (" autofocus" if name == first else "") + (
                ' aria-describedby="%s"' % " ".join(ids) if ids else "")
        if otp_wanted:
            otp_label = "Authentication code"
            otp_required = " required"
            otp_hint = ('<p class="hint" id="otp-hint">Your account asks for a code: enter the '
                        'one your authenticator app shows now.</p>\n')
        else:
            otp_label = 'Authentication code <span class="opt">(if you set one up)</span>'
            otp_required = ""
            otp_hint = ""
        parts.append(
            '<form method="post" action="%(action)s">\n'
            '<input type="hidden" name="next" value="%(next)s">\n'
            '<div class="field"><label for="username">Username</label>\n'
            '<input id="username" name="username" type="text" value="%(username)s" '
            'autocomplete="username" autocapitalize="none" spellcheck="false" required'
            '%(username_focus)s></div>\n'
            '<div class="field"><label for="password">Password</label>\n'
            '<input id="password" name="password" type="password" autocomplete="current-password" '
            'required%(password_focus)s></div>\n'
            '<div class="field"><label for="otp">%(otp_label)s</label>\n'
            '<input id="otp" name="otp" type="text" class="code" inputmode="numeric" '
            'autocomplete="one-time-code" autocapitalize="none" spellcheck="false" maxlength="64"'
            '%(otp_required)s%(otp_focus)s>\n%(otp_hint)s</div>\n'
            '<button id="sign-in" class="btn btn-primary" type="submit">Sign in</button>\n'
            '</form>\n' % dict(
                action=_url(action),
                next=_e(next_path),
                username=_e(username),
                username_focus=focus["username"],
                password_focus=focus["password"],
                otp_focus=focus["otp"],
                otp_label=otp_label,
                otp_required=otp_required,
                otp_hint=otp_hint,
            )
        )
    if hf_url is not None:
        if password_login:
            parts.append('<div class="divider">or</div>\n')
        style = "btn-secondary" if password_login else "btn-primary"
        parts.append('<a id="sign-in-hf" class="btn %s" href="%s">%s<span>Sign in with Hugging '
                     'Face</span></a>\n' % (style, _url(hf_url), _HF_MARK))
    parts.append('</div>')
    return _document("Sign in", "".join(parts), version)


def render_password_page(*, action: str, token: str, username: str,
                         error: Optional[str] = None, version: str = "") -> bytes:
    """
    An invitation's page: C{username} chooses a password (twice), posted
    with the invitation's C{token} (hidden) to C{action}.
    """
    parts = ['<h1>Choose your password</h1>\n',
             '<p class="lede">You are invited to this gateway as <strong>%s</strong>. Choose a '
             'password of at least 8 characters to finish.</p>\n<div class="stack">\n'
             % _e(username)]
    described = ' aria-describedby="invite-error"' if error else ""
    if error:
        parts.append(_banner("error", error, "invite-error"))
    parts.append(
        '<form method="post" action="%s">\n'
        '<input type="hidden" name="token" value="%s">\n'
        '<input type="text" name="username" value="%s" autocomplete="username" hidden>\n'
        '<div class="field"><label for="password">New password</label>\n'
        '<input id="password" name="password" type="password" autocomplete="new-password" '
        'minlength="8" required autofocus%s></div>\n'
        '<div class="field"><label for="confirm">Repeat the password</label>\n'
        '<input id="confirm" name="confirm" type="password" autocomplete="new-password" '
        'minlength="8" required></div>\n'
        '<button id="set-password" class="btn btn-primary" type="submit">Set password</button>\n'
        '</form>\n</div>' % (_url(action), _e(token), _e(username), described))
    return _document("Choose your password", "".join(parts), version)


def render_message_page(
    *,
    title: str,
    message: str,
    status_label: str = "",
    actions: Iterable[Tuple[str, str]] = (),
    post_actions: Iterable[Tuple[str, str, Mapping[str, str]]] = (),
    version: str = "",
) -> bytes:
    """
    A message page in the sign-in page's card: C{title} as its heading,
    C{message} (paragraphs split on blank lines), C{status_label} (such as
    "403") as a pill above, then buttons: C{actions} as links (label,
    href), C{post_actions} as small forms (label, action URL, hidden
    fields), such as "Sign out" with its CSRF field. The first button is
    the primary one.
    """
    parts = []
    if status_label:
        label = str(status_label).strip()
        tone = " bad" if label[:1] in ("4", "5") and label[:3].isdigit() else ""
        parts.append('<p class="pill%s">%s</p>\n' % (tone, _e(label)))
    parts.append('<h1>%s</h1>\n' % _e(title))
    for paragraph in _paragraphs(message):
        parts.append('<p class="text">%s</p>\n' % _e(paragraph))
    buttons = [(label, href, None) for label, href in actions]
    buttons += [(label, url, dict(fields)) for label, url, fields in post_actions]
    if buttons:
        parts.append('<div class="actions">\n')
        for i, (label, url, fields) in enumerate(buttons):
            cls = "btn btn-primary" if i == 0 else "btn btn-secondary"
            if fields is None:
                parts.append('<a class="%s" href="%s">%s</a>\n' % (cls, _url(url), _e(label)))
            else:
                hidden = "".join('<input type="hidden" name="%s" value="%s">' % (_e(k), _e(v))
                                 for k, v in fields.items())
                parts.append('<form method="post" action="%s">%s<button class="%s" type="submit">'
                             '%s</button></form>\n' % (_url(url), hidden, cls, _e(label)))
        parts.append('</div>')
    return _document(title, "".join(parts), version, card_class=" message")


def _paragraphs(message: str) -> Sequence[str]:
    chunks = [" ".join(p.split()) for p in str(message).split("\n\n")]
    return [c for c in chunks if c]

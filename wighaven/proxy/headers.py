"""Pure HTTP rules of the forwarding path: which headers cross the gateway,
which are added, and how the request target and Location are rewritten.

Rules (RFC 9110 section 7.6.1, RFC 9112, Go's httputil.ReverseProxy):
- hop-by-hop headers (L{HOP_BY_HOP}) and every header named in Connection
  are removed in both directions; everything else passes untouched, with
  duplicates kept as separate values (never joined);
- upstream, Host is the backend's; the client's Host goes in
  X-Forwarded-Host; X-Forwarded-For is the real peer alone, or, behind a
  trusted proxy (TRUST_PROXY, see L{wighaven.config.trust}), the chain from the
  client that proxy vouches for, with the peer appended; Forwarded,
  X-Real-IP, X-Forwarded-Port and X-Forwarded-Prefix never cross (the
  gateway sends only what it means: X-Forwarded-Prefix for a route that
  strips its path prefix); the owner's token replaces whatever
  the client sent in the token header;
- the upstream request target is the client's target byte for byte, and
  the host always the configured backend's, whatever the target says;
- a Location pointing at the backend's own origin is rewritten to the
  gateway's origin as the client addressed it; any other is left alone.

Nothing here does I/O: every function takes plain values and returns plain
values, so each rule is tested with plain inputs and outputs.
"""

from __future__ import annotations

import re
from typing import Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ..config.trust import NO_PROXY, TrustedProxies

RawHeaders = Iterable[Tuple[bytes, Sequence[bytes]]]
HeaderList = List[Tuple[bytes, List[bytes]]]

HOP_BY_HOP = frozenset(
    [
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"proxy-connection",
        b"http2-settings",  # h2c upgrades are not honoured (RFC 7540 3.2.1)
    ]
)

# Set by the gateway itself on the upstream request, never copied from the client:
# Host and the forwarding headers are rebuilt, Content-Length is framed again
# by the HTTP client from the body it sends, and Expect was answered already.
# Forwarded, X-Real-IP, X-Forwarded-Port and -Prefix are claims the gateway
# does not make: a client could forge them, so they are dropped.
# X-Forwarded-User, -Email and -Groups name the signed-in identity
# (wighaven.auth.gate); only the gateway sets them, AUTH on or off.
_REBUILT_UPSTREAM = frozenset(
    [b"host", b"content-length", b"expect", b"x-forwarded-for", b"x-forwarded-host",
     b"x-forwarded-proto", b"forwarded", b"x-real-ip", b"x-forwarded-port",
     b"x-forwarded-prefix", b"x-forwarded-user", b"x-forwarded-email", b"x-forwarded-groups"]
)

_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_HOST_RE = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$")
_ABSOLUTE_FORM = re.compile(rb"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*")
_PROTO_RE = re.compile(rb"^https?$", re.IGNORECASE)
_NOT_VISIBLE_ASCII = re.compile(rb"[^\x21-\x7e]")  # controls, space, DEL, raw non-ASCII


def connection_named(values: Optional[Sequence[bytes]]) -> frozenset:
    """The lower-cased header names listed in Connection header values."""
    if not values:
        return frozenset()
    named = set()
    for value in values:
        for token in value.lower().split(b","):
            token = token.strip()
            if token:
                named.add(token)
    return frozenset(named)


def _end_to_end_lowered(raw_headers: RawHeaders) -> list:
    """
    (name, lower-cased name, values) of the headers to keep: all but the
    hop-by-hop ones and those named in Connection. One pass, each name
    lower-cased once (this runs twice for every proxied request).
    """
    headers = []
    connection = None
    for name, values in raw_headers:
        low = name.lower()
        if low in HOP_BY_HOP:
            if low == b"connection":
                connection = list(values) if connection is None else connection + list(values)
            continue
        headers.append((name, low, list(values)))
    if connection is None:
        return headers
    named = connection_named(connection)
    if not named - HOP_BY_HOP:  # "keep-alive", "close": nothing end-to-end is named
        return headers
    return [header for header in headers if header[1] not in named]


def end_to_end(raw_headers: RawHeaders) -> HeaderList:
    """Drop the hop-by-hop headers and those named in Connection; keep the rest."""
    return [(name, values) for name, _, values in _end_to_end_lowered(raw_headers)]


def origin_form(uri: bytes) -> bytes:
    """C{uri} with an absolute-form scheme and authority removed (RFC 9112 3.2.2)."""
    match = _ABSOLUTE_FORM.match(uri)
    if match is None:
        return uri
    uri = uri[match.end():]
    return uri if uri.startswith(b"/") else b"/" + uri


def upstream_target(uri: bytes) -> Optional[bytes]:
    """
    The request target to send upstream, or None when it is not acceptable.

    Origin-form (C{/path?query}) goes byte for byte, even C{//evil/x}, since
    it is appended to the fixed backend origin, never parsed for a host.
    Absolute-form (C{http://host/path}) keeps only its path and query: the
    host it names is ignored. Anything else (C{@evil/x}, C{*}, a fragment,
    control characters, raw non-ASCII bytes that a client should have
    percent-encoded) is refused.
    """
    uri = origin_form(uri)
    if not uri.startswith(b"/") or b"#" in uri:
        return None
    if _NOT_VISIBLE_ASCII.search(uri):
        return None
    return uri


def rightmost(values: Optional[Sequence[bytes]]) -> Optional[bytes]:
    """
    The last entry of a comma-separated header (the one the nearest proxy
    wrote: a proxy that appends puts its own value last), or None.
    """
    if not values:
        return None
    entries = [e.strip() for e in values[-1].split(b",") if e.strip()]
    return entries[-1] if entries else None


def valid_host(value: Optional[bytes]) -> Optional[bytes]:
    """C{value} if it is a well-formed host[:port], else None."""
    if value and _HOST_RE.match(value):
        return value
    return None


def client_origin(
    secure: bool,
    host: Optional[bytes],
    forwarded_proto: Optional[bytes] = None,
    forwarded_host: Optional[bytes] = None,
) -> Optional[bytes]:
    """
    The gateway's origin as the client addressed it, e.g. C{https://gw.example},
    or None when the client gave no usable Host. Forwarded values are passed
    only when a trusted proxy stands in front of the gateway.
    """
    scheme = b"https" if secure else b"http"
    if forwarded_proto and _PROTO_RE.match(forwarded_proto.strip()):
        scheme = forwarded_proto.strip().lower()
    host = valid_host(forwarded_host.strip() if forwarded_host else None) or valid_host(host)
    if host is None:
        return None
    return scheme + b"://" + host


_NOTHING = frozenset()
_SKIPPED = {}  # (token header, request id?, the gate's names) -> the names not copied


def _skipped(token_header: Optional[bytes], has_request_id: bool, gate_names) -> frozenset:
    """The client's headers the gateway replaces or takes out (a few sets, made once)."""
    key = (token_header, has_request_id, gate_names)
    names = _SKIPPED.get(key)
    if names is None:
        names = set(gate_names)
        if token_header is not None:
            names.add(token_header)
        if has_request_id:
            names.add(b"x-request-id")
        names = _SKIPPED[key] = frozenset(names)
    return names


def upstream_headers(
    raw_headers: RawHeaders,
    *,
    backend_host: bytes,
    peer: bytes,
    proto: bytes,
    token: Optional[bytes],
    token_header: bytes,
    trust_proxy: TrustedProxies = NO_PROXY,
    request_id: Optional[bytes] = None,
    prefix: Optional[bytes] = None,
    auth=None,
) -> HeaderList:
    """
    The headers of the upstream request, from the client's C{raw_headers}.

    @param backend_host: the Host to send (the backend's host[:port]).
    @param peer: the connection's remote address, the end of X-Forwarded-For.
    @param proto: C{http} or C{https}: how the client reached the gateway.
    @param token: the owner's token, or None to forward no credential.
    @param token_header: the lower-cased header that carries the token.
    @param trust_proxy: the proxies in front of the gateway; when C{peer}
        is one, its X-Forwarded-For chain, -Proto and -Host are believed.
    @param request_id: the exchange's X-Request-ID, replacing the client's.
    @param prefix: the path prefix the gateway took off (a route's
        strip_path), sent as X-Forwarded-Prefix; behind a trusted proxy,
        after the prefix that proxy took off itself.
    @param auth: with AUTH on, the request's L{wighaven.auth.gate.UpstreamAuth}:
        the gateway's credentials taken out, the identity's headers added.
    """
    out = [(b"Host", [backend_host])]
    by_name = {}  # the rebuilt headers the client sent, by lower-cased name
    skip = _skipped(token_header if token is not None else None, request_id is not None,
                    auth.skip if auth is not None else _NOTHING)
    for name, low, values in _end_to_end_lowered(raw_headers):
        if low in _REBUILT_UPSTREAM:
            if low in by_name:
                by_name[low] = by_name[low] + values
            else:
                by_name[low] = values
        elif low not in skip:
            out.append((name, values))
        elif low == b"cookie":  # skipped only when the session cookie comes out of it
            kept = auth.cookies_without_ours(values)
            if kept:
                out.append((name, kept))

    # Off (the usual case) costs no address parsing at all.
    trusted = bool(trust_proxy) and trust_proxy.trusts_peer(peer.decode("latin-1"))
    if trusted:
        chain = trust_proxy.trusted_chain(peer, by_name.get(b"x-forwarded-for", ()))
        out.append((b"X-Forwarded-For", [b", ".join(chain)]))
    else:
        out.append((b"X-Forwarded-For", [peer]))
    client_host = by_name.get(b"host", [])[:1]
    if trusted:  # the proxy's view of the client counts
        forwarded_host = rightmost(by_name.get(b"x-forwarded-host"))
        if forwarded_host:
            client_host = [forwarded_host]
        proto = rightmost(by_name.get(b"x-forwarded-proto")) or proto
        outer = rightmost(by_name.get(b"x-forwarded-prefix"))
        if outer and outer.startswith(b"/"):
            prefix = outer.rstrip(b"/") + (prefix or b"")
    if client_host:
        out.append((b"X-Forwarded-Host", client_host))
    out.append((b"X-Forwarded-Proto", [proto]))
    if prefix:
        out.append((b"X-Forwarded-Prefix", [prefix]))
    if request_id is not None:
        out.append((b"X-Request-ID", [request_id]))
    if auth is not None:
        out.extend(auth.add)
    if token is not None:
        out.append((token_header, [b"Bearer " + token]))
    return out


def origin_for_upstream(
    headers: HeaderList, gateway_origin: Optional[bytes], upstream_origin: bytes
) -> HeaderList:
    """
    The headers of a WebSocket handshake with its Origin, when that is the
    gateway's own origin, given as the upstream's. Apps check that a
    WebSocket comes from their own pages (Streamlit refuses one whose
    Origin is not its Host: 403), and behind the gateway their pages are
    the gateway's. A foreign Origin passes unchanged, so the app still
    refuses other sites' pages.
    """
    if gateway_origin is None:
        return headers
    own = gateway_origin.lower()
    out = []
    for name, values in headers:
        if len(name) == 6 and name.lower() == b"origin" and all(
                v.strip().lower() == own for v in values):
            values = [upstream_origin]
        out.append((name, values))
    return out


def rewrite_location(
    location: bytes, backend_origin: Tuple[bytes, bytes, int], gateway_origin: Optional[bytes],
    prefix: bytes = b"",
) -> bytes:
    """
    Point a Location at the backend's own origin back at the gateway.

    @param backend_origin: (scheme, lower-cased host, port) of the backend.
    @param gateway_origin: e.g. C{https://gw.example}; None when unknown, in
        which case the rewritten Location keeps only path and query.
    @param prefix: the route's stripped prefix (C{/chat}): the backend's
        paths are the client's below it, so C{/login} (or the backend's
        C{https://backend/login}) becomes C{/chat/login}. A path already
        below the prefix is left as it is: the backend knew it
        (X-Forwarded-Prefix), and it must not become C{/chat/chat/...}.
    """
    if prefix and location.startswith(b"/") and not location.startswith(b"//"):
        return _below(prefix, location)
    try:
        parts = urlsplit(location)
        port = parts.port
    except ValueError:
        return location
    # A scheme-relative //host/path takes the scheme of the page: the backend's.
    scheme = parts.scheme.lower() or (backend_origin[0] if location.startswith(b"//") else b"")
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return location
    origin = (scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])
    if origin != backend_origin or parts.username is not None:
        return location
    rest = location[location.index(b"//") + 2 :]
    slash = min([i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0] or [len(rest)])
    rest = rest[slash:] or b"/"
    if not rest.startswith(b"/"):
        rest = b"/" + rest
    if prefix:
        rest = _below(prefix, rest)
    return (gateway_origin or b"") + rest


def _below(prefix: bytes, path: bytes) -> bytes:
    """C{path} (starting with /) under C{prefix}, unless it is there already."""
    if path == prefix or path.startswith(prefix + b"/") or path.startswith(prefix + b"?"):
        return path
    return prefix + path


def downstream_headers(
    raw_headers: RawHeaders,
    backend_origin: Tuple[bytes, bytes, int],
    gateway_origin: Optional[bytes],
    prefix: bytes = b"",
) -> HeaderList:
    """
    The backend's response headers as the client gets them. Content-Length
    is kept as the backend sent it, except beside Transfer-Encoding, where
    it is void (RFC 9112 section 6.3) and the gateway frames the body itself.
    """
    raw_headers = list(raw_headers)
    chunked = False
    for name, _ in raw_headers:
        if len(name) == 17 and name.lower() == b"transfer-encoding":
            chunked = True
    out = []
    for name, low, values in _end_to_end_lowered(raw_headers):
        if low == b"content-length" and chunked:
            continue
        if low == b"location":
            values = [rewrite_location(v, backend_origin, gateway_origin, prefix) for v in values]
        out.append((name, values))
    return out


class ResponseShapes:
    """
    L{downstream_headers} for one backend's responses, worked out once per
    shape. A backend answers with the same header names (and the same
    Connection values) again and again; which positions pass to the client,
    where the Content-Type is and whether there is a Location are learnt
    for each shape (the first MAX_SHAPES seen; others are worked out each
    time) and then applied by position, without lower-casing a name.

    L{end_to_end} returns C{(headers, content_type, location)}: the kept
    headers as C{(name, [value])} (values stripped), the Content-Type value
    or None, and whether a Location came (then the caller takes
    L{downstream_headers}, which rewrites it).
    """

    MAX_SHAPES = 256
    MAX_CONNECTION_VALUES = 16  # kept per shape: the Connection values seen with it

    def __init__(self):
        self._shapes = {}  # names -> (connection positions, {connection values: plan})

    def end_to_end(self, pairs):
        names = tuple([name for name, _ in pairs])
        shape = self._shapes.get(names)
        if shape is None:
            shape = (tuple(i for i, name in enumerate(names) if name.lower() == b"connection"), {})
            if len(self._shapes) < self.MAX_SHAPES:
                self._shapes[names] = shape
        positions, plans = shape
        connection = tuple([pairs[i][1] for i in positions])
        plan = plans.get(connection)
        if plan is None:
            plan = _plan(names, connection)
            if len(plans) < self.MAX_CONNECTION_VALUES:
                plans[connection] = plan
        keep, content_type, location = plan
        headers = [(pairs[i][0], [pairs[i][1].strip()]) for i in keep]
        return headers, None if content_type is None else pairs[content_type][1].strip(), location


def _plan(names, connection_values):
    """(kept positions, Content-Type position or None, has Location) of one shape."""
    lows = [name.lower() for name in names]
    named = connection_named([v.strip() for v in connection_values]) | HOP_BY_HOP
    if b"transfer-encoding" in lows:
        named = named | {b"content-length"}  # void beside it: the gateway frames the body
    keep = tuple(i for i, low in enumerate(lows) if low not in named)
    content_type = next((i for i in keep if lows[i] == b"content-type"), None)
    return keep, content_type, b"location" in lows

"""The admin JSON API under C{/_gateway/api/v1/} (AUTH on): the frame every
endpoint shares, and the read-only views (status, audit, requests, logs).

The resources themselves are in L{wighaven.web.admin_routes} (routes,
upstream tests, configuration) and L{wighaven.web.admin_people} (users,
API keys, sessions). The OpenAPI document (L{wighaven.web.openapi}) is
served at C{/_gateway/api/v1/openapi.json}; the test suite runs
schemathesis against it.

Rules every endpoint follows (L{ApiFrame.endpoint}):
  - Only an administrator gets in: a session cookie, or a Bearer JWT or
    API key of a user with the admin role (a route-scoped key never).
    Anyone else: 401 (with a Bearer challenge) or 403, as JSON.
  - A change made with the session cookie must come from the gateway's own
    origin with the session's CSRF token in C{X-CSRF-Token} (403 csrf
    otherwise); a Bearer credential carries no ambient authority.
  - Bodies are JSON objects (415 for another type, 400 when it does not
    parse); answers are JSON, never cached.
  - A bad field is 422 with every field's message; an unexpected failure
    is a 500 with the request id and one log line, never a traceback.
  - Every change is an audit event: who, from where, what, before and
    after, with secrets masked (an item never holds a secret).
"""

from __future__ import annotations

import json
from typing import Optional

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from ..auth.gate import answer_refusal
from ..observe.live import LiveMessages
from .api_support import (
    ValidationFailed, decode_cursor, encode_cursor, etag_of, if_match_ok, problem, _limit,
)

__all__ = ["API_PREFIX", "AdminApi", "ApiError", "ApiFrame", "Answer"]

API_PREFIX = "/_gateway/api/v1"
_SAFE_METHODS = (b"GET", b"HEAD")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "QUERY")
_JSON_TYPES = (b"application/json", b"application/merge-patch+json")
MAX_BODY = 1 << 20  # bytes of JSON a request may send


class ApiError(Exception):
    """An answer other than success: C{status}, C{code} and a sentence for the client."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", "no such %s" % (what,))


STALE = ApiError(412, "stale", "the item changed since you read it (If-Match): read it again")


@attrs.frozen
class Answer:
    """A successful answer: C{status}, a JSON C{body} (None: no body), and its ETag."""

    status: int = 200
    body: object = None
    etag: Optional[str] = None
    location: Optional[str] = None
    text: Optional[str] = None  # a text answer (the TOML export) instead of JSON
    content_type: bytes = b"application/json"


def with_etag(item: dict) -> dict:
    """C{item} with its C{etag} (a hash of the rest of it)."""
    item = dict(item)
    item.pop("etag", None)
    item["etag"] = etag_of(item)
    return item


def item_answer(item: dict, status: int = 200, location: Optional[str] = None) -> Answer:
    item = with_etag(item)
    return Answer(status, item, etag=item["etag"], location=location)


def check_if_match(request, item: Optional[dict]) -> None:
    """412 (L{STALE}) unless the request's If-Match allows a change of C{item}."""
    values = request.requestHeaders.getRawHeaders(b"if-match")
    if values is None:
        return
    current = with_etag(item)["etag"] if item is not None else None
    if not if_match_ok(b", ".join(values), current):
        raise STALE


def arg(request, name: str) -> Optional[str]:
    """The query parameter C{name} (its first value), or None."""
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def limit_arg(request) -> int:
    return _limit(arg(request, "limit"))


def cursor_arg(request, kind=int):
    """The position in the C{cursor} parameter (None: the first page)."""
    text = arg(request, "cursor")
    if text is None:
        return None
    position = decode_cursor(text)
    if isinstance(position, bool) or not isinstance(position, kind):
        raise ValidationFailed.one("cursor", "not a cursor of this list")
    return position


def id_page(items, next_id) -> dict:
    """A ring's or the audit's page: C{next_cursor} names the last id served."""
    return {"items": items, "next_cursor": encode_cursor(next_id) if next_id is not None else None}


class ApiFrame:
    """
    What every endpoint shares: the gate, the CSRF check, JSON in and out,
    errors, and the audit.

    @param control: the L{wighaven.auth.control.AccessControl}.
    @param cookie_refusal: C{cookie_refusal(request, identity)}: the answer
        refusing a cookie-authenticated change that is cross-origin or
        lacks its CSRF token, or None (L{wighaven.web.auth_pages.AuthPages}).
    @param address_of: C{address_of(request)}: the visitor's address.
    """

    _log = Logger()

    def __init__(self, app, control, cookie_refusal, address_of):
        self.app = app
        self.control = control
        self._cookie_refusal = cookie_refusal
        self.address_of = address_of
        self._methods = {}  # path -> the methods its endpoints take

    def endpoint(self, path: str, methods, handler) -> None:
        """Serve C{handler(request, identity, **path_values)} at C{API_PREFIX + path}."""
        def serve(request, **values):
            return self._serve(request, handler, values)
        serve.__name__ = "api_%s_%s" % ("_".join(methods).lower(), handler.__name__)
        self.app.route(API_PREFIX + path, methods=list(methods))(serve)
        self._methods.setdefault(path, set()).update(methods)

    def refuse_other_methods(self) -> None:
        """
        Every other method on an endpoint's path is 405 with its Allow header
        (called once every endpoint is made: a rule added earlier would win).
        """
        for path, allowed in self._methods.items():
            if "GET" in allowed:
                allowed = allowed | {"HEAD"}
            other = sorted(set(_METHODS) - allowed)
            allow = ", ".join(sorted(allowed)).encode("ascii")

            def refuse(request, allow=allow, **values):
                request.setHeader(b"Allow", allow)
                return self._error(request, 405, problem(
                    405, "method_not_allowed", "this endpoint takes " + allow.decode("ascii")))
            refuse.__name__ = "api_refuse_%s" % path.replace("/", "_")
            self.app.route(API_PREFIX + path, methods=other)(refuse)

    @defer.inlineCallbacks
    def _serve(self, request, handler, values):
        gate = self.control.gate
        refusal = gate.admin_refusal(request)
        if refusal is not None:
            if refusal.status == 401 and request.method in _SAFE_METHODS:
                # A program's 401 is JSON even if it said it would take a page.
                request.requestHeaders.removeHeader(b"accept")
            return answer_refusal(request, refusal)
        identity = gate.identify(request)
        if request.method not in _SAFE_METHODS:
            refused = self._cookie_refusal(request, identity)
            if refused is not None:
                return refused
        try:
            answer = yield handler(request, identity, **values)
        except ValidationFailed as e:
            return self._error(request, 422, problem(422, "invalid", "the request has invalid "
                                                     "fields", e.errors))
        except ApiError as e:
            return self._error(request, e.status, problem(e.status, e.code, e.detail))
        except Exception:
            self._log.failure("admin API {method} {path} failed", method=request.method,
                              path=request.path)
            body = problem(500, "internal", "the gateway failed to do this; see its log")
            body["request_id"] = (getattr(request, "request_id", b"") or b"").decode("latin-1")
            return self._error(request, 500, body)
        return self._write(request, answer)

    def _error(self, request, status: int, body: dict) -> bytes:
        return self._json(request, status, body)

    def _json(self, request, status: int, body) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return json.dumps(body).encode("utf-8")

    def _write(self, request, answer: Answer) -> bytes:
        if answer.etag is not None:
            request.setHeader(b"ETag", answer.etag.encode("ascii"))
        if answer.location is not None:
            request.setHeader(b"Location", answer.location.encode("utf-8"))
        if answer.text is not None:
            request.setResponseCode(answer.status)
            request.setHeader(b"Content-Type", answer.content_type)
            request.setHeader(b"Cache-Control", b"no-store")
            request.setHeader(b"X-Content-Type-Options", b"nosniff")
            return answer.text.encode("utf-8")
        if answer.body is None:
            request.setResponseCode(answer.status)
            request.setHeader(b"Cache-Control", b"no-store")
            return b""
        return self._json(request, answer.status, answer.body)

    # Helpers for the handlers.

    def json_body(self, request) -> dict:
        """The request's JSON object (415, 400 or 422 otherwise)."""
        content_type = request.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if content_type.split(b";")[0].strip().lower() not in _JSON_TYPES:
            raise ApiError(415, "unsupported_media_type", "send Content-Type: application/json")
        data = request.content.read(MAX_BODY + 1)
        if len(data) > MAX_BODY:
            raise ApiError(413, "too_large", "the body is larger than %d bytes" % MAX_BODY)
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "bad_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ValidationFailed.one("", "must be a JSON object")
        return body

    def audit(self, kind: str, identity, request, **detail):
        return self.control.audit(kind, identity.user, self.address_of(request), **detail)


class AdminApi:
    """
    The read-only views: status, audit, recent requests, recent log lines.

    @param router: the live L{wighaven.routing.router.Router}.
    @param stats: the L{wighaven.observe.stats.GatewayStats}.
    @param recent: the L{wighaven.observe.recent_view.RecentView} of the
        recent requests and log lines (every worker's).
    """

    def __init__(self, frame: ApiFrame, router, stats, clock, backend_host: str,
                 recent, document):
        self._frame = frame
        self._router = router
        self._stats = stats
        self._messages = LiveMessages(stats, backend_host, clock)
        self._recent = recent
        self._document = json.dumps(document).encode("utf-8")
        frame.app.route(API_PREFIX + "/openapi.json", methods=["GET"])(self.openapi)
        frame.endpoint("/status", ["GET"], self.status)
        frame.endpoint("/audit", ["GET"], self.audit)
        frame.endpoint("/requests", ["GET"], self.requests)
        frame.endpoint("/requests/<entry_id>", ["GET"], self.request_item)
        frame.endpoint("/logs", ["GET"], self.logs)

    def openapi(self, request):
        """The API's description: public (it holds no data), like any OpenAPI document."""
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-cache")
        return self._document

    def status(self, request, identity):
        summary = self._messages.summary()
        figures = {row["name"]: row for row in summary["routes"]}
        routes = []
        for live in self._router.routes:
            row = figures.get(live.metrics.name, {})
            states = {u["label"]: u for u in row.get("upstreams", [])}
            upstreams = []
            for status in live.upstream_status():
                seen = states.get(status["upstream"], {})
                upstreams.append({"upstream": status["upstream"],
                                  "state": seen.get("state") or status["state"],
                                  "last_error": status["last_error"],
                                  "in_flight": status["in_flight"], "space": status["space"]})
            routes.append({
                "name": live.name, "hosts": list(live.hosts), "path": live.path,
                "source": live.route.source, "enabled": live.enabled,
                "requests_per_second": row.get("requests_per_second", 0.0),
                "p95_ms": row.get("p95_ms"), "error_rate": row.get("error_rate", 0.0),
                "requests": self._requests_of(live.metrics.name),
                "errors": row.get("errors", 0), "in_flight": row.get("in_flight", 0),
                "upstreams": upstreams,
            })
        body = {key: summary[key] for key in (
            "status", "version", "uptime_seconds", "requests_per_second", "latency_ms",
            "error_rate", "requests", "errors", "in_flight", "open_websockets", "open_streams")}
        body["routes"] = routes
        return defer.succeed(Answer(200, body))

    def _requests_of(self, metrics_name: str) -> int:
        route = self._stats.figures()["routes"].get(metrics_name, {})
        return sum(n for classes in route.get("requests", {}).values() for n in classes.values())

    @defer.inlineCallbacks
    def audit(self, request, identity):
        limit = limit_arg(request)
        before = cursor_arg(request)
        actor, kind = arg(request, "actor"), arg(request, "kind")
        events = yield self._frame.control.store.audit_events(
            limit=limit + 1, before=before, actor=actor or None, kind=kind or None)
        more = len(events) > limit
        events = events[:limit]
        return Answer(200, id_page(events, events[-1]["id"] if more else None))

    @defer.inlineCallbacks
    def requests(self, request, identity):
        status_class = arg(request, "status_class")
        if status_class is not None and status_class.lower() not in (
                "1xx", "2xx", "3xx", "4xx", "5xx"):
            raise ValidationFailed.one("status_class", "must be 1xx, 2xx, 3xx, 4xx or 5xx")
        items, next_id = yield self._recent.requests(
            route=arg(request, "route") or None, status_class=status_class or None,
            user=arg(request, "user") or None, before=cursor_arg(request),
            limit=limit_arg(request))
        return Answer(200, id_page(items, next_id))

    @defer.inlineCallbacks
    def request_item(self, request, identity, entry_id):
        entry = None
        if entry_id.isdigit() and len(entry_id) < 18:
            entry = yield self._recent.request(int(entry_id))
        if entry is None:
            raise not_found("request (the recent ones are kept in memory only)")
        return Answer(200, entry)

    @defer.inlineCallbacks
    def logs(self, request, identity):
        level = arg(request, "level")
        if level is not None and level not in ("debug", "info", "warn", "error", "critical"):
            raise ValidationFailed.one("level", "must be debug, info, warn, error or critical")
        after = arg(request, "after")
        if after is not None and (not after.isdigit() or len(after) > 18):
            raise ValidationFailed.one("after", "must be a log line's id")
        items, next_id, last_id = yield self._recent.logs(
            level=level or None, text=arg(request, "text") or None,
            after=int(after) if after is not None else None, before=cursor_arg(request),
            limit=limit_arg(request))
        if after is not None:
            # Following: the id to pass as after next time; older pages are not asked for.
            body = {"items": items, "next_cursor": None, "last_id": last_id}
        else:
            body = id_page(items, next_id)
            body["last_id"] = last_id
        return Answer(200, body)

"""The OpenAPI 3.1 document of the admin API (C{/_gateway/api/v1/}), served
at C{/_gateway/api/v1/openapi.json} (L{wighaven.web.admin_api.AdminApi}).

Why it is written by hand: the API is a handful of Klein handlers that
validate their input themselves (L{wighaven.web.admin_routes},
L{wighaven.web.admin_people}, L{wighaven.config.routes}), with no model
classes to generate a schema from. The document is the contract instead,
and tests/test_admin_openapi.py holds the implementation to it: it runs
schemathesis against a real gateway with this very document, so a status,
a header or a body the document does not declare fails the test, as does a
valid request refused or an invalid one accepted (tests/test_openapi_document.py
checks the document itself: valid OpenAPI 3.1, every reference resolving).

Rules the document follows:
  - Request bodies are exact: C{additionalProperties: false} (the server
    refuses an unknown key with 422), the constraints the server checks
    (patterns, ranges) and nothing stricter: a key the server takes as
    null takes null here.
  - Responses are typed precisely (null as C{["string", "null"]}) but
    stay open: no C{additionalProperties: false}, so the server may add a
    key without breaking a client.
  - Every operation declares each status it may answer: its 2xx, and the
    error answers (one shared body, L{_error_schema}) that apply to it.

It is built from small helpers (L{_ref}, L{_obj}, L{_errors}, L{_list_of},
L{_operation}...) rather than one literal, so each operation reads as what
it takes and what it answers.
"""

from __future__ import annotations

import copy

__all__ = ["API_SERVER", "PATHS", "openapi_document"]

API_SERVER = "/_gateway/api/v1"
PATHS = (
    "/routes", "/routes/{name}", "/upstreams/test", "/users", "/users/{username}",
    "/users/{username}/invite", "/api-keys", "/api-keys/{id}", "/sessions", "/sessions/{id}",
    "/audit", "/requests", "/requests/{id}", "/logs", "/status", "/config/export",
    "/config/import",
)

# The server's own rules (wighaven.config.routes, wighaven.auth.usernames,
# wighaven.auth.policy, wighaven.web.admin_people), as JSON Schema patterns.
ROUTE_NAME = r"^[a-z0-9-]{1,63}$"
# A local user's name (check_username), or a Hugging Face sign-in's "hf:<name>".
USERNAME = r"^[A-Za-z0-9._@-]{1,64}$"
ANY_USERNAME = r"^(hf:)?[A-Za-z0-9._@-]{1,64}$"
KEY_ID = r"^[0-9a-f]{16}$"
SESSION_ID = r"^[0-9a-f]{64}$"
ROLE = r"^[A-Za-z0-9._:-]{1,64}$"
EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,189}$"
REQUIREMENT = r"^(role|user|hf_org):[A-Za-z0-9._@:-]{1,96}$"
SPACE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$"
# A path prefix: "/" or segments of visible ASCII (trailing slashes are dropped).
ROUTE_PATH = r"^(/|(/[!$&'()*+,;=:@A-Za-z0-9._~%-]+)+/*)$"
# An exact host name or *.name for its subdomains (no port).
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOST = r"^(\*\.)?%s(\.%s)*\.?$" % (_LABEL, _LABEL)
# An origin: scheme://host[:port], no credentials, path, query or fragment.
UPSTREAM_URL = r"^https?://[^\s/?#@]+/?$"
_PRINTABLE = r"[^\x00-\x1f\x7f-\x9f]"
PRINTABLE = r"^%s*$" % _PRINTABLE
# One line of printable characters, not only spaces.
TOKEN = r"^%s*[^\s\x00-\x1f\x7f-\x9f]%s*$" % (_PRINTABLE, _PRINTABLE)
CURSOR = r"^[A-Za-z0-9_-]{1,2048}$"
MAX_LIMIT = 500
MAX_LOG_ID = 10 ** 18 - 1  # "after" is at most 18 digits

_SESSION_COOKIE = "__Host-wh_session"


# --- Schema helpers ---------------------------------------------------------------------------

def _ref(name: str) -> dict:
    """A reference to the schema C{name} of the components."""
    return {"$ref": "#/components/schemas/" + name}


def _nullable(schema: dict) -> dict:
    """C{schema} or null, 3.1 style: C{"type": [..., "null"]} (C{anyOf} for a reference)."""
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    schema = dict(schema)
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    schema["type"] = kinds + ["null"]
    if "enum" in schema:
        schema["enum"] = list(schema["enum"]) + [None]
    return schema


def _string(pattern=None, **extra) -> dict:
    schema = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    schema.update(extra)
    return schema


def _integer(minimum=None, maximum=None, **extra) -> dict:
    schema = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    schema.update(extra)
    return schema


def _array(items: dict, **extra) -> dict:
    return dict({"type": "array", "items": items}, **extra)


def _obj(properties: dict, required=(), closed: bool = False, **extra) -> dict:
    """
    An object of C{properties}; C{closed}: no other key (request bodies: the
    server refuses an unknown key). Response objects stay open.
    """
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def _read(properties: dict, **extra) -> dict:
    """A response object: every listed key is always there; others may be."""
    return _obj(properties, required=list(properties), **extra)


def _list_of(item: str, description: str) -> dict:
    """The list envelope: a page of C{item}s and the cursor of the next page (null: the last)."""
    return _read({
        "items": _array(_ref(item)),
        "next_cursor": _nullable(_string(description="pass it back as cursor for the next "
                                                     "page; null on the last page")),
    }, description=description)


# --- Operation helpers ------------------------------------------------------------------------

_ERRORS = {
    400: ("BadJson", "The body is not valid JSON (bad_json)."),
    401: ("Unauthorized", "No valid credential: sign in (a session cookie) or send "
                          "Authorization: Bearer with a JWT or an API key."),
    403: ("Forbidden", "Not an administrator, a route-scoped API key (forbidden), or a change "
                       "made with the session cookie without its X-CSRF-Token or from another "
                       "origin (csrf)."),
    404: ("NotFound", "No such item (not_found)."),
    409: ("Conflict", "The change is refused as it stands: read_only (a route of the config "
                      "file or of PRIVATE_BACKEND_URL), conflict (the name is taken), or a rule "
                      "of the item (own_account, own_key, hugging_face_user)."),
    412: ("Stale", "If-Match does not match the item's current ETag: someone changed it "
                   "(stale). Nothing was changed; read it again."),
    413: ("TooLarge", "The body is larger than the gateway takes on its own paths: "
                      "16 KiB, 1 MiB for a config import (content_too_large, too_large)."),
    415: ("UnsupportedMediaType", "The body's Content-Type is not the one this operation "
                                 "takes (unsupported_media_type)."),
    422: ("Invalid", "Fields that are not valid (invalid): errors names each one, "
                    "field \"\" being the body itself."),
    503: ("Unavailable", "The gateway cannot do this now (e.g. its store is unavailable); "
                         "try again."),
}
# Every operation may answer these.
_ALWAYS = (401, 403, 503)
# An operation taking a JSON body may answer these as well.
_JSON_BODY_ERRORS = (400, 413, 415, 422)


def _errors(*statuses: int) -> dict:
    """The error responses C{statuses} (besides L{_ALWAYS}), as references."""
    return {str(status): {"$ref": "#/components/responses/" + _ERRORS[status][0]}
            for status in sorted(set(statuses) | set(_ALWAYS))}


def _header(schema: dict, description: str, required: bool = True) -> dict:
    return {"description": description, "required": required, "schema": schema}


_ETAG = _header(_string(), "The item's strong entity-tag, as its etag key: pass it as "
                           "If-Match to change or delete it only if nobody else did.")


def _location(what: str) -> dict:
    return _header(_string(), "The new %s's URL." % (what,))


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _answer(description: str, schema=None, headers=None, links=None,
            content=None) -> dict:
    """A successful response: its JSON C{schema} (None: no body), C{headers}, C{links}."""
    response = {"description": description}
    if content is not None:
        response["content"] = content
    elif schema is not None:
        response["content"] = _json(schema)
    if headers:
        response["headers"] = headers
    if links:
        response["links"] = links
    return response


def _json_body(schema: dict, description: str, media_types=("application/json",)) -> dict:
    return {"required": True, "description": description,
            "content": {media_type: {"schema": schema} for media_type in media_types}}


def _param(name: str) -> dict:
    """A reference to the parameter C{name} of the components."""
    return {"$ref": "#/components/parameters/" + name}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _operation(operation_id: str, tag: str, summary: str, answers: dict, errors=(),
               parameters=(), body=None, description=None) -> dict:
    """
    An operation: its successful C{answers} (status -> response) and the
    error statuses it may answer besides those of every operation.
    """
    operation = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = list(parameters)
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = dict(answers, **_errors(*errors))
    return operation


def _link(operation_id: str, **parameters) -> dict:
    return {"operationId": operation_id, "parameters": parameters}


def _item_links(key: str, get=None, update=None, delete=None) -> dict:
    """
    Links from an answer holding an item to the operations on that item (the
    stateful tests follow them): the path parameter C{key} is the item's
    C{key}, and If-Match its ETag.
    """
    links = {}
    value = "$response.body#/" + key
    if get:
        links[get] = _link(get, **{"path." + key: value})
    for target in (update, delete):
        if target:
            links[target] = _link(target, **{"path." + key: value,
                                              "header.If-Match": "$response.header.ETag"})
    return links


_PAGING = (_param("Limit"), _param("Cursor"))
_CHANGE = (_param("CsrfToken"),)
_CHANGE_ITEM = (_param("CsrfToken"), _param("IfMatch"))
_PATCH_TYPES = ("application/json", "application/merge-patch+json")
# What an import takes: application/toml, and the text types tools send text as.
_TOML_TYPES = ("application/toml", "text/toml", "text/plain")


# --- Components -------------------------------------------------------------------------------

def _error_schema() -> dict:
    return _obj({
        "error": _string(description="a code: bad_json, forbidden, csrf, not_found, read_only, "
                                     "conflict, stale, invalid..."),
        "detail": _string(description="a sentence for people"),
        "errors": _array(_ref("FieldError"), description="422 only: every bad field"),
    }, required=("error", "detail"), description="The body of every error answer.")


def _access() -> dict:
    requirements = _array(_string(REQUIREMENT), minItems=1,
                          description="any one of them suffices; the admin role passes all")
    return {"oneOf": [{"type": "string", "enum": ["public", "signed_in"]}, requirements],
            "description": '"public" (anyone), "signed_in" (anyone the gateway knows) or '
                           'requirements like ["role:team", "user:alice", "hf_org:acme"]'}


def _route_fields(patch: bool) -> dict:
    """The writable keys of a route; every one may be null (its default)."""
    fields = {
        "name": _string(ROUTE_NAME, description="unique; a route's name cannot change"
                        if patch else "unique"),
        "hosts": _array(_string(HOST, maxLength=253), uniqueItems=True,
                        description="exact host names or *.example.org; [] or null: any host"),
        "path": _string(ROUTE_PATH, description='the prefix it takes, default "/"'),
        "strip_path": {"type": "boolean", "description": "drop the prefix upstream, default "
                                                         "true"},
        "balance": _string(enum=["round_robin", "least_in_flight"]),
        "affinity": _string(enum=["none", "cookie", "gradio"]),
        "retries": _integer(0, 10, description="extra upstreams tried, idempotent requests "
                                               "only; default 0"),
        "health_path": _string(r"^/[^#]*$", description="the active probe's path; null: none"),
        "health_interval": {"type": "number", "minimum": 1, "maximum": 3600,
                            "description": "seconds between probes, default 10"},
        "access": _access(),
        "enabled": {"type": "boolean", "description": "false: the route answers 503 "
                                                      "route_disabled; default true"},
        "upstreams": _array(_ref("UpstreamWrite"), minItems=1,
                            description="replaced whole" if patch else "at least one"),
    }
    for key in fields:
        if key not in ("name", "upstreams"):  # null there is refused: required
            fields[key] = _nullable(fields[key])
    return fields


def _schemas() -> dict:
    token_state = _read({"set": {"type": "boolean"}},
                        description="Whether there is a token: its value is never shown.")
    token_write = {
        "anyOf": [
            _string(TOKEN, maxLength=4096, description='the token itself (kept encrypted), '
                                                       'or "env:NAME" or "file:/path"'),
            _obj({"set": {"type": "boolean"}}, required=("set",), closed=True,
                 description='{"set": true}: keep the token of the upstream with the same '
                             'url; {"set": false}: none'),
            {"type": "null", "description": "no token"},
        ],
    }
    upstream_write = _obj({
        "url": _nullable(_string(UPSTREAM_URL, description="the origin, https://host[:port]")),
        "token": token_write,
        "weight": _nullable(_integer(1, 1000, description="default 1")),
        "space": _nullable(_string(SPACE, description="the Hugging Face repo id, user/space: "
                                                      "alone, the url is the Space's")),
    }, closed=True, anyOf=[
        {"required": ["url"], "properties": {"url": {"type": "string"}}},
        {"required": ["space"], "properties": {"space": {"type": "string"}}},
    ], description="An upstream as written: url, or space alone.")
    upstream = _read({
        "url": _string(),
        "token": _ref("TokenState"),
        "weight": _integer(),
        "space": _nullable(_string()),
    })
    route = _read({
        "name": _string(ROUTE_NAME),
        "hosts": _array(_string()),
        "path": _string(),
        "strip_path": {"type": "boolean"},
        "balance": _string(enum=["round_robin", "least_in_flight"]),
        "affinity": _string(enum=["none", "cookie", "gradio"]),
        "retries": _integer(),
        "health_path": _nullable(_string()),
        "health_interval": {"type": "number"},
        "access": _access(),
        "enabled": {"type": "boolean"},
        "upstreams": _array(_ref("Upstream")),
        "source": _string(enum=["store", "file", "env"],
                          description="store: made here, editable; file and env: read-only"),
        "version": _nullable(_integer()),
        "created_at": _nullable({"type": "number"}),
        "updated_at": _nullable({"type": "number"}),
        "updated_by": _nullable(_string()),
        "etag": _string(),
    }, description="A route (a Space). version, created_at, updated_at and updated_by are "
                   "null for the config file's routes and PRIVATE_BACKEND_URL's.")
    route_create = _obj(_route_fields(patch=False), required=("name", "upstreams"), closed=True,
                        description="A new route: the config file's keys.")
    route_patch = _obj(_route_fields(patch=True), closed=True,
                       description="A JSON merge patch (RFC 7396) of the route's writable keys: "
                                   "null restores a key's default, arrays replace whole.")
    upstream_test = _obj({
        "url": _string(UPSTREAM_URL, description="an upstream to try, with token"),
        "token": _nullable(_string(PRINTABLE, maxLength=4096)),
        "route": _nullable(_string(ROUTE_NAME, description="or a route's upstream, with its "
                                                           "stored token")),
        "upstream": _integer(0, description="the upstream's index in route, default 0"),
        "path": _string(r"^/[\x21-\x7e]*$", maxLength=2048, description='default "/"'),
    }, closed=True, anyOf=[
        {"required": ["url"]},
        {"required": ["route"], "properties": {"route": {"type": "string"}}},
    ], description='{"url", "token"?, "path"?} or {"route", "upstream"?, "path"?}.')
    upstream_test_result = _read({
        "ok": {"type": "boolean", "description": "an answer below 500 came"},
        "status": _nullable(_integer()),
        "duration_ms": {"type": "number"},
        "error": _nullable(_string()),
    })
    user = _read({
        "username": _string(),
        "roles": _array(_string()),
        "disabled": {"type": "boolean"},
        "email": _nullable(_string()),
        "password": _ref("TokenState"),
        "totp": _ref("TokenState"),
        "created_at": {"type": "number"},
        "updated_at": {"type": "number"},
        "etag": _string(),
    }, description='A user; a Hugging Face sign-in\'s is "hf:<username>".')
    password = _string(minLength=8, maxLength=1024)
    roles = _array(_string(ROLE))
    user_create = _obj({
        "username": _string(USERNAME, description="1 to 64 of A-Z, a-z, 0-9, . _ @ -"),
        "password": _nullable(dict(password, description="none: the user gets an invitation")),
        "roles": roles,
        "email": _nullable(_string(EMAIL)),
    }, required=("username",), closed=True)
    user_patch = _obj({
        "username": _string(ANY_USERNAME, description="the user's own: a name cannot change"),
        "roles": _nullable(roles),
        "disabled": {"type": "boolean", "description": "true also ends the user's sessions"},
        "email": _nullable(_string(EMAIL)),
        "password": _nullable(dict(password, description="a new one: also ends the user's "
                                                         "sessions; null: unchanged")),
        "totp": {"type": "null", "description": "null removes the second factor"},
    }, closed=True, description="A JSON merge patch of the user.")
    invite_create = _obj({
        "expires_in": _integer(300, 30 * 86400, description="seconds, default 604800 "
                                                            "(7 days)"),
    }, closed=True)
    invite = _read({
        "url": _string(description="the one-use link where the person sets their password; "
                                   "shown once"),
        "expires_at": {"type": "number"},
    })
    key_fields = {
        "id": _string(KEY_ID),
        "user": _string(),
        "name": _nullable(_string()),
        "route": _nullable(_string(description="the one route the key is good for; null: "
                                               "every route")),
        "expires_at": _nullable({"type": "number"}),
        "last_used_at": _nullable({"type": "number"}),
        "created_at": {"type": "number"},
        "revoked_at": _nullable({"type": "number", "description": "always null: the API "
                                                                  "lists and reads keys in "
                                                                  "force only"}),
        "etag": _string(),
    }
    api_key = _read(key_fields, description="An API key (never its secret).")
    api_key_created = _read(dict(key_fields, key=_string(
        description="the key itself (wh_...): in this answer only, never again")))
    api_key_create = _obj({
        "user": _string(ANY_USERNAME, description="the owner, default yourself"),
        "name": _nullable(_string(PRINTABLE, minLength=1, maxLength=100)),
        "route": _nullable(_string(ROUTE_NAME)),
        "expires_in_days": _nullable(_integer(1, 3650, description="null: never expires")),
    }, closed=True)
    session = _read({
        "id": _string(SESSION_ID),
        "user": _string(),
        "via": _string(),
        "created_at": {"type": "number"},
        "expires_at": {"type": "number"},
        "address": _nullable(_string()),
        "user_agent": _nullable(_string()),
        "etag": _string(),
    }, description="An active sign-in session.")
    audit_event = _read({
        "id": _integer(1),
        "at": {"type": "number"},
        "actor": _nullable(_string()),
        "kind": _string(description="login.succeeded, login.failed, login.throttled, logout, "
                                    "token.refreshed, token.reused, user.created, "
                                    "user.updated, user.deleted, user.invited, invite.used, "
                                    "key.created, key.revoked, session.revoked, "
                                    "route.created, route.updated, route.deleted, "
                                    "config.imported"),
        "source": _nullable(_string()),
        "detail": {"type": "object", "description": "what happened, secrets masked"},
    })
    pair = {"type": "array", "items": _string(), "minItems": 2, "maxItems": 2}
    header_pairs = _array(pair, description="[name, value] pairs, credentials redacted")
    request_entry = _read({
        "id": _integer(1),
        "time": {"type": "number"},
        "request_id": _nullable(_string()),
        "method": _string(),
        "path": _string(),
        "route": _nullable(_string()),
        "status": _nullable(_integer()),
        "duration_ms": {"type": "number"},
        "user": _nullable(_string()),
        "client": _string(),
        "request_headers": header_pairs,
        "response_headers": _nullable(header_pairs),
    }, description="A recent exchange (kept in memory).")
    log_line = _read({
        "id": _integer(1),
        "time": {"type": "number"},
        "level": _string(enum=["debug", "info", "warn", "error", "critical"]),
        "namespace": _string(),
        "text": _string(),
    })
    log_page = _read({
        "items": _array(_ref("LogLine")),
        "next_cursor": _nullable(_string()),
        "last_id": _integer(0, description="where following starts: pass it as after "
                                           "(every worker's lines kept later have larger "
                                           "ids; ids order lines by time)"),
    }, description="Log lines newest first.")
    upstream_status = _obj({
        "upstream": _string(),
        "state": _string(enum=["up", "ejected", "down"]),
        "last_error": _nullable(_string()),
        "in_flight": _integer(0),
        "space": _nullable(_string()),
    }, required=("upstream", "state", "last_error", "in_flight"))
    route_status = _read({
        "name": _string(),
        "hosts": _array(_string()),
        "path": _string(),
        "source": _string(enum=["store", "file", "env"]),
        "enabled": {"type": "boolean"},
        "requests_per_second": {"type": "number"},
        "p95_ms": _nullable({"type": "number"}),
        "error_rate": {"type": "number"},
        "requests": _integer(0),
        "errors": _integer(0),
        "in_flight": _integer(0),
        "upstreams": _array(_ref("UpstreamStatus")),
    })
    quantile = _nullable({"type": "number"})
    status = _read({
        "status": _string(enum=["ok", "draining"]),
        "version": _string(),
        "uptime_seconds": {"type": "number"},
        "requests_per_second": {"type": "number"},
        "latency_ms": _read({"p50": quantile, "p95": quantile, "p99": quantile}),
        "error_rate": {"type": "number"},
        "requests": _integer(0),
        "errors": _integer(0),
        "in_flight": _integer(0),
        "open_websockets": _integer(0),
        "open_streams": _integer(0),
        "routes": _array(_ref("RouteStatus")),
    })
    names = _array(_string())
    import_result = _read({
        "dry_run": {"type": "boolean"},
        "added": names, "changed": names, "removed": names, "unchanged": names,
    }, description="What the import changes (dry_run: would change), route by route.")
    return {
        "Error": _error_schema(),
        "FieldError": _read({
            "field": _string(description='the field\'s path, e.g. upstreams[1].url; "": '
                                         'the body'),
            "message": _string(),
        }),
        "TokenState": token_state,
        "UpstreamWrite": upstream_write,
        "Upstream": upstream,
        "Route": route,
        "RouteCreate": route_create,
        "RoutePatch": route_patch,
        "RouteList": _list_of("Route", "Routes by name."),
        "UpstreamTest": upstream_test,
        "UpstreamTestResult": upstream_test_result,
        "User": user,
        "UserCreate": user_create,
        "UserPatch": user_patch,
        "UserList": _list_of("User", "Users by name."),
        "InviteCreate": invite_create,
        "Invite": invite,
        "ApiKey": api_key,
        "ApiKeyCreate": api_key_create,
        "ApiKeyCreated": api_key_created,
        "ApiKeyList": _list_of("ApiKey", "API keys, oldest first."),
        "Session": session,
        "SessionList": _list_of("Session", "Sessions, newest first."),
        "AuditEvent": audit_event,
        "AuditEventList": _list_of("AuditEvent", "Audit events, newest first."),
        "RequestEntry": request_entry,
        "RequestList": _list_of("RequestEntry", "Recent exchanges, newest first."),
        "LogLine": log_line,
        "LogPage": log_page,
        "UpstreamStatus": upstream_status,
        "RouteStatus": route_status,
        "Status": status,
        "ImportResult": import_result,
    }


def _path_param(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema}


def _parameters() -> dict:
    return {
        "Limit": _query("limit", _integer(1, MAX_LIMIT, default=50),
                        "items per page, default 50"),
        "Cursor": _query("cursor", _string(CURSOR), "the next_cursor of the previous page"),
        "IfMatch": {"name": "If-Match", "in": "header", "required": False,
                    "schema": _string(),
                    "description": "the item's ETag as read: the change is made only if the "
                                   "item is still that one (412 otherwise)"},
        "CsrfToken": {"name": "X-CSRF-Token", "in": "header", "required": False,
                      "schema": _string(),
                      "description": "With the session cookie, every request but a GET "
                                     "must carry the session's CSRF token (GET "
                                     "/_gateway/auth/csrf gives it) and come from the "
                                     "gateway's own origin: 403 csrf otherwise. Not needed "
                                     "with a Bearer credential."},
        "RouteName": _path_param("name", _string(ROUTE_NAME), "the route's name"),
        "Username": _path_param("username", _string(ANY_USERNAME),
                                'the user\'s name ("hf:<username>" for a Hugging Face '
                                'sign-in)'),
        "KeyId": _path_param("id", _string(KEY_ID), "the API key's id"),
        "SessionId": _path_param("id", _string(SESSION_ID), "the session's id"),
        "RequestId": _path_param("id", _integer(1), "the exchange's id"),
    }


def _responses() -> dict:
    responses = {}
    for status, (name, description) in sorted(_ERRORS.items()):
        response = {"description": description, "content": _json(_ref("Error"))}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": _header(
                _string(), 'the Bearer challenge: Bearer realm="wighaven"', required=False)}
        responses[name] = response
    return responses


# --- Paths ------------------------------------------------------------------------------------

_ITEM_CHANGE = (404, 409, 412) + _JSON_BODY_ERRORS


def _collection_paths(plural: str, noun: str, key: str, parameter: str,
                      in_force: str, descriptions: dict) -> dict:
    """
    The five operations of a collection of named items (routes, users):
    C{/<plural>} lists and creates, C{/<plural>/{<key>}} reads, changes
    (merge patch) and deletes. C{noun} names the schemas (C{Route},
    C{RouteList}, C{RouteCreate}, C{RoutePatch}) and the operations
    (C{listRoutes}...); C{in_force} ends the answers to a change (", in
    force." for routes: the table is swapped before the answer); the
    C{descriptions} of "create", "update" and "delete" say their 409s.
    """
    word = noun.lower()
    plural_noun = plural.capitalize()
    on_item = dict(update="update" + noun, delete="delete" + noun)
    return {
        "/" + plural: {
            "get": _operation(
                "list" + plural_noun, plural, "List the " + plural,
                {"200": _answer("A page of %s, by name." % plural, _ref(noun + "List"))},
                (422,), parameters=_PAGING),
            "post": _operation(
                "create" + noun, plural, "Add a " + word,
                {"201": _answer("The %s%s" % (word, in_force), _ref(noun),
                                headers={"ETag": _ETAG, "Location": _location(word)},
                                links=_item_links(key, get="get" + noun, **on_item))},
                (409,) + _JSON_BODY_ERRORS, parameters=_CHANGE,
                body=_json_body(_ref(noun + "Create"), "The %s." % word),
                description=descriptions["create"]),
        },
        "/%s/{%s}" % (plural, key): {
            "parameters": [_param(parameter)],
            "get": _operation(
                "get" + noun, plural, "Read a " + word,
                {"200": _answer("The %s." % word, _ref(noun), headers={"ETag": _ETAG},
                                links=_item_links(key, **on_item))},
                (404,)),
            "patch": _operation(
                "update" + noun, plural, "Change a " + word,
                {"200": _answer("The %s as changed%s" % (word, in_force), _ref(noun),
                                headers={"ETag": _ETAG})},
                _ITEM_CHANGE, parameters=_CHANGE_ITEM,
                body=_json_body(_ref(noun + "Patch"), "A JSON merge patch (RFC 7396).",
                                _PATCH_TYPES),
                description=descriptions["update"]),
            "delete": _operation(
                "delete" + noun, plural, "Delete a " + word,
                {"204": _answer("Deleted.")}, (404, 409, 412), parameters=_CHANGE_ITEM,
                description=descriptions["delete"]),
        },
    }


def _route_paths() -> dict:
    read_only = "409 read_only for a route of the config file or of PRIVATE_BACKEND_URL."
    return dict(_collection_paths("routes", "Route", "name", "RouteName", ", in force.", {
        "create": "Validated whole (its upstreams' URLs included) before it is "
                  "stored; 409 conflict when the name is taken.",
        "update": read_only, "delete": read_only}), **{
        "/upstreams/test": {
            "post": _operation(
                "testUpstream", "routes", "Test an upstream's connection",
                {"200": _answer("The outcome of one GET (a failed connection is a 200 too, "
                                "with ok false).", _ref("UpstreamTestResult"))},
                _JSON_BODY_ERRORS, parameters=_CHANGE,
                body=_json_body(_ref("UpstreamTest"), "What to test.")),
        },
    })


def _people_paths() -> dict:
    user_filter = _query("user", _string(), "only this user's")
    return dict(_collection_paths("users", "User", "username", "Username", ".", {
        "create": "409 conflict when the name is taken.",
        "update": "409 own_account: you cannot disable yourself nor drop your own "
                  "admin role.",
        "delete": "409 own_account: you cannot delete yourself."}), **{
        "/users/{username}/invite": {
            "parameters": [_param("Username")],
            "post": _operation(
                "inviteUser", "users", "Make an invitation link",
                {"201": _answer("The link (shown once).", _ref("Invite"))},
                (404, 409) + _JSON_BODY_ERRORS, parameters=_CHANGE,
                body=_json_body(_ref("InviteCreate"), "The link's lifetime ({}: the default)."),
                description="A one-use link where the person sets their password. 409 "
                            "hugging_face_user: such users sign in with Hugging Face."),
        },
        "/api-keys": {
            "get": _operation(
                "listApiKeys", "api-keys", "List the API keys",
                {"200": _answer("A page of API keys, oldest first.", _ref("ApiKeyList"))},
                (422,), parameters=(user_filter,) + _PAGING),
            "post": _operation(
                "createApiKey", "api-keys", "Make an API key",
                {"201": _answer("The key, with its secret (shown once).",
                                _ref("ApiKeyCreated"),
                                headers={"ETag": _ETAG, "Location": _location("API key")},
                                links=_item_links("id", get="getApiKey",
                                                  delete="revokeApiKey"))},
                _JSON_BODY_ERRORS, parameters=_CHANGE,
                body=_json_body(_ref("ApiKeyCreate"), "The key's owner, label, scope and "
                                                      "lifetime.")),
        },
        "/api-keys/{id}": {
            "parameters": [_param("KeyId")],
            "get": _operation(
                "getApiKey", "api-keys", "Read an API key",
                {"200": _answer("The key (never its secret).", _ref("ApiKey"),
                                headers={"ETag": _ETAG},
                                links=_item_links("id", delete="revokeApiKey"))},
                (404,)),
            "delete": _operation(
                "revokeApiKey", "api-keys", "Revoke an API key",
                {"204": _answer("Revoked.")}, (404, 409, 412), parameters=_CHANGE_ITEM,
                description="A revoked key is gone from the API (listed no more, 404 "
                            "here); the audit trail keeps key.created and key.revoked. "
                            "409 own_key: the request is made with that key."),
        },
        "/sessions": {
            "get": _operation(
                "listSessions", "sessions", "List the active sessions",
                {"200": _answer("A page of sessions, newest first.", _ref("SessionList"))},
                (422,), parameters=(user_filter,) + _PAGING),
        },
        "/sessions/{id}": {
            "parameters": [_param("SessionId")],
            "delete": _operation(
                "revokeSession", "sessions", "End a session",
                {"204": _answer("Ended.")}, (404, 412), parameters=_CHANGE_ITEM),
        },
    })


def _observe_paths() -> dict:
    levels = ["debug", "info", "warn", "error", "critical"]
    return {
        "/audit": {
            "get": _operation(
                "listAuditEvents", "observe", "Read the audit log",
                {"200": _answer("A page of events, newest first.", _ref("AuditEventList"))},
                (422,), parameters=(
                    _query("actor", _string(), "only this user's actions"),
                    _query("kind", _string(), "only events of this kind, e.g. "
                                              "route.updated"),
                ) + _PAGING),
        },
        "/requests": {
            "get": _operation(
                "listRequests", "observe", "List the recent exchanges",
                {"200": _answer("A page of exchanges, newest first.", _ref("RequestList"))},
                (422,), parameters=(
                    _query("route", _string(), "only this route's"),
                    _query("status_class", _string(r"^[1-5][xX]{2}$"),
                           "only answers of this class: 1xx, 2xx, 3xx, 4xx or 5xx"),
                    _query("user", _string(), "only this user's"),
                ) + _PAGING),
        },
        "/requests/{id}": {
            "parameters": [_param("RequestId")],
            "get": _operation(
                "getRequest", "observe", "Read a recent exchange",
                {"200": _answer("The exchange.", _ref("RequestEntry"))}, (404,),
                description="404 once it has left the in-memory ring."),
        },
        "/logs": {
            "get": _operation(
                "listLogs", "observe", "Read the recent log lines",
                {"200": _answer("A page of log lines, newest first.", _ref("LogPage"))},
                (422,), parameters=(
                    _query("level", _string(enum=levels), "this level and above"),
                    _query("text", _string(), "only lines containing it (any case)"),
                    _query("after", _integer(0, MAX_LOG_ID),
                           "only lines newer than this id, oldest first (to follow live: "
                           "pass last_id back every 2 s)"),
                ) + _PAGING),
        },
        "/status": {
            "get": _operation(
                "getStatus", "observe", "The gateway's status and figures",
                {"200": _answer("Figures of the gateway and of each route.", _ref("Status"))}),
        },
    }


def _config_paths() -> dict:
    toml = {"schema": _string()}
    return {
        "/config/export": {
            "get": _operation(
                "exportConfig", "config", "Export the routes as TOML",
                {"200": _answer("A config file of every route, tokens as env: references.",
                                content={"application/toml": toml, "text/plain": toml})}),
        },
        "/config/import": {
            "post": _operation(
                "importConfig", "config", "Import routes from TOML",
                {"200": _answer("What changed (or, dry_run, would change).",
                                _ref("ImportResult"))},
                (409, 413, 415, 422), parameters=(
                    _query("dry_run", {"type": "boolean", "default": False},
                           "true: only say what would change"),
                ) + _CHANGE,
                body={"required": True, "description": "A config file ([[routes]]): the "
                                                       "stored routes as they should be.",
                      "content": {media_type: toml for media_type in _TOML_TYPES}},
                description="All or nothing. The stored routes it leaves out are removed; "
                            "the config file's may be repeated unchanged only (409 "
                            "read_only)."),
        },
    }


def openapi_document() -> dict:
    """The admin API's OpenAPI 3.1.0 document (a new dict each call: change it freely)."""
    paths = {}
    for part in (_route_paths(), _people_paths(), _observe_paths(), _config_paths()):
        paths.update(part)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "WigHaven Gateway admin API",
            "version": "1",
            "description": "The gateway's administration, for administrators only (AUTH=on). "
                           "JSON in and out; answers are never cached. Lists are paged by "
                           "cursor; items carry an etag (and item GETs an ETag header) to "
                           "pass as If-Match to PATCH or DELETE; PATCH bodies are JSON merge "
                           "patches (RFC 7396).",
        },
        "servers": [{"url": API_SERVER}],
        "security": [{"bearer": []}, {"session": []}],
        "tags": [{"name": name} for name in ("routes", "users", "api-keys", "sessions",
                                             "observe", "config")],
        "paths": {path: paths[path] for path in PATHS},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "bearerFormat": "JWT or API key",
                           "description": "Authorization: Bearer <JWT or API key> of an "
                                          "administrator (a route-scoped key never)."},
                "session": {"type": "apiKey", "in": "cookie", "name": _SESSION_COOKIE,
                            "description": "The browser's session cookie: every request but "
                                           "a GET also needs X-CSRF-Token and the "
                                           "gateway's own origin."},
            },
            "parameters": _parameters(),
            "responses": _responses(),
            "schemas": _schemas(),
        },
    }
    return copy.deepcopy(document)

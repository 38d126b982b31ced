"""The admin API's routes (Spaces), upstream connection tests, and the
configuration's export and import.

Rules:
  - The table is the config file's routes (C{"source": "file"}, and
    PRIVATE_BACKEND_URL's, C{"env"}: read-only here, 409) and the store's
    (C{"store"}). A change is validated whole (the route, its upstreams'
    URLs against server-side request forgery, the whole table for clashes)
    before anything is written; then it is written (with the version it was
    made from: two administrators never overwrite each other, 412), applied
    in this process before the answer, and in the others within a second
    (L{wighaven.run.reload}).
  - The audit event of a change holds the route's JSON before and after,
    which never carries a token (a token reads C{{"set": true}}).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import defer

from ..admin.config_io import ReadOnly, export_toml, imported_spec, parse_import, route_table
from ..admin.connection_test import test_connection
from ..admin.route_specs import (
    check_spec, route_item, spec_from_body, writable,
)
from ..config.routes import RouteError
from ..routing.connect_guard import GuardedReactor
from ..routing.upstream_guard import UpstreamRefused, check_upstream
from ..store import StoreError
from ..store.errors import StaleVersion
from .admin_api import (
    Answer, ApiError, STALE, arg, check_if_match, item_answer, limit_arg, not_found, with_etag,
)
from .api_support import ValidationFailed, field_path, merge_patch, page

__all__ = ["RouteApi"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def _read_only(route) -> ApiError:
    where = ("the config file (WIGHAVEN_CONFIG)" if route.source == "file"
             else "PRIVATE_BACKEND_URL")
    return ApiError(409, "read_only", "route %r comes from %s and cannot be changed here; "
                    "change it there and reload" % (route.name, where))


# A config import's TOML, at most (an administrator's only: see GatewaySite.allow_large_body);
# some 3,000 routes. Every other body the gateway answers itself is 16 KiB at most.
IMPORT_MAX_BYTES = 1 << 20
IMPORT_PATH = "/config/import"


class RouteApi:
    """
    @param reloader: the L{wighaven.run.reload.Reloader} (the base routes,
        the parsing of stored ones, the apply).
    @param store: the store (its routes).
    @param box: the L{wighaven.store.secret_box.SecretBox} sealing tokens.
    @param policy: the L{wighaven.routing.upstream_guard.UpstreamPolicy}.
    @param resolve: C{resolve(host, port)} -> Deferred of addresses.
    @param tls_policy: C{tls_policy()} -> the TLS policy of a connection test.
    """

    def __init__(self, frame, reloader, store, box, policy, resolve, reactor, tls_policy,
                 token_header: str):
        self._frame = frame
        self._reloader = reloader
        self._store = store
        self._box = box
        self._policy = policy
        self._resolve = resolve
        self._reactor = reactor
        self._tls_policy = tls_policy
        self._token_header = token_header
        frame.endpoint("/routes", ["GET"], self.list)
        frame.endpoint("/routes", ["POST"], self.create)
        frame.endpoint("/routes/<name>", ["GET"], self.get)
        frame.endpoint("/routes/<name>", ["PATCH"], self.update)
        frame.endpoint("/routes/<name>", ["DELETE"], self.remove)
        frame.endpoint("/upstreams/test", ["POST"], self.test)
        frame.endpoint("/config/export", ["GET"], self.export)
        frame.endpoint(IMPORT_PATH, ["POST"], self.import_)

    # Reading.

    def _rows(self) -> dict:
        return {row["name"]: row for row in self._store.read_routes()}

    def _items(self) -> list:
        """Every route's item, by name: the base routes', then the stored ones'."""
        items = [route_item(route) for route in self._reloader.base]
        for row in self._rows().values():
            items.append(route_item(self._reloader.stored_route(row["spec"]), row))
        return sorted(items, key=lambda item: item["name"])

    def _find(self, name: str):
        """(the item, the stored row or None) of route C{name}; 404 when none."""
        for route in self._reloader.base:
            if route.name == name:
                return route_item(route), None
        row = self._rows().get(name) if _NAME_CHARS.issuperset(name) else None
        if row is None:
            raise not_found("route")
        return route_item(self._reloader.stored_route(row["spec"]), row), row

    def list(self, request, identity):
        items = [with_etag(item) for item in self._items()]
        return defer.succeed(Answer(200, page(items, limit_arg(request), arg(request, "cursor"),
                                              key=lambda item: item["name"])))

    def get(self, request, identity, name):
        item, _ = self._find(name)
        return defer.succeed(item_answer(item))

    # Changing.

    @defer.inlineCallbacks
    def _validated(self, body, current_spec=None, replacing: Optional[str] = None):
        """(the spec to store, its Route) of C{body}; L{ValidationFailed} naming every bad field."""
        spec = spec_from_body(body, self._box.seal, current_spec)
        route = check_spec(spec, self._reloader.stored_route)
        yield self._check_upstreams(spec, current_spec)
        stored = [r for r in self._reloader.stored if r.name != (replacing or route.name)]
        try:
            self._reloader.table(stored + [route])
        except RouteError as e:
            raise ValidationFailed.one(e.field, e.message) from None
        return spec, route

    @defer.inlineCallbacks
    def _check_upstreams(self, spec, current_spec):
        """Every new upstream URL passes the forgery checks (all checked, all errors named)."""
        known = {u.get("url") for u in (current_spec or {}).get("upstreams", [])}
        checks = []
        for index, upstream in enumerate(spec["upstreams"]):
            if upstream["url"] in known:
                continue  # accepted before: a change of its weight must not need DNS again
            field = field_path("upstreams", index, "url")
            checks.append(check_upstream(upstream["url"], self._policy, self._resolve, field))
        results = yield defer.DeferredList(checks, consumeErrors=True)
        errors = [{"field": f.value.field, "message": f.value.message}
                  for ok, f in results if not ok and f.check(UpstreamRefused)]
        for ok, failure in results:
            if not ok and not failure.check(UpstreamRefused):
                failure.raiseException()
        if errors:
            raise ValidationFailed(errors)

    def _still_applies(self, rows) -> None:
        """
        Inside a change's transaction, on the store's thread: every stored
        route as the change leaves them, with the config file's, makes a
        table this gateway applies (L{RouteError} rolls the change back).
        The check before it (L{_validated}) saw this process's table, which
        another process's change may have moved meanwhile.
        """
        self._reloader.table([self._reloader.stored_route(row["spec"]) for row in rows])

    def _applied(self):
        """The stored routes in force in this process now (the others follow by themselves)."""
        if not self._reloader.apply_stored():
            raise ApiError(500, "not_applied", "the change was saved but could not be applied; "
                           "see the gateway's log")

    @defer.inlineCallbacks
    def create(self, request, identity):
        body = self._frame.json_body(request)
        name = body.get("name")
        if isinstance(name, str) and any(r.name == name for r in self._reloader.base):
            raise ApiError(409, "conflict", "a route of the config file is named %r" % (name,))
        spec, route = yield self._validated(body)
        try:
            row = yield self._store.add_route(route.name, spec, identity.user,
                                              check=self._still_applies)
        except RouteError as e:  # another process's change came first
            raise ValidationFailed.one(e.field, e.message) from None
        except StoreError:
            raise ApiError(409, "conflict", "a route named %r exists already" % (route.name,))
        self._applied()
        item = route_item(route, row)
        yield self._frame.audit("route.created", identity, request, route=route.name,
                                after=item)
        return item_answer(item, 201, location="/_gateway/api/v1/routes/" + route.name)

    @defer.inlineCallbacks
    def update(self, request, identity, name):
        patch = self._frame.json_body(request)
        item, row = self._find(name)
        if row is None:
            raise _read_only(self._base(name))
        changed = merge_patch(writable(item), patch)
        for key in sorted(set(patch) & {"source", "version", "created_at", "updated_at",
                                        "updated_by", "etag"}):
            raise ValidationFailed.one(key, "read-only: the gateway sets it")
        if changed.get("name") != name:
            raise ValidationFailed.one("name", "a route's name cannot change: add a new route")
        spec, route = yield self._validated(changed, row["spec"], replacing=name)
        check_if_match(request, item)  # a bad body is told first, whatever its version
        try:
            new_row = yield self._store.update_route(name, spec, identity.user,
                                                     expected_version=row["version"],
                                                     check=self._still_applies)
        except StaleVersion:
            raise STALE
        except RouteError as e:
            raise ValidationFailed.one(e.field, e.message) from None
        if new_row is None:
            raise not_found("route")
        self._applied()
        after = route_item(route, new_row)
        yield self._frame.audit("route.updated", identity, request, route=name, before=item,
                                after=after)
        return item_answer(after)

    def _base(self, name: str):
        return next(r for r in self._reloader.base if r.name == name)

    @defer.inlineCallbacks
    def remove(self, request, identity, name):
        item, row = self._find(name)
        if row is None:
            raise _read_only(self._base(name))
        check_if_match(request, item)
        try:
            removed = yield self._store.remove_route(name, expected_version=row["version"])
        except StaleVersion:
            raise STALE
        if not removed:
            raise not_found("route")
        self._applied()
        yield self._frame.audit("route.deleted", identity, request, route=name, before=item)
        return Answer(204)

    # Testing an upstream.

    @defer.inlineCallbacks
    def test(self, request, identity):
        body = self._frame.json_body(request)
        unknown = sorted(set(body) - {"url", "token", "route", "upstream", "path"})
        if unknown:
            raise ValidationFailed.one(unknown[0], "unknown key (known: url, token, route, "
                                       "upstream, path)")
        path = body.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/") or len(path) > 2048 or any(
                ord(c) < 0x21 or ord(c) > 0x7e for c in path):
            raise ValidationFailed.one("path", "must be a path starting with /")
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or not token.isprintable()
                                  or len(token) > 4096):
            raise ValidationFailed.one("token", "must be the token, one line")
        index = body.get("upstream", 0)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValidationFailed.one("upstream", "must be an upstream's index, from 0")
        if body.get("route") is not None:
            if "url" in body:
                raise ValidationFailed.one("url", "give a url, or a route's upstream, not both")
            url, token = self._stored_upstream(body["route"], index)
        else:
            url = body.get("url")
        try:
            # The stored ones are checked again: the rules may have changed since.
            scheme, host, port = yield check_upstream(url, self._policy, self._resolve, "url")
        except UpstreamRefused as e:
            raise ValidationFailed.one(e.field, e.message) from None
        origin = "%s://%s:%d" % (scheme, "[%s]" % host if ":" in host else host, port)
        # Connected through the same rules again: the name may answer otherwise now.
        outcome = yield test_connection(GuardedReactor(self._reactor, self._policy),
                                        self._tls_policy(), origin, path, token or None,
                                        self._token_header)
        return Answer(200, outcome)

    def _stored_upstream(self, name, index: int):
        """(url, token) of a route's upstream, by route name and index."""
        if not isinstance(name, str):
            raise ValidationFailed.one("route", "must be a route's name")
        live = next((live for live in self._reloader.base + self._reloader.stored
                     if live.name == name), None)
        if live is None:
            raise ValidationFailed.one("route", "no such route")
        if index >= len(live.upstreams):
            raise ValidationFailed.one("upstream", "the route has %d upstreams"
                                       % len(live.upstreams))
        upstream = live.upstreams[index]
        return upstream.url, upstream.token

    # The whole configuration.

    def export(self, request, identity):
        routes = sorted(self._reloader.base + self._reloader.stored, key=lambda r: r.name)
        return defer.succeed(Answer(200, text=export_toml(routes),
                                    content_type=b"application/toml; charset=utf-8"))

    @defer.inlineCallbacks
    def import_(self, request, identity):
        content_type = request.requestHeaders.getRawHeaders(b"content-type", [b""])[0]
        if content_type.split(b";")[0].strip().lower() not in (
                b"application/toml", b"text/plain", b"text/toml"):
            raise ApiError(415, "unsupported_media_type", "send the TOML with Content-Type: "
                           "application/toml")
        dry_run = (arg(request, "dry_run") or "false").lower()
        if dry_run not in ("true", "false", "1", "0"):
            raise ValidationFailed.one("dry_run", "must be true or false")
        data = request.content.read(IMPORT_MAX_BYTES + 1)
        if len(data) > IMPORT_MAX_BYTES:  # the channel refuses it first; kept as the rule
            raise ApiError(413, "too_large", "the TOML is larger than %d bytes" % IMPORT_MAX_BYTES)
        tables = parse_import(data)
        diff, plan = yield self._plan(tables)
        diff["dry_run"] = dry_run in ("true", "1")
        if diff["dry_run"] or not any(plan.values()):
            return Answer(200, diff)
        try:
            yield self._store.apply_routes(plan["added"], plan["changed"], plan["removed"],
                                           actor=identity.user, check=self._still_applies)
        except RouteError as e:
            raise ValidationFailed.one(e.field, e.message) from None
        except StoreError:
            raise ApiError(409, "conflict", "the stored routes changed meanwhile: preview again")
        self._applied()
        yield self._frame.audit("config.imported", identity, request,
                                **{key: diff[key] for key in ("added", "changed", "removed")})
        return Answer(200, diff)

    @defer.inlineCallbacks
    def _plan(self, tables):
        """(the diff by name, the store's changes) of an import; nothing written."""
        base = {route.name: route for route in self._reloader.base}
        rows = self._rows()
        diff = {"added": [], "changed": [], "removed": [], "unchanged": []}
        plan = {"added": [], "changed": [], "removed": []}
        parsed = []
        for index, table in enumerate(tables):
            name = table["name"]
            if name in base:
                if route_table(base[name]) != table:
                    raise ApiError(409, "read_only", str(ReadOnly(name)))
                diff["unchanged"].append(name)
                continue
            current = rows.get(name)
            spec = imported_spec(table, current["spec"] if current else None,
                                 self._reloader.env)
            try:
                route = check_spec(spec, self._reloader.stored_route)
                if current is None or current["spec"] != spec:
                    yield self._check_upstreams(spec, current["spec"] if current else None)
            except ValidationFailed as e:
                raise e.within("routes", index) from None
            parsed.append(route)
            if current is None:
                diff["added"].append(name)
                plan["added"].append((name, spec))
            elif current["spec"] != spec:
                diff["changed"].append(name)
                plan["changed"].append((name, spec))
            else:
                diff["unchanged"].append(name)
        named = {table["name"] for table in tables}
        for name in sorted(rows):
            if name not in named:
                diff["removed"].append(name)
                plan["removed"].append(name)
        try:
            self._reloader.table(parsed)
        except RouteError as e:
            raise ValidationFailed.one(e.field, str(e)) from None
        return diff, plan

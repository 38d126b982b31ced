"""The whole configuration as the config file's TOML: export, and import with a diff.

Rules:
  - The export is a config file (L{wighaven.config.routes}) holding every
    route of the config file and of the store. Tokens are references,
    never values: a file route's as its file writes them, a stored route's
    sealed token as C{env:WIGHAVEN_TOKEN_<ROUTE>_<N>} (L{export_name}), so
    the export can be kept in a repository, and the tokens given to a new
    gateway as environment variables of those names.
  - Importing it back keeps what it does not change: an upstream whose
    token is the export's name for it, with no such variable set, keeps
    the token it has.
  - An import describes the stored routes as they should be: those it
    names are added or changed, the stored routes it leaves out are
    removed. The config file's routes are read-only: the document may
    repeat them unchanged, never change them (L{ReadOnly}).
  - The diff says, by name, what would be added, changed, removed and left
    unchanged; applied, it is one transaction (all or nothing).
"""

from __future__ import annotations

import re
import sys
from typing import Mapping

import tomli_w

from ..config.routes import SEALED_PREFIX
from ..web.api_support import ValidationFailed, field_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ReadOnly", "export_name", "export_toml", "parse_import", "route_table"]

MAX_IMPORT = 1 << 20  # bytes of TOML an import may send
_HEADER = """\
# WigHaven Gateway configuration, exported from the admin panel.
# Tokens are never exported: each upstream names the environment variable
# (env:NAME) or file (file:/path) its token comes from. Routes made in the
# admin panel name WIGHAVEN_TOKEN_<ROUTE>_<N>: importing this file back into
# the same gateway keeps their tokens; a new gateway needs those variables.
"""


class ReadOnly(Exception):
    """The import changes a route of the config file (C{name})."""

    def __init__(self, name: str):
        super().__init__("route %r comes from the config file and cannot be changed here; "
                         "edit the file instead" % (name,))
        self.name = name


def export_name(route: str, index: int) -> str:
    """The variable a stored route's sealed token is exported as."""
    return "WIGHAVEN_TOKEN_%s_%d" % (re.sub(r"[^A-Z0-9]", "_", route.upper()), index + 1)


def route_table(route) -> dict:
    """A Route as its config file table (defaults left out, tokens as references)."""
    table = {"name": route.name}
    if route.hosts:
        table["hosts"] = list(route.hosts)
    if route.path != "/":
        table["path"] = route.path
    for key, default in (("strip_path", True), ("balance", "round_robin"),
                         ("affinity", "none"), ("retries", 0), ("health_path", None),
                         ("health_interval", 10.0), ("enabled", True)):
        value = getattr(route, key)
        if value != default:
            table[key] = int(value) if key == "health_interval" and value.is_integer() else value
    access = route.access.describe()
    if access != "signed_in":
        table["access"] = access
    table["upstreams"] = []
    for index, upstream in enumerate(route.upstreams):
        entry = {"url": upstream.url}
        if upstream.token_ref == "sealed":
            entry["token"] = "env:" + export_name(route.name, index)
        elif upstream.token_ref is not None:
            entry["token"] = upstream.token_ref
        if upstream.weight != 1:
            entry["weight"] = upstream.weight
        if upstream.space:
            entry["space"] = upstream.space
        if upstream.ca_bundle:
            entry["ca_bundle"] = upstream.ca_bundle
        table["upstreams"].append(entry)
    return table


def export_toml(routes) -> str:
    """The config file of C{routes} (the environment's route is not one of a file's)."""
    tables = [route_table(r) for r in routes if r.source != "env"]
    note = ""
    if any(r.source == "env" for r in routes):
        note = "# The route 'default' comes from PRIVATE_BACKEND_URL and HF_TOKEN.\n"
    return _HEADER + note + "\n" + tomli_w.dumps({"routes": tables})


def parse_import(data: bytes) -> list:
    """The route tables of an import's TOML (L{ValidationFailed} when it is not one)."""
    if len(data) > MAX_IMPORT:
        raise ValidationFailed.one("", "at most %d bytes of TOML" % MAX_IMPORT)
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValidationFailed.one("", "not valid TOML: %s" % (e,)) from None
    unknown = sorted(set(document) - {"routes"})
    if unknown:
        raise ValidationFailed.one(unknown[0], "unknown key (known: routes)")
    tables = document.get("routes", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValidationFailed.one("routes", "must be an array of tables ([[routes]])")
    names = [t.get("name") for t in tables]
    for index, name in enumerate(names):
        if not isinstance(name, str):
            raise ValidationFailed.one(field_path("routes", index, "name"), "required")
        if names.index(name) != index:
            raise ValidationFailed.one(field_path("routes", index, "name"),
                                       "%r is named twice" % (name,))
    return tables


def imported_spec(table: dict, current_spec, env: Mapping[str, str]) -> dict:
    """
    The spec to store for an imported table: its export names of tokens,
    with no such variable set, become the current sealed tokens again.
    """
    spec = dict(table)
    upstreams = []
    for index, upstream in enumerate(table.get("upstreams") or []):
        upstream = dict(upstream) if isinstance(upstream, dict) else upstream
        if isinstance(upstream, dict):
            token = upstream.get("token")
            name = "env:" + export_name(table["name"], index)
            if token == name and env.get(name[4:]) is None:
                kept = _sealed_token(current_spec, index)
                if kept is not None:
                    upstream["token"] = kept
        upstreams.append(upstream)
    if "upstreams" in table:
        spec["upstreams"] = upstreams
    return spec


def _sealed_token(spec, index: int):
    upstreams = (spec or {}).get("upstreams") or []
    if index < len(upstreams):
        token = upstreams[index].get("token")
        if isinstance(token, str) and token.startswith(SEALED_PREFIX):
            return token
    return None

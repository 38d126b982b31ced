"""The route model: the config file's `[[routes]]` (and the environment's one
backend) validated into frozen L{Route}s and L{Upstream}s.

Rule: a mistake anywhere (an unknown key, a duplicate name, a bad URL, a
missing secret, a literal token, two routes with the same match) is one
L{ConfigError} line naming the route and the key, e.g.
C{route 'chat': upstreams[1].token: ...}. Nothing half-valid comes out: a
table is returned whole or not at all, so a reload can keep the old one.

Secrets are references, never values in the file: C{token = "env:NAME"}
reads the environment, C{token = "file:/run/secrets/x"} a file (its
surrounding whitespace dropped). The resolved token lives only in
L{Upstream.token}, which is left out of every repr.

The schema (keys are a public interface; README "The config file"):

    [[routes]]
    name = "chat"                    # required, unique, [a-z0-9-]{1,63}
    hosts = ["chat.example.org"]     # optional; exact names or *.example.org
    path = "/chat"                   # optional prefix, default "/"
    strip_path = true                # default true
    balance = "round_robin"          # "round_robin" | "least_in_flight"
    affinity = "none"                # "none" | "cookie" | "gradio"
    retries = 1                      # extra upstreams tried, idempotent requests only
    health_path = "/healthz"         # optional active probe path
    health_interval = 10             # seconds between active probes (or Hub questions)
    access = "signed_in"             # with AUTH=on: "public" | "signed_in" |
                                     # ["role:team", "user:alice", "hf_org:acme"]
    enabled = true                   # false: the route answers 503 route_disabled

    [[routes.upstreams]]
    url = "https://user-chat-a.hf.space"
    token = "env:HF_TOKEN_CHAT"      # or "file:/run/secrets/x"
    weight = 1
    space = "user/chat-a"            # optional Hugging Face repo id
    ca_bundle = "/etc/ssl/private-ca.pem"  # optional
"""

from __future__ import annotations

import re
import sys
from typing import Mapping, Optional, Sequence, Tuple

import attrs

from ..auth.policy import SIGNED_IN, Access, parse_access
from .settings import ConfigError, ascii_host, check_ca_bundle, parse_origin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "BALANCERS", "AFFINITIES", "DEFAULT_ROUTE", "Route", "RouteError", "SEALED_PREFIX", "Upstream",
    "check_unique", "env_route", "load_route_file", "load_routes", "parse_route", "parse_routes",
    "route_table",
]

BALANCERS = ("round_robin", "least_in_flight")
AFFINITIES = ("none", "cookie", "gradio")
DEFAULT_ROUTE = "default"  # the name of the environment's route
MAX_RETRIES = 10
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_WEIGHT = 1000
# A token the store keeps encrypted (wighaven.store.secret_box): "sealed:<Fernet token>".
SEALED_PREFIX = "sealed:"

_ROUTE_KEYS = frozenset([
    "name", "hosts", "path", "strip_path", "balance", "affinity", "retries", "health_path",
    "health_interval", "upstreams", "access", "enabled",
])
_HEADER_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
_UPSTREAM_KEYS = frozenset(["url", "token", "weight", "space", "ca_bundle"])
_NAME_RE = re.compile(r"^[a-z0-9-]{1,63}$")
_SPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A path prefix: segments of visible ASCII, no query, fragment or dot segments.
_PATH_RE = re.compile(r"^(/[!$&'()*+,;=:@A-Za-z0-9._~%-]+)+$")


@attrs.frozen
class Upstream:
    """One backend of a route. C{token} is the resolved secret (or None)."""

    url: str  # scheme://host[:port], as written (trailing slash dropped)
    scheme: str
    host: str  # ASCII, lower-cased
    port: int
    token: Optional[str] = attrs.field(default=None, repr=False)
    token_ref: Optional[str] = None  # where the token came from: "env:NAME", "file:/x"
    weight: int = 1
    space: Optional[str] = None
    ca_bundle: Optional[str] = None

    @property
    def netloc(self) -> str:
        """host[:port] as it belongs in a Host header (the port only when not the default)."""
        host = "[%s]" % self.host if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else "%s:%d" % (host, self.port)

    @property
    def origin(self) -> str:
        """scheme://host[:port], normalized."""
        return "%s://%s" % (self.scheme, self.netloc)


@attrs.frozen
class Route:
    """A route: what requests it takes (C{hosts}, C{path}) and where they go."""

    name: str
    upstreams: Tuple[Upstream, ...]
    hosts: Tuple[str, ...] = ()
    path: str = "/"
    strip_path: bool = True
    balance: str = "round_robin"
    affinity: str = "none"
    retries: int = 0
    health_path: Optional[str] = None
    health_interval: float = 10.0
    access: Access = SIGNED_IN  # who may use it, with AUTH=on (wighaven.auth.policy)
    enabled: bool = True  # False: 503 route_disabled, nothing forwarded
    source: str = "file"  # "file", "env" or "store" (made through the admin API)


class RouteError(ConfigError):
    """
    A route that does not validate: C{field} names the key (C{upstreams[1].url})
    and C{message} says what is wrong, so the admin API can put the message
    next to the field; str() is the config file's one line.
    """

    def __init__(self, route: str, field: str, message: str):
        super().__init__("route %s: %s: %s" % (route, field, message))
        self.field = field
        self.message = message


class _Where:
    """Builds one-line errors: C{route 'chat': upstreams[1].url: ...}."""

    def __init__(self, route: str):
        self.route = route

    def error(self, key: str, message: str) -> RouteError:
        return RouteError(self.route, key, message)


def load_route_file(path: str, env: Mapping[str, str]) -> Tuple[Route, ...]:
    """The routes of the TOML file at C{path}, validated (L{ConfigError} else)."""
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError("config file %r cannot be read: %s" % (path, e.strerror))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config file %r is not valid TOML: %s" % (path, e))
    return parse_routes(document, env)


def parse_routes(document: Mapping, env: Mapping[str, str]) -> Tuple[Route, ...]:
    """The routes of a parsed config file, validated as a whole."""
    unknown = sorted(set(document) - {"routes"})
    if unknown:
        raise ConfigError("config file: unknown key %r (known: routes)" % (unknown[0],))
    tables = document.get("routes", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("config file: routes must be an array of tables ([[routes]])")
    routes = [_route(i, table, env) for i, table in enumerate(tables)]
    check_unique(routes)
    return tuple(routes)


def check_unique(routes: Sequence[Route]) -> None:
    """No two routes share a name, nor a (host, path) match: L{RouteError} else."""
    names, matches = set(), {}
    for route in routes:
        if route.name in names:
            raise _Where(repr(route.name)).error("name", "used by another route; names are unique")
        names.add(route.name)
        for host in route.hosts or (None,):
            key = (host, route.path)
            if key in matches:
                where = "host %r" % host if host else "no hosts"
                raise _Where(repr(route.name)).error(
                    "path", "route %r already matches %s and path %r"
                    % (matches[key], where, route.path))
            matches[key] = route.name


def parse_route(table: Mapping, env: Mapping[str, str], open_sealed=None,
                source: str = "file") -> Route:
    """
    One route's table (the config file's keys), validated: L{RouteError}
    naming the field otherwise. C{open_sealed(text)} opens a C{sealed:}
    token (the store's routes); without it such a token is refused.
    """
    return _route(0, table, env, open_sealed, source)


def _route(index: int, table: Mapping, env: Mapping[str, str], open_sealed=None,
           source: str = "file") -> Route:
    if not isinstance(table, Mapping):
        raise RouteError("#%d" % (index + 1), "", "must be a table of the route's keys")
    name = table.get("name")
    where = _Where(repr(name) if isinstance(name, str) else "#%d" % (index + 1))
    unknown = sorted(set(table) - _ROUTE_KEYS)
    if unknown:
        raise where.error(unknown[0], "unknown key (known: %s)" % ", ".join(sorted(_ROUTE_KEYS)))
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise where.error("name", "required: 1 to 63 of a-z, 0-9 and -")
    upstream_tables = table.get("upstreams")
    if not isinstance(upstream_tables, list) or not upstream_tables:
        raise where.error("upstreams", "at least one [[routes.upstreams]] is required")
    if not all(isinstance(u, dict) for u in upstream_tables):
        raise where.error("upstreams", "must be tables ([[routes.upstreams]])")
    return Route(
        name=name,
        hosts=_hosts(where, table.get("hosts", [])),
        path=_path(where, "path", table.get("path", "/")),
        strip_path=_bool(where, "strip_path", table.get("strip_path", True)),
        balance=_one_of(where, "balance", table.get("balance", "round_robin"), BALANCERS),
        affinity=_one_of(where, "affinity", table.get("affinity", "none"), AFFINITIES),
        retries=_int(where, "retries", table.get("retries", 0), 0, MAX_RETRIES),
        health_path=_health_path(where, table.get("health_path")),
        health_interval=_seconds(where, "health_interval", table.get("health_interval", 10)),
        access=_access(where, table.get("access", "signed_in")),
        enabled=_bool(where, "enabled", table.get("enabled", True)),
        upstreams=tuple(_upstream(where, i, u, env, open_sealed)
                        for i, u in enumerate(upstream_tables)),
        source=source,
    )


def _upstream(where: _Where, index: int, table: Mapping, env: Mapping[str, str],
              open_sealed=None) -> Upstream:
    key = "upstreams[%d]" % index
    unknown = sorted(set(table) - _UPSTREAM_KEYS)
    if unknown:
        raise where.error("%s.%s" % (key, unknown[0]),
                          "unknown key (known: %s)" % ", ".join(sorted(_UPSTREAM_KEYS)))
    url = table.get("url")
    if not isinstance(url, str) or not url.strip():
        raise where.error(key + ".url", "required, e.g. https://user-space.hf.space")
    try:
        scheme, host, port = parse_origin(url, "url", "token = \"env:NAME\"")
    except ConfigError as e:
        raise where.error(key + ".url", str(e)[len("url "):])
    token_ref = table.get("token")
    if (open_sealed is not None and isinstance(token_ref, str)
            and token_ref.startswith(SEALED_PREFIX)):
        token = open_sealed(token_ref[len(SEALED_PREFIX):])
        token_ref = "sealed"  # the text stays in the store: nothing of it in a repr
    else:
        token = None if token_ref is None else _secret(where, key + ".token", token_ref, env)
    if token is not None and not _HEADER_TOKEN_RE.fullmatch(token):
        # It goes up as "Authorization: Bearer <token>" (and in health probes): never echoed.
        raise where.error(key + ".token", "must be one word of visible ASCII characters, as "
                          "tokens are (no spaces, accents or control characters)")
    space = table.get("space")
    if space is not None and (not isinstance(space, str) or not _SPACE_RE.fullmatch(space)):
        raise where.error(key + ".space", "must be a Hugging Face repo id like user/space-name")
    ca_bundle = table.get("ca_bundle")
    if ca_bundle is not None:
        if not isinstance(ca_bundle, str):
            raise where.error(key + ".ca_bundle", "must be the path of a PEM file")
        try:
            check_ca_bundle(ca_bundle, "file")
        except ConfigError as e:
            raise where.error(key + ".ca_bundle", str(e))
    return Upstream(
        url=url.strip().rstrip("/"), scheme=scheme, host=host, port=port, token=token,
        token_ref=token_ref, weight=_int(where, key + ".weight", table.get("weight", 1), 1,
                                         MAX_WEIGHT),
        space=space, ca_bundle=ca_bundle,
    )


def _secret(where: _Where, key: str, ref, env: Mapping[str, str]) -> str:
    """The token C{ref} points at: C{env:NAME} or C{file:/path}, never a literal."""
    if not isinstance(ref, str) or not ref.startswith(("env:", "file:")):
        # The value itself is never echoed: it may be the token.
        raise where.error(key, 'must be "env:NAME" or "file:/path", never the token itself')
    kind, _, name = ref.partition(":")
    if kind == "env":
        if not _ENV_NAME_RE.fullmatch(name):
            raise where.error(key, "env:%s is not an environment variable name" % (name,))
        value = env.get(name)
        if value is None or not value.strip():
            raise where.error(key, "environment variable %s is not set" % (name,))
        return value.strip()
    if not name.startswith("/"):
        raise where.error(key, "file: takes an absolute path, got %r" % (name,))
    try:
        with open(name, encoding="utf-8") as f:
            value = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise where.error(key, "file %r cannot be read: %s" % (name, getattr(e, "strerror", e)))
    if not value:
        raise where.error(key, "file %r is empty" % (name,))
    return value


def _hosts(where: _Where, value) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise where.error("hosts", 'must be a list of host names, e.g. ["chat.example.org"]')
    hosts = []
    for host in value:
        bare = host.strip().lower()
        wildcard = bare.startswith("*.")
        name = bare[2:] if wildcard else bare
        if "*" in name or ":" in name:
            raise where.error("hosts", "%r: a name, or *.name for its subdomains (no port)" % host)
        try:
            name = ascii_host(name, "hosts")
        except ConfigError:
            raise where.error("hosts", "%r is not a valid host name" % (host,))
        hosts.append(("*." if wildcard else "") + name.rstrip("."))
    if len(set(hosts)) != len(hosts):
        raise where.error("hosts", "a host is listed twice")
    return tuple(hosts)


def _path(where: _Where, key: str, value) -> str:
    if not isinstance(value, str):
        raise where.error(key, "must be a path starting with /")
    path = value.strip()
    if path != "/":
        path = path.rstrip("/")
        if not _PATH_RE.fullmatch(path) or any(s in (".", "..") for s in path.split("/")):
            raise where.error(key, "%r is not a path prefix like /chat" % (value,))
    return path


def _health_path(where: _Where, value) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or "#" in value:
        raise where.error("health_path", "must be a path starting with /, e.g. /healthz")
    return value


def _seconds(where: _Where, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 3600:
        raise where.error(key, "must be a number of seconds from 1 to 3600")
    return float(value)


def _bool(where: _Where, key: str, value) -> bool:
    if not isinstance(value, bool):
        raise where.error(key, "must be true or false")
    return value


def _int(where: _Where, key: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise where.error(key, "must be a whole number from %d to %d" % (low, high))
    return value


def _access(where: _Where, value) -> Access:
    try:
        return parse_access(value)
    except ValueError as e:
        raise where.error("access", str(e))


def _one_of(where: _Where, key: str, value, choices) -> str:
    if value not in choices:
        raise where.error(key, "must be one of %s" % ", ".join('"%s"' % c for c in choices))
    return value


def env_route(config) -> Route:
    """The environment's backend (PRIVATE_BACKEND_URL, HF_TOKEN) as the route C{default} at /."""
    upstream = Upstream(
        url=config.backend_origin, scheme=config.backend_scheme, host=config.backend_host,
        port=config.backend_port, token=config.hf_token,
        token_ref="env:HF_TOKEN" if config.hf_token else None,
        ca_bundle=config.backend_ca_bundle,
    )
    access = config.auth.access if config.auth is not None else SIGNED_IN
    return Route(name=DEFAULT_ROUTE, upstreams=(upstream,), access=access, source="env")


def route_table(env_default: Optional[Route], file_routes: Sequence[Route]):
    """
    (routes, the start-up line saying where C{/} goes) of the environment's
    route and the file's. The environment's backend is the C{default}
    route unless the file already has a route at C{/} with no hosts.
    """
    catch_all = next((r for r in file_routes if r.path == "/" and not r.hosts), None)
    if env_default is None:
        return tuple(file_routes), (
            "requests no route matches get 404" if catch_all is None
            else "route %r takes every request no other route matches" % catch_all.name)
    if catch_all is not None:
        return tuple(file_routes), (
            "route %r of the config file takes every request no other route matches; "
            "PRIVATE_BACKEND_URL is not used" % catch_all.name)
    if any(r.name == DEFAULT_ROUTE for r in file_routes):
        raise ConfigError(
            "route 'default': name: taken by PRIVATE_BACKEND_URL's route; rename the file's "
            "route, or give it path = \"/\" and no hosts to replace PRIVATE_BACKEND_URL")
    return (env_default,) + tuple(file_routes), (
        "PRIVATE_BACKEND_URL is the route 'default' at /, for every request no route of the "
        "config file matches")


def load_routes(config, env: Mapping[str, str]):
    """
    (routes, start-up line) of a L{wighaven.config.settings.Config}: its
    PRIVATE_BACKEND_URL and its WIGHAVEN_CONFIG file, re-read (a reload
    calls this again). L{ConfigError} when neither gives a route.
    """
    env_default = env_route(config) if config.backend_host is not None else None
    file_routes = load_route_file(config.config_file, env) if config.config_file else ()
    if env_default is None and not file_routes:
        raise ConfigError("config file %r has no [[routes]]; add one, or set PRIVATE_BACKEND_URL"
                          % (config.config_file,))
    return route_table(env_default, file_routes)

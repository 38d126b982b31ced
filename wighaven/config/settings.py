"""Configuration: one table of settings, loaded from the environment and the
command line, validated once at start-up into a frozen L{Config}.

Rule: every setting has exactly one row in L{SETTINGS} (environment name,
default, meaning). The twistd options, the README's configuration reference
and the validation all come from that row, so they cannot drift apart. A
command-line option wins over the environment variable of the same name.

Validation is pure (no I/O but reading the CA bundle file) and raises
L{ConfigError} with a single line a person can act on; start-up prints that
line and exits non-zero before listening on anything.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from typing import Callable, Mapping, Optional
from urllib.parse import urlsplit

import attrs
import idna

from .trust import NO_PROXY, ONE_HOP, TrustedProxies

__all__ = [
    "Config", "ConfigError", "SETTINGS", "Setting", "ascii_host", "check_ca_bundle", "load_config",
    "parse_origin", "tunnel_limits",
]


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line for a person."""


@attrs.frozen
class Setting:
    """One configuration setting: its environment name, default and meaning."""

    env: str
    default: Optional[str]
    help: str
    option_name: Optional[str] = None  # when the option is not named after the variable

    @property
    def option(self) -> str:
        """The twistd option name, e.g. C{upstream-timeout} for UPSTREAM_TIMEOUT."""
        return self.option_name or self.env.lower().replace("_", "-")


SETTINGS = (
    Setting(
        "PRIVATE_BACKEND_URL",
        None,
        "The private Space or app to put behind the gateway, "
        "e.g. https://user-space.hf.space (http or https, no user:password@): the route "
        "'default' at /. Required unless WIGHAVEN_CONFIG gives routes.",
    ),
    Setting(
        "WIGHAVEN_CONFIG",
        None,
        "A TOML file of routes (several Spaces, replicas, balancing, affinity, health): "
        "README 'The config file'. Re-read on SIGHUP.",
        option_name="config",
    ),
    Setting(
        "HF_TOKEN",
        None,
        "The owner's Hugging Face token, added to every forwarded request. "
        "Prefer the environment variable (a command line is visible to other local users).",
    ),
    Setting(
        "TOKEN_HEADER",
        "authorization",
        "Where the token goes: 'authorization' (Authorization: Bearer <token>, replacing the "
        "client's) or 'x-hf-authorization' (the client's own Authorization passes through).",
    ),
    Setting("PORT", "7860", "TCP port to listen on."),
    Setting("INTERFACE", "0.0.0.0", "Address to listen on."),
    Setting(
        "WORKERS",
        "1",
        "Gateway processes serving the port (auto = one per CPU core). Above 1, a "
        "supervising parent binds the port, restarts a worker that dies or hangs and adds up "
        "every worker's figures for /gateway-health, the dashboard and the metrics.",
    ),
    Setting("LOG_LEVEL", "info", "debug, info, warn or error."),
    Setting(
        "LOG_FORMAT",
        "text",
        "text (one readable line per event) or json (one JSON object per line).",
    ),
    Setting(
        "LOG_REDACT_QUERY",
        "true",
        "true to log paths without their query strings (they may carry OAuth codes, tokens "
        "or personal data); false to log them whole.",
    ),
    Setting(
        "LOG_BODIES",
        "off",
        "off, headers or full: log each forwarded exchange's headers (and the first "
        "LOG_BODIES_MAX bytes of its bodies), secrets redacted. For debugging a Space.",
    ),
    Setting("LOG_BODIES_MAX", "4096", "Bytes of each body logged with LOG_BODIES=full."),
    Setting(
        "METRICS",
        "on",
        "on or off: count requests for /_gateway/metrics and the live dashboard.",
    ),
    Setting(
        "BACKEND_CA_BUNDLE",
        None,
        "PEM file of extra CA certificates trusted for the backend, on top of the system "
        "trust store. Verification itself is never switched off.",
    ),
    Setting(
        "UPSTREAM_TIMEOUT",
        "60",
        "Seconds to wait for the backend's response headers before answering 504. "
        "A response that is streaming has no total time limit.",
    ),
    Setting(
        "UPSTREAM_MAX_CONNECTIONS",
        "256",
        "Requests in flight to the backend at once; more wait in line (the wait counts "
        "against UPSTREAM_TIMEOUT). Event streams and WebSockets don't hold a place once "
        "their headers are in.",
    ),
    Setting(
        "POOL_MAX_PER_HOST",
        "256",
        "Idle persistent connections kept open to the backend (as many as may be in "
        "flight by default, so a steady load never reconnects).",
    ),
    Setting("POOL_IDLE_TIMEOUT", "90", "Seconds an idle backend connection is kept."),
    Setting(
        "DASHBOARD_PATH",
        "/",
        "Where the dashboard lives. Move it (e.g. /_gateway/) to let the Space's own UI "
        "answer at /.",
    ),
    Setting(
        "DASHBOARD_SHOW_PATHS",
        "false",
        "true to list the paths of recent requests on the public dashboard and its live feed "
        "(query strings still dropped unless LOG_REDACT_QUERY=false). Off: figures, statuses "
        "and durations only, since a path can carry another visitor's secrets.",
    ),
    Setting(
        "LIVE_MAX_WATCHERS",
        "50",
        "Dashboards the live feed serves at once; more are answered 503 (they retry).",
    ),
    Setting(
        "CORS_ALLOW_ORIGINS",
        None,
        "Comma-separated origins (or *) for which the gateway answers CORS preflights and "
        "sets CORS headers. Unset: the backend's own CORS headers pass through untouched.",
    ),
    Setting(
        "CORS_ALLOW_HEADERS",
        "Accept, Accept-Language, Content-Language, Content-Type, Authorization, "
        "X-Requested-With, X-Request-ID",
        "Comma-separated request headers a CORS preflight may ask for; others are not allowed.",
    ),
    Setting(
        "MAX_BODY_SIZE",
        "1073741824",
        "Largest request body in bytes (0 = unlimited). A larger declared Content-Length is "
        "refused with 413 before the body is read; a chunked body is cut at the limit.",
    ),
    Setting(
        "HEADER_TIMEOUT",
        "30",
        "Seconds a client has to send a complete request head (in all, not per byte: "
        "slow-loris clients get 408 and are closed).",
    ),
    Setting(
        "KEEPALIVE_TIMEOUT",
        "75",
        "Seconds an idle keep-alive connection is kept open between requests.",
    ),
    Setting(
        "STREAM_IDLE_TIMEOUT",
        "300",
        "Seconds a body may go silent (a response stream from the backend, or an upload from "
        "the client) before the exchange is cut. There is no limit on a stream's total time.",
    ),
    Setting(
        "MAX_CONNECTIONS_PER_IP",
        "0",
        "Open connections allowed from one client address (0 = no limit; counted by "
        "each worker apart when WORKERS is above 1); more are answered 429 and closed.",
    ),
    Setting(
        "DRAIN_TIMEOUT",
        "30",
        "On SIGTERM, seconds in-flight requests and streams (SSE, WebSocket, uploads) may "
        "run on after the gateway stopped accepting; then the rest are cut and it exits.",
    ),
    Setting(
        "WS_IDLE_TIMEOUT",
        "0",
        "Seconds a WebSocket may stay silent both ways before the gateway closes it "
        "(0 = never; the backend's and the client's pings keep it open).",
    ),
    Setting(
        "MAX_WEBSOCKETS",
        "auto",
        "WebSocket tunnels open at once (auto = an eighth of the open-files limit); more "
        "are answered 503. With MAX_CONNECTIONS_PER_IP set, one client address may hold at "
        "most that many tunnels and streams.",
    ),
    Setting(
        "MAX_STREAMS",
        "auto",
        "Event streams (text/event-stream responses) open at once (auto = an eighth of the "
        "open-files limit); more are answered 503.",
    ),
    Setting(
        "SLOW_CLIENT_GRACE",
        "2",
        "Seconds a response may stay paused by a client that stopped reading before it gives "
        "its UPSTREAM_MAX_CONNECTIONS place to others (it goes on, outside the count).",
    ),
    Setting(
        "HF_ENDPOINT",
        "https://huggingface.co",
        "The Hugging Face Hub, asked for the stage of each upstream with a `space` and no "
        "health_path (GET /api/spaces/<space>/runtime, with that upstream's token).",
    ),
    Setting(
        "AFFINITY_SECRET",
        None,
        "Signs the session affinity cookies. Unset: a random one per start (shared by the "
        "workers), so browsers are rebalanced after a restart; set it to keep them.",
    ),
    Setting(
        "AUTH",
        "off",
        "off (anyone who reaches the gateway uses its Spaces) or on: each route's `access` "
        "decides, and the dashboard, live feed and metrics need the admin role. README "
        "'Access control'.",
    ),
    Setting(
        "ACCESS",
        "signed_in",
        "With AUTH=on, who may use PRIVATE_BACKEND_URL's route: public, signed_in, or "
        "requirements such as role:team,user:alice,hf_org:acme (any one suffices). The "
        "config file's routes have their own `access` key.",
    ),
    Setting(
        "DATABASE_URL",
        "sqlite:///data/wighaven.sqlite3",
        "Where users, API keys, sessions and the audit trail are kept: sqlite:///relative/path "
        "(to the working directory) or sqlite:////absolute/path. Opened only with AUTH=on.",
    ),
    Setting(
        "SECRET_KEY",
        None,
        "Signs sessions and access tokens; at least 32 characters, required with AUTH=on. "
        "Changing it signs everyone out (see SECRET_KEY_PREVIOUS).",
    ),
    Setting(
        "SECRET_KEY_PREVIOUS",
        None,
        "The SECRET_KEY before a rotation (comma-separated for several): its tokens and "
        "sessions stay valid until they expire, but nothing new is signed with it.",
    ),
    Setting("JWT_TTL", "900", "Seconds an access token from /_gateway/auth/token is valid."),
    Setting(
        "REFRESH_TTL",
        "2592000",
        "Seconds a refresh token is valid (30 days); each use gives a new one.",
    ),
    Setting(
        "SESSION_TTL",
        "604800",
        "Seconds a browser stays signed in (7 days), unless it signs out first.",
    ),
    Setting(
        "METRICS_TOKEN",
        None,
        "With AUTH=on, a Bearer token that may read /_gateway/metrics without an admin "
        "account (for Prometheus); at least 16 characters.",
    ),
    Setting(
        "AUDIT_RETENTION_DAYS",
        "90",
        "Days audit events (sign-ins, failures, changes) are kept in the store; older ones "
        "are deleted once an hour.",
    ),
    Setting(
        "ADMIN_USERNAME",
        None,
        "An administrator created (or updated) at every start, for a Docker Space without a "
        "shell: with ADMIN_PASSWORD or ADMIN_PASSWORD_HASH.",
    ),
    Setting(
        "ADMIN_PASSWORD",
        None,
        "ADMIN_USERNAME's password (at least 8 characters); set it as a Space secret.",
    ),
    Setting(
        "ADMIN_PASSWORD_HASH",
        None,
        "ADMIN_USERNAME's password as an Argon2id hash ($argon2id$...), instead of "
        "ADMIN_PASSWORD.",
    ),
    Setting(
        "HF_OAUTH_CLIENT_ID",
        None,
        "Sign in with Hugging Face: the OAuth app's client id (a Space with hf_oauth: true "
        "sets OAUTH_CLIENT_ID, which is used when this is unset).",
    ),
    Setting(
        "HF_OAUTH_CLIENT_SECRET",
        None,
        "The OAuth app's client secret (or the Space's OAUTH_CLIENT_SECRET).",
    ),
    Setting(
        "HF_OAUTH_PROVIDER_URL",
        "https://huggingface.co",
        "The OpenID provider (or the Space's OPENID_PROVIDER_URL); its discovery document is "
        "at /.well-known/openid-configuration.",
    ),
    Setting(
        "HF_OAUTH_SCOPES",
        "openid profile",
        "Scopes asked for at sign-in (or the Space's OAUTH_SCOPES).",
    ),
    Setting(
        "HF_OAUTH_ALLOWED_USERS",
        None,
        "Comma-separated Hugging Face usernames who may sign in (* for every account).",
    ),
    Setting(
        "HF_OAUTH_ALLOWED_ORGS",
        None,
        "Comma-separated Hugging Face organizations whose members may sign in.",
    ),
    Setting(
        "HF_OAUTH_ADMIN_USERS",
        None,
        "Comma-separated Hugging Face usernames who sign in with the admin role.",
    ),
    Setting(
        "PUBLIC_URL",
        None,
        "The gateway's public origin, e.g. https://gw.example.org: where Hugging Face sends "
        "people back after signing in. Unset: the request's own (on a Space, SPACE_HOST's).",
    ),
    Setting(
        "ALLOW_HTTP_UPSTREAMS",
        "false",
        "true lets the admin API add plain http:// upstreams (their tokens cross the network "
        "unencrypted); https only otherwise.",
    ),
    Setting(
        "ALLOW_PRIVATE_UPSTREAMS",
        "false",
        "true lets the admin API add upstreams on loopback, private and link-local addresses "
        "(a backend on the same machine or network); public addresses only otherwise. Cloud "
        "metadata addresses are always refused.",
    ),
    Setting(
        "UPSTREAM_ALLOWLIST",
        None,
        "Comma-separated host patterns the admin API's upstreams must match, e.g. *.hf.space,"
        "api.example.org (unset: any public host).",
    ),
    Setting(
        "TRUST_PROXY",
        "false",
        "true when exactly one trusted proxy stands in front (a Hugging Face Docker Space), or "
        "a comma-separated list of the proxies' CIDRs: only then are X-Forwarded-For, -Proto "
        "and -Host believed. Unset on a Hugging Face Space (SPACE_ID set): true.",
    ),
)

_LOG_LEVELS = ("debug", "info", "warn", "error")
_TOKEN_HEADERS = ("authorization", "x-hf-authorization")
_RESERVED_PATHS = ("/gateway-health",)
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_WORKERS = 64


@attrs.frozen
class Config:
    """Validated settings. The token is kept out of repr() so it can't reach a log."""

    backend_scheme: str
    backend_host: str
    backend_port: int
    hf_token: Optional[str] = attrs.field(repr=False)
    token_header: str
    port: int
    interface: str
    log_level: str
    log_format: str
    log_redact_query: bool
    log_bodies: str
    log_bodies_max: int
    metrics: bool
    backend_ca_bundle: Optional[str]
    upstream_timeout: float
    pool_max_per_host: int
    upstream_max_connections: int
    pool_idle_timeout: float
    dashboard_path: str
    cors_allow_origins: tuple
    trust_proxy: TrustedProxies
    max_body_size: int
    ws_idle_timeout: float
    header_timeout: float
    keepalive_timeout: float
    stream_idle_timeout: float
    max_connections_per_ip: int
    drain_timeout: float
    workers: int = 1
    dashboard_show_paths: bool = False
    live_max_watchers: int = 50
    cors_allow_headers: tuple = ()
    max_websockets: Optional[int] = None  # None: auto, from the open-files limit
    max_streams: Optional[int] = None
    slow_client_grace: float = 2.0
    trust_proxy_reason: str = ""  # why TRUST_PROXY is what it is, for the start-up line
    config_file: Optional[str] = None  # WIGHAVEN_CONFIG
    routes: tuple = ()  # the validated route table (wighaven.config.routes.Route)
    routes_note: str = ""  # where requests no route matches go, for the start-up line
    hf_endpoint: str = "https://huggingface.co"
    affinity_secret: bytes = attrs.field(default=b"", repr=False, eq=False)
    auth: Optional[object] = None  # AUTH and its settings: wighaven.config.auth_settings.AuthSettings

    @property
    def backend_netloc(self) -> str:
        """host[:port] as it belongs in a Host header (port only when not default)."""
        host = self.backend_host
        if host is None:  # no PRIVATE_BACKEND_URL: the config file's routes only
            return "%d routes" % len(self.routes)
        if ":" in host:
            host = "[" + host + "]"
        if self.backend_port == _DEFAULT_PORTS[self.backend_scheme]:
            return host
        return "%s:%d" % (host, self.backend_port)

    @property
    def backend_origin(self) -> Optional[str]:
        """scheme://host[:port] of the backend, with no path (None without one)."""
        if self.backend_host is None:
            return None
        return "%s://%s" % (self.backend_scheme, self.backend_netloc)


def _parse_backend_url(value: Optional[str]):
    if value is None or not value.strip():
        raise ConfigError(
            "PRIVATE_BACKEND_URL must be set (the private Space's URL, e.g. https://user-space.hf.space)"
        )
    return parse_origin(value, "PRIVATE_BACKEND_URL", "HF_TOKEN")


def parse_origin(value: str, what: str, token_setting: str):
    """
    (scheme, ASCII host, port) of a backend's URL, which must be an origin
    (http or https, a host, no credentials, path or query). C{what} names
    the setting in the error's one line, C{token_setting} where the token
    goes instead of user:password@.
    """
    value = value.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ConfigError("%s is not a valid URL: %s" % (what, e))
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(
            "%s must be an http:// or https:// URL with a host, "
            "e.g. https://user-space.hf.space" % (what,)
        )
    if port == 0:
        raise ConfigError("%s has port 0; leave the port out or give a real one" % (what,))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ConfigError(
            "%s must not contain user:password@; put the token in %s" % (what, token_setting)
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            "%s must be an origin only (scheme://host[:port]), with no path or query" % (what,)
        )
    host = ascii_host(parts.hostname, what)
    if parts.scheme == "https" and not _tls_nameable(host):
        raise ConfigError("%s has a hostname a TLS certificate cannot name: %r"
                          % (what, parts.hostname))
    return parts.scheme, host, port or _DEFAULT_PORTS[parts.scheme]


def _tls_nameable(host: str) -> bool:
    """
    Can the TLS layer name C{host} (Twisted's optionsForClientTLS encodes it
    with the idna package, IDNA 2008, which refuses more than Python's own
    IDNA 2003 codec: "_", or an A-label of a disallowed code point)?
    """
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        idna.encode(host.rstrip("."))
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


_HOSTNAME_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")


def ascii_host(host: str, what: str) -> str:
    """The host as sent on the wire: an IP literal, or an ASCII (IDNA) DNS name."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        ascii_host = ""
    if not _HOSTNAME_RE.match(ascii_host) or not _valid_a_labels(ascii_host):
        raise ConfigError("%s has an invalid hostname: %r" % (what, host))
    return ascii_host


def _valid_a_labels(host: str) -> bool:
    """Every xn-- label of C{host} is a valid IDNA 2008 A-label (a bogus one names nothing)."""
    for label in host.rstrip(".").split("."):
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                return False
    return True


def _number(name: str, value: str, kind: Callable, minimum) -> float:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError("%s must be a number, got %r" % (name, value))
    if not math.isfinite(number) or number < minimum:
        raise ConfigError("%s must be at least %s, got %r" % (name, minimum, value))
    return number


def _port(value: str) -> int:
    port = int(_number("PORT", value, int, 0))
    if port > 65535:
        raise ConfigError("PORT must be at most 65535, got %r" % (value,))
    return port


def _choice(name: str, value: str, choices) -> str:
    value = value.strip().lower()
    if value == "warning":
        value = "warn"
    if value not in choices:
        raise ConfigError("%s must be one of %s, got %r" % (name, ", ".join(choices), value))
    return value


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError("%s must be true or false, got %r" % (name, value))


def _dashboard_path(value: str) -> str:
    value = value.strip()
    if not value.startswith("/") or "?" in value or "#" in value:
        raise ConfigError("DASHBOARD_PATH must be a path starting with /, got %r" % (value,))
    if value in _RESERVED_PATHS:
        raise ConfigError("DASHBOARD_PATH must not be %s" % (value,))
    return value


def _origins(value: Optional[str]) -> tuple:
    if value is None or not value.strip():
        return ()
    origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (
            parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query
        ):
            raise ConfigError(
                "CORS_ALLOW_ORIGINS must list origins like https://example.com (or *), got %r"
                % (origin,)
            )
    return origins


def check_ca_bundle(value: Optional[str], what: str = "BACKEND_CA_BUNDLE") -> Optional[str]:
    if not value:
        return None
    try:
        with open(value, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise ConfigError("%s %r cannot be read: %s" % (what, value, e.strerror))
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ConfigError("%s %r holds no PEM certificate" % (what, value))
    return value


def _interface(value: str) -> str:
    value = value.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError("INTERFACE must be an IP address, got %r" % (value,))
    return value


def _workers(value: str) -> int:
    value = value.strip().lower()
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    if not re.fullmatch(r"[0-9]{1,3}", value) or not 1 <= int(value) <= MAX_WORKERS:
        raise ConfigError(
            "WORKERS must be auto or a whole number from 1 to %d, got %r" % (MAX_WORKERS, value)
        )
    return int(value)


_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _header_names(name: str, value: str) -> tuple:
    names = tuple(n.strip().lower() for n in value.split(",") if n.strip())
    for header in names:
        if not _HEADER_NAME_RE.match(header):
            raise ConfigError("%s must list header names, got %r" % (name, header))
    return names


def _auto_or_count(name: str, value: str) -> Optional[int]:
    if value.strip().lower() == "auto":
        return None
    return int(_number(name, value, int, 1))


def _trust_proxy(value: Optional[str], env: Mapping[str, str]):
    """The TRUST_PROXY value and why: given, or on because the gateway runs as a Space."""
    if value is None or not value.strip():
        if env.get("SPACE_ID"):
            return ONE_HOP, "on: SPACE_ID is set, so the gateway runs behind Hugging Face's proxy"
        return NO_PROXY, "off"
    try:
        trusted = TrustedProxies.parse(value)
    except ValueError as e:
        raise ConfigError("TRUST_PROXY %s" % (e,))
    return trusted, trusted.describe()


def tunnel_limits(config: Config, open_files: int) -> tuple:
    """
    (MAX_WEBSOCKETS, MAX_STREAMS) in force: each tunnel holds two descriptors
    (client and backend), so an eighth of the open-files limit each keeps
    half of the descriptors for ordinary requests, listening and logs.
    """
    auto = max(16, open_files // 8)
    return (
        config.max_websockets if config.max_websockets is not None else auto,
        config.max_streams if config.max_streams is not None else auto,
    )


def load_config(env: Mapping[str, str], overrides: Mapping[str, Optional[str]] = {}) -> Config:
    """
    Build the L{Config} from C{env} (the process environment) and C{overrides}
    (command-line values keyed by environment name; None means not given).

    @raise ConfigError: with a one-line explanation, when a setting is invalid.
    """
    raw = {}
    given = {}
    for setting in SETTINGS:
        value = overrides.get(setting.env)
        if value is None:
            value = env.get(setting.env)
        given[setting.env] = value
        if value is None or (value == "" and setting.default is not None):
            value = setting.default
        raw[setting.env] = value
    trust_proxy, trust_reason = _trust_proxy(given["TRUST_PROXY"], env)

    config_file = (raw["WIGHAVEN_CONFIG"] or "").strip() or None
    if config_file is not None and not (raw["PRIVATE_BACKEND_URL"] or "").strip():
        scheme = host = port = None  # every route comes from the file
    else:
        scheme, host, port = _parse_backend_url(raw["PRIVATE_BACKEND_URL"])
    token = (raw["HF_TOKEN"] or "").strip() or None
    if token is not None and any(c in token for c in "\r\n\x00"):
        raise ConfigError("HF_TOKEN must be a single line")
    secret = (raw["AFFINITY_SECRET"] or "").strip()
    if secret and len(secret) < 16:
        raise ConfigError("AFFINITY_SECRET must be at least 16 characters (or unset)")
    config = Config(
        backend_scheme=scheme,
        backend_host=host,
        backend_port=port,
        hf_token=token,
        token_header=_choice("TOKEN_HEADER", raw["TOKEN_HEADER"], _TOKEN_HEADERS),
        port=_port(raw["PORT"]),
        interface=_interface(raw["INTERFACE"]),
        log_level=_choice("LOG_LEVEL", raw["LOG_LEVEL"], _LOG_LEVELS),
        log_format=_choice("LOG_FORMAT", raw["LOG_FORMAT"], ("text", "json")),
        log_redact_query=_boolean("LOG_REDACT_QUERY", raw["LOG_REDACT_QUERY"]),
        log_bodies=_choice("LOG_BODIES", raw["LOG_BODIES"], ("off", "headers", "full")),
        log_bodies_max=int(_number("LOG_BODIES_MAX", raw["LOG_BODIES_MAX"], int, 0)),
        metrics=_boolean("METRICS", raw["METRICS"]),
        backend_ca_bundle=check_ca_bundle(raw["BACKEND_CA_BUNDLE"]),
        upstream_timeout=_number("UPSTREAM_TIMEOUT", raw["UPSTREAM_TIMEOUT"], float, 0.001),
        pool_max_per_host=int(_number("POOL_MAX_PER_HOST", raw["POOL_MAX_PER_HOST"], int, 1)),
        upstream_max_connections=int(
            _number("UPSTREAM_MAX_CONNECTIONS", raw["UPSTREAM_MAX_CONNECTIONS"], int, 1)
        ),
        pool_idle_timeout=_number("POOL_IDLE_TIMEOUT", raw["POOL_IDLE_TIMEOUT"], float, 0.001),
        dashboard_path=_dashboard_path(raw["DASHBOARD_PATH"]),
        cors_allow_origins=_origins(raw["CORS_ALLOW_ORIGINS"]),
        trust_proxy=trust_proxy,
        trust_proxy_reason=trust_reason,
        max_body_size=int(_number("MAX_BODY_SIZE", raw["MAX_BODY_SIZE"], int, 0)),
        ws_idle_timeout=_number("WS_IDLE_TIMEOUT", raw["WS_IDLE_TIMEOUT"], float, 0),
        header_timeout=_number("HEADER_TIMEOUT", raw["HEADER_TIMEOUT"], float, 0.001),
        keepalive_timeout=_number("KEEPALIVE_TIMEOUT", raw["KEEPALIVE_TIMEOUT"], float, 0.001),
        stream_idle_timeout=_number(
            "STREAM_IDLE_TIMEOUT", raw["STREAM_IDLE_TIMEOUT"], float, 0.001
        ),
        drain_timeout=_number("DRAIN_TIMEOUT", raw["DRAIN_TIMEOUT"], float, 0),
        max_connections_per_ip=int(
            _number("MAX_CONNECTIONS_PER_IP", raw["MAX_CONNECTIONS_PER_IP"], int, 0)
        ),
        workers=_workers(raw["WORKERS"]),
        dashboard_show_paths=_boolean("DASHBOARD_SHOW_PATHS", raw["DASHBOARD_SHOW_PATHS"]),
        live_max_watchers=int(_number("LIVE_MAX_WATCHERS", raw["LIVE_MAX_WATCHERS"], int, 1)),
        cors_allow_headers=_header_names("CORS_ALLOW_HEADERS", raw["CORS_ALLOW_HEADERS"]),
        max_websockets=_auto_or_count("MAX_WEBSOCKETS", raw["MAX_WEBSOCKETS"]),
        max_streams=_auto_or_count("MAX_STREAMS", raw["MAX_STREAMS"]),
        slow_client_grace=_number("SLOW_CLIENT_GRACE", raw["SLOW_CLIENT_GRACE"], float, 0),
        config_file=config_file,
        hf_endpoint=_hub_endpoint(raw["HF_ENDPOINT"]),
        affinity_secret=secret.encode("utf-8") if secret else os.urandom(32),
    )
    from .auth_settings import load_auth_settings  # both build on this module's checks
    from .routes import load_routes

    config = attrs.evolve(config, auth=load_auth_settings(raw, env, given))
    routes, note = load_routes(config, env)
    return attrs.evolve(config, routes=routes, routes_note=note)


def _hub_endpoint(value: str) -> str:
    """HF_ENDPOINT: an http(s) origin, kept without a trailing slash."""
    scheme, _, port = parse_origin(value, "HF_ENDPOINT", "HF_TOKEN")
    return value.strip().rstrip("/")

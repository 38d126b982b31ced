"""AUTH and the settings of access control, validated into one frozen
L{AuthSettings} (the rows themselves are in L{wighaven.config.settings.SETTINGS}).

Rules:
  - AUTH=off (the default) keeps the gateway open as before: nothing here is
    required, no database is opened.
  - AUTH=on needs SECRET_KEY (32 characters at least): a missing or short one
    stops start-up with one line. METRICS_TOKEN, when set, is 16 at least.
  - Sign in with Hugging Face is configured by HF_OAUTH_CLIENT_ID and
    HF_OAUTH_CLIENT_SECRET, or by the names a Space with C{hf_oauth: true}
    is given (OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OPENID_PROVIDER_URL,
    OAUTH_SCOPES): a gateway deployed as such a Space needs no extra setting.
    Without HF_OAUTH_ALLOWED_USERS, _ALLOWED_ORGS or _ADMIN_USERS nobody may
    sign in that way (an open door to every Hugging Face account is never a
    default); the start-up line says so.
  - Secrets are left out of every repr.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import attrs

from ..auth.policy import Access, parse_access
from .settings import ConfigError, _boolean, _number, parse_origin

__all__ = ["AuthSettings", "HfSignIn", "load_auth_settings"]

MIN_METRICS_TOKEN = 16
MIN_ADMIN_PASSWORD = 8
# The names a Hugging Face Space with hf_oauth: true is given, for ours when unset.
_SPACE_NAMES = {
    "HF_OAUTH_CLIENT_ID": "OAUTH_CLIENT_ID",
    "HF_OAUTH_CLIENT_SECRET": "OAUTH_CLIENT_SECRET",
    "HF_OAUTH_PROVIDER_URL": "OPENID_PROVIDER_URL",
    "HF_OAUTH_SCOPES": "OAUTH_SCOPES",
}
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@attrs.frozen
class HfSignIn:
    """Sign in with Hugging Face: the OAuth app, and who may enter."""

    client_id: str
    client_secret: str = attrs.field(repr=False)
    provider_url: str
    scopes: str
    allowed_users: Tuple[str, ...] = ()
    allowed_orgs: Tuple[str, ...] = ()
    admin_users: Tuple[str, ...] = ()

    @property
    def admits_anyone(self) -> bool:
        """Is anybody allowed in this way at all?"""
        return bool(self.allowed_users or self.allowed_orgs or self.admin_users)


@attrs.frozen
class AuthSettings:
    enabled: bool = False
    access: Access = parse_access("signed_in")  # ACCESS: PRIVATE_BACKEND_URL's route
    database_url: str = "sqlite:///data/wighaven.sqlite3"
    secret_key: Optional[str] = attrs.field(default=None, repr=False)
    secret_key_previous: Tuple[str, ...] = attrs.field(default=(), repr=False)
    jwt_ttl: int = 900
    refresh_ttl: int = 2592000
    session_ttl: int = 604800
    metrics_token: Optional[str] = attrs.field(default=None, repr=False)
    audit_retention_days: float = 90.0
    admin_username: Optional[str] = None
    admin_password: Optional[str] = attrs.field(default=None, repr=False)
    admin_password_hash: Optional[str] = attrs.field(default=None, repr=False)
    hf: Optional[HfSignIn] = None
    public_url: Optional[str] = None  # scheme://host[:port] people reach the gateway at
    # What upstream URLs the admin API accepts: a wighaven.routing.upstream_guard.UpstreamPolicy.
    upstream_policy: Optional[object] = None


def _names(value: Optional[str]) -> Tuple[str, ...]:
    return tuple(n.strip().lower() for n in (value or "").split(",") if n.strip())


def _given(raw: Mapping[str, Optional[str]], env: Mapping[str, str], name: str,
           set_by_user: frozenset) -> Optional[str]:
    """A setting when set, else the name a Hugging Face OAuth Space is given for it,
    else the setting's default."""
    value = (raw.get(name) or "").strip()
    if name in _SPACE_NAMES and name not in set_by_user:
        value = (env.get(_SPACE_NAMES[name]) or "").strip() or value
    return value or None



def _provider_url(value: str) -> str:
    scheme, host, _ = parse_origin(value.rstrip("/"), "HF_OAUTH_PROVIDER_URL", "HF_OAUTH_CLIENT_SECRET")
    if scheme != "https" and host not in _LOOPBACK:
        raise ConfigError("HF_OAUTH_PROVIDER_URL must be https:// (plain http only on loopback)")
    return value.strip().rstrip("/")


def _hf_sign_in(raw, env, set_by_user) -> Optional[HfSignIn]:
    client_id = _given(raw, env, "HF_OAUTH_CLIENT_ID", set_by_user)
    if client_id is None:
        return None
    secret = _given(raw, env, "HF_OAUTH_CLIENT_SECRET", set_by_user)
    if secret is None:
        raise ConfigError("HF_OAUTH_CLIENT_ID is set but HF_OAUTH_CLIENT_SECRET is not")
    return HfSignIn(
        client_id=client_id, client_secret=secret,
        provider_url=_provider_url(_given(raw, env, "HF_OAUTH_PROVIDER_URL", set_by_user)),
        scopes=_given(raw, env, "HF_OAUTH_SCOPES", set_by_user),
        allowed_users=_names(raw.get("HF_OAUTH_ALLOWED_USERS")),
        allowed_orgs=_names(raw.get("HF_OAUTH_ALLOWED_ORGS")),
        admin_users=_names(raw.get("HF_OAUTH_ADMIN_USERS")),
    )


def _public_url(value: Optional[str], env: Mapping[str, str]) -> Optional[str]:
    value = (value or "").strip().rstrip("/")
    if not value:
        space_host = (env.get("SPACE_HOST") or "").strip()
        return "https://" + space_host if space_host else None
    if "@" in value:
        raise ConfigError("PUBLIC_URL must be an origin such as https://gw.example.org, "
                          "without user:password@")
    scheme, host, port = parse_origin(value, "PUBLIC_URL", "")
    if ":" in host:
        host = "[%s]" % host
    default = {"http": 80, "https": 443}[scheme]
    return "%s://%s" % (scheme, host) if port == default else "%s://%s:%d" % (scheme, host, port)


def _secret(name: str, value: Optional[str]) -> Optional[str]:
    value = (value or "").strip() or None
    if value is not None and any(c in value for c in "\r\n\x00"):
        raise ConfigError("%s must be a single line" % (name,))
    return value


def load_auth_settings(raw: Mapping[str, Optional[str]], env: Mapping[str, str],
                       given: Mapping[str, Optional[str]] = {}) -> AuthSettings:
    """
    The L{AuthSettings} of the raw setting values (defaults filled in;
    C{given}: what the environment or command line set, None where unset).
    L{ConfigError} on a bad one.
    """
    set_by_user = frozenset(name for name, value in given.items() if (value or "").strip())
    from ..auth.tokens import MIN_SECRET_LENGTH

    enabled = _boolean("AUTH", raw["AUTH"])
    try:
        access = parse_access(raw["ACCESS"].strip())
    except ValueError as e:
        raise ConfigError("ACCESS %s" % (e,))
    secret = _secret("SECRET_KEY", raw["SECRET_KEY"])
    previous = tuple(p.strip() for p in (raw["SECRET_KEY_PREVIOUS"] or "").split(",") if p.strip())
    hint = ' (e.g. python -c "import secrets; print(secrets.token_urlsafe(32))")'
    if enabled and (secret is None or len(secret) < MIN_SECRET_LENGTH):
        raise ConfigError("AUTH=on needs SECRET_KEY of at least %d characters%s"
                          % (MIN_SECRET_LENGTH, hint))
    for value in previous:
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError("SECRET_KEY_PREVIOUS must be at least %d characters"
                              % MIN_SECRET_LENGTH)
    metrics_token = _secret("METRICS_TOKEN", raw["METRICS_TOKEN"])
    if metrics_token is not None and len(metrics_token) < MIN_METRICS_TOKEN:
        raise ConfigError("METRICS_TOKEN must be at least %d characters" % MIN_METRICS_TOKEN)
    admin = (raw["ADMIN_USERNAME"] or "").strip() or None
    password = _secret("ADMIN_PASSWORD", raw["ADMIN_PASSWORD"])
    password_hash = _secret("ADMIN_PASSWORD_HASH", raw["ADMIN_PASSWORD_HASH"])
    if admin is not None:
        _check_admin(admin, password, password_hash)
    elif password or password_hash:
        raise ConfigError("ADMIN_PASSWORD is set but ADMIN_USERNAME is not")
    return AuthSettings(
        enabled=enabled, access=access, database_url=raw["DATABASE_URL"].strip(),
        secret_key=secret, secret_key_previous=previous,
        jwt_ttl=int(_number("JWT_TTL", raw["JWT_TTL"], int, 30)),
        refresh_ttl=int(_number("REFRESH_TTL", raw["REFRESH_TTL"], int, 60)),
        session_ttl=int(_number("SESSION_TTL", raw["SESSION_TTL"], int, 60)),
        metrics_token=metrics_token,
        audit_retention_days=_number("AUDIT_RETENTION_DAYS", raw["AUDIT_RETENTION_DAYS"], float,
                                     1),
        admin_username=admin, admin_password=password,
        admin_password_hash=password_hash, hf=_hf_sign_in(raw, env, set_by_user),
        public_url=_public_url(raw["PUBLIC_URL"], env),
        upstream_policy=_upstream_policy(raw),
    )


def _upstream_policy(raw):
    """ALLOW_HTTP_UPSTREAMS, ALLOW_PRIVATE_UPSTREAMS and UPSTREAM_ALLOWLIST."""
    from ..routing.upstream_guard import UpstreamPolicy

    try:
        allowlist = UpstreamPolicy.parse_allowlist(raw["UPSTREAM_ALLOWLIST"])
    except ValueError as e:
        raise ConfigError("UPSTREAM_ALLOWLIST %s" % (e,))
    return UpstreamPolicy(
        allow_http=_boolean("ALLOW_HTTP_UPSTREAMS", raw["ALLOW_HTTP_UPSTREAMS"]),
        allow_private=_boolean("ALLOW_PRIVATE_UPSTREAMS", raw["ALLOW_PRIVATE_UPSTREAMS"]),
        allowlist=allowlist)


def _check_admin(name: str, password: Optional[str], password_hash: Optional[str]) -> None:
    from ..auth.passwords import is_argon2_hash
    from ..auth.usernames import check_username

    try:
        check_username(name)
    except ValueError as e:
        raise ConfigError("ADMIN_USERNAME %s" % (e,))
    if password and password_hash:
        raise ConfigError("set ADMIN_PASSWORD or ADMIN_PASSWORD_HASH, not both")
    if not password and not password_hash:
        raise ConfigError("ADMIN_USERNAME needs ADMIN_PASSWORD or ADMIN_PASSWORD_HASH")
    if password is not None and len(password) < MIN_ADMIN_PASSWORD:
        raise ConfigError("ADMIN_PASSWORD must be at least %d characters" % MIN_ADMIN_PASSWORD)
    if password_hash is not None and not is_argon2_hash(password_hash):
        raise ConfigError("ADMIN_PASSWORD_HASH must be an Argon2id hash ($argon2id$...)")

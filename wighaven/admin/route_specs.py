"""Routes as the admin API reads and writes them.

A route's JSON has the config file's keys (L{wighaven.config.routes}) plus
what only the store knows (C{source}, C{version}, C{created_at},
C{updated_at}, C{updated_by}). What the store keeps of a route is its
"spec": the config file's keys of one C{[[routes]]} table, as JSON.

Rules:
  - Tokens are write-only. Written as the token's value (sealed at once
    with L{wighaven.store.secret_box.SecretBox}: the store never holds it
    in clear), as an C{env:NAME} or C{file:/path} reference, or as
    C{{"set": true}} to keep the token the upstream of the same URL had.
    Read back as C{{"set": true}} or C{{"set": false}}.
  - A reference may not name one of the gateway's own secrets
    (SECRET_KEY, ADMIN_PASSWORD...): the gateway would otherwise send
    them to whatever upstream an administrator typed.
  - An upstream may be given by its Hugging Face repo id alone
    (C{"space": "user/chat"}): its URL is the Space's own
    (C{https://user-chat.hf.space}).
  - Every mistake is a L{ValidationFailed} naming its field
    (C{upstreams[1].url}), all of the body's at once where they are
    independent (the upstreams' URLs are checked together).
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

from ..config.routes import SEALED_PREFIX, RouteError
from ..web.api_support import ValidationFailed, field_path

__all__ = [
    "READ_ONLY_KEYS", "ROUTE_KEYS", "UPSTREAM_KEYS", "route_item", "space_url", "spec_from_body",
    "writable",
]

ROUTE_KEYS = ("name", "hosts", "path", "strip_path", "balance", "affinity", "retries",
              "health_path", "health_interval", "access", "enabled", "upstreams")
UPSTREAM_KEYS = ("url", "token", "weight", "space")
READ_ONLY_KEYS = ("source", "version", "created_at", "updated_at", "updated_by", "etag")
# The gateway's own secrets: never a token to send upstream.
_OWN_SECRETS = re.compile(
    r"^(SECRET_KEY.*|ADMIN_PASSWORD.*|METRICS_TOKEN|AFFINITY_SECRET|HF_OAUTH_CLIENT_SECRET|"
    r"OAUTH_CLIENT_SECRET|DATABASE_URL)$")
_SPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
_MAX_TOKEN = 4096


def space_url(repo_id: str) -> str:
    """The URL a Hugging Face Space is served at: C{user/My_Space} -> https://user-my-space.hf.space."""
    return "https://%s.hf.space" % re.sub(r"[^a-z0-9]+", "-", repo_id.lower()).strip("-")


def _access_json(access):
    return access.describe()


def route_item(route, row: Optional[Mapping] = None) -> dict:
    """
    The API's JSON of a L{wighaven.config.routes.Route}; C{row}, for a
    stored one, the store's row (its version and times). No token value.
    """
    return {
        "name": route.name,
        "hosts": list(route.hosts),
        "path": route.path,
        "strip_path": route.strip_path,
        "balance": route.balance,
        "affinity": route.affinity,
        "retries": route.retries,
        "health_path": route.health_path,
        "health_interval": _number(route.health_interval),
        "access": _access_json(route.access),
        "enabled": route.enabled,
        "upstreams": [{
            "url": upstream.url,
            "token": {"set": upstream.token is not None},
            "weight": upstream.weight,
            "space": upstream.space,
        } for upstream in route.upstreams],
        "source": route.source,
        "version": row["version"] if row else None,
        "created_at": row["created_at"] if row else None,
        "updated_at": row["updated_at"] if row else None,
        "updated_by": row["updated_by"] if row else None,
    }


def _number(value: float):
    return int(value) if float(value).is_integer() else value


def writable(item: dict) -> dict:
    """C{item} without what the store keeps for itself: what a merge patch applies to."""
    return {key: value for key, value in item.items() if key not in READ_ONLY_KEYS}


def _kept_token(current: Optional[Mapping], url: str, index: int):
    """The token (as stored) of the current upstream with C{url}, else of the same place."""
    upstreams = (current or {}).get("upstreams") or []
    for upstream in upstreams:
        if upstream.get("url", "").rstrip("/") == url.rstrip("/") and upstream.get("token"):
            return upstream["token"]
    if index < len(upstreams) and upstreams[index].get("token"):
        return upstreams[index]["token"]
    return None


def _token(value, field: str, url: str, index: int, current, seal, errors: list):
    """The stored form of an upstream's C{token} as written (None: no token)."""
    if value is None or value == {"set": False}:
        return None
    if value == {"set": True}:
        kept = _kept_token(current, url, index)
        if kept is None:
            errors.append({"field": field, "message": "there is no token to keep: give one"})
        return kept
    if not isinstance(value, str) or not value.strip():
        errors.append({"field": field, "message": 'must be the token, "env:NAME", "file:/path" '
                                                  'or {"set": true} to keep the current one'})
        return None
    value = value.strip()
    if value.startswith(("env:", "file:")):
        kind, _, name = value.partition(":")
        if kind == "env" and _OWN_SECRETS.fullmatch(name):
            errors.append({"field": field,
                           "message": "env:%s is one of the gateway's own secrets" % name})
            return None
        return value
    if value.startswith(SEALED_PREFIX):
        errors.append({"field": field, "message": "must be the token itself, not a sealed value"})
        return None
    if len(value) > _MAX_TOKEN or any(c in value for c in "\r\n\x00") or not value.isprintable():
        errors.append({"field": field, "message": "must be one line of printable characters"})
        return None
    return SEALED_PREFIX + seal(value)


def _upstream_spec(index: int, value, current, seal, errors: list) -> Optional[dict]:
    where = ("upstreams", index)
    if not isinstance(value, dict):
        errors.append({"field": field_path(*where), "message": "must be an object with a url"})
        return None
    unknown = sorted(set(value) - set(UPSTREAM_KEYS))
    for key in unknown:
        errors.append({"field": field_path(*where, key),
                       "message": "unknown key (known: %s)" % ", ".join(UPSTREAM_KEYS)})
    spec = {}
    url, space = value.get("url"), value.get("space")
    if url is None and isinstance(space, str) and _SPACE_RE.fullmatch(space):
        url = space_url(space)  # a Space given by its repo id alone
    if url is None:
        errors.append({"field": field_path(*where, "url"),
                       "message": "required (or give the Space's repo id as space)"})
    elif not isinstance(url, str):
        errors.append({"field": field_path(*where, "url"), "message": "must be a URL string"})
    else:
        spec["url"] = url.strip()
    for key in ("weight", "space"):
        if value.get(key) is not None:
            spec[key] = value[key]
    token = _token(value.get("token"), field_path(*where, "token"),
                   spec.get("url", ""), index, current, seal, errors)
    if token is not None:
        spec["token"] = token
    return spec


def spec_from_body(body, seal, current: Optional[Mapping] = None) -> dict:
    """
    The spec to store for a route's JSON C{body} (a create, or a patched
    item). C{current}: the spec stored now (a change), whose tokens
    C{{"set": true}} keeps. C{seal(text)} seals a token's value.
    Shape only: L{check_spec} validates the values.
    """
    if not isinstance(body, dict):
        raise ValidationFailed.one("", "must be a JSON object of the route's keys")
    errors = []
    for key in sorted(set(body) - set(ROUTE_KEYS)):
        message = ("read-only: the gateway sets it" if key in READ_ONLY_KEYS
                   else "unknown key (known: %s)" % ", ".join(ROUTE_KEYS))
        errors.append({"field": field_path(key), "message": message})
    spec = {key: value for key, value in body.items()
            if key in ROUTE_KEYS and key != "upstreams" and value is not None}
    upstreams = body.get("upstreams")
    if not isinstance(upstreams, list) or not upstreams:
        errors.append({"field": "upstreams", "message": "at least one upstream is required"})
    else:
        spec["upstreams"] = [_upstream_spec(i, u, current, seal, errors)
                             for i, u in enumerate(upstreams)]
    if errors:
        raise ValidationFailed(errors)
    return spec


def check_spec(spec: dict, parse):
    """
    The Route of C{spec} by C{parse(spec)} (the reloader's, which knows the
    environment and opens sealed tokens); a L{RouteError} becomes a
    L{ValidationFailed} naming its field.
    """
    try:
        return parse(spec)
    except RouteError as e:
        raise ValidationFailed.one(e.field, e.message) from None

"""The admin API's people: users, their invitations, API keys and sessions.

Rules:
  - Secrets are write-only: a password is accepted (and hashed off the
    reactor thread, Argon2id) and reads back as C{{"set": true}}; a second
    factor likewise (it can only be removed here: its owner sets it up); an
    API key's secret is in the answer that creates it and nowhere else,
    ever; an invitation's link likewise (only its SHA-256 is stored).
  - A new password, or disabling a user, ends that user's sessions and
    tokens at once (its token version moves), in every process.
  - An administrator cannot lock themselves out: they cannot disable or
    delete their own account, nor drop their own admin role (409).
  - Every change is an audit event naming the user and what changed (never
    a value of a secret).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Optional

from twisted.internet import defer

from ..auth.keys import new_key
from ..auth.policy import ADMIN_ROLE
from ..auth.usernames import HF_PREFIX, check_username
from ..store import StoreError
from .admin_api import (
    Answer, ApiError, arg, check_if_match, item_answer, limit_arg, not_found, with_etag,
)
from .api_support import ValidationFailed, merge_patch, page

__all__ = ["PeopleApi", "INVITE_PATH"]

INVITE_PATH = "/_gateway/invite"
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
INVITE_TTL = 7 * 86400  # seconds an invitation is good for, unless it says otherwise
_ROLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
_ROUTE = re.compile(r"^[a-z0-9-]{1,63}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_SESSION_ID = re.compile(r"^[0-9a-f]{64}$")
_USER_FIELDS = ("username", "roles", "disabled", "email", "password", "totp")
_LABEL_LENGTH = 100


def invite_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def user_item(user: dict) -> dict:
    return {
        "username": user["username"],
        "roles": list(user["roles"]),
        "disabled": user["disabled"],
        "email": user.get("email"),
        "password": {"set": bool(user.get("password_hash"))},
        "totp": {"set": bool(user.get("totp_secret"))},
        "created_at": user["created_at"],
        "updated_at": user["updated_at"],
    }


def key_item(key: dict) -> dict:
    return {"id": key["id"], "user": key["username"], "name": key["name"],
            "route": key["route"], "expires_at": key["expires_at"],
            "last_used_at": key["last_used_at"], "created_at": key["created_at"],
            "revoked_at": key["revoked_at"]}


def session_item(session: dict) -> dict:
    return {key: session[key] for key in ("id", "via", "created_at", "expires_at", "address",
                                          "user_agent")} | {"user": session["username"]}


def _password(value, field: str = "password") -> str:
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        raise ValidationFailed.one(field, "must be %d to %d characters"
                                   % (MIN_PASSWORD, MAX_PASSWORD))
    return value


def _roles(value) -> list:
    if not isinstance(value, list) or not all(isinstance(r, str) and _ROLE.fullmatch(r)
                                              for r in value):
        raise ValidationFailed.one("roles", "must be a list of roles (1 to 64 of A-Z, a-z, 0-9 "
                                   "and . _ : -)")
    return sorted(set(value))


def _email(value) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or not _EMAIL.fullmatch(value):
        raise ValidationFailed.one("email", "must be an email address")
    return value


def _unknown(body: dict, known) -> None:
    extra = sorted(set(body) - set(known))
    if extra:
        raise ValidationFailed([{"field": key, "message": "unknown key (known: %s)"
                                 % ", ".join(known)} for key in extra])


class PeopleApi:
    """@param origin_of: C{origin_of(request)}: the gateway's origin, for invitation links."""

    def __init__(self, frame, control, origin_of, public_url: Optional[str] = None):
        self._frame = frame
        self._control = control
        self._store = control.store
        self._origin_of = origin_of
        self._public_url = public_url
        for path, methods, handler in (
                ("/users", ["GET"], self.users), ("/users", ["POST"], self.add_user),
                ("/users/<username>", ["GET"], self.user),
                ("/users/<username>", ["PATCH"], self.change_user),
                ("/users/<username>", ["DELETE"], self.remove_user),
                ("/users/<username>/invite", ["POST"], self.invite),
                ("/api-keys", ["GET"], self.keys), ("/api-keys", ["POST"], self.add_key),
                ("/api-keys/<key_id>", ["GET"], self.key),
                ("/api-keys/<key_id>", ["DELETE"], self.revoke_key),
                ("/sessions", ["GET"], self.sessions),
                ("/sessions/<session_id>", ["DELETE"], self.revoke_session)):
            frame.endpoint(path, methods, handler)

    # Users.

    @defer.inlineCallbacks
    def _user(self, username: str) -> dict:
        user = yield self._store.user(username) if len(username) <= 96 else None
        if user is None:
            raise not_found("user")
        return user

    @defer.inlineCallbacks
    def users(self, request, identity):
        users = yield self._store.users()
        items = [with_etag(user_item(u)) for u in users]
        return Answer(200, page(items, limit_arg(request), arg(request, "cursor"),
                                key=lambda item: item["username"]))

    @defer.inlineCallbacks
    def user(self, request, identity, username):
        user = yield self._user(username)
        return item_answer(user_item(user))

    @defer.inlineCallbacks
    def add_user(self, request, identity):
        body = self._frame.json_body(request)
        _unknown(body, ("username", "password", "roles", "email"))
        username = body.get("username")
        try:
            check_username(username)
        except ValueError as e:
            raise ValidationFailed.one("username", str(e)) from None
        if username.lower().startswith(HF_PREFIX):
            raise ValidationFailed.one("username", "names starting with hf: are Hugging Face's")
        roles = _roles(body.get("roles", []))
        email = _email(body.get("email"))
        password_hash = None
        if body.get("password") is not None:
            password_hash = yield self._control.passwords.hash(_password(body["password"]))
        try:
            yield self._store.add_user(username, password_hash=password_hash, roles=roles,
                                       email=email)
        except StoreError:
            raise ApiError(409, "conflict", "a user named %r exists already" % (username,))
        user = yield self._store.user(username)
        item = user_item(user)
        yield self._frame.audit("user.created", identity, request, user=username, after=item)
        return item_answer(item, 201, location="/_gateway/api/v1/users/" + username)

    @defer.inlineCallbacks
    def change_user(self, request, identity, username):
        patch = self._frame.json_body(request)
        _unknown(patch, _USER_FIELDS)
        user = yield self._user(username)
        before = user_item(user)
        if patch.get("username", username) != username:
            raise ValidationFailed.one("username", "a user's name cannot change")
        if "totp" in patch and patch["totp"] is not None:
            raise ValidationFailed.one("totp", "can only be removed (null): its owner sets it up")
        wanted = merge_patch({k: before[k] for k in ("roles", "disabled", "email")},
                             {k: v for k, v in patch.items() if k in ("roles", "disabled",
                                                                      "email")})
        fields = {}
        if "roles" in patch:
            fields["roles"] = _roles(wanted.get("roles", []))
        if "disabled" in patch:
            if not isinstance(patch["disabled"], bool):
                raise ValidationFailed.one("disabled", "must be true or false")
            fields["disabled"] = patch["disabled"]
        if "email" in patch:
            fields["email"] = _email(wanted.get("email"))
        if patch.get("password") is not None:
            fields["password_hash"] = yield self._control.passwords.hash(
                _password(patch["password"]))
        if "totp" in patch:
            fields["totp_secret"] = None
        self._keep_own_access(identity, username, fields)
        check_if_match(request, before)  # a bad body is told first, whatever its version
        if fields:
            user = yield self._store.update_user(username, **fields)
            if user is None:
                raise not_found("user")
            if "password_hash" in fields or fields.get("disabled"):
                yield self._store.revoke_user_sessions(username)
        after = user_item(user)
        changed = sorted(set(patch) & set(_USER_FIELDS) - {"username"})
        yield self._frame.audit("user.updated", identity, request, user=username,
                                changed=changed, before=before, after=after)
        return item_answer(after)

    @staticmethod
    def _keep_own_access(identity, username: str, fields: dict) -> None:
        if identity.user != username:
            return
        if fields.get("disabled"):
            raise ApiError(409, "own_account", "you cannot disable your own account")
        if "roles" in fields and ADMIN_ROLE not in fields["roles"]:
            raise ApiError(409, "own_account", "you cannot remove your own admin role")

    @defer.inlineCallbacks
    def remove_user(self, request, identity, username):
        user = yield self._user(username)
        before = user_item(user)
        check_if_match(request, before)
        if identity.user == username:
            raise ApiError(409, "own_account", "you cannot delete your own account")
        removed = yield self._store.remove_user(username)
        if not removed:
            raise not_found("user")
        yield self._frame.audit("user.deleted", identity, request, user=username, before=before)
        return Answer(204)

    @defer.inlineCallbacks
    def invite(self, request, identity, username):
        body = self._frame.json_body(request)
        _unknown(body, ("expires_in",))
        ttl = body.get("expires_in", INVITE_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 300 <= ttl <= 30 * 86400:
            raise ValidationFailed.one("expires_in", "must be seconds from 300 to 2592000 "
                                       "(30 days)")
        yield self._user(username)
        if username.startswith(HF_PREFIX):
            raise ApiError(409, "hugging_face_user", "Hugging Face users sign in with Hugging "
                           "Face: they have no password")
        token = secrets.token_urlsafe(32)
        expires_at = self._store.now() + ttl
        yield self._store.add_invite(invite_hash(token), username, expires_at, identity.user)
        origin = self._public_url or (self._origin_of(request) or b"").decode("ascii")
        yield self._frame.audit("user.invited", identity, request, user=username,
                                expires_at=expires_at)
        return Answer(201, {"url": "%s%s?token=%s" % (origin, INVITE_PATH, token),
                            "expires_at": expires_at})

    # API keys.

    @defer.inlineCallbacks
    def _keys(self, username=None):
        # A revoked key is deleted as far as the API goes (its DELETE said
        # 204): it is neither listed nor read. The store keeps its row, so
        # that it stays refused, and the audit trail keeps its story.
        keys = yield self._store.keys(username)
        return [with_etag(key_item(k)) for k in keys if k["revoked_at"] is None]

    @defer.inlineCallbacks
    def keys(self, request, identity):
        items = yield self._keys(arg(request, "user") or None)
        return Answer(200, page(items, limit_arg(request), arg(request, "cursor"),
                                key=lambda item: [item["created_at"], item["id"]]))

    @defer.inlineCallbacks
    def _key(self, key_id: str) -> dict:
        if not _KEY_ID.fullmatch(key_id):
            raise not_found("API key")
        items = yield self._keys()
        for item in items:
            if item["id"] == key_id:
                return item
        raise not_found("API key")

    @defer.inlineCallbacks
    def key(self, request, identity, key_id):
        item = yield self._key(key_id)
        return item_answer(item)

    @defer.inlineCallbacks
    def add_key(self, request, identity):
        body = self._frame.json_body(request)
        _unknown(body, ("user", "name", "route", "expires_in_days"))
        owner = body.get("user", identity.user)
        if not isinstance(owner, str):
            raise ValidationFailed.one("user", "must be a user's name")
        user = yield self._store.user(owner) if len(owner) <= 96 else None
        if user is None:
            raise ValidationFailed.one("user", "no such user")
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or not name.isprintable()
                                 or not 1 <= len(name) <= _LABEL_LENGTH):
            raise ValidationFailed.one("name", "must be 1 to %d printable characters"
                                       % _LABEL_LENGTH)
        route = body.get("route")
        if route is not None and (not isinstance(route, str) or not _ROUTE.fullmatch(route)):
            raise ValidationFailed.one("route", "must be a route's name")
        days = body.get("expires_in_days")
        if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                                 or not 1 <= days <= 3650):
            raise ValidationFailed.one("expires_in_days", "must be a whole number of days from "
                                       "1 to 3650")
        key_id, key, secret_hash = new_key()
        expires_at = self._store.now() + days * 86400 if days else None
        yield self._store.add_key(key_id, user["id"], secret_hash, route=route,
                                  expires_at=expires_at, name=name)
        item = yield self._key(key_id)
        yield self._frame.audit("key.created", identity, request, key=key_id, user=owner,
                                route=route, expires_at=expires_at)
        answer = item_answer(item, 201, location="/_gateway/api/v1/api-keys/" + key_id)
        # The key itself is in this answer only: not part of the item (nor of its ETag).
        return Answer(201, dict(answer.body, key=key), etag=answer.etag,
                      location=answer.location)

    @defer.inlineCallbacks
    def revoke_key(self, request, identity, key_id):
        item = yield self._key(key_id)
        check_if_match(request, item)
        if getattr(identity, "key_id", None) == key_id:
            raise ApiError(409, "own_key", "this request is made with that key: revoke it with "
                           "another credential")
        revoked = yield self._store.revoke_key(key_id)
        if not revoked:  # another admin revoked it meanwhile
            raise not_found("API key")
        yield self._frame.audit("key.revoked", identity, request, key=key_id, user=item["user"])
        return Answer(204)

    # Sessions.

    @defer.inlineCallbacks
    def sessions(self, request, identity):
        sessions = yield self._store.sessions(arg(request, "user") or None)
        items = [with_etag(session_item(s)) for s in sessions]
        items.sort(key=lambda item: (-item["created_at"], item["id"]))
        return Answer(200, page(items, limit_arg(request), arg(request, "cursor"),
                                key=lambda item: [-item["created_at"], item["id"]]))

    @defer.inlineCallbacks
    def revoke_session(self, request, identity, session_id):
        if not _SESSION_ID.fullmatch(session_id):
            raise not_found("session")
        sessions = yield self._store.sessions()
        session = next((s for s in sessions if s["id"] == session_id), None)
        if session is None:
            raise not_found("session")
        check_if_match(request, session_item(session))
        yield self._store.revoke_session(bytes.fromhex(session_id))
        yield self._frame.audit("session.revoked", identity, request, user=session["username"],
                                session=session_id[:12])
        return Answer(204)

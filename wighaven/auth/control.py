"""Access control's moving parts, made once per gateway process: the store,
the in-memory view of identities, the gate, passwords, tokens, sessions,
throttling, second factors, and the audit trail of every sign-in.

Rules:
  - Sign-in work (a password check, a refresh token's rotation) runs off
    the reactor thread: Argon2 on its own small pool at a lower priority,
    the store on its one thread. At most MAX_SIGNING_IN sign-ins are under
    way at once (503 past that), and a throttled attempt costs no work: a
    flood of logins cannot take the cores forwarding needs, nor grow a
    queue without bound.
  - Every sign-in, failed sign-in, sign-out and refresh-token reuse is an
    audit event (a throttled attempt once a minute per account and address) (actor, source address, what; never a
    password, token or code).
  - ADMIN_USERNAME with ADMIN_PASSWORD (or _HASH) is made (or mended) an
    administrator at every start, before the gateway listens. An unchanged
    password is left as it is, so a restart does not sign the admin out.
  - Refresh tokens: C{rt_<random>}, stored as a SHA-256; each use rotates
    it within its family, and a used one presented again revokes the whole
    family (someone copied it).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from typing import Optional

import attrs
from twisted.internet import defer, task
from twisted.logger import Logger

from ..store import SqliteStore, StoreError, sqlite_path
from ..store.secret_box import SecretBox
from .gate import Gate
from .identities import IdentityView
from .passwords import Busy, Passwords, hash_password
from .policy import ADMIN_ROLE
from .second_factor import SecondFactor
from .sessions import SessionTokens, new_session_id, session_id_hash
from .throttle import LoginThrottle
from .tokens import TokenKeys
from .usernames import HF_PREFIX

__all__ = ["AccessControl", "SignIn"]

KEY_USES_FLUSH = 60.0  # seconds between writes of API keys' last-used times
PURGE_EVERY = 3600.0  # seconds between sweeps of expired sessions and refresh tokens
# Sign-ins under way at once (a store read and an Argon2 check each); past it: 503.
MAX_SIGNING_IN = 64
THROTTLED_AUDIT_EVERY = 60.0  # seconds: one audit event per throttled account and address
_REFRESH_PREFIX = "rt_"


@attrs.frozen
class SignIn:
    """A sign-in's outcome: C{user} (a dict) when it succeeded, else why not."""

    user: Optional[dict] = None
    failure: Optional[str] = None  # "wrong", "otp_needed", "otp_wrong", "throttled", "busy"
    retry_after: int = 0


def _refresh_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class AccessControl:
    """
    @param settings: the L{wighaven.config.auth_settings.AuthSettings}.
    @param store: the gateway's store (Deferred mode).
    """

    _log = Logger()

    def __init__(self, settings, store, reactor, passwords=None):
        self.settings = settings
        self.store = store
        self.clock = self._reactor = reactor  # seconds(): what tokens are timed by
        self.view = IdentityView(store)
        self.access_tokens = TokenKeys(settings.secret_key, settings.secret_key_previous,
                                       clock=reactor.seconds)
        self.sessions = SessionTokens(settings.secret_key, settings.secret_key_previous,
                                      clock=reactor.seconds)
        self.gate = Gate(self.view, self.access_tokens, self.sessions, reactor,
                         settings.metrics_token)
        self.passwords = passwords or Passwords(reactor)
        self.throttle = LoginThrottle(reactor)
        self._signing_in = 0
        self._refusals_audited = {}  # (account, address) -> when its refusal was audited
        self.second_factor = SecondFactor(reactor)
        # Seals the upstream tokens of the routes made through the admin API.
        self.secret_box = SecretBox(settings.secret_key, settings.secret_key_previous)
        self._flusher = task.LoopingCall(self.flush_key_uses)
        self._flusher.clock = reactor
        self._purger = task.LoopingCall(self.purge_expired)
        self._purger.clock = reactor
        self.hf_sign_in = hf_sign_in(settings.hf, reactor)  # (OpenIDClient, rules) or None

    @classmethod
    def open(cls, settings, reactor) -> "AccessControl":
        """Open (and migrate) the store, make sure of ADMIN_USERNAME, and start."""
        path = sqlite_path(settings.database_url)
        bootstrap = SqliteStore.open(path, sync=True)
        try:
            ensure_admin(bootstrap, settings)
        finally:
            bootstrap.close()
        control = cls(settings, SqliteStore.open(path, reactor), reactor)
        control._flusher.start(KEY_USES_FLUSH, now=False)
        control._purger.start(PURGE_EVERY, now=False)
        return control

    def describe(self) -> str:
        """The start-up line's account of access control (no secret in it)."""
        hf = self.settings.hf
        if self.hf_sign_in is None:
            sign_in = "Sign in with Hugging Face off (no HF_OAUTH_CLIENT_ID)"
        elif not self.hf_sign_in[1].configured:
            sign_in = "Sign in with Hugging Face off (nobody allowed: HF_OAUTH_ALLOWED_*)"
        else:
            sign_in = "Sign in with Hugging Face via %s for users %s, orgs %s, admins %s" % (
                hf.provider_url, ",".join(hf.allowed_users) or "-",
                ",".join(hf.allowed_orgs) or "-", ",".join(hf.admin_users) or "-")
        return "%d users, %d API keys in %s; %s" % (
            len(self.view.users), len(self.view.keys), self.store.path, sign_in)

    @defer.inlineCallbacks
    def close(self):
        for loop in (self._flusher, self._purger):
            if loop.running:
                loop.stop()
        yield self.flush_key_uses()
        self.passwords.close()
        self.store.close()
        if self.hf_sign_in is not None:
            yield self.hf_sign_in[0].close()

    def flush_key_uses(self):
        """Write the API keys' last-used times (one transaction; no revision bump)."""
        uses, self.gate.key_uses = self.gate.key_uses, {}
        if not uses:
            return defer.succeed(None)
        return self.store.touch_keys(uses).addErrback(
            lambda f: self._log.warn("API keys' last-used times not saved: {e}", e=f.value))

    @defer.inlineCallbacks
    def purge_expired(self):
        """
        Forget sessions and refresh tokens long expired (the tables would only
        grow), and audit events older than AUDIT_RETENTION_DAYS.
        """
        now = self._reactor.seconds()
        try:
            yield self.store.purge_expired(now)
            yield self.store.purge_audit(now - self.settings.audit_retention_days * 86400.0)
        except (StoreError, sqlite3.Error) as e:  # the next sweep tries again
            self._log.warn("expired sessions or audit events not purged: {e}", e=e)

    def audit(self, kind: str, actor: Optional[str], address: Optional[str], **detail):
        """Record an audit event; a failure to do so is logged, never raised to a client."""
        d = self.store.audit(kind, actor=actor, source=address, detail=detail)
        d.addErrback(lambda f: self._log.error("audit event {kind} not recorded: {e}",
                                               kind=kind, e=f.value))
        return d

    # Signing in.

    @defer.inlineCallbacks
    def sign_in(self, username: str, password: str, otp: Optional[str], address: str,
                how: str):
        """
        Check a username, password (and second factor); a L{SignIn}.
        Unknown users, disabled ones and wrong passwords look and take alike.
        """
        wait = self.throttle.retry_after(username, address)
        if wait:
            if self._first_refusal(username, address):
                yield self.audit("login.throttled", username, address, how=how)
            return SignIn(failure="throttled", retry_after=wait)
        if self._signing_in >= MAX_SIGNING_IN:
            return SignIn(failure="busy", retry_after=1)
        self._signing_in += 1
        try:
            outcome = yield self._check_sign_in(username, password, otp, address, how)
        finally:
            self._signing_in -= 1
        return outcome

    def _first_refusal(self, username: str, address: str) -> bool:
        """Is this the first throttled attempt of (account, address) in a minute? Only
        those are audited: a flood of refused attempts must not become a flood of writes."""
        now = self._reactor.seconds()
        key = (username, address)
        if now - self._refusals_audited.get(key, -THROTTLED_AUDIT_EVERY) < THROTTLED_AUDIT_EVERY:
            return False
        if len(self._refusals_audited) >= 10_000:
            self._refusals_audited.clear()
        self._refusals_audited[key] = now
        return True

    @defer.inlineCallbacks
    def _check_sign_in(self, username, password, otp, address, how):
        user = yield self.store.user(username) if username else None
        usable = user is not None and not user["disabled"] and user["password_hash"]
        try:
            verdict = yield self.passwords.check(user["password_hash"] if usable else None,
                                                 password)
        except Busy:
            return SignIn(failure="busy", retry_after=1)
        if not verdict.ok:
            self.throttle.failed(username, address)
            yield self.audit("login.failed", username, address, how=how, reason="password")
            return SignIn(failure="wrong")
        if user["totp_secret"]:
            if not otp:
                return SignIn(failure="otp_needed")
            if not self.second_factor.accept(user["id"], user["totp_secret"], otp):
                self.throttle.failed(username, address)
                yield self.audit("login.failed", username, address, how=how, reason="otp")
                return SignIn(failure="otp_wrong")
        if verdict.rehash:
            yield self.store.update_user(username, password_hash=verdict.rehash)
            user = yield self.store.user(username)
        self.throttle.succeeded(username)
        yield self.audit("login.succeeded", username, address, how=how)
        return SignIn(user=user)

    @defer.inlineCallbacks
    def start_session(self, user: dict, via: str, address: str, user_agent: str, orgs=()):
        """A new browser session for C{user}: the cookie's value."""
        session_id = new_session_id()
        ttl = self.settings.session_ttl
        yield self.store.add_session(session_id_hash(session_id), user["id"], via,
                                     self._reactor.seconds() + ttl, address=address,
                                     user_agent=(user_agent or "")[:200])
        return self.sessions.issue(user["username"], user["id"], user["token_version"],
                                   session_id, via, ttl, orgs)

    @defer.inlineCallbacks
    def issue_tokens(self, user: dict, family: Optional[str] = None):
        """An access token and a new refresh token (of a new family unless given)."""
        refresh = _REFRESH_PREFIX + secrets.token_urlsafe(32)
        yield self.store.add_refresh(
            _refresh_hash(refresh), family or secrets.token_hex(8), user["id"],
            user["token_version"], self._reactor.seconds() + self.settings.refresh_ttl)
        return self._token_answer(user, refresh)

    def _token_answer(self, user, refresh: str) -> dict:
        ttl = self.settings.jwt_ttl
        return {
            # jti: two tokens issued in the same second are still two tokens.
            "access_token": self.access_tokens.issue(
                user["username"], ttl, uid=user["id"], ver=user["token_version"],
                jti=secrets.token_urlsafe(12)),
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
        }

    @defer.inlineCallbacks
    def refresh(self, token: str, address: str):
        """The new pair for a refresh token, or None (unknown, used, expired, revoked)."""
        if not isinstance(token, str) or not token.startswith(_REFRESH_PREFIX):
            return None
        new = _REFRESH_PREFIX + secrets.token_urlsafe(32)
        status, user = yield self.store.rotate_refresh(
            _refresh_hash(token), _refresh_hash(new),
            self._reactor.seconds() + self.settings.refresh_ttl)
        if status == "reused":
            yield self.audit("token.reused", user["username"] if user else None, address)
            self._log.warn("a used refresh token was presented again: its family is revoked")
            return None
        if status != "ok":
            return None
        yield self.audit("token.refreshed", user["username"], address)
        return self._token_answer(user, new)

    @defer.inlineCallbacks
    def sign_out(self, identity, address: str):
        """End every session and token of C{identity}'s user (its token version moves)."""
        if identity.session_id:
            yield self.store.revoke_session(session_id_hash(identity.session_id))
        yield self.store.bump_token_version(identity.user)
        yield self.audit("logout", identity.user, address, via=identity.via)

    @defer.inlineCallbacks
    def hugging_face_user(self, hf_user, roles, address: str):
        """
        The gateway user C{hf:<username>} of a Hugging Face sign-in, made on
        its first sign-in; its admin role follows HF_OAUTH_ADMIN_USERS. None
        when that user has been disabled.
        """
        name = HF_PREFIX + hf_user.username.lower()
        user = yield self.store.user(name)
        if user is None:
            yield self.store.add_user(name, roles=roles, email=hf_user.email)
        else:
            wanted = set(user["roles"]) - {ADMIN_ROLE} | set(roles)
            if wanted != set(user["roles"]) or (hf_user.email or None) != user.get("email"):
                yield self.store.update_user(name, roles=sorted(wanted), email=hf_user.email)
        user = yield self.store.user(name)
        if user["disabled"]:
            yield self.audit("login.failed", name, address, how="huggingface", reason="disabled")
            return None
        self.view.fresh()  # the new user (or its roles) must be known to the next request
        yield self.audit("login.succeeded", name, address, how="huggingface")
        return user


def hf_sign_in(hf, reactor):
    """(the OpenID client, who may enter) of Sign in with Hugging Face, or None unset."""
    if hf is None:
        return None
    from .oidc import HfAccessRules, OpenIDClient

    rules = HfAccessRules(hf.allowed_users, hf.allowed_orgs, hf.admin_users)
    if not rules.configured:
        AccessControl._log.warn(
            "Sign in with Hugging Face is off: set HF_OAUTH_ALLOWED_USERS, HF_OAUTH_ALLOWED_ORGS "
            "or HF_OAUTH_ADMIN_USERS to say who may enter")
    return OpenIDClient(reactor, hf.provider_url, hf.client_id, hf.client_secret, hf.scopes), rules


def ensure_admin(store, settings) -> None:
    """
    ADMIN_USERNAME exists, enabled, with the admin role and the password
    of ADMIN_PASSWORD (or ADMIN_PASSWORD_HASH). C{store} is in sync mode.
    """
    name = settings.admin_username
    if name is None:
        return
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    user = store.user(name)
    wanted_hash = settings.admin_password_hash
    if wanted_hash is None:
        try:
            if user is not None and user["password_hash"] and PasswordHasher().verify(
                    user["password_hash"], settings.admin_password):
                wanted_hash = user["password_hash"]  # the same password: nothing to change
        except (VerificationError, InvalidHashError):
            pass
        wanted_hash = wanted_hash or hash_password(settings.admin_password)
    if user is None:
        try:
            store.add_user(name, password_hash=wanted_hash, roles=[ADMIN_ROLE])
        except StoreError:  # another worker made it in the meantime: mend that one
            return ensure_admin(store, settings)
        store.audit("user.created", actor="ADMIN_USERNAME", detail={"user": name, "roles": [ADMIN_ROLE]})
        return
    changes = {}
    if user["password_hash"] != wanted_hash:
        changes["password_hash"] = wanted_hash
    if ADMIN_ROLE not in user["roles"]:
        changes["roles"] = sorted(set(user["roles"]) | {ADMIN_ROLE})
    if user["disabled"]:
        changes["disabled"] = False
    if changes:
        store.update_user(name, **changes)
        store.audit("user.updated", actor="ADMIN_USERNAME",
                    detail={"user": name, "changed": sorted(changes)})

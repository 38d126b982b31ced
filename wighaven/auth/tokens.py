"""Access tokens: short-lived JWTs (PyJWT), signed with keys derived from SECRET_KEY.

Rules:
  - The signing key is derived from SECRET_KEY with HKDF-SHA256 (a key of
    its own for this use), never the setting itself; a SECRET_KEY shorter
    than 32 characters is refused with one line.
  - Each key has a C{kid} (from a hash of the key, so it reveals nothing)
    written in the token's header, and the algorithm is pinned per kid
    (HS256): a token naming another algorithm, C{none} included, or an
    unknown kid is refused before any signature is checked.
  - SECRET_KEY_PREVIOUS, when set, still verifies (rotation) but never signs.
  - Claims: C{iss}, C{aud}, C{sub}, C{iat}, C{nbf}, C{exp} are required and
    checked; C{ver} carries the user's token version, so that a password
    change or a disabled account ends its tokens at once (the caller
    compares it with the version it holds in memory).
  - Verified tokens are remembered until they expire (a bounded LRU), so a
    program sending the same token with every request costs one dict lookup,
    not one HMAC and a JSON parse.
"""

from __future__ import annotations

import collections
import hashlib
import time
from typing import Callable, Iterable, Optional

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..config.settings import ConfigError

__all__ = ["InvalidToken", "TokenKeys", "MIN_SECRET_LENGTH"]

MIN_SECRET_LENGTH = 32
_ALGORITHM = "HS256"
_REQUIRED = ["iss", "aud", "sub", "iat", "nbf", "exp"]
_LEEWAY = 5  # seconds of clock difference allowed between machines


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid; its text is a fixed reason."""


def _derive(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"wighaven access token v1").derive(secret.encode("utf-8"))


def _kid(key: bytes) -> str:
    return hashlib.sha256(b"kid" + key).hexdigest()[:16]


class TokenKeys:
    """
    Issues and verifies the gateway's access tokens.

    @param secret: SECRET_KEY; @param previous: SECRET_KEY_PREVIOUS (verify only).
    @param issuer, audience: the C{iss} and C{aud} every token carries.
    """

    def __init__(self, secret: Optional[str], previous: Iterable[str] = (), *,
                 issuer: str = "wighaven", audience: str = "wighaven",
                 clock: Callable[[], float] = time.time, cache_size: int = 10_000):
        for name, value in [("SECRET_KEY", secret)] + [
                ("SECRET_KEY_PREVIOUS", p) for p in previous]:
            if not value or len(value) < MIN_SECRET_LENGTH:
                raise ConfigError("%s must be at least %d characters (e.g. python -c \"import "
                                  "secrets; print(secrets.token_urlsafe(32))\")"
                                  % (name, MIN_SECRET_LENGTH))
        self._key = _derive(secret)
        self.kid = _kid(self._key)
        self._keys = {self.kid: self._key}  # kid -> key; every one is HS256
        for value in previous:
            key = _derive(value)
            self._keys.setdefault(_kid(key), key)
        self._issuer = issuer
        self._audience = audience
        self._now = clock
        self._cache = collections.OrderedDict()  # token -> claims, until exp
        self._cache_size = cache_size

    def knows_kid(self, kid) -> bool:
        """Is C{kid} one of this keeper's keys (a token of the gateway's, valid or not)?"""
        return kid in self._keys

    def issue(self, subject: str, ttl: float, **claims) -> str:
        """A token for C{subject}, valid for C{ttl} seconds; C{claims} added (roles, ver...)."""
        now = int(self._now())
        payload = dict(claims, iss=self._issuer, aud=self._audience, sub=subject, iat=now,
                       nbf=now, exp=now + int(ttl))
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM, headers={"kid": self.kid})

    def verify(self, token: str) -> dict:
        """The claims of a valid token; L{InvalidToken} otherwise."""
        cached = self._cache.get(token)
        now = self._now()
        if cached is not None:
            if now < cached["exp"]:
                self._cache.move_to_end(token)
                return cached
            del self._cache[token]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a token")
        key = self._keys.get(header.get("kid"))
        if key is None or header.get("alg") != _ALGORITHM:
            raise InvalidToken("unknown key or algorithm")
        try:
            claims = jwt.decode(
                token, key, algorithms=[_ALGORITHM], audience=self._audience,
                issuer=self._issuer, leeway=_LEEWAY,
                options={"require": _REQUIRED, "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired")
        except jwt.PyJWTError:
            raise InvalidToken("invalid")
        if now >= claims["exp"] + _LEEWAY:  # by this keeper's clock too (tests drive it)
            raise InvalidToken("expired")
        cache = self._cache
        cache[token] = claims
        while len(cache) > self._cache_size:
            cache.popitem(last=False)
        return claims

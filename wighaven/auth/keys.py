"""API keys for programs: C{wh_<id>_<secret>}, shown once, stored as a hash.

Rules:
  - The id (8 bytes) names the key in lists, logs and the audit; the secret
    (32 bytes from the system's CSPRNG) is never stored nor shown again.
  - Stored is the SHA-256 of the secret: a key is 256 random bits, so a
    slow hash (Argon2) would add nothing but cost to every request that
    presents one; comparisons are constant-time.
  - L{parse} refuses anything that is not exactly a key's shape before any
    lookup, so a malformed header costs nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Optional, Tuple

__all__ = ["new_key", "parse", "secret_hash", "matches"]

_PREFIX = "wh_"
_KEY = re.compile(r"^wh_([A-Za-z0-9]{16})_([A-Za-z0-9_-]{43})$")


def _token(size: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).rstrip(b"=").decode("ascii")


def new_key() -> Tuple[str, str, bytes]:
    """A new key: (its id, the whole key to show once, the hash to store)."""
    key_id = secrets.token_hex(8)
    secret = _token(32)
    return key_id, "%s%s_%s" % (_PREFIX, key_id, secret), secret_hash(secret)


def parse(presented: Optional[str]) -> Optional[Tuple[str, str]]:
    """(id, secret) of a presented key, or None when it is not a key's shape."""
    if not presented or not presented.startswith(_PREFIX):
        return None
    match = _KEY.match(presented.strip())
    return (match.group(1), match.group(2)) if match else None


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def matches(secret: str, stored_hash: bytes) -> bool:
    """Does C{secret} belong to C{stored_hash} (in constant time)?"""
    return hmac.compare_digest(secret_hash(secret), stored_hash)

"""Upstream tokens sealed at rest: what the store keeps of a secret the
gateway must send on (a backend's bearer token) is a Fernet token, so a
copied database file, or a backup of it, does not leak them by itself.

Rules:
  - The Fernet key is derived from SECRET_KEY with HKDF-SHA256 (info
    C{wighaven upstream tokens v1}: a key of its own for this use), never
    the setting itself; a SECRET_KEY shorter than 32 characters is refused
    with one line, as for the access tokens.
  - SECRET_KEY_PREVIOUS, when set, still opens (rotation) but never seals:
    L{SecretBox.reseal} moves a stored value onto the current key, so that
    the previous one can be dropped afterwards.
  - A value that can't be opened (another key, a changed byte, not a
    token at all) raises L{SealedSecretError} with one fixed line: it says
    what the operator must do, and nothing of the value or the key.
  - Fernet authenticates (HMAC-SHA256) before it decrypts, and seals each
    value with a fresh IV: the same token sealed twice gives two different
    texts, so equal tokens can't be spotted in the file.
"""

from __future__ import annotations

import base64
import binascii
from typing import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..auth.tokens import MIN_SECRET_LENGTH
from ..config.settings import ConfigError

__all__ = ["SealedSecretError", "SecretBox", "is_sealed"]

_INFO = b"wighaven upstream tokens v1"
_VERSION = 0x80  # a Fernet token's first byte
# version (1) + timestamp (8) + IV (16) + HMAC (32); then the ciphertext, whole AES
# blocks, one at least
_OVERHEAD = 1 + 8 + 16 + 32
_BLOCK = 16


class SealedSecretError(Exception):
    """A stored secret can't be opened with the keys the gateway has; its text is fixed."""

    MESSAGE = ("a stored secret cannot be decrypted: SECRET_KEY changed without "
               "SECRET_KEY_PREVIOUS")

    def __init__(self):
        super().__init__(self.MESSAGE)


def _fernet_key(secret: str) -> bytes:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        secret.encode("utf-8"))
    return base64.urlsafe_b64encode(key)


def is_sealed(value) -> bool:
    """
    Does C{value} look like a Fernet token (a text L{SecretBox.seal} could
    have made)? Its shape only: no key is tried. For telling a sealed value
    from one stored in clear before sealing existed.
    """
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(value, str) or not value.isascii() or len(value) % 4:
        return False
    try:
        raw = base64.urlsafe_b64decode(value)
    except (binascii.Error, ValueError):
        return False
    if base64.urlsafe_b64encode(raw).decode("ascii") != value:  # another alphabet, or junk
        return False
    return (len(raw) >= _OVERHEAD + _BLOCK and (len(raw) - _OVERHEAD) % _BLOCK == 0
            and raw[0] == _VERSION)


class SecretBox:
    """
    Seals and opens the upstream tokens the store keeps.

    @param secret_key: SECRET_KEY (seals and opens).
    @param previous: SECRET_KEY_PREVIOUS (opens only).
    """

    def __init__(self, secret_key: str, previous: Iterable[str] = ()):
        previous = tuple(previous)
        for name, value in [("SECRET_KEY", secret_key)] + [
                ("SECRET_KEY_PREVIOUS", p) for p in previous]:
            if not value or len(value) < MIN_SECRET_LENGTH:
                raise ConfigError("%s must be at least %d characters (e.g. python -c \"import "
                                  "secrets; print(secrets.token_urlsafe(32))\")"
                                  % (name, MIN_SECRET_LENGTH))
        # MultiFernet encrypts with the first key only and tries each in turn to decrypt.
        self._fernet = MultiFernet(
            [Fernet(_fernet_key(secret_key))] + [Fernet(_fernet_key(p)) for p in previous])

    def seal(self, plaintext: str) -> str:
        """C{plaintext} encrypted and authenticated under the current key: an ASCII Fernet token."""
        if not isinstance(plaintext, str):
            raise TypeError("seal takes a str")
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        """The plaintext of C{sealed}, opened with any key; L{SealedSecretError} otherwise."""
        # The cause is dropped (from None): nothing of the value or key reaches a log.
        if not is_sealed(sealed):
            raise SealedSecretError() from None
        try:
            return self._fernet.decrypt(sealed).decode("utf-8")
        except (InvalidToken, TypeError, ValueError):
            raise SealedSecretError() from None

    def reseal(self, sealed: str) -> str:
        """C{sealed} opened with any key and sealed again with the current one (key rotation)."""
        return self.seal(self.open(sealed))

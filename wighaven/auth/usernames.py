"""What a local user's name may be.

Rule: 1 to 64 of A-Z, a-z, 0-9 and C{. _ @ -}, so that a name is safe in a
header (X-Forwarded-User), a log line and a URL as it is; C{hf:} is kept
for the identities Sign in with Hugging Face makes (C{hf:<username>}).
"""

from __future__ import annotations

import re

__all__ = ["check_username", "HF_PREFIX"]

HF_PREFIX = "hf:"
_NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def check_username(name: str) -> str:
    """C{name} when it is a valid local user name; ValueError saying why otherwise."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError("must be 1 to 64 of A-Z, a-z, 0-9, '.', '_', '@' and '-'")
    return name

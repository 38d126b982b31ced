"""The revision file: how every process sharing the store learns, at once and
for the price of a memory read, that identities changed.

Several processes use one SQLite file (the gateway's workers, the console
command), and each gateway process answers from an in-memory view of the
identities (users, API keys, revoked sessions). A change made by any of
them must reach all of them before their next request, without a database
call per request.

Rules:
  - Beside the database (its path + C{.revision}) lies a file of 8 bytes,
    created 0600, mapped with mmap (MAP_SHARED): every process sees a write
    the moment it is made, through the kernel's page cache, and reading it
    is a slice of memory, cheap enough for every request.
  - A writer bumps it AFTER its transaction committed; a reader reads it
    BEFORE it loads the identities. So a reader that saw a value has loaded
    at least what was committed before that value was written, and any later
    change writes a value it has not seen.
  - The value carries no meaning: any change of it means "reload". A bump
    writes 8 fresh random bytes (os.urandom), not a counter: a counter is a
    read-modify-write, and two writers reading N at once would both write
    N+1, the second change then leaving the value a reader already saw
    (and missed that change). Random values need no lock: whatever two
    writers do at once, even a torn mix of both, the result differs from
    anything a reader saw before (but for a chance of 2**-64), and a reader
    that catches a torn value just reloads once more.
  - Nothing is flushed to disk: after a crash or restart every process loads
    the identities afresh at start anyway.
"""

from __future__ import annotations

import mmap
import os

__all__ = ["RevisionFile", "SIZE"]

SIZE = 8


class RevisionFile:
    """The 8-byte revision file at C{path}, created (0600, zeros) when missing."""

    def __init__(self, path: str):
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            # Extending only: two processes creating it at once both end with SIZE
            # bytes, and a value written meanwhile is kept (truncating to the size
            # a file has already changes nothing).
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)  # the mapping keeps the file

    def read(self) -> bytes:
        """The current value (compare it with the one last seen; any change means reload)."""
        return self._map[:SIZE]

    def bump(self) -> None:
        """Tell every process that identities changed (call it after the commit)."""
        self._map[:SIZE] = os.urandom(SIZE)

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()

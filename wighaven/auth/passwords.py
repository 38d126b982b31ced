"""Passwords: Argon2id hashes (argon2-cffi), checked off the reactor thread.

Rules:
  - Parameters are OWASP's for Argon2id (19 MiB of memory, 2 passes, 1
    lane): about 20-40 ms of one core per check, which is the point.
  - Checks run on a pool of at most C{threads} threads (2, but 1 on a
    machine of 2 cores: one is always left to forwarding) beside the
    reactor, at a lower CPU priority (nice +10): when the machine is busy,
    forwarding goes first and sign-ins wait. At most C{max_waiting} (64)
    checks wait their turn; past that L{Busy} is raised at once (the caller
    answers 503 with Retry-After), so a flood of logins can grow neither
    memory nor the wait without bound.
  - An unknown user costs the same as a wrong password (a check against a
    hash made at start), so timing does not tell which names exist.
  - A hash made with other parameters still verifies, and
    L{Verdict.rehash} carries a new one to store.
  - L{hash_password} hashes in the caller's thread, for the console command
    and the start-up bootstrap only (no reactor to keep free there).
"""

from __future__ import annotations

import os
import threading
from typing import Optional

import attrs
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["Busy", "Passwords", "Verdict", "hash_password", "is_argon2_hash"]

NICENESS = 10  # how much lower than forwarding's the checks' CPU priority is
_thread = threading.local()

# OWASP Password Storage Cheat Sheet, Argon2id: m=19 MiB, t=2, p=1.
OWASP = dict(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16)


@attrs.frozen
class Verdict:
    """A password check's outcome; C{rehash}: a new hash to store, when one is due."""

    ok: bool
    rehash: Optional[str] = attrs.field(default=None, repr=False)


class Busy(Exception):
    """Too many password checks are waiting: try again in a moment."""


def _lower_priority() -> None:
    """Make the calling thread nicer (Linux: a thread's own priority), once."""
    if getattr(_thread, "nicer", False):
        return
    _thread.nicer = True
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                       min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS))
    except (AttributeError, OSError):  # not Linux, or not allowed: same priority
        pass


class Passwords:
    """Hashes and checks passwords on a bounded pool of threads."""

    def __init__(self, reactor=None, threads: Optional[int] = None, max_waiting: int = 64,
                 **parameters):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self._max_waiting = max_waiting
        if threads is None:  # a core is always left to forwarding: 1 thread on 2 cores
            threads = max(1, min(2, (os.cpu_count() or 2) - 1))
        self.waiting = 0  # checks queued or running
        self._hasher = PasswordHasher(**dict(OWASP, **parameters))
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="wighaven-passwords")
        self._pool.start()
        # What an unknown user's password is checked against (see the module).
        self._decoy = self._hasher.hash("no user has this password")

    def close(self) -> None:
        if self._pool.started:
            self._pool.stop()

    def hash(self, password: str):
        """A Deferred firing with the Argon2id hash of C{password}."""
        return deferToThreadPool(self._reactor, self._pool, self._hash, password)

    def _hash(self, password: str) -> str:
        _lower_priority()
        return self._hasher.hash(password)

    def check(self, stored_hash: Optional[str], password: str):
        """
        A Deferred firing with a L{Verdict} for C{password} against
        C{stored_hash} (None: no such user; it fails, in the same time).
        """
        if self.waiting >= self._max_waiting:
            raise Busy()
        self.waiting += 1

        def done(result):
            self.waiting -= 1
            return result

        return deferToThreadPool(self._reactor, self._pool, self._check, stored_hash,
                                 password).addBoth(done)

    def _check(self, stored_hash, password) -> Verdict:
        _lower_priority()
        if stored_hash is None:
            self._verify(self._decoy, password)
            return Verdict(False)
        if not self._verify(stored_hash, password):
            return Verdict(False)
        if self._hasher.check_needs_rehash(stored_hash):
            return Verdict(True, self._hasher.hash(password))
        return Verdict(True)

    def _verify(self, stored_hash, password) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def hash_password(password: str) -> str:
    """The Argon2id hash (OWASP's parameters) of C{password}, made in this thread."""
    return PasswordHasher(**OWASP).hash(password)


def is_argon2_hash(value: str) -> bool:
    """Is C{value} an Argon2id hash argon2-cffi can read (not a password given by mistake)?"""
    if not isinstance(value, str) or not value.startswith("$argon2id$"):
        return False
    try:
        extract_parameters(value)
    except (InvalidHashError, ValueError):
        return False
    return True

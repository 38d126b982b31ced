"""The store on SQLite (stdlib sqlite3): the embedded default.

Rules:
  - The file is created with mode 0600 (it holds password hashes), its
    folder made when missing.
  - WAL journal (readers never wait for the writer; the console command and
    the gateway use one file at once), foreign keys on, a busy timeout of
    5 s for the moments another process holds the write lock, and
    synchronous=FULL: a write the store has acknowledged survives a power
    cut.
  - Migrations (L{wighaven.store.schema}) run at open, before the gateway
    listens, each in a BEGIN IMMEDIATE transaction that checks the version
    again inside it: two workers opening one file apply each step once.
  - After open, every call runs on the store's one thread (a Twisted
    ThreadPool of one): callers get Deferreds, the reactor never waits for
    the disk, and the connection is only ever used by one thread at a time.
    Each call is one transaction: all of it, or none.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Callable, Iterable, Optional

from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from .schema import MIGRATIONS

__all__ = ["SqliteStore", "StoreError"]

BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's lock
_USER_FIELDS = ("password_hash", "roles", "disabled", "totp_secret")
# A change of these ends the user's sessions and tokens (its token version moves).
_REVOKING = frozenset(["password_hash", "disabled"])


class StoreError(Exception):
    """The store cannot do what was asked; its text is one line for the operator."""


def _create_private_file(path: str) -> None:
    """C{path} exists afterwards; created (with its folder) as 0600 when it did not."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError as e:
        raise StoreError("the database %s cannot be created: %s" % (path, e.strerror))
    os.close(fd)


def migrate(connection, path: str, migrations=MIGRATIONS) -> int:
    """
    Apply the migrations C{connection}'s database lacks; returns its version.
    L{StoreError} when it is newer than C{migrations} know, or a step fails
    (that step is rolled back whole).
    """
    newest = migrations[-1][0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > newest:
        raise StoreError(
            "the database %s has schema version %d, newer than this gateway's %d: run a newer "
            "gateway, or point DATABASE_URL elsewhere" % (path, version, newest))
    for number, statements in migrations:
        if number <= version:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while this one waited for the lock.
            if connection.execute("PRAGMA user_version").fetchone()[0] < number:
                for statement in statements:
                    connection.execute(statement)
                connection.execute("PRAGMA user_version = %d" % number)
            connection.execute("COMMIT")
        except sqlite3.Error as e:
            connection.execute("ROLLBACK")
            raise StoreError("the database %s could not be migrated to version %d: %s"
                             % (path, number, e))
        version = number
    return version


def _user(row) -> Optional[dict]:
    if row is None:
        return None
    user = dict(row)
    user["roles"] = json.loads(user["roles"])
    user["disabled"] = bool(user["disabled"])
    return user


class SqliteStore:
    """
    The store in one SQLite file. Make it with L{open}; L{close} it when
    the gateway stops.
    """

    def __init__(self, path: str, connection, reactor, clock: Callable[[], float] = time.time):
        self.path = path
        self._connection = connection
        self._reactor = reactor
        self._now = clock
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="wighaven-store")
        self._pool.start()

    @classmethod
    def open(cls, path: str, reactor=None, migrations=MIGRATIONS,
             clock: Callable[[], float] = time.time) -> "SqliteStore":
        """The store at C{path}, created and migrated as needed."""
        if reactor is None:
            from twisted.internet import reactor
        _create_private_file(path)
        try:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                         check_same_thread=False)
            connection.row_factory = sqlite3.Row
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT * 1000))
        except sqlite3.Error as e:
            raise StoreError("the database %s cannot be opened: %s" % (path, e))
        if mode.lower() != "wal":
            connection.close()
            raise StoreError("the database %s cannot use a WAL journal (is its folder on a "
                             "network file system?)" % (path,))
        try:
            migrate(connection, path, migrations)
        except StoreError:
            connection.close()
            raise
        return cls(path, connection, reactor, clock)

    def close(self) -> None:
        """Stop the store's thread (after what it is doing) and close the file."""
        if self._pool.started:
            self._pool.stop()
            self._connection.close()

    def run(self, work: Callable, *args):
        """
        C{work(connection, *args)} on the store's thread, in one
        transaction (committed when it returns, rolled back when it raises).

        @return: a Deferred firing with what C{work} returned.
        """
        return deferToThreadPool(self._reactor, self._pool, self._transaction, work, args)

    def _transaction(self, work, args):
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection, *args)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    # Users.

    def add_user(self, username: str, password_hash: Optional[str] = None,
                 roles: Iterable[str] = ()):
        """A new user; its id. L{StoreError} when the name is taken."""
        def add(connection):
            now = self._now()
            try:
                cursor = connection.execute(
                    "INSERT INTO users (username, password_hash, roles, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (username, password_hash, json.dumps(sorted(set(roles))), now, now))
            except sqlite3.IntegrityError:
                raise StoreError("a user named %r exists already" % (username,))
            return cursor.lastrowid

        return self.run(add)

    def user(self, username: str):
        """The user named C{username} (a dict), or None."""
        return self.run(lambda c: _user(c.execute(
            "SELECT * FROM users WHERE username = ?", (username,)).fetchone()))

    def users(self):
        """Every user, by name."""
        return self.run(lambda c: [_user(row) for row in c.execute(
            "SELECT * FROM users ORDER BY username")])

    def update_user(self, username: str, **fields):
        """
        Change C{fields} (password_hash, roles, disabled, totp_secret) of a
        user; a new password or disabling moves its token version, which
        ends its sessions and tokens. Returns the user, or None when unknown.
        """
        unknown = set(fields) - set(_USER_FIELDS)
        if unknown:
            raise ValueError("not a user field: %s" % ", ".join(sorted(unknown)))
        if "roles" in fields:
            fields["roles"] = json.dumps(sorted(set(fields["roles"])))
        if "disabled" in fields:
            fields["disabled"] = int(bool(fields["disabled"]))

        def update(connection):
            names = sorted(fields)
            assignments = "".join("%s = ?, " % name for name in names)
            bump = ", token_version = token_version + 1" if _REVOKING & set(names) else ""
            connection.execute(
                "UPDATE users SET %supdated_at = ?%s WHERE username = ?" % (assignments, bump),
                [fields[name] for name in names] + [self._now(), username])
            return _user(connection.execute(
                "SELECT * FROM users WHERE username = ?", (username,)).fetchone())

        return self.run(update)

    def remove_user(self, username: str):
        """Remove a user (its keys, sessions and tokens go with it); False when unknown."""
        return self.run(lambda c: c.execute(
            "DELETE FROM users WHERE username = ?", (username,)).rowcount == 1)

    # Audit.

    def audit(self, kind: str, actor: Optional[str] = None, source: Optional[str] = None,
              detail: Optional[dict] = None):
        """Record an event (who, from where, what); its id. C{detail} must hold no secret."""
        return self.run(lambda c: c.execute(
            "INSERT INTO audit_events (at, actor, kind, source, detail) VALUES (?, ?, ?, ?, ?)",
            (self._now(), actor, kind, source, json.dumps(detail or {}, sort_keys=True)),
        ).lastrowid)

    def audit_events(self, limit: int = 50, before: Optional[int] = None,
                     actor: Optional[str] = None, kind: Optional[str] = None):
        """The newest events (before id C{before}), optionally of one actor or kind."""
        clauses, values = [], []
        for column, value in (("id <", before), ("actor =", actor), ("kind =", kind)):
            if value is not None:
                clauses.append("%s ?" % column)
                values.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""

        def events(connection):
            rows = connection.execute(
                "SELECT * FROM audit_events %s ORDER BY id DESC LIMIT ?" % where,
                values + [int(limit)])
            return [dict(row, detail=json.loads(row["detail"])) for row in rows]

        return self.run(events)

    def purge_audit(self, older_than: float):
        """Forget the events recorded before C{older_than} (epoch seconds); how many went."""
        return self.run(lambda c: c.execute(
            "DELETE FROM audit_events WHERE at < ?", (older_than,)).rowcount)

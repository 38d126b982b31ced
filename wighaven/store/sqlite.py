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
  - Every call goes through L{SqliteStore.run}, one BEGIN IMMEDIATE
    transaction each: all of it, or none, and writers of all processes take
    their turns (a refresh token is rotated once, however many workers see
    it at once).
  - The gateway's store (the default) runs every call on the store's one
    thread (a Twisted ThreadPool of one): callers get Deferreds, the reactor
    never waits for the disk, and the connection is only ever used by one
    thread at a time. A synchronous store (C{sync=True}: the console
    command, start-up) runs them in the caller's thread and returns their
    results: there is no reactor to protect.
  - A change of who may do what (users, their token versions, API keys,
    revoked sessions) bumps the revision file (L{wighaven.store.revision})
    after its commit, so that every process reloads its in-memory view;
    the ordinary traffic (audit events, keys' last use, new sessions,
    refresh rotation) does not.
  - That view is read by L{SqliteStore.read_identities}, synchronously on a
    second connection of its own (query only), in one read transaction: a
    consistent snapshot, read by the reactor right after a revision change
    (WAL: it never waits for the writer), never queued behind the store's
    thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from typing import Callable, Iterable, Mapping, Optional

from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from .errors import StoreError
from .revision import RevisionFile
from .routes import StoredRoutes, route_row
from .schema import MIGRATIONS

__all__ = ["SqliteStore", "StoreError"]

BUSY_TIMEOUT = 5.0  # seconds a write waits for another process's lock
PURGE_AFTER = 86400.0  # seconds expired sessions and refresh tokens are kept (for the audit)
_USER_FIELDS = ("password_hash", "roles", "disabled", "totp_secret", "email")
# A change of these ends the user's sessions and tokens (its token version moves).
_REVOKING = frozenset(["password_hash", "disabled"])
# What lists of keys show: never the secret's hash.
_KEY_COLUMNS = ("k.id, u.username, k.user_id, k.name, k.route, k.expires_at, k.last_used_at, "
                "k.created_at, k.revoked_at")


def _create_private_file(path: str) -> None:
    """C{path} exists afterwards; created (with its folder) as 0600 when it did not."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    except OSError as e:
        raise StoreError("the database %s cannot be created: %s" % (path, e.strerror))
    os.close(fd)


def _connect(path: str, query_only: bool = False):
    """A connection to C{path} with the store's pragmas (see the module)."""
    try:
        connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                     check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA busy_timeout = %d" % int(BUSY_TIMEOUT * 1000))
        if query_only:
            connection.execute("PRAGMA query_only = ON")
    except sqlite3.Error as e:
        raise StoreError("the database %s cannot be opened: %s" % (path, e))
    return connection


def _use_wal(connection, path: str) -> None:
    """Switch C{connection}'s database to the WAL journal (it stays so), or L{StoreError}."""
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    except sqlite3.Error as e:
        raise StoreError("the database %s cannot be opened: %s" % (path, e))
    if mode.lower() != "wal":
        raise StoreError("the database %s cannot use a WAL journal (is its folder on a "
                         "network file system?)" % (path,))


def _open_revision(path: str) -> RevisionFile:
    try:
        return RevisionFile(path)
    except OSError as e:
        raise StoreError("the revision file %s cannot be opened: %s" % (path, e.strerror))


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


def _insert(connection, table: str, **values) -> int:
    """Insert one row (column=value) into C{table}; its rowid."""
    columns = sorted(values)
    marks = ", ".join("?" * len(columns))
    return connection.execute(
        "INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), marks),
        [values[column] for column in columns]).lastrowid


def _user_where(connection, column: str, value) -> Optional[dict]:
    """The user whose C{column} is C{value} (a dict), or None."""
    return _user(connection.execute(
        "SELECT * FROM users WHERE %s = ?" % column, (value,)).fetchone())


def _of_user(username: Optional[str]):
    """The SQL condition (on the users table as C{u}) and values for "of C{username}, if given"."""
    return ("u.username = ?", [username]) if username is not None else ("1", [])


def _session(row) -> dict:
    session = dict(row)
    session["id"] = bytes(session.pop("id_hash")).hex()
    return session


class SqliteStore(StoredRoutes):
    """
    The store in one SQLite file. Make it with L{open}; L{close} it when
    the gateway stops (or the command ends).

    @ivar revision: the L{RevisionFile} beside the database, bumped after
        every change of identities.
    @ivar routes_revision: the one (C{.routes-revision}) bumped after every
        change of the stored routes.
    """

    def __init__(self, path: str, connection, reader, revision: RevisionFile, reactor=None,
                 clock: Callable[[], float] = time.time, sync: bool = False):
        self.path = path
        self.revision = revision
        self._connection = connection
        self._reader = reader
        self._reactor = reactor
        self._now = clock
        self._closed = False
        self._pool = None
        if not sync:
            self._pool = ThreadPool(minthreads=1, maxthreads=1, name="wighaven-store")
            self._pool.start()

    @classmethod
    def open(cls, path: str, reactor=None, migrations=MIGRATIONS,
             clock: Callable[[], float] = time.time, sync: bool = False) -> "SqliteStore":
        """
        The store at C{path}, created and migrated as needed.

        @param sync: run calls in the caller's thread and return their results
            (the console command, start-up), not Deferreds from the store's thread.
        """
        if reactor is None and not sync:
            from twisted.internet import reactor
        _create_private_file(path)
        with contextlib.ExitStack() as opened:
            connection = _connect(path)
            opened.callback(connection.close)
            _use_wal(connection, path)
            migrate(connection, path, migrations)
            reader = _connect(path, query_only=True)
            opened.callback(reader.close)
            revision = _open_revision(path + ".revision")
            opened.callback(revision.close)
            routes_revision = _open_revision(path + ".routes-revision")
            opened.callback(routes_revision.close)
            store = cls(path, connection, reader, revision, reactor, clock, sync)
            store.routes_revision = routes_revision
            opened.pop_all()
        return store

    def now(self) -> float:
        """The store's clock (what its rows' times are stamped with)."""
        return self._now()

    def close(self) -> None:
        """Stop the store's thread (after what it is doing) and close the files."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.stop()
        self._connection.close()
        self._reader.close()
        self.revision.close()
        self.routes_revision.close()

    def run(self, work: Callable, *args, changes_identities: bool = False,
            changes_routes: bool = False):
        """
        C{work(connection, *args)} in one transaction (committed when it
        returns, rolled back when it raises); with C{changes_identities}
        (C{changes_routes}), L{revision} (L{routes_revision}) is bumped after
        the commit.

        @return: what C{work} returned, in a Deferred firing on the reactor's
            thread (run on the store's thread), or as is for a synchronous store.
        """
        bumps = [r for r, changed in ((self.revision, changes_identities),
                                      (self.routes_revision, changes_routes)) if changed]
        if self._pool is None:
            return self._transaction(work, args, bumps)
        return deferToThreadPool(self._reactor, self._pool, self._transaction, work, args, bumps)

    def _change(self, work: Callable, *args):
        """L{run} for a change of who may do what: every process reloads its identities."""
        return self.run(work, *args, changes_identities=True)

    def _transaction(self, work, args, bumps):
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection, *args)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        for revision in bumps:
            revision.bump()  # after the commit: see wighaven.store.revision
        return result

    # The in-memory view.

    def read_identities(self) -> dict:
        """
        What each gateway process holds in memory, as one consistent
        snapshot, synchronously (on the reactor's thread; read
        L{revision} BEFORE calling it):

          - C{users}: dicts of id, username, roles (a list), disabled (a
            bool), token_version, email;
          - C{keys}: the API keys not revoked, dicts of id, user_id,
            secret_hash (bytes), route, expires_at, revoked_at;
          - C{revoked_sessions}: the id hashes (bytes) of the sessions
            revoked and not yet expired.
        """
        reader = self._reader
        reader.execute("BEGIN")
        try:
            users = [_user(row) for row in reader.execute(
                "SELECT id, username, roles, disabled, token_version, email FROM users "
                "ORDER BY id")]
            keys = [dict(row, secret_hash=bytes(row["secret_hash"])) for row in reader.execute(
                "SELECT id, user_id, secret_hash, route, expires_at, revoked_at FROM api_keys "
                "WHERE revoked_at IS NULL ORDER BY id")]
            revoked = {bytes(row[0]) for row in reader.execute(
                "SELECT id_hash FROM sessions WHERE revoked_at IS NOT NULL AND expires_at > ?",
                (self._now(),))}
        finally:
            reader.execute("COMMIT")
        return {"users": users, "keys": keys, "revoked_sessions": revoked}

    def read_routes(self):
        """
        Every stored route, synchronously on the reader connection (the
        reactor's thread: start-up, and each process applying a change;
        read L{routes_revision} BEFORE calling it), in one read transaction.
        """
        reader = self._reader
        reader.execute("BEGIN")
        try:
            return [route_row(row) for row in reader.execute("SELECT * FROM routes ORDER BY name")]
        finally:
            reader.execute("COMMIT")

    # Users.

    def add_user(self, username: str, password_hash: Optional[str] = None,
                 roles: Iterable[str] = (), email: Optional[str] = None):
        """A new user; its id. L{StoreError} when the name is taken."""
        def add(connection):
            now = self._now()
            try:
                return _insert(connection, "users", username=username, password_hash=password_hash,
                               roles=json.dumps(sorted(set(roles))), email=email, created_at=now,
                               updated_at=now)
            except sqlite3.IntegrityError:
                raise StoreError("a user named %r exists already" % (username,))

        return self._change(add)

    def user(self, username: str):
        """The user named C{username} (a dict), or None."""
        return self.run(_user_where, "username", username)

    def user_by_id(self, user_id: int):
        """The user whose id is C{user_id} (a dict), or None."""
        return self.run(_user_where, "id", user_id)

    def users(self):
        """Every user, by name."""
        return self.run(lambda c: [_user(row) for row in c.execute(
            "SELECT * FROM users ORDER BY username")])

    def update_user(self, username: str, **fields):
        """
        Change C{fields} (password_hash, roles, disabled, totp_secret, email)
        of a user; a new password or disabling moves its token version,
        which ends its sessions and tokens. Returns the user, or None when
        unknown.
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
            return _user_where(connection, "username", username)

        return self._change(update)

    def bump_token_version(self, username: str):
        """
        Move the user's token version (logout everywhere: every session and
        token issued before ends); the new version, or None when unknown.
        """
        def bump(connection):
            connection.execute(
                "UPDATE users SET token_version = token_version + 1, updated_at = ? "
                "WHERE username = ?", (self._now(), username))
            user = _user_where(connection, "username", username)
            return user["token_version"] if user else None

        return self._change(bump)

    def remove_user(self, username: str):
        """Remove a user (its keys, sessions and tokens go with it); False when unknown."""
        return self._change(lambda c: c.execute(
            "DELETE FROM users WHERE username = ?", (username,)).rowcount == 1)

    # API keys.

    def add_key(self, key_id: str, user_id: int, secret_hash: bytes, route: Optional[str] = None,
                expires_at: Optional[float] = None, name: Optional[str] = None):
        """
        A new API key of user C{user_id} (only the hash of its secret);
        C{key_id}. L{StoreError} when the id is taken or the user unknown.
        """
        def add(connection):
            try:
                _insert(connection, "api_keys", id=key_id, user_id=user_id,
                        secret_hash=secret_hash, name=name, route=route, expires_at=expires_at,
                        created_at=self._now())
            except sqlite3.IntegrityError as e:
                if "FOREIGN KEY" in str(e):
                    raise StoreError("no user has the id %r" % (user_id,))
                raise StoreError("an API key with the id %r exists already" % (key_id,))
            return key_id

        return self._change(add)

    def keys(self, username: Optional[str] = None):
        """
        The API keys (of C{username} only, when given), oldest first, with
        their owner's username; never the secret's hash.
        """
        where, values = _of_user(username)
        return self.run(lambda c: [dict(row) for row in c.execute(
            "SELECT %s FROM api_keys k JOIN users u ON u.id = k.user_id WHERE %s "
            "ORDER BY k.created_at, k.id" % (_KEY_COLUMNS, where), values)])

    def revoke_key(self, key_id: str):
        """Revoke an API key; False when unknown or revoked already."""
        return self._change(lambda c: c.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (self._now(), key_id)).rowcount == 1)

    def touch_keys(self, last_used: Mapping[str, float]):
        """
        Record when keys were last used (C{{key_id: epoch seconds}}), all in
        one transaction: the gateway's periodic flush. A time never moves
        back (another worker may have flushed a later one); how many keys
        were known.
        """
        def touch(connection):
            return sum(connection.execute(
                "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) "
                "WHERE id = ?", (at, key_id)).rowcount for key_id, at in last_used.items())

        return self.run(touch)

    # Sessions.

    def add_session(self, id_hash: bytes, user_id: int, via: str, expires_at: float,
                    address: Optional[str] = None, user_agent: Optional[str] = None):
        """A new session of user C{user_id}, by the hash of its id; C{via}: how it signed in."""
        def add(connection):
            _insert(connection, "sessions", id_hash=id_hash, user_id=user_id, via=via,
                    created_at=self._now(), expires_at=expires_at, address=address,
                    user_agent=user_agent)

        return self.run(add)

    def revoke_session(self, id_hash: bytes):
        """End a session (sign-out); False when unknown or revoked already."""
        return self._change(lambda c: c.execute(
            "UPDATE sessions SET revoked_at = ? WHERE id_hash = ? AND revoked_at IS NULL",
            (self._now(), id_hash)).rowcount == 1)

    def sessions(self, username: Optional[str] = None):
        """
        The active sessions (not revoked, not expired; of C{username} only,
        when given), newest first, their id hash as hex under C{id}.
        """
        where, values = _of_user(username)

        def active(connection):
            rows = connection.execute(
                "SELECT s.id_hash, u.username, s.via, s.created_at, s.expires_at, s.address, "
                "s.user_agent FROM sessions s JOIN users u ON u.id = s.user_id "
                "WHERE s.revoked_at IS NULL AND s.expires_at > ? AND %s "
                "ORDER BY s.created_at DESC, s.id_hash" % (where,), [self._now()] + values)
            return [_session(row) for row in rows]

        return self.run(active)

    def revoke_user_sessions(self, username: str):
        """End every active session of a user; how many."""
        def revoke(connection):
            now = self._now()
            return connection.execute(
                "UPDATE sessions SET revoked_at = ? WHERE revoked_at IS NULL AND expires_at > ? "
                "AND user_id = (SELECT id FROM users WHERE username = ?)",
                (now, now, username)).rowcount

        return self._change(revoke)

    # Refresh tokens.

    def add_refresh(self, token_hash: bytes, family: str, user_id: int, token_version: int,
                    expires_at: float):
        """A new refresh token (its hash), first of C{family} or not, at C{token_version}."""
        return self.run(self._add_refresh, token_hash, family, user_id, token_version,
                        expires_at)

    def _add_refresh(self, connection, token_hash, family, user_id, token_version, expires_at):
        _insert(connection, "refresh_tokens", token_hash=token_hash, family=family,
                user_id=user_id, token_version=token_version, created_at=self._now(),
                expires_at=expires_at)

    def rotate_refresh(self, old_hash: bytes, new_hash: bytes, expires_at: float):
        """
        Trade the refresh token C{old_hash} for C{new_hash} (same family),
        atomically; returns (status, user or None):

          - C{("unknown", None)}: no such token;
          - C{("invalid", None)}: revoked, expired, its user disabled or at
            another token version;
          - C{("reused", user)}: used already, so a copy of it is in other
            hands: the whole family is revoked (committed: the refusal is
            the point), the thief's tokens and the owner's alike;
          - C{("ok", user)}: the old one is used, the new one stored at the
            user's token version.
        """
        return self.run(self._rotate, old_hash, new_hash, expires_at)

    def _rotate(self, connection, old_hash, new_hash, expires_at):
        now = self._now()
        token = connection.execute(
            "SELECT * FROM refresh_tokens WHERE token_hash = ?", (old_hash,)).fetchone()
        if token is None:
            return "unknown", None
        if token["revoked_at"] is not None or token["expires_at"] <= now:
            return "invalid", None
        user = _user_where(connection, "id", token["user_id"])
        if token["used_at"] is not None:
            connection.execute(
                "UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL",
                (now, token["family"]))
            return "reused", user
        if user["disabled"] or user["token_version"] != token["token_version"]:
            return "invalid", None
        connection.execute(
            "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?", (now, old_hash))
        self._add_refresh(connection, new_hash, token["family"], user["id"],
                          user["token_version"], expires_at)
        return "ok", user

    def purge_expired(self, now: Optional[float] = None):
        """Forget the sessions and refresh tokens expired for more than a day; how many went."""
        def purge(connection):
            before = (self._now() if now is None else now) - PURGE_AFTER
            return sum(connection.execute(
                "DELETE FROM %s WHERE expires_at < ?" % table, (before,)).rowcount
                for table in ("sessions", "refresh_tokens"))

        return self.run(purge)

    # Invitations.

    def add_invite(self, token_hash: bytes, username: str, expires_at: float,
                   created_by: Optional[str] = None):
        """A one-use invitation of C{username} (by the hash of its token); False when unknown."""
        def add(connection):
            user = _user_where(connection, "username", username)
            if user is None:
                return False
            _insert(connection, "invites", token_hash=token_hash, user_id=user["id"],
                    created_at=self._now(), expires_at=expires_at, created_by=created_by)
            return True

        return self.run(add)

    def invite(self, token_hash: bytes):
        """The username an invitation is for while it is unused and unexpired, else None."""
        return self.run(self._open_invite, token_hash)

    def _open_invite(self, connection, token_hash):
        row = connection.execute(
            "SELECT u.username FROM invites i JOIN users u ON u.id = i.user_id "
            "WHERE i.token_hash = ? AND i.used_at IS NULL AND i.expires_at > ?",
            (token_hash, self._now())).fetchone()
        return row[0] if row is not None else None

    def use_invite(self, token_hash: bytes, password_hash: str):
        """
        Spend an invitation: its user's password is set (its sessions and
        tokens end) and the invitation used, in one transaction; the
        username, or None when the invitation is unknown, used or expired.
        """
        def use(connection):
            username = self._open_invite(connection, token_hash)
            if username is None:
                return None
            connection.execute("UPDATE invites SET used_at = ? WHERE token_hash = ?",
                               (self._now(), token_hash))
            connection.execute(
                "UPDATE users SET password_hash = ?, token_version = token_version + 1, "
                "updated_at = ? WHERE username = ?", (password_hash, self._now(), username))
            return username

        return self._change(use)

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

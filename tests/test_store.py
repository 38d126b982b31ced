"""The store on SQLite, with real files: creation, pragmas, migrations
(atomic, once, refusing a newer schema), the store's own thread and the
synchronous mode, users, API keys, sessions, refresh tokens (rotation and
reuse detection), audit events, the revision file and the in-memory view
it keeps fresh.

The store's behaviour is tested in both modes by one set of tests
(L{_Behaviour}): they C{yield} every call, which inlineCallbacks hands back
as is when it is a plain value (the synchronous store's answer)."""

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

import wighaven
from wighaven.config.settings import ConfigError
from wighaven.store import (DEFAULT_DATABASE_URL, RevisionFile, SqliteStore, StoreError,
                            open_store, sqlite_path)
from wighaven.store.schema import MIGRATIONS

DAY = 86400.0
PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(wighaven.__file__)))
# What keys() and sessions() give for each (never a secret's hash).
KEY_FIELDS = {"id", "username", "user_id", "name", "route", "expires_at", "last_used_at",
              "created_at", "revoked_at"}
SESSION_FIELDS = {"id", "username", "via", "created_at", "expires_at", "address", "user_agent"}


def in_another_process(code: str) -> None:
    """Run C{code} in a new Python process with this project importable."""
    env = dict(os.environ, PYTHONPATH=PROJECT)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


class UrlTests(SynchronousTestCase):
    def test_sqlite_urls(self):
        self.assertEqual(sqlite_path("sqlite:////var/lib/wh.db"), "/var/lib/wh.db")
        self.assertEqual(sqlite_path("sqlite:///data/x.sqlite3"),
                         os.path.join(os.getcwd(), "data", "x.sqlite3"))
        self.assertEqual(DEFAULT_DATABASE_URL, "sqlite:///data/wighaven.sqlite3")

    def test_other_urls_are_refused_with_one_line(self):
        for url in ("postgresql://u@h/db", "sqlite://x", "sqlite:///", "sqlite:///d/", ""):
            with self.assertRaises(ConfigError) as caught:
                sqlite_path(url)
            self.assertNotIn("\n", str(caught.exception))
            self.assertIn("DATABASE_URL", str(caught.exception))


class OpenTests(SynchronousTestCase):
    def setUp(self):
        self.path = os.path.join(os.path.abspath(self.mktemp()), "sub", "store.sqlite3")

    def open(self, **kwargs):
        store = SqliteStore.open(self.path, **kwargs)
        self.addCleanup(store.close)
        return store

    def test_created_private_with_its_folder(self):
        self.open()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_pragmas(self):
        store = self.open()
        connection = store._connection
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(connection.execute("PRAGMA foreign_keys").fetchone()[0], 1)
        self.assertEqual(connection.execute("PRAGMA busy_timeout").fetchone()[0], 5000)
        self.assertEqual(connection.execute("PRAGMA synchronous").fetchone()[0], 2)  # FULL

    def test_migrated_once(self):
        self.open().close()
        store = self.open()  # again: nothing to do
        version = store._connection.execute("PRAGMA user_version").fetchone()[0]
        self.assertEqual(version, MIGRATIONS[-1][0])
        tables = {row[0] for row in store._connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        self.assertTrue({"users", "api_keys", "sessions", "refresh_tokens",
                         "audit_events"} <= tables)

    def test_a_newer_schema_stops_with_one_line(self):
        self.open().close()
        connection = sqlite3.connect(self.path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        with self.assertRaises(StoreError) as caught:
            SqliteStore.open(self.path)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        self.assertIn("schema version 99", message)

    def test_a_failing_migration_changes_nothing(self):
        newest = MIGRATIONS[-1][0]
        broken = MIGRATIONS + ((newest + 1, ("CREATE TABLE extra (x)", "NOT SQL AT ALL")),)
        with self.assertRaises(StoreError) as caught:
            SqliteStore.open(self.path, migrations=broken)
        self.assertIn("version %d" % (newest + 1), str(caught.exception))
        connection = sqlite3.connect(self.path)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], newest)
        self.assertIsNone(connection.execute(
            "SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone())
        connection.close()

    def test_open_store_from_a_url(self):
        store = open_store("sqlite:///" + self.path)
        self.addCleanup(store.close)
        self.assertEqual(store.path, self.path)

    def test_sync_mode_runs_in_the_callers_thread(self):
        store = self.open(sync=True)
        self.assertIsNone(store._pool)
        self.assertIs(store.run(lambda connection: threading.current_thread()),
                      threading.current_thread())
        self.assertIsInstance(store.add_user("alice"), int)
        self.assertEqual(store.user("alice")["username"], "alice")
        sync = open_store("sqlite:///" + self.path, sync=True)
        sync.close()
        sync.close()  # twice is harmless

    def test_the_revision_file_lies_beside_the_database(self):
        store = self.open()
        self.assertEqual(store.revision.path, self.path + ".revision")
        self.assertEqual(stat.S_IMODE(os.stat(store.revision.path).st_mode), 0o600)
        self.assertEqual(os.path.getsize(store.revision.path), 8)

    def test_the_identities_connection_only_reads(self):
        store = self.open()
        self.assertEqual(store._reader.execute("PRAGMA query_only").fetchone()[0], 1)
        with self.assertRaises(sqlite3.OperationalError):
            store._reader.execute("DELETE FROM users")


class RevisionTests(SynchronousTestCase):
    def setUp(self):
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        self.path = os.path.join(folder, "db.revision")

    def open(self):
        revision = RevisionFile(self.path)
        self.addCleanup(revision.close)
        return revision

    def test_created_private_with_8_bytes(self):
        revision = self.open()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(os.path.getsize(self.path), 8)
        self.assertEqual(revision.read(), bytes(8))

    def test_a_bump_is_a_new_value_seen_by_every_mapping(self):
        first, second = self.open(), self.open()
        seen = set()
        for _ in range(20):
            first.bump()
            self.assertEqual(second.read(), first.read())
            self.assertEqual(len(first.read()), 8)
            seen.add(first.read())
        self.assertEqual(len(seen), 20)

    def test_reopening_keeps_the_value(self):
        revision = self.open()
        revision.bump()
        value = revision.read()
        revision.close()
        revision.close()
        self.assertEqual(self.open().read(), value)

    def test_a_short_file_is_extended(self):
        open(self.path, "wb").close()
        self.assertEqual(self.open().read(), bytes(8))
        self.assertEqual(os.path.getsize(self.path), 8)

    def test_another_process_bumping_is_seen(self):
        revision = self.open()
        before = revision.read()
        in_another_process("from wighaven.store.revision import RevisionFile; "
                           "RevisionFile(%r).bump()" % (self.path,))
        self.assertNotEqual(revision.read(), before)


class _Behaviour:
    """The store's calls, the same in both modes (a subclass says which)."""

    sync = False

    def setUp(self):
        path = os.path.join(os.path.abspath(self.mktemp()), "store.sqlite3")
        self.now = [1000.0]
        self.store = SqliteStore.open(path, clock=lambda: self.now[0], sync=self.sync)
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_a_call_is_one_transaction(self):
        yield self.store.add_user("alice")

        def half(connection):
            connection.execute("UPDATE users SET roles = '[\"admin\"]'")
            raise RuntimeError("midway")

        with self.assertRaises(RuntimeError):
            yield self.store.run(half)
        alice = yield self.store.user("alice")
        self.assertEqual(alice["roles"], [])

    @defer.inlineCallbacks
    def test_users(self):
        uid = yield self.store.add_user("alice", "$argon2id$x", ["team", "admin", "team"])
        self.assertIsInstance(uid, int)
        with self.assertRaises(StoreError):
            yield self.store.add_user("alice")
        alice = yield self.store.user("alice")
        self.assertEqual((alice["roles"], alice["disabled"], alice["token_version"]),
                         (["admin", "team"], False, 0))
        self.now[0] = 2000.0
        changed = yield self.store.update_user("alice", roles=["team"])
        self.assertEqual((changed["roles"], changed["token_version"], changed["updated_at"]),
                         (["team"], 0, 2000.0))
        disabled = yield self.store.update_user("alice", disabled=True)
        self.assertEqual((disabled["disabled"], disabled["token_version"]), (True, 1))
        rehashed = yield self.store.update_user("alice", password_hash="$argon2id$y")
        self.assertEqual(rehashed["token_version"], 2)
        yield self.store.add_user("bob")
        names = [u["username"] for u in (yield self.store.users())]
        self.assertEqual(names, ["alice", "bob"])
        self.assertTrue((yield self.store.remove_user("bob")))
        self.assertFalse((yield self.store.remove_user("bob")))
        self.assertIsNone((yield self.store.update_user("nobody", disabled=True)))
        with self.assertRaises(ValueError):
            self.store.update_user("alice", token_version=0)

    @defer.inlineCallbacks
    def test_email_and_by_id(self):
        uid = yield self.store.add_user("alice", email="alice@example.org")
        alice = yield self.store.user_by_id(uid)
        self.assertEqual((alice["username"], alice["email"]), ("alice", "alice@example.org"))
        changed = yield self.store.update_user("alice", email="a@example.org")
        self.assertEqual((changed["email"], changed["token_version"]), ("a@example.org", 0))
        self.assertIsNone((yield self.store.user_by_id(uid + 1)))
        self.assertIsNone((yield self.store.user("bob")))

    @defer.inlineCallbacks
    def test_bump_token_version(self):
        yield self.store.add_user("alice")
        self.assertEqual((yield self.store.bump_token_version("alice")), 1)
        self.assertEqual((yield self.store.bump_token_version("alice")), 2)
        self.assertEqual((yield self.store.user("alice"))["token_version"], 2)
        self.assertIsNone((yield self.store.bump_token_version("nobody")))

    @defer.inlineCallbacks
    def test_a_removed_user_takes_its_keys_along(self):
        uid = yield self.store.add_user("carol")
        yield self.store.add_key("k1", uid, b"h")
        yield self.store.add_session(b"s1", uid, "password", 5000.0)
        yield self.store.add_refresh(b"r1", "f1", uid, 0, 5000.0)
        yield self.store.remove_user("carol")

        def left(connection):
            return [connection.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0]
                    for table in ("api_keys", "sessions", "refresh_tokens")]

        self.assertEqual((yield self.store.run(left)), [0, 0, 0])

    # API keys.

    @defer.inlineCallbacks
    def test_keys(self):
        alice = yield self.store.add_user("alice")
        bob = yield self.store.add_user("bob")
        self.assertEqual((yield self.store.add_key("ka", alice, b"hash-a", name="laptop")), "ka")
        self.now[0] = 1001.0
        yield self.store.add_key("kb", bob, b"hash-b", route="chat", expires_at=9000.0)
        every = yield self.store.keys()
        self.assertEqual([k["id"] for k in every], ["ka", "kb"])
        for key in every:
            self.assertEqual(set(key), KEY_FIELDS)
        self.assertEqual(every[1], {
            "id": "kb", "username": "bob", "user_id": bob, "name": None, "route": "chat",
            "expires_at": 9000.0, "last_used_at": None, "created_at": 1001.0, "revoked_at": None})
        self.assertEqual([k["id"] for k in (yield self.store.keys("alice"))], ["ka"])
        self.assertEqual((yield self.store.keys("nobody")), [])
        self.now[0] = 1002.0
        self.assertTrue((yield self.store.revoke_key("ka")))
        self.assertFalse((yield self.store.revoke_key("ka")))
        self.assertFalse((yield self.store.revoke_key("unknown")))
        self.assertEqual((yield self.store.keys("alice"))[0]["revoked_at"], 1002.0)
        with self.assertRaises(StoreError):
            yield self.store.add_key("ka", alice, b"again")
        with self.assertRaises(StoreError):
            yield self.store.add_key("kc", bob + 100, b"nobody's")

    @defer.inlineCallbacks
    def test_no_secret_hash_in_key_lists(self):
        uid = yield self.store.add_user("alice")
        yield self.store.add_key("ka", uid, b"\x01secret-hash\x02")
        listed = yield self.store.keys()
        self.assertNotIn("secret_hash", listed[0])
        self.assertNotIn(b"\x01secret-hash\x02".hex(), repr(listed))
        self.assertNotIn("secret-hash", repr(listed))

    @defer.inlineCallbacks
    def test_touch_keys(self):
        uid = yield self.store.add_user("alice")
        yield self.store.add_key("ka", uid, b"a")
        yield self.store.add_key("kb", uid, b"b")
        self.assertEqual((yield self.store.touch_keys({"ka": 1500.0, "kb": 1600.0, "zz": 1.0})), 2)
        # An older flush (another worker's) never moves a time back.
        yield self.store.touch_keys({"ka": 1400.0})
        used = {k["id"]: k["last_used_at"] for k in (yield self.store.keys())}
        self.assertEqual(used, {"ka": 1500.0, "kb": 1600.0})
        self.assertEqual((yield self.store.touch_keys({})), 0)

    # Sessions.

    @defer.inlineCallbacks
    def test_sessions(self):
        alice = yield self.store.add_user("alice")
        bob = yield self.store.add_user("bob")
        yield self.store.add_session(b"\x01" * 32, alice, "password", 5000.0,
                                     "203.0.113.7", "curl/8")
        self.now[0] = 1001.0
        yield self.store.add_session(b"\x02" * 32, bob, "huggingface", 5000.0)
        self.now[0] = 1002.0
        yield self.store.add_session(b"\x03" * 32, alice, "password", 1500.0)
        active = yield self.store.sessions()
        self.assertEqual([s["id"] for s in active],
                         [("03" * 32), ("02" * 32), ("01" * 32)])
        for session in active:
            self.assertEqual(set(session), SESSION_FIELDS)
        self.assertEqual(active[2], {
            "id": "01" * 32, "username": "alice", "via": "password", "created_at": 1000.0,
            "expires_at": 5000.0, "address": "203.0.113.7", "user_agent": "curl/8"})
        self.now[0] = 2000.0  # the third expired
        self.assertEqual([s["id"] for s in (yield self.store.sessions("alice"))], ["01" * 32])
        self.assertTrue((yield self.store.revoke_session(b"\x01" * 32)))
        self.assertFalse((yield self.store.revoke_session(b"\x01" * 32)))
        self.assertFalse((yield self.store.revoke_session(b"\x09" * 32)))
        self.assertEqual((yield self.store.sessions("alice")), [])
        self.assertEqual((yield self.store.revoke_user_sessions("bob")), 1)
        self.assertEqual((yield self.store.revoke_user_sessions("bob")), 0)
        self.assertEqual((yield self.store.revoke_user_sessions("nobody")), 0)
        self.assertEqual((yield self.store.sessions()), [])

    # Refresh tokens.

    @defer.inlineCallbacks
    def refresh_family(self):
        """alice, with the first refresh token of family f1 (at her token version)."""
        uid = yield self.store.add_user("alice")
        yield self.store.add_refresh(b"t1", "f1", uid, 0, 2000.0)
        return uid

    def tokens(self):
        return self.store.run(lambda c: {bytes(row["token_hash"]): dict(row) for row in c.execute(
            "SELECT * FROM refresh_tokens")})

    @defer.inlineCallbacks
    def test_rotate_refresh(self):
        uid = yield self.refresh_family()
        self.now[0] = 1100.0
        status, user = yield self.store.rotate_refresh(b"t1", b"t2", 3000.0)
        self.assertEqual((status, user["id"], user["username"], user["roles"]),
                         ("ok", uid, "alice", []))
        status, user = yield self.store.rotate_refresh(b"t2", b"t3", 4000.0)
        self.assertEqual(status, "ok")
        tokens = yield self.tokens()
        self.assertEqual(tokens[b"t1"]["used_at"], 1100.0)
        self.assertEqual({t["family"] for t in tokens.values()}, {"f1"})
        self.assertEqual((tokens[b"t3"]["expires_at"], tokens[b"t3"]["token_version"],
                          tokens[b"t3"]["used_at"], tokens[b"t3"]["revoked_at"]),
                         (4000.0, 0, None, None))

    @defer.inlineCallbacks
    def test_a_reused_refresh_token_revokes_its_family(self):
        yield self.refresh_family()
        yield self.store.add_refresh(b"other", "f2", (yield self.store.user("alice"))["id"],
                                     0, 2000.0)
        yield self.store.rotate_refresh(b"t1", b"t2", 3000.0)
        self.now[0] = 1200.0
        status, user = yield self.store.rotate_refresh(b"t1", b"stolen", 3000.0)
        self.assertEqual((status, user["username"]), ("reused", "alice"))
        # The newest of the family, the owner's or the thief's, is refused now.
        self.assertEqual((yield self.store.rotate_refresh(b"t2", b"t3", 3000.0)),
                         ("invalid", None))
        tokens = yield self.tokens()
        self.assertNotIn(b"stolen", tokens)
        self.assertNotIn(b"t3", tokens)
        self.assertEqual({h: t["revoked_at"] for h, t in tokens.items()},
                         {b"t1": 1200.0, b"t2": 1200.0, b"other": None})
        # Another family is untouched.
        self.assertEqual((yield self.store.rotate_refresh(b"other", b"o2", 3000.0))[0], "ok")

    @defer.inlineCallbacks
    def test_unknown_and_expired_refresh_tokens(self):
        yield self.refresh_family()
        self.assertEqual((yield self.store.rotate_refresh(b"nope", b"t2", 3000.0)),
                         ("unknown", None))
        self.now[0] = 2000.0
        self.assertEqual((yield self.store.rotate_refresh(b"t1", b"t2", 3000.0)),
                         ("invalid", None))
        self.assertNotIn(b"t2", (yield self.tokens()))

    @defer.inlineCallbacks
    def test_refresh_tokens_end_with_the_token_version(self):
        yield self.refresh_family()
        yield self.store.bump_token_version("alice")
        self.assertEqual((yield self.store.rotate_refresh(b"t1", b"t2", 3000.0)),
                         ("invalid", None))
        uid = (yield self.store.user("alice"))["id"]
        yield self.store.add_refresh(b"u1", "f2", uid, 1, 2000.0)
        yield self.store.update_user("alice", disabled=True)  # version 2, and disabled
        yield self.store.run(lambda c: c.execute("UPDATE refresh_tokens SET token_version = 2"))
        self.assertEqual((yield self.store.rotate_refresh(b"u1", b"u2", 3000.0)),
                         ("invalid", None))
        tokens = yield self.tokens()
        self.assertEqual((tokens[b"t1"]["used_at"], tokens[b"u1"]["used_at"]), (None, None))

    @defer.inlineCallbacks
    def test_purge_expired(self):
        uid = yield self.store.add_user("alice")
        for i, expires_at in enumerate((1000.0, 1000.0 + DAY, 5000.0 + DAY)):
            yield self.store.add_session(b"s%d" % i, uid, "password", expires_at)
            yield self.store.add_refresh(b"r%d" % i, "f", uid, 0, expires_at)
        # Expired for more than a day at 1000 + DAY + 1: only the first of each.
        self.assertEqual((yield self.store.purge_expired(1001.0 + DAY)), 2)
        self.assertEqual((yield self.store.purge_expired(1001.0 + DAY)), 0)
        self.now[0] = 5000.0 + 3 * DAY
        self.assertEqual((yield self.store.purge_expired()), 4)

    # The revision and the in-memory view.

    @defer.inlineCallbacks
    def test_changes_of_identities_move_the_revision(self):
        uid = yield self.store.add_user("alice")
        yield self.store.add_session(b"s1", uid, "password", 5000.0)
        yield self.store.add_session(b"s2", uid, "password", 5000.0)
        store = self.store
        changes = [
            ("add_user", lambda: store.add_user("bob")),
            ("update_user", lambda: store.update_user("bob", roles=["team"])),
            ("bump_token_version", lambda: store.bump_token_version("bob")),
            ("add_key", lambda: store.add_key("ka", uid, b"a")),
            ("revoke_key", lambda: store.revoke_key("ka")),
            ("revoke_session", lambda: store.revoke_session(b"s1")),
            ("revoke_user_sessions", lambda: store.revoke_user_sessions("alice")),
            ("remove_user", lambda: store.remove_user("bob")),
        ]
        for name, change in changes:
            before = store.revision.read()
            yield change()
            self.assertNotEqual(store.revision.read(), before, name)

    @defer.inlineCallbacks
    def test_traffic_leaves_the_revision(self):
        uid = yield self.store.add_user("alice")
        yield self.store.add_key("ka", uid, b"a")
        store = self.store
        before = store.revision.read()
        yield store.audit("login", "alice")
        yield store.touch_keys({"ka": 1500.0})
        yield store.add_session(b"s1", uid, "password", 5000.0)
        yield store.add_refresh(b"t1", "f1", uid, 0, 5000.0)
        yield store.rotate_refresh(b"t1", b"t2", 5000.0)
        yield store.rotate_refresh(b"t1", b"t3", 5000.0)  # reused
        yield store.purge_expired()
        yield store.users()
        yield store.keys()
        yield store.sessions()
        yield store.audit_events()
        store.read_identities()
        with self.assertRaises(StoreError):  # a change that failed changed nothing
            yield store.add_user("alice")
        self.assertEqual(store.revision.read(), before)

    @defer.inlineCallbacks
    def test_the_revision_moves_after_the_commit(self):
        """Whoever sees the new revision and reloads finds the change."""
        seen = []
        bump = self.store.revision.bump

        def bumped():
            seen.append([u["username"] for u in self.store.read_identities()["users"]])
            bump()

        self.patch(self.store.revision, "bump", bumped)
        yield self.store.add_user("alice")
        self.assertEqual(seen, [["alice"]])

    @defer.inlineCallbacks
    def test_read_identities(self):
        alice = yield self.store.add_user("alice", "$argon2id$secret", ["team", "admin"],
                                          "alice@example.org")
        bob = yield self.store.add_user("bob")
        yield self.store.update_user("bob", disabled=True)
        yield self.store.update_user("alice", totp_secret="TOTPSECRET")
        yield self.store.add_key("ka", alice, b"hash-a", route="chat", expires_at=9000.0)
        yield self.store.add_key("kb", bob, b"hash-b")
        yield self.store.revoke_key("kb")
        yield self.store.add_session(b"live", alice, "password", 5000.0)
        yield self.store.add_session(b"revoked", alice, "password", 5000.0)
        yield self.store.add_session(b"revoked-expired", alice, "password", 1500.0)
        yield self.store.revoke_session(b"revoked")
        yield self.store.revoke_session(b"revoked-expired")
        self.now[0] = 2000.0
        identities = self.store.read_identities()
        self.assertEqual(identities, {
            "users": [
                {"id": alice, "username": "alice", "roles": ["admin", "team"],
                 "disabled": False, "token_version": 0, "email": "alice@example.org"},
                {"id": bob, "username": "bob", "roles": [], "disabled": True,
                 "token_version": 1, "email": None},
            ],
            "keys": [{"id": "ka", "user_id": alice, "secret_hash": b"hash-a", "route": "chat",
                      "expires_at": 9000.0, "revoked_at": None}],
            "revoked_sessions": {b"revoked"},
        })
        self.assertIsInstance(identities["keys"][0]["secret_hash"], bytes)
        self.assertNotIn("secret", json.dumps(identities["users"]))  # no hash, no TOTP secret

    @defer.inlineCallbacks
    def test_read_identities_is_one_snapshot(self):
        """A change committed while it reads is in none of its parts, or in all."""
        yield self.store.add_user("alice")
        other = sqlite3.connect(self.store.path, isolation_level=None)
        self.addCleanup(other.close)
        written = []

        def meanwhile(statement):
            # Between reading the users and reading the keys: a new user and its key.
            if "FROM api_keys" in statement and not written:
                written.append(statement)
                other.execute("INSERT INTO users (username, roles, created_at, updated_at) "
                              "VALUES ('late', '[]', 1, 1)")
                other.execute("INSERT INTO api_keys (id, user_id, secret_hash, created_at) "
                              "SELECT 'late', id, x'00', 1 FROM users WHERE username = 'late'")

        self.store._reader.set_trace_callback(meanwhile)
        identities = self.store.read_identities()
        self.store._reader.set_trace_callback(None)
        self.assertTrue(written)
        self.assertEqual([u["username"] for u in identities["users"]], ["alice"])
        self.assertEqual(identities["keys"], [])
        after = self.store.read_identities()
        self.assertEqual([u["username"] for u in after["users"]], ["alice", "late"])
        self.assertEqual([k["id"] for k in after["keys"]], ["late"])

    @defer.inlineCallbacks
    def test_another_process_changing_identities_is_seen(self):
        """The console command in another process: the revision moves, the view follows."""
        before = self.store.revision.read()
        in_another_process(
            "from wighaven.store import SqliteStore\n"
            "store = SqliteStore.open(%r, sync=True)\n"
            "store.add_user('from-afar')\n"
            "store.close()\n" % (self.store.path,))
        self.assertNotEqual(self.store.revision.read(), before)
        names = [u["username"] for u in self.store.read_identities()["users"]]
        self.assertEqual(names, ["from-afar"])
        self.assertEqual((yield self.store.user("from-afar"))["username"], "from-afar")

    # Audit.

    @defer.inlineCallbacks
    def test_audit_events(self):
        for i, (kind, actor) in enumerate([("login", "alice"), ("login_failed", "bob"),
                                           ("key_created", "alice"), ("login", "alice")]):
            self.now[0] = 1000.0 + i
            yield self.store.audit(kind, actor, "203.0.113.7", {"n": i})
        newest = yield self.store.audit_events(limit=2)
        self.assertEqual([e["detail"]["n"] for e in newest], [3, 2])
        older = yield self.store.audit_events(limit=10, before=newest[-1]["id"])
        self.assertEqual([e["detail"]["n"] for e in older], [1, 0])
        alices = yield self.store.audit_events(actor="alice", kind="login")
        self.assertEqual([e["detail"]["n"] for e in alices], [3, 0])
        self.assertEqual((yield self.store.purge_audit(1002.0)), 2)
        self.assertEqual(len((yield self.store.audit_events())), 2)


class StoreTests(_Behaviour, TestCase):
    """The gateway's store: Deferreds, from the store's own thread."""

    @defer.inlineCallbacks
    def test_calls_run_off_the_reactor_thread(self):
        answer = self.store.run(lambda connection: threading.current_thread())
        self.assertIsInstance(answer, defer.Deferred)
        seen = yield answer
        self.assertIsNot(seen, threading.current_thread())

    @defer.inlineCallbacks
    def test_another_process_writing_meanwhile(self):
        """The console command writes while the gateway runs: WAL and the busy timeout."""
        other = sqlite3.connect(self.store.path, timeout=5, isolation_level=None)
        self.addCleanup(other.close)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO users (username, roles, created_at, updated_at) "
                      "VALUES ('dave', '[]', 1, 1)")
        waiting = self.store.add_user("erin")  # waits for the other's lock
        other.execute("COMMIT")
        yield waiting
        names = [u["username"] for u in (yield self.store.users())]
        self.assertEqual(names, ["dave", "erin"])


class SyncStoreTests(_Behaviour, TestCase):
    """The console command's and start-up's store: results, in the caller's thread."""

    sync = True

    def test_calls_run_in_the_callers_thread(self):
        self.assertIs(self.store.run(lambda connection: threading.current_thread()),
                      threading.current_thread())
        self.assertIsInstance(self.store.add_user("alice"), int)
        self.assertEqual([u["username"] for u in self.store.users()], ["alice"])

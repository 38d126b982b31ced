"""The store on SQLite, with real files: creation, pragmas, migrations
(atomic, once, refusing a newer schema), the store's own thread, users and
audit events."""

import os
import sqlite3
import stat
import threading

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wighaven.config.settings import ConfigError
from wighaven.store import DEFAULT_DATABASE_URL, SqliteStore, StoreError, open_store, sqlite_path
from wighaven.store.schema import MIGRATIONS


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
        broken = MIGRATIONS + ((2, ("CREATE TABLE extra (x)", "NOT SQL AT ALL")),)
        with self.assertRaises(StoreError) as caught:
            SqliteStore.open(self.path, migrations=broken)
        self.assertIn("version 2", str(caught.exception))
        connection = sqlite3.connect(self.path)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone()[0], 1)
        self.assertIsNone(connection.execute(
            "SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone())
        connection.close()

    def test_open_store_from_a_url(self):
        store = open_store("sqlite:///" + self.path)
        self.addCleanup(store.close)
        self.assertEqual(store.path, self.path)


class StoreTests(TestCase):
    def setUp(self):
        path = os.path.join(os.path.abspath(self.mktemp()), "store.sqlite3")
        self.now = [1000.0]
        self.store = SqliteStore.open(path, clock=lambda: self.now[0])
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_calls_run_off_the_reactor_thread(self):
        seen = yield self.store.run(lambda connection: threading.current_thread())
        self.assertIsNot(seen, threading.current_thread())

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
    def test_a_removed_user_takes_its_keys_along(self):
        uid = yield self.store.add_user("carol")

        def key(connection):
            connection.execute(
                "INSERT INTO api_keys (id, user_id, secret_hash, created_at) VALUES (?, ?, ?, ?)",
                ("k1", uid, b"h", 1.0))

        yield self.store.run(key)
        yield self.store.remove_user("carol")
        left = yield self.store.run(
            lambda c: c.execute("SELECT COUNT(*) FROM api_keys").fetchone()[0])
        self.assertEqual(left, 0)

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

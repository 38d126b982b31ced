"""The console command (wighaven.cli), driven through main() against a real
database file: every command, every refusal (one line on stderr, exit
status 1), secrets shown once and never listed nor audited, the token
version moving, the gateway told (the revision file), and one run of the
real `python -m wighaven.cli` in another process."""

import io
import json
import os
import sqlite3
import subprocess
import sys
import time

import pyotp
from argon2 import PasswordHasher
from twisted.trial.unittest import SynchronousTestCase

import wighaven
from wighaven import cli
from wighaven.auth import keys
from wighaven.auth.passwords import is_argon2_hash
from wighaven.store import SqliteStore

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(wighaven.__file__)))
PASSWORD = "correct horse battery"


class CliTests(SynchronousTestCase):
    def setUp(self):
        self.path = os.path.join(os.path.abspath(self.mktemp()), "wh.sqlite3")
        self.env = {"DATABASE_URL": "sqlite:///" + self.path}
        self.typed = []  # what the fake prompt answers, in turn
        self.patch(cli, "_prompt", lambda prompt: self.typed.pop(0))

    def wighaven(self, *argv, stdin="", status=0, env=None):
        """Run the command; (stdout, stderr), its exit status checked."""
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.main(list(argv), env=self.env if env is None else env,
                        stdin=io.StringIO(stdin), stdout=stdout, stderr=stderr)
        self.assertEqual(code, status, (stdout.getvalue(), stderr.getvalue()))
        return stdout.getvalue(), stderr.getvalue()

    def refused(self, *argv, stdin="", env=None) -> str:
        """Run a command that must fail: one line on stderr, nothing on stdout; that line."""
        stdout, stderr = self.wighaven(*argv, stdin=stdin, status=1, env=env)
        self.assertEqual(stdout, "")
        self.assertTrue(stderr.startswith("wighaven: "), stderr)
        self.assertEqual(stderr.count("\n"), 1, stderr)
        self.assertTrue(stderr.endswith("\n"))
        self.assertNotIn("Traceback", stderr)
        return stderr

    def add(self, name="alice", *options, password=PASSWORD):
        return self.wighaven("users", "add", name, "--password-stdin", *options,
                             stdin=password + "\n")

    def store(self) -> SqliteStore:
        store = SqliteStore.open(self.path, sync=True)
        self.addCleanup(store.close)
        return store

    def events(self):
        return self.store().audit_events(limit=1000)

    def create_key(self, *options, user="alice"):
        """A new key of C{user}: (the whole key, what stderr said)."""
        stdout, stderr = self.wighaven("keys", "create", "--user", user, *options)
        self.assertEqual(stdout.count("\n"), 1)
        return stdout.splitlines()[0], stderr

    # Users.

    def test_users_add_and_list(self):
        stdout, _ = self.add("alice", "--role", "team", "--role", "admin", "--role", "team",
                             "--email", "alice@example.org")
        self.assertIn("alice", stdout)
        alice = self.store().user("alice")
        self.assertEqual((alice["roles"], alice["email"], alice["disabled"]),
                         (["admin", "team"], "alice@example.org", False))
        self.assertTrue(is_argon2_hash(alice["password_hash"]))
        self.assertTrue(PasswordHasher().verify(alice["password_hash"], PASSWORD))
        self.add("bob")
        table, _ = self.wighaven("users", "list")
        lines = table.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "EMAIL", "ROLES", "DISABLED", "TOTP",
                                            "CREATED"])
        self.assertEqual(lines[1].split()[:5], ["alice", "alice@example.org", "admin,team",
                                                "no", "off"])
        self.assertEqual(lines[2].split()[:5], ["bob", "-", "-", "no", "off"])
        listed, _ = self.wighaven("users", "list", "--json")
        users = json.loads(listed)
        self.assertEqual([(u["username"], u["roles"], u["disabled"], u["totp"]) for u in users],
                         [("alice", ["admin", "team"], False, False), ("bob", [], False, False)])
        self.assertEqual(set(users[0]), {"username", "email", "roles", "disabled", "totp",
                                         "created_at"})
        for output in (table, listed):
            self.assertNotIn(PASSWORD, output)
            self.assertNotIn("argon2", output)

    def test_a_typed_password_is_asked_twice(self):
        self.typed = [PASSWORD, PASSWORD]
        self.wighaven("users", "add", "alice")
        self.assertTrue(PasswordHasher().verify(self.store().user("alice")["password_hash"],
                                                PASSWORD))
        self.typed = [PASSWORD, PASSWORD + "!"]
        self.assertIn("differ", self.refused("users", "add", "bob"))
        self.assertIsNone(self.store().user("bob"))

    def test_a_password_from_stdin_is_its_first_line_only(self):
        self.wighaven("users", "add", "alice", "--password-stdin",
                      stdin=" spaced out pw \r\nsecond line\n")
        stored = self.store().user("alice")["password_hash"]
        self.assertTrue(PasswordHasher().verify(stored, " spaced out pw "))

    def test_users_add_refusals(self):
        self.add("alice")
        self.assertIn("exists already", self.refused(
            "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n"))
        self.assertIn("at least 8", self.refused(
            "users", "add", "bob", "--password-stdin", stdin="short\n"))
        self.assertIn("at least 8", self.refused("users", "add", "bob", "--password-stdin"))
        self.assertIn("reserved for Hugging Face", self.refused("users", "add", "hf:bob"))
        self.assertIn("reserved for Hugging Face", self.refused("users", "add", "HF:bob"))
        for name in ("b/ob", "bob smith", "", "x" * 65, "bob:1", "bøb"):
            self.assertIn("not a user name", self.refused("users", "add", name))
        self.add("x" * 64)  # the longest
        self.add("a.b_c@d-e")
        self.assertIn("not an email", self.refused("users", "add", "carol", "--email", "nope"))
        self.assertIn("not a role", self.refused("users", "add", "carol", "--role", "a b"))
        self.assertIn("required", self.refused("users", "add"))
        self.assertIsNone(self.store().user("bob"))
        self.assertIsNone(self.store().user("carol"))

    def test_disable_and_enable_end_the_tokens(self):
        self.add("alice")
        self.wighaven("users", "disable", "alice")
        alice = self.store().user("alice")
        self.assertEqual((alice["disabled"], alice["token_version"]), (True, 1))
        self.assertIn("yes", self.wighaven("users", "list")[0].splitlines()[1])
        self.wighaven("users", "enable", "alice")
        alice = self.store().user("alice")
        self.assertEqual((alice["disabled"], alice["token_version"]), (False, 2))
        for command in ("disable", "enable", "remove", "passwd"):
            self.assertIn("no user named 'bob'", self.refused("users", command, "bob"))

    def test_passwd(self):
        self.add("alice")
        self.wighaven("users", "passwd", "alice", "--password-stdin", stdin="a new password\n")
        alice = self.store().user("alice")
        self.assertTrue(PasswordHasher().verify(alice["password_hash"], "a new password"))
        self.assertEqual(alice["token_version"], 1)
        self.typed = ["another one!", "another one!"]
        self.wighaven("users", "passwd", "alice")
        self.assertEqual(self.store().user("alice")["token_version"], 2)
        self.assertIn("at least 8", self.refused(
            "users", "passwd", "alice", "--password-stdin", stdin="short\n"))
        self.assertEqual(self.store().user("alice")["token_version"], 2)
        self.typed = []  # an unknown user is refused before any prompt
        self.assertIn("no user named", self.refused("users", "passwd", "bob"))

    def test_roles_are_replaced(self):
        self.add("alice", "--role", "team")
        self.wighaven("users", "roles", "alice", "--role", "admin", "--role", "ops")
        self.assertEqual(self.store().user("alice")["roles"], ["admin", "ops"])
        self.wighaven("users", "roles", "alice")
        self.assertEqual(self.store().user("alice")["roles"], [])
        self.assertIn("no user named", self.refused("users", "roles", "bob", "--role", "x"))

    def test_remove_takes_the_keys_along(self):
        self.add("alice")
        self.create_key()
        self.wighaven("users", "remove", "alice")
        self.assertIsNone(self.store().user("alice"))
        self.assertEqual(self.store().keys(), [])
        self.assertIn("no user named", self.refused("users", "remove", "alice"))

    def test_totp_is_shown_once(self):
        self.add("alice")
        stdout, stderr = self.wighaven("users", "totp", "alice")
        secret = stdout.splitlines()[0].split()[-1]
        uri = stdout.splitlines()[1].split()[-1]
        self.assertIn("won't be shown again", stderr)
        self.assertEqual(self.store().user("alice")["totp_secret"], secret)
        self.assertEqual(uri, pyotp.TOTP(secret).provisioning_uri(
            name="alice", issuer_name="WigHaven Gateway"))
        self.assertTrue(uri.startswith("otpauth://totp/"))
        totp = pyotp.TOTP(secret)
        self.assertTrue(totp.verify(totp.now()))
        table, _ = self.wighaven("users", "list")
        self.assertIn("on", table.splitlines()[1].split())
        listed, _ = self.wighaven("users", "list", "--json")
        self.assertTrue(json.loads(listed)[0]["totp"])
        for output in (table, listed, repr(self.events())):
            self.assertNotIn(secret, output)
        # Enrolling again replaces it.
        again = self.wighaven("users", "totp", "alice")[0].splitlines()[0].split()[-1]
        self.assertNotEqual(again, secret)
        self.assertEqual(self.store().user("alice")["totp_secret"], again)
        self.wighaven("users", "totp", "alice", "--off")
        self.assertIsNone(self.store().user("alice")["totp_secret"])
        self.assertIn("off", self.wighaven("users", "list")[0].splitlines()[1].split())
        self.assertIn("no TOTP", self.refused("users", "totp", "alice", "--off"))
        self.assertIn("no user named", self.refused("users", "totp", "bob"))

    # API keys.

    def test_a_created_key_authenticates(self):
        self.add("alice")
        whole, note = self.create_key("--route", "chat", "--name", "ci bot")
        self.assertIn("won't be shown again", note)
        key_id, secret = keys.parse(whole)
        self.assertIn(key_id, note)
        self.assertNotIn(secret, note)
        [stored] = self.store().read_identities()["keys"]
        self.assertEqual((stored["id"], stored["route"], stored["expires_at"]),
                         (key_id, "chat", None))
        self.assertTrue(keys.matches(secret, stored["secret_hash"]))
        wrong = secret[:-1] + ("B" if secret.endswith("A") else "A")
        self.assertFalse(keys.matches(wrong, stored["secret_hash"]))
        [listed] = self.store().keys()
        self.assertEqual((listed["name"], listed["username"]), ("ci bot", "alice"))

    def test_expires(self):
        self.add("alice")
        for option, seconds in (("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 90 * 60)):
            whole, _ = self.create_key("--expires", option)
            key_id = keys.parse(whole)[0]
            [key] = [k for k in self.store().keys() if k["id"] == key_id]
            self.assertLess(abs(key["expires_at"] - (time.time() + seconds)), 60, option)
        whole, _ = self.create_key("--expires", "never")
        self.assertIsNone(self.store().keys()[-1]["expires_at"])

    def test_keys_create_refusals(self):
        self.add("alice")
        self.assertIn("no user named 'bob'", self.refused("keys", "create", "--user", "bob"))
        for bad in ("30", "0d", "30x", "-1d", "1w", "d", "30 d", "forever"):
            self.assertIn("not a duration", self.refused(
                "keys", "create", "--user", "alice", "--expires=" + bad))
        self.assertIn("not a route", self.refused(
            "keys", "create", "--user", "alice", "--route", "Chat!"))
        self.assertIn("printable", self.refused(
            "keys", "create", "--user", "alice", "--name", "a\x1bb"))
        self.assertIn("--user", self.refused("keys", "create"))
        self.assertEqual(self.store().keys(), [])

    def test_keys_list_and_revoke(self):
        self.add("alice")
        self.add("bob")
        alices, _ = self.create_key("--name", "laptop")
        bobs, _ = self.create_key(user="bob")
        alice_id, bob_id = keys.parse(alices)[0], keys.parse(bobs)[0]
        table, _ = self.wighaven("keys", "list")
        lines = table.splitlines()
        self.assertEqual(lines[0], "ID                USER   NAME    ROUTE  EXPIRES  LAST USED  "
                                   "REVOKED")
        self.assertEqual(lines[1].split(), [alice_id, "alice", "laptop", "all", "never",
                                            "never", "no"])
        self.assertEqual(lines[2].split(), [bob_id, "bob", "-", "all", "never", "never", "no"])
        mine, _ = self.wighaven("keys", "list", "--user", "bob", "--json")
        [listed] = json.loads(mine)
        self.assertEqual((listed["id"], listed["username"]), (bob_id, "bob"))
        self.assertNotIn("secret_hash", listed)
        self.assertIn("no user named", self.refused("keys", "list", "--user", "carol"))
        stdout, _ = self.wighaven("keys", "revoke", alice_id)
        self.assertIn(alice_id, stdout)
        revoked = self.wighaven("keys", "list", "--user", "alice")[0].splitlines()[1]
        self.assertTrue(revoked.endswith(" UTC"), revoked)  # when, not "no"
        self.assertIsNotNone(self.store().keys("alice")[0]["revoked_at"])
        self.assertEqual([k["id"] for k in self.store().read_identities()["keys"]], [bob_id])
        self.assertIn("revoked already", self.refused("keys", "revoke", alice_id))
        self.assertIn("no API key", self.refused("keys", "revoke", "0123456789abcdef"))
        for output in (table, mine, self.wighaven("keys", "list", "--json")[0]):
            for key in (alices, bobs):
                self.assertNotIn(key, output)
                self.assertNotIn(keys.parse(key)[1], output)

    # Everything together.

    def test_every_change_is_audited_without_secrets(self):
        self.add("alice", "--role", "team")
        self.wighaven("users", "passwd", "alice", "--password-stdin", stdin="second password\n")
        self.wighaven("users", "roles", "alice", "--role", "admin")
        self.wighaven("users", "disable", "alice")
        self.wighaven("users", "enable", "alice")
        secret = self.wighaven("users", "totp", "alice")[0].splitlines()[0].split()[-1]
        self.wighaven("users", "totp", "alice", "--off")
        whole, _ = self.create_key("--name", "bot")
        key_id = keys.parse(whole)[0]
        self.wighaven("keys", "revoke", key_id)
        self.wighaven("users", "remove", "alice")
        self.refused("users", "remove", "alice")  # a refusal changes nothing, records nothing
        events = list(reversed(self.events()))
        self.assertEqual([e["kind"] for e in events], [
            "user.created", "user.password_changed", "user.roles_changed", "user.disabled",
            "user.enabled", "user.totp_enrolled", "user.totp_removed", "key.created",
            "key.revoked", "user.removed"])
        self.assertEqual({e["actor"] for e in events}, {"console"})
        self.assertEqual(events[0]["detail"], {"username": "alice", "roles": ["team"]})
        self.assertEqual(events[2]["detail"], {"username": "alice", "roles": ["admin"]})
        self.assertEqual(events[7]["detail"]["key_id"], key_id)
        self.assertEqual(events[8]["detail"], {"key_id": key_id})
        text = json.dumps(events)
        for secret_text in (PASSWORD, "second password", secret, whole, keys.parse(whole)[1],
                            "argon2"):
            self.assertNotIn(secret_text, text)

    def test_changes_tell_the_gateway(self):
        """Each change moves the revision file that the gateway's processes watch."""
        revision = self.store().revision
        before = revision.read()
        self.add("alice")
        after_add = revision.read()
        self.assertNotEqual(after_add, before)
        self.wighaven("users", "list")
        self.assertEqual(revision.read(), after_add)
        self.create_key()
        self.assertNotEqual(revision.read(), after_add)

    def test_the_database_url(self):
        other = os.path.join(os.path.abspath(self.mktemp()), "other.sqlite3")
        self.add("alice")
        # --database-url wins over DATABASE_URL, before the command or after it.
        self.wighaven("--database-url", "sqlite:///" + other, "users", "add", "bob",
                      "--password-stdin", stdin=PASSWORD + "\n")
        listed, _ = self.wighaven("users", "list", "--database-url", "sqlite:///" + other)
        self.assertEqual([line.split()[0] for line in listed.splitlines()[1:]], ["bob"])
        self.assertIn("DATABASE_URL", self.refused(
            "users", "list", env={"DATABASE_URL": "postgresql://u@h/db"}))
        self.assertIn("DATABASE_URL", self.refused(
            "--database-url", "sqlite:///", "users", "list"))
        # Without either: the default, relative to the working directory.
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(folder)
        self.wighaven("users", "list", env={})
        self.assertTrue(os.path.exists(os.path.join(folder, "data", "wighaven.sqlite3")))

    def test_a_store_error_is_one_line(self):
        self.add("alice")
        connection = sqlite3.connect(self.path)
        connection.execute("PRAGMA user_version = 99")
        connection.close()
        self.assertIn("schema version 99", self.refused("users", "list"))

    def test_usage_mistakes_are_one_line(self):
        self.assertIn("required", self.refused())
        self.assertIn("required", self.refused("users"))
        self.assertIn("invalid choice", self.refused("users", "frobnicate"))
        self.assertIn("invalid choice", self.refused("secrets"))
        self.assertIn("unrecognized", self.refused("users", "list", "--yaml"))
        self.assertFalse(os.path.exists(self.path))  # no database made for a mistake

    def test_help(self):
        stdout, _ = self.wighaven("--help")
        self.assertIn("usage: wighaven", stdout)
        stdout, _ = self.wighaven("keys", "create", "--help")
        self.assertIn("--expires", stdout)
        self.assertFalse(os.path.exists(self.path))

    def test_the_real_command(self):
        """`python -m wighaven.cli` in a process of its own: it runs, exits with its status."""
        env = dict(os.environ, PYTHONPATH=PROJECT, DATABASE_URL="sqlite:///" + self.path)

        def run(*argv, stdin=""):
            return subprocess.run([sys.executable, "-m", "wighaven.cli"] + list(argv),
                                  input=stdin, env=env, capture_output=True, text=True,
                                  timeout=60)

        added = run("users", "add", "bob", "--role", "team", "--password-stdin",
                    stdin=PASSWORD + "\n")
        self.assertEqual(added.returncode, 0, added.stderr)
        listed = run("users", "list")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertEqual(listed.stdout.splitlines()[1].split()[:3], ["bob", "-", "team"])
        created = run("keys", "create", "--user", "bob")
        self.assertEqual(created.returncode, 0, created.stderr)
        self.assertIsNotNone(keys.parse(created.stdout.splitlines()[0]))
        refused = run("users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")
        self.assertEqual(refused.returncode, 1)
        self.assertEqual(refused.stdout, "")
        self.assertEqual(refused.stderr, "wighaven: a user named 'bob' exists already\n")

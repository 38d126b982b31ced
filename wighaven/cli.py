"""The console command, C{wighaven}: users and API keys in the store at
DATABASE_URL.

  wighaven users add NAME [--role R]... [--email E] [--password-stdin]
  wighaven users list [--json]
  wighaven users disable|enable|remove NAME
  wighaven users passwd NAME [--password-stdin]
  wighaven users roles NAME [--role R]...
  wighaven users totp NAME [--off]
  wighaven keys create --user NAME [--route R] [--expires 30d|12h|90m|never] [--name LABEL]
  wighaven keys list [--user NAME] [--json]
  wighaven keys revoke ID

Rules:
  - The store is opened synchronous (no reactor, no threads), from
    C{--database-url}, else DATABASE_URL, else the gateway's default. It is
    safe while the gateway runs: WAL and the busy timeout let both use the
    file, and every change bumps the revision file, so every gateway process
    sees it before its next request.
  - Secrets are shown once and never stored: only the hash of a password
    or of an API key's secret is. A password comes from stdin's first line
    (C{--password-stdin}) or is typed twice, never from the command line
    (ps and shell histories show those). A new key is the only thing on
    stdout's first line (C{KEY=$(wighaven keys create ...)}), the note that
    it won't be shown again on stderr; a TOTP secret likewise. No list
    shows a hash, a key or a TOTP secret.
  - Every change records an audit event, actor C{console}; its detail names
    users, roles and key ids, never a secret.
  - A mistake (bad input, unknown user, name taken, bad DATABASE_URL...) is
    one line on stderr starting with C{wighaven: } and exit status 1, never
    a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sqlite3
import sys
import time

import pyotp

from .auth import keys
from .auth.passwords import hash_password
from .auth.usernames import HF_PREFIX, check_username
from .config.settings import ConfigError
from .store import DEFAULT_DATABASE_URL, SqliteStore, StoreError, sqlite_path

__all__ = ["main"]

ACTOR = "console"  # the audit events' actor
MIN_PASSWORD = 8
TOTP_ISSUER = "WigHaven Gateway"
_ROLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ROUTE = re.compile(r"^[a-z0-9-]{1,63}$")  # a route's name (wighaven.config.routes)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([dhm])$")
_UNITS = {"d": 86400, "h": 3600, "m": 60}
_LABEL_LENGTH = 100

# How a password is typed (replaced in the tests).
_prompt = getpass.getpass


class Refused(Exception):
    """The command cannot do what was asked; its text is the one line to show."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its mistakes raised as L{Refused} (one line) instead of usage and exit 2."""

    def error(self, message):
        where = self.prog[len("wighaven"):].strip()
        raise Refused("%s: %s" % (where, message) if where else message)


# Arguments' types: each refuses a bad value with one line.

def _checked(pattern, what: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise argparse.ArgumentTypeError("%r is not %s" % (value, what))
        return value
    return check


def _new_name(value: str) -> str:
    """A new local user's name (L{wighaven.auth.usernames}); hf: names are Hugging Face's."""
    if value.lower().startswith(HF_PREFIX):
        raise argparse.ArgumentTypeError(
            "names starting with %s are reserved for Hugging Face sign-ins" % HF_PREFIX)
    try:
        return check_username(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError("%r is not a user name: %s" % (value, e))


def _expires_in(value: str):
    """Seconds from now (None: never) of C{Nd}, C{Nh}, C{Nm} or C{never}."""
    if value == "never":
        return None
    match = _DURATION.match(value)
    if match is None:
        raise argparse.ArgumentTypeError(
            "%r is not a duration: give days, hours or minutes (30d, 12h, 90m) or never"
            % (value,))
    return int(match.group(1)) * _UNITS[match.group(2)]


def _label(value: str) -> str:
    if not 1 <= len(value) <= _LABEL_LENGTH or not value.isprintable():
        raise argparse.ArgumentTypeError(
            "a key's name is 1 to %d printable characters" % _LABEL_LENGTH)
    return value


_role = _checked(_ROLE, "a role (1 to 64 of A-Z, a-z, 0-9 and . _ : -)")
_route = _checked(_ROUTE, "a route's name (1 to 63 of a-z, 0-9 and -)")
_email = _checked(_EMAIL, "an email address")


# Output.

def _when(at, none: str = "-") -> str:
    return none if at is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def _shown(value) -> str:
    """C{value} as text safe on a terminal (no control characters)."""
    text = "-" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)


def _table(out, headers, rows) -> None:
    rows = [[_shown(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    for row in [list(headers)] + rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                  + "\n")


def _json(out, value) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


class _Console:
    """What a command works with: the store, the streams, and the steps they share."""

    def __init__(self, store, stdin, stdout, stderr):
        self.store = store
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    def say(self, line: str) -> None:
        self.stdout.write(line + "\n")

    def note(self, line: str) -> None:
        self.stderr.write(line + "\n")

    def audit(self, kind: str, **detail) -> None:
        self.store.audit(kind, actor=ACTOR, detail=detail)

    def existing(self, name: str) -> dict:
        user = self.store.user(name)
        if user is None:
            raise Refused("no user named %r" % (name,))
        return user

    def update(self, name: str, **fields) -> dict:
        user = self.store.update_user(name, **fields)
        if user is None:
            raise Refused("no user named %r" % (name,))
        return user

    def new_password_hash(self, from_stdin: bool) -> str:
        """A new password, read (see the module) and checked, as its hash."""
        if from_stdin:
            password = self.stdin.readline()
            password = password[:-1] if password.endswith("\n") else password
            password = password[:-1] if password.endswith("\r") else password
        else:
            password = _prompt("New password: ")
            if _prompt("The same again: ") != password:
                raise Refused("the two passwords differ")
        if len(password) < MIN_PASSWORD:
            raise Refused("a password needs at least %d characters" % MIN_PASSWORD)
        return hash_password(password)


# The commands: each takes the console and its arguments.

def _users_add(console, args):
    if console.store.user(args.name) is not None:
        raise Refused("a user named %r exists already" % (args.name,))
    password_hash = console.new_password_hash(args.password_stdin)
    roles = sorted(set(args.role or ()))
    console.store.add_user(args.name, password_hash, roles, args.email)
    console.audit("user.created", username=args.name, roles=roles)
    console.say("user %s created" % args.name)


def _users_list(console, args):
    users = [{"username": u["username"], "email": u["email"], "roles": u["roles"],
              "disabled": u["disabled"], "totp": u["totp_secret"] is not None,
              "created_at": u["created_at"]} for u in console.store.users()]
    if args.json:
        return _json(console.stdout, users)
    _table(console.stdout, ("NAME", "EMAIL", "ROLES", "DISABLED", "TOTP", "CREATED"), [
        (u["username"], u["email"], ",".join(u["roles"]) or "-", "yes" if u["disabled"] else "no",
         "on" if u["totp"] else "off", _when(u["created_at"])) for u in users])


def _users_disable(console, args):
    console.update(args.name, disabled=True)
    console.audit("user.disabled", username=args.name)
    console.say("user %s disabled (its sessions and tokens ended)" % args.name)


def _users_enable(console, args):
    console.update(args.name, disabled=False)
    console.audit("user.enabled", username=args.name)
    console.say("user %s enabled" % args.name)


def _users_remove(console, args):
    if not console.store.remove_user(args.name):
        raise Refused("no user named %r" % (args.name,))
    console.audit("user.removed", username=args.name)
    console.say("user %s removed, with its API keys and sessions" % args.name)


def _users_passwd(console, args):
    console.existing(args.name)
    console.update(args.name, password_hash=console.new_password_hash(args.password_stdin))
    console.audit("user.password_changed", username=args.name)
    console.say("password of %s changed (its sessions and tokens ended)" % args.name)


def _users_roles(console, args):
    roles = sorted(set(args.role or ()))
    console.update(args.name, roles=roles)
    console.audit("user.roles_changed", username=args.name, roles=roles)
    console.say("roles of %s: %s" % (args.name, ", ".join(roles) or "none"))


def _users_totp(console, args):
    user = console.existing(args.name)
    if args.off:
        if user["totp_secret"] is None:
            raise Refused("%s has no TOTP second factor" % (args.name,))
        console.update(args.name, totp_secret=None)
        console.audit("user.totp_removed", username=args.name)
        return console.say("TOTP second factor of %s removed" % args.name)
    secret = pyotp.random_base32()
    console.update(args.name, totp_secret=secret)
    console.audit("user.totp_enrolled", username=args.name,
                  replaced=user["totp_secret"] is not None)
    console.say("secret: %s" % secret)
    console.say("uri: %s" % pyotp.TOTP(secret).provisioning_uri(
        name=args.name, issuer_name=TOTP_ISSUER))
    console.note("Add it to the authenticator app now: it won't be shown again.")


def _keys_create(console, args):
    user = console.existing(args.user)
    key_id, whole_key, secret_hash = keys.new_key()
    expires_at = None if args.expires is None else time.time() + args.expires
    console.store.add_key(key_id, user["id"], secret_hash, args.route, expires_at, args.name)
    console.audit("key.created", key_id=key_id, username=args.user, name=args.name,
                  route=args.route, expires_at=expires_at)
    console.say(whole_key)
    console.note("API key %s of %s: keep it now, it won't be shown again." % (key_id, args.user))


def _keys_list(console, args):
    if args.user is not None:
        console.existing(args.user)
    found = console.store.keys(args.user)
    if args.json:
        return _json(console.stdout, found)
    _table(console.stdout, ("ID", "USER", "NAME", "ROUTE", "EXPIRES", "LAST USED", "REVOKED"), [
        (k["id"], k["username"], k["name"], k["route"] or "all", _when(k["expires_at"], "never"),
         _when(k["last_used_at"], "never"), _when(k["revoked_at"], "no")) for k in found])


def _keys_revoke(console, args):
    if not console.store.revoke_key(args.id):
        raise Refused("no API key %r, or it is revoked already" % (args.id,))
    console.audit("key.revoked", key_id=args.id)
    console.say("API key %s revoked" % args.id)


# The command line.

def _database_option(parser, default) -> None:
    parser.add_argument(
        "--database-url", default=default, metavar="URL",
        help="where the store is (default: DATABASE_URL, else %s)" % DEFAULT_DATABASE_URL)


def _parser() -> _Parser:
    parser = _Parser(prog="wighaven", description="Users and API keys of WigHaven Gateway.")
    _database_option(parser, None)
    # Given after the command too; SUPPRESS: absent there, it keeps the one given before.
    common = _Parser(add_help=False)
    _database_option(common, argparse.SUPPRESS)
    groups = parser.add_subparsers(dest="group", metavar="{users,keys}", required=True)

    def command(group, name, run, help):
        sub = group.add_parser(name, parents=[common], help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    users = groups.add_parser("users", help="people who sign in").add_subparsers(
        dest="command", metavar="COMMAND", required=True)
    add = command(users, "add", _users_add, "add a user (asks for its password)")
    add.add_argument("name", type=_new_name, metavar="NAME")
    add.add_argument("--role", action="append", type=_role, metavar="ROLE",
                     help="a role (again for more)")
    add.add_argument("--email", type=_email)
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from stdin's first line")
    command(users, "list", _users_list, "list the users").add_argument(
        "--json", action="store_true")
    for name, run, help in (("disable", _users_disable, "disable a user: it can't sign in, "
                             "its sessions and tokens end"),
                            ("enable", _users_enable, "enable a disabled user"),
                            ("remove", _users_remove, "remove a user, its keys and sessions")):
        command(users, name, run, help).add_argument("name", metavar="NAME")
    passwd = command(users, "passwd", _users_passwd,
                     "set a user's password (its sessions and tokens end)")
    passwd.add_argument("name", metavar="NAME")
    passwd.add_argument("--password-stdin", action="store_true",
                        help="read the password from stdin's first line")
    roles = command(users, "roles", _users_roles, "replace a user's roles (none without --role)")
    roles.add_argument("name", metavar="NAME")
    roles.add_argument("--role", action="append", type=_role, metavar="ROLE")
    totp = command(users, "totp", _users_totp, "enrol a TOTP second factor (shown once)")
    totp.add_argument("name", metavar="NAME")
    totp.add_argument("--off", action="store_true", help="remove it instead")

    key_commands = groups.add_parser("keys", help="API keys for programs").add_subparsers(
        dest="command", metavar="COMMAND", required=True)
    create = command(key_commands, "create", _keys_create, "create an API key (shown once)")
    create.add_argument("--user", required=True, metavar="NAME")
    create.add_argument("--route", type=_route, help="the only route it opens (default: all)")
    create.add_argument("--expires", type=_expires_in, default=None, metavar="30d|12h|90m|never",
                        help="when it ends (default: never)")
    create.add_argument("--name", type=_label, metavar="LABEL", help="what it is for")
    listing = command(key_commands, "list", _keys_list, "list the API keys (never the keys)")
    listing.add_argument("--user", metavar="NAME")
    listing.add_argument("--json", action="store_true")
    command(key_commands, "revoke", _keys_revoke, "revoke an API key").add_argument(
        "id", metavar="ID")
    return parser


def _parse(argv, stdout, stderr):
    """The arguments, or the exit status when argparse ended the command (--help: 0)."""
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            return _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1


def _run(args, env, stdin, stdout, stderr) -> None:
    url = args.database_url or env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    store = SqliteStore.open(sqlite_path(url), sync=True)
    try:
        args.run(_Console(store, stdin, stdout, stderr), args)
    finally:
        store.close()


def main(argv=None, env=None, stdin=None, stdout=None, stderr=None) -> int:
    """Run the command C{argv} (default: the process's); its exit status."""
    env = os.environ if env is None else env
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        args = _parse(argv, stdout, stderr)
        if isinstance(args, int):
            return args
        _run(args, env, stdin, stdout, stderr)
    except (Refused, StoreError, ConfigError) as e:
        stderr.write("wighaven: %s\n" % (e,))
        return 1
    except sqlite3.Error as e:  # e.g. another process held the lock beyond the busy timeout
        stderr.write("wighaven: the database failed: %s\n" % (e,))
        return 1
    except EOFError:
        stderr.write("wighaven: no password given (end of input)\n")
        return 1
    except KeyboardInterrupt:
        stderr.write("wighaven: interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Routes kept in the store: those made at run time (the admin API), beside
the config file's.

Rules:
  - A route is kept as its C{spec}: the config file's keys of one
    [[routes]] table (wighaven.config.routes), as JSON. Upstream tokens in
    it are sealed (wighaven.store.secret_box) or C{env:}/C{file:}
    references, never plain: the caller seals before it writes.
  - Each route has a C{version} that moves with every change. A change or
    removal may name the version it was made from: when the stored one is
    another (someone else changed it meanwhile) nothing changes and
    L{StaleVersion} is raised, in the same transaction as the check, so
    two administrators editing one route cannot overwrite each other.
  - Every change bumps the store's C{routes_revision} after its commit:
    each gateway process watches it and applies the new table.
  - A change may carry a C{check}: called inside its transaction, after the
    change, with every stored route's row, it raises to roll the change
    back. The admin API checks there that the whole table still applies
    (no two routes taking the same hosts and path), so two processes
    adding clashing routes at once cannot both commit: the store never
    holds a table the gateway could not apply.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Optional

from .errors import StaleVersion, StoreError

__all__ = ["StoredRoutes", "route_row"]


def route_row(row) -> Optional[dict]:
    if row is None:
        return None
    route = dict(row)
    route["spec"] = json.loads(route["spec"])
    return route


def _exists_at(connection, name: str, expected_version: Optional[int]) -> bool:
    """Is route C{name} there (False: no such route)? L{StaleVersion} when it is, but
    C{expected_version} is given and is not its version. Inside the change's transaction."""
    current = connection.execute("SELECT version FROM routes WHERE name = ?", (name,)).fetchone()
    if current is None:
        return False
    if expected_version is not None and current[0] != expected_version:
        raise StaleVersion("route %r changed since version %d" % (name, expected_version))
    return True


def _checked(connection, check) -> None:
    """Run C{check} (None: none) on every stored route's row, inside the change's transaction."""
    if check is not None:
        check([route_row(row) for row in connection.execute("SELECT * FROM routes ORDER BY name")])


def _spec_text(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


class StoredRoutes:
    """The store's routes (a part of L{wighaven.store.sqlite.SqliteStore})."""

    def routes(self):
        """Every stored route (name, spec, version, created_at, updated_at, updated_by), by name."""
        return self.run(lambda c: [route_row(row) for row in c.execute(
            "SELECT * FROM routes ORDER BY name")])

    def route(self, name: str):
        """The stored route C{name}, or None."""
        return self.run(lambda c: route_row(c.execute(
            "SELECT * FROM routes WHERE name = ?", (name,)).fetchone()))

    def add_route(self, name: str, spec: dict, actor: Optional[str] = None, check=None):
        """A new route (version 1); L{StoreError} when the name is taken."""
        def add(connection):
            now = self.now()
            try:
                connection.execute(
                    "INSERT INTO routes (name, spec, version, created_at, updated_at, updated_by) "
                    "VALUES (?, ?, 1, ?, ?, ?)", (name, _spec_text(spec), now, now, actor))
            except sqlite3.IntegrityError:
                raise StoreError("a route named %r exists already" % (name,))
            _checked(connection, check)
            return route_row(connection.execute(
                "SELECT * FROM routes WHERE name = ?", (name,)).fetchone())

        return self.run(add, changes_routes=True)

    def update_route(self, name: str, spec: dict, actor: Optional[str] = None,
                     expected_version: Optional[int] = None, check=None):
        """
        Replace route C{name}'s spec; the route as stored now, or None when
        there is none. L{StaleVersion} when C{expected_version} is given and
        is not the stored one.
        """
        def update(connection):
            if not _exists_at(connection, name, expected_version):
                return None
            connection.execute(
                "UPDATE routes SET spec = ?, version = version + 1, updated_at = ?, "
                "updated_by = ? WHERE name = ?", (_spec_text(spec), self.now(), actor, name))
            _checked(connection, check)
            return route_row(connection.execute(
                "SELECT * FROM routes WHERE name = ?", (name,)).fetchone())

        return self.run(update, changes_routes=True)

    def apply_routes(self, added=(), changed=(), removed=(), actor: Optional[str] = None,
                     check=None):
        """
        Several changes in ONE transaction (a config import): C{added} and
        C{changed} are (name, spec) pairs, C{removed} names; all of them or
        none (L{StoreError} when an added name is taken, or a changed or
        removed one is gone).
        """
        def apply(connection):
            now = self.now()
            for name, spec in added:
                try:
                    connection.execute(
                        "INSERT INTO routes (name, spec, version, created_at, updated_at, "
                        "updated_by) VALUES (?, ?, 1, ?, ?, ?)",
                        (name, _spec_text(spec), now, now, actor))
                except sqlite3.IntegrityError:
                    raise StoreError("a route named %r exists already" % (name,))
            for name, spec in changed:
                if connection.execute(
                        "UPDATE routes SET spec = ?, version = version + 1, updated_at = ?, "
                        "updated_by = ? WHERE name = ?",
                        (_spec_text(spec), now, actor, name)).rowcount != 1:
                    raise StoreError("the route %r is gone" % (name,))
            for name in removed:
                if connection.execute("DELETE FROM routes WHERE name = ?", (name,)).rowcount != 1:
                    raise StoreError("the route %r is gone" % (name,))
            _checked(connection, check)

        return self.run(apply, changes_routes=True)

    def remove_route(self, name: str, expected_version: Optional[int] = None):
        """Remove route C{name}: False when there is none; L{StaleVersion} as for updates."""
        def remove(connection):
            if not _exists_at(connection, name, expected_version):
                return False
            connection.execute("DELETE FROM routes WHERE name = ?", (name,))
            return True

        return self.run(remove, changes_routes=True)

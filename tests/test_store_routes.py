"""Routes kept in the store (wighaven.store.routes): versions, optimistic
concurrency, and the routes revision every gateway process watches."""

import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from wighaven.store import SqliteStore, StaleVersion, StoreError

SPEC = {"name": "chat", "path": "/chat", "upstreams": [
    {"url": "https://user-chat.hf.space", "token": {"sealed": "gAAAAA..."}}]}


class StoredRoutesTests(TestCase):
    def setUp(self):
        folder = os.path.abspath(self.mktemp())
        self.path = os.path.join(folder, "wighaven.sqlite3")
        self.store = SqliteStore.open(self.path, sync=True, clock=lambda: 1000.0)
        self.addCleanup(self.store.close)

    def test_add_read_list(self):
        added = self.store.add_route("chat", SPEC, actor="admin")
        self.assertEqual((added["name"], added["version"], added["updated_by"]),
                         ("chat", 1, "admin"))
        self.assertEqual(added["spec"], SPEC)
        self.assertEqual(self.store.route("chat"), added)
        self.store.add_route("api", dict(SPEC, name="api"))
        self.assertEqual([r["name"] for r in self.store.routes()], ["api", "chat"])
        self.assertIsNone(self.store.route("nope"))
        with self.assertRaisesRegex(StoreError, "exists already"):
            self.store.add_route("chat", SPEC)

    def test_a_stale_version_changes_nothing(self):
        self.store.add_route("chat", SPEC)
        changed = self.store.update_route("chat", dict(SPEC, path="/talk"), expected_version=1)
        self.assertEqual((changed["version"], changed["spec"]["path"]), (2, "/talk"))
        # A second admin still holding version 1: refused, the route as the first left it.
        with self.assertRaises(StaleVersion):
            self.store.update_route("chat", dict(SPEC, path="/other"), expected_version=1)
        with self.assertRaises(StaleVersion):
            self.store.remove_route("chat", expected_version=1)
        self.assertEqual(self.store.route("chat")["spec"]["path"], "/talk")
        self.assertTrue(self.store.remove_route("chat", expected_version=2))
        self.assertFalse(self.store.remove_route("chat"))
        self.assertIsNone(self.store.update_route("chat", SPEC))

    def test_every_change_moves_the_routes_revision_and_only_it(self):
        routes, identities = self.store.routes_revision, self.store.revision
        seen = routes.read(), identities.read()
        self.store.add_route("chat", SPEC)
        self.assertNotEqual(routes.read(), seen[0])
        self.assertEqual(identities.read(), seen[1])
        for change in (lambda: self.store.update_route("chat", SPEC),
                       lambda: self.store.remove_route("chat")):
            before = routes.read()
            change()
            self.assertNotEqual(routes.read(), before)
        before = routes.read()
        self.store.routes()
        self.store.add_user("alice")
        self.assertEqual(routes.read(), before)  # reading, or users, leave it

    def test_a_refused_change_leaves_the_revision(self):
        self.store.add_route("chat", SPEC)
        before = self.store.routes_revision.read()
        with self.assertRaises(StaleVersion):
            self.store.update_route("chat", SPEC, expected_version=7)
        self.assertEqual(self.store.routes_revision.read(), before)

    def test_a_check_that_raises_rolls_the_change_back(self):
        """The check sees every row as the change leaves them, inside its transaction."""
        self.store.add_route("chat", SPEC)
        seen = []

        def refuse(rows):
            seen.append(sorted((row["name"], row["spec"]["path"]) for row in rows))
            raise ValueError("two routes take /chat")

        before = self.store.routes_revision.read()
        with self.assertRaises(ValueError):
            self.store.add_route("api", dict(SPEC, name="api"), check=refuse)
        with self.assertRaises(ValueError):
            self.store.update_route("chat", dict(SPEC, path="/talk"), check=refuse)
        with self.assertRaises(ValueError):
            self.store.apply_routes(added=[("x", dict(SPEC, name="x", path="/x"))],
                                    removed=["chat"], check=refuse)
        self.assertEqual(seen, [[("api", "/chat"), ("chat", "/chat")], [("chat", "/talk")],
                                [("x", "/x")]])
        self.assertEqual([(r["name"], r["version"], r["spec"]["path"]) for r in self.store.routes()],
                         [("chat", 1, "/chat")])
        self.assertEqual(self.store.routes_revision.read(), before)
        self.store.add_route("api", dict(SPEC, name="api", path="/api"), check=lambda rows: None)
        self.assertEqual(len(self.store.routes()), 2)

    @defer.inlineCallbacks
    def test_through_the_store_thread_too(self):
        store = SqliteStore.open(self.path)
        self.addCleanup(store.close)
        added = yield store.add_route("chat", SPEC)
        self.assertEqual(added["version"], 1)
        with self.assertRaises(StaleVersion):
            yield store.update_route("chat", SPEC, expected_version=9)
        listed = yield store.routes()
        self.assertEqual([r["name"] for r in listed], ["chat"])

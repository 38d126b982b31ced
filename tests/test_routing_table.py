"""Route matching (wighaven.routing.table): host first (exact, then the
longest wildcard, then routes with no hosts), then the longest path prefix
on a segment boundary; the work per request never grows with the routes."""

import attrs
from twisted.trial.unittest import SynchronousTestCase

from wighaven.routing.table import RouteTable, normalized_host


@attrs.frozen
class R:
    name: str
    hosts: tuple = ()
    path: str = "/"


def names(table, cases):
    return [getattr(table.match(host, path), "name", None) for host, path in cases]


class MatchTests(SynchronousTestCase):
    def test_longest_prefix_on_segment_boundaries(self):
        table = RouteTable([R("root"), R("chat", path="/chat"), R("deep", path="/chat/v2/api")])
        self.assertEqual(names(table, [
            (None, "/"), (None, "/x"), (None, "/chat"), (None, "/chat/"), (None, "/chat/x"),
            (None, "/chatter"), (None, "/chat/v2"), (None, "/chat/v2/api"),
            (None, "/chat/v2/api/x/y"), (None, "/chat/v2/apis"),
        ]), ["root", "root", "chat", "chat", "chat", "root", "chat", "deep", "deep", "chat"])

    def test_no_match_without_a_root(self):
        table = RouteTable([R("chat", path="/chat")])
        self.assertIsNone(table.match(None, "/"))
        self.assertIsNone(table.match("any.example", "/chatter"))

    def test_exact_host_then_wildcard_then_no_host(self):
        table = RouteTable([
            R("any"), R("exact", hosts=("a.example.org",)),
            R("wild", hosts=("*.example.org",)), R("deeper", hosts=("*.b.example.org",)),
        ])
        self.assertEqual(names(table, [
            ("a.example.org", "/"), ("c.example.org", "/x"), ("x.b.example.org", "/"),
            ("b.example.org", "/"), ("example.org", "/"), ("other.net", "/"), (None, "/"),
        ]), ["exact", "wild", "deeper", "wild", "any", "any", "any"])

    def test_a_host_whose_paths_do_not_match_falls_through(self):
        table = RouteTable([R("any"), R("api", hosts=("a.example",), path="/api")])
        self.assertEqual(names(table, [("a.example", "/api/x"), ("a.example", "/ui")]),
                         ["api", "any"])

    def test_by_name(self):
        chat = R("chat", path="/chat")
        self.assertIs(RouteTable([R("a"), chat]).by_name["chat"], chat)


class CountingDict(dict):
    """A dict that counts its lookups."""

    lookups = 0

    def get(self, key, default=None):
        CountingDict.lookups += 1
        return super().get(key, default)

    def __contains__(self, key):
        CountingDict.lookups += 1
        return super().__contains__(key)


class CostTests(SynchronousTestCase):
    def lookups(self, count):
        """Dict lookups of one match in a table of C{count} host and C{count} path routes."""
        routes = [R("h%d" % i, hosts=("h%d.example.org" % i,)) for i in range(count)]
        routes += [R("w%d" % i, hosts=("*.w%d.example.org" % i,)) for i in range(count)]
        routes += [R("p%d" % i, path="/p%d" % i) for i in range(count)]
        table = RouteTable(routes)
        table._exact = CountingDict(table._exact)
        table._wildcard = CountingDict(table._wildcard)
        for paths in [table._any, *table._exact.values(), *table._wildcard.values()]:
            paths.by_prefix = CountingDict(paths.by_prefix)
        CountingDict.lookups = 0
        route = table.match("x.w1.example.org", "/p1/a/b/c")
        self.assertEqual(route.name, "w1")
        found = CountingDict.lookups
        CountingDict.lookups = 0
        self.assertEqual(table.match("nowhere.example.net", "/p1/a/b/c").name, "p1")
        return found + CountingDict.lookups

    def test_lookups_do_not_grow_with_the_routes(self):
        self.assertEqual(self.lookups(1000), self.lookups(2))
        self.assertLess(self.lookups(1000), 20)


class NormalizedHostTests(SynchronousTestCase):
    def test_forms(self):
        self.assertEqual(
            [normalized_host(v) for v in (b"Chat.Example.ORG", b"chat.example.org:8443",
                                          b"chat.example.org.", b"[::1]:7860", b"", None,
                                          b"caf\xc3\xa9.example", b"[broken")],
            ["chat.example.org", "chat.example.org", "chat.example.org", "[::1]", None, None,
             None, None])

"""Which route a request belongs to: its Host, then the longest path prefix.

Rule (issue "many Spaces"): a route with the request's exact host wins over
one with a matching wildcard (C{*.example.org} matches any name below
example.org, not example.org itself; the longest wildcard wins), which wins
over the routes with no hosts. Among the routes of that host, the longest
path prefix that matches on a segment boundary wins (C{/chat} takes
C{/chat} and C{/chat/x}, never C{/chatter}). No match: None (the caller
answers 404 C{no_route}).

Cost: no scan of the routes per request. The table is built once (it is
frozen; a reload builds a new one and swaps it in whole): a dict from host
to its path table, a dict from wildcard suffix to its path table, and per
path table a dict from prefix to route. A request looks up its host (one
dict get), then each suffix of its host's labels for a wildcard (one get a
label), then each segment prefix of its path, longest first (one get a
segment): the work grows with the request's host and path, never with
the number of routes.
"""

from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional, Tuple

__all__ = ["RouteTable", "normalized_host"]


class _Paths:
    """The routes of one host (or of no host), by path prefix."""

    __slots__ = ("by_prefix", "root")

    def __init__(self):
        self.by_prefix: Dict[str, object] = {}
        self.root = None  # the route at "/"

    def add(self, path: str, route) -> None:
        if path == "/":
            self.root = route
        else:
            self.by_prefix[path] = route

    def match(self, path: str):
        """The route of the longest prefix of C{path} (segment-wise), or None."""
        by_prefix = self.by_prefix
        if by_prefix:
            if path in by_prefix:
                return by_prefix[path]
            end = path.rfind("/")
            while end > 0:
                route = by_prefix.get(path[:end])
                if route is not None:
                    return route
                end = path.rfind("/", 0, end)
        return self.root


class RouteTable:
    """
    The routes, frozen, matched by L{match}. C{routes} are objects with
    C{hosts} (exact names or C{*.suffix}, lower-case) and C{path} (a prefix
    without a trailing slash, or C{/}); each (host, path) pair is unique
    (wighaven.config.routes checks it).
    """

    def __init__(self, routes: Iterable):
        self.routes: Tuple = tuple(routes)
        self._exact: Dict[str, _Paths] = {}
        self._wildcard: Dict[str, _Paths] = {}  # ".example.org" -> paths
        self._any = _Paths()
        for route in self.routes:
            if not route.hosts:
                self._any.add(route.path, route)
            for host in route.hosts:
                if host.startswith("*."):
                    self._wildcard.setdefault(host[1:], _Paths()).add(route.path, route)
                else:
                    self._exact.setdefault(host, _Paths()).add(route.path, route)
        self.by_name: Mapping[str, object] = {route.name: route for route in self.routes}

    def match(self, host: Optional[str], path: str):
        """
        The route for a request to C{host} (lower-case, without port; None
        when the request named none) and C{path} (without the query).
        """
        if host:
            paths = self._exact.get(host)
            if paths is not None:
                route = paths.match(path)
                if route is not None:
                    return route
            if self._wildcard:
                dot = host.find(".")
                while dot >= 0:
                    paths = self._wildcard.get(host[dot:])
                    if paths is not None:
                        route = paths.match(path)
                        if route is not None:
                            return route
                    dot = host.find(".", dot + 1)
        return self._any.match(path)


def normalized_host(value: Optional[bytes]) -> Optional[str]:
    """
    The Host header's name as routes know it: lower-case, without its port
    or a trailing dot; None for a missing or unusable value (an IPv6
    literal keeps its brackets).
    """
    if not value:
        return None
    try:
        host = value.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    return host.rstrip(".") or None

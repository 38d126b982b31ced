"""Live reload: the route table follows the config file (on SIGHUP) and the
routes kept in the store (the admin API), with nothing in flight cut.

Rule (issue "many Spaces", part 7, and "admin panel", part 2): the new table
is built and validated whole, off to the side, then replaces the old one in
one step (L{wighaven.routing.router.Router.replace}). Requests already under
way keep the route they started on, so an event stream, a WebSocket or an
upload runs to its end whatever the change; only a route that was removed
cuts what it still has open, DRAIN_TIMEOUT later. A table that does not
validate changes nothing: the old one stays, one line says why, and
C{wighaven_config_reloads_total{result="error"}} counts it.

Two sources make the table: the "base" (PRIVATE_BACKEND_URL's route and the
WIGHAVEN_CONFIG file's, re-read on SIGHUP with the C{env:}/C{file:} secrets
they name) and, with AUTH on, the stored routes. The stored ones are
followed by watching the store's C{routes_revision} file (8 mapped bytes,
bumped after every committed change by any process: see
L{wighaven.store.revision}) every L{WATCH_INTERVAL} seconds: a change made
through the admin API in one worker is in force in every worker well within
a second, and the worker that made it applies it before it answers.

With WORKERS above 1 the supervisor passes SIGHUP on to each worker, and
each reloads on its own.
"""

from __future__ import annotations

import os
import signal
from typing import Mapping, Optional, Sequence

from twisted.internet import task
from twisted.logger import Logger

from ..config.routes import check_unique, load_routes, parse_route
from ..config.settings import ConfigError

__all__ = ["Reloader", "WATCH_INTERVAL"]

WATCH_INTERVAL = 0.2  # seconds between looks at the stored routes' revision


class Reloader:
    """
    Keeps C{router}'s table equal to the base routes plus the stored ones;
    counts into C{stats.reloads}.

    @param store: the store (with C{read_routes} and C{routes_revision}), or
        None (AUTH off: the base routes only).
    @param open_sealed: opens a stored route's sealed token
        (L{wighaven.store.secret_box.SecretBox.open}).
    """

    _log = Logger()

    def __init__(self, config, router, forward, stats, env=None, store=None, open_sealed=None,
                 clock=None):
        self._config = config
        self._router = router
        self._forward = forward
        self._stats = stats
        self._env = env
        self._store = store
        self._open_sealed = open_sealed
        self._clock = clock
        self.base = tuple(config.routes)
        self.stored = ()
        self._seen = None
        self._watch = None
        if store is not None:
            self.stored = self._read_stored()
            self._swap(self.base, self.stored)

    @property
    def env(self) -> Mapping[str, str]:
        return self._env if self._env is not None else os.environ

    # Building.

    def stored_route(self, spec: dict):
        """A stored spec as a Route (L{wighaven.config.routes.RouteError} when it is bad)."""
        return parse_route(spec, self.env, self._open_sealed, source="store")

    def table(self, stored: Sequence, base: Optional[Sequence] = None) -> tuple:
        """
        The whole table of C{base} (default: the current) and C{stored}
        routes, validated as one (L{ConfigError} when two clash).
        """
        routes = tuple(self.base if base is None else base) + tuple(stored)
        check_unique(routes)
        return routes

    def _read_stored(self) -> tuple:
        """The stored routes, parsed (the revision read first: see wighaven.store.revision)."""
        self._seen = self._store.routes_revision.read()
        return tuple(self.stored_route(row["spec"]) for row in self._store.read_routes())

    def _swap(self, base, stored) -> dict:
        routes = self.table(stored, base)
        changes = self._router.replace(routes)
        self.base, self.stored = tuple(base), tuple(stored)
        self._forward.table_replaced()
        return changes

    # Following the sources.

    def reload(self) -> bool:
        """Re-read the config file and swap in the table; False (the old one kept) when it
        does not validate."""
        try:
            base, note = load_routes(self._config, self.env)
            changes = self._swap(base, self.stored)
        except ConfigError as e:
            self._failed("config reload failed, the routes stay as they were: {error}", e)
            return False
        self._done("config reloaded", changes, note)
        return True

    def apply_stored(self) -> bool:
        """
        Read the stored routes again and swap them in (the admin API calls
        it after each change, and the watch when another process made one);
        False (the old table kept) when they do not validate.
        """
        try:
            stored = self._read_stored()
            changes = self._swap(self.base, stored)
        except Exception as e:  # a bad row, a sealed token that won't open, a store error
            self._failed("stored routes not applied, the routes stay as they were: {error}", e)
            return False
        if any(changes.values()):
            self._done("stored routes applied", changes, None)
        return True

    def _failed(self, format: str, error) -> None:
        self._stats.reloads["error"] += 1
        self._log.error(format, error=str(error))

    def _done(self, what: str, changes: dict, note: Optional[str]) -> None:
        self._stats.reloads["ok"] += 1
        self._log.info(
            "{what}: {count} routes (added: {added}; changed: {changed}; removed: {removed})"
            "{note}", what=what, count=len(self._router.routes),
            note="; " + note if note else "",
            **{kind: ", ".join(names) or "none" for kind, names in changes.items()})

    def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Follow the stored routes' revision (with a store); L{stop} ends it."""
        if self._store is None or self._watch is not None:
            return
        self._watch = task.LoopingCall(self._look)
        if self._clock is not None:
            self._watch.clock = self._clock
        self._watch.start(interval, now=False)

    def _look(self) -> None:
        if self._store.routes_revision.read() != self._seen:
            self.apply_stored()

    def stop(self) -> None:
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None

    def on_sighup(self, reactor) -> None:
        """Reload on SIGHUP, on the reactor's thread (a signal handler must not do the work)."""
        if not hasattr(signal, "SIGHUP"):  # pragma: no cover - not a POSIX system
            return
        signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(self.reload))

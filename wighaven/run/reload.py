"""Live reload: SIGHUP re-reads the config file and swaps the route table.

Rule (issue "many Spaces", part 7): the new table is built and validated
whole, off to the side, then replaces the old one in one step
(L{wighaven.routing.router.Router.replace}). Requests already under way
keep the route they started on, so an event stream, a WebSocket or an
upload runs to its end whatever the reload changed; only a route that was
removed cuts what it still has open, DRAIN_TIMEOUT later. A file that does
not validate changes nothing: the old table stays, one line says why, and
C{wighaven_config_reloads_total{result="error"}} counts it.

What is re-read: the file (WIGHAVEN_CONFIG) and the secrets it points at
(C{env:} and C{file:} tokens). The process's other settings are those it
started with; changing them takes a restart.

With WORKERS above 1 the supervisor passes SIGHUP on to each worker, and
each reloads on its own.
"""

from __future__ import annotations

import os
import signal

from twisted.logger import Logger

from ..config.routes import load_routes
from ..config.settings import ConfigError

__all__ = ["Reloader"]


class Reloader:
    """Reloads C{router}'s table from C{config}'s file; counts into C{stats.reloads}."""

    _log = Logger()

    def __init__(self, config, router, forward, stats, env=None):
        self._config = config
        self._router = router
        self._forward = forward
        self._stats = stats
        self._env = env

    def reload(self) -> bool:
        """Re-read and swap in the table; False (the old one kept) when it does not validate."""
        try:
            routes, note = load_routes(self._config, self._env if self._env is not None
                                       else os.environ)
        except ConfigError as e:
            self._stats.reloads["error"] += 1
            self._log.error("config reload failed, the routes stay as they were: {error}",
                            error=str(e))
            return False
        changes = self._router.replace(routes)
        self._forward.table_replaced()
        self._stats.reloads["ok"] += 1
        self._log.info(
            "config reloaded: {count} routes (added: {added}; changed: {changed}; removed: "
            "{removed}); {note}", count=len(routes), note=note,
            **{kind: ", ".join(names) or "none" for kind, names in changes.items()})
        return True

    def on_sighup(self, reactor) -> None:
        """Reload on SIGHUP, on the reactor's thread (a signal handler must not do the work)."""
        if not hasattr(signal, "SIGHUP"):  # pragma: no cover - not a POSIX system
            return
        signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(self.reload))

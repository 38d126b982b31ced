"""Logging: twisted.logger events, filtered by LOG_LEVEL.

Rule: the gateway logs through L{twisted.logger.Logger} objects only; the
level filter sits in front of the observer twistd writes with, so LOG_LEVEL
governs every line, Twisted's own included. LOG_FORMAT=json writes one JSON
object per line instead of text. Connection-level chatter of
Twisted's HTTP client factories is held to warnings. Headers are never
logged: the token and the clients' credentials live there.

Each gateway process also keeps its last lines in memory for the admin
API: one L{wighaven.observe.recent.LogRing} per process (L{log_ring}), fed
behind the very filter of the log itself. The observer twistd is given
(L{twistd_observer}) and a worker's (L{filtered_observer} with C{ring})
feed it; a process that logs through neither (tests building a
GatewayService directly, twistd --syslog) has it fed from the global log
publisher by L{feed_log_ring}, once per process.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import threading

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)

__all__ = [
    "LEVELS", "feed_log_ring", "filtered_observer", "give_observer_to_twistd", "json_line",
    "level_predicate", "log_ring", "twistd_observer",
]

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}

_QUIET_NAMESPACES = (
    "twisted.web.client._HTTP11ClientFactory",
    "twisted.internet.protocol.Factory",
)


def level_predicate(level: str) -> LogLevelFilterPredicate:
    """A predicate passing events at C{level} and above."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    for namespace in _QUIET_NAMESPACES:
        predicate.setLogLevelForNamespace(namespace, max(LEVELS[level], LogLevel.warn))
    return predicate


_PLAIN = (str, int, float, bool, type(None), list, dict)
_NOT_FIELDS = frozenset(["format", "message", "isError", "system", "time", "why", "failure"])


def json_line(event) -> str:
    """
    One JSON object for a log event: time (ISO 8601, UTC), level, namespace,
    event (the formatted message), then the event's own plain fields (an
    access line's method, path, status...; lists and dicts as JSON, for
    LOG_BODIES). A failure is reduced to its message: tracebacks stay out
    of structured logs.
    """
    line = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc).isoformat(),
        "level": event["log_level"].name if "log_level" in event else "info",
        "namespace": event.get("log_namespace", "-"),
        "event": formatEvent(event),
    }
    for key, value in event.items():
        if not key.startswith("log_") and key not in _NOT_FIELDS and isinstance(value, _PLAIN):
            line[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        line["failure"] = failure.getErrorMessage()
    return json.dumps(line, default=repr) + "\n"


_ring_lock = threading.Lock()
_ring = None  # the process's LogRing, once asked for
_feed = None  # the global publisher's observer feeding it, once added (feed_log_ring)


def log_ring():
    """The process's one L{wighaven.observe.recent.LogRing} (made on the first call)."""
    global _ring
    if _ring is None:
        from .recent import LogRing, process_ids  # recent imports this module

        with _ring_lock:
            if _ring is None:
                _ring = LogRing(ids=process_ids())
    return _ring


class _RingFeed:
    """The global publisher's observer of L{feed_log_ring}: the ring behind a LOG_LEVEL filter."""

    def __init__(self, ring, level: str):
        self.level = level
        self._observer = ring.filtered(level)
        self._ring = ring

    def set_level(self, level: str) -> None:
        if level != self.level:
            self.level = level
            self._observer = self._ring.filtered(level)

    def __call__(self, event) -> None:
        self._observer(event)


def feed_log_ring(level: str, publisher=None):
    """
    Feed L{log_ring} the events of C{publisher} (the global log publisher)
    that LOG_LEVEL C{level} lets through, for a process that logs through
    no observer of L{filtered_observer} with the ring (tests that build a
    GatewayService directly, twistd --syslog). One observer per process:
    a second call adds none, it only sets the level. Returns the ring.
    """
    global _feed
    ring = log_ring()
    with _ring_lock:
        if _feed is None:
            _feed = _RingFeed(ring, level)
            (publisher or globalLogPublisher).addObserver(_feed)
        else:
            _feed.set_level(level)
    return ring


def _both(observer, ring):
    """C{observer}, and C{ring} after it: a ring that fails never costs a line of the log."""

    def both(event) -> None:
        observer(event)
        try:
            ring(event)
        except Exception:  # logging about it would come back here
            pass

    return both


def filtered_observer(level: str, stream=None, log_format: str = "text", ring=None):
    """
    An observer writing lines (text or json) to C{stream} (stdout) at
    C{level} and above; with C{ring} (a LogRing: L{log_ring}), feeding it
    too, behind the same filter (one LOG_LEVEL test per event for both).
    """
    stream = stream or sys.stdout
    if log_format == "json":
        observer = FileLogObserver(stream, json_line)
    else:
        observer = textFileLogObserver(stream)
    if ring is not None:
        observer = _both(observer, ring)
    return FilteringLogObserver(observer, [level_predicate(level)])


def twistd_observer(twistd_options, level: str, log_format: str = "text", ring=None):
    """
    The observer twistd would have used (stdout with -n, else --logfile or
    twistd.log), behind the LOG_LEVEL filter, feeding C{ring} too when
    given; None when twistd logs to syslog, which is left to twistd (the
    ring is then for L{feed_log_ring}).
    """
    from twisted.python.logfile import LogFile

    options = twistd_options or {}
    if options.get("syslog"):
        return None
    logfile = options.get("logfile") or ("-" if options.get("nodaemon") else "twistd.log")
    stream = sys.stdout if logfile == "-" else LogFile.fromFullPath(logfile)
    return filtered_observer(level, stream, log_format, ring)


def give_observer_to_twistd(parent, observer) -> None:
    """
    Make C{observer} the one twistd logs with, when C{parent} is twistd's
    application (a service's parent with setComponent) and there is one.
    """
    if observer is not None and hasattr(parent, "setComponent"):
        from twisted.logger import ILogObserver

        parent.setComponent(ILogObserver, observer)

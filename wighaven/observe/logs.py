"""Logging: twisted.logger events, filtered by LOG_LEVEL.

Rule: the gateway logs through L{twisted.logger.Logger} objects only; the
level filter sits in front of the observer twistd writes with, so LOG_LEVEL
governs every line, Twisted's own included. LOG_FORMAT=json writes one JSON
object per line instead of text. Connection-level chatter of
Twisted's HTTP client factories is held to warnings. Headers are never
logged: the token and the clients' credentials live there.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)

__all__ = [
    "LEVELS", "filtered_observer", "give_observer_to_twistd", "json_line", "level_predicate",
    "twistd_observer",
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


def filtered_observer(level: str, stream=None, log_format: str = "text"):
    """An observer writing lines (text or json) to C{stream} (stdout) at C{level} and above."""
    stream = stream or sys.stdout
    if log_format == "json":
        observer = FileLogObserver(stream, json_line)
    else:
        observer = textFileLogObserver(stream)
    return FilteringLogObserver(observer, [level_predicate(level)])


def twistd_observer(twistd_options, level: str, log_format: str = "text"):
    """
    The observer twistd would have used (stdout with -n, else --logfile or
    twistd.log), behind the LOG_LEVEL filter; None when twistd logs to syslog,
    which is left to twistd.
    """
    from twisted.python.logfile import LogFile

    options = twistd_options or {}
    if options.get("syslog"):
        return None
    logfile = options.get("logfile") or ("-" if options.get("nodaemon") else "twistd.log")
    stream = sys.stdout if logfile == "-" else LogFile.fromFullPath(logfile)
    return filtered_observer(level, stream, log_format)


def give_observer_to_twistd(parent, observer) -> None:
    """
    Make C{observer} the one twistd logs with, when C{parent} is twistd's
    application (a service's parent with setComponent) and there is one.
    """
    if observer is not None and hasattr(parent, "setComponent"):
        from twisted.logger import ILogObserver

        parent.setComponent(ILogObserver, observer)

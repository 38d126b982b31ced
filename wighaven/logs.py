"""Logging: twisted.logger events, filtered by LOG_LEVEL.

Rule: the gateway logs through L{twisted.logger.Logger} objects only; the
level filter sits in front of the observer twistd writes with, so LOG_LEVEL
governs every line, Twisted's own included. Connection-level chatter of
Twisted's HTTP client factories is held to warnings. Headers are never
logged: the token and the clients' credentials live there.
"""

from __future__ import annotations

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    textFileLogObserver,
)

__all__ = ["LEVELS", "filtered_observer", "level_predicate"]

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


def filtered_observer(level: str, stream=None):
    """An observer writing text lines to C{stream} (stdout) at C{level} and above."""
    return FilteringLogObserver(
        textFileLogObserver(stream or sys.stdout), [level_predicate(level)]
    )


def twistd_observer(twistd_options, level: str):
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
    return filtered_observer(level, stream)

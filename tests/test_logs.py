"""Tests for L{wighaven.observe.logs}: the LOG_LEVEL predicate (events below the
level are dropped; Twisted's HTTP client factory chatter is held to
warnings), the filtered text observer, and the observer twistd is given
(stdout with -n, the --logfile path, twistd.log, none with --syslog).
"""

import io
import os
import sys

from twisted.logger import (
    LogLevel,
    Logger,
    PredicateResult,
    globalLogPublisher,
)
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import _HTTP11ClientFactory

from wighaven.observe.logs import LEVELS, filtered_observer, level_predicate, twistd_observer

ORDER = ["debug", "info", "warn", "error"]
CLIENT_FACTORY = "twisted.web.client._HTTP11ClientFactory"


def event(level, namespace="wighaven.test"):
    return {"log_level": level, "log_namespace": namespace}


def emit_each_level(observer, namespace="wighaven.test"):
    """Log one line per level ("line-debug", "line-info"...) to C{observer}."""
    log = Logger(namespace=namespace, observer=observer)
    for name in ORDER:
        log.emit(LEVELS[name], "line-" + name)


class LevelPredicateTests(SynchronousTestCase):
    def test_filters_below_level(self):
        for threshold in ORDER:
            predicate = level_predicate(threshold)
            for name in ORDER:
                expected = (
                    PredicateResult.no
                    if ORDER.index(name) < ORDER.index(threshold)
                    else PredicateResult.maybe
                )
                self.assertEqual(predicate(event(LEVELS[name])), expected, (threshold, name))

    def test_client_factory_held_to_warn(self):
        for threshold in ORDER:
            predicate = level_predicate(threshold)
            for name in ORDER:
                passes = ORDER.index(name) >= max(ORDER.index(threshold), ORDER.index("warn"))
                self.assertEqual(
                    predicate(event(LEVELS[name], CLIENT_FACTORY)),
                    PredicateResult.maybe if passes else PredicateResult.no,
                    (threshold, name),
                )

    def test_real_client_factory_chatter_dropped(self):
        """The 'Starting factory' lines of the pool's factories never pass."""
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        factory = _HTTP11ClientFactory(lambda connection: None, "key")
        factory.doStart()
        factory.doStop()
        mine = [e for e in events if e.get("log_namespace") == CLIENT_FACTORY]
        self.assertEqual(len(mine), 2)
        predicate = level_predicate("debug")
        for e in mine:
            self.assertEqual(predicate(e), PredicateResult.no)

    def test_levels(self):
        self.assertEqual(
            LEVELS,
            {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
             "error": LogLevel.error},
        )


class FilteredObserverTests(SynchronousTestCase):
    def test_writes_level_and_above(self):
        stream = io.StringIO()
        emit_each_level(filtered_observer("warn", stream))
        text = stream.getvalue()
        self.assertNotIn("line-debug", text)
        self.assertNotIn("line-info", text)
        self.assertIn("line-warn", text)
        self.assertIn("line-error", text)
        self.assertEqual(text.count("\n"), 2)

    def test_default_stream_is_stdout(self):
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        emit_each_level(filtered_observer("error"))
        self.assertEqual(stdout.getvalue().count("line-"), 1)
        self.assertIn("line-error", stdout.getvalue())


class TwistdObserverTests(SynchronousTestCase):
    def setUp(self):
        # Record every LogFile opened so that it is closed after the test.
        opened = []
        original = LogFile.fromFullPath

        def from_full_path(path, *args, **kwargs):
            logfile = original(path, *args, **kwargs)
            opened.append(logfile)
            self.addCleanup(logfile.close)
            return logfile

        self.patch(LogFile, "fromFullPath", from_full_path)
        self.opened = opened

    def read(self, path):
        with open(path) as f:
            return f.read()

    def test_syslog_left_to_twistd(self):
        self.assertIsNone(twistd_observer({"syslog": True, "logfile": "x.log"}, "info"))
        self.assertEqual(self.opened, [])

    def test_logfile_path(self):
        path = os.path.abspath(self.mktemp())
        observer = twistd_observer({"logfile": path, "nodaemon": True}, "info")
        emit_each_level(observer)
        text = self.read(path)
        self.assertNotIn("line-debug", text)
        for name in ("info", "warn", "error"):
            self.assertIn("line-" + name, text)

    def test_nodaemon_writes_stdout(self):
        stdout = io.StringIO()
        self.patch(sys, "stdout", stdout)
        for options in ({"nodaemon": True}, {"nodaemon": True, "logfile": "-"}, {"logfile": "-"}):
            stdout.truncate(0)
            stdout.seek(0)
            emit_each_level(twistd_observer(options, "warn"))
            self.assertEqual(stdout.getvalue().count("line-"), 2, options)
        self.assertEqual(self.opened, [])

    def test_default_twistd_log(self):
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory)
        for options in (None, {}):
            emit_each_level(twistd_observer(options, "error"))
        text = self.read(os.path.join(directory, "twistd.log"))
        self.assertEqual(text.count("line-error"), 2)
        self.assertNotIn("line-warn", text)

"""Tests for L{wighaven.run.drain.Drain}'s closing words: a drain that finished
says so, one that had to cut says how many exchanges it cut."""

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from wighaven.run.drain import Drain


class Stats:
    draining = False
    in_flight = 0


class Transport:
    aborted = False

    def abortConnection(self):
        self.aborted = True


class Channel:
    def __init__(self):
        self.transport = Transport()

    def close_if_idle(self):
        return False


class Site:
    def __init__(self, channels):
        self.channels = set(channels)


class DrainLogTests(SynchronousTestCase):
    def drain(self, in_flight, channels=()):
        stats = Stats()
        stats.in_flight = in_flight
        clock = Clock()
        with capturedLogs() as events:
            done = Drain(Site(channels), stats, clock, timeout=1.0).run(lambda: None)
            clock.pump([0.05] * 30)
        self.assertTrue(done.called)
        return [e for e in events if e.get("log_namespace", "").startswith("wighaven.run.drain")]

    def test_clean_drain_says_it_finished(self):
        events = self.drain(0, [Channel()])
        last = events[-1]
        self.assertEqual(last["log_level"], LogLevel.info)
        self.assertIn("drain finished", last["log_format"])
        self.assertFalse(any("cutting" in e["log_format"] for e in events))

    def test_timed_out_drain_says_what_it_cut(self):
        channel = Channel()
        events = self.drain(2, [channel])
        last = events[-1]
        self.assertEqual(last["log_level"], LogLevel.warn)
        self.assertIn("cutting", last["log_format"])
        self.assertEqual(last["in_flight"], 2)
        self.assertTrue(channel.transport.aborted)

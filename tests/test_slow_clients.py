"""Tests for L{wighaven.proxy.slow_clients}: a response paused by its client for
SLOW_CLIENT_GRACE gives its in-flight place back, once; shorter pauses
change nothing; the sweep runs only while a response that has paused lasts."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.proxy.slow_clients import PacedProducer, SlowClients

from tests.support.fakes import RecordingProducer


class SlowClientsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.slow = SlowClients(self.clock, grace=2.0)
        self.upstream = RecordingProducer()
        self.released = []
        self.producer = PacedProducer(self.upstream, self.slow, lambda: self.released.append(1))

    def test_pauses_reach_the_backend_connection(self):
        self.producer.pauseProducing()
        self.producer.resumeProducing()
        self.producer.stopProducing()
        self.assertEqual(self.upstream.calls, ["pause", "resume", "stop"])

    def test_short_pauses_keep_the_place(self):
        for _ in range(10):
            self.producer.pauseProducing()
            self.clock.advance(1.5)
            self.producer.resumeProducing()
            self.clock.advance(1.0)
        self.assertEqual(self.released, [])

    def test_long_pause_gives_the_place_back_once(self):
        self.producer.pauseProducing()
        self.clock.advance(1.9)
        self.assertEqual(self.released, [])
        for _ in range(4):
            self.clock.advance(0.5)
        self.assertEqual(self.released, [1])
        self.assertEqual(self.slow.released, 1)

    def test_sweep_only_from_a_first_pause_to_the_end(self):
        """A response that never pauses costs no timer; one that paused is
        swept until its body is done, then no timer is left."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.producer.pauseProducing()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.producer.resumeProducing()
        self.clock.advance(1.0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.producer.done()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.released, [])

    def test_stop_ends_the_sweep(self):
        """The service stops it: no timer outlives the gateway."""
        self.producer.pauseProducing()
        self.slow.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.producer.pauseProducing()  # a later pause sweeps again
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_finished_body_is_forgotten(self):
        self.producer.pauseProducing()
        self.producer.done()
        self.clock.advance(10)
        self.assertEqual(self.released, [])

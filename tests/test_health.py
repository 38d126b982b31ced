"""Passive health (wighaven.routing.health): ejection after 3 consecutive
failures, backoff doubling to a cap, back on the first success."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.routing.health import PassiveHealth


class PassiveHealthTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.health = PassiveHealth(self.clock)

    def fail(self, times=1):
        for _ in range(times):
            self.health.failed("connect refused")

    def test_three_consecutive_failures_eject_for_ten_seconds(self):
        self.fail(2)
        self.assertTrue(self.health.available())
        self.fail()
        self.assertFalse(self.health.available())
        self.assertEqual(self.health.state, "ejected")
        self.assertEqual(self.health.ejected_until, 10.0)
        self.clock.advance(9.9)
        self.assertFalse(self.health.available())
        self.clock.advance(0.1)
        self.assertTrue(self.health.available())

    def test_a_success_between_failures_resets_the_count(self):
        self.fail(2)
        self.health.succeeded()
        self.fail(2)
        self.assertTrue(self.health.available())

    def test_failing_again_doubles_up_to_five_minutes(self):
        self.fail(3)
        durations = []
        for _ in range(8):
            start = self.clock.seconds()
            durations.append(self.health.ejected_until - start)
            self.clock.advance(self.health.ejected_until - start)
            self.fail()  # back, and failing at once: out again
        self.assertEqual(durations, [10, 20, 40, 80, 160, 300, 300, 300])

    def test_a_success_clears_the_backoff(self):
        self.fail(3)
        self.clock.advance(10)
        self.fail()  # 20 s
        self.clock.advance(20)
        self.health.succeeded()
        self.assertIsNone(self.health.ejected_until)
        self.fail(2)
        self.assertTrue(self.health.available())
        self.fail()
        self.assertEqual(self.health.ejected_until - self.clock.seconds(), 10)

    def test_failures_while_ejected_do_not_extend_it(self):
        """Panic mode sends requests to ejected upstreams; their failures change nothing."""
        self.fail(3)
        self.fail(5)
        self.assertEqual(self.health.ejected_until, 10.0)
        self.clock.advance(10)
        self.assertTrue(self.health.available())

    def test_answers(self):
        for status in (502, 503, 504):
            self.health.answered(status)
        self.assertFalse(self.health.available())
        self.assertEqual(self.health.last_error, "answered 504")
        self.clock.advance(10)
        self.health.answered(500)  # the app answered: the upstream is up
        self.assertIsNone(self.health.ejected_until)
        for status in (200, 404, 500, 503, 503):
            self.health.answered(status)
        self.assertTrue(self.health.available())

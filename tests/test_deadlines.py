"""Tests for L{wighaven.proxy.deadlines}: many timeouts, one sweep, on a task.Clock."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.proxy.deadlines import RESOLUTION, Deadlines


class Owner:
    """Notes when its deadline passed."""

    def __init__(self, clock, deadline=None):
        self.clock = clock
        self.deadline = deadline
        self.passed = []

    def deadline_passed(self):
        self.passed.append(self.clock.seconds())


class DeadlinesTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.deadlines = Deadlines(self.clock)

    def step_to(self, when, step=0.1):
        """Move the clock to C{when} the way a running reactor would: in small steps."""
        while self.clock.seconds() < when - 1e-9:
            self.clock.advance(min(step, when - self.clock.seconds()))

    def test_never_before_and_within_one_resolution_after(self):
        owners = [Owner(self.clock, when) for when in (0.5, 2.0, 2.01, 7.3)]
        for owner in owners:
            self.deadlines.watch(owner)
        self.step_to(10)
        for owner, due in zip(owners, (0.5, 2.0, 2.01, 7.3)):
            [fired] = owner.passed
            self.assertGreaterEqual(fired, due)
            self.assertLessEqual(fired, due + RESOLUTION + 1e-9)
            self.assertIsNone(owner.deadline)  # cleared before the call: once only

    def test_a_deadline_moved_later_is_kept_to(self):
        owner = Owner(self.clock, 1.0)
        self.deadlines.watch(owner)
        self.step_to(0.9)
        owner.deadline = 5.0  # activity: the timeout starts again
        self.step_to(4.9)
        self.assertEqual(owner.passed, [])
        self.step_to(6.1)
        self.assertEqual(len(owner.passed), 1)

    def test_no_deadline_no_call(self):
        owner = Owner(self.clock)
        self.deadlines.watch(owner)
        self.step_to(5)
        self.assertEqual(owner.passed, [])

    def test_the_sweep_runs_only_while_someone_is_watched(self):
        self.assertEqual(self.clock.getDelayedCalls(), [])
        first, second = Owner(self.clock), Owner(self.clock)
        self.deadlines.watch(first)
        self.deadlines.watch(second)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # one timer, whatever the number
        self.deadlines.forget(first)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.deadlines.forget(second)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.deadlines.forget(second)  # forgetting twice does nothing
        self.assertEqual(len(self.deadlines), 0)

    def test_a_forgotten_owner_is_not_called(self):
        owner = Owner(self.clock, 1.0)
        self.deadlines.watch(owner)
        self.deadlines.forget(owner)
        self.step_to(3)
        self.assertEqual(owner.passed, [])

    def test_an_owner_may_set_a_new_deadline_or_leave_when_called(self):
        """A phase's end starts the next one; an owner that ends forgets itself."""
        deadlines = self.deadlines

        class Phases(Owner):
            def deadline_passed(self):
                super().deadline_passed()
                if len(self.passed) < 3:
                    self.deadline = self.clock.seconds() + 2
                else:
                    deadlines.forget(self)

        owner = Phases(self.clock, 1.0)
        deadlines.watch(owner)
        self.step_to(20)
        self.assertEqual(len(owner.passed), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_failing_owner_is_logged_and_the_others_served(self):
        class Failing(Owner):
            def deadline_passed(self):
                raise RuntimeError("boom")

        failing, fine = Failing(self.clock, 1.0), Owner(self.clock, 1.0)
        self.deadlines.watch(failing)
        self.deadlines.watch(fine)
        self.step_to(2.5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(fine.passed), 1)

    def test_stop(self):
        owner = Owner(self.clock, 1.0)
        self.deadlines.watch(owner)
        self.deadlines.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.step_to(3)
        self.assertEqual(owner.passed, [])

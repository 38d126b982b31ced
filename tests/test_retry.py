"""Retries (wighaven.routing.retry): which failures may be retried, and the
budget of a fifth of the requests over 10 s."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.routing.retry import RetryBudget, may_retry


class MayRetryTests(SynchronousTestCase):
    def test_idempotent_bodiless_before_the_head_only(self):
        self.assertTrue(may_retry(b"GET", False, False, False, 0, 1))
        self.assertTrue(may_retry(b"HEAD", False, False, False, 0, 2))
        self.assertTrue(may_retry(b"OPTIONS", False, False, False, 1, 2))
        for method in (b"POST", b"PUT", b"DELETE", b"PATCH"):
            self.assertFalse(may_retry(method, False, False, False, 0, 1), method)
        self.assertFalse(may_retry(b"GET", True, False, False, 0, 1))  # a body
        self.assertFalse(may_retry(b"GET", False, True, False, 0, 1))  # the head came
        self.assertFalse(may_retry(b"GET", False, False, True, 0, 1))  # the client got bytes
        self.assertFalse(may_retry(b"GET", False, False, False, 1, 1))  # retries spent
        self.assertFalse(may_retry(b"GET", False, False, False, 0, 0))  # none configured


class RetryBudgetTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.budget = RetryBudget(self.clock)

    def test_a_fifth_of_the_requests(self):
        for _ in range(100):
            self.budget.request()
        taken = sum(self.budget.take() for _ in range(50))
        self.assertEqual(taken, 20)

    def test_a_quiet_route_may_still_retry_three_times(self):
        """Enough to carry it over the 3 failures that eject a dead upstream."""
        self.budget.request()
        self.assertEqual([self.budget.take() for _ in range(4)], [True, True, True, False])

    def test_the_window_slides(self):
        for _ in range(50):
            self.budget.request()
        self.assertEqual(sum(self.budget.take() for _ in range(20)), 10)
        self.clock.advance(5)
        self.assertFalse(self.budget.take())  # still inside the 10 s
        for _ in range(50):
            self.budget.request()
        self.assertEqual(sum(self.budget.take() for _ in range(20)), 10)  # 100 requests, 20 retries
        self.clock.advance(5.5)  # the first second's 50 requests and 10 retries have left
        self.assertEqual(sum(self.budget.take() for _ in range(20)), 0)
        self.clock.advance(10)  # everything has left: only the minimum
        self.assertEqual(sum(self.budget.take() for _ in range(5)), 3)

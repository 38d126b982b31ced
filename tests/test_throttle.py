"""Login throttling (wighaven.auth.throttle) on a fake clock."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.auth.throttle import LoginThrottle


class ThrottleTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.throttle = LoginThrottle(self.clock)

    def fail(self, times, account="alice", address="203.0.113.7"):
        for _ in range(times):
            self.throttle.failed(account, address)

    def test_five_free_then_doubling_waits(self):
        self.fail(4)
        self.assertEqual(self.throttle.retry_after("alice", "203.0.113.7"), 0)
        self.fail(1)
        self.assertEqual(self.throttle.retry_after("alice", "203.0.113.7"), 1)
        waits = []
        for _ in range(5):
            self.fail(1)
            waits.append(self.throttle.retry_after("alice", "203.0.113.7"))
        self.assertEqual(waits, [2, 4, 8, 16, 32])
        self.clock.advance(32)
        self.assertEqual(self.throttle.retry_after("alice", "203.0.113.7"), 0)

    def test_capped_at_fifteen_minutes(self):
        self.fail(30)
        self.assertEqual(self.throttle.retry_after("alice", "198.51.100.1"), 900)

    def test_one_account_from_many_addresses(self):
        for i in range(10):
            self.throttle.failed("alice", "198.51.100.%d" % i)
        self.assertGreater(self.throttle.retry_after("alice", "192.0.2.1"), 0)
        self.assertEqual(self.throttle.retry_after("bob", "192.0.2.1"), 0)

    def test_many_accounts_from_one_address(self):
        for i in range(10):
            self.throttle.failed("user%d" % i, "203.0.113.7")
        self.assertGreater(self.throttle.retry_after("someone", "203.0.113.7"), 0)
        self.assertEqual(self.throttle.retry_after("someone", "192.0.2.1"), 0)

    def test_success_clears_the_account_not_the_address(self):
        self.fail(8)
        self.throttle.succeeded("alice")
        self.assertEqual(self.throttle.retry_after("alice", "192.0.2.1"), 0)
        self.assertGreater(self.throttle.retry_after("alice", "203.0.113.7"), 0)

    def test_quiet_keys_are_forgotten_and_memory_bounded(self):
        self.fail(8)
        self.clock.advance(1801)
        self.assertEqual(self.throttle.retry_after("alice", "203.0.113.7"), 0)
        self.assertEqual(len(self.throttle._failures), 0)  # both keys forgotten
        small = LoginThrottle(self.clock, max_entries=10)
        for i in range(100):
            small.failed("u%d" % i, "a%d" % i)
        self.assertEqual(len(small._failures), 10)

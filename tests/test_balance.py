"""Balancers (wighaven.routing.balance): smooth weighted round robin as
nginx's, power-of-two-choices least in flight, and panic when all are down."""

import collections
import random

from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.routes import Route, Upstream
from wighaven.routing.balance import LeastInFlight, SmoothWeightedRoundRobin, balancer_for


class SmoothWeightedRoundRobinTests(SynchronousTestCase):
    def test_nginx_sequence_for_5_1_1(self):
        rr = SmoothWeightedRoundRobin("abc", [5, 1, 1])
        self.assertEqual("".join(rr.pick() for _ in range(7)), "aabacaa")

    def test_each_window_gets_exactly_its_weights(self):
        rr = SmoothWeightedRoundRobin("abc", [3, 2, 1])
        for _ in range(10):
            window = collections.Counter(rr.pick() for _ in range(6))
            self.assertEqual(window, {"a": 3, "b": 2, "c": 1})

    def test_equal_weights_alternate(self):
        rr = SmoothWeightedRoundRobin("ab", [1, 1])
        self.assertEqual("".join(rr.pick() for _ in range(6)), "ababab")

    def test_unavailable_upstreams_are_skipped(self):
        rr = SmoothWeightedRoundRobin("abc", [1, 1, 1])
        picks = {rr.pick(lambda u: u != "b") for _ in range(30)}
        self.assertEqual(picks, {"a", "c"})

    def test_panic_when_none_is_available(self):
        rr = SmoothWeightedRoundRobin("ab", [1, 1])
        self.assertEqual(sorted(rr.pick(lambda u: False) for _ in range(4)), list("aabb"))

    def test_one_weight_per_upstream(self):
        self.assertRaises(ValueError, SmoothWeightedRoundRobin, "ab", [1])
        self.assertRaises(ValueError, SmoothWeightedRoundRobin, "", [])


class LeastInFlightTests(SynchronousTestCase):
    def test_the_less_loaded_of_two_wins(self):
        load = {"a": 5, "b": 0}
        lif = LeastInFlight("ab", [1, 1], load.get, random.Random(1))
        self.assertEqual({lif.pick() for _ in range(20)}, {"b"})

    def test_weights_scale_the_load(self):
        load = {"a": 4, "b": 3}
        lif = LeastInFlight("ab", [4, 1], load.get, random.Random(1))
        self.assertEqual({lif.pick() for _ in range(20)}, {"a"})  # 1 per weight against 3

    def test_ties_are_broken_at_random(self):
        lif = LeastInFlight("abcd", [1] * 4, lambda u: 0, random.Random(7))
        counts = collections.Counter(lif.pick() for _ in range(4000))
        self.assertEqual(set(counts), set("abcd"))
        self.assertTrue(all(800 < n < 1200 for n in counts.values()), counts)

    def test_spreads_a_steady_load(self):
        """Requests that stay in flight end up spread evenly over four upstreams."""
        load = collections.Counter()
        lif = LeastInFlight("abcd", [1] * 4, load.__getitem__, random.Random(3))
        for _ in range(400):
            load[lif.pick()] += 1
        self.assertLessEqual(max(load.values()) - min(load.values()), 3, load)

    def test_skips_the_unavailable_and_panics_when_none_is(self):
        lif = LeastInFlight("abc", [1] * 3, lambda u: 0, random.Random(5))
        self.assertEqual({lif.pick(lambda u: u == "c") for _ in range(10)}, {"c"})
        self.assertEqual({lif.pick(lambda u: False) for _ in range(60)}, set("abc"))


class BalancerForTests(SynchronousTestCase):
    def route(self, balance):
        upstreams = tuple(Upstream(url="https://%s.example" % n, scheme="https",
                                   host="%s.example" % n, port=443, weight=w)
                          for n, w in (("a", 2), ("b", 1)))
        return Route(name="r", upstreams=upstreams, balance=balance)

    def test_round_robin_uses_the_weights(self):
        route = self.route("round_robin")
        balancer = balancer_for(route.balance, route.upstreams, [2, 1], lambda u: 0)
        picks = [balancer.pick().host for _ in range(3)]
        self.assertEqual(collections.Counter(picks), {"a.example": 2, "b.example": 1})

    def test_least_in_flight(self):
        route = self.route("least_in_flight")
        busy = route.upstreams[0]
        balancer = balancer_for(route.balance, route.upstreams, [2, 1],
                                lambda u: 10 if u is busy else 0, random.Random(2))
        self.assertIsInstance(balancer, LeastInFlight)
        self.assertEqual({balancer.pick().host for _ in range(10)}, {"b.example"})

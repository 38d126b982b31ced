"""The service's start-up chores that are not about HTTP."""

import resource

from twisted.trial.unittest import SynchronousTestCase

from wighaven.run import service


class FakeLimits:
    """Stands in for the resource module's RLIMIT_NOFILE calls."""

    RLIMIT_NOFILE = resource.RLIMIT_NOFILE
    RLIM_INFINITY = resource.RLIM_INFINITY

    def __init__(self, soft, hard, refuse=False):
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which):
        return self.limits

    def setrlimit(self, which, limits):
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


class OpenFilesLimitTests(SynchronousTestCase):
    def raise_with(self, soft, hard, **kwargs):
        fake = FakeLimits(soft, hard, **kwargs)
        self.patch(service, "resource", fake)
        return service.raise_open_files_limit(), fake.limits

    def test_soft_raised_to_hard(self):
        self.assertEqual(self.raise_with(1024, 65536), (65536, (65536, 65536)))

    def test_unlimited_hard_capped(self):
        got, limits = self.raise_with(1024, resource.RLIM_INFINITY)
        self.assertEqual(got, 1 << 20)
        self.assertEqual(limits, (1 << 20, resource.RLIM_INFINITY))

    def test_already_high_left_alone(self):
        self.assertEqual(self.raise_with(65536, 65536), (65536, (65536, 65536)))

    def test_refused_keeps_the_old_limit(self):
        self.assertEqual(self.raise_with(1024, 4096, refuse=True), (1024, (1024, 4096)))



class FakeGC:
    """Records what the service asks of the gc module."""

    def __init__(self):
        self.calls = []

    def collect(self):
        self.calls.append("collect")

    def freeze(self):
        self.calls.append("freeze")

    def set_threshold(self, *thresholds):
        self.calls.append(("set_threshold", thresholds))


class GarbageCollectorTests(SynchronousTestCase):
    def test_startup_objects_collected_then_frozen_thresholds_left_alone(self):
        fake = FakeGC()
        self.patch(service, "gc", fake)
        service.freeze_startup_objects()
        self.assertEqual(fake.calls, ["collect", "freeze"])

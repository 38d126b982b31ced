"""Waiting on the reactor for something to become true."""

import time

from twisted.internet import defer, reactor, task


def wait_until(predicate, timeout=5.0, step=0.02):
    """Poll C{predicate} on the reactor; fires with seconds waited, or fails."""
    start = time.monotonic()

    def check():
        if predicate():
            return defer.succeed(time.monotonic() - start)
        if time.monotonic() - start > timeout:
            return defer.fail(AssertionError("condition not met in %.1fs" % timeout))
        return task.deferLater(reactor, step, check)

    return check()

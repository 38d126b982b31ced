"""Tests for L{wighaven.run.dispatch}: a fresh EPollReactor (never run) polled by
hand over real socket pairs."""

import socket

from twisted.internet import epollreactor
from twisted.internet.abstract import FileDescriptor
from twisted.trial.unittest import SynchronousTestCase

from wighaven.run.dispatch import lean_poll


class Reader(FileDescriptor):
    """A reader over one end of a socket pair that notes what it read."""

    def __init__(self, reactor, sock, fail=False):
        super().__init__(reactor)
        self.socket = sock
        self.fail = fail
        self.read = []
        self.lost = []

    def fileno(self):
        return self.socket.fileno()

    def doRead(self):
        self.read.append(self.socket.recv(100))
        if self.fail:
            raise RuntimeError("handler failed")

    def connectionLost(self, reason):
        self.lost.append(reason)


class LeanPollTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = epollreactor.EPollReactor()
        self.addCleanup(self.reactor._poller.close)

    def pair(self, fail=False):
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)
        reader = Reader(self.reactor, ours, fail)
        self.reactor.addReader(reader)
        self.addCleanup(self.reactor.removeReader, reader)
        return reader, theirs

    def test_ready_descriptors_are_handled(self):
        self.assertTrue(lean_poll(self.reactor))
        first, first_peer = self.pair()
        second, second_peer = self.pair()
        first_peer.send(b"one")
        second_peer.send(b"two")
        self.reactor.doIteration(0)
        self.assertEqual((first.read, second.read), ([b"one"], [b"two"]))
        self.reactor.doIteration(0)  # nothing more is ready
        self.assertEqual((first.read, second.read), ([b"one"], [b"two"]))

    def test_a_failing_handler_loses_its_connection_and_the_rest_go_on(self):
        """As the stock loop: the reactor's _doReadOrWrite closes the failed
        connection (its error is logged); the other descriptors are served."""
        lean_poll(self.reactor)
        failing, failing_peer = self.pair(fail=True)
        fine, fine_peer = self.pair()
        failing_peer.send(b"x")
        fine_peer.send(b"y")
        self.reactor.doIteration(0)
        self.assertEqual(fine.read, [b"y"])
        self.assertEqual(len(failing.lost), 1)
        self.flushLoggedErrors(RuntimeError)

    def test_other_reactors_left_as_they_are(self):
        from twisted.internet.testing import MemoryReactorClock

        other = MemoryReactorClock()
        self.assertFalse(lean_poll(other))
        self.assertNotIn("doIteration", vars(other))

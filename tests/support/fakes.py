"""Small fakes shared by unit tests."""

from twisted.internet.defer import succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from zope.interface import implementer


@implementer(IPushProducer)
class RecordingProducer:
    """An IPushProducer that records the calls it gets, in order."""

    def __init__(self):
        self.calls = []

    def pauseProducing(self):
        self.calls.append("pause")

    def resumeProducing(self):
        self.calls.append("resume")

    def stopProducing(self):
        self.calls.append("stop")


class CollectingProtocol(Protocol):
    """A protocol that keeps what it receives (C{received}) and its end (C{lost})."""

    def __init__(self):
        self.received = []
        self.lost = []

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.lost.append(reason)


class Connecting:
    """An endpoint whose connections are UpstreamProtocols over
    StringTransports, kept in C{connections}."""

    def __init__(self):
        self.connections = []

    def connect(self, factory):
        connection = factory.buildProtocol(None)
        connection.makeConnection(StringTransport())
        self.connections.append(connection)
        return succeed(connection)

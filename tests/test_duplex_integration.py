"""Full duplex through the gateway, over real sockets: a backend that sends
its response head and streams an echo while it still reads the upload gets
them to the client while the client is still uploading (a streaming API
must not make its client wait for the end of the upload, nor until
UPSTREAM_TIMEOUT)."""

import http.client

from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from tests.support.gateway import start_gateway
from tests.test_upstream_protocol import DuplexFactory, pattern


def _upload_while_reading(port, first, rest):
    """
    POST C{first}, read the response head and C{len(first)} echoed bytes
    before sending C{rest}, then read the rest of the echo. A response that
    waits for the whole upload times the read out (socket.timeout).
    Returns (status, the echo before the rest was sent, the whole echo).
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("POST", "/stream")
        conn.putheader("Content-Length", str(len(first) + len(rest)))
        conn.endheaders()
        conn.send(first)
        response = conn.getresponse()
        early = response.read(len(first))
        conn.send(rest)
        return response.status, early, early + response.read()
    finally:
        conn.close()


class FullDuplexTests(unittest.TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_head_and_echo_reach_the_client_while_it_uploads(self):
        factory = DuplexFactory()
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        # Runs after the gateway's own cleanup: its upstream connection may
        # still be open on this side.
        self.addCleanup(lambda: [c.transport.abortConnection() for c in list(factory.connections)])
        _, gw_port = yield start_gateway(
            self, "http://127.0.0.1:%d" % port.getHost().port, BACKEND_CA_BUNDLE=None,
            UPSTREAM_TIMEOUT="20",
        )
        first, rest = pattern(1000), pattern(50_000)  # under one write buffer: never paused
        status, early, echo = yield deferToThread(_upload_while_reading, gw_port, first, rest)
        self.assertEqual(status, 200)
        self.assertEqual(early, first)
        self.assertEqual(echo, first + rest)

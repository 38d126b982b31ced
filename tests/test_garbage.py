"""A forwarded exchange is freed by reference counting alone.

Why it matters: an object graph kept alive only by a reference cycle waits
for the cyclic garbage collector, whose collections then run every few
dozen requests and walk whatever is alive. Each forwarded request used to
leave such a graph (request, relay, exchange, paced producer: 31 objects):
397 young collections per 10,000 requests, against 25 without. These tests drive the whole
forwarding path (site, channel, forwarding resource, BackendAgent,
UpstreamProtocol, pool) over StringTransports with the collector off, and
count what only the collector could free.
"""

import gc

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.settings import load_config
from wighaven.run.service import build_site
from wighaven.proxy.tls import BackendTLSPolicy
from wighaven.proxy.upstream import BackendAgent
from wighaven.proxy.upstream_protocol import upstream_pool

from .support.fakes import Connecting

OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
      b"Connection: keep-alive\r\n\r\nhello")


class ForwardedExchangeGarbageTests(SynchronousTestCase):
    def setUp(self):
        self.clock = MemoryReactorClock()
        config = load_config({"PRIVATE_BACKEND_URL": "http://backend", "HF_TOKEN": "hf_x",
                              "LOG_LEVEL": "warn"})
        pool = upstream_pool(self.clock)
        agent = BackendAgent(self.clock, b"http://backend", pool, BackendTLSPolicy())
        self.backend = agent.endpoint = Connecting()
        self.site = build_site(config, agent, self.clock)
        self.addCleanup(self.site.stop_timers)
        if gc.isenabled():
            gc.disable()
            self.addCleanup(gc.enable)

    def connect(self):
        address = IPv4Address("TCP", "127.0.0.1", 7860)
        channel = self.site.buildProtocol(address)
        client = StringTransport(hostAddress=address,
                                 peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        channel.makeConnection(client)
        return channel, client

    def lose(self, channel, client):
        """The client's connection is lost, as Twisted's TCP transport loses it
        (which also lets go of its producer, the channel)."""
        client.loseConnection()
        channel.connectionLost(Failure(ConnectionDone()))
        client.unregisterProducer()

    def assertNoCycles(self, exchange, times=20):
        """Run C{exchange} C{times} times (after one warm-up): nothing left for gc."""
        exchange()
        gc.collect()
        for _ in range(times):
            exchange()
        self.assertEqual(gc.collect(), 0)

    def test_a_kept_alive_get(self):
        channel, client = self.connect()

        def exchange():
            channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
            self.backend.connections[-1].dataReceived(OK)
            self.clock.advance(0)
            self.assertTrue(client.value().endswith(b"hello"))
            client.clear()

        self.assertNoCycles(exchange)
        self.assertEqual(len(self.backend.connections), 1)  # reused throughout

    def test_an_upload(self):
        channel, client = self.connect()

        def exchange():
            channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 4\r\n\r\n")
            channel.dataReceived(b"body")
            self.clock.advance(0)
            self.backend.connections[-1].dataReceived(OK)
            self.clock.advance(0)
            self.assertTrue(client.value().endswith(b"hello"))
            client.clear()

        self.assertNoCycles(exchange)

    def test_a_backend_that_fails_before_the_head(self):
        def exchange():
            channel, client = self.connect()
            channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n")
            self.clock.advance(0)
            self.backend.connections[-1].dataReceived(b"HTTP/1.1 nonsense\r\n\r\n")
            self.clock.advance(0)
            self.assertIn(b" 502 ", client.value())
            self.lose(channel, client)

        self.assertNoCycles(exchange)

    def test_a_client_that_leaves_mid_body(self):
        def exchange():
            channel, client = self.connect()
            channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: gw\r\n\r\n")
            self.clock.advance(0)
            self.backend.connections[-1].dataReceived(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            self.clock.advance(0)
            self.lose(channel, client)
            self.clock.advance(0)

        self.assertNoCycles(exchange)

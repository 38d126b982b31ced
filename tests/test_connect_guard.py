"""The forgery check at connect time: a stored route's name that rebinds to a
refused address is not connected to; the config file's routes are not guarded.

Unit tests of the resolver's filter, then a gateway in this process (AUTH on,
real sockets) whose reactor's name resolver answers for a test name as a
rebinding DNS server would: accepted when the route was added, 0.0.0.0 when
connecting (which Linux connects to the local backend: unguarded, the
request would reach it).
"""

from __future__ import annotations

import json

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial import unittest
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from wighaven.routing.connect_guard import GuardedNameResolver, GuardedReactor
from wighaven.routing.upstream_guard import UpstreamPolicy, address_refusal

from tests.support.backend import start_backend
from tests.test_auth_integration import ADMIN_PASSWORD, AuthGateway

API = "/_gateway/api/v1"


@implementer(IHostnameResolver)
class AnsweringResolver:
    """Answers C{answers[name]} (a list of IP addresses) and hands other names to C{fallback}."""

    def __init__(self, answers, fallback=None):
        self.answers = answers
        self.fallback = fallback
        self.asked = []

    def resolveHostName(self, receiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        self.asked.append(hostName)
        if hostName not in self.answers and self.fallback is not None:
            return self.fallback.resolveHostName(receiver, hostName, portNumber, addressTypes,
                                                 transportSemantics)
        receiver.resolutionBegan(None)
        for address in self.answers.get(hostName, ()):
            kind = IPv6Address if ":" in address else IPv4Address
            receiver.addressResolved(kind("TCP", address, portNumber))
        receiver.resolutionComplete()
        return None


@implementer(IResolutionReceiver)
class Receiver:
    def __init__(self):
        self.addresses = []
        self.complete = False

    def resolutionBegan(self, resolution):
        pass

    def addressResolved(self, address):
        self.addresses.append(address.host)

    def resolutionComplete(self):
        self.complete = True


class GuardedNameResolverTests(SynchronousTestCase):

    def resolve(self, policy, addresses, clock=None, name="space.example"):
        resolver = GuardedNameResolver(AnsweringResolver({name: addresses}), policy,
                                       clock or Clock())
        receiver = Receiver()
        resolver.resolveHostName(receiver, name, 443)
        self.assertTrue(receiver.complete)
        return receiver.addresses

    def test_only_public_addresses_pass(self):
        with capturedLogs() as events:
            passed = self.resolve(UpstreamPolicy(), [
                "93.184.216.34", "127.0.0.1", "10.0.0.1", "169.254.169.254", "0.0.0.0",
                "100.64.0.1", "151.101.1.1"])
        self.assertEqual(passed, ["93.184.216.34", "151.101.1.1"])
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)  # once per host and minute
        self.assertEqual(warnings[0]["host"], "space.example")
        self.assertEqual(warnings[0]["address"], "127.0.0.1")

    def test_with_private_upstreams_allowed_the_never_backends_are_still_refused(self):
        passed = self.resolve(UpstreamPolicy(allow_private=True), [
            "127.0.0.1", "10.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1",
            "255.255.255.255", "192.168.1.2"])
        self.assertEqual(passed, ["127.0.0.1", "10.0.0.1", "192.168.1.2"])

    def test_warnings_are_spaced_per_host(self):
        clock = Clock()
        resolver = GuardedNameResolver(AnsweringResolver({"a": ["127.0.0.1"], "b": ["10.1.1.1"]}),
                                       UpstreamPolicy(), clock)
        with capturedLogs() as events:
            for name in ("a", "a", "b"):
                resolver.resolveHostName(Receiver(), name, 443)
            clock.advance(61)
            resolver.resolveHostName(Receiver(), "a", 443)
        self.assertEqual([e["host"] for e in events if e.get("log_level") == LogLevel.warn],
                         ["a", "b", "a"])

    def test_the_rule_is_the_one_applied_when_the_url_was_accepted(self):
        checked = 0
        for ip in ("127.0.0.1", "169.254.169.254", "93.184.216.34", "10.1.2.3", "::1",
                   "::ffff:127.0.0.1", "2606:4700::1111", "fd00:ec2::254"):
            for policy in (UpstreamPolicy(), UpstreamPolicy(allow_private=True)):
                passed = self.resolve(policy, [ip])
                self.assertEqual(passed == [ip], address_refusal(ip, policy) is None, (ip, policy))
                checked += 1
        self.assertEqual(checked, 16)
        # Both outcomes occur: the comparison above is not vacuous.
        self.assertEqual(self.resolve(UpstreamPolicy(), ["2606:4700::1111", "::1"]),
                         ["2606:4700::1111"])

    def test_the_guarded_reactor_keeps_the_rest_of_the_reactor(self):
        guarded = GuardedReactor(reactor, UpstreamPolicy())
        self.assertIsInstance(guarded.nameResolver, GuardedNameResolver)
        self.assertEqual(guarded.callLater, reactor.callLater)
        from twisted.internet.interfaces import IReactorPluggableNameResolver, IReactorTCP
        self.assertTrue(IReactorPluggableNameResolver.providedBy(guarded))
        self.assertTrue(IReactorTCP.providedBy(guarded))


class RebindingTests(unittest.TestCase):
    """A stored route to a name that rebinds, through a real gateway."""

    timeout = 60
    name = "rebind.wighaven.test"

    @defer.inlineCallbacks
    def setUp(self):
        self.backend, _, origin = yield start_backend(self, tls=False)
        self.backend_port = int(origin.rsplit(":", 1)[1])
        self.resolver = AnsweringResolver({}, fallback=reactor.nameResolver)
        previous = reactor.installNameResolver(self.resolver)
        self.addCleanup(reactor.installNameResolver, previous)
        # ALLOW_PRIVATE_UPSTREAMS: the name is not resolved when the route is added
        # (it resolves nowhere here), and 0.0.0.0 stays refused.
        self.gateway = yield AuthGateway(self, origin, ALLOW_PRIVATE_UPSTREAMS="true",
                                         ALLOW_HTTP_UPSTREAMS="true").start()
        reply = yield self.gateway.token("admin", ADMIN_PASSWORD)
        self.admin = {"Authorization": "Bearer " + reply.json()["access_token"],
                      "Content-Type": "application/json"}

    @defer.inlineCallbacks
    def add_route(self, name, **more):
        body = {"name": name, "path": "/" + name,
                "upstreams": [{"url": "http://%s:%d" % (self.name, self.backend_port)}]}
        body.update(more)
        reply = yield self.gateway.fetch("POST", API + "/routes", self.admin,
                                         json.dumps(body).encode())
        self.assertEqual(reply.status, 201, reply.body)

    @defer.inlineCallbacks
    def test_a_name_that_rebinds_to_a_refused_address_is_not_connected_to(self):
        yield self.add_route("rebound")
        self.resolver.answers[self.name] = ["0.0.0.0"]  # Linux connects that to 127.0.0.1
        with capturedLogs() as events:
            reply = yield self.gateway.fetch("GET", "/rebound/echo", self.admin)
        self.assertEqual(reply.status, 502, reply.body)
        self.assertIn(self.name, self.resolver.asked)
        warned = [e for e in events if e.get("log_level") == LogLevel.warn
                  and e.get("address") == "0.0.0.0"]
        self.assertEqual(len(warned), 1, events)
        # The same name answering a loopback address too: that one is used.
        self.resolver.answers[self.name] = ["0.0.0.0", "127.0.0.1"]
        reply = yield self.gateway.fetch("GET", "/rebound/echo", self.admin)
        self.assertEqual(reply.status, 200, reply.body)

    @defer.inlineCallbacks
    def test_test_connection_is_guarded_too(self):
        self.resolver.answers[self.name] = ["0.0.0.0"]
        reply = yield self.gateway.fetch("POST", API + "/upstreams/test", self.admin, json.dumps(
            {"url": "http://%s:%d" % (self.name, self.backend_port)}).encode())
        self.assertEqual(reply.status, 200, reply.body)
        self.assertEqual(reply.json()["ok"], False)
        self.assertIsNone(reply.json()["status"])
        self.resolver.answers[self.name] = ["127.0.0.1"]
        reply = yield self.gateway.fetch("POST", API + "/upstreams/test", self.admin, json.dumps(
            {"url": "http://%s:%d" % (self.name, self.backend_port)}).encode())
        self.assertEqual(reply.json()["ok"], True, reply.body)

    @defer.inlineCallbacks
    def test_its_health_probes_are_guarded_too(self):
        from tests.support.waiting import wait_until

        self.resolver.answers[self.name] = ["0.0.0.0"]
        with capturedLogs() as events:
            yield self.add_route("probed", health_path="/echo/health", health_interval=1)
            yield wait_until(lambda: any(e.get("address") == "0.0.0.0" for e in events),
                             timeout=10)
        self.assertEqual([r for r in self.backend.requests if "health" in str(r)], [])
        self.resolver.answers[self.name] = ["127.0.0.1"]
        yield wait_until(lambda: any("health" in str(r) for r in self.backend.requests),
                         timeout=10)

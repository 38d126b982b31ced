"""SSRF protection for upstream URLs (wighaven.routing.upstream_guard): the
checks on the text, the blocked address ranges, the allowlist's matching,
resolution through a fake resolver (rebinding mixes refused), the default
resolver's timeout on a fake clock, and one real lookup of localhost."""

import ipaddress
import socket

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wighaven.routing.upstream_guard import (
    UpstreamPolicy,
    UpstreamRefused,
    blocked_address,
    check_upstream,
    check_url,
    default_resolver,
)

STRICT = UpstreamPolicy()
HTTP = UpstreamPolicy(allow_http=True)
PRIVATE = UpstreamPolicy(allow_private=True)
LOOSE = UpstreamPolicy(allow_http=True, allow_private=True)

# Words that only an exception's own text would bring into a message.
LEAKY = ("Traceback", "Error", "Errno", "errno", "could not be cast", "Invalid IPv6", "range")


class RefusalAssertions:
    def assertRefused(self, url, policy=STRICT, contains=None, echoes=False):
        with self.assertRaises(UpstreamRefused) as caught:
            check_url(url, policy)
        refused = caught.exception
        self.assertEqual(refused.field, "url")
        self.assertEqual(str(refused), refused.message)
        self.assertTrue(refused.message.endswith("."), refused.message)
        self.assertNotIn("\n", refused.message)
        for word in LEAKY:
            self.assertNotIn(word, refused.message)
        if not echoes and isinstance(url, str) and "://" in url:
            host = url.split("://", 1)[1].split("/", 1)[0]
            if host:
                self.assertNotIn(host, refused.message)
        if contains is not None:
            self.assertIn(contains, refused.message.lower())
        return refused

    def assertRefusedResult(self, d, contains=None):
        failure = self.failureResultOf(d, UpstreamRefused)
        refused = failure.value
        self.assertEqual(refused.field, "url")
        for word in LEAKY:
            self.assertNotIn(word, refused.message)
        if contains is not None:
            self.assertIn(contains, refused.message.lower())
        return refused


class BlockedAddressTests(SynchronousTestCase):
    """blocked_address: a phrase for each refused range, None for public addresses."""

    def assertBlocked(self, address, phrase):
        reason = blocked_address(address)
        self.assertIsNotNone(reason, address)
        self.assertIn(phrase, reason, address)

    def test_public(self):
        for address in ("8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700::1111",
                        "2a00:1450:4001::200e", "::ffff:8.8.8.8", "64:ff9b::808:808",
                        "2002:808:808::1"):
            self.assertIsNone(blocked_address(address), address)

    def test_takes_ipaddress_objects(self):
        self.assertIsNone(blocked_address(ipaddress.ip_address("8.8.8.8")))
        self.assertBlocked(ipaddress.ip_address("127.0.0.1"), "loopback")

    def test_loopback(self):
        for address in ("127.0.0.1", "127.255.0.9", "::1"):
            self.assertBlocked(address, "loopback")

    def test_private(self):
        for address in ("10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1",
                        "fc00::1", "fd12:3456::1"):
            self.assertBlocked(address, "private")

    def test_link_local(self):
        for address in ("169.254.1.1", "fe80::1", "fe80::1%eth0"):
            self.assertBlocked(address, "link-local")

    def test_metadata(self):
        for address in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2",
                        "100.100.100.200", "::ffff:169.254.169.254"):
            self.assertBlocked(address, "metadata")

    def test_carrier_grade_nat(self):
        for address in ("100.64.0.1", "100.127.255.254"):
            self.assertBlocked(address, "carrier-grade NAT")
        self.assertIsNone(blocked_address("100.128.0.1"))

    def test_unspecified(self):
        for address in ("0.0.0.0", "::"):
            self.assertBlocked(address, "unspecified")

    def test_multicast(self):
        for address in ("224.0.0.1", "239.255.255.250", "ff02::1"):
            self.assertBlocked(address, "multicast")

    def test_broadcast(self):
        self.assertBlocked("255.255.255.255", "broadcast")

    def test_reserved(self):
        for address in ("240.0.0.1", "::127.0.0.1"):
            self.assertBlocked(address, "reserved")

    def test_site_local(self):
        self.assertBlocked("fec0::1", "site-local")

    def test_special_purpose(self):
        for address in ("192.0.2.1", "198.18.0.1", "2001:db8::1", "0.1.2.3"):
            self.assertIsNotNone(blocked_address(address), address)

    def test_ipv4_mapped(self):
        """::ffff:127.0.0.1 is 127.0.0.1: refused as loopback, not merely 'reserved'."""
        self.assertBlocked("::ffff:127.0.0.1", "loopback")
        self.assertBlocked("::ffff:7f00:1", "loopback")
        self.assertBlocked("::ffff:10.1.2.3", "private")
        self.assertBlocked("::ffff:0.0.0.0", "unspecified")

    def test_embedded_ipv4(self):
        self.assertBlocked("2002:7f00:1::1", "loopback")  # 6to4 of 127.0.0.1
        self.assertBlocked("2002:a00:1::1", "private")  # 6to4 of 10.0.0.1
        self.assertBlocked("64:ff9b::7f00:1", "loopback")  # NAT64 of 127.0.0.1
        self.assertBlocked("64:ff9b::a9fe:a9fe", "metadata")  # NAT64 of 169.254.169.254
        # Teredo with client 192.168.1.1 (stored inverted: 0x3f57fefe).
        self.assertBlocked("2001:0:4136:e378:8000:63bf:3f57:fefe", "private")

    def test_not_an_address(self):
        for value in ("", "localhost", "1.2.3", "::g", "8.8.8.8/32"):
            self.assertIsNotNone(blocked_address(value), value)


class CheckUrlTests(RefusalAssertions, SynchronousTestCase):
    """check_url: the synchronous rules on the text."""

    def test_https_origin(self):
        self.assertEqual(
            check_url("https://user-space.hf.space", STRICT), ("https", "user-space.hf.space", 443)
        )
        self.assertEqual(
            check_url("https://user-space.hf.space/", STRICT), ("https", "user-space.hf.space", 443)
        )
        self.assertEqual(
            check_url("  https://user-space.hf.space  ", STRICT),
            ("https", "user-space.hf.space", 443),
        )

    def test_ports(self):
        self.assertEqual(check_url("https://api.example.org:8443", STRICT),
                         ("https", "api.example.org", 8443))
        self.assertEqual(check_url("http://api.example.org", HTTP), ("http", "api.example.org", 80))
        self.assertEqual(check_url("http://api.example.org:8080/", HTTP),
                         ("http", "api.example.org", 8080))
        self.assertEqual(check_url("https://api.example.org:65535", STRICT)[2], 65535)
        for url in ("https://api.example.org:0", "https://api.example.org:65536",
                    "https://api.example.org:abc", "https://api.example.org:-1"):
            self.assertRefused(url, contains="port")

    def test_uppercase(self):
        self.assertEqual(check_url("HTTPS://User-Space.HF.Space", STRICT),
                         ("https", "user-space.hf.space", 443))

    def test_idna(self):
        self.assertEqual(check_url("https://bücher.example", STRICT),
                         ("https", "xn--bcher-kva.example", 443))
        self.assertEqual(check_url("https://BÜCHER.example", STRICT),
                         ("https", "xn--bcher-kva.example", 443))

    def test_http_needs_allow_http(self):
        self.assertRefused("http://api.example.org", contains="https://")
        self.assertEqual(check_url("https://api.example.org", HTTP)[0], "https")

    def test_other_schemes(self):
        for url in ("ftp://api.example.org", "file:///etc/passwd", "gopher://x.example:70",
                    "ws://api.example.org", "api.example.org", "//api.example.org"):
            self.assertRefused(url, contains="https://")
        refused = self.assertRefused("ftp://api.example.org", policy=HTTP)
        self.assertIn("http:// or https://", refused.message)

    def test_not_text(self):
        for value in (None, b"https://api.example.org", 42, "", "   "):
            self.assertRefused(value, contains="url")

    def test_origin_only(self):
        for url in ("https://api.example.org/v1", "https://api.example.org//",
                    "https://api.example.org/?a=1", "https://api.example.org?a=1",
                    "https://api.example.org?", "https://api.example.org#top",
                    "https://api.example.org/#", "https://api.example.org/;x"):
            self.assertRefused(url, contains="origin")

    def test_credentials(self):
        for url in ("https://user:pw@api.example.org", "https://user@api.example.org",
                    "https://@api.example.org", "https://127.0.0.1@api.example.org",
                    "https://api.example.org@127.0.0.1"):
            self.assertRefused(url, contains="user:password@")

    def test_spaces_and_control_characters(self):
        for url in ("https://api.exa\tmple.org", "https://api.example.org\n/x",
                    "https://api example.org", "https://api.example.org\x00",
                    "https://api.example.org\x7f"):
            self.assertRefused(url, contains="spaces")

    def test_no_host(self):
        for url in ("https://", "https:///", "https://:443", "https://?x"):
            self.assertRefused(url)

    def test_invalid_host(self):
        for url in ("https://-bad.example", "https://bad_.exa!mple", "https://a..b",
                    "https://[::1", "https://::1/", "https://[not-ip]", "https://ex%41mple.org",
                    # IDNA 2008 (what TLS names hosts with) refuses them: schemathesis
                    # found the first answered 500 by Test connection.
                    "https://\U000e91bc", "https://xn--yl39e.example", "https://my_app.example"):
            self.assertRefused(url)

    def test_numeric_disguises(self):
        """Names a resolver would read as IPv4 addresses are refused without resolving."""
        for url in ("https://2130706433", "https://127.1", "https://0x7f.1", "https://0x7f000001",
                    "https://017700000001", "https://127.000.000.001", "https://1.2.3.4.5"):
            self.assertRefused(url, contains="ip address")
        # Ideographic full stops: IDNA turns the name into 127.0.0.1, judged as that address.
        self.assertRefused("https://127\u30020\u30020\u30021", contains="loopback")
        # So are they with private upstreams allowed: the rule is about the spelling.
        self.assertRefused("https://127.1", policy=PRIVATE, contains="ip address")
        # A numeric label that is not the last one is an ordinary name.
        self.assertEqual(check_url("https://123.example.org", STRICT)[1], "123.example.org")

    def test_trailing_dot(self):
        self.assertEqual(check_url("https://api.example.org.", STRICT)[1], "api.example.org.")

    def test_metadata_names(self):
        for name in ("metadata.google.internal", "METADATA.google.internal", "metadata",
                     "instance-data", "metadata.google.internal."):
            # (the name "metadata" is in the sentence, not taken from the URL)
            self.assertRefused("http://%s" % (name,), policy=HTTP, contains="metadata",
                               echoes=True)
            self.assertRefused("http://%s" % (name,), policy=LOOSE, contains="metadata",
                               echoes=True)
        self.assertEqual(check_url("https://metadata.example.org", STRICT)[1],
                         "metadata.example.org")

    def test_ip_literals_public(self):
        self.assertEqual(check_url("https://8.8.8.8", STRICT), ("https", "8.8.8.8", 443))
        self.assertEqual(check_url("https://[2606:4700::1111]:8443", STRICT),
                         ("https", "2606:4700::1111", 8443))
        self.assertEqual(check_url("https://[2606:4700::1111]", STRICT)[2], 443)

    def test_ip_literals_blocked(self):
        cases = {
            "https://127.0.0.1": "loopback",
            "https://127.0.0.1:8080": "loopback",
            "https://[::1]": "loopback",
            "https://[::1]:7860/": "loopback",
            "https://[::ffff:127.0.0.1]": "loopback",
            "https://[::FFFF:7F00:1]": "loopback",
            "https://10.0.0.1": "private",
            "https://192.168.0.10:8443": "private",
            "https://[fd12::1]": "private",
            "https://169.254.169.254": "metadata",
            "https://[fd00:ec2::254]": "metadata",
            "https://[::ffff:169.254.169.254]": "metadata",
            "https://169.254.10.10": "link-local",
            "https://[fe80::1]": "link-local",
            "https://100.64.1.1": "carrier-grade nat",
            "https://0.0.0.0": "unspecified",
            "https://[::]": "unspecified",
            "https://224.0.0.1": "multicast",
            "https://[ff02::1]": "multicast",
            "https://255.255.255.255": "broadcast",
            "https://240.0.0.1": "reserved",
            "https://[2002:7f00:1::1]": "loopback",
        }
        for url, phrase in cases.items():
            refused = self.assertRefused(url, contains=phrase)
            self.assertIn("public", refused.message)

    def test_allow_private_lets_private_literals_through(self):
        for url, host in (("https://127.0.0.1:8000", "127.0.0.1"), ("https://[::1]", "::1"),
                          ("https://10.1.2.3", "10.1.2.3"), ("https://[fe80::1]", "fe80::1"),
                          ("https://100.64.0.5", "100.64.0.5"),
                          ("https://[::ffff:192.168.1.1]", "::ffff:192.168.1.1")):
            self.assertEqual(check_url(url, PRIVATE)[1], host)
        self.assertEqual(check_url("http://localhost:8000", LOOSE), ("http", "localhost", 8000))

    def test_allow_private_still_refuses_what_is_never_a_backend(self):
        for url, phrase in (("https://169.254.169.254", "metadata"),
                            ("https://[fd00:ec2::254]", "metadata"),
                            ("https://[::ffff:169.254.169.254]", "metadata"),
                            ("https://0.0.0.0", "unspecified"), ("https://[::]", "unspecified"),
                            ("https://224.0.0.1", "multicast"),
                            ("https://255.255.255.255", "broadcast")):
            self.assertRefused(url, policy=PRIVATE, contains=phrase)

    def test_field_is_named(self):
        with self.assertRaises(UpstreamRefused) as caught:
            check_url("ftp://x.example", STRICT, field="upstreams.0.url")
        self.assertEqual(caught.exception.field, "upstreams.0.url")

    def test_refused_is_a_value_error(self):
        refused = UpstreamRefused("url", "The upstream URL has an invalid port.")
        self.assertIsInstance(refused, ValueError)
        self.assertEqual(str(refused), "The upstream URL has an invalid port.")
        self.assertEqual(refused.args, ("The upstream URL has an invalid port.",))


class AllowlistTests(RefusalAssertions, SynchronousTestCase):
    """UPSTREAM_ALLOWLIST: parsing and matching."""

    def test_parse(self):
        self.assertEqual(UpstreamPolicy.parse_allowlist(""), ())
        self.assertEqual(UpstreamPolicy.parse_allowlist(None), ())
        self.assertEqual(UpstreamPolicy.parse_allowlist(" , "), ())
        self.assertEqual(
            UpstreamPolicy.parse_allowlist(" *.HF.Space , api.example.org.,, 8.8.8.8 "),
            ("*.hf.space", "api.example.org", "8.8.8.8"),
        )
        self.assertEqual(UpstreamPolicy.parse_allowlist("2606:4700:0::1111"), ("2606:4700::1111",))
        self.assertEqual(UpstreamPolicy.parse_allowlist("*.bücher.example"),
                         ("*.xn--bcher-kva.example",))

    def test_parse_refuses_bad_patterns(self):
        for text in ("*", "*.", "**.hf.space", "*hf.space", "a.*.hf.space", "hf.*", "*.*.hf.space",
                     "https://hf.space", "hf.space:443", "hf.space/x", "-x.example", "a b.example",
                     "*.10.0.0.1", "*.1", "127.1", "*.::1", "[::1]", "ok.example,bad*"):
            with self.assertRaises(ValueError) as caught:
                UpstreamPolicy.parse_allowlist(text)
            message = str(caught.exception)
            self.assertIn("UPSTREAM_ALLOWLIST", message)
            self.assertNotIn("\n", message)

    def test_constructor_normalises_and_validates(self):
        self.assertEqual(UpstreamPolicy(allowlist=["*.HF.space"]).allowlist, ("*.hf.space",))
        self.assertEqual(UpstreamPolicy(allowlist="a.example, *.b.example").allowlist,
                         ("a.example", "*.b.example"))
        self.assertRaises(ValueError, UpstreamPolicy, allowlist=("a.*.example",))
        self.assertEqual(UpstreamPolicy().allowlist, ())

    def test_wildcard_matches_subdomains_only(self):
        policy = UpstreamPolicy(allowlist="*.hf.space")
        self.assertEqual(check_url("https://user-space.hf.space", policy)[1], "user-space.hf.space")
        self.assertEqual(check_url("https://a.b.hf.space", policy)[1], "a.b.hf.space")
        self.assertEqual(check_url("https://USER.HF.SPACE", policy)[1], "user.hf.space")
        self.assertEqual(check_url("https://user.hf.space.", policy)[1], "user.hf.space.")
        for url in ("https://hf.space", "https://evilhf.space", "https://user.hf.space.evil.org",
                    "https://hf.space.evil.org", "https://user-hf.space", "https://8.8.8.8"):
            self.assertRefused(url, policy=policy, contains="upstream_allowlist")

    def test_exact_name(self):
        policy = UpstreamPolicy(allowlist="api.example.org")
        self.assertEqual(check_url("https://API.Example.org:8443", policy),
                         ("https", "api.example.org", 8443))
        for url in ("https://x.api.example.org", "https://example.org",
                    "https://api.example.org.evil"):
            self.assertRefused(url, policy=policy, contains="upstream_allowlist")

    def test_idna_pattern(self):
        policy = UpstreamPolicy(allowlist="*.bücher.example")
        self.assertEqual(check_url("https://shop.BÜCHER.example", policy)[1],
                         "shop.xn--bcher-kva.example")
        self.assertRefused("https://bücher.example", policy=policy, contains="upstream_allowlist")

    def test_ip_patterns_match_exactly(self):
        policy = UpstreamPolicy(allowlist="8.8.8.8, 2606:4700::1111, *.example.org")
        self.assertEqual(check_url("https://8.8.8.8", policy)[1], "8.8.8.8")
        self.assertEqual(check_url("https://[2606:4700:0:0::1111]", policy)[1],
                         "2606:4700:0:0::1111")
        self.assertRefused("https://8.8.4.4", policy=policy, contains="upstream_allowlist")
        self.assertRefused("https://[2606:4700::1112]", policy=policy,
                           contains="upstream_allowlist")

    def test_allowlist_never_lets_a_private_address_through(self):
        policy = UpstreamPolicy(allowlist="10.0.0.5, 127.0.0.1")
        self.assertRefused("https://10.0.0.5", policy=policy, contains="private")
        self.assertRefused("https://127.0.0.1", policy=policy, contains="loopback")
        private = UpstreamPolicy(allow_private=True, allowlist="10.0.0.5")
        self.assertEqual(check_url("https://10.0.0.5", private)[1], "10.0.0.5")
        self.assertRefused("https://10.0.0.6", policy=private, contains="upstream_allowlist")

    def test_empty_allowlist_allows_any_public_host(self):
        self.assertEqual(check_url("https://anything.example.net", STRICT)[1],
                         "anything.example.net")

    def test_host_allowed(self):
        policy = UpstreamPolicy(allowlist="*.hf.space")
        self.assertTrue(policy.host_allowed("a.hf.space"))
        self.assertFalse(policy.host_allowed("hf.space"))
        self.assertTrue(UpstreamPolicy().host_allowed("hf.space"))


class FakeResolver:
    """resolve(host, port): records the call, answers what the test says."""

    def __init__(self, answer=None, failure=None):
        self.answer = answer
        self.failure = failure
        self.calls = []
        self.pending = []

    def __call__(self, host, port):
        self.calls.append((host, port))
        if self.failure is not None:
            return defer.fail(self.failure)
        if self.answer is None:
            d = defer.Deferred()
            self.pending.append(d)
            return d
        return defer.succeed(list(self.answer))


class CheckUpstreamTests(RefusalAssertions, SynchronousTestCase):
    """check_upstream: check_url, then every resolved address judged."""

    def test_only_public_addresses(self):
        resolve = FakeResolver(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
        d = check_upstream("https://API.example.org:8443", STRICT, resolve)
        self.assertEqual(self.successResultOf(d), ("https", "api.example.org", 8443))
        self.assertEqual(resolve.calls, [("api.example.org", 8443)])

    def test_one_private_among_public_is_refused(self):
        """A rebinding name answering both a public and a private address does not pass."""
        for answer, phrase in (
            (["93.184.216.34", "10.0.0.7"], "private"),
            (["127.0.0.1", "93.184.216.34"], "loopback"),
            (["2606:4700::1111", "::ffff:127.0.0.1"], "loopback"),
            (["93.184.216.34", "169.254.169.254"], "metadata"),
            (["93.184.216.34", "fd00:ec2::254"], "metadata"),
            (["93.184.216.34", "100.64.0.1"], "carrier-grade nat"),
            (["93.184.216.34", "0.0.0.0"], "unspecified"),
            (["93.184.216.34", "not an address"], "not a valid ip address"),
        ):
            d = check_upstream("https://rebind.example.org", STRICT, FakeResolver(answer))
            refused = self.assertRefusedResult(d, contains=phrase)
            self.assertIn("resolves to", refused.message)
            self.assertNotIn("rebind.example.org", refused.message)

    def test_ipaddress_objects_in_the_answer(self):
        resolve = FakeResolver([ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("::1")])
        self.assertRefusedResult(check_upstream("https://x.example.org", STRICT, resolve),
                                 contains="loopback")

    def test_empty_answer_is_refused(self):
        d = check_upstream("https://nothing.example.org", STRICT, FakeResolver([]))
        self.assertRefusedResult(d, contains="the host name could not be resolved")

    def test_resolution_failure_is_refused_without_its_text(self):
        for error in (socket.gaierror(-2, "Name or service not known SECRET-DETAIL"),
                      defer.TimeoutError("SECRET-DETAIL"), RuntimeError("SECRET-DETAIL")):
            d = check_upstream("https://nowhere.example.org", STRICT, FakeResolver(failure=error))
            refused = self.assertRefusedResult(d, contains="the host name could not be resolved")
            self.assertNotIn("SECRET", refused.message)
            self.assertNotIn("known", refused.message)

    def test_resolver_raising_is_refused(self):
        def resolve(host, port):
            raise OSError("SECRET-DETAIL")

        d = check_upstream("https://nowhere.example.org", STRICT, resolve)
        refused = self.assertRefusedResult(d, contains="could not be resolved")
        self.assertNotIn("SECRET", refused.message)

    def test_resolver_answering_garbage_is_refused(self):
        for answer in (None, "8.8.8.8", 42):
            def resolve(host, port, answer=answer):
                return defer.succeed(answer)

            d = check_upstream("https://x.example.org", STRICT, resolve)
            self.assertRefusedResult(d, contains="could not be resolved")

    def test_waits_for_the_resolver(self):
        resolve = FakeResolver()
        d = check_upstream("https://slow.example.org", STRICT, resolve)
        self.assertNoResult(d)
        resolve.pending[0].callback(["8.8.8.8"])
        self.assertEqual(self.successResultOf(d), ("https", "slow.example.org", 443))

    def test_cancelled_from_outside_is_not_a_refusal(self):
        resolve = FakeResolver()
        d = check_upstream("https://slow.example.org", STRICT, resolve)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)

    def test_allow_private_skips_resolution(self):
        resolve = FakeResolver(["127.0.0.1"])
        d = check_upstream("https://internal.example.org", PRIVATE, resolve)
        self.assertEqual(self.successResultOf(d), ("https", "internal.example.org", 443))
        d = check_upstream("http://localhost:8000", LOOSE, resolve)
        self.assertEqual(self.successResultOf(d), ("http", "localhost", 8000))
        self.assertEqual(resolve.calls, [])

    def test_ip_literal_is_not_resolved(self):
        resolve = FakeResolver(["10.0.0.1"])
        d = check_upstream("https://[2606:4700::1111]:8443", STRICT, resolve)
        self.assertEqual(self.successResultOf(d), ("https", "2606:4700::1111", 8443))
        self.assertRefusedResult(check_upstream("https://[::ffff:127.0.0.1]", STRICT, resolve),
                                 contains="loopback")
        self.assertEqual(resolve.calls, [])

    def test_text_refusals_come_first(self):
        resolve = FakeResolver(["8.8.8.8"])
        for url, phrase in (("http://x.example.org", "https://"),
                            ("https://x.example.org/path", "origin"),
                            ("https://metadata.google.internal", "metadata"),
                            ("https://127.1", "ip address")):
            self.assertRefusedResult(check_upstream(url, STRICT, resolve), contains=phrase)
        self.assertRefusedResult(
            check_upstream("https://x.example.org", UpstreamPolicy(allowlist="*.hf.space"),
                           resolve),
            contains="upstream_allowlist",
        )
        self.assertEqual(resolve.calls, [])

    def test_field_is_named(self):
        d = check_upstream("https://x.example.org", STRICT, FakeResolver([]), field="backend")
        self.assertEqual(self.failureResultOf(d, UpstreamRefused).value.field, "backend")


class FakeThreadPool:
    """callInThreadWithCallback that runs nothing until the test says."""

    def __init__(self):
        self.calls = []

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.calls.append((onResult, f, args, kwargs))


class FakeThreadedReactor(Clock):
    """A Clock with the two thread methods deferToThreadPool needs."""

    def __init__(self):
        super().__init__()
        self.pool = FakeThreadPool()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


def fake_getaddrinfo(answers):
    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        infos = []
        for fam, address in answers:
            sockaddr = (address, port, 0, 0) if fam == socket.AF_INET6 else (address, port)
            infos.append((fam, socket.SOCK_STREAM, 6, "", sockaddr))
        return infos

    return getaddrinfo


class DefaultResolverFakeTests(RefusalAssertions, SynchronousTestCase):
    """default_resolver on a fake clock and a thread pool run by hand."""

    def run_lookup(self, reactor):
        onResult, f, args, kwargs = reactor.pool.calls.pop(0)
        try:
            result = f(*args, **kwargs)
        except Exception:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def test_addresses_in_order_without_duplicates(self):
        reactor = FakeThreadedReactor()
        getaddrinfo = fake_getaddrinfo([
            (socket.AF_INET, "93.184.216.34"), (socket.AF_INET6, "2606:2800::1"),
            (socket.AF_INET, "93.184.216.34"),
        ])
        resolve = default_resolver(reactor, getaddrinfo=getaddrinfo)
        d = resolve("example.org", 443)
        self.assertEqual(reactor.pool.calls[0][2][:2], ("example.org", 443))
        self.run_lookup(reactor)
        self.assertEqual(self.successResultOf(d), ["93.184.216.34", "2606:2800::1"])
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_check_upstream_through_it(self):
        reactor = FakeThreadedReactor()
        getaddrinfo = fake_getaddrinfo([(socket.AF_INET, "93.184.216.34"),
                                        (socket.AF_INET, "192.168.0.1")])
        resolve = default_resolver(reactor, getaddrinfo=getaddrinfo)
        d = check_upstream("https://example.org", STRICT, resolve)
        self.run_lookup(reactor)
        self.assertRefusedResult(d, contains="private")

    def test_lookup_error(self):
        def getaddrinfo(*args):
            raise socket.gaierror(socket.EAI_NONAME, "SECRET-DETAIL")

        reactor = FakeThreadedReactor()
        d = check_upstream("https://example.org", STRICT,
                           default_resolver(reactor, getaddrinfo=getaddrinfo))
        self.run_lookup(reactor)
        refused = self.assertRefusedResult(d, contains="could not be resolved")
        self.assertNotIn("SECRET", refused.message)

    def test_timeout(self):
        """A lookup that never ends is given up after 5 s on the reactor's clock."""
        reactor = FakeThreadedReactor()
        resolve = default_resolver(reactor, getaddrinfo=fake_getaddrinfo([]))
        lookup = resolve("slow.example.org", 443)
        d = check_upstream("https://slow.example.org", STRICT, resolve)
        reactor.advance(4.9)
        self.assertNoResult(lookup)
        self.assertNoResult(d)
        reactor.advance(0.1)
        self.failureResultOf(lookup, defer.TimeoutError)
        self.assertRefusedResult(d, contains="could not be resolved")
        # The thread's late answer is dropped, not an error.
        self.run_lookup(reactor)
        self.run_lookup(reactor)

    def test_timeout_is_configurable(self):
        reactor = FakeThreadedReactor()
        lookup = default_resolver(reactor, timeout=1.5)("slow.example.org", 443)
        reactor.advance(1.5)
        self.failureResultOf(lookup, defer.TimeoutError)


class DefaultResolverRealTests(TestCase):
    """One real lookup through the reactor's thread pool."""

    @defer.inlineCallbacks
    def test_localhost_is_loopback(self):
        from twisted.internet import reactor

        resolve = default_resolver(reactor)
        addresses = yield resolve("localhost", 443)
        self.assertTrue(addresses)
        for address in addresses:
            self.assertIn("loopback", blocked_address(address))
        with self.assertRaises(UpstreamRefused) as caught:
            yield check_upstream("https://localhost", STRICT, resolve)
        self.assertIn("loopback", caught.exception.message)
        self.assertIn("resolves to", caught.exception.message)

"""Tests for L{wighaven.proxy.headers}, the pure header and target rules of the
forwarding path: hop-by-hop and Connection-named removal, duplicates kept
apart, the upstream Host / X-Forwarded-* / token headers, the upstream
request target, Location rewriting, the client's origin and the framing
headers of the downstream response.
"""

from twisted.trial.unittest import SynchronousTestCase

from wighaven.config.trust import NO_PROXY, ONE_HOP, TrustedProxies

from wighaven.proxy.headers import (
    HOP_BY_HOP,
    ResponseShapes,
    client_origin,
    connection_named,
    downstream_headers,
    end_to_end,
    origin_for_upstream,
    rewrite_location,
    upstream_headers,
    upstream_target,
    valid_host,
)

BACKEND = (b"https", b"user-space.hf.space", 443)
GATEWAY = b"https://gw.example"
TOKEN = b"hf_S3cr3t"


def values_of(headers, name):
    """Every value of C{name} (case-insensitive) in a header list, in order."""
    return [v for n, values in headers for v in values if n.lower() == name.lower()]


def names_of(headers):
    return [n.lower() for n, _ in headers]


def upstream(raw, **kwargs):
    """upstream_headers with the usual gateway arguments, overridable."""
    arguments = dict(
        backend_host=b"user-space.hf.space",
        peer=b"203.0.113.7",
        proto=b"https",
        token=TOKEN,
        token_header=b"authorization",
        trust_proxy=NO_PROXY,
    )
    arguments.update(kwargs)
    return upstream_headers(raw, **arguments)


class EndToEndTests(SynchronousTestCase):
    def test_hop_by_hop_removed(self):
        raw = [(name.title(), [b"x"]) for name in sorted(HOP_BY_HOP)]
        raw.append((b"Content-Type", [b"text/plain"]))
        self.assertEqual(end_to_end(raw), [(b"Content-Type", [b"text/plain"])])

    def test_hop_by_hop_list(self):
        for name in (b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding",
                     b"upgrade", b"proxy-authorization", b"proxy-authenticate",
                     b"proxy-connection"):
            self.assertIn(name, HOP_BY_HOP)

    def test_connection_named_removed(self):
        raw = [
            (b"Connection", [b"close, X-Secret", b"x-other"]),
            (b"X-Secret", [b"1"]),
            (b"X-Other", [b"2"]),
            (b"X-Kept", [b"3"]),
        ]
        self.assertEqual(end_to_end(raw), [(b"X-Kept", [b"3"])])

    def test_duplicates_kept_apart(self):
        raw = [(b"Set-Cookie", [b"a=1; Path=/", b"b=2, c=3"]), (b"Vary", [b"Accept", b"Origin"])]
        self.assertEqual(end_to_end(raw), raw)

    def test_connection_named(self):
        self.assertEqual(connection_named(None), frozenset())
        self.assertEqual(connection_named([]), frozenset())
        self.assertEqual(
            connection_named([b"Keep-Alive, X-A ,", b" x-b"]),
            frozenset([b"keep-alive", b"x-a", b"x-b"]),
        )


class UpstreamHeadersTests(SynchronousTestCase):
    def test_host_replaced_and_forwarded(self):
        out = upstream([(b"Host", [b"gw.example"])])
        self.assertEqual(out[0], (b"Host", [b"user-space.hf.space"]))
        self.assertEqual(values_of(out, b"host"), [b"user-space.hf.space"])
        self.assertEqual(values_of(out, b"x-forwarded-host"), [b"gw.example"])

    def test_no_client_host_no_forwarded_host(self):
        self.assertEqual(values_of(upstream([]), b"x-forwarded-host"), [])

    def test_forwarded_for_is_the_peer(self):
        out = upstream([(b"Host", [b"gw"])])
        self.assertEqual(values_of(out, b"x-forwarded-for"), [b"203.0.113.7"])

    def test_forged_forwarded_for_replaced(self):
        """Without a trusted proxy, a client's X-Forwarded-For is its own invention."""
        out = upstream([(b"X-Forwarded-For", [b"10.0.0.1, 10.0.0.2", b"10.0.0.3"])])
        self.assertEqual(values_of(out, b"x-forwarded-for"), [b"203.0.113.7"])

    def test_forged_forwarding_headers_removed(self):
        raw = [(name, [b"x"]) for name in (b"Forwarded", b"X-Real-IP", b"X-Forwarded-Port",
                                           b"X-Forwarded-Prefix")]
        for trust in (NO_PROXY, ONE_HOP):
            out = upstream(raw, trust_proxy=trust)
            for name, _ in raw:
                self.assertEqual(values_of(out, name), [], (name, trust))

    def test_one_trusted_hop_rightmost_entry_is_the_client(self):
        """The proxy appended the address it saw; everything left of it may be forged."""
        out = upstream([(b"X-Forwarded-For", [b"10.0.0.1, 10.0.0.2", b"198.51.100.9"])],
                       trust_proxy=ONE_HOP)
        self.assertEqual(values_of(out, b"x-forwarded-for"), [b"198.51.100.9, 203.0.113.7"])

    def test_trusted_networks_skip_their_own_hops(self):
        trust = TrustedProxies.parse("203.0.113.0/24, 10.0.0.0/8")
        out = upstream(
            [(b"X-Forwarded-For", [b"6.6.6.6, 198.51.100.9, 10.0.0.5", b"10.0.0.6"])],
            trust_proxy=trust,
        )
        self.assertEqual(
            values_of(out, b"x-forwarded-for"), [b"198.51.100.9, 10.0.0.5, 10.0.0.6, 203.0.113.7"]
        )

    def test_untrusted_peer_with_networks(self):
        trust = TrustedProxies.parse("10.0.0.0/8")
        raw = [(b"X-Forwarded-For", [b"198.51.100.9"]), (b"X-Forwarded-Proto", [b"https"]),
               (b"Host", [b"gw"]), (b"X-Forwarded-Host", [b"evil"])]
        out = upstream(raw, proto=b"http", trust_proxy=trust)
        self.assertEqual(values_of(out, b"x-forwarded-for"), [b"203.0.113.7"])
        self.assertEqual(values_of(out, b"x-forwarded-proto"), [b"http"])
        self.assertEqual(values_of(out, b"x-forwarded-host"), [b"gw"])

    def test_forwarded_proto(self):
        for proto in (b"http", b"https"):
            out = upstream([], proto=proto)
            self.assertEqual(values_of(out, b"x-forwarded-proto"), [proto])

    def test_untrusted_forwarded_headers_replaced(self):
        raw = [
            (b"Host", [b"gw.example"]),
            (b"X-Forwarded-Host", [b"evil.example"]),
            (b"X-Forwarded-Proto", [b"https"]),
        ]
        out = upstream(raw, proto=b"http", trust_proxy=NO_PROXY)
        self.assertEqual(values_of(out, b"x-forwarded-host"), [b"gw.example"])
        self.assertEqual(values_of(out, b"x-forwarded-proto"), [b"http"])

    def test_trusted_forwarded_headers_kept(self):
        raw = [
            (b"Host", [b"internal:7860"]),
            (b"X-Forwarded-Host", [b"user-gw.hf.space"]),
            (b"X-Forwarded-Proto", [b"https"]),
        ]
        out = upstream(raw, proto=b"http", trust_proxy=ONE_HOP)
        self.assertEqual(values_of(out, b"x-forwarded-host"), [b"user-gw.hf.space"])
        self.assertEqual(values_of(out, b"x-forwarded-proto"), [b"https"])

    def test_trusted_proxy_without_forwarded_headers(self):
        out = upstream([(b"Host", [b"gw.example"])], proto=b"http", trust_proxy=ONE_HOP)
        self.assertEqual(values_of(out, b"x-forwarded-host"), [b"gw.example"])
        self.assertEqual(values_of(out, b"x-forwarded-proto"), [b"http"])

    def test_token_replaces_client_authorization(self):
        out = upstream([(b"Authorization", [b"Basic dXNlcjpwdw=="])])
        self.assertEqual(values_of(out, b"authorization"), [b"Bearer " + TOKEN])

    def test_token_added_without_client_authorization(self):
        out = upstream([(b"Host", [b"gw"])])
        self.assertEqual(values_of(out, b"authorization"), [b"Bearer " + TOKEN])

    def test_x_hf_authorization(self):
        """The token goes in X-HF-Authorization; the client's Authorization passes."""
        raw = [
            (b"Authorization", [b"Bearer client-own"]),
            (b"X-Hf-Authorization", [b"Bearer forged"]),
        ]
        out = upstream(raw, token_header=b"x-hf-authorization")
        self.assertEqual(values_of(out, b"authorization"), [b"Bearer client-own"])
        self.assertEqual(values_of(out, b"x-hf-authorization"), [b"Bearer " + TOKEN])

    def test_no_token_client_credential_passes(self):
        raw = [(b"Authorization", [b"Bearer client-own"])]
        for header in (b"authorization", b"x-hf-authorization"):
            out = upstream(raw, token=None, token_header=header)
            self.assertEqual(values_of(out, b"authorization"), [b"Bearer client-own"])
            self.assertEqual(values_of(out, b"x-hf-authorization"), [])

    def test_rebuilt_and_hop_by_hop_dropped(self):
        raw = [
            (b"Content-Length", [b"5"]),
            (b"Expect", [b"100-continue"]),
            (b"Connection", [b"keep-alive, X-Drop"]),
            (b"Keep-Alive", [b"timeout=5"]),
            (b"Transfer-Encoding", [b"chunked"]),
            (b"Proxy-Authorization", [b"Basic x"]),
            (b"X-Drop", [b"1"]),
        ]
        out = upstream(raw, token=None)
        self.assertEqual(
            names_of(out), [b"host", b"x-forwarded-for", b"x-forwarded-proto"]
        )

    def test_end_to_end_headers_pass_with_duplicates(self):
        raw = [
            (b"Cookie", [b"a=1", b"b=2"]),
            (b"Accept", [b"text/html", b"application/json"]),
            (b"Content-Type", [b"application/json"]),
        ]
        out = upstream(raw)
        for name, values in raw:
            self.assertIn((name, values), out)


class UpstreamTargetTests(SynchronousTestCase):
    def test_origin_form_byte_for_byte(self):
        for target in (
            b"/",
            b"/a/b?c=d&e=f",
            b"/file=%2Ftmp%2Fx.png",
            b"/a%2Fb/%2e%2e/c",
            b"//evil/x",
            b"/path?",
            b"/gradio_api/queue/data?session_hash=abc",
            b"/%FF%FE",
        ):
            self.assertEqual(upstream_target(target), target)

    def test_absolute_form_keeps_path_only(self):
        for target, expected in [
            (b"http://evil.example/x?y=1", b"/x?y=1"),
            (b"HTTPS://evil.example:8443/a%2Fb", b"/a%2Fb"),
            (b"http://evil.example", b"/"),
            (b"http://evil.example?q=1", b"/?q=1"),
            (b"http://user@evil.example//x", b"//x"),
        ]:
            self.assertEqual(upstream_target(target), expected, target)

    def test_refused(self):
        for target in (
            b"@evil/x",
            b"*",
            b"evil/x",
            b"",
            b"/a#frag",
            b"http://evil.example/a#frag",
            b"/a b",
            b"/a\tb",
            b"/a\x00",
            b"/a\r\nX: y",
            b"/a\x7f",
            b"/caf\xc3\xa9",
            b"/\xff",
        ):
            self.assertIsNone(upstream_target(target), target)


class RewriteLocationTests(SynchronousTestCase):
    def test_backend_origin_rewritten(self):
        for location, expected in [
            (b"https://user-space.hf.space/a?b=c", GATEWAY + b"/a?b=c"),
            (b"https://user-space.hf.space:443/a", GATEWAY + b"/a"),
            (b"HTTPS://User-Space.HF.Space/A", GATEWAY + b"/A"),
            (b"https://user-space.hf.space", GATEWAY + b"/"),
            (b"https://user-space.hf.space?x=1", GATEWAY + b"/?x=1"),
            (b"https://user-space.hf.space/%2F/x#top", GATEWAY + b"/%2F/x#top"),
            # Scheme-relative: the browser would take the backend's scheme.
            (b"//user-space.hf.space/x", GATEWAY + b"/x"),
        ]:
            self.assertEqual(rewrite_location(location, BACKEND, GATEWAY), expected, location)

    def test_other_locations_untouched(self):
        for location in (
            b"https://other.example/a",
            b"http://user-space.hf.space/a",
            b"https://user-space.hf.space:8443/a",
            b"https://user-space.hf.space.evil.example/a",
            b"https://u:p@user-space.hf.space/a",
            b"/relative/path?x=1",
            b"//other.example/x",
            b"relative",
            b"mailto:someone@user-space.hf.space",
            b"https://user-space.hf.space:bad/a",
        ):
            self.assertEqual(rewrite_location(location, BACKEND, GATEWAY), location, location)

    def test_non_default_backend_port(self):
        backend = (b"http", b"127.0.0.1", 8080)
        self.assertEqual(
            rewrite_location(b"http://127.0.0.1:8080/x", backend, GATEWAY), GATEWAY + b"/x"
        )
        self.assertEqual(
            rewrite_location(b"http://127.0.0.1/x", backend, GATEWAY), b"http://127.0.0.1/x"
        )

    def test_unknown_gateway_origin_gives_path(self):
        for location, expected in [
            (b"https://user-space.hf.space/a?b", b"/a?b"),
            (b"https://user-space.hf.space", b"/"),
        ]:
            self.assertEqual(rewrite_location(location, BACKEND, None), expected)


class ClientOriginTests(SynchronousTestCase):
    def test_scheme_from_transport(self):
        self.assertEqual(client_origin(False, b"gw.example"), b"http://gw.example")
        self.assertEqual(client_origin(True, b"gw.example:8443"), b"https://gw.example:8443")
        self.assertEqual(client_origin(False, b"[::1]:7860"), b"http://[::1]:7860")

    def test_no_usable_host(self):
        for host in (None, b"", b"gw.example/x", b"evil host", b"gw:99999999", b"a@b"):
            self.assertIsNone(client_origin(True, host), host)

    def test_forwarded_values(self):
        self.assertEqual(
            client_origin(False, b"internal:7860", b" HTTPS ", b"gw.example"),
            b"https://gw.example",
        )

    def test_bad_forwarded_values_ignored(self):
        self.assertEqual(
            client_origin(False, b"gw.example", b"javascript", b"evil/x"), b"http://gw.example"
        )

    def test_valid_host(self):
        for host in (b"gw.example", b"gw.example:80", b"10.0.0.1", b"[2001:db8::1]:443"):
            self.assertEqual(valid_host(host), host)
        for host in (None, b"", b"gw example", b"gw.example:", b"[::1", b"gw/x"):
            self.assertIsNone(valid_host(host), host)


class DownstreamHeadersTests(SynchronousTestCase):
    def test_content_length_dropped_beside_transfer_encoding(self):
        raw = [
            (b"Transfer-Encoding", [b"chunked"]),
            (b"Content-Length", [b"100"]),
            (b"Content-Type", [b"text/event-stream"]),
        ]
        self.assertEqual(downstream_headers(raw, BACKEND, GATEWAY), [raw[2]])

    def test_content_length_kept_alone(self):
        raw = [(b"Content-Length", [b"100"]), (b"Content-Encoding", [b"gzip"])]
        self.assertEqual(downstream_headers(raw, BACKEND, GATEWAY), raw)

    def test_hop_by_hop_and_connection_named_removed(self):
        raw = [
            (b"Connection", [b"keep-alive, X-Backend-Hop"]),
            (b"Keep-Alive", [b"timeout=5"]),
            (b"X-Backend-Hop", [b"1"]),
            (b"Proxy-Authenticate", [b"Basic"]),
            (b"Set-Cookie", [b"a=1", b"b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT"]),
        ]
        self.assertEqual(downstream_headers(raw, BACKEND, GATEWAY), [raw[4]])

    def test_location_rewritten(self):
        raw = [(b"Location", [b"https://user-space.hf.space/login?next=/"])]
        self.assertEqual(
            downstream_headers(raw, BACKEND, GATEWAY),
            [(b"Location", [GATEWAY + b"/login?next=/"])],
        )

    def test_foreign_location_untouched(self):
        raw = [(b"Location", [b"https://huggingface.co/login"])]
        self.assertEqual(downstream_headers(raw, BACKEND, GATEWAY), raw)


class ResponseShapesTests(SynchronousTestCase):
    """ResponseShapes gives what downstream_headers gives, shape after shape."""

    CASES = [
        [(b"Content-Type", b"text/plain"), (b"Content-Length", b"3")],
        [(b"Connection", b"keep-alive"), (b"Keep-Alive", b"timeout=5"), (b"X-A", b"1")],
        [(b"connection", b"X-Hop, close"), (b"X-Hop", b"secret"), (b"Set-Cookie", b"a=1"),
         (b"set-cookie", b"b=2 ")],
        [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"10"), (b"ETag", b'"x"')],
        [(b"Connection", b"X-One"), (b"Connection", b"X-Two"), (b"X-One", b"1"), (b"X-Two", b"2"),
         (b"X-Three", b"3"), (b"Upgrade", b"h2c")],
        [],
    ]

    def test_same_as_downstream_headers(self):
        shapes = ResponseShapes()
        for _ in range(2):  # learnt, then applied from what was learnt
            for pairs in self.CASES:
                grouped = [(name, [value.strip()]) for name, value in pairs]
                headers, content_type, location = shapes.end_to_end(pairs)
                self.assertEqual(headers, downstream_headers(grouped, BACKEND, GATEWAY), pairs)
                self.assertFalse(location)
                self.assertEqual(content_type, b"text/plain" if pairs is self.CASES[0] else None)

    def test_connection_values_are_part_of_the_shape(self):
        shapes = ResponseShapes()
        names = [(b"Connection", b"X-A"), (b"X-A", b"1"), (b"X-B", b"2")]
        self.assertEqual(shapes.end_to_end(names)[0], [(b"X-B", [b"2"])])
        other = [(b"Connection", b"X-B"), (b"X-A", b"1"), (b"X-B", b"2")]
        self.assertEqual(shapes.end_to_end(other)[0], [(b"X-A", [b"1"])])

    def test_connection_values_kept_are_bounded(self):
        shapes = ResponseShapes()
        for i in range(ResponseShapes.MAX_CONNECTION_VALUES + 10):
            pairs = [(b"Connection", b"X-Hop, t%d" % i), (b"X-Hop", b"hop"), (b"X-Kept", b"v")]
            self.assertEqual(shapes.end_to_end(pairs)[0], [(b"X-Kept", [b"v"])])
        [(_, plans)] = shapes._shapes.values()
        self.assertEqual(len(plans), ResponseShapes.MAX_CONNECTION_VALUES)

    def test_location_is_reported(self):
        _, _, location = ResponseShapes().end_to_end([(b"location", b"/next")])
        self.assertTrue(location)

    def test_shapes_kept_are_bounded(self):
        shapes = ResponseShapes()
        for i in range(ResponseShapes.MAX_SHAPES + 50):
            headers, _, _ = shapes.end_to_end([(b"X-%d" % i, b"v")])
            self.assertEqual(headers, [(b"X-%d" % i, [b"v"])])
        self.assertEqual(len(shapes._shapes), ResponseShapes.MAX_SHAPES)


class PrefixTests(SynchronousTestCase):
    """A route's stripped prefix: X-Forwarded-Prefix up, Location down."""

    BACKEND = (b"https", b"backend.example", 443)

    def headers(self, raw, prefix, trust=NO_PROXY, peer=b"10.0.0.1"):
        return upstream_headers(raw, backend_host=b"backend.example", peer=peer, proto=b"https",
                                token=None, token_header=b"authorization", trust_proxy=trust,
                                prefix=prefix)

    def test_prefix_sent_and_forgery_dropped(self):
        out = dict(self.headers([(b"X-Forwarded-Prefix", [b"/evil"])], b"/chat"))
        self.assertEqual(out[b"X-Forwarded-Prefix"], [b"/chat"])
        self.assertNotIn(b"X-Forwarded-Prefix", dict(self.headers([], None)))
        self.assertNotIn(b"X-Forwarded-Prefix",
                         dict(self.headers([(b"X-Forwarded-Prefix", [b"/evil"])], None)))

    def test_a_trusted_proxy_prefix_comes_first(self):
        out = dict(self.headers([(b"X-Forwarded-Prefix", [b"/outer/"])], b"/chat", ONE_HOP))
        self.assertEqual(out[b"X-Forwarded-Prefix"], [b"/outer/chat"])

    def test_location_lands_under_the_prefix(self):
        gw = b"https://gw.example"
        cases = [
            (b"/login", b"/chat/login"),
            (b"/", b"/chat/"),
            (b"/chat/already", b"/chat/already"),
            (b"/chatter", b"/chat/chatter"),
            (b"https://backend.example/login?x=1", b"https://gw.example/chat/login?x=1"),
            (b"https://elsewhere.example/login", b"https://elsewhere.example/login"),
            (b"relative", b"relative"),
            (b"//elsewhere.example/x", b"//elsewhere.example/x"),
        ]
        for location, expected in cases:
            self.assertEqual(rewrite_location(location, self.BACKEND, gw, b"/chat"), expected,
                             location)

    def test_websocket_origin_of_the_gateway_becomes_the_upstreams(self):
        raw = [(b"Origin", [b"http://GW.example:8080"]), (b"Host", [b"backend.example"])]
        out = origin_for_upstream(raw, b"http://gw.example:8080", b"https://backend.example")
        self.assertEqual(out[0], (b"Origin", [b"https://backend.example"]))
        foreign = [(b"Origin", [b"https://evil.example"])]
        self.assertEqual(origin_for_upstream(foreign, b"http://gw.example:8080", b"https://b"),
                         foreign)
        self.assertEqual(origin_for_upstream(raw, None, b"https://b"), raw)

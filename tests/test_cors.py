"""Tests for L{wighaven.proxy.cors.CorsPolicy}: which origins are allowed, what
counts as a preflight, the headers of the gateway's 204 preflight answer,
and how the backend's CORS headers are replaced for an allowed origin and
left alone for any other.
"""

from twisted.trial.unittest import SynchronousTestCase

from wighaven.proxy.cors import CorsPolicy

ORIGIN = b"https://app.example"


def values_of(headers, name):
    return [v for n, values in headers for v in values if n.lower() == name.lower()]


class AllowsTests(SynchronousTestCase):
    def test_listed_origins(self):
        policy = CorsPolicy(["https://app.example", "http://localhost:3000"])
        for origin in (b"https://app.example", b"HTTPS://App.Example", b"https://app.example/",
                       b"http://localhost:3000"):
            self.assertTrue(policy.allows(origin), origin)
        for origin in (None, b"", b"https://evil.example", b"http://app.example",
                       b"https://app.example:8443", b"https://app.example.evil.example",
                       b"http://localhost:3001", b"null"):
            self.assertFalse(policy.allows(origin), origin)

    def test_star_allows_any_origin(self):
        policy = CorsPolicy(["*"])
        for origin in (b"https://app.example", b"http://anything.test:1"):
            self.assertTrue(policy.allows(origin))
        for origin in (None, b""):
            self.assertFalse(policy.allows(origin))


class PreflightTests(SynchronousTestCase):
    def test_is_preflight(self):
        self.assertTrue(CorsPolicy.is_preflight(b"OPTIONS", ORIGIN, b"POST"))
        for method, origin, requested in [
            (b"GET", ORIGIN, b"POST"),
            (b"OPTIONS", None, b"POST"),
            (b"OPTIONS", b"", b"POST"),
            (b"OPTIONS", ORIGIN, None),
            (b"OPTIONS", ORIGIN, b""),
        ]:
            self.assertFalse(CorsPolicy.is_preflight(method, origin, requested))

    def test_preflight_headers(self):
        headers = CorsPolicy(["https://app.example"]).preflight_headers(ORIGIN, None)
        self.assertEqual(
            dict(headers),
            {
                b"Access-Control-Allow-Origin": [ORIGIN],
                b"Access-Control-Allow-Credentials": [b"true"],
                b"Access-Control-Allow-Methods": [b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"],
                b"Access-Control-Max-Age": [b"600"],
                b"Vary": [b"Origin"],
            },
        )

    def test_preflight_allows_only_configured_headers(self):
        """Requested headers are never copied blindly: only CORS_ALLOW_HEADERS pass."""
        policy = CorsPolicy(["https://app.example"], ["content-type", "x-request-id"])
        headers = policy.preflight_headers(ORIGIN, b"Content-Type, X-Custom, x-request-id")
        self.assertEqual(
            values_of(headers, b"access-control-allow-headers"), [b"content-type, x-request-id"]
        )
        headers = policy.preflight_headers(ORIGIN, b"X-Evil, Cookie")
        self.assertEqual(values_of(headers, b"access-control-allow-headers"), [])

    def test_star_preflight_is_the_wildcard_without_credentials(self):
        headers = CorsPolicy(["*"], ["content-type"]).preflight_headers(ORIGIN, b"content-type")
        self.assertEqual(values_of(headers, b"access-control-allow-origin"), [b"*"])
        self.assertEqual(values_of(headers, b"access-control-allow-credentials"), [])
        self.assertEqual(values_of(headers, b"access-control-allow-headers"), [b"content-type"])


class WildcardTests(SynchronousTestCase):
    """C{*} is the standard wildcard: any origin may read, never with credentials."""

    def test_star_never_echoes_with_credentials(self):
        out = CorsPolicy(["*"]).response_headers(
            [(b"Access-Control-Allow-Credentials", [b"true"])], b"https://evil.example"
        )
        self.assertEqual(values_of(out, b"access-control-allow-origin"), [b"*"])
        self.assertEqual(values_of(out, b"access-control-allow-credentials"), [])
        self.assertEqual(values_of(out, b"vary"), [b"Origin"])

    def test_named_origin_beside_star_keeps_credentials(self):
        policy = CorsPolicy(["*", "https://app.example"])
        out = policy.response_headers([], ORIGIN)
        self.assertEqual(values_of(out, b"access-control-allow-origin"), [ORIGIN])
        self.assertEqual(values_of(out, b"access-control-allow-credentials"), [b"true"])
        out = policy.response_headers([], b"https://other.example")
        self.assertEqual(values_of(out, b"access-control-allow-origin"), [b"*"])
        self.assertEqual(values_of(out, b"access-control-allow-credentials"), [])


class ResponseHeadersTests(SynchronousTestCase):
    policy = CorsPolicy(["https://app.example"])

    def test_disallowed_origin_untouched(self):
        headers = [
            (b"Access-Control-Allow-Origin", [b"*"]),
            (b"Content-Type", [b"text/plain"]),
        ]
        for origin in (None, b"https://evil.example"):
            self.assertEqual(self.policy.response_headers(list(headers), origin), headers)

    def test_backend_cors_replaced(self):
        headers = [
            (b"Access-Control-Allow-Origin", [b"*"]),
            (b"Access-Control-Allow-Credentials", [b"false"]),
            (b"access-control-expose-headers", [b"X-Secret"]),
            (b"Content-Type", [b"application/json"]),
        ]
        out = self.policy.response_headers(headers, ORIGIN)
        self.assertEqual(
            out,
            [
                (b"Content-Type", [b"application/json"]),
                (b"Access-Control-Allow-Origin", [ORIGIN]),
                (b"Access-Control-Allow-Credentials", [b"true"]),
                (b"Vary", [b"Origin"]),
            ],
        )

    def test_vary_extended(self):
        out = self.policy.response_headers([(b"Vary", [b"Accept-Encoding"])], ORIGIN)
        self.assertEqual(values_of(out, b"vary"), [b"Accept-Encoding", b"Origin"])

    def test_vary_matched_on_whole_names(self):
        """X-Original-URL merely contains "origin": Origin must still be added."""
        out = self.policy.response_headers([(b"Vary", [b"X-Original-URL"])], ORIGIN)
        self.assertEqual(values_of(out, b"vary"), [b"X-Original-URL", b"Origin"])

    def test_vary_already_covers_origin(self):
        for vary in ([b"Accept-Encoding, Origin"], [b"origin"], [b"*"], [b"Accept", b" * "]):
            out = self.policy.response_headers([(b"Vary", list(vary))], ORIGIN)
            self.assertEqual(values_of(out, b"vary"), vary)

    def test_other_headers_and_duplicates_kept(self):
        headers = [(b"Set-Cookie", [b"a=1", b"b=2"]), (b"Cache-Control", [b"no-store"])]
        out = self.policy.response_headers(list(headers), ORIGIN)
        self.assertEqual(out[:2], headers)

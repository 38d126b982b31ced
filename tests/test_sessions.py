"""Browser sessions (wighaven.auth.sessions): the signed cookie, its CSRF
token, the cookie helpers and the same-origin check."""

import time

import jwt
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from wighaven.auth.sessions import (
    DEV_SESSION_COOKIE, SESSION_AUDIENCE, SESSION_COOKIE, SessionTokens, cookie_value,
    is_loopback_http, new_session_id, same_origin, session_cookie_name, session_id_hash,
    set_cookie, without_cookies,
)
from wighaven.auth.tokens import InvalidToken, TokenKeys
from wighaven.config.settings import ConfigError

SECRET = "k" * 40
OLD = "o" * 40
OTHER = "x" * 40
OURS = b"https://gw.example.org"


def real_clock():
    """A Clock at the real time (PyJWT checks iat/nbf against the real clock too)."""
    clock = Clock()
    clock.advance(time.time())
    return clock


def headers(**values):
    h = Headers()
    for name, value in values.items():
        h.setRawHeaders(name.replace("_", "-").encode("ascii"), [value])
    return h


class SessionTokenTests(SynchronousTestCase):
    def setUp(self):
        self.clock = real_clock()
        self.sessions = SessionTokens(SECRET, clock=self.clock.seconds)

    def issue(self, sessions=None, ttl=600, **kwargs):
        args = dict(username="alice", user_id=7, token_version=3, session_id="sid-1",
                    via="password", ttl=ttl, orgs=("acme",))
        args.update(kwargs)
        return (sessions or self.sessions).issue(**args)

    def test_round_trip(self):
        claims = self.sessions.verify(self.issue())
        self.assertEqual(claims["sub"], "alice")
        self.assertEqual(claims["uid"], 7)
        self.assertEqual(claims["ver"], 3)
        self.assertEqual(claims["sid"], "sid-1")
        self.assertEqual(claims["via"], "password")
        self.assertEqual(claims["orgs"], ["acme"])
        self.assertEqual(claims["aud"], SESSION_AUDIENCE)
        self.assertEqual(claims["exp"] - claims["iat"], 600)

    def test_secret_not_in_cookie(self):
        self.assertNotIn(SECRET, self.issue())

    def test_access_token_is_not_a_session(self):
        access = TokenKeys(SECRET, clock=self.clock.seconds).issue("alice", 600, uid=7, ver=3,
                                                                  sid="sid-1")
        self.assertRaises(InvalidToken, self.sessions.verify, access)

    def test_session_is_not_an_access_token(self):
        keys = TokenKeys(SECRET, clock=self.clock.seconds)
        self.assertRaises(InvalidToken, keys.verify, self.issue())

    def test_audience_is_checked_even_when_signature_is_good(self):
        # The same derived key signs both kinds; only the audience tells them apart.
        token = self.issue()
        self.assertEqual(jwt.get_unverified_header(token)["kid"],
                         TokenKeys(SECRET).kid)
        self.assertRaises(InvalidToken, TokenKeys(SECRET, clock=self.clock.seconds).verify, token)

    def test_other_secret_refused(self):
        other = SessionTokens(OTHER, clock=self.clock.seconds)
        self.assertRaises(InvalidToken, self.sessions.verify, self.issue(other))

    def test_garbage_refused(self):
        for value in ["", "x", "a.b.c", self.issue()[:-3] + "AAA"]:
            self.assertRaises(InvalidToken, self.sessions.verify, value)

    def test_good_until_expiry(self):
        token = self.issue(ttl=60)
        self.clock.advance(55)
        self.assertEqual(self.sessions.verify(token)["sub"], "alice")

    def test_expired_refused(self):
        token = self.issue(ttl=60)
        self.clock.advance(60 + 10)
        self.assertRaises(InvalidToken, self.sessions.verify, token)

    def test_expired_refused_even_after_a_good_verify(self):
        token = self.issue(ttl=60)
        self.sessions.verify(token)  # now remembered
        self.clock.advance(60 + 10)
        self.assertRaises(InvalidToken, self.sessions.verify, token)

    def test_previous_secret_still_verifies(self):
        old_cookie = self.issue(SessionTokens(OLD, clock=self.clock.seconds))
        rotated = SessionTokens(SECRET, [OLD], clock=self.clock.seconds)
        self.assertEqual(rotated.verify(old_cookie)["uid"], 7)
        self.assertRaises(InvalidToken, self.sessions.verify, old_cookie)

    def test_previous_secret_never_signs(self):
        rotated = SessionTokens(SECRET, [OLD], clock=self.clock.seconds)
        cookie = self.issue(rotated)
        self.assertEqual(self.sessions.verify(cookie)["uid"], 7)
        self.assertRaises(InvalidToken, SessionTokens(OLD, clock=self.clock.seconds).verify,
                          cookie)

    def test_short_secret_refused(self):
        self.assertRaises(ConfigError, SessionTokens, "short")
        self.assertRaises(ConfigError, SessionTokens, SECRET, ["short"])

    def test_default_clock(self):
        sessions = SessionTokens(SECRET)
        token = sessions.issue("alice", 1, 0, "s", "password", 600)
        self.assertEqual(sessions.verify(token)["sid"], "s")


class CsrfTests(SynchronousTestCase):
    def setUp(self):
        self.sessions = SessionTokens(SECRET)

    def test_deterministic_per_session(self):
        self.assertEqual(self.sessions.csrf_token("sid-1"), self.sessions.csrf_token("sid-1"))
        self.assertEqual(SessionTokens(SECRET).csrf_token("sid-1"),
                         self.sessions.csrf_token("sid-1"))

    def test_different_per_session(self):
        self.assertNotEqual(self.sessions.csrf_token("sid-1"), self.sessions.csrf_token("sid-2"))

    def test_different_per_secret(self):
        self.assertNotEqual(SessionTokens(OTHER).csrf_token("sid-1"),
                            self.sessions.csrf_token("sid-1"))

    def test_token_shape(self):
        token = self.sessions.csrf_token("sid-1")
        self.assertEqual(len(token), 43)  # 32 bytes, urlsafe base64 without padding
        self.assertNotIn("=", token)
        self.assertNotIn("sid-1", token)

    def test_ok(self):
        self.assertTrue(self.sessions.csrf_ok("sid-1", self.sessions.csrf_token("sid-1")))

    def test_refused(self):
        good = self.sessions.csrf_token("sid-1")
        self.assertFalse(self.sessions.csrf_ok("sid-1", None))
        self.assertFalse(self.sessions.csrf_ok("sid-1", ""))
        self.assertFalse(self.sessions.csrf_ok("sid-1", good[:-1]))
        self.assertFalse(self.sessions.csrf_ok("sid-1", good + "x"))
        self.assertFalse(self.sessions.csrf_ok("sid-1", good.upper()))
        self.assertFalse(self.sessions.csrf_ok("sid-1", self.sessions.csrf_token("sid-2")))
        self.assertFalse(self.sessions.csrf_ok("sid-1", "sid-1"))
        self.assertFalse(self.sessions.csrf_ok("sid-1", "\u00e9" * 43))

    def test_no_session_refused(self):
        good = self.sessions.csrf_token("sid-1")
        self.assertFalse(self.sessions.csrf_ok(None, good))
        self.assertFalse(self.sessions.csrf_ok("", good))
        self.assertFalse(self.sessions.csrf_ok("", self.sessions.csrf_token("")))


class SessionIdTests(SynchronousTestCase):
    def test_new_ids_are_random_and_url_safe(self):
        ids = {new_session_id() for _ in range(50)}
        self.assertEqual(len(ids), 50)
        for value in ids:
            self.assertRegex(value, r"^[A-Za-z0-9_-]{32}$")

    def test_hash(self):
        self.assertEqual(session_id_hash("abc"), session_id_hash("abc"))
        self.assertNotEqual(session_id_hash("abc"), session_id_hash("abd"))
        self.assertEqual(len(session_id_hash("abc")), 32)
        self.assertNotIn(b"abc", session_id_hash("abc"))


class LoopbackTests(SynchronousTestCase):
    def test_loopback_http(self):
        for origin in [b"http://127.0.0.1:8080", b"http://127.0.0.1", b"http://localhost",
                       b"http://localhost:7860", b"http://LOCALHOST", b"http://[::1]:1",
                       b"http://[::1]"]:
            self.assertTrue(is_loopback_http(origin), origin)

    def test_not_loopback_http(self):
        for origin in [b"https://127.0.0.1", b"https://localhost", b"http://127.0.0.2.evil",
                       b"http://localhost.evil.com", b"http://example.com", b"http://[::2]:1",
                       b"http://127.0.0.1.evil.com:80", b"http://[::1", b"http://",
                       b"ws://localhost", b"localhost", b"http://evil.com/localhost", b"", None]:
            self.assertFalse(is_loopback_http(origin), origin)

    def test_cookie_name(self):
        self.assertEqual(session_cookie_name(b"http://127.0.0.1:8080"), DEV_SESSION_COOKIE)
        self.assertEqual(session_cookie_name(b"http://localhost"), b"wh_session")
        self.assertEqual(session_cookie_name(b"https://127.0.0.1"), SESSION_COOKIE)
        self.assertEqual(session_cookie_name(b"https://gw.example.org"), b"__Host-wh_session")
        self.assertEqual(session_cookie_name(b"http://gw.example.org"), SESSION_COOKIE)
        self.assertEqual(session_cookie_name(None), SESSION_COOKIE)


class SetCookieTests(SynchronousTestCase):
    def attributes(self, value):
        parts = [p.strip() for p in value.split(b";")]
        return parts[0], parts[1:]

    def test_host_cookie(self):
        pair, attributes = self.attributes(set_cookie(SESSION_COOKIE, b"v.a.l", 3600))
        self.assertEqual(pair, b"__Host-wh_session=v.a.l")
        self.assertEqual(sorted(attributes),
                         sorted([b"Path=/", b"Max-Age=3600", b"HttpOnly", b"SameSite=Lax",
                                 b"Secure"]))

    def test_dev_cookie_not_secure(self):
        pair, attributes = self.attributes(set_cookie(DEV_SESSION_COOKIE, b"v", 60))
        self.assertEqual(pair, b"wh_session=v")
        self.assertNotIn(b"Secure", attributes)
        self.assertIn(b"HttpOnly", attributes)
        self.assertIn(b"SameSite=Lax", attributes)
        self.assertIn(b"Path=/", attributes)
        self.assertIn(b"Max-Age=60", attributes)

    def test_no_domain(self):
        for name in (SESSION_COOKIE, DEV_SESSION_COOKIE):
            self.assertNotIn(b"domain", set_cookie(name, b"v", 1).lower())

    def test_clearing(self):
        self.assertIn(b"Max-Age=0", set_cookie(SESSION_COOKIE, b"", 0))


class CookieValueTests(SynchronousTestCase):
    def test_none_and_empty(self):
        self.assertIsNone(cookie_value(None, SESSION_COOKIE))
        self.assertIsNone(cookie_value([], SESSION_COOKIE))
        self.assertIsNone(cookie_value([b""], SESSION_COOKIE))

    def test_one_pair(self):
        self.assertEqual(cookie_value([b"__Host-wh_session=abc"], SESSION_COOKIE), b"abc")

    def test_several_pairs(self):
        self.assertEqual(
            cookie_value([b"a=1; __Host-wh_session=abc; b=2"], SESSION_COOKIE), b"abc")
        self.assertEqual(cookie_value([b"a=1;__Host-wh_session=abc;b=2"], SESSION_COOKIE),
                         b"abc")

    def test_several_headers(self):
        self.assertEqual(
            cookie_value([b"a=1", b"b=2; __Host-wh_session=abc", b"c=3"], SESSION_COOKIE), b"abc")

    def test_first_value_wins(self):
        self.assertEqual(cookie_value([b"__Host-wh_session=one; __Host-wh_session=two"],
                                      SESSION_COOKIE), b"one")
        self.assertEqual(cookie_value([b"__Host-wh_session=one", b"__Host-wh_session=two"],
                                      SESSION_COOKIE), b"one")

    def test_name_merely_containing_ours_does_not_match(self):
        self.assertIsNone(cookie_value([b"x__Host-wh_session=evil"], SESSION_COOKIE))
        self.assertIsNone(cookie_value([b"__Host-wh_session_x=evil"], SESSION_COOKIE))
        self.assertIsNone(cookie_value([b"a=__Host-wh_session=evil"], SESSION_COOKIE))
        self.assertEqual(
            cookie_value([b"x__Host-wh_session=evil; __Host-wh_session=good"], SESSION_COOKIE),
            b"good")

    def test_name_inside_another_cookies_value_does_not_match(self):
        # A cookie set by a sibling domain (no __Host- protection) whose value
        # holds " __Host-wh_session=..." must not pass for ours.
        self.assertIsNone(cookie_value([b"a=x __Host-wh_session=evil"], SESSION_COOKIE))
        self.assertIsNone(cookie_value([b"a=x\t__Host-wh_session=evil"], SESSION_COOKIE))
        self.assertEqual(
            cookie_value([b"a=x __Host-wh_session=evil; __Host-wh_session=good"], SESSION_COOKIE),
            b"good")

    def test_whitespace_around_pairs(self):
        self.assertEqual(cookie_value([b"a=1;  __Host-wh_session=abc ; b=2"], SESSION_COOKIE),
                         b"abc")

    def test_dev_name_is_not_found_inside_host_name(self):
        self.assertIsNone(cookie_value([b"__Host-wh_session=abc"], DEV_SESSION_COOKIE))
        self.assertEqual(cookie_value([b"__Host-wh_session=abc; wh_session=dev"],
                                      DEV_SESSION_COOKIE), b"dev")

    def test_value_with_equals_sign(self):
        self.assertEqual(cookie_value([b"__Host-wh_session=a=b"], SESSION_COOKIE), b"a=b")

    def test_pair_without_equals_ignored(self):
        self.assertIsNone(cookie_value([b"__Host-wh_session"], SESSION_COOKIE))

    def test_empty_value(self):
        self.assertEqual(cookie_value([b"__Host-wh_session="], SESSION_COOKIE), b"")


class WithoutCookiesTests(SynchronousTestCase):
    names = (SESSION_COOKIE, DEV_SESSION_COOKIE)

    def test_other_cookies_kept(self):
        self.assertEqual(
            without_cookies([b"a=1; __Host-wh_session=x; b=2"], self.names), [b"a=1; b=2"])

    def test_headers_without_ours_untouched(self):
        self.assertEqual(without_cookies([b"a=1;b=2", b"c=3"], self.names), [b"a=1;b=2", b"c=3"])

    def test_empty_headers_dropped(self):
        self.assertEqual(
            without_cookies([b"__Host-wh_session=x", b"c=3", b"wh_session=y; __Host-wh_session=z"],
                            self.names), [b"c=3"])
        self.assertEqual(without_cookies([b"__Host-wh_session=x"], self.names), [])

    def test_both_names_dropped(self):
        self.assertEqual(without_cookies([b"wh_session=d; a=1; __Host-wh_session=x"], self.names),
                         [b"a=1"])

    def test_names_merely_containing_ours_kept(self):
        self.assertEqual(
            without_cookies([b"x__Host-wh_session=1; __Host-wh_session=2; my_wh_session=3"],
                            self.names), [b"x__Host-wh_session=1; my_wh_session=3"])

    def test_nothing(self):
        self.assertEqual(without_cookies([], self.names), [])


class SameOriginTests(SynchronousTestCase):
    def test_origin_match(self):
        self.assertTrue(same_origin(headers(origin=OURS), [OURS]))

    def test_one_of_several(self):
        self.assertTrue(same_origin(headers(origin=OURS), [None, b"http://127.0.0.1:1", OURS]))

    def test_origin_mismatch(self):
        for origin in [b"https://evil.com", b"http://gw.example.org", b"https://gw.example.org:8443",
                       b"https://gw.example.org.evil.com", b"https://gw.example.org/"]:
            self.assertFalse(same_origin(headers(origin=origin), [OURS]), origin)

    def test_origin_mismatch_not_rescued_by_referer(self):
        self.assertFalse(same_origin(
            headers(origin=b"https://evil.com", referer=OURS + b"/page"), [OURS]))

    def test_null_origin_alone_refused(self):
        self.assertFalse(same_origin(headers(origin=b"null"), [OURS]))

    def test_null_origin_with_foreign_referer_refused(self):
        self.assertFalse(same_origin(
            headers(origin=b"null", referer=b"https://evil.com/x"), [OURS]))

    def test_null_origin_falls_back_to_referer(self):
        self.assertTrue(same_origin(
            headers(origin=b"null", referer=OURS + b"/_gateway/login"), [OURS]))

    def test_sec_fetch_site_when_origin_is_null(self):
        self.assertTrue(same_origin(
            headers(origin=b"null", sec_fetch_site=b"same-origin"), [OURS]))
        for site in (b"cross-site", b"same-site", b"none", b"SAME-ORIGIN"):
            self.assertFalse(same_origin(headers(origin=b"null", sec_fetch_site=site), [OURS]),
                             site)

    def test_sec_fetch_site_before_referer(self):
        self.assertFalse(same_origin(
            headers(sec_fetch_site=b"cross-site", referer=OURS + b"/x"), [OURS]))
        self.assertTrue(same_origin(
            headers(sec_fetch_site=b"same-origin", referer=b"https://evil.com/"), [OURS]))

    def test_origin_before_sec_fetch_site(self):
        self.assertFalse(same_origin(
            headers(origin=b"https://evil.com", sec_fetch_site=b"same-origin"), [OURS]))
        self.assertTrue(same_origin(headers(origin=OURS, sec_fetch_site=b"cross-site"), [OURS]))

    def test_referer_fallback(self):
        self.assertTrue(same_origin(headers(referer=OURS + b"/_gateway/login?next=%2F"), [OURS]))
        self.assertTrue(same_origin(headers(referer=OURS), [OURS]))

    def test_foreign_referer_refused(self):
        self.assertFalse(same_origin(headers(referer=b"https://evil.com/"), [OURS]))

    def test_referer_with_our_origin_in_its_path_refused(self):
        for referer in [b"https://evil.com/https://gw.example.org/",
                        b"https://evil.com/?u=https://gw.example.org",
                        b"https://gw.example.org.evil.com/",
                        b"https://gw.example.org@evil.com/",
                        b"https://evil.com#https://gw.example.org"]:
            self.assertFalse(same_origin(headers(referer=referer), [OURS]), referer)

    def test_bad_referer_refused(self):
        for referer in [b"", b"/relative", b"ftp://gw.example.org/", b"https:///x",
                        "https://gw.example.org/\u00e9".encode("utf-8"), b"http://[::1"]:
            self.assertFalse(same_origin(headers(referer=referer), [OURS]), referer)

    def test_neither_refused(self):
        self.assertFalse(same_origin(Headers(), [OURS]))

    def test_no_origins_of_ours(self):
        self.assertFalse(same_origin(headers(origin=OURS), []))
        self.assertFalse(same_origin(headers(origin=OURS), [None]))
        # "null" never counts as an origin of ours, even if one were configured so.
        self.assertFalse(same_origin(headers(origin=b"null"), [None, b"null"]))

    def test_case_insensitive(self):
        self.assertTrue(same_origin(headers(origin=b"HTTPS://GW.Example.ORG"), [OURS]))
        self.assertTrue(same_origin(headers(origin=OURS), [b"https://GW.EXAMPLE.org"]))
        self.assertTrue(same_origin(headers(referer=b"HTTPS://GW.EXAMPLE.ORG/Path"), [OURS]))
        self.assertTrue(same_origin(headers(referer=OURS + b"/x"), [b"HTTPS://GW.example.org"]))

    def test_loopback_port(self):
        self.assertTrue(same_origin(headers(origin=b"http://127.0.0.1:8080"),
                                    [b"http://127.0.0.1:8080"]))
        self.assertFalse(same_origin(headers(origin=b"http://127.0.0.1:8081"),
                                     [b"http://127.0.0.1:8080"]))
        self.assertTrue(same_origin(headers(referer=b"http://[::1]:8080/x"),
                                    [b"http://[::1]:8080"]))

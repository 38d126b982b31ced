"""The gate (wighaven.auth.gate) over an IdentityView (wighaven.auth.identities)
of a fake store: credentials, refusals, what the Space is told, and the
refusal answers."""

import base64
import json
import time

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from wighaven.auth import keys
from wighaven.proxy.headers import upstream_headers
from wighaven.auth.gate import (
    FORBIDDEN, INVALID_CREDENTIAL, LOGIN_PATH, SIGN_IN_REQUIRED, WRONG_ROUTE, Gate, UpstreamAuth,
    answer_refusal,
)
from wighaven.auth.identities import IdentityView
from wighaven.auth.policy import PUBLIC, SIGNED_IN, parse_access
from wighaven.auth.sessions import SessionTokens, session_id_hash
from wighaven.auth.tokens import TokenKeys

SECRET = "g" * 40
OTHER_SECRET = "h" * 40
METRICS = "m" * 20



_SET_BY_THE_GATEWAY = frozenset([b"host", b"x-forwarded-for", b"x-forwarded-host",
                                 b"x-forwarded-proto"])


def upstream_of(auth, headers):
    """The headers the Space gets (less those the gateway always sets) with C{auth}."""
    out = upstream_headers(headers, backend_host=b"space", peer=b"127.0.0.1", proto=b"https",
                           token=None, token_header=b"authorization", auth=auth)
    return [(name, values) for name, values in out if name.lower() not in _SET_BY_THE_GATEWAY]

class FakeRevision:
    def __init__(self):
        self.value = b"\0" * 8
        self.n = 0

    def read(self):
        return self.value

    def bump(self):
        self.n += 1
        self.value = self.n.to_bytes(8, "big")


class FakeStore:
    def __init__(self):
        self.revision = FakeRevision()
        self.users = {}
        self.keys = {}
        self.revoked_sessions = set()
        self.loads = 0

    def read_identities(self):
        self.loads += 1
        return {
            "users": [dict(u, roles=list(u["roles"])) for u in self.users.values()],
            "keys": [dict(k) for k in self.keys.values() if k["revoked_at"] is None],
            "revoked_sessions": set(self.revoked_sessions),
        }

    def add_user(self, user_id, username, roles=(), email=None, disabled=False, version=1):
        self.users[user_id] = {"id": user_id, "username": username, "roles": list(roles),
                               "disabled": disabled, "token_version": version, "email": email}

    def add_key(self, user_id, route=None, expires_at=None):
        key_id, whole, digest = keys.new_key()
        self.keys[key_id] = {"id": key_id, "user_id": user_id, "secret_hash": digest,
                             "route": route, "expires_at": expires_at, "revoked_at": None}
        return key_id, whole

    def change(self, bump=True):
        if bump:
            self.revision.bump()


class FakeRequest:
    def __init__(self, headers=None, method=b"GET", uri=b"/", secure=True, host=b"gw.example.org"):
        self.requestHeaders = Headers()
        self.requestHeaders.setRawHeaders(b"host", [host])
        for name, values in (headers or {}).items():
            self.requestHeaders.setRawHeaders(name, values if isinstance(values, list) else [values])
        self.responseHeaders = Headers()
        self.method = method
        self.uri = uri
        self.code = 200
        self.code_message = None
        self._secure = secure

    def isSecure(self):
        return self._secure

    def setResponseCode(self, code, message=None):
        self.code = code
        self.code_message = message

    def header(self, name):
        values = self.responseHeaders.getRawHeaders(name)
        return values[0] if values else None


def jwt_shaped(header, payload=None):
    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return "%s.%s.%s" % (b64(header), b64(payload or {}), "c2ln")


class GateTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(time.time())  # PyJWT checks iat against the real time too
        self.store = FakeStore()
        self.store.add_user(1, "alice", roles=["team"], email="alice@example.org")
        self.store.add_user(2, "root", roles=["admin"], email="root@example.org")
        self.store.add_user(3, "bob")
        self.view = IdentityView(self.store)
        self.tokens = TokenKeys(SECRET, clock=self.clock.seconds)
        self.sessions = SessionTokens(SECRET, clock=self.clock.seconds)
        self.gate = Gate(self.view, self.tokens, self.sessions, self.clock, metrics_token=METRICS)

    def jwt(self, user_id=1, username="alice", version=1, ttl=600):
        return self.tokens.issue(username, ttl, uid=user_id, ver=version).encode("ascii")

    def session(self, user_id=1, username="alice", version=1, sid="sid-1", ttl=3600,
                via="password", orgs=()):
        return self.sessions.issue(username, user_id, version, sid, via, ttl,
                                   orgs=orgs).encode("ascii")

    def bearer(self, token, **kwargs):
        return FakeRequest({b"authorization": b"Bearer " + token}, **kwargs)

    def cookie(self, value, name=b"__Host-wh_session", extra=b"", **kwargs):
        return FakeRequest({b"cookie": extra + name + b"=" + value}, **kwargs)

    def identify(self, request):
        return self.gate.identify(request)


class CredentialTests(GateTestCase):
    def test_bearer_jwt(self):
        identity = self.identify(self.bearer(self.jwt()))
        self.assertEqual((identity.user, identity.user_id, identity.roles, identity.via,
                          identity.email), ("alice", 1, ("team",), "jwt", "alice@example.org"))
        self.assertIsNone(identity.key_route)

    def test_bearer_scheme_case_insensitive(self):
        request = FakeRequest({b"authorization": b"bearer " + self.jwt()})
        self.assertEqual(self.identify(request).user, "alice")
        request = FakeRequest({b"authorization": b"BEARER   " + self.jwt() + b" "})
        self.assertEqual(self.identify(request).user, "alice")

    def test_session_cookie(self):
        request = self.cookie(self.session(via="huggingface", orgs=("Acme", "other")),
                              extra=b"theme=dark; ")
        identity = self.identify(request)
        self.assertEqual((identity.user, identity.via, identity.session_id, identity.orgs),
                         ("alice", "huggingface", "sid-1", ("acme", "other")))
        self.assertTrue(self.gate.seen(request).presented)

    def test_api_key_as_bearer(self):
        key_id, whole = self.store.add_key(1, route="a")
        self.store.change()
        identity = self.identify(self.bearer(whole.encode()))
        self.assertEqual((identity.user, identity.via, identity.key_route, identity.key_id),
                         ("alice", "api_key", "a", key_id))

    def test_api_key_in_x_api_key(self):
        key_id, whole = self.store.add_key(3)
        self.store.change()
        identity = self.identify(FakeRequest({b"x-api-key": whole.encode() + b" "}))
        self.assertEqual((identity.user, identity.via, identity.key_id, identity.key_route),
                         ("bob", "api_key", key_id, None))

    def test_seen_once_per_request(self):
        request = self.bearer(self.jwt())
        self.assertIs(self.gate.seen(request), self.gate.seen(request))

    def test_first_good_credential_decides(self):
        request = FakeRequest({b"authorization": b"Bearer " + self.jwt(),
                               b"cookie": b"__Host-wh_session=" + self.session(3, "bob")})
        self.assertEqual(self.identify(request).user, "alice")

    def test_bad_bearer_counts_as_none(self):
        request = FakeRequest({b"authorization": b"Bearer " + self.jwt()[:-4] + b"AAAA",
                               b"cookie": b"__Host-wh_session=" + self.session(3, "bob")})
        self.assertEqual(self.identify(request).user, "bob")

    def test_no_credential(self):
        request = FakeRequest()
        seen = self.gate.seen(request)
        self.assertIsNone(seen.identity)
        self.assertFalse(seen.presented)
        self.assertIs(self.gate.refusal(request, SIGNED_IN, "default"), SIGN_IN_REQUIRED)

    def test_public_route_needs_nothing(self):
        self.assertIsNone(self.gate.refusal(FakeRequest(), PUBLIC, "default"))
        self.assertIsNone(self.gate.refusal(self.bearer(b"wh_" + b"x" * 10), PUBLIC, "default"))

    def assertInvalid(self, request):
        seen = self.gate.seen(request)
        self.assertIsNone(seen.identity)
        self.assertTrue(seen.presented)
        self.assertIs(self.gate.refusal(request, SIGNED_IN, "default"), INVALID_CREDENTIAL)

    def test_tampered_jwt_invalid(self):
        self.assertInvalid(self.bearer(self.jwt()[:-4] + b"AAAA"))

    def test_expired_jwt_invalid(self):
        token = self.jwt(ttl=60)
        self.assertIsNotNone(self.identify(self.bearer(token)))
        self.clock.advance(60 + 10)
        self.assertInvalid(self.bearer(token))

    def test_session_cookie_as_bearer_invalid(self):
        self.assertInvalid(self.bearer(self.session()))

    def test_access_token_as_cookie_invalid(self):
        self.assertInvalid(self.cookie(self.jwt()))

    def test_bad_cookie_invalid(self):
        self.assertInvalid(self.cookie(b"garbage"))

    def test_expired_cookie_invalid(self):
        value = self.session(ttl=60)
        self.assertIsNotNone(self.identify(self.cookie(value)))
        self.clock.advance(60 + 10)
        self.assertInvalid(self.cookie(value))

    def test_cookie_without_session_id_invalid(self):
        value = self.sessions._keys.issue("alice", 600, uid=1, ver=1, via="password")
        self.assertInvalid(self.cookie(value.encode()))

    def test_unknown_api_key_invalid(self):
        _, whole, _ = keys.new_key()
        self.assertInvalid(self.bearer(whole.encode()))
        self.assertInvalid(FakeRequest({b"x-api-key": whole.encode()}))

    def test_api_key_with_wrong_secret_invalid(self):
        key_id, whole = self.store.add_key(1)
        self.store.change()
        _, other, _ = keys.new_key()
        forged = "wh_%s_%s" % (key_id, keys.parse(other)[1])
        self.assertEqual(keys.parse(forged)[0], key_id)
        self.assertInvalid(self.bearer(forged.encode()))

    def test_api_key_of_missing_user_invalid(self):
        _, whole = self.store.add_key(99)
        self.store.change()
        self.assertInvalid(self.bearer(whole.encode()))

    def test_foreign_bearer_is_no_credential(self):
        for token in [b"hf_abcdefghijklmnop", jwt_shaped({"alg": "HS256", "kid": "nope"}).encode(),
                      TokenKeys(OTHER_SECRET).issue("alice", 600, uid=1, ver=1).encode(),
                      b"wh_short"]:
            seen = self.gate.seen(self.bearer(token))
            self.assertIsNone(seen.identity, token)
            self.assertFalse(seen.presented, token)

    def test_foreign_token_stays_foreign(self):
        foreign = TokenKeys(OTHER_SECRET).issue("x", 600).encode()
        for _ in range(3):
            request = self.bearer(foreign)
            seen = self.gate.seen(request)
            self.assertFalse(seen.presented)
            self.assertEqual(
                dict(upstream_of(seen.upstream, list(request.requestHeaders.getAllRawHeaders())))[
                    b"Authorization"], [b"Bearer " + foreign])

    def test_gateway_token_after_foreign_ones(self):
        self.identify(self.bearer(b"hf_foreign"))
        self.assertEqual(self.identify(self.bearer(self.jwt())).user, "alice")
        self.assertEqual(self.identify(self.bearer(self.jwt())).user, "alice")  # cached

    def test_jwt_shaped_with_odd_header_is_no_credential(self):
        for token in [jwt_shaped({"alg": "HS256", "kid": ["x"]}),
                      jwt_shaped({"alg": "HS256", "kid": {"a": 1}}), "a.b.c", "..",
                      jwt_shaped([1, 2])]:
            seen = self.gate.seen(self.bearer(token.encode()))
            self.assertFalse(seen.presented, token)

    def test_non_key_x_api_key_is_no_credential(self):
        seen = self.gate.seen(FakeRequest({b"x-api-key": b"something-else"}))
        self.assertFalse(seen.presented)


class VerdictCacheTests(GateTestCase):
    def test_same_headers_same_verdict_until_the_token_expires(self):
        token = self.jwt(ttl=60)
        first = self.gate.seen(self.bearer(token))
        self.assertIs(self.gate.seen(self.bearer(token)), first)
        self.clock.advance(60 + 6)  # past exp and the 5 s leeway between machines' clocks
        self.assertIsNone(self.identify(self.bearer(token)))

    def test_nobody_is_asked_again_after_a_minute(self):
        self.assertIsNone(self.identify(self.bearer(b"wh_0123456789abcdef_" + b"A" * 43)))
        self.assertEqual(len(self.gate._seen_cache), 1)
        [(not_after, _)] = self.gate._seen_cache.values()
        self.assertEqual(not_after, self.clock.seconds() + 60)

    def test_big_cookie_piles_are_not_kept(self):
        pile = b"; ".join(b"c%d=%s" % (i, b"x" * 100) for i in range(60)) + b"; "
        self.assertEqual(self.identify(self.cookie(self.session(), extra=pile)).user, "alice")
        self.assertEqual(self.gate._seen_cache, {})
        self.identify(self.cookie(self.session()))
        self.assertEqual(len(self.gate._seen_cache), 1)


class FreshnessTests(GateTestCase):
    def test_token_version_moved(self):
        token = self.jwt(version=1)
        self.assertEqual(self.identify(self.bearer(token)).user, "alice")
        self.store.users[1]["token_version"] = 2
        self.store.change()
        self.assertIsNone(self.identify(self.bearer(token)))
        self.assertTrue(self.gate.seen(self.bearer(token)).presented)
        self.assertEqual(self.identify(self.bearer(self.jwt(version=2))).user, "alice")

    def test_session_of_old_token_version(self):
        value = self.session(version=1)
        self.assertIsNotNone(self.identify(self.cookie(value)))
        self.store.users[1]["token_version"] = 2
        self.store.change()
        self.assertIsNone(self.identify(self.cookie(value)))

    def test_no_reload_without_revision_change(self):
        token = self.jwt()
        self.identify(self.bearer(token))
        loads = self.store.loads
        self.store.users[1]["token_version"] = 2
        self.store.change(bump=False)
        self.assertEqual(self.identify(self.bearer(token)).user, "alice")
        self.assertEqual(self.store.loads, loads)
        self.store.revision.bump()
        self.assertIsNone(self.identify(self.bearer(token)))
        self.assertEqual(self.store.loads, loads + 1)

    def test_one_reload_per_revision(self):
        loads = self.store.loads
        for _ in range(3):
            self.identify(self.bearer(self.jwt()))
        self.assertEqual(self.store.loads, loads)

    def test_disabled_user(self):
        token, value = self.jwt(), self.session()
        _, whole = self.store.add_key(1)
        self.store.change()
        for request in [self.bearer(token), self.cookie(value), self.bearer(whole.encode())]:
            self.assertIsNotNone(self.identify(request))
        self.store.users[1]["disabled"] = True
        self.store.change()
        for request in [self.bearer(token), self.cookie(value), self.bearer(whole.encode())]:
            self.assertIsNone(self.identify(request))
            self.assertIs(self.gate.refusal(request, SIGNED_IN, "default"), INVALID_CREDENTIAL)

    def test_deleted_user(self):
        token = self.jwt()
        self.assertIsNotNone(self.identify(self.bearer(token)))
        del self.store.users[1]
        self.store.change()
        self.assertIsNone(self.identify(self.bearer(token)))

    def test_revoked_session(self):
        value = self.session(sid="sid-9")
        other = self.session(sid="sid-10")
        self.assertIsNotNone(self.identify(self.cookie(value)))
        self.store.revoked_sessions.add(session_id_hash("sid-9"))
        self.store.change()
        self.assertIsNone(self.identify(self.cookie(value)))
        self.assertEqual(self.identify(self.cookie(other)).session_id, "sid-10")

    def test_revoked_api_key(self):
        key_id, whole = self.store.add_key(1)
        self.store.change()
        self.assertIsNotNone(self.identify(self.bearer(whole.encode())))
        self.store.keys[key_id]["revoked_at"] = self.clock.seconds()
        self.store.change()
        self.assertIsNone(self.identify(self.bearer(whole.encode())))

    def test_expired_api_key(self):
        _, whole = self.store.add_key(1, expires_at=self.clock.seconds() + 10)
        self.store.change()
        self.assertIsNotNone(self.identify(self.bearer(whole.encode())))  # now cached
        self.clock.advance(10)
        self.assertIsNone(self.identify(self.bearer(whole.encode())))
        self.assertTrue(self.gate.seen(self.bearer(whole.encode())).presented)

    def test_api_key_already_expired(self):
        _, whole = self.store.add_key(1, expires_at=self.clock.seconds() - 1)
        self.store.change()
        self.assertIsNone(self.identify(FakeRequest({b"x-api-key": whole.encode()})))

    def test_roles_change_seen_at_next_request(self):
        token = self.jwt()
        self.assertEqual(self.identify(self.bearer(token)).roles, ("team",))
        self.store.users[1]["roles"] = ["team", "admin"]
        self.store.change()
        self.assertEqual(self.identify(self.bearer(token)).roles, ("team", "admin"))


class RefusalTests(GateTestCase):
    def test_allowed(self):
        self.assertIsNone(self.gate.refusal(self.bearer(self.jwt()), SIGNED_IN, "default"))
        self.assertIsNone(self.gate.refusal(self.bearer(self.jwt()), parse_access(["role:team"]),
                                            "default"))

    def test_forbidden(self):
        request = self.bearer(self.jwt(3, "bob"))
        self.assertIs(self.gate.refusal(request, parse_access(["role:team"]), "default"),
                      FORBIDDEN)

    def test_admin_passes_requirements(self):
        request = self.bearer(self.jwt(2, "root"))
        self.assertIsNone(self.gate.refusal(request, parse_access(["user:nobody"]), "x"))

    def test_scoped_key(self):
        _, whole = self.store.add_key(1, route="a")
        self.store.change()
        self.assertIsNone(self.gate.refusal(self.bearer(whole.encode()), SIGNED_IN, "a"))
        self.assertIs(self.gate.refusal(self.bearer(whole.encode()), SIGNED_IN, "b"), WRONG_ROUTE)
        self.assertEqual(WRONG_ROUTE.status, 403)

    def test_scoped_key_wrong_route_before_access(self):
        _, whole = self.store.add_key(3, route="a")
        self.store.change()
        self.assertIs(self.gate.refusal(self.bearer(whole.encode()),
                                        parse_access(["role:team"]), "b"), WRONG_ROUTE)
        self.assertIs(self.gate.refusal(self.bearer(whole.encode()),
                                        parse_access(["role:team"]), "a"), FORBIDDEN)

    def test_admin_refusal(self):
        self.assertIsNone(self.gate.admin_refusal(self.bearer(self.jwt(2, "root"))))
        refusal = self.gate.admin_refusal(self.bearer(self.jwt()))
        self.assertEqual((refusal.status, refusal.code), (403, "forbidden"))
        self.assertIs(self.gate.admin_refusal(FakeRequest()), SIGN_IN_REQUIRED)
        self.assertIs(self.gate.admin_refusal(self.bearer(self.jwt()[:-4] + b"AAAA")),
                      INVALID_CREDENTIAL)

    def test_admin_refusal_of_keys(self):
        _, unscoped = self.store.add_key(2)
        _, scoped = self.store.add_key(2, route="a")
        self.store.change()
        self.assertIsNone(self.gate.admin_refusal(self.bearer(unscoped.encode())))
        self.assertEqual(self.gate.admin_refusal(self.bearer(scoped.encode())).status, 403)


class UpstreamTests(GateTestCase):
    def upstream(self, request):
        seen = self.gate.seen(request)
        incoming = [(name, values) for name, values in request.requestHeaders.getAllRawHeaders()]
        return dict(upstream_of(seen.upstream, incoming))

    def test_gateway_jwt_dropped_identity_added(self):
        out = self.upstream(FakeRequest({b"authorization": b"Bearer " + self.jwt(),
                                         b"x-other": b"1"}))
        self.assertNotIn(b"Authorization", out)
        self.assertEqual(out[b"X-Forwarded-User"], [b"alice"])
        self.assertEqual(out[b"X-Forwarded-Email"], [b"alice@example.org"])
        self.assertEqual(out[b"X-Forwarded-Groups"], [b"team"])
        self.assertEqual(out[b"X-Other"], [b"1"])

    def test_api_keys_dropped(self):
        _, whole = self.store.add_key(1)
        self.store.change()
        out = self.upstream(FakeRequest({b"x-api-key": whole.encode(),
                                         b"authorization": b"Bearer " + whole.encode()}))
        self.assertNotIn(b"X-Api-Key", out)
        self.assertNotIn(b"Authorization", out)
        self.assertEqual(out[b"X-Forwarded-User"], [b"alice"])

    def test_invalid_gateway_credentials_dropped_too(self):
        _, whole, _ = keys.new_key()
        out = self.upstream(FakeRequest({b"x-api-key": whole.encode(),
                                         b"authorization": b"Bearer " + self.jwt()[:-4] + b"AAAA"}))
        self.assertNotIn(b"X-Api-Key", out)
        self.assertNotIn(b"Authorization", out)
        self.assertNotIn(b"X-Forwarded-User", out)

    def test_session_cookie_stripped_others_kept(self):
        out = self.upstream(FakeRequest({b"cookie": [
            b"theme=dark; __Host-wh_session=" + self.session() + b"; x__Host-wh_session=1",
            b"wh_session=dev"]}))
        self.assertEqual(out[b"Cookie"], [b"theme=dark; x__Host-wh_session=1"])
        self.assertEqual(out[b"X-Forwarded-User"], [b"alice"])

    def test_cookie_header_dropped_when_only_ours(self):
        out = self.upstream(self.cookie(self.session()))
        self.assertNotIn(b"Cookie", out)

    def test_other_cookies_untouched(self):
        out = self.upstream(FakeRequest({b"cookie": b"a=1;b=2"}))
        self.assertEqual(out[b"Cookie"], [b"a=1;b=2"])

    def test_foreign_bearer_kept_with_session(self):
        out = self.upstream(FakeRequest({b"authorization": b"Bearer hf_spacetoken",
                                         b"cookie": b"__Host-wh_session=" + self.session()}))
        self.assertEqual(out[b"Authorization"], [b"Bearer hf_spacetoken"])
        self.assertEqual(out[b"X-Forwarded-User"], [b"alice"])

    def test_foreign_jwt_kept(self):
        foreign = TokenKeys(OTHER_SECRET).issue("x", 600).encode()
        out = self.upstream(self.bearer(foreign))
        self.assertEqual(out[b"Authorization"], [b"Bearer " + foreign])
        self.assertNotIn(b"X-Forwarded-User", out)

    def test_basic_auth_and_foreign_x_api_key_kept(self):
        out = self.upstream(FakeRequest({b"authorization": b"Basic dXNlcjpwdw==",
                                         b"x-api-key": b"their-key"}))
        self.assertEqual(out[b"Authorization"], [b"Basic dXNlcjpwdw=="])
        self.assertEqual(out[b"X-Api-Key"], [b"their-key"])

    def test_no_groups_without_roles(self):
        out = self.upstream(self.bearer(self.jwt(3, "bob")))
        self.assertEqual(out[b"X-Forwarded-User"], [b"bob"])
        self.assertNotIn(b"X-Forwarded-Groups", out)
        self.assertNotIn(b"X-Forwarded-Email", out)

    def test_several_roles(self):
        self.store.users[1]["roles"] = ["admin", "team"]
        self.store.change()
        out = self.upstream(self.bearer(self.jwt()))
        self.assertEqual(out[b"X-Forwarded-Groups"], [b"admin,team"])

    def test_unsafe_email_not_sent(self):
        for email in ["a@b.org\r\nX-Evil: 1", "a@b.org\rx", "\u00e9@b.org", "a@b.org\x00",
                      "x" * 300 + "@b.org", ""]:
            self.store.users[1]["email"] = email
            self.store.change()
            out = self.upstream(self.bearer(self.jwt()))
            self.assertNotIn(b"X-Forwarded-Email", out, repr(email))
            self.assertEqual(out[b"X-Forwarded-User"], [b"alice"])

    def test_email_with_trailing_newline_not_sent(self):
        # _HEADER_VALUE ends in "$", which also matches before a final "\n".
        self.store.users[1]["email"] = "a@b.org\n"
        self.store.change()
        out = self.upstream(self.bearer(self.jwt()))
        self.assertNotIn(b"X-Forwarded-Email", out)

    def test_anonymous_adds_nothing(self):
        out = self.upstream(FakeRequest({b"x-other": b"1"}))
        self.assertEqual(set(out), {b"X-Other"})

    def test_upstream_auth_directly(self):
        auth = UpstreamAuth(frozenset([b"authorization"]), True,
                            ((b"X-Forwarded-User", [b"alice"]),))
        out = upstream_of(auth, [(b"AUTHORIZATION", [b"Bearer x"]), (b"Cookie", [b"__Host-wh_session=x"]),
                          (b"Accept", [b"*/*"])])
        self.assertEqual(out, [(b"Accept", [b"*/*"]), (b"X-Forwarded-User", [b"alice"])])

    def test_upstream_auth_without_strip_keeps_cookie(self):
        auth = UpstreamAuth(frozenset(), False, ())
        self.assertEqual(upstream_of(auth, [(b"Cookie", [b"__Host-wh_session=x"])]),
                         [(b"Cookie", [b"__Host-wh_session=x"])])


class DevCookieTests(GateTestCase):
    def dev(self, host, secure=False):
        return self.cookie(self.session(), name=b"wh_session", host=host, secure=secure)

    def test_believed_on_loopback_http(self):
        for host in [b"127.0.0.1:8080", b"localhost", b"[::1]:7860", b"LOCALHOST:1"]:
            self.assertEqual(self.identify(self.dev(host)).user, "alice", host)

    def test_not_believed_elsewhere(self):
        for host in [b"gw.example.org", b"localhost.evil.com", b"127.0.0.2", b"127.0.0.1.evil"]:
            seen = self.gate.seen(self.dev(host))
            self.assertIsNone(seen.identity, host)
            self.assertFalse(seen.presented, host)

    def test_not_believed_over_https(self):
        self.assertIsNone(self.identify(self.dev(b"127.0.0.1:8080", secure=True)))

    def test_not_believed_without_host(self):
        request = self.cookie(self.session(), name=b"wh_session", secure=False)
        request.requestHeaders.removeHeader(b"host")
        self.assertIsNone(self.identify(request))

    def test_stripped_even_when_not_believed(self):
        request = self.dev(b"gw.example.org")
        out = dict(upstream_of(self.gate.seen(request).upstream,
                               list(request.requestHeaders.getAllRawHeaders())))
        self.assertNotIn(b"Cookie", out)

    def test_host_cookie_believed_on_loopback_too(self):
        request = self.cookie(self.session(), host=b"127.0.0.1:8080", secure=False)
        self.assertEqual(self.identify(request).user, "alice")

    def test_host_cookie_preferred_over_dev(self):
        request = FakeRequest({b"cookie": b"wh_session=" + self.session(3, "bob")
                               + b"; __Host-wh_session=" + self.session()},
                              host=b"127.0.0.1:8080", secure=False)
        self.assertEqual(self.identify(request).user, "alice")


class MetricsTokenTests(GateTestCase):
    def test_good(self):
        self.assertTrue(self.gate.metrics_token_ok(self.bearer(METRICS.encode())))
        self.assertTrue(self.gate.metrics_token_ok(
            FakeRequest({b"authorization": b"bearer " + METRICS.encode() + b" "})))

    def test_refused(self):
        for value in [b"Bearer " + METRICS.encode()[:-1], b"Bearer " + METRICS.encode() + b"x",
                      b"Basic " + METRICS.encode(), METRICS.encode(), b"Bearer "]:
            self.assertFalse(self.gate.metrics_token_ok(FakeRequest({b"authorization": value})),
                             value)
        self.assertFalse(self.gate.metrics_token_ok(FakeRequest()))

    def test_not_configured(self):
        gate = Gate(self.view, self.tokens, self.sessions, self.clock)
        self.assertFalse(gate.metrics_token_ok(self.bearer(METRICS.encode())))
        self.assertFalse(gate.metrics_token_ok(self.bearer(b"")))

    def test_metrics_token_is_no_credential(self):
        seen = self.gate.seen(self.bearer(METRICS.encode()))
        self.assertFalse(seen.presented)


class AnswerRefusalTests(SynchronousTestCase):
    def browser(self, method=b"GET", uri=b"/chat?q=1&x=%2F", accept=b"text/html,*/*;q=0.8"):
        return FakeRequest({b"accept": accept}, method=method, uri=uri)

    def test_browser_sent_to_login(self):
        request = self.browser()
        body = answer_refusal(request, SIGN_IN_REQUIRED)
        self.assertEqual(body, b"")
        self.assertEqual(request.code, 303)
        self.assertEqual(request.header(b"location"),
                         LOGIN_PATH.encode() + b"?next=%2Fchat%3Fq%3D1%26x%3D%252F")
        self.assertEqual(request.header(b"cache-control"), b"no-store")
        self.assertEqual(request.header(b"content-length"), b"0")
        self.assertIsNone(request.header(b"www-authenticate"))

    def test_browser_with_bad_credential_sent_to_login(self):
        request = self.browser(uri=b"/")
        answer_refusal(request, INVALID_CREDENTIAL)
        self.assertEqual(request.code, 303)
        self.assertEqual(request.header(b"location"), b"/_gateway/login?next=%2F")

    def test_head_sent_to_login(self):
        request = self.browser(method=b"HEAD")
        answer_refusal(request, SIGN_IN_REQUIRED)
        self.assertEqual(request.code, 303)

    def test_browser_post_gets_401(self):
        request = self.browser(method=b"POST")
        answer_refusal(request, SIGN_IN_REQUIRED)
        self.assertEqual(request.code, 401)

    def test_api_gets_401_json(self):
        for accept in [None, b"application/json", b"*/*"]:
            request = FakeRequest({b"accept": accept} if accept else {}, uri=b"/api")
            body = answer_refusal(request, SIGN_IN_REQUIRED)
            self.assertEqual(request.code, 401)
            self.assertEqual(json.loads(body)["error"], "unauthorized")
            self.assertEqual(request.header(b"content-type"), b"application/json")
            self.assertEqual(request.header(b"www-authenticate"), b'Bearer realm="wighaven"')
            self.assertIsNone(request.header(b"location"))

    def test_invalid_token_challenge(self):
        request = FakeRequest(method=b"POST")
        body = answer_refusal(request, INVALID_CREDENTIAL)
        self.assertEqual(request.code, 401)
        self.assertEqual(json.loads(body)["error"], "invalid_token")
        self.assertEqual(request.header(b"www-authenticate"),
                         b'Bearer realm="wighaven", error="invalid_token"')

    def test_forbidden_json(self):
        for refusal in (FORBIDDEN, WRONG_ROUTE):
            request = FakeRequest()
            body = answer_refusal(request, refusal)
            self.assertEqual(request.code, 403)
            self.assertEqual(json.loads(body), {"error": "forbidden", "detail": refusal.detail})
            self.assertIsNone(request.header(b"www-authenticate"))

    def test_forbidden_browser_without_renderer_gets_json(self):
        request = self.browser()
        body = answer_refusal(request, FORBIDDEN)
        self.assertEqual(request.code, 403)
        self.assertEqual(json.loads(body)["error"], "forbidden")

    def test_forbidden_browser_gets_html(self):
        calls = []

        def render(request, refusal):
            # The renderer sets the status and the page's headers.
            calls.append((request, refusal))
            request.setResponseCode(refusal.status)
            request.responseHeaders.setRawHeaders(b"Content-Type", [b"text/html; charset=utf-8"])
            return b"<!doctype html><p>no</p>"

        request = self.browser()
        body = answer_refusal(request, FORBIDDEN, render_forbidden=render)
        self.assertEqual(body, b"<!doctype html><p>no</p>")
        self.assertEqual(calls, [(request, FORBIDDEN)])
        self.assertEqual(request.code, 403)
        self.assertEqual(request.header(b"content-type"), b"text/html; charset=utf-8")
        self.assertEqual(request.header(b"content-length"), b"%d" % len(body))
        self.assertIsNone(request.header(b"www-authenticate"))

    def test_renderer_not_used_for_401(self):
        request = FakeRequest(method=b"POST", headers={b"accept": b"text/html"})
        body = answer_refusal(request, SIGN_IN_REQUIRED,
                              render_forbidden=lambda r, e: self.fail("rendered"))
        self.assertEqual(json.loads(body)["error"], "unauthorized")

    def test_forbidden_api_ignores_renderer(self):
        request = FakeRequest()
        body = answer_refusal(request, FORBIDDEN, render_forbidden=lambda r, e: b"<html>")
        self.assertEqual(json.loads(body)["error"], "forbidden")

    def test_request_id_in_body(self):
        request = FakeRequest()
        request.request_id = b"abc123"
        body = answer_refusal(request, SIGN_IN_REQUIRED)
        self.assertEqual(json.loads(body)["request_id"], "abc123")


class KeyUseTests(GateTestCase):
    def test_key_use_recorded(self):
        key_id, whole = self.store.add_key(1)
        self.store.change()
        self.assertEqual(self.gate.key_uses, {})
        self.identify(self.bearer(whole.encode()))
        self.assertEqual(self.gate.key_uses, {key_id: self.clock.seconds()})

    def test_key_use_recorded_on_cache_hit(self):
        key_id, whole = self.store.add_key(1)
        self.store.change()
        self.identify(self.bearer(whole.encode()))
        self.clock.advance(42)
        self.identify(FakeRequest({b"x-api-key": whole.encode()}))  # another cache entry
        self.assertEqual(self.gate.key_uses[key_id], self.clock.seconds())
        self.clock.advance(7)
        self.identify(self.bearer(whole.encode()))  # cache hit
        self.assertEqual(self.gate.key_uses[key_id], self.clock.seconds())

    def test_refused_key_not_recorded(self):
        key_id, whole = self.store.add_key(1, expires_at=self.clock.seconds() - 1)
        self.store.change()
        self.identify(self.bearer(whole.encode()))
        self.assertNotIn(key_id, self.gate.key_uses)

    def test_tokens_not_recorded(self):
        self.identify(self.bearer(self.jwt()))
        self.identify(self.cookie(self.session()))
        self.assertEqual(self.gate.key_uses, {})

"""Access tokens (wighaven.auth.tokens): PyJWT with pinned keys and claims."""

import base64
import json
import time

import jwt
from twisted.trial.unittest import SynchronousTestCase

from wighaven.auth.tokens import InvalidToken, TokenKeys
from wighaven.config.settings import ConfigError

SECRET = "s" * 40
OTHER = "o" * 40


def b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


class TokenTests(SynchronousTestCase):
    def test_issued_tokens_verify_with_every_claim(self):
        keys = TokenKeys(SECRET)
        token = keys.issue("alice", 900, roles=["admin"], ver=3)
        header = jwt.get_unverified_header(token)
        self.assertEqual((header["alg"], header["kid"]), ("HS256", keys.kid))
        claims = keys.verify(token)
        self.assertEqual((claims["sub"], claims["roles"], claims["ver"]), ("alice", ["admin"], 3))
        self.assertEqual(claims["exp"] - claims["iat"], 900)
        self.assertEqual((claims["iss"], claims["aud"]), ("wighaven", "wighaven"))
        self.assertNotIn(SECRET, token)

    def test_the_key_is_derived_not_the_setting(self):
        token = TokenKeys(SECRET).issue("alice", 900)
        with self.assertRaises(jwt.InvalidSignatureError):
            jwt.decode(token, SECRET, algorithms=["HS256"], audience="wighaven")

    def test_refused(self):
        keys = TokenKeys(SECRET)
        good = keys.issue("alice", 900)
        head, body, signature = good.split(".")
        forged_body = b64(dict(json.loads(base64.urlsafe_b64decode(body + "==")), sub="root"))
        expired = TokenKeys(SECRET, clock=lambda: time.time() - 3600).issue("alice", 60)
        cases = {
            "tampered": "%s.%s.%s" % (head, forged_body, signature),
            "other key": TokenKeys(OTHER).issue("alice", 900),
            "alg none": "%s.%s." % (b64({"alg": "none", "kid": keys.kid}), body),
            "alg swap": "%s.%s.%s" % (b64({"alg": "HS512", "kid": keys.kid}), body, signature),
            "no kid": jwt.encode({"sub": "a"}, "k" * 32, algorithm="HS256"),
            "expired": expired,
            "wrong audience": TokenKeys(SECRET, audience="other").issue("alice", 900),
            "wrong issuer": TokenKeys(SECRET, issuer="other").issue("alice", 900),
            "garbage": "not.a.token",
        }
        for why, token in cases.items():
            with self.assertRaises(InvalidToken, msg=why):
                keys.verify(token)

    def test_missing_claims_are_refused(self):
        keys = TokenKeys(SECRET)
        key = keys._key
        now = int(time.time())
        for missing in ("sub", "exp", "nbf", "iat"):
            claims = {"iss": "wighaven", "aud": "wighaven", "sub": "a", "iat": now, "nbf": now,
                      "exp": now + 60}
            del claims[missing]
            token = jwt.encode(claims, key, algorithm="HS256", headers={"kid": keys.kid})
            with self.assertRaises(InvalidToken, msg=missing):
                keys.verify(token)

    def test_rotation(self):
        old = TokenKeys(OTHER).issue("alice", 900)
        rotated = TokenKeys(SECRET, previous=[OTHER])
        self.assertEqual(rotated.verify(old)["sub"], "alice")
        new = rotated.issue("alice", 900)
        self.assertEqual(jwt.get_unverified_header(new)["kid"], TokenKeys(SECRET).kid)
        with self.assertRaises(InvalidToken):
            TokenKeys(OTHER).verify(new)

    def test_short_or_missing_secret_stops_with_one_line(self):
        for secret, previous in ((None, ()), ("short", ()), (SECRET, ["short"])):
            with self.assertRaises(ConfigError) as caught:
                TokenKeys(secret, previous)
            self.assertNotIn("\n", str(caught.exception))
            self.assertNotIn("short", str(caught.exception))

    def test_verified_tokens_are_remembered_until_they_expire(self):
        now = [time.time()]
        keys = TokenKeys(SECRET, clock=lambda: now[0], cache_size=2)
        token = keys.issue("alice", 60)
        first = keys.verify(token)
        self.assertIs(keys.verify(token), first)  # from memory
        now[0] += 66
        with self.assertRaises(InvalidToken):
            keys.verify(token)
        now[0] = time.time()  # PyJWT checks iat and nbf by the real clock
        for i in range(3):
            keys.verify(keys.issue("u%d" % i, 600))
        self.assertEqual(len(keys._cache), 2)

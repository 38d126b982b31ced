"""Upstream tokens sealed at rest (wighaven.store.secret_box): Fernet under keys derived
from SECRET_KEY, SECRET_KEY_PREVIOUS opening only."""

import base64

from cryptography.fernet import Fernet, InvalidToken
from twisted.trial.unittest import SynchronousTestCase

from wighaven.auth.tokens import _derive
from wighaven.config.settings import ConfigError
from wighaven.store.secret_box import SealedSecretError, SecretBox, is_sealed

SECRET = "s" * 40
OTHER = "o" * 40
TOKEN = "hf_Upstream-Token-0123456789"
MESSAGE = "a stored secret cannot be decrypted: SECRET_KEY changed without SECRET_KEY_PREVIOUS"


class SecretBoxTests(SynchronousTestCase):
    def assertRefused(self, box, sealed):
        with self.assertRaises(SealedSecretError) as caught:
            box.open(sealed)
        self.assertEqual(str(caught.exception), MESSAGE)
        self.assertIsNone(caught.exception.__cause__)
        self.assertTrue(caught.exception.__suppress_context__)

    def test_round_trip(self):
        box = SecretBox(SECRET)
        for plaintext in [TOKEN, "", "jeton-é-トークン", "x" * 5000]:
            sealed = box.seal(plaintext)
            self.assertIsInstance(sealed, str)
            self.assertTrue(sealed.isascii())
            self.assertEqual(box.open(sealed), plaintext)

    def test_sealing_twice_gives_different_texts(self):
        box = SecretBox(SECRET)
        first, second = box.seal(TOKEN), box.seal(TOKEN)
        self.assertNotEqual(first, second)
        self.assertEqual(box.open(first), box.open(second))

    def test_the_plaintext_never_appears(self):
        box = SecretBox(SECRET)
        sealed = box.seal(TOKEN)
        self.assertNotIn(TOKEN, sealed)
        self.assertNotIn(TOKEN.encode(), base64.urlsafe_b64decode(sealed))
        self.assertNotIn(SECRET, sealed)

    def test_the_previous_key_opens_but_never_seals(self):
        old = SecretBox(OTHER).seal(TOKEN)
        box = SecretBox(SECRET, [OTHER])
        self.assertEqual(box.open(old), TOKEN)
        fresh = box.seal(TOKEN)
        self.assertEqual(SecretBox(SECRET).open(fresh), TOKEN)
        self.assertRefused(SecretBox(OTHER), fresh)

    def test_another_key_fails_with_the_fixed_line(self):
        sealed = SecretBox(OTHER).seal(TOKEN)
        self.assertRefused(SecretBox(SECRET), sealed)
        self.assertRefused(SecretBox(SECRET, ["p" * 40]), sealed)

    def test_tampering_fails(self):
        box = SecretBox(SECRET)
        sealed = box.seal(TOKEN)
        raw = bytearray(base64.urlsafe_b64decode(sealed))
        for index in [1, 9, 30, len(raw) - 40, len(raw) - 1]:  # time, IV, text, text, HMAC
            changed = bytearray(raw)
            changed[index] ^= 0x01
            self.assertRefused(box, base64.urlsafe_b64encode(bytes(changed)).decode())
        self.assertRefused(box, sealed[:-4])
        self.assertRefused(box, sealed + "AAAA")

    def test_not_a_token_fails_with_the_fixed_line(self):
        box = SecretBox(SECRET)
        for value in ["", TOKEN, "gAAAAA", "é" * 100, None, 42, b"\xff"]:
            self.assertRefused(box, value)

    def test_reseal_moves_to_the_current_key(self):
        old = SecretBox(OTHER).seal(TOKEN)
        resealed = SecretBox(SECRET, [OTHER]).reseal(old)
        self.assertNotEqual(resealed, old)
        self.assertEqual(SecretBox(SECRET).open(resealed), TOKEN)
        self.assertRefused(SecretBox(OTHER), resealed)
        with self.assertRaises(SealedSecretError):
            SecretBox(SECRET).reseal(old)

    def test_the_key_is_derived_not_the_setting(self):
        sealed = SecretBox(SECRET).seal(TOKEN)
        # A Fernet key made straight from the setting's bytes (its first 32, as a careless
        # implementation would) does not open it.
        direct = Fernet(base64.urlsafe_b64encode(SECRET.encode()[:32]))
        with self.assertRaises(InvalidToken):
            direct.decrypt(sealed)
        # Nor does the access-token key (another HKDF info): each use has a key of its own.
        with self.assertRaises(InvalidToken):
            Fernet(base64.urlsafe_b64encode(_derive(SECRET))).decrypt(sealed)

    def test_short_secrets_are_refused(self):
        for args in [("short",), ("",), (None,), (SECRET, ["short"])]:
            with self.assertRaises(ConfigError) as caught:
                SecretBox(*args)
            self.assertNotIn("\n", str(caught.exception))

    def test_seal_takes_text(self):
        with self.assertRaises(TypeError):
            SecretBox(SECRET).seal(b"bytes")


class IsSealedTests(SynchronousTestCase):
    def test_sealed_values(self):
        box = SecretBox(SECRET)
        for plaintext in ["", TOKEN, "x" * 100]:
            sealed = box.seal(plaintext)
            self.assertTrue(is_sealed(sealed))
            self.assertTrue(is_sealed(sealed.encode()))
        self.assertTrue(is_sealed(Fernet(Fernet.generate_key()).encrypt(b"x").decode()))

    def test_other_values(self):
        sealed = SecretBox(SECRET).seal(TOKEN)
        for value in [None, 42, "", TOKEN, "gAAAAA==", sealed[:-4], sealed + "AAAA",
                      sealed[:10] + "+" + sealed[11:], sealed.rstrip("="), "é" * 120,
                      b"\xff" * 120,
                      base64.urlsafe_b64encode(b"\x81" + b"\0" * 72).decode()]:
            self.assertFalse(is_sealed(value), value)

"""Passwords (wighaven.auth.passwords) and API keys (wighaven.auth.keys)."""

import threading
import time

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wighaven.auth import keys
from wighaven.auth.passwords import NICENESS, Busy, Passwords, hash_password, is_argon2_hash


class PasswordTests(TestCase):
    def passwords(self, **kwargs):
        passwords = Passwords(**kwargs)
        self.addCleanup(passwords.close)
        return passwords

    @defer.inlineCallbacks
    def test_past_max_waiting_a_check_is_refused_at_once(self):
        passwords = self.passwords(threads=1, max_waiting=3)
        stored = hash_password("pw")
        waiting = [passwords.check(stored, "pw") for _ in range(3)]
        self.assertEqual(passwords.waiting, 3)
        self.assertRaises(Busy, passwords.check, stored, "pw")
        verdicts = yield defer.gatherResults(waiting)
        self.assertEqual([v.ok for v in verdicts], [True] * 3)
        self.assertEqual(passwords.waiting, 0)
        again = yield passwords.check(stored, "pw")  # room again
        self.assertTrue(again.ok)

    @defer.inlineCallbacks
    def test_checks_run_at_a_lower_cpu_priority(self):
        import os

        passwords = self.passwords(threads=1)
        seen = []
        original = passwords._verify

        def verify(stored, password):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return original(stored, password)

        passwords._verify = verify
        yield passwords.check(hash_password("pw"), "pw")
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.assertEqual(seen, [min(19, mine + NICENESS)])
        # The reactor's own thread keeps its priority.
        self.assertEqual(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), mine)

    def test_sync_hash_for_the_console_and_start_up(self):
        stored = hash_password("correct horse")
        self.assertTrue(stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"))
        self.assertTrue(is_argon2_hash(stored))
        for other in ("", "plain", "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
                      "$2b$12$abcdefghijklmnopqrstuv"):
            self.assertFalse(is_argon2_hash(other), other)

    @defer.inlineCallbacks
    def test_owasp_argon2id_right_and_wrong(self):
        passwords = self.passwords()
        stored = yield passwords.hash("correct horse")
        self.assertTrue(stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), stored)
        self.assertNotIn("correct horse", stored)
        right = yield passwords.check(stored, "correct horse")
        self.assertEqual((right.ok, right.rehash), (True, None))
        wrong = yield passwords.check(stored, "battery staple")
        self.assertFalse(wrong.ok)
        broken = yield passwords.check("not a hash", "x")
        self.assertFalse(broken.ok)
        self.assertNotIn("correct horse", repr(right))

    @defer.inlineCallbacks
    def test_rehash_when_the_parameters_change(self):
        old = self.passwords(memory_cost=8 * 1024, time_cost=1)
        stored = yield old.hash("pw")
        verdict = yield self.passwords().check(stored, "pw")
        self.assertTrue(verdict.ok)
        self.assertTrue(verdict.rehash.startswith("$argon2id$v=19$m=19456,t=2,p=1$"))

    @defer.inlineCallbacks
    def test_an_unknown_user_takes_as_long_as_a_wrong_password(self):
        passwords = self.passwords()
        stored = yield passwords.hash("pw")

        @defer.inlineCallbacks
        def timed(stored_hash):
            best = None
            for _ in range(5):
                started = time.perf_counter()
                verdict = yield passwords.check(stored_hash, "guess")
                self.assertFalse(verdict.ok)
                spent = time.perf_counter() - started
                best = spent if best is None else min(best, spent)
            return best

        unknown = yield timed(None)
        wrong = yield timed(stored)
        self.assertLess(abs(unknown - wrong) / wrong, 0.5, (unknown, wrong))

    @defer.inlineCallbacks
    def test_checks_run_off_the_reactor_at_most_two_at_once(self):
        passwords = self.passwords(threads=2)
        stored = yield passwords.hash("pw")
        lock, running, most = threading.Lock(), [0], [0]
        verify = passwords._verify

        def counted(stored_hash, password):
            self.assertIsNot(threading.current_thread(), threading.main_thread())
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            try:
                return verify(stored_hash, password)
            finally:
                with lock:
                    running[0] -= 1

        passwords._verify = counted
        verdicts = yield defer.gatherResults([passwords.check(stored, "pw") for _ in range(8)])
        self.assertTrue(all(v.ok for v in verdicts))
        self.assertEqual(most[0], 2)


class ApiKeyTests(SynchronousTestCase):
    def test_a_new_key_round_trips(self):
        key_id, key, stored = keys.new_key()
        self.assertRegex(key, r"^wh_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$")
        parsed_id, secret = keys.parse(key)
        self.assertEqual(parsed_id, key_id)
        self.assertTrue(keys.matches(secret, stored))
        self.assertNotIn(secret.encode(), stored)
        other = keys.parse(keys.new_key()[1])[1]
        self.assertFalse(keys.matches(other, stored))

    def test_keys_are_unique(self):
        self.assertEqual(len({keys.new_key()[1] for _ in range(200)}), 200)

    def test_shapes_that_are_not_keys(self):
        _, key, _ = keys.new_key()
        for presented in (None, "", "wh_", key[:-1], key + "x", key.replace("wh_", "xx_"),
                          "Bearer " + key, "wh_0123456789abcdef_" + "=" * 43):
            self.assertIsNone(keys.parse(presented), presented)

"""TOTP second factors (wighaven.auth.second_factor): the window, replay
refusal, code shape, per-user memory and its bound."""

import pyotp
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from wighaven.auth import second_factor
from wighaven.auth.second_factor import SecondFactor

STEP = 30
SECRET = pyotp.random_base32()
OTHER_SECRET = pyotp.random_base32()


class SecondFactorTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        # The middle of a step, so that no test straddles a step boundary.
        self.clock.advance(STEP * 56_666_666 + 15)
        self.factor = SecondFactor(self.clock)
        self.totp = pyotp.TOTP(SECRET)

    def code(self, steps=0, secret=None):
        totp = pyotp.TOTP(secret) if secret else self.totp
        return totp.at(int(self.clock.seconds()) + steps * STEP)

    def test_current_code_accepted(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.code()))

    def test_current_code_from_pyotp_now(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.totp.at(self.clock.seconds())))

    def test_one_step_before_accepted(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.code(-1)))

    def test_one_step_after_accepted(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.code(+1)))

    def test_two_steps_before_refused(self):
        self.assertFalse(self.factor.accept(1, SECRET, self.code(-2)))

    def test_two_steps_after_refused(self):
        self.assertFalse(self.factor.accept(1, SECRET, self.code(+2)))

    def test_step_boundaries(self):
        # At the very first second of a step, the previous step is still good,
        # and the one two back is not.
        start = (int(self.clock.seconds()) // STEP) * STEP
        clock = Clock()
        clock.advance(start)
        factor = SecondFactor(clock)
        self.assertTrue(factor.accept(1, SECRET, self.totp.at(start - 1)))
        self.assertFalse(factor.accept(2, SECRET, self.totp.at(start - STEP - 1)))

    def test_code_of_another_secret_refused(self):
        self.assertFalse(self.factor.accept(1, SECRET, self.code(secret=OTHER_SECRET)))

    def test_replay_refused(self):
        code = self.code()
        self.assertTrue(self.factor.accept(1, SECRET, code))
        self.assertFalse(self.factor.accept(1, SECRET, code))

    def test_replay_refused_a_step_later(self):
        code = self.code()
        self.assertTrue(self.factor.accept(1, SECRET, code))
        self.clock.advance(STEP)  # the code is now "one step before": in the window
        self.assertFalse(self.factor.accept(1, SECRET, code))

    def test_older_step_after_newer_refused(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.code(+1)))
        self.assertFalse(self.factor.accept(1, SECRET, self.code()))
        self.assertFalse(self.factor.accept(1, SECRET, self.code(-1)))

    def test_newer_step_after_older_accepted(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.code(-1)))
        self.assertTrue(self.factor.accept(1, SECRET, self.code()))
        self.assertTrue(self.factor.accept(1, SECRET, self.code(+1)))

    def test_next_step_fresh_code_accepted(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.code()))
        self.clock.advance(STEP)
        self.assertTrue(self.factor.accept(1, SECRET, self.code()))

    def test_refused_code_does_not_use_anything_up(self):
        good = self.code()
        wrong = "%06d" % ((int(good) + 1) % 1_000_000)
        self.assertFalse(self.factor.accept(1, SECRET, wrong))
        self.assertFalse(self.factor.accept(1, SECRET, self.code(-2)))
        self.assertTrue(self.factor.accept(1, SECRET, good))

    def test_spaces_and_surrounding_whitespace_allowed(self):
        code = self.code()
        self.assertTrue(self.factor.accept(1, SECRET, " %s %s \n" % (code[:3], code[3:])))

    def test_non_digits_refused(self):
        for code in ["abcdef", "12345a", "12-456", "+12345", "-12345", "1234.5", "0x1234"]:
            self.assertFalse(self.factor.accept(1, SECRET, code), code)

    def test_wrong_length_refused(self):
        code = self.code()
        for bad in ["", code[:5], code + "0", "0" + code, "1", "1" * 8]:
            self.assertFalse(self.factor.accept(1, SECRET, bad), bad)
        self.assertTrue(self.factor.accept(1, SECRET, code))  # none of those used it up

    def test_none_refused(self):
        self.assertFalse(self.factor.accept(1, SECRET, None))

    def test_non_ascii_digits_refused(self):
        # str.isdigit() is true of Arabic-Indic, full-width and superscript digits;
        # such a code must be refused, not raise.
        for code in ["\u0661" * 6, "\uff11" * 6, "\u00b2" * 6, "12345\u0663"]:
            self.assertFalse(self.factor.accept(1, SECRET, code), ascii(code))

    def test_users_are_independent(self):
        code = self.code()
        self.assertTrue(self.factor.accept(1, SECRET, code))
        self.assertTrue(self.factor.accept(2, SECRET, code))
        self.assertFalse(self.factor.accept(1, SECRET, code))
        self.assertFalse(self.factor.accept(2, SECRET, code))

    def test_newer_code_of_one_user_does_not_block_another(self):
        self.assertTrue(self.factor.accept(1, SECRET, self.code(+1)))
        self.assertTrue(self.factor.accept(2, SECRET, self.code(-1)))

    def test_memory_is_bounded(self):
        self.assertTrue(0 < second_factor._MAX_USERS <= 1_000_000)
        self.patch(second_factor, "_MAX_USERS", 3)
        code = self.code()
        for user in (1, 2, 3, 4, 5):
            self.assertTrue(self.factor.accept(user, SECRET, code))
        self.assertEqual(len(self.factor._last_step), 3)
        # The most recent users are remembered; the oldest are forgotten.
        for user in (3, 4, 5):
            self.assertFalse(self.factor.accept(user, SECRET, code))
        self.assertEqual(list(self.factor._last_step), [3, 4, 5])

    def test_least_recently_used_goes_first(self):
        self.patch(second_factor, "_MAX_USERS", 3)
        code = self.code()
        for user in (1, 2, 3):
            self.assertTrue(self.factor.accept(user, SECRET, code))
        self.clock.advance(STEP)
        self.assertTrue(self.factor.accept(1, SECRET, self.code()))  # 1 used again: newest
        self.assertTrue(self.factor.accept(4, SECRET, self.code()))  # pushes 2 out
        self.assertEqual(set(self.factor._last_step), {1, 3, 4})
        self.assertFalse(self.factor.accept(1, SECRET, self.code()))
        self.assertFalse(self.factor.accept(3, SECRET, code))

    def test_refused_attempts_do_not_fill_memory(self):
        self.patch(second_factor, "_MAX_USERS", 2)
        self.assertTrue(self.factor.accept(1, SECRET, self.code()))
        for user in range(100, 120):
            self.assertFalse(self.factor.accept(user, SECRET, "000000x"))
        self.assertEqual(list(self.factor._last_step), [1])

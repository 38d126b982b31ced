"""TOTP second factors (RFC 6238, with pyotp).

Rules:
  - A code is good in its 30 s step and the one either side (clocks drift).
  - A code is good once: the step of the last code a user signed in with is
    remembered, and that step or an earlier one is refused afterwards, so a
    code seen over a shoulder cannot be replayed in the same minute.
  - Memory is bounded (the least recently used users go first).
"""

from __future__ import annotations

import collections
import hmac

import pyotp

__all__ = ["SecondFactor"]

_WINDOW = 1  # steps accepted either side of now
_MAX_USERS = 100_000


class SecondFactor:
    def __init__(self, clock):
        self._clock = clock
        self._last_step = collections.OrderedDict()  # user id -> step of its last good code

    def accept(self, user_id, secret: str, code: str) -> bool:
        """Is C{code} a fresh, good code of C{secret}? (It is used up when it is.)"""
        code = (code or "").strip().replace(" ", "")
        if not (code.isascii() and code.isdigit()) or len(code) != 6:
            return False
        totp = pyotp.TOTP(secret)
        now = int(self._clock.seconds())
        step_now = now // totp.interval
        for step in range(step_now - _WINDOW, step_now + _WINDOW + 1):
            if hmac.compare_digest(totp.at(step * totp.interval), code):
                if step <= self._last_step.get(user_id, -1):
                    return False  # replayed
                self._last_step[user_id] = step
                self._last_step.move_to_end(user_id)
                while len(self._last_step) > _MAX_USERS:
                    self._last_step.popitem(last=False)
                return True
        return False

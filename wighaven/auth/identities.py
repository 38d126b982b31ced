"""The gateway's view of who exists, in memory: users (roles, disabled,
token version), API keys (hashes, owners, scopes, expiry) and revoked
sessions.

Rules:
  - Requests are checked against this view only, never the database: the
    per-request cost is a dict lookup.
  - The view is fresh at once after any change from any process (another
    worker, the console command): the store bumps its revision file after
    each such commit, and L{IdentityView.fresh}, called by every request
    that carries a credential, compares 8 mapped bytes with those it loaded
    at. When they differ it reloads there and then (one read transaction of
    a few small tables), before the request is decided: a revocation holds
    from the next request on, in every process.
  - L{generation} moves at each reload, so caches of identities built on
    the view (L{wighaven.auth.gate}) know to forget.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["IdentityView"]


class IdentityView:
    """
    @param store: a store with C{read_identities()} (synchronous) and
        C{revision} (its RevisionFile).
    """

    def __init__(self, store):
        self._store = store
        self._revision = store.revision
        self._seen = None
        self.generation = 0
        self.users = {}  # id -> user dict
        self.keys = {}  # key id -> key dict (not revoked)
        self.revoked_sessions = frozenset()  # id hashes
        self.reload()

    def fresh(self) -> "IdentityView":
        """This view, reloaded first if any process changed identities since."""
        if self._revision.read() != self._seen:
            self.reload()
        return self

    def reload(self) -> None:
        """Read users, keys and revoked sessions again (the revision first: a change made
        while reading is seen at the next request)."""
        seen = self._revision.read()
        snapshot = self._store.read_identities()
        self.users = {user["id"]: user for user in snapshot["users"]}
        self.keys = {key["id"]: key for key in snapshot["keys"]}
        self.revoked_sessions = frozenset(snapshot["revoked_sessions"])
        self._seen = seen
        self.generation += 1

    def user(self, user_id) -> Optional[dict]:
        """The user with C{user_id} while it exists and is enabled, else None."""
        user = self.users.get(user_id)
        if user is None or user["disabled"]:
            return None
        return user

    def current(self, user_id, token_version) -> Optional[dict]:
        """The user, when enabled and C{token_version} is still its version, else None."""
        user = self.user(user_id)
        if user is None or user["token_version"] != token_version:
            return None
        return user

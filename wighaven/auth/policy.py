"""Who may use a route: the route's C{access}, and the identity a request
carries.

Rules:
  - C{access} is C{"public"} (anyone, signed in or not), C{"signed_in"}
    (anyone the gateway knows: the default) or a list of requirements, any
    one of which suffices: C{"role:team"}, C{"user:alice"} (a gateway
    identity's name exactly, so C{"user:hf:alice"} for a Hugging Face
    sign-in) and C{"hf_org:acme"} (a member of that Hugging Face
    organization, as the sign-in reported it).
  - The C{admin} role passes every requirement: the owner reaches every
    Space they put behind the gateway.
  - An API key scoped to a route is good for that route only; on any other
    route (and the gateway's own admin pages) its holder is refused, 403.
  - An L{Identity} is made once per credential and kept (the identity
    cache of L{wighaven.auth.gate}), so it is frozen and small.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

import attrs

__all__ = ["Access", "Identity", "PUBLIC", "SIGNED_IN", "ADMIN_ROLE", "parse_access"]

ADMIN_ROLE = "admin"
_KINDS = ("role", "user", "hf_org")
_VALUE_RE = re.compile(r"^[A-Za-z0-9._@:-]{1,96}$")


@attrs.frozen
class Identity:
    """Who a request comes from, as the gateway verified it."""

    user: str  # the gateway identity's name: "alice", or "hf:alice" for a Hugging Face sign-in
    user_id: int
    roles: Tuple[str, ...] = ()
    via: str = "session"  # "session" | "jwt" | "api_key" | "huggingface"
    email: Optional[str] = None
    orgs: Tuple[str, ...] = ()  # Hugging Face organizations, lower-cased
    key_route: Optional[str] = None  # the one route an API key is good for, when scoped
    session_id: Optional[str] = attrs.field(default=None, repr=False)  # cookie sessions only

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def may_use(self, route_name: Optional[str]) -> bool:
        """Is this credential good for C{route_name} (None: the gateway's own pages)?"""
        return self.key_route is None or self.key_route == route_name


@attrs.frozen
class Access:
    """A route's C{access}: C{kind} "public", "signed_in" or "any_of" C{requirements}."""

    kind: str
    requirements: Tuple[Tuple[str, str], ...] = ()

    @property
    def public(self) -> bool:
        return self.kind == "public"

    def allows(self, identity: Optional[Identity]) -> bool:
        """May C{identity} (None: nobody signed in) use the route?"""
        if self.kind == "public":
            return True
        if identity is None:
            return False
        if self.kind == "signed_in" or identity.is_admin:
            return True
        for kind, value in self.requirements:
            if kind == "role" and value in identity.roles:
                return True
            if kind == "user" and value == identity.user:
                return True
            if kind == "hf_org" and value.lower() in identity.orgs:
                return True
        return False

    def describe(self):
        """The value as the config file writes it."""
        if self.kind != "any_of":
            return self.kind
        return ["%s:%s" % requirement for requirement in self.requirements]


PUBLIC = Access("public")
SIGNED_IN = Access("signed_in")


def parse_access(value) -> Access:
    """
    The L{Access} of a config value (a string or a list of strings);
    ValueError with the reason when it is none.
    """
    if value == "public":
        return PUBLIC
    if value == "signed_in":
        return SIGNED_IN
    if isinstance(value, str):
        if ":" in value:  # one requirement, as ACCESS may give it
            value = [part.strip() for part in value.split(",") if part.strip()]
        else:
            raise ValueError('must be "public", "signed_in" or a list such as ["role:team", '
                             '"user:alice", "hf_org:acme"]')
    if not isinstance(value, list) or not value:
        raise ValueError('must be "public", "signed_in" or a non-empty list of requirements')
    requirements = []
    for item in value:
        kind, _, name = item.partition(":") if isinstance(item, str) else ("", "", "")
        if kind not in _KINDS or not _VALUE_RE.fullmatch(name):
            raise ValueError("%r is not a requirement: role:NAME, user:NAME or hf_org:NAME"
                             % (item,))
        requirements.append((kind, name))
    return Access("any_of", tuple(requirements))

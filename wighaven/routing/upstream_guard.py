"""Server-side request forgery protection for upstream URLs added at run time.

An administrator who may add an upstream URL may otherwise point the gateway
at anything it can reach: its own loopback, the private network it runs in,
or the cloud's metadata service (169.254.169.254, which hands out the
machine's credentials). This module decides whether a URL may become an
upstream, before it is stored.

Rules:
- the scheme is https; http too only with ALLOW_HTTP_UPSTREAMS
  (L{UpstreamPolicy.allow_http}): a token sent over http is readable on the
  way;
- the URL is an origin only (scheme://host[:port], an optional "/"): no
  path, query, fragment or user:password@, no spaces or control characters
  (L{urllib.parse.urlsplit} silently drops tabs and newlines, so what was
  checked would not be what was typed);
- the host is valid by L{wighaven.config.settings.parse_origin} (IDNA names
  are turned into ASCII, upper case into lower case; a name IDNA turns into
  an IP address, such as C{127。0。0。1}, is judged as that address), and a
  name whose last label is a number (C{127.1}, C{2130706433}, C{0x7f.1}) is
  refused: resolvers read those as IPv4 addresses in disguise;
- the cloud metadata names (C{metadata.google.internal}, C{metadata},
  C{instance-data}) and metadata addresses are refused by name, always;
- with UPSTREAM_ALLOWLIST set (L{UpstreamPolicy.allowlist}), the host must
  match one of its patterns: C{api.example.org} that host exactly,
  C{*.hf.space} any name below hf.space but not hf.space itself, an IP
  literal that address exactly (a wildcard never matches an IP literal);
  the allowlist narrows, it never lets a private address through;
- unless ALLOW_PRIVATE_UPSTREAMS (L{UpstreamPolicy.allow_private}), the
  host's addresses must be public (L{blocked_address}): an IP literal is
  judged at once, a name by every address it resolves to
  (L{check_upstream}). One blocked answer among public ones refuses the
  name: a DNS rebinding name that answers both would otherwise pass.
  ALLOW_PRIVATE_UPSTREAMS lets loopback, private and link-local hosts
  through (a backend on the same machine or network) and skips resolution;
  the unspecified, multicast, broadcast and metadata addresses stay refused,
  since none of them is ever an HTTP backend.

Refusals are L{UpstreamRefused}: the field and a fixed sentence for the
person who typed the URL. No sentence carries exception text or the URL
itself, so nothing a resolver or parser says (nor anything of the URL) can
be echoed back through it.

Time of check: the check happens when the URL is accepted. A name that
resolved to public addresses then may resolve to 127.0.0.1 a second later
(a rebinding server answers with TTL 0), so the gateway checks the
addresses again each time it connects to such an upstream, and connects
only to an address it checked (L{wighaven.routing.connect_guard}).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Callable, Optional, Tuple
from urllib.parse import urlsplit

import attrs
from twisted.internet import defer, threads
from twisted.python.failure import Failure

from ..config.settings import ConfigError, ascii_host, parse_origin

__all__ = [
    "DEFAULT_RESOLVE_TIMEOUT", "METADATA_NAMES", "UpstreamPolicy", "UpstreamRefused",
    "address_refusal", "blocked_address", "check_upstream", "check_url", "default_resolver",
]

DEFAULT_RESOLVE_TIMEOUT = 5.0

METADATA_NAMES = frozenset(["metadata.google.internal", "metadata", "instance-data"])

# Only to name them in a refusal and to refuse them even with
# ALLOW_PRIVATE_UPSTREAMS: every one is inside a range refused anyway.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean...
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
_CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_BROADCAST = ipaddress.ip_address("255.255.255.255")

_METADATA = "the cloud metadata address"
_UNSPECIFIED = "the unspecified address"
_MULTICAST = "a multicast address"
_BROADCAST_REASON = "the broadcast address"
# Refused whatever ALLOW_PRIVATE_UPSTREAMS says: none of them is a backend.
_ALWAYS_REFUSED = frozenset([_METADATA, _UNSPECIFIED, _MULTICAST, _BROADCAST_REASON])

_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def blocked_address(ip) -> Optional[str]:
    """
    Why C{ip} (a string or an L{ipaddress} address) may not be an upstream's
    address, as a short phrase (C{"a loopback address"}); None when it is a
    public address. Anything that is not an IP address is refused.

    The stdlib's L{ipaddress} properties cover: loopback (127/8, ::1),
    private (RFC 1918, fc00::/7 which holds AWS's fd00:ec2::254, and the
    IANA special-purpose blocks: documentation, benchmarking, 192.0.0/24,
    Teredo 2001::/32...), link-local (169.254/16 where the metadata services
    live, fe80::/10), multicast, reserved (240/4, most of ::/8 including the
    deprecated IPv4-compatible ::a.b.c.d) and unspecified (0.0.0.0, ::).

    Added here, because the stdlib leaves them out or gets them wrong:
      - IPv4-mapped IPv6 (::ffff:127.0.0.1): judged as the IPv4 address it
        maps to; before Python 3.13 C{is_loopback} is False for it;
      - the IPv4 address embedded in 6to4 (2002::/16), Teredo (the client)
        and NAT64 (64:ff9b::/96, which is judged by its IPv4 address alone,
        so an IPv6-only network with DNS64 still reaches public hosts);
      - carrier-grade NAT 100.64/10 (neither private nor global to the
        stdlib) and site-local fec0::/10 (global to it);
      - the broadcast address and the metadata addresses, named as such;
      - anything else the stdlib does not call global.
    """
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip)
        except ValueError:
            return "not a valid IP address"
    if ip in _METADATA_ADDRESSES:
        return _METADATA
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return blocked_address(mapped)
        if ip in _NAT64:
            return blocked_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is not None:
            reason = blocked_address(embedded)
            if reason is not None:
                return reason
    if ip.is_unspecified:
        return _UNSPECIFIED
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return _MULTICAST
    if ip == _BROADCAST:
        return _BROADCAST_REASON
    if ip.version == 4 and ip in _CARRIER_GRADE_NAT:
        return "a carrier-grade NAT address"
    if ip.version == 6 and ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved:  # before private: the stdlib calls 240/4 both
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a special-purpose address"
    return None


def address_refusal(ip, policy: "UpstreamPolicy") -> Optional[str]:
    """
    Why C{ip} may not be the address of an upstream under C{policy}, or
    None: L{blocked_address}'s reason, unless ALLOW_PRIVATE_UPSTREAMS lets
    it through (everything but the addresses that are never a backend).
    """
    reason = blocked_address(ip)
    if reason is None or (policy.allow_private and reason not in _ALWAYS_REFUSED):
        return None
    return reason


def _ip(host: str):
    """The address when C{host} is an IP literal, else None."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _numeric_name(name: str) -> bool:
    """Would a resolver read this name as an IPv4 address (its last label a number)?"""
    return bool(_NUMERIC_LABEL.match(name.rstrip(".").rsplit(".", 1)[-1]))


def _pattern(entry: str) -> str:
    """One UPSTREAM_ALLOWLIST entry, normalised (ASCII, lower case, no final dot)."""
    text = entry.strip()
    wildcard = text.startswith("*.")
    rest = text[2:] if wildcard else text
    if "*" in rest:
        raise ValueError(
            "UPSTREAM_ALLOWLIST entry %r: only a leading *. wildcard is allowed" % (entry,)
        )
    address = _ip(rest)
    if address is not None:
        if wildcard:
            raise ValueError(
                "UPSTREAM_ALLOWLIST entry %r: a wildcard needs a domain, not an address"
                % (entry,)
            )
        return address.compressed
    try:
        name = ascii_host(rest, "UPSTREAM_ALLOWLIST").rstrip(".") if rest else ""
    except ConfigError:
        name = ""
    if not name or _numeric_name(name):
        raise ValueError(
            "UPSTREAM_ALLOWLIST entry %r is not a host name, *.domain or IP address" % (entry,)
        )
    return "*." + name if wildcard else name


def _allowlist(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [entry for entry in value.split(",") if entry.strip()]
    return tuple(_pattern(entry) for entry in value)


@attrs.frozen
class UpstreamPolicy:
    """
    What an upstream URL may be: ALLOW_HTTP_UPSTREAMS, ALLOW_PRIVATE_UPSTREAMS
    and UPSTREAM_ALLOWLIST (see the module's rules). The allowlist's patterns
    are validated and normalised on the way in (a string is split on commas).
    """

    allow_http: bool = False
    allow_private: bool = False
    allowlist: tuple = attrs.field(default=(), converter=_allowlist)

    @classmethod
    def parse_allowlist(cls, text: Optional[str]) -> tuple:
        """
        UPSTREAM_ALLOWLIST: comma-separated host patterns (C{*.hf.space},
        C{api.example.org}, an IP address); empty entries are skipped.

        @raise ValueError: with a one-line message naming the bad entry.
        """
        return _allowlist(text or "")

    def host_allowed(self, host: str) -> bool:
        """Does the allowlist let C{host} (ASCII, as L{check_url} gives it) through?"""
        if not self.allowlist:
            return True
        address = _ip(host)
        if address is not None:
            return address.compressed in self.allowlist
        name = host.lower().rstrip(".")
        for pattern in self.allowlist:
            if pattern.startswith("*."):
                if name.endswith(pattern[1:]):
                    return True
            elif name == pattern:
                return True
        return False


class UpstreamRefused(ValueError):
    """
    An upstream URL refused: C{field} names the input (e.g. C{"url"}),
    C{message} is a fixed sentence for a person; str() is the message.
    """

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return "UpstreamRefused(%r, %r)" % (self.field, self.message)


_NOT_TEXT = "Give the upstream as a URL such as https://user-space.hf.space."
_SPACES = "The upstream URL must not contain spaces or control characters."
_NOT_URL = "The upstream URL is not a valid URL."
_HTTPS_ONLY = "The upstream URL must start with https://."
_HTTP_OR_HTTPS = "The upstream URL must start with http:// or https://."
_NO_HOST = "The upstream URL must have a host, e.g. https://user-space.hf.space."
_CREDENTIALS = "The upstream URL must not contain user:password@; give the token on its own."
_NOT_ORIGIN = (
    "The upstream URL must be an origin only (scheme://host[:port]), "
    "with no path, query or fragment."
)
_BAD_PORT = "The upstream URL has an invalid port."
_BAD_HOST = "The upstream URL has an invalid host name."
_NUMERIC_HOST = "The upstream's host looks like an IP address; write it as a.b.c.d."
_METADATA_HOST = "The upstream's host is a cloud metadata service."
_NOT_ALLOWED = "The upstream's host is not in UPSTREAM_ALLOWLIST."
_UNRESOLVED = "The host name could not be resolved."


def _blocked_message(reason: str, resolved: bool) -> str:
    subject = "The host name resolves to" if resolved else "The upstream's address is"
    return "%s %s; only public addresses may be upstreams." % (subject, reason)


def _diagnose(parts, policy: UpstreamPolicy) -> str:
    """The sentence for a URL parse_origin refused (its own message is not shown)."""
    if parts.scheme not in ("http", "https"):
        return _HTTP_OR_HTTPS if policy.allow_http else _HTTPS_ONLY
    try:
        port = parts.port
    except ValueError:
        return _BAD_PORT
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return _CREDENTIALS
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return _NOT_ORIGIN
    if not parts.hostname:
        return _NO_HOST
    if port == 0:
        return _BAD_PORT
    return _BAD_HOST


def check_url(url, policy: UpstreamPolicy, field: str = "url") -> Tuple[str, str, int]:
    """
    The checks that need no network (see the module's rules): C{(scheme,
    host, port)} of an acceptable upstream URL, the host as parse_origin
    gives it (ASCII, lower case, an IPv6 address without brackets), the
    port defaulted from the scheme. A host name is not resolved here: only
    L{check_upstream} judges where a name points.

    @raise UpstreamRefused: for the first rule the URL breaks.
    """
    if not isinstance(url, str) or not url.strip():
        raise UpstreamRefused(field, _NOT_TEXT)
    text = url.strip()
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise UpstreamRefused(field, _SPACES)
    try:
        parts = urlsplit(text)
    except ValueError:
        raise UpstreamRefused(field, _NOT_URL)
    try:
        scheme, host, port = parse_origin(text, "upstream", "the token")
    except ConfigError:
        raise UpstreamRefused(field, _diagnose(parts, policy))
    if "?" in text or "#" in text:  # an empty query or fragment parse_origin lets by
        raise UpstreamRefused(field, _NOT_ORIGIN)
    if scheme != "https" and not policy.allow_http:
        raise UpstreamRefused(field, _HTTPS_ONLY)
    address = _ip(host)
    if address is None:
        name = host.rstrip(".")
        if _numeric_name(name):
            raise UpstreamRefused(field, _NUMERIC_HOST)
        if name in METADATA_NAMES:
            raise UpstreamRefused(field, _METADATA_HOST)
    else:
        reason = address_refusal(address, policy)
        if reason is not None:
            raise UpstreamRefused(field, _blocked_message(reason, resolved=False))
    if not policy.host_allowed(host):
        raise UpstreamRefused(field, _NOT_ALLOWED)
    return scheme, host, port


Resolver = Callable[[str, int], defer.Deferred]


def check_upstream(url, policy: UpstreamPolicy, resolve: Resolver,
                   field: str = "url") -> defer.Deferred:
    """
    L{check_url}, then (unless C{policy.allow_private}, or the host is an IP
    literal already judged) C{resolve(host, port)}, a Deferred firing with
    the list of the host's IP addresses as strings. Fires with C{(scheme,
    host, port)}, or fails with L{UpstreamRefused} when the URL breaks a
    rule, when ANY resolved address is blocked (L{blocked_address}), or when
    resolution fails or finds nothing. Cancelling it from outside fails it
    with L{defer.CancelledError}, not a refusal.

    Rule for the caller: this is a check at the time the URL is accepted.
    DNS may answer differently later (rebinding), so whatever connects to
    the upstream must check the addresses again at connect time
    (L{blocked_address} on each) and connect to an address it checked.
    """
    try:
        scheme, host, port = check_url(url, policy, field)
    except UpstreamRefused:
        return defer.fail()
    accepted = (scheme, host, port)
    if policy.allow_private or _ip(host) is not None:
        return defer.succeed(accepted)

    def judge(addresses):
        if not isinstance(addresses, (list, tuple)) or not addresses:
            raise UpstreamRefused(field, _UNRESOLVED)
        for address in addresses:
            reason = blocked_address(address if isinstance(address, str) else str(address))
            if reason is not None:
                raise UpstreamRefused(field, _blocked_message(reason, resolved=True))
        return accepted

    def unresolved(failure: Failure):
        if failure.check(UpstreamRefused, defer.CancelledError):
            return failure
        raise UpstreamRefused(field, _UNRESOLVED)

    d = defer.maybeDeferred(resolve, host, port)
    return d.addCallback(judge).addErrback(unresolved)


def default_resolver(reactor, timeout: float = DEFAULT_RESOLVE_TIMEOUT,
                     getaddrinfo=socket.getaddrinfo) -> Resolver:
    """
    A C{resolve(host, port)} for L{check_upstream}: the system resolver
    (C{socket.getaddrinfo}, so /etc/hosts and the platform's configuration
    count, as they will when connecting) in the reactor's thread pool,
    firing with the IPv4 and IPv6 addresses found, in order, without
    duplicates. It fails with L{defer.TimeoutError} after C{timeout}
    seconds (on the reactor's clock); the lookup's thread cannot be
    stopped and finishes on its own, its answer dropped.
    """

    def resolve(host: str, port: int) -> defer.Deferred:
        d = threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), getaddrinfo, host, port, 0, socket.SOCK_STREAM,
        )

        def addresses(infos):
            found = []
            for family, _type, _proto, _name, sockaddr in infos:
                if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in found:
                    found.append(sockaddr[0])
            return found

        d.addCallback(addresses)
        d.addTimeout(timeout, reactor)
        return d

    return resolve

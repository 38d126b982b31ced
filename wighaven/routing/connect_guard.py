"""The forgery check again at connect time, for upstreams added at run time.

Why: L{wighaven.routing.upstream_guard} judges an upstream's addresses
when an administrator adds it. A name may answer differently a second
later (a rebinding DNS server answers with a TTL of 0: public when
checked, 127.0.0.1 or 169.254.169.254 when connected to), so the
gateway judges the addresses again each time it opens a connection to
such an upstream, and connects only to an address it judged: the
connecting endpoint (Twisted's HostnameEndpoint) is handed a reactor
whose name resolver (L{GuardedNameResolver}) passes on only the
addresses the rules allow. When none is left, the endpoint fails as
for a name that does not resolve (the client gets the gateway's 502),
and a warning names the host, the address and why, once a minute per
host at most.

The rules are those of the check when the URL was accepted
(L{wighaven.routing.upstream_guard.address_refusal}): without ALLOW_PRIVATE_UPSTREAMS only public
addresses; with it, everything but the addresses that are never a
backend (metadata, unspecified, multicast, broadcast), which the check
at acceptance does not resolve a name to see. Routes of the config file
and PRIVATE_BACKEND_URL's are the operator's and are not guarded.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHostnameResolver, IResolutionReceiver
from twisted.logger import Logger
from zope.interface import directlyProvides, implementer, providedBy

from .upstream_guard import address_refusal

__all__ = ["GuardedNameResolver", "GuardedReactor"]

WARN_EVERY = 60.0  # seconds between two warnings about one host


@implementer(IResolutionReceiver)
class _Filtering:
    """Passes on to C{receiver} only the addresses L{address_refusal} allows."""

    def __init__(self, receiver, host: str, resolver: "GuardedNameResolver"):
        self._receiver = receiver
        self._host = host
        self._resolver = resolver

    def resolutionBegan(self, resolution) -> None:
        self._receiver.resolutionBegan(resolution)

    def addressResolved(self, address) -> None:
        reason = address_refusal(getattr(address, "host", ""), self._resolver.policy)
        if reason is None:
            self._receiver.addressResolved(address)
        else:
            self._resolver.refused(self._host, address.host, reason)

    def resolutionComplete(self) -> None:
        self._receiver.resolutionComplete()


@implementer(IHostnameResolver)
class GuardedNameResolver:
    """
    C{resolver} (an IHostnameResolver: the reactor's) with every address a
    guarded upstream may not have left out.

    @param policy: the L{wighaven.routing.upstream_guard.UpstreamPolicy}.
    @param clock: C{seconds()}, for spacing the warnings.
    """

    _log = Logger()

    def __init__(self, resolver, policy, clock):
        self._resolver = resolver
        self.policy = policy
        self._clock = clock
        self._warned = {}  # host -> when it was last warned about

    def resolveHostName(self, resolutionReceiver, hostName, portNumber=0, addressTypes=None,
                        transportSemantics="TCP"):
        return self._resolver.resolveHostName(
            _Filtering(resolutionReceiver, hostName, self), hostName, portNumber, addressTypes,
            transportSemantics)

    def refused(self, host: str, address: str, reason: str) -> None:
        now = self._clock.seconds()
        last = self._warned.get(host)
        if last is not None and now - last < WARN_EVERY:
            return
        if len(self._warned) > 1000:  # bounded, whatever the names
            self._warned.clear()
        self._warned[host] = now
        self._log.warn(
            "upstream {host} resolved to {address}, {reason}, when connecting: not connected "
            "(only public addresses may be upstreams added through the admin API)",
            host=host, address=address, reason=reason)


class GuardedReactor:
    """
    C{reactor} as a connecting endpoint sees it, but for its name resolver,
    a L{GuardedNameResolver}; everything else is C{reactor}'s (which may
    itself be a L{wighaven.proxy.transport.FastConnectReactor}).
    """

    def __init__(self, reactor, policy):
        self._reactor = reactor
        directlyProvides(self, *providedBy(reactor))
        self.nameResolver = GuardedNameResolver(reactor.nameResolver, policy, reactor)

    def __getattr__(self, name):
        return getattr(self._reactor, name)

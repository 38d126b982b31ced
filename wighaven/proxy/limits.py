"""MAX_CONNECTIONS_PER_IP: how many connections one client address may hold.

Rule: a connection over the limit is answered 429 and closed at once; the
count goes down when a connection closes, whatever it became (an HTTP
connection, or a WebSocket tunnel that took it over). Off by default: many
users may share one address behind a NAT or a corporate proxy.

A trusted proxy (TRUST_PROXY) is not counted: every visitor's connection
comes from it, and the limit would fall on all of them together. Behind
it, the per-client bound that still applies is the one on WebSockets and
event streams, counted by the client's real address (L{wighaven.proxy.tunnels}).

Twisted's LimitConnectionsByPeer would do, but reads addresses as tuples,
which they no longer are.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.protocol import Protocol
from twisted.protocols.policies import WrappingFactory

from .channel import refusal
from ..config.trust import NO_PROXY

__all__ = ["PeerConnectionLimit"]


class _TooMany(Protocol):
    def connectionMade(self):
        self.transport.write(refusal(429))
        self.transport.loseConnection()


class PeerConnectionLimit(WrappingFactory):
    """Wraps the site's factory and counts open connections per peer host."""

    def __init__(self, wrapped, limit: int, trust_proxy=NO_PROXY):
        super().__init__(wrapped)
        self.limit = limit
        self.open = Counter()
        self._trust_proxy = trust_proxy

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if self._trust_proxy.trusts_peer(host):
            protocol = super().buildProtocol(addr)
            if protocol is not None:
                protocol.peer_host = None  # not counted
            return protocol
        if self.open[host] >= self.limit:
            return _TooMany()
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            protocol.peer_host = host
            self.open[host] += 1
        return protocol

    def unregisterProtocol(self, protocol):
        super().unregisterProtocol(protocol)
        host = protocol.peer_host
        if host is None:
            return
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]

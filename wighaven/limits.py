"""MAX_CONNECTIONS_PER_IP: how many connections one client address may hold.

Rule: a connection over the limit is answered 429 and closed at once; the
count goes down when a connection closes, whatever it became (an HTTP
connection, or a WebSocket tunnel that took it over). Off by default: many
users may share one address behind a NAT or a corporate proxy.

Twisted's LimitConnectionsByPeer would do, but reads addresses as tuples,
which they no longer are.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.protocol import Protocol
from twisted.protocols.policies import WrappingFactory

from .channel import refusal

__all__ = ["PeerConnectionLimit"]


class _TooMany(Protocol):
    def connectionMade(self):
        self.transport.write(refusal(429))
        self.transport.loseConnection()


class PeerConnectionLimit(WrappingFactory):
    """Wraps the site's factory and counts open connections per peer host."""

    def __init__(self, wrapped, limit: int):
        super().__init__(wrapped)
        self.limit = limit
        self.open = Counter()

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
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
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]

"""MAX_WEBSOCKETS and MAX_STREAMS: how many long-lived exchanges may be open.

Rule: a WebSocket tunnel or an event stream may last for hours, holds a
client connection and a backend connection, and gives back (or never takes)
its UPSTREAM_MAX_CONNECTIONS place so that live UIs don't starve ordinary
requests. Nothing else would bound them, so they are counted here: at most
MAX_WEBSOCKETS tunnels and MAX_STREAMS streams at once, and, when
MAX_CONNECTIONS_PER_IP is set, at most that many of both together per client
address (the real client's, behind a trusted proxy: the connection's own
address is then the proxy's, shared by everyone). One more is answered 503
with Retry-After; ordinary requests are never refused for them.

A place is taken when the exchange is known to be long-lived (a WebSocket
handshake as it starts, an event stream when its response headers arrive)
and given back exactly once (L{Hold.release}) whichever way it ends.
"""

from __future__ import annotations

import resource
from collections import Counter
from typing import Optional

from ..config.settings import tunnel_limits

__all__ = ["TunnelLimits", "Hold", "WEBSOCKET", "STREAM"]

WEBSOCKET = "websocket"
STREAM = "stream"


class Hold:
    """One long-lived exchange's place; L{release} gives it back, once."""

    def __init__(self, limits: "TunnelLimits", kind: str, address):
        self._limits = limits
        self._kind = kind
        self._address = address
        self._held = True

    def release(self, _=None) -> None:
        """Give the place back (once); usable as a Deferred's callback and errback."""
        if self._held:
            self._held = False
            self._limits._close(self._kind, self._address)


class TunnelLimits:
    """
    The open WebSockets and event streams, bounded in all and per client address.

    @param per_address: MAX_CONNECTIONS_PER_IP, or 0 for no per-address bound.
    """

    def __init__(self, max_websockets: int, max_streams: int, per_address: int = 0):
        self.maxima = {WEBSOCKET: max_websockets, STREAM: max_streams}
        self.per_address = per_address
        self.open = {WEBSOCKET: 0, STREAM: 0}
        self._by_address = Counter()

    @classmethod
    def for_config(cls, config, open_files: Optional[int] = None) -> "TunnelLimits":
        """The limits of C{config}, 'auto' read against the open-files limit in force."""
        if open_files is None:
            open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return cls(*tunnel_limits(config, open_files), config.max_connections_per_ip)

    def take(self, kind: str, address):
        """
        A L{Hold} on one more exchange of C{kind} from C{address}, or None
        when that would pass a limit: C{"all"} or C{"address"} says which
        (as the second item of the pair returned).
        """
        if self.open[kind] >= self.maxima[kind]:
            return None, "all"
        if self.per_address and self._by_address[address] >= self.per_address:
            return None, "address"
        self.open[kind] += 1
        if self.per_address:
            self._by_address[address] += 1
        return Hold(self, kind, address), None

    def _close(self, kind, address):
        self.open[kind] -= 1
        if self.per_address:
            self._by_address[address] -= 1
            if self._by_address[address] <= 0:
                del self._by_address[address]

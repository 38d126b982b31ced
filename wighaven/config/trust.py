"""TRUST_PROXY: which forwarding headers the gateway believes, and who the
client is.

Rule: a forwarding header (X-Forwarded-For, -Proto, -Host) is a claim made
by whoever sent it, so it is believed only when the gateway's immediate peer
is a proxy the operator trusts:
- off (the default): the peer is the client, and every forwarding header
  the client sent is its own invention;
- C{true}: exactly one proxy hop stands in front (a Hugging Face Space's
  front), whatever its address: the client is the right-most
  X-Forwarded-For entry, the one that proxy appended;
- a list of CIDRs: only a peer inside them is a proxy; the client is the
  right-most X-Forwarded-For entry that is not itself inside them (every
  entry to its left could have been forged by the client).

Right-most, not left-most: a client can put anything in front of the chain,
but each trusted hop appends the address it saw, so reading from the right
stops at the first address no trusted proxy vouches for.

Pure: plain values in, plain values out; no I/O.
"""

from __future__ import annotations

import ipaddress
from typing import Optional, Sequence, Tuple

import attrs

__all__ = ["TrustedProxies", "NO_PROXY", "ONE_HOP", "visitor_address"]


def _address(value: bytes):
    """An ip_address from an X-Forwarded-For entry (IPv4, IPv6, [IPv6]:port, IPv4:port)."""
    text = value.strip().decode("latin-1")
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@attrs.frozen
class TrustedProxies:
    """
    The proxies in front of the gateway: none, any single hop, or networks.
    Falsy when no proxy is trusted.
    """

    one_hop: bool = False
    networks: Tuple = ()

    def __bool__(self) -> bool:
        return self.one_hop or bool(self.networks)

    def describe(self) -> str:
        if self.one_hop:
            return "one proxy hop in front"
        if self.networks:
            return "proxies in " + ", ".join(str(n) for n in self.networks)
        return "off"

    @classmethod
    def parse(cls, value: str) -> "TrustedProxies":
        """
        C{true}/C{false} (and the usual yes/no/on/off/1/0) or a comma-separated
        list of CIDRs (a bare address is a /32 or /128).

        @raise ValueError: with a message naming the bad entry.
        """
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return ONE_HOP
        if lowered in ("0", "false", "no", "off", ""):
            return NO_PROXY
        networks = []
        for entry in value.split(","):
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    "must be true, false or a comma-separated list of CIDRs, got %r" % (entry,)
                )
        return cls(networks=tuple(networks))

    def _in_networks(self, address) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def trusts_peer(self, peer: Optional[str]) -> bool:
        """Is C{peer} (the connection's remote address) a trusted proxy?"""
        if self.one_hop:
            return True
        if not self.networks or not peer:
            return False
        try:
            return self._in_networks(ipaddress.ip_address(peer))
        except ValueError:
            return False

    def forwarded_chain(self, peer: bytes, forwarded_for: Sequence[bytes]) -> list:
        """
        The X-Forwarded-For entries to send upstream, ending with C{peer}:
        the peer alone unless it is trusted; else the client's address (see
        the module's rule) and the trusted hops after it. Entries to the
        left of the client, which the client itself could have written, are
        dropped. The first entry is the client.
        """
        if not self.trusts_peer(peer.decode("latin-1")):
            return [peer]
        return self.trusted_chain(peer, forwarded_for)

    def trusted_chain(self, peer: bytes, forwarded_for: Sequence[bytes]) -> list:
        """L{forwarded_chain} for a C{peer} already known to be trusted."""
        entries = [e.strip() for value in forwarded_for for e in value.split(b",") if e.strip()]
        if not entries:
            return [peer]
        if self.one_hop:
            return [entries[-1], peer]
        start = 0
        for i in range(len(entries) - 1, -1, -1):
            if not self._in_networks(_address(entries[i])):
                start = i
                break
        return entries[start:] + [peer]

    def client_address(self, peer: bytes, forwarded_for: Sequence[bytes]) -> bytes:
        """The client's address: the first entry of L{forwarded_chain}."""
        return self.forwarded_chain(peer, forwarded_for)[0]


NO_PROXY = TrustedProxies()
ONE_HOP = TrustedProxies(one_hop=True)


def visitor_address(trust_proxy: TrustedProxies, request, peer: str) -> str:
    """The visitor's address: C{peer} (the connection's), or behind a trusted proxy
    the client it vouches for in C{request}'s X-Forwarded-For."""
    if not trust_proxy:
        return peer
    forwarded_for = request.requestHeaders.getRawHeaders(b"x-forwarded-for", ())
    return trust_proxy.client_address(peer.encode("latin-1"), forwarded_for).decode("latin-1")

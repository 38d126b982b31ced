"""Noticing a client that hangs up while its connection is not being read.

Why: upload backpressure stops reading the client's connection (the backend
takes the body more slowly than the client sends it). A socket that is not
read is not watched either, so a client that gives up and closes would go
unnoticed until the backend got round to the rest of the body: its
upstream request, its in-flight place and two descriptors held for nothing.

How: Linux's epoll reports EPOLLRDHUP (the peer has closed its side), and
EPOLLHUP/EPOLLERR (a reset), without reading a byte. The transports whose
reading is stopped are registered, for those events only, in one epoll set
of the gateway's own; that set's descriptor is itself a reader of the
reactor (public API: addReader), readable exactly when one of them hung
up. The hung-up connection is aborted: its request can never complete
(Twisted's HTTP server treats the end of the request stream as a lost
connection, too), and its exchange is cleaned up as for any client that
leaves. Elsewhere than Linux (no epoll) nothing is watched and the gateway
notices the hang-up when it reads again, as before.
"""

from __future__ import annotations

import select

__all__ = ["hangup_watch_for"]

_EVENTS = getattr(select, "EPOLLRDHUP", 0x2000) | select.EPOLLHUP | select.EPOLLERR \
    if hasattr(select, "epoll") else 0


class HangupWatch:
    """The stopped transports of one reactor, watched for the peer's hang-up."""

    def __init__(self, reactor):
        self._reactor = reactor
        self._epoll = select.epoll()
        self._watched = {}  # fd -> transport
        self._fds = {}  # transport -> fd (its fileno() is -1 once closed)
        self._reading = False

    # The reactor's view: a reader whose descriptor is the epoll set.

    def fileno(self) -> int:
        return self._epoll.fileno()

    def logPrefix(self) -> str:
        return "HangupWatch"

    def doRead(self):
        for fd, _ in self._epoll.poll(0):
            transport = self._watched.get(fd)
            if transport is not None:
                self.unwatch(transport)
                transport.abortConnection()

    def connectionLost(self, reason):
        self._reading = False

    # The transports' view.

    def watch(self, transport) -> None:
        """Tell when C{transport}'s peer hangs up (its reading is stopped)."""
        fd = transport.fileno()
        if fd < 0 or fd in self._watched:
            return
        self._epoll.register(fd, _EVENTS)
        self._watched[fd] = transport
        self._fds[transport] = fd
        if not self._reading:
            self._reading = True
            self._reactor.addReader(self)

    def unwatch(self, transport) -> None:
        """Stop watching C{transport} (it reads again, or is gone)."""
        fd = self._fds.pop(transport, None)
        if fd is None:
            return
        del self._watched[fd]
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # closed already: epoll forgot it by itself
        if not self._watched and self._reading:
            self._reading = False
            self._reactor.removeReader(self)


class _NoWatch:
    """Where there is no epoll: nothing is watched."""

    def watch(self, transport) -> None:
        pass

    def unwatch(self, transport) -> None:
        pass


_watches = {}


def hangup_watch_for(reactor):
    """The one L{HangupWatch} of C{reactor} (a no-op without epoll)."""
    watch = _watches.get(id(reactor))
    if watch is None or getattr(watch, "_reactor", reactor) is not reactor:
        watch = _watches[id(reactor)] = HangupWatch(reactor) if _EVENTS else _NoWatch()
    return watch
